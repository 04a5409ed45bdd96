//! `[admin]`: the listener for health, metrics and administration, never the public one.

use std::net::SocketAddr;

use serde::Deserialize;

/// `[admin]`: the listener for health, metrics and administration, never the public one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where `/healthz`, `/readyz`, `/metrics`, `/admin/*` and the JWKS are served; must not be
    /// `[server] listen`.
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

#[cfg(test)]
mod tests {
    use crate::config::tests::{BASE, load};

    #[test]
    fn admin_listener_is_not_the_public_one() {
        let e = load(&BASE.replace("127.0.0.1:9901", "127.0.0.1:8443")).unwrap_err();
        assert_eq!(e.key, "admin.listen", "{e}");
        assert!(e.message.contains("never public"), "{e}");
        // Port 0 takes any free port, so two such listeners never share one.
        assert!(load(&BASE.replace(":9901", ":0").replace(":8443", ":0")).is_ok());
    }
}
