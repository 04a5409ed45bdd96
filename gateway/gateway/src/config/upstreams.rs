//! `[[upstreams]]`: the upstreams routes forward to, and TLS towards them.
//!
//! Nothing here refers to the rest of the config (errors are made by the caller's `err`), so
//! these types can move to the proxy as they are.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// One `[[upstreams]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The name routes refer to; unique.
    pub name: String,
    /// `http://` or `https://` base URL with a host; its path is prefixed to every forwarded
    /// path.
    pub url: String,
    /// Connect timeout, and the longest wait for the answer's head or between body chunks, in
    /// seconds (default 30).
    #[serde(default = "defaults::upstream_timeout_secs")]
    pub timeout_secs: u64,
    /// Idle pooled connections kept per upstream host.
    #[serde(default = "defaults::pool_max_idle")]
    pub pool_max_idle: usize,
    /// TLS to an `https://` upstream: CA, client certificate (mutual TLS), server name.
    pub tls: Option<UpstreamTlsConfig>,
}

/// `[[upstreams]] tls = { ca, cert, key, server_name }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// PEM CA certificates the upstream's certificate must chain to; absent: the webpki roots.
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain presented for mutual TLS (with `key`).
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// Name sent as SNI and checked against the certificate; absent: the URL's host.
    pub server_name: Option<String>,
}

impl UpstreamConfig {
    /// `timeout_secs` as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

/// Check `[[upstreams]]` in order: names unique and present, URLs http(s) with a host, TLS
/// files readable and complete.
pub(super) fn validate<E>(
    upstreams: &[UpstreamConfig],
    err: &impl Fn(&str, String) -> E,
) -> Result<(), E> {
    let mut names = HashSet::new();
    for (i, up) in upstreams.iter().enumerate() {
        if up.name.is_empty() {
            return Err(err(
                &format!("upstreams[{i}].name"),
                "must not be empty".into(),
            ));
        }
        if !names.insert(up.name.as_str()) {
            return Err(err(
                &format!("upstreams[{i}].name"),
                format!("upstream `{}` is defined twice", up.name),
            ));
        }
        let uri: http::Uri = up.url.parse().map_err(|e| {
            err(
                &format!("upstreams[{i}].url"),
                format!("`{}` is not a URL: {e}", up.url),
            )
        })?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(err(
                    &format!("upstreams[{i}].url"),
                    format!(
                        "`{}` must be an https:// or http:// URL with a host",
                        up.url
                    ),
                ));
            }
        };
        if uri.authority().is_none() {
            return Err(err(
                &format!("upstreams[{i}].url"),
                format!(
                    "`{}` must be an https:// or http:// URL with a host",
                    up.url
                ),
            ));
        }
        if let Some(tls) = &up.tls {
            if !https {
                return Err(err(
                    &format!("upstreams[{i}].tls"),
                    format!(
                        "`{}` is plain http: write the URL as https:// to use TLS",
                        up.url
                    ),
                ));
            }
            for (name, path) in [("ca", &tls.ca), ("cert", &tls.cert), ("key", &tls.key)] {
                if let Some(path) = path
                    && let Err(e) = std::fs::metadata(path)
                {
                    return Err(err(
                        &format!("upstreams[{i}].tls.{name}"),
                        format!("cannot read `{}`: {e}", path.display()),
                    ));
                }
            }
            match (&tls.cert, &tls.key) {
                (Some(_), None) => {
                    return Err(err(
                        &format!("upstreams[{i}].tls.key"),
                        "required with tls.cert (the client certificate's private key)".into(),
                    ));
                }
                (None, Some(_)) => {
                    return Err(err(
                        &format!("upstreams[{i}].tls.cert"),
                        "required with tls.key (the client certificate chain)".into(),
                    ));
                }
                _ => {}
            }
            if let Some(name) = &tls.server_name
                && rustls::pki_types::ServerName::try_from(name.as_str()).is_err()
            {
                return Err(err(
                    &format!("upstreams[{i}].tls.server_name"),
                    format!("`{name}` is not a DNS name or IP address"),
                ));
            }
        }
        if up.timeout_secs == 0 {
            return Err(err(
                &format!("upstreams[{i}].timeout_secs"),
                "must be at least 1".into(),
            ));
        }
    }
    Ok(())
}

mod defaults {
    pub fn upstream_timeout_secs() -> u64 {
        30
    }
    pub fn pool_max_idle() -> usize {
        64
    }
}
