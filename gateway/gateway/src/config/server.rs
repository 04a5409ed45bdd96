//! `[server]` and `[server.tls]`: the public listener.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// `[server]`: the public listener and what it accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Where the public listener binds.
    pub listen: SocketAddr,
    /// The origin browsers see (`https://etax.example.cn`): a POST whose `Origin` differs is
    /// refused as cross-site, and its host is the `x-forwarded-host` sent upstream.
    pub public_origin: Option<String>,
    /// `[server.tls]`: serve HTTPS; absent: cleartext.
    pub tls: Option<TlsConfig>,
    /// Largest request head (request line + headers) accepted, in bytes; larger gets 431.
    #[serde(default = "defaults::max_header_bytes")]
    pub max_header_bytes: usize,
    /// How long a client may take to send the request head.
    #[serde(default = "defaults::header_read_timeout_secs")]
    pub header_read_timeout_secs: u64,
    /// On SIGTERM/ctrl-c, how long in-flight requests may run before connections are closed.
    #[serde(default = "defaults::shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
    /// Accept HTTP/2 with prior knowledge on a cleartext listener (h2c).
    #[serde(default = "super::yes")]
    pub h2c: bool,
    /// Log format: "text" (default) or "json".
    #[serde(default = "defaults::log_format")]
    pub log_format: String,
    /// Proxies in front of the gateway (addresses or CIDRs) whose `x-forwarded-*` headers are
    /// believed; from any other peer they are replaced.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Open client connections at most; 0 (default): the descriptor limit less a reserve for
    /// the store, the upstreams and the admin listener.
    #[serde(default)]
    pub max_connections: usize,
    /// Open connections from one client address (IPv6: one /64) at most; 0: no cap.
    #[serde(default = "defaults::max_connections_per_address")]
    pub max_connections_per_address: usize,
}

impl ServerConfig {
    /// `trusted_proxies` parsed: a bare address is a /32 (or /128).
    pub fn trusted_proxy_nets(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.trusted_proxies
            .iter()
            .map(|t| {
                t.parse::<ipnet::IpNet>()
                    .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("`{t}` is not an address or CIDR (`10.0.0.0/8`)"))
            })
            .collect()
    }

    pub(super) fn validate<E>(&self, err: &impl Fn(&str, String) -> E) -> Result<(), E> {
        if let Some(origin) = &self.public_origin
            && !(origin.starts_with("https://") || origin.starts_with("http://"))
        {
            return Err(err(
                "server.public_origin",
                format!("`{origin}` is not an origin; write it like `https://etax.example.cn`"),
            ));
        }
        if self.max_header_bytes < 8192 {
            return Err(err(
                "server.max_header_bytes",
                "must be at least 8192".into(),
            ));
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(err(
                "server.log_format",
                format!("`{}` is not `text` or `json`", self.log_format),
            ));
        }
        if let Err(message) = self.trusted_proxy_nets() {
            return Err(err("server.trusted_proxies", message));
        }
        if let Some(tls) = &self.tls {
            for (key, path) in [("server.tls.cert", &tls.cert), ("server.tls.key", &tls.key)] {
                if let Err(e) = std::fs::metadata(path) {
                    return Err(err(key, format!("cannot read `{}`: {e}", path.display())));
                }
            }
        }
        Ok(())
    }
}

/// `[server.tls]`: the certificate the public listener serves HTTPS with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain; relative to the config file.
    pub cert: PathBuf,
    /// PEM private key of `cert`; relative to the config file.
    pub key: PathBuf,
    /// `Strict-Transport-Security: max-age=N` on every response; 0: not sent.
    #[serde(default = "defaults::hsts_max_age_secs")]
    pub hsts_max_age_secs: u64,
}

mod defaults {
    pub fn max_header_bytes() -> usize {
        16 * 1024
    }
    pub fn header_read_timeout_secs() -> u64 {
        10
    }
    pub fn shutdown_grace_secs() -> u64 {
        30
    }
    pub fn log_format() -> String {
        "text".into()
    }
    pub fn max_connections_per_address() -> usize {
        256
    }
    pub fn hsts_max_age_secs() -> u64 {
        31_536_000
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{BASE, load};

    #[test]
    fn missing_tls_file_is_named() {
        let e = load(&BASE.replace(
            "[admin]",
            "[server.tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\n[admin]",
        ))
        .unwrap_err();
        assert_eq!(e.key, "server.tls.cert", "{e}");
    }
}
