//! `[store]`: where persons, sessions and audit events are kept.

use serde::Deserialize;

use super::SecretString;

/// `[store]`: the database of persons, bindings, sessions and the audit trail.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH` (relative to the config file) or `postgres://USER:PASS@HOST/DB`; secret
    /// because it may hold a password.
    pub url: SecretString,
    /// Store connections reserved from the descriptor limit when `[server] max_connections` is 0
    /// (default 16). The backends size their pools themselves.
    #[serde(default = "defaults::store_max_connections")]
    pub max_connections: u32,
}

impl StoreConfig {
    pub(super) fn validate<E>(&self, err: &impl Fn(&str, String) -> E) -> Result<(), E> {
        let url = self.url.expose();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(err(
                "store.url",
                "expected `sqlite://PATH` or `postgres://USER:PASS@HOST/DB`".into(),
            ));
        }
        if self.max_connections == 0 {
            return Err(err("store.max_connections", "must be at least 1".into()));
        }
        Ok(())
    }
}

mod defaults {
    pub fn store_max_connections() -> u32 {
        16
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{BASE, load};

    #[test]
    fn store_url_and_pool_are_checked() {
        let e = load(&BASE.replace("sqlite://data/t.db", "mysql://db/t")).unwrap_err();
        assert_eq!(e.key, "store.url", "{e}");
        assert!(load(&BASE.replace("sqlite://data/t.db", "postgres://u:p@db/t")).is_ok());
        let e = load(&BASE.replace(
            "url = \"sqlite://data/t.db\"",
            "url = \"sqlite://data/t.db\"\nmax_connections = 0",
        ))
        .unwrap_err();
        assert_eq!(e.key, "store.max_connections", "{e}");
    }
}
