//! Assembles a running gateway from a validated config: upstreams, routes, the pipeline, the
//! public and admin listeners, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::admin::{Admin, AdminState};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::Gateway;
use crate::proxy::{self, ServeOptions, Upstream};
use crate::routes::RouteTable;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{key}: {message}")]
    Config { key: String, message: String },
    #[error("{key}: cannot listen on {addr}: {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A gateway whose listeners are bound (so tests can bind port 0 and ask for the address) but
/// which does not serve until [`Server::run`].
pub struct Server {
    public: TcpListener,
    admin: TcpListener,
    tls: Option<TlsAcceptor>,
    gateway: Arc<Gateway>,
    metrics: Arc<Metrics>,
    options: ServeOptions,
}

/// Trips every listener's shutdown.
#[derive(Clone)]
pub struct Shutdown(watch::Sender<bool>);

impl Shutdown {
    pub fn new() -> Self {
        Shutdown(watch::channel(false).0)
    }
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
    fn wait(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
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
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        let cfg_err = |key: &str, message: String| StartError::Config {
            key: key.into(),
            message,
        };
        let tls = match &config.server.tls {
            Some(tls) => Some(
                proxy::tls::acceptor(&tls.cert, &tls.key)
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
        let upstreams = config
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| Upstream::new(i, u).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| cfg_err("upstreams", e))?;
        let routes =
            RouteTable::new(&config.routes, &upstreams).map_err(|e| cfg_err("routes", e))?;
        let metrics = Arc::new(Metrics::new(
            RouteTable::names(&config.routes),
            config.upstreams.iter().map(|u| u.name.clone()).collect(),
        ));
        let gateway = Arc::new(Gateway::new(&config, routes));

        let public = TcpListener::bind(config.server.listen)
            .await
            .map_err(|source| StartError::Bind {
                key: "server.listen",
                addr: config.server.listen,
                source,
            })?;
        let admin = TcpListener::bind(config.admin.listen)
            .await
            .map_err(|source| StartError::Bind {
                key: "admin.listen",
                addr: config.admin.listen,
                source,
            })?;
        let options = ServeOptions {
            max_header_bytes: config.server.max_header_bytes,
            header_read_timeout: Duration::from_secs(config.server.header_read_timeout_secs),
            shutdown_grace: Duration::from_secs(config.server.shutdown_grace_secs),
            h2c: config.server.h2c,
        };
        Ok(Server {
            public,
            admin,
            tls,
            gateway,
            metrics,
            options,
        })
    }

    pub fn public_addr(&self) -> SocketAddr {
        self.public.local_addr().unwrap_or(([0, 0, 0, 0], 0).into())
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().unwrap_or(([0, 0, 0, 0], 0).into())
    }

    /// Serve until `shutdown` trips; returns once in-flight requests drained (or the grace
    /// period ended).
    pub async fn run(self, shutdown: Shutdown) {
        tracing::info!(
            public = %self.public_addr(),
            admin = %self.admin_addr(),
            tls = self.tls.is_some(),
            "taxgate serving"
        );
        let admin_state = Arc::new(AdminView {
            gateway: self.gateway.clone(),
            metrics: self.metrics.clone(),
        });
        let admin_metrics = Arc::new(Metrics::new(Vec::new(), Vec::new()));
        let admin = tokio::spawn(proxy::serve(
            self.admin,
            None,
            Arc::new(Admin(admin_state)),
            admin_metrics,
            self.options.clone(),
            shutdown.wait(),
        ));
        proxy::serve(
            self.public,
            self.tls,
            self.gateway,
            self.metrics,
            self.options,
            shutdown.wait(),
        )
        .await;
        let _ = admin.await;
    }
}

struct AdminView {
    #[allow(dead_code)]
    gateway: Arc<Gateway>,
    metrics: Arc<Metrics>,
}

impl AdminState for AdminView {
    async fn ready(&self) -> Result<(), String> {
        Ok(())
    }

    fn metrics_text(&self) -> String {
        self.metrics.render("")
    }

    fn policies_status(&self) -> serde_json::Value {
        serde_json::json!({"version": null, "loaded_at": null, "last_error": "no policy engine"})
    }

    async fn reload_policies(&self) -> serde_json::Value {
        self.policies_status()
    }
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
