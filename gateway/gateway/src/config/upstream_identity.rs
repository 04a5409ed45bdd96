//! `[upstream_identity]`: who signs the identity assertions upstreams receive.

use std::path::PathBuf;

use serde::Deserialize;

/// `[upstream_identity]`: the key that signs `x-taxgate-assertion` and its rotation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamIdentityConfig {
    /// `true`: no assertions are signed, on purpose (upstreams that cannot verify who called
    /// them). The other keys are then ignored.
    #[serde(default)]
    pub disabled: bool,
    /// PKCS#8 PEM private key (Ed25519 or P-256) that signs assertions; required unless
    /// `disabled`.
    #[serde(default)]
    pub signing_key: PathBuf,
    /// `EdDSA` or `ES256`; absent: inferred from the key.
    pub algorithm: Option<crate::assertion::Algorithm>,
    /// The key being retired: still published in the JWKS, never used to sign.
    pub previous_key: Option<PathBuf>,
    /// The `iss` claim (default `taxgate`).
    #[serde(default = "defaults::assertion_issuer")]
    pub issuer: String,
    /// Lifetime of one assertion (`exp - iat`).
    #[serde(default = "defaults::assertion_ttl_secs")]
    pub ttl_secs: u64,
    /// Also serve `/.well-known/jwks.json` on the public listener.
    #[serde(default)]
    pub publish_jwks_publicly: bool,
}

impl UpstreamIdentityConfig {
    /// Only called when the section signs (present and not `disabled`): the other keys are
    /// ignored otherwise.
    pub(super) fn validate<E>(&self, err: &impl Fn(&str, String) -> E) -> Result<(), E> {
        if self.signing_key.as_os_str().is_empty() {
            return Err(err(
                "upstream_identity.signing_key",
                "is required (generate one with `taxgate keys generate --out FILE`), \
                 or set `disabled = true` to send no signed identity"
                    .into(),
            ));
        }
        for (key, path) in [
            ("upstream_identity.signing_key", Some(&self.signing_key)),
            ("upstream_identity.previous_key", self.previous_key.as_ref()),
        ] {
            if let Some(path) = path
                && let Err(e) = std::fs::metadata(path)
            {
                return Err(err(key, format!("cannot read `{}`: {e}", path.display())));
            }
        }
        if self.issuer.is_empty() {
            return Err(err("upstream_identity.issuer", "must not be empty".into()));
        }
        if self.ttl_secs == 0 || self.ttl_secs > 3600 {
            return Err(err(
                "upstream_identity.ttl_secs",
                "must be between 1 and 3600 (assertions are meant to be short-lived)".into(),
            ));
        }
        Ok(())
    }
}

mod defaults {
    pub fn assertion_issuer() -> String {
        "taxgate".into()
    }
    pub fn assertion_ttl_secs() -> u64 {
        60
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{BASE, load};

    #[test]
    fn upstream_identity_paths_resolve_and_errors_name_the_key() {
        let e = load(&format!(
            "{BASE}\n[upstream_identity]\nsigning_key = \"keys/assertion.pem\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, "upstream_identity.signing_key");
        assert!(
            e.message
                .contains("cannot read `/etc/taxgate/keys/assertion.pem`"),
            "{e}"
        );
        let e = load(&format!(
            "{BASE}\n[upstream_identity]\nsigning_key = \"/\"\nalgorithm = \"RS256\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, "upstream_identity.algorithm", "{e}");
        let e = load(&format!(
            "{BASE}\n[upstream_identity]\nsigning_key = \"/\"\nttl_secs = 0\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, "upstream_identity.ttl_secs", "{e}");
        let c = load(&format!(
            "{BASE}\n[upstream_identity]\nsigning_key = \"/\"\n"
        ))
        .unwrap();
        let identity = c.upstream_identity.unwrap();
        assert_eq!(
            (identity.issuer.as_str(), identity.ttl_secs),
            ("taxgate", 60)
        );
        assert!(!identity.publish_jwks_publicly);
    }

    #[test]
    fn upstream_identity_disabled_or_a_key() {
        let c = load(&format!("{BASE}\n[upstream_identity]\ndisabled = true\n")).unwrap();
        assert!(c.upstream_identity.is_some() && c.signing_identity().is_none());
        let e = load(&format!("{BASE}\n[upstream_identity]\n")).unwrap_err();
        assert_eq!(e.key, "upstream_identity.signing_key", "{e}");
        assert!(e.message.contains("disabled = true"), "{e}");
        assert!(load(BASE).unwrap().signing_identity().is_none());
    }
}
