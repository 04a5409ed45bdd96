//! Typed configuration (CONTRACT section 2), validated at start. Every error names the key at fault.
//!
//! Relative paths (TLS files, the policy directory, the SMS outbox, a `sqlite://` store path) are
//! resolved against the directory of the config file, so a config works wherever the process starts.
//!
//! One file per `[section]` holds its types, defaults and checks (Authelia's
//! `configuration/{schema,validator}/<section>.go`). A section's `validate` takes `err`, which
//! turns a key and a message into the caller's error, so a section does not know which file
//! it came from; [`Config::validate`] runs them in the order their errors have always come.

mod admin;
mod audit;
mod dev;
mod ext_authz;
mod face;
mod login;
mod pages;
mod policies;
mod routes;
mod secret;
mod server;
mod session;
mod sms;
mod store;
mod telemetry;
mod toml_key;
mod upstream_identity;
mod upstreams;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use admin::AdminConfig;
pub use audit::AuditConfig;
pub use dev::DevConfig;
pub use ext_authz::{ExtAuthzConfig, ExtAuthzTls};
pub use face::FaceConfig;
pub use login::LoginConfig;
pub use pages::PagesConfig;
pub use policies::PoliciesConfig;
pub use routes::{RouteConfig, is_reserved_path};
pub use secret::SecretString;
pub use server::{ServerConfig, TlsConfig};
pub use session::SessionConfig;
pub use sms::{SmsConfig, SmsProvider};
pub use store::StoreConfig;
pub use telemetry::TelemetryConfig;
pub use upstream_identity::UpstreamIdentityConfig;
pub use upstreams::{UpstreamConfig, UpstreamTlsConfig};

/// A config error: the key (or file) at fault and what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {message}")]
pub struct ConfigError {
    /// The config file as given.
    pub file: String,
    /// The key at fault (`routes[2].prefix`), or `(file)` / `(syntax)`.
    pub key: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

/// The whole config file, validated: one field per section (CONTRACT section 2). Built only by
/// [`Config::load`] or [`Config::from_toml`], with relative paths resolved.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`: the public listener.
    pub server: ServerConfig,
    /// `[admin]`: the admin listener.
    pub admin: AdminConfig,
    /// `[store]`: the database.
    pub store: StoreConfig,
    /// `[policies]`: the policy set, its reloads, shadow and gate.
    #[serde(default)]
    pub policies: PoliciesConfig,
    /// `[audit]`: retention and the journal.
    #[serde(default)]
    pub audit: AuditConfig,
    /// `[sms]`: how codes are sent.
    #[serde(default)]
    pub sms: SmsConfig,
    /// `[face]`: the app backend's face-check callbacks.
    #[serde(default)]
    pub face: FaceConfig,
    /// `[session]`: the cookie, timeouts and caches.
    #[serde(default)]
    pub session: SessionConfig,
    /// `[login]`: lockouts, code budgets and rate limits.
    #[serde(default)]
    pub login: LoginConfig,
    /// `[pages]`: where a login lands.
    #[serde(default)]
    pub pages: PagesConfig,
    /// `[[upstreams]]`: the backends, in order.
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    /// `[[routes]]`: which paths go to which upstream, in order.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// `[dev]`: development switches, never for production.
    #[serde(default)]
    pub dev: DevConfig,
    /// Signed identity assertions for upstreams. Absent, the gateway refuses to start (secure
    /// by default); `disabled = true` turns them off explicitly (warned at start).
    pub upstream_identity: Option<UpstreamIdentityConfig>,
    /// `[ext_authz]`: deciding for a proxy the operator already runs (CONTRACT section 9);
    /// absent, no such listener.
    pub ext_authz: Option<ExtAuthzConfig>,
    /// `[telemetry]`: OpenTelemetry traces (off without `otlp_endpoint`).
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// The file this config came from, for error messages.
    #[serde(skip)]
    pub source: String,
    /// Set by `taxgate demo` only, never by a config file: the face step's page offers 模拟扫码
    /// (`POST /auth/face/demo-sign` signs the callback with `[face] callback_secret`).
    #[serde(skip)]
    pub demo: bool,
}

