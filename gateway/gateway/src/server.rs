//! Assembles a running gateway from a validated config: the store (migrated), the policy engine,
//! sessions, audit, upstreams, routes, the pipeline, the public and admin listeners, policy
//! reloads (watch, SIGHUP, admin) and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use taxgate_store::{AnyStore, Store};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::admin::{Admin, AdminState};
use crate::assertion::Assertions;
use crate::audit::{self, Audit, AuditWriter};
use crate::config::Config;
use crate::gate::Gate;
use crate::health::StoreHealth;
use crate::metrics::Metrics;
use crate::pipeline::{Endpoints, Gateway, NoEndpoints};
use crate::rescue::Rescue;
use crate::routes::RouteTable;
use crate::session::Sessions;
use crate::shadow::Shadow;
use taxgate_policy::PolicyEngine;
use taxgate_proxy::{self, ServeOptions, Upstream};

/// Room in the audit queue before requests wait for the writer.
const AUDIT_QUEUE: usize = 65_536;

/// Why the gateway did not start. The message begins with the config key at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A configured thing the gateway could not set up: the store, TLS, policies, the audit
    /// journal, routes, upstreams, the assertion keys.
    #[error("{key}: {message}")]
    Config {
        /// The config key at fault, e.g. `store.url`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A listener could not be bound.
    #[error("{key}: cannot listen on {addr}: {source}")]
    Bind {
        /// `server.listen` or `admin.listen`.
        key: &'static str,
        /// The address configured there.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn cfg_err(key: &str, message: impl Into<String>) -> StartError {
    StartError::Config {
        key: key.into(),
        message: message.into(),
    }
}

/// The parts of a gateway that outlive one listener: shared by the pipeline, the admin
/// endpoints and the login flows.
pub struct Core {
    /// The validated config the gateway started with.
    pub config: Config,
    /// Signs the identity assertions; `None` without `[upstream_identity]`.
    pub assertions: Option<Arc<Assertions>>,
    /// Whether the store answers; routed requests are refused while it does not.
    pub health: StoreHealth,
    /// The store: accounts, sessions, bindings, audit.
    pub store: AnyStore,
    /// The enforced policy set, swapped on reload.
    pub engine: Arc<PolicyEngine>,
    /// The session cache in front of the store.
    pub sessions: Arc<Sessions>,
    /// Records every decision and change before anything goes on.
    pub audit: Audit,
    /// The series of `/metrics`.
    pub metrics: Arc<Metrics>,
    /// `[policies] shadow_dir`: the candidate set evaluated beside the enforced one.
    pub shadow: Option<Arc<Shadow>>,
    /// Every policy decision goes through it.
    pub gate: Arc<Gate>,
    /// Every failure is answered by it.
    pub rescue: Rescue,
    /// The public listener's certificate, renewed on reload; `None` without `[server.tls]`.
    pub tls: Option<Arc<taxgate_proxy::tls::CertResolver>>,
    /// When the keys and the certificate were last reloaded, and why not.
    pub reloads: crate::reload::Reloads,
}

/// Open and migrate the store named by `store.url`.
pub async fn open_store(config: &Config) -> Result<AnyStore, StartError> {
    let store = AnyStore::connect(config.store.url.expose())
        .await
        .map_err(|e| cfg_err("store.url", format!("cannot open the store: {e}")))?;
    store
        .migrate()
        .await
        .map_err(|e| cfg_err("store.url", format!("cannot apply migrations: {e}")))?;
    Ok(store)
}

/// A gateway whose listeners are bound (so tests can bind port 0 and ask for the address) but
/// which does not serve until [`Server::run`].
pub struct Server {
    public: TcpListener,
    admin: TcpListener,
    tls: Option<TlsAcceptor>,
    core: Arc<Core>,
    gateway: Arc<Gateway>,
    audit_writer: AuditWriter,
    background: Vec<tokio::task::JoinHandle<()>>,
    options: ServeOptions,
    /// `[ext_authz]`'s listeners, when configured.
    ext: Option<crate::ext_authz::Bound>,
}

/// Trips every listener's shutdown.
#[derive(Clone)]
pub struct Shutdown(watch::Sender<bool>);

impl Shutdown {
    /// Not tripped yet.
    pub fn new() -> Self {
        Shutdown(watch::channel(false).0)
    }
    /// Trip it: every listener stops accepting and drains.
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
    /// Resolves once tripped, whether before or after this call (and when every clone is gone).
    pub fn wait(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.0.subscribe();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Server {
    /// Everything up to binding the listeners; the gateway's own endpoints are `NoEndpoints`.
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        Self::bind_with(config, |_| Arc::new(NoEndpoints)).await
    }

    /// As [`Server::bind`], with the gateway's own endpoints built from the core.
    pub async fn bind_with(
        config: Config,
        endpoints: impl FnOnce(&Arc<Core>) -> Arc<dyn Endpoints>,
    ) -> Result<Server, StartError> {
        let cert = match &config.server.tls {
            Some(tls) => Some(Arc::new(
                taxgate_proxy::tls::CertResolver::load(&tls.cert, &tls.key)
                    .map_err(|e| cfg_err("server.tls", e.to_string()))?,
            )),
            None => None,
        };
        let tls = match &cert {
            Some(cert) => Some(
                taxgate_proxy::tls::reloadable_acceptor(cert.clone())
                    .map_err(|e| cfg_err("server.tls", e.to_string()))?,
            ),
            None => {
                if !config.server.listen.ip().is_loopback() {
                    tracing::warn!(
                        listen = %config.server.listen,
                        "serving plain HTTP on a non-loopback address: configure [server.tls]"
                    );
                }
                None
            }
        };
        if config.dev.allow_all {
            tracing::warn!(
                "[dev] allow_all = true: EVERY ROUTED REQUEST IS FORWARDED WITHOUT AUTHORIZATION. \
                 Never use this outside development."
            );
        }
        let assertions = match (&config.upstream_identity, config.signing_identity()) {
            (_, Some(identity)) => {
                let a = Assertions::from_config(identity)
                    .map_err(|(key, message)| cfg_err(&key, message))?;
                warn_if_readable_by_others(&identity.signing_key);
                let keys = a.keys();
                tracing::info!(
                    kid = keys.key().kid(),
                    algorithm = %keys.key().algorithm(),
                    previous_kids = ?keys.previous_kids(),
                    "signing identity assertions for upstreams"
                );
                Some(Arc::new(a))
            }
            (Some(_), None) => {
                tracing::warn!(
                    "[upstream_identity] disabled = true: upstreams get identity headers without \
                     a signed assertion and cannot verify who sent them"
                );
                None
            }
            // Secure by default: an operator who forgot the section must not run a gateway whose
            // upstreams cannot tell its requests from anyone else's.
            (None, None) => {
                return Err(cfg_err(
                    "upstream_identity",
                    "the section is missing: add `[upstream_identity]` with `signing_key = \"FILE\"` \
                     (generate one with `taxgate keys generate --out FILE`), or say \
                     `disabled = true` to run without signed identity assertions",
                ));
            }
        };
        let engine = PolicyEngine::load(&config.policies.dir)
            .map(Arc::new)
            .map_err(|e| cfg_err("policies.dir", e.to_string()))?;
        config
            .check_actions(&config.source, engine.downstream_actions().as_slice())
            .map_err(|e| cfg_err(&e.key, e.message))?;
        let shadow_engine = match &config.policies.shadow_dir {
            Some(dir) => Some(
                PolicyEngine::load(dir)
                    .map(Arc::new)
                    .map_err(|e| cfg_err("policies.shadow_dir", e.to_string()))?,
            ),
            None => None,
        };
        let store = open_store(&config).await?;
        if config.policies.gate_on_widening {
            let gate = crate::widening::WideningGate::new(
                store.clone(),
                tokio::runtime::Handle::current(),
                config.policies.gate_window_hours,
                config.policies.gate_max_decisions,
            );
            engine.set_gate(Arc::new(gate));
            tracing::info!(
                window_hours = config.policies.gate_window_hours,
                max_decisions = config.policies.gate_max_decisions,
                "policy reloads are gated: a set that widens recorded decisions is refused"
            );
        }

        let upstreams = config
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| Upstream::new(i, &upstream_options(u)).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| cfg_err("upstreams", e))?;
        let routes =
            RouteTable::new(&config.routes, &upstreams).map_err(|e| cfg_err("routes", e))?;
        let mut metrics = Metrics::new(
            RouteTable::names(&config.routes),
            config.upstreams.iter().map(|u| u.name.clone()).collect(),
        );
        metrics.register(&audit::AUDIT_WRITTEN);
        metrics.register(&audit::AUDIT_REFUSED);
        metrics.register(&audit::AUDIT_WRITE_FAILURES);
        for counter in crate::telemetry::counters() {
            metrics.register(counter);
        }
        metrics.register(&crate::metrics::CLIENT_BODY_TIMEOUTS);
        metrics.register(&crate::session::SESSIONS_LOADED);
        metrics.register(&crate::session::SESSIONS_REVALIDATED);
        metrics.register(&crate::session::SLICES_BUILT);
        metrics.register(&crate::gate::DECISIONS_EVALUATED);
        metrics.register(&crate::reload::KEY_RELOAD_FAILURES);
        metrics.register(&crate::reload::TLS_RELOAD_FAILURES);
        let metrics = Arc::new(metrics);

        let sessions = Sessions::new(
            store.clone(),
            config.session.cache_capacity,
            config.session.entity_cache_capacity,
            Duration::from_secs(config.session.cache_ttl_secs),
            config.session.idle_timeout_secs,
        );
        sessions.follow_invalidations();
        let mut background = Vec::new();
        background.push(sessions.start_activity_writer());
        let health = StoreHealth::new();
        background.push(health.watch(store.clone()));
        background.push(crate::janitor::start(
            store.clone(),
            config.audit.retention_days,
        ));
        // What a crashed instance journaled but never shipped goes to the store first.
        let journal_dir = &config.audit.journal_dir;
        match crate::audit::journal::recover(journal_dir, &store).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(events = n, "recovered audit events from the journal"),
            Err(e) => return Err(cfg_err("audit.journal_dir", e)),
        }
        let (audit, audit_writer) = Audit::start(
            store.clone(),
            AUDIT_QUEUE,
            health.clone(),
            Some(journal_dir),
        )
        .map_err(|e| {
            cfg_err(
                "audit.journal_dir",
                format!("`{}`: {e}", journal_dir.display()),
            )
        })?;
        let shadow = shadow_engine.map(|engine| {
            tracing::info!(dir = %engine.dir().display(), version = %engine.version(), "shadow policy set loaded");
            Shadow::start(engine, audit.clone())
        });
        let gate = Gate::new(
            engine.clone(),
            sessions.clone(),
            audit.clone(),
            health.clone(),
            shadow.clone(),
            config.login.legacy_until_unix(),
            config.session.cookie_name.clone(),
        )
        .map_err(|e| cfg_err("policies.dir", e))?;
        let rescue = Rescue::new(engine.clone(), health.clone());
        let core = Arc::new(Core {
            config,
            assertions,
            health: health.clone(),
            store,
            engine,
            sessions,
            audit,
            metrics,
            shadow,
            gate: Arc::new(gate),
            rescue,
            tls: cert,
            reloads: crate::reload::Reloads::started(),
        });
        background.push(spawn_reload_on_sighup(core.clone()));
        let mut watchers = Vec::new();
        if core.config.policies.watch {
            for engine in core.engines() {
                match taxgate_policy::watch(engine) {
                    Ok(w) => watchers.push(w),
                    Err(e) => return Err(cfg_err("policies.watch", e.to_string())),
                }
            }
        }
        let endpoints = endpoints(&core);
        let gateway = Arc::new(Gateway {
            routes,
            cookie_name: core.config.session.cookie_name.clone(),
            reserved_cookie: Arc::from(core.config.session.cookie_name.as_str()),
            allow_all: core.config.dev.allow_all,
            gate: core.gate.clone(),
            rescue: core.rescue.clone(),
            endpoints,
            assertions: core.assertions.clone(),
            public_jwks: core
                .config
                .signing_identity()
                .is_some_and(|i| i.publish_jwks_publicly),
            metrics: core.metrics.clone(),
        });
        // The watchers live as long as the server: park them in a task that ends with the process.
        if !watchers.is_empty() {
            background.push(tokio::spawn(async move {
                let _keep = watchers;
                std::future::pending::<()>().await;
            }));
        }

        let public = TcpListener::bind(core.config.server.listen)
            .await
            .map_err(|source| StartError::Bind {
                key: "server.listen",
                addr: core.config.server.listen,
                source,
            })?;
        let admin = TcpListener::bind(core.config.admin.listen)
            .await
            .map_err(|source| StartError::Bind {
                key: "admin.listen",
                addr: core.config.admin.listen,
                source,
            })?;
        let s = &core.config.server;
        let trusted_proxies = s
            .trusted_proxy_nets()
            .map_err(|m| cfg_err("server.trusted_proxies", m))?;
        let hsts = s
            .tls
            .as_ref()
            .filter(|t| t.hsts_max_age_secs > 0)
            .and_then(|t| {
                http::HeaderValue::from_str(&format!("max-age={}", t.hsts_max_age_secs)).ok()
            });
        if s.tls.is_some() && !core.config.session.cookie_secure {
            tracing::warn!(
                "session.cookie_secure = false with TLS: the session cookie would also be sent over plain HTTP; set it to true"
            );
        }
        let options = ServeOptions {
            max_header_bytes: s.max_header_bytes,
            header_read_timeout: Duration::from_secs(s.header_read_timeout_secs),
            shutdown_grace: Duration::from_secs(s.shutdown_grace_secs),
            h2c: s.h2c,
            trusted_proxies: Arc::from(trusted_proxies),
            hsts,
            max_connections: connection_cap(&core.config),
            max_connections_per_address: s.max_connections_per_address,
            forwarded_host: s
                .public_origin
                .as_deref()
                .and_then(|o| {
                    o.split_once("://")
                        .map(|(_, host)| host.trim_end_matches('/'))
                })
                .and_then(|host| http::HeaderValue::from_str(host).ok()),
        };
        let ext = match &core.config.ext_authz {
            Some(config) => {
                let ext = crate::ext_authz::ExtAuthz::new(gateway.clone(), core.clone(), config);
                Some(crate::ext_authz::Bound::bind(ext, config).await?)
            }
            None => None,
        };
        Ok(Server {
            public,
            admin,
            tls,
            core,
            gateway,
            audit_writer,
            background,
            options,
            ext,
        })
    }

    /// The address the public listener is bound to (the port chosen, for port 0).
    pub fn public_addr(&self) -> SocketAddr {
        self.public.local_addr().unwrap_or(([0, 0, 0, 0], 0).into())
    }

    /// The address the admin listener is bound to (the port chosen, for port 0).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().unwrap_or(([0, 0, 0, 0], 0).into())
    }

    /// The `[ext_authz] listen` address (the port chosen, for port 0), when configured.
    pub fn ext_addr(&self) -> Option<SocketAddr> {
        self.ext.as_ref().and_then(|e| e.http_addr())
    }

    /// The `[ext_authz] grpc_listen` address, when configured.
    pub fn ext_grpc_addr(&self) -> Option<SocketAddr> {
        self.ext.as_ref().and_then(|e| e.grpc_addr())
    }

    /// The shared parts, for tests and the commands that need the store or the engine.
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Serve until `shutdown` trips; returns once in-flight requests drained (or the grace
    /// period ended) and the audit queue was written out.
    pub async fn run(self, shutdown: Shutdown) {
        tracing::info!(
            public = %self.public_addr(),
            admin = %self.admin_addr(),
            tls = self.tls.is_some(),
            policy_version = %self.core.engine.version(),
            "taxgate serving"
        );
        let reasons = self.core.engine.current().reasons.clone();
        let admin_state = Arc::new(AdminView {
            openapi: crate::openapi::document_json(
                self.core.config.server.public_origin.as_deref(),
                &reasons.codes(),
            ),
            core: self.core.clone(),
        });
        // The admin listener's connections are not the public ones the metrics count.
        let admin_connections = Arc::new(taxgate_proxy::ConnStats::default());
        let admin = tokio::spawn(taxgate_proxy::serve(
            self.admin,
            None,
            Arc::new(Admin(admin_state)),
            admin_connections,
            self.options.internal(),
            shutdown.wait(),
        ));
        let ext = self.ext.map(|ext| {
            tracing::info!(
                listen = ?ext.http_addr(),
                grpc_listen = ?ext.grpc_addr(),
                "external authorization serving"
            );
            let shutdown = shutdown.clone();
            let wait = move || -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
                Box::pin(shutdown.wait())
            };
            tokio::spawn(ext.serve(self.options.internal(), wait))
        });
        taxgate_proxy::serve(
            self.public,
            self.tls,
            self.gateway,
            self.core.metrics.connections.clone(),
            self.options,
            shutdown.wait(),
        )
        .await;
        let _ = admin.await;
        if let Some(ext) = ext {
            let _ = ext.await;
        }
        for task in self.background {
            task.abort();
        }
        // The activity of the last second is not lost with its writer.
        self.core.sessions.write_activity().await;
        let pending = self.core.audit.queued();
        if !self.audit_writer.finish(Duration::from_secs(10)).await {
            tracing::error!(pending, "audit queue not fully written at shutdown");
        }
    }
}

