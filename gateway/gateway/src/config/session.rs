//! `[session]`: the session cookie, its timeouts and the per-instance caches.

use serde::Deserialize;

/// `[session]`: the session cookie, its timeouts and this instance's caches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// The session cookie's name: letters, digits, `_`, `-` (default `taxgate_session`).
    #[serde(default = "defaults::cookie_name")]
    pub cookie_name: String,
    /// Mark the cookie `Secure` (default on; off with TLS is warned about at start).
    #[serde(default = "super::yes")]
    pub cookie_secure: bool,
    /// A session ends after this many seconds without a request (default 1800; at most
    /// `absolute_timeout_secs`).
    #[serde(default = "defaults::idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// A session ends this many seconds after login, active or not (default 28800).
    #[serde(default = "defaults::absolute_timeout_secs")]
    pub absolute_timeout_secs: u64,
    /// Backstop TTL of the per-instance session/entity cache; invalidation is immediate anyway.
    #[serde(default = "defaults::cache_ttl_secs")]
    pub cache_ttl_secs: u64,
    /// Sessions this instance keeps cached (default 200000).
    #[serde(default = "defaults::cache_capacity")]
    pub cache_capacity: u64,
    /// Sessions whose Cedar entities stay built (about 10 KiB each); the others' are built
    /// per decision from the cached session (a few microseconds). 0: never kept.
    #[serde(default = "defaults::entity_cache_capacity")]
    pub entity_cache_capacity: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            cookie_name: defaults::cookie_name(),
            cookie_secure: true,
            idle_timeout_secs: defaults::idle_timeout_secs(),
            absolute_timeout_secs: defaults::absolute_timeout_secs(),
            cache_ttl_secs: defaults::cache_ttl_secs(),
            cache_capacity: defaults::cache_capacity(),
            entity_cache_capacity: defaults::entity_cache_capacity(),
        }
    }
}

impl SessionConfig {
    pub(super) fn validate<E>(&self, err: &impl Fn(&str, String) -> E) -> Result<(), E> {
        let cookie = &self.cookie_name;
        if cookie.is_empty()
            || !cookie
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(err(
                "session.cookie_name",
                format!("`{cookie}` is not a valid cookie name (letters, digits, `_`, `-`)"),
            ));
        }
        if self.idle_timeout_secs == 0 || self.idle_timeout_secs > self.absolute_timeout_secs {
            return Err(err(
                "session.idle_timeout_secs",
                "must be at least 1 and at most session.absolute_timeout_secs".into(),
            ));
        }
        Ok(())
    }
}

mod defaults {
    pub fn cookie_name() -> String {
        "taxgate_session".into()
    }
    pub fn idle_timeout_secs() -> u64 {
        1800
    }
    pub fn absolute_timeout_secs() -> u64 {
        28800
    }
    pub fn cache_ttl_secs() -> u64 {
        // A backstop only: every change is pushed (PostgreSQL NOTIFY, the SQLite invalidation
        // log), and a lost listener drops every cache. Shorter than a live population's
        // rotation, it would reload every session from the store (issue 17).
        300
    }
    pub fn cache_capacity() -> u64 {
        200_000
    }
    pub fn entity_cache_capacity() -> u64 {
        2_048
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{BASE, load};

    #[test]
    fn cookie_name_and_timeouts_are_checked() {
        let session = |keys: &str| load(&format!("{BASE}\n[session]\n{keys}"));
        let e = session("cookie_name = \"a b\"\n").unwrap_err();
        assert_eq!(e.key, "session.cookie_name", "{e}");
        let e = session("idle_timeout_secs = 0\n").unwrap_err();
        assert_eq!(e.key, "session.idle_timeout_secs", "{e}");
        let e = session("idle_timeout_secs = 60\nabsolute_timeout_secs = 30\n").unwrap_err();
        assert_eq!(e.key, "session.idle_timeout_secs", "{e}");
    }
}