/// The default of the switches that are on unless turned off (`h2c`, `watch`, `cookie_secure`).
fn yes() -> bool {
    true
}

/// Parse an RFC 3339 timestamp into unix seconds.
pub fn parse_rfc3339(s: &str) -> Result<i64, time::error::Parse> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
}

impl Config {
    /// Read, parse and validate a config file. Paths inside are resolved against its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: "(file)".into(),
            message: format!("cannot read the config file: {e}"),
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Config::from_toml(&text, &file, &base)
    }

    /// Parse and validate config text; `file` names it in errors, `base` anchors relative paths.
    pub fn from_toml(text: &str, file: &str, base: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let key = e
                .span()
                .map(|span| toml_key::key_at(text, span.start))
                .unwrap_or_else(|| "(syntax)".into());
            ConfigError {
                file: file.into(),
                key,
                message: e.message().trim_end_matches('.').to_string(),
            }
        })?;
        config.source = file.to_string();
        config.resolve_paths(base);
        config.validate(file)?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let join = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(tls) = &mut self.server.tls {
            join(&mut tls.cert);
            join(&mut tls.key);
        }
        join(&mut self.policies.dir);
        if let Some(shadow) = &mut self.policies.shadow_dir {
            join(shadow);
        }
        join(&mut self.sms.path);
        join(&mut self.audit.journal_dir);
        if let Some(identity) = &mut self.upstream_identity
            && !identity.signing_key.as_os_str().is_empty()
        {
            join(&mut identity.signing_key);
            if let Some(p) = &mut identity.previous_key {
                join(p);
            }
        }
        if let Some(tls) = self.ext_authz.as_mut().and_then(|e| e.tls.as_mut()) {
            join(&mut tls.cert);
            join(&mut tls.key);
            join(&mut tls.client_ca);
        }
        for upstream in &mut self.upstreams {
            if let Some(tls) = &mut upstream.tls {
                for p in [&mut tls.ca, &mut tls.cert, &mut tls.key]
                    .into_iter()
                    .flatten()
                {
                    join(p);
                }
            }
        }
        let url = self.store.url.expose();
        if let Some(rest) = url.strip_prefix("sqlite://")
            && !rest.starts_with('/')
            && !rest.starts_with(':')
        {
            let (path, query) = match rest.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (rest, None),
            };
            let mut resolved = format!("sqlite://{}", base.join(path).display());
            if let Some(q) = query {
                resolved.push('?');
                resolved.push_str(q);
            }
            self.store.url = SecretString::new(resolved);
        }
    }

    /// Each section's checks, in this order: the first error found is the one reported.
    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let err = |key: &str, message: String| ConfigError {
            file: file.into(),
            key: key.into(),
            message,
        };
        self.server.validate(&err)?;
        self.admin.validate(self.server.listen, &err)?;
        self.store.validate(&err)?;
        self.sms.validate(&err)?;
        self.policies.validate(&err)?;
        self.audit.validate(&err)?;
        self.face.validate(&err)?;
        self.session.validate(&err)?;
        self.login.validate(&err)?;
        self.pages.validate(&err)?;
        self.telemetry.validate(&err)?;
        upstreams::validate(&self.upstreams, &err)?;
        if let Some(identity) = self.signing_identity() {
            identity.validate(&err)?;
        }
        if let Some(ext) = &self.ext_authz {
            let taken = [
                ("server.listen", self.server.listen),
                ("admin.listen", self.admin.listen),
            ];
            ext.validate(&taken, &err)?;
        }
        let upstream_names: Vec<&str> = self.upstreams.iter().map(|u| u.name.as_str()).collect();
        routes::validate(&self.routes, &upstream_names, &err)
    }

    /// `[upstream_identity]` when it signs assertions (present and not `disabled`).
    pub fn signing_identity(&self) -> Option<&UpstreamIdentityConfig> {
        self.upstream_identity.as_ref().filter(|i| !i.disabled)
    }

    /// Check every route's action against the actions the policy schema declares as downstream.
    pub fn check_actions(&self, file: &str, known: &[String]) -> Result<(), ConfigError> {
        for (i, route) in self.routes.iter().enumerate() {
            if !known.iter().any(|a| a == &route.action) {
                return Err(ConfigError {
                    file: file.into(),
                    key: format!("routes[{i}].action"),
                    message: format!(
                        "unknown action `{}`; the policy schema's downstream actions are: {}",
                        route.action,
                        known.join(", ")
                    ),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[expect(clippy::indexing_slicing, reason = "tests fail loudly")]
mod tests {
    use super::*;

    /// The smallest config that loads; the sections' tests edit it to make their errors.
    pub(super) const BASE: &str = r#"
[server]
listen = "127.0.0.1:8443"
[admin]
listen = "127.0.0.1:9901"
[store]
url = "sqlite://data/t.db"
[[upstreams]]
name = "etax"
url = "http://127.0.0.1:9000"
[[routes]]
prefix = "/api/declare"
methods = ["POST"]
action = "declare"
upstream = "etax"
"#;

    pub(super) fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, "test.toml", Path::new("/etc/taxgate"))
    }

    #[test]
    fn base_config_loads_and_resolves_paths() {
        let c = load(BASE).unwrap();
        assert_eq!(c.store.url.expose(), "sqlite:///etc/taxgate/data/t.db");
        assert_eq!(c.policies.dir, PathBuf::from("/etc/taxgate/policies"));
        assert_eq!(c.session.cookie_name, "taxgate_session");
        assert_eq!(c.login.max_password_failures, 5);
    }

    #[test]
    fn bad_address_names_the_key() {
        let e = load(&BASE.replace("127.0.0.1:9901", "not-an-address")).unwrap_err();
        assert_eq!(e.key, "admin.listen", "{e}");
    }

    #[test]
    fn unknown_field_names_the_key() {
        let e = load(&BASE.replace("[admin]", "[admin]\nlistn = 1")).unwrap_err();
        assert_eq!(e.key, "admin.listn", "{e}");
    }

    #[test]
    fn secrets_do_not_debug() {
        let c = load(&format!(
            "{BASE}\n[face]\ncallback_secret = \"hunter2-secret\"\n"
        ))
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    // Here rather than in upstreams.rs: it goes through `load` (relative TLS paths are resolved
    // there), and upstreams.rs stays free of the rest of the config so it can move.
    #[test]
    fn upstream_tls_is_checked() {
        let https = BASE.replace("http://127.0.0.1:9000", "https://backend.internal:8443");
        let c = load(&https).unwrap();
        assert!(c.upstreams[0].tls.is_none());
        let e = load(&BASE.replace(
            "url = \"http://127.0.0.1:9000\"",
            "url = \"http://127.0.0.1:9000\"\ntls = { ca = \"/\" }",
        ))
        .unwrap_err();
        assert_eq!(e.key, "upstreams[0].tls", "{e}");
        let e = load(&https.replace(
            "url = \"https://backend.internal:8443\"",
            "url = \"https://backend.internal:8443\"\ntls = { cert = \"/\" }",
        ))
        .unwrap_err();
        assert_eq!(e.key, "upstreams[0].tls.key", "{e}");
        let e = load(&https.replace(
            "url = \"https://backend.internal:8443\"",
            "url = \"https://backend.internal:8443\"\ntls = { ca = \"certs/ca.pem\" }",
        ))
        .unwrap_err();
        assert_eq!(e.key, "upstreams[0].tls.ca", "{e}");
        assert!(e.message.contains("/etc/taxgate/certs/ca.pem"), "{e}");
        let e = load(&BASE.replace("http://127.0.0.1:9000", "ftp://x")).unwrap_err();
        assert_eq!(e.key, "upstreams[0].url", "{e}");
    }
}