impl Core {
    /// The enforced policy engine and, when configured, the shadow one: what a reload reloads.
    pub fn engines(&self) -> Vec<Arc<PolicyEngine>> {
        let mut engines = vec![self.engine.clone()];
        if let Some(shadow) = &self.shadow {
            engines.push(shadow.engine().clone());
        }
        engines
    }

    /// Reload every policy engine (off the async workers: the gate may replay decisions).
    pub async fn reload_policies(&self) {
        for engine in self.engines() {
            let _ = tokio::task::spawn_blocking(move || engine.reload()).await;
        }
    }
}

/// The public listener's connection cap: `[server] max_connections`, or the descriptor limit
/// (its soft value raised to the hard one first) less what the store pool, the upstream pools,
/// the admin listener and files need, so that idle clients can never take the descriptors the
/// gateway itself needs.
fn connection_cap(config: &crate::config::Config) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the descriptor limit");
            1024
        }
    };
    let upstream_pools: u64 = config
        .upstreams
        .iter()
        .map(|u| u.pool_max_idle as u64 * 2)
        .sum();
    let reserve = 256 + u64::from(config.store.max_connections) + upstream_pools;
    let auto = usize::try_from(limit.saturating_sub(reserve).max(64)).unwrap_or(usize::MAX);
    let configured = config.server.max_connections;
    let cap = if configured == 0 { auto } else { configured };
    if configured > auto {
        tracing::warn!(
            configured,
            descriptor_limit = limit,
            "server.max_connections is above what the descriptor limit leaves: idle clients could starve the gateway"
        );
    }
    tracing::info!(
        max_connections = cap,
        descriptor_limit = limit,
        per_address = config.server.max_connections_per_address,
        "connection caps"
    );
    cap
}

