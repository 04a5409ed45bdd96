//! `[store]`: where persons, sessions and audit events are kept.

use serde::Deserialize;

use super::SecretString;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub url: SecretString,
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
