//! `[face]`: callbacks from the mobile-app backend that confirm a face check.

use serde::Deserialize;

use super::SecretString;

/// `[face]`: the callbacks from the mobile-app backend that confirm a face check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaceConfig {
    /// The HMAC key the app backend signs its callbacks with (`x-taxgate-signature`).
    #[serde(default)]
    pub callback_secret: SecretString,
    /// How long a face-scan code stays valid, in seconds (default 120).
    #[serde(default = "defaults::face_ttl_secs")]
    pub ttl_secs: u64,
    /// Signed callbacks accepted per minute from one address (the app backend). They have this
    /// budget of their own instead of `[login] auth_requests_per_minute`; a callback whose
    /// signature does not verify counts against the per-address budget like any request.
    #[serde(default = "defaults::face_callbacks_per_minute")]
    pub callbacks_per_minute: u32,
}

impl Default for FaceConfig {
    fn default() -> Self {
        FaceConfig {
            callback_secret: SecretString::default(),
            ttl_secs: defaults::face_ttl_secs(),
            callbacks_per_minute: defaults::face_callbacks_per_minute(),
        }
    }
}

impl FaceConfig {
    pub(super) fn validate<E>(&self, err: &impl Fn(&str, String) -> E) -> Result<(), E> {
        if self.callbacks_per_minute == 0 {
            return Err(err(
                "face.callbacks_per_minute",
                "must be at least 1".into(),
            ));
        }
        if self.ttl_secs == 0 {
            return Err(err("face.ttl_secs", "must be at least 1".into()));
        }
        Ok(())
    }
}

mod defaults {
    pub fn face_callbacks_per_minute() -> u32 {
        6000
    }
    pub fn face_ttl_secs() -> u64 {
        120
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{BASE, load};

    #[test]
    fn face_callbacks_have_their_own_budget() {
        assert_eq!(load(BASE).unwrap().face.callbacks_per_minute, 6000);
        let e = load(&format!("{BASE}\n[face]\ncallbacks_per_minute = 0\n")).unwrap_err();
        assert_eq!(e.key, "face.callbacks_per_minute", "{e}");
    }
}