/// SIGHUP reloads what `POST /admin/reload` does: policies, assertion keys, certificate.
fn spawn_reload_on_sighup(core: Arc<Core>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                tracing::info!(
                    "SIGHUP: reloading policies, assertion keys and the TLS certificate"
                );
                let status = core.reload_all().await;
                if status.get("ok") != Some(&serde_json::Value::Bool(true)) {
                    tracing::warn!(status = %status, "SIGHUP: a part did not reload");
                }
            }
        }
        #[cfg(not(unix))]
        let _ = core;
    })
}

struct AdminView {
    core: Arc<Core>,
    /// `/openapi.json`, built once at start with the policies' reasons of that moment.
    openapi: bytes::Bytes,
}

impl AdminState for AdminView {
    async fn ready(&self) -> Result<(), String> {
        self.core
            .store
            .ping()
            .await
            .map_err(|e| format!("store unreachable: {e}"))
    }

    fn metrics_text(&self) -> String {
        let c = self.core.engine.counters();
        let extra = format!(
            "# HELP taxgate_policy_reloads_total Policy sets activated (the first load included).\n\
             # TYPE taxgate_policy_reloads_total counter\n\
             taxgate_policy_reloads_total {}\n\
             # HELP taxgate_policy_reload_failures_total Reloads refused; the last good set stayed.\n\
             # TYPE taxgate_policy_reload_failures_total counter\n\
             taxgate_policy_reload_failures_total {}\n\
             # HELP taxgate_policy_last_reload_failed 1 while the newest policy files are not active.\n\
             # TYPE taxgate_policy_last_reload_failed gauge\n\
             taxgate_policy_last_reload_failed {}\n\
             # HELP taxgate_policy_gate_refusals_total Reloads refused by the widening gate.\n\
             # TYPE taxgate_policy_gate_refusals_total counter\n\
             taxgate_policy_gate_refusals_total {}\n\
             # HELP taxgate_sessions_cached Sessions in this instance's cache.\n\
             # TYPE taxgate_sessions_cached gauge\n\
             taxgate_sessions_cached {}\n\
             # HELP taxgate_audit_queue_depth Audit events waiting to be written.\n\
             # TYPE taxgate_audit_queue_depth gauge\n\
             taxgate_audit_queue_depth {}\n\
             # HELP taxgate_assertion_keys_last_reload_failed 1 while the newest assertion key files are not in force.\n\
             # TYPE taxgate_assertion_keys_last_reload_failed gauge\n\
             taxgate_assertion_keys_last_reload_failed {}\n\
             # HELP taxgate_tls_last_reload_failed 1 while the newest certificate files are not in force.\n\
             # TYPE taxgate_tls_last_reload_failed gauge\n\
             taxgate_tls_last_reload_failed {}\n",
            c.reloads,
            c.failed_reloads,
            u8::from(self.core.engine.status().last_error.is_some()),
            c.gate_refusals,
            self.core.sessions.cached(),
            self.core.audit.queued(),
            u8::from(self.core.reloads.keys_failed()),
            u8::from(self.core.reloads.tls_failed()),
        );
        let extra = match &self.core.shadow {
            Some(shadow) => extra + &shadow.metrics_text(),
            None => extra,
        };
        self.core.metrics.render(&extra)
    }

