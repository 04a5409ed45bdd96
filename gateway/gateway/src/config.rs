//! Typed configuration (CONTRACT section 2), validated at start. Every error names the key at fault.
//!
//! Relative paths (TLS files, the policy directory, the SMS outbox, a `sqlite://` store path) are
//! resolved against the directory of the config file, so a config works wherever the process starts.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A config error: the key (or file) at fault and what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub message: String,
}

/// A string that never shows in `Debug` output or logs.
#[derive(Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: impl Into<String>) -> Self {
        SecretString(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub store: StoreConfig,
    #[serde(default)]
    pub policies: PoliciesConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub sms: SmsConfig,
    #[serde(default)]
    pub face: FaceConfig,
    #[serde(default)]
    pub session: SessionConfig,
    #[serde(default)]
    pub login: LoginConfig,
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub dev: DevConfig,
    /// Signed identity assertions for upstreams. Absent, the gateway refuses to start (secure
    /// by default); `disabled = true` turns them off explicitly (warned at start).
    pub upstream_identity: Option<UpstreamIdentityConfig>,
    /// The file this config came from, for error messages.
    #[serde(skip)]
    pub source: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub public_origin: Option<String>,
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
    #[serde(default = "defaults::yes")]
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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `Strict-Transport-Security: max-age=N` on every response; 0: not sent.
    #[serde(default = "defaults::hsts_max_age_secs")]
    pub hsts_max_age_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub url: SecretString,
    #[serde(default = "defaults::store_max_connections")]
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoliciesConfig {
    #[serde(default = "defaults::policies_dir")]
    pub dir: PathBuf,
    #[serde(default = "defaults::yes")]
    pub watch: bool,
    /// A candidate set evaluated beside the enforced one on live traffic, off the response
    /// path; disagreements are counted and audited, never enforced. Reloaded like `dir`.
    pub shadow_dir: Option<PathBuf>,
    /// Refuse a reload whose replay over the last `gate_window_hours` of decisions finds a
    /// deny→allow flip (the last good set stays active).
    #[serde(default)]
    pub gate_on_widening: bool,
    #[serde(default = "defaults::gate_window_hours")]
    pub gate_window_hours: u32,
    /// The gate replays at most this many of the most recent decisions, so reloads stay fast.
    #[serde(default = "defaults::gate_max_decisions")]
    pub gate_max_decisions: u32,
}

impl Default for PoliciesConfig {
    fn default() -> Self {
        PoliciesConfig {
            dir: defaults::policies_dir(),
            watch: true,
            shadow_dir: None,
            gate_on_widening: false,
            gate_window_hours: defaults::gate_window_hours(),
            gate_max_decisions: defaults::gate_max_decisions(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Audit events (and the entity slices only they refer to) older than this many days are
    /// deleted by the janitor. 0 keeps them forever.
    #[serde(default = "defaults::audit_retention_days")]
    pub retention_days: u32,
    /// Where each decision is appended before its request is forwarded, so a crash of the
    /// process cannot lose it; shipped to the store behind it and recovered at start. Relative
    /// to the config file. Each instance writes files of its own (several may share the
    /// directory); put it on local storage.
    #[serde(default = "defaults::audit_journal_dir")]
    pub journal_dir: PathBuf,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            retention_days: defaults::audit_retention_days(),
            journal_dir: defaults::audit_journal_dir(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SmsProvider {
    File,
    Webhook,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    #[serde(default = "defaults::sms_provider")]
    pub provider: SmsProvider,
    #[serde(default = "defaults::sms_path")]
    pub path: PathBuf,
    pub url: Option<String>,
    pub secret: Option<SecretString>,
    /// Also print codes to the terminal (the demo sets this; never in production).
    #[serde(default)]
    pub echo: bool,
}

impl Default for SmsConfig {
    fn default() -> Self {
        SmsConfig {
            provider: SmsProvider::File,
            path: defaults::sms_path(),
            url: None,
            secret: None,
            echo: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaceConfig {
    #[serde(default)]
    pub callback_secret: SecretString,
    #[serde(default = "defaults::face_ttl_secs")]
    pub ttl_secs: u64,
    /// Signed callbacks accepted per minute from one address (the app backend). They have this
    /// budget of their own instead of `[login] auth_requests_per_minute`; a callback whose
    /// signature does not verify counts against the per-address budget like any request.
    #[serde(default = "defaults::face_callbacks_per_minute")]
    pub callbacks_per_minute: u32,
}

impl Default for FaceConfig {
    fn default() -> Self {
        FaceConfig {
            callback_secret: SecretString::default(),
            ttl_secs: defaults::face_ttl_secs(),
            callbacks_per_minute: defaults::face_callbacks_per_minute(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    #[serde(default = "defaults::cookie_name")]
    pub cookie_name: String,
    #[serde(default = "defaults::yes")]
    pub cookie_secure: bool,
    #[serde(default = "defaults::idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    #[serde(default = "defaults::absolute_timeout_secs")]
    pub absolute_timeout_secs: u64,
    /// Backstop TTL of the per-instance session/entity cache; invalidation is immediate anyway.
    #[serde(default = "defaults::cache_ttl_secs")]
    pub cache_ttl_secs: u64,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginConfig {
    #[serde(default = "defaults::max_password_failures")]
    pub max_password_failures: u32,
    #[serde(default = "defaults::lockout_secs")]
    pub lockout_secs: u64,
    #[serde(default = "defaults::sms_resend_secs")]
    pub sms_resend_secs: u64,
    #[serde(default = "defaults::challenge_ttl_secs")]
    pub challenge_ttl_secs: u64,
    #[serde(default = "defaults::sms_daily_limit")]
    pub sms_daily_limit: u32,
    #[serde(default = "defaults::sms_code_ttl_secs")]
    pub sms_code_ttl_secs: u64,
    #[serde(default = "defaults::sms_max_attempts")]
    pub sms_max_attempts: u32,
    #[serde(default = "defaults::auth_requests_per_minute")]
    pub auth_requests_per_minute: u32,
    /// Codes per person per local day, whatever the number (429 `sms_daily_limit`).
    #[serde(default = "defaults::sms_per_person_daily")]
    pub sms_per_person_daily: u32,
    /// Codes per client address per hour (429 `sms_too_frequent`).
    #[serde(default = "defaults::sms_per_address_hourly")]
    pub sms_per_address_hourly: u32,
    /// Codes per minute from the whole deployment (429 `sms_too_frequent`).
    #[serde(default = "defaults::sms_global_per_minute")]
    pub sms_global_per_minute: u32,
    /// Failed password checks per client address per hour, across accounts (429 `rate_limited`).
    #[serde(default = "defaults::max_failures_per_address_hourly")]
    pub max_failures_per_address_hourly: u32,
    /// RFC 3339; absent: the legacy enterprise-password login is disabled.
    pub legacy_login_until: Option<String>,
}

impl Default for LoginConfig {
    fn default() -> Self {
        LoginConfig {
            max_password_failures: defaults::max_password_failures(),
            lockout_secs: defaults::lockout_secs(),
            sms_resend_secs: defaults::sms_resend_secs(),
            challenge_ttl_secs: defaults::challenge_ttl_secs(),
            sms_daily_limit: defaults::sms_daily_limit(),
            sms_code_ttl_secs: defaults::sms_code_ttl_secs(),
            sms_max_attempts: defaults::sms_max_attempts(),
            auth_requests_per_minute: defaults::auth_requests_per_minute(),
            sms_per_person_daily: defaults::sms_per_person_daily(),
            sms_per_address_hourly: defaults::sms_per_address_hourly(),
            sms_global_per_minute: defaults::sms_global_per_minute(),
            max_failures_per_address_hourly: defaults::max_failures_per_address_hourly(),
            legacy_login_until: None,
        }
    }
}

impl LoginConfig {
    /// `legacy_login_until` as unix seconds (validated at load, so this cannot fail afterwards).
    pub fn legacy_until_unix(&self) -> Option<i64> {
        self.legacy_login_until
            .as_deref()
            .and_then(|s| parse_rfc3339(s).ok())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub name: String,
    pub url: String,
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
    #[serde(default = "defaults::assertion_issuer")]
    pub issuer: String,
    /// Lifetime of one assertion (`exp - iat`).
    #[serde(default = "defaults::assertion_ttl_secs")]
    pub ttl_secs: u64,
    /// Also serve `/.well-known/jwks.json` on the public listener.
    #[serde(default)]
    pub publish_jwks_publicly: bool,
}

impl UpstreamConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub prefix: String,
    pub methods: Option<Vec<String>>,
    pub action: String,
    pub upstream: String,
}

/// Development-only switches. Never set them in production; the gateway warns loudly.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevConfig {
    /// Skip authorization entirely: every routed request is forwarded without a session.
    #[serde(default)]
    pub allow_all: bool,
}

mod defaults {
    use std::path::PathBuf;

    use super::SmsProvider;

    pub fn yes() -> bool {
        true
    }
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
    pub fn audit_journal_dir() -> PathBuf {
        PathBuf::from("audit-journal")
    }
    pub fn max_connections_per_address() -> usize {
        256
    }
    pub fn hsts_max_age_secs() -> u64 {
        31_536_000
    }
    pub fn store_max_connections() -> u32 {
        16
    }
    pub fn gate_window_hours() -> u32 {
        24
    }
    pub fn gate_max_decisions() -> u32 {
        10_000
    }
    /// Keep everything unless the operator chooses a period: an audit trail of who acted on
    /// whose tax records must not start vanishing after an upgrade.
    pub fn audit_retention_days() -> u32 {
        0
    }
    pub fn policies_dir() -> PathBuf {
        PathBuf::from("policies")
    }
    pub fn sms_provider() -> SmsProvider {
        SmsProvider::File
    }
    pub fn sms_path() -> PathBuf {
        PathBuf::from("data/sms-outbox.jsonl")
    }
    pub fn face_callbacks_per_minute() -> u32 {
        6000
    }
    pub fn face_ttl_secs() -> u64 {
        120
    }
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
        30
    }
    pub fn cache_capacity() -> u64 {
        200_000
    }
    pub fn entity_cache_capacity() -> u64 {
        2_048
    }
    pub fn max_password_failures() -> u32 {
        5
    }
    pub fn lockout_secs() -> u64 {
        1800
    }
    pub fn sms_resend_secs() -> u64 {
        60
    }
    pub fn challenge_ttl_secs() -> u64 {
        300
    }
    pub fn sms_daily_limit() -> u32 {
        10
    }
    pub fn sms_code_ttl_secs() -> u64 {
        300
    }
    pub fn sms_max_attempts() -> u32 {
        5
    }
    pub fn auth_requests_per_minute() -> u32 {
        300
    }
    pub fn sms_per_person_daily() -> u32 {
        20
    }
    pub fn sms_per_address_hourly() -> u32 {
        30
    }
    pub fn sms_global_per_minute() -> u32 {
        600
    }
    pub fn max_failures_per_address_hourly() -> u32 {
        100
    }
    pub fn upstream_timeout_secs() -> u64 {
        30
    }
    pub fn pool_max_idle() -> usize {
        64
    }
    pub fn assertion_issuer() -> String {
        "taxgate".into()
    }
    pub fn assertion_ttl_secs() -> u64 {
        60
    }
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
                .map(|span| key_at(text, span.start))
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
            self.store.url = SecretString(resolved);
        }
    }

    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let err = |key: &str, message: String| ConfigError {
            file: file.into(),
            key: key.into(),
            message,
        };
        if let Some(origin) = &self.server.public_origin
            && !(origin.starts_with("https://") || origin.starts_with("http://"))
        {
            return Err(err(
                "server.public_origin",
                format!("`{origin}` is not an origin; write it like `https://etax.example.cn`"),
            ));
        }
        if self.server.max_header_bytes < 8192 {
            return Err(err(
                "server.max_header_bytes",
                "must be at least 8192".into(),
            ));
        }
        if !matches!(self.server.log_format.as_str(), "text" | "json") {
            return Err(err(
                "server.log_format",
                format!("`{}` is not `text` or `json`", self.server.log_format),
            ));
        }
        if let Err(message) = self.server.trusted_proxy_nets() {
            return Err(err("server.trusted_proxies", message));
        }
        if let Some(tls) = &self.server.tls {
            for (key, path) in [("server.tls.cert", &tls.cert), ("server.tls.key", &tls.key)] {
                if let Err(e) = std::fs::metadata(path) {
                    return Err(err(key, format!("cannot read `{}`: {e}", path.display())));
                }
            }
        }
        if self.admin.listen == self.server.listen && self.admin.listen.port() != 0 {
            return Err(err(
                "admin.listen",
                "must differ from server.listen: admin endpoints are never public".into(),
            ));
        }
        let url = self.store.url.expose();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(err(
                "store.url",
                "expected `sqlite://PATH` or `postgres://USER:PASS@HOST/DB`".into(),
            ));
        }
        if self.store.max_connections == 0 {
            return Err(err("store.max_connections", "must be at least 1".into()));
        }
        if self.sms.provider == SmsProvider::Webhook {
            match &self.sms.url {
                Some(u) if u.starts_with("http://") || u.starts_with("https://") => {}
                Some(u) => return Err(err("sms.url", format!("`{u}` is not an http(s) URL"))),
                None => {
                    return Err(err(
                        "sms.url",
                        "required when provider = \"webhook\"".into(),
                    ));
                }
            }
            if self
                .sms
                .secret
                .as_ref()
                .is_none_or(|s| s.expose().is_empty())
            {
                return Err(err(
                    "sms.secret",
                    "required when provider = \"webhook\"".into(),
                ));
            }
        }
        if self.policies.gate_window_hours == 0 || self.policies.gate_window_hours > 24 * 366 {
            return Err(err(
                "policies.gate_window_hours",
                "must be between 1 and 8784 (a year)".into(),
            ));
        }
        if self.policies.gate_max_decisions == 0 || self.policies.gate_max_decisions > 1_000_000 {
            return Err(err(
                "policies.gate_max_decisions",
                "must be between 1 and 1000000".into(),
            ));
        }
        if let Some(shadow) = &self.policies.shadow_dir
            && shadow == &self.policies.dir
        {
            return Err(err(
                "policies.shadow_dir",
                "must differ from policies.dir: a shadow set is a candidate beside the enforced one"
                    .into(),
            ));
        }
        if self.audit.retention_days > 36_500 {
            return Err(err(
                "audit.retention_days",
                "must be at most 36500 (0 keeps audit events forever)".into(),
            ));
        }
        if self.face.callbacks_per_minute == 0 {
            return Err(err(
                "face.callbacks_per_minute",
                "must be at least 1".into(),
            ));
        }
        if self.face.ttl_secs == 0 {
            return Err(err("face.ttl_secs", "must be at least 1".into()));
        }
        let cookie = &self.session.cookie_name;
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
        if self.session.idle_timeout_secs == 0
            || self.session.idle_timeout_secs > self.session.absolute_timeout_secs
        {
            return Err(err(
                "session.idle_timeout_secs",
                "must be at least 1 and at most session.absolute_timeout_secs".into(),
            ));
        }
        for (key, value) in [
            (
                "login.max_password_failures",
                self.login.max_password_failures,
            ),
            ("login.sms_daily_limit", self.login.sms_daily_limit),
            ("login.sms_max_attempts", self.login.sms_max_attempts),
            (
                "login.auth_requests_per_minute",
                self.login.auth_requests_per_minute,
            ),
            (
                "login.sms_per_person_daily",
                self.login.sms_per_person_daily,
            ),
            (
                "login.sms_per_address_hourly",
                self.login.sms_per_address_hourly,
            ),
            (
                "login.sms_global_per_minute",
                self.login.sms_global_per_minute,
            ),
            (
                "login.max_failures_per_address_hourly",
                self.login.max_failures_per_address_hourly,
            ),
        ] {
            if value == 0 {
                return Err(err(key, "must be at least 1".into()));
            }
        }
        if let Some(until) = &self.login.legacy_login_until
            && parse_rfc3339(until).is_err()
        {
            return Err(err(
                "login.legacy_login_until",
                format!("`{until}` is not an RFC 3339 time like `2026-12-31T23:59:59+08:00`"),
            ));
        }

        let mut names = HashSet::new();
        for (i, up) in self.upstreams.iter().enumerate() {
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

        if let Some(identity) = self.signing_identity() {
            if identity.signing_key.as_os_str().is_empty() {
                return Err(err(
                    "upstream_identity.signing_key",
                    "is required (generate one with `taxgate keys generate --out FILE`), \
                     or set `disabled = true` to send no signed identity"
                        .into(),
                ));
            }
            for (key, path) in [
                ("upstream_identity.signing_key", Some(&identity.signing_key)),
                (
                    "upstream_identity.previous_key",
                    identity.previous_key.as_ref(),
                ),
            ] {
                if let Some(path) = path
                    && let Err(e) = std::fs::metadata(path)
                {
                    return Err(err(key, format!("cannot read `{}`: {e}", path.display())));
                }
            }
            if identity.issuer.is_empty() {
                return Err(err("upstream_identity.issuer", "must not be empty".into()));
            }
            if identity.ttl_secs == 0 || identity.ttl_secs > 3600 {
                return Err(err(
                    "upstream_identity.ttl_secs",
                    "must be between 1 and 3600 (assertions are meant to be short-lived)".into(),
                ));
            }
        }

        let mut seen = HashSet::new();
        for (i, route) in self.routes.iter().enumerate() {
            if !route.prefix.starts_with('/') {
                return Err(err(
                    &format!("routes[{i}].prefix"),
                    format!("`{}` must start with `/`", route.prefix),
                ));
            }
            // Letters, digits, `-._~` and `/` only: every backend reads those alike, so a
            // prefix cannot be spelt two ways (`%3A` and `:`, raw and encoded UTF-8).
            let plain = route.prefix.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/')
            });
            if !plain
                || taxgate_proxy::path::canonical(&route.prefix)
                    .ok()
                    .as_deref()
                    != Some(route.prefix.as_str())
            {
                return Err(err(
                    &format!("routes[{i}].prefix"),
                    format!(
                        "`{}` is not a plain path: letters, digits, `-._~` and `/` only, no dot or empty segments",
                        route.prefix
                    ),
                ));
            }
            if shadows_reserved(&route.prefix) {
                return Err(err(
                    &format!("routes[{i}].prefix"),
                    format!(
                        "`{}` lies inside the gateway's own paths (/auth, /account, /login, /assets)",
                        route.prefix
                    ),
                ));
            }
            if !names.contains(route.upstream.as_str()) {
                let known: Vec<&str> = self.upstreams.iter().map(|u| u.name.as_str()).collect();
                return Err(err(
                    &format!("routes[{i}].upstream"),
                    format!(
                        "unknown upstream `{}`; defined upstreams: {}",
                        route.upstream,
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
            if let Some(methods) = &route.methods {
                if methods.is_empty() {
                    return Err(err(
                        &format!("routes[{i}].methods"),
                        "must not be empty (leave it out to allow any method)".into(),
                    ));
                }
                for m in methods {
                    if http::Method::from_bytes(m.as_bytes()).is_err()
                        || m.to_ascii_uppercase() != *m
                    {
                        return Err(err(
                            &format!("routes[{i}].methods"),
                            format!("`{m}` is not an HTTP method in capitals like `GET`"),
                        ));
                    }
                }
            }
            let key = (route.prefix.clone(), route.methods.clone());
            if !seen.insert(key) {
                return Err(err(
                    &format!("routes[{i}].prefix"),
                    format!("`{}` is routed twice with the same methods", route.prefix),
                ));
            }
        }
        Ok(())
    }

    /// Check every route's action against the actions the policy schema declares as downstream.
    /// `[upstream_identity]` when it signs assertions (present and not `disabled`).
    pub fn signing_identity(&self) -> Option<&UpstreamIdentityConfig> {
        self.upstream_identity.as_ref().filter(|i| !i.disabled)
    }

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

/// Path prefixes the gateway serves itself.
const RESERVED: [&str; 4] = ["/auth", "/account", "/login", "/assets"];

/// Whether a request path belongs to the gateway itself (checked on every request: no
/// allocation).
pub fn is_reserved_path(path: &str) -> bool {
    RESERVED.iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
    })
}

/// Whether a route prefix lies inside the gateway's own paths (a parent prefix such as `/` is
/// fine: the gateway's paths are matched before any route).
fn shadows_reserved(prefix: &str) -> bool {
    is_reserved_path(prefix)
}

/// The dotted key whose value (or table header) covers byte offset `at` of the TOML text.
fn key_at(text: &str, at: usize) -> String {
    let mut table = String::new();
    let mut array_index: std::collections::HashMap<String, usize> = Default::default();
    let mut key = String::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        let line_end = offset + line.len();
        if let Some(name) = trimmed
            .strip_prefix("[[")
            .and_then(|r| r.split("]]").next())
        {
            let name = name.trim().to_string();
            let n = array_index
                .entry(name.clone())
                .and_modify(|n| *n += 1)
                .or_insert(0);
            table = format!("{name}[{n}]");
            key.clear();
        } else if let Some(name) = trimmed.strip_prefix('[').and_then(|r| r.split(']').next()) {
            table = name.trim().to_string();
            key.clear();
        } else if let Some((k, _)) = trimmed.split_once('=')
            && !trimmed.starts_with('#')
        {
            key = k.trim().to_string();
        }
        if at < line_end {
            break;
        }
        offset = line_end;
    }
    match (table.is_empty(), key.is_empty()) {
        (true, _) => key,
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
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

    fn load(text: &str) -> Result<Config, ConfigError> {
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
    fn replay_settings_default_and_errors_name_the_key() {
        let c = load(BASE).unwrap();
        assert_eq!(c.audit.retention_days, 0);
        assert!(!c.policies.gate_on_widening);
        assert_eq!(c.policies.gate_window_hours, 24);
        assert_eq!(c.policies.shadow_dir, None);
        let c = load(&format!("{BASE}\n[audit]\nretention_days = 7\n")).unwrap();
        assert_eq!(c.audit.retention_days, 7);
        let text = BASE.replace(
            "[store]",
            "[policies]\nshadow_dir = \"candidate\"\ngate_on_widening = true\n\n[store]",
        );
        let c = load(&text).unwrap();
        assert_eq!(
            c.policies.shadow_dir,
            Some(PathBuf::from("/etc/taxgate/candidate"))
        );
        assert!(c.policies.gate_on_widening);
        let e = load(&BASE.replace("[store]", "[policies]\ngate_window_hours = 0\n\n[store]"))
            .unwrap_err();
        assert_eq!(e.key, "policies.gate_window_hours");
        let e = load(&format!("{BASE}\n[audit]\nretention_days = 99999\n")).unwrap_err();
        assert_eq!(e.key, "audit.retention_days");
        let e = load(&format!("{BASE}\n[audit]\nretention_days = -1\n")).unwrap_err();
        assert!(e.key.starts_with("audit"), "{e}");
        let e = load(&BASE.replace(
            "[store]",
            "[policies]\ndir = \"p\"\nshadow_dir = \"p\"\n\n[store]",
        ))
        .unwrap_err();
        assert_eq!(e.key, "policies.shadow_dir");
    }

    #[test]
    fn unknown_upstream_is_named() {
        let e = load(&BASE.replace("upstream = \"etax\"", "upstream = \"nope\"")).unwrap_err();
        assert_eq!(e.key, "routes[0].upstream");
        assert!(e.message.contains("`nope`"), "{e}");
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
    fn missing_tls_file_is_named() {
        let e = load(&BASE.replace(
            "[admin]",
            "[server.tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\n[admin]",
        ))
        .unwrap_err();
        assert_eq!(e.key, "server.tls.cert", "{e}");
    }

    #[test]
    fn bad_legacy_until_is_named() {
        let e = load(&format!(
            "{BASE}\n[login]\nlegacy_login_until = \"tomorrow\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, "login.legacy_login_until");
    }

    #[test]
    fn login_limits_default_and_refuse_zero() {
        let c = load(BASE).unwrap();
        let l = &c.login;
        assert_eq!(
            (
                l.sms_per_person_daily,
                l.sms_per_address_hourly,
                l.sms_global_per_minute,
                l.max_failures_per_address_hourly
            ),
            (20, 30, 600, 100)
        );
        for key in [
            "sms_per_person_daily",
            "sms_per_address_hourly",
            "sms_global_per_minute",
            "max_failures_per_address_hourly",
        ] {
            let e = load(&format!("{BASE}\n[login]\n{key} = 0\n")).unwrap_err();
            assert_eq!(e.key, format!("login.{key}"));
        }
    }

    #[test]
    fn route_may_not_shadow_gateway_paths() {
        let e = load(&BASE.replace("/api/declare", "/auth/x")).unwrap_err();
        assert_eq!(e.key, "routes[0].prefix");
    }

    #[test]
    fn unknown_action_is_named() {
        let c = load(BASE).unwrap();
        let e = c
            .check_actions("test.toml", &["query".to_string()])
            .unwrap_err();
        assert_eq!(e.key, "routes[0].action");
    }

    #[test]
    fn secrets_do_not_debug() {
        let c = load(&format!(
            "{BASE}\n[face]\ncallback_secret = \"hunter2-secret\"\n"
        ))
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

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
    fn face_callbacks_have_their_own_budget() {
        assert_eq!(load(BASE).unwrap().face.callbacks_per_minute, 6000);
        let e = load(&format!("{BASE}\n[face]\ncallbacks_per_minute = 0\n")).unwrap_err();
        assert_eq!(e.key, "face.callbacks_per_minute", "{e}");
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

    #[test]
    fn second_route_index_in_key() {
        let text = format!(
            "{BASE}\n[[routes]]\nprefix = \"/api/q\"\naction = \"query\"\nupstream = \"zzz\"\n"
        );
        assert_eq!(load(&text).unwrap_err().key, "routes[1].upstream");
    }
}
