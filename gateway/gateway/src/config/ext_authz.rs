//! `[ext_authz]`: taxgate deciding behind a proxy the operator already runs (CONTRACT section 9).
//! Its listener trusts the `X-Forwarded-*` / `X-Original-*` headers of its caller, so it is never
//! the public one (nor the admin one).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::SecretString;

/// `[ext_authz]`: the external-authorization listeners.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtAuthzConfig {
    /// `/ext/forward-auth`, `/ext/auth-request`, `/ext/envoy/…` and the AuthZEN endpoints.
    pub listen: SocketAddr,
    /// Envoy `ext_authz` v3 over gRPC (h2c, or TLS with `tls`); absent: no gRPC listener.
    pub grpc_listen: Option<SocketAddr>,
    /// When set, every caller sends it as `x-taxgate-ext-token` (HTTP header or gRPC metadata);
    /// others get 401. Compared in constant time.
    pub token: Option<SecretString>,
    /// Mutual TLS on both listeners: callers must present a certificate of `client_ca`.
    pub tls: Option<ExtAuthzTls>,
}

/// `[ext_authz] tls`: the listeners' certificate and the CA their callers' certificates chain to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtAuthzTls {
    /// The listeners' certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA (PEM) a caller's certificate must chain to.
    pub client_ca: PathBuf,
}

/// Shortest token accepted: a guessable shared secret is no secret.
const MIN_TOKEN_LEN: usize = 16;

impl ExtAuthzConfig {
    /// `taken` are the other listeners (`server.listen`, `admin.listen`): none may be shared.
    pub(super) fn validate<E>(
        &self,
        taken: &[(&str, SocketAddr)],
        err: &impl Fn(&str, String) -> E,
    ) -> Result<(), E> {
        let same = |a: SocketAddr, b: SocketAddr| a == b && a.port() != 0;
        for (key, addr) in taken {
            if same(self.listen, *addr) {
                return Err(err(
                    "ext_authz.listen",
                    format!(
                        "must differ from {key}: this listener trusts its caller's X-Forwarded-* headers"
                    ),
                ));
            }
            if let Some(grpc) = self.grpc_listen
                && same(grpc, *addr)
            {
                return Err(err(
                    "ext_authz.grpc_listen",
                    format!("must differ from {key}"),
                ));
            }
        }
        if let Some(grpc) = self.grpc_listen
            && same(grpc, self.listen)
        {
            return Err(err(
                "ext_authz.grpc_listen",
                "must differ from ext_authz.listen (gRPC is served on a listener of its own)"
                    .into(),
            ));
        }
        if let Some(token) = &self.token {
            let t = token.expose();
            if t.len() < MIN_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(err(
                    "ext_authz.token",
                    format!(
                        "must be at least {MIN_TOKEN_LEN} visible ASCII characters (it travels in a header); \
                         e.g. `openssl rand -hex 32`"
                    ),
                ));
            }
        }
        if let Some(tls) = &self.tls {
            for (key, path) in [
                ("ext_authz.tls.cert", &tls.cert),
                ("ext_authz.tls.key", &tls.key),
                ("ext_authz.tls.client_ca", &tls.client_ca),
            ] {
                if !path.is_file() {
                    return Err(err(
                        key,
                        format!("`{}` is not a readable file", path.display()),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{BASE, load};

    fn with(section: &str) -> String {
        format!("{BASE}\n[ext_authz]\n{section}\n")
    }

    #[test]
    fn absent_is_off_and_present_loads() {
        assert!(load(BASE).unwrap().ext_authz.is_none());
        let c = load(&with(
            "listen = \"127.0.0.1:9902\"\ngrpc_listen = \"127.0.0.1:9903\"\ntoken = \"0123456789abcdef0123\"",
        ))
        .unwrap();
        let ext = c.ext_authz.unwrap();
        assert_eq!(ext.listen.port(), 9902);
        assert_eq!(ext.grpc_listen.unwrap().port(), 9903);
        assert!(!format!("{ext:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn never_the_public_or_admin_listener() {
        let e = load(&with("listen = \"127.0.0.1:8443\"")).unwrap_err();
        assert_eq!(e.key, "ext_authz.listen", "{e}");
        assert!(e.message.contains("server.listen"), "{e}");
        let e = load(&with("listen = \"127.0.0.1:9901\"")).unwrap_err();
        assert_eq!(e.key, "ext_authz.listen", "{e}");
        assert!(e.message.contains("admin.listen"), "{e}");
        let e = load(&with(
            "listen = \"127.0.0.1:9902\"\ngrpc_listen = \"127.0.0.1:9902\"",
        ))
        .unwrap_err();
        assert_eq!(e.key, "ext_authz.grpc_listen", "{e}");
        let e = load(&with(
            "listen = \"127.0.0.1:9902\"\ngrpc_listen = \"127.0.0.1:8443\"",
        ))
        .unwrap_err();
        assert_eq!(e.key, "ext_authz.grpc_listen", "{e}");
    }

    #[test]
    fn weak_token_and_missing_tls_files_are_refused() {
        let e = load(&with("listen = \"127.0.0.1:9902\"\ntoken = \"short\"")).unwrap_err();
        assert_eq!(e.key, "ext_authz.token", "{e}");
        assert!(!e.message.contains("short"), "the token is not echoed: {e}");
        let e = load(&with(
            "listen = \"127.0.0.1:9902\"\ntls = { cert = \"c.pem\", key = \"k.pem\", client_ca = \"ca.pem\" }",
        ))
        .unwrap_err();
        assert_eq!(e.key, "ext_authz.tls.cert", "{e}");
        assert!(e.message.contains("/etc/taxgate/c.pem"), "{e}");
        let e = load(&with("listen = \"127.0.0.1:9902\"\nlistn = 1")).unwrap_err();
        assert_eq!(e.key, "ext_authz.listn", "{e}");
    }
}