    fn policies_status(&self) -> serde_json::Value {
        let mut status = serde_json::to_value(self.core.engine.status()).unwrap_or_default();
        if let (Some(shadow), Some(map)) = (&self.core.shadow, status.as_object_mut()) {
            map.insert("shadow".to_string(), shadow.status());
        }
        status
    }

    async fn reload_policies(&self) -> serde_json::Value {
        self.core.reload_policies().await;
        self.policies_status()
    }

    async fn reload_all(&self) -> serde_json::Value {
        self.core.reload_all().await
    }

    fn assertions(&self) -> Option<&Assertions> {
        self.core.assertions.as_deref()
    }

    fn openapi(&self) -> Option<bytes::Bytes> {
        Some(self.openapi.clone())
    }
}

/// A private key others can read is as good as published: say so at start.
fn warn_if_readable_by_others(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "upstream_identity.signing_key is readable by group or others; chmod 600 it"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Resolves on SIGTERM or ctrl-c.
pub async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The proxy's options for one validated `[[upstreams]]` entry.
fn upstream_options(u: &crate::config::UpstreamConfig) -> taxgate_proxy::UpstreamOptions {
    let tls = u.tls.clone().unwrap_or_default();
    taxgate_proxy::UpstreamOptions {
        name: u.name.clone(),
        url: u.url.clone(),
        timeout: u.timeout(),
        pool_max_idle: u.pool_max_idle,
        tls_ca: tls.ca,
        tls_client_auth: tls.cert.zip(tls.key),
        tls_server_name: tls.server_name,
    }
}
