//! `[admin]`: the listener for health, metrics and administration, never the public one.

use std::net::SocketAddr;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

impl AdminConfig {
    /// `server_listen` is `[server] listen`: the two must not be the same socket.
    pub(super) fn validate<E>(
        &self,
        server_listen: SocketAddr,
        err: &impl Fn(&str, String) -> E,
    ) -> Result<(), E> {
        if self.listen == server_listen && self.listen.port() != 0 {
            return Err(err(
                "admin.listen",
                "must differ from server.listen: admin endpoints are never public".into(),
            ));
        }
        Ok(())
    }
}
