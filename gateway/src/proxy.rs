//! The reverse proxy: accepts connections (optionally TLS via rustls), serves HTTP/1.1 and HTTP/2
//! with hyper, hands each request to a [`Pipeline`] and forwards what the pipeline lets through.
//! It knows nothing of tax: sessions, decisions and audit live behind the pipeline.

pub mod headers;
pub mod idle;
pub mod tls;
pub mod upstream;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::body::Body;
use crate::metrics::Metrics;
pub use upstream::Upstream;

/// What the proxy knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    pub tls: bool,
}

/// What the pipeline decided for one request.
pub enum Step {
    /// Answer directly (gateway endpoints, errors, denials).
    Respond {
        response: Response<Body>,
        /// Index of the matched route, for metrics.
        route: Option<usize>,
    },
    /// Forward to an upstream.
    Forward(Forward),
}

/// A request the pipeline allowed, with what the proxy must add to it.
pub struct Forward {
    pub request: Request<Body>,
    pub upstream: Arc<Upstream>,
    /// Identity headers to set after the client's `x-taxgate-*` headers were removed.
    pub identity: Vec<(HeaderName, HeaderValue)>,
    pub route: usize,
}

/// The one extension point of the proxy (in the spirit of Pingora's `ProxyHttp`): everything
/// tax-specific enters here.
pub trait Pipeline: Send + Sync + 'static {
    /// Decide what happens to a request: answer it, or forward it.
    fn request(&self, req: Request<Incoming>, conn: ConnInfo) -> impl Future<Output = Step> + Send;
}

/// Connection-level settings of a listener.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Accept HTTP/2 with prior knowledge on cleartext.
    pub h2c: bool,
}

/// Serve `listener` until `shutdown` resolves, then stop accepting and let in-flight requests
/// finish for at most `options.shutdown_grace`.
pub async fn serve<P: Pipeline>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    pipeline: Arc<P>,
    metrics: Arc<Metrics>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .max_buf_size(options.max_header_bytes)
        .header_read_timeout(options.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(options.max_header_bytes).unwrap_or(u32::MAX));
    if tls.is_none() && !options.h2c {
        builder = builder.http1_only();
    }
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);

    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        metrics.connections_total.fetch_add(1, Ordering::Relaxed);
        let conn = ConnInfo {
            remote,
            tls: tls.is_some(),
        };
        let pipeline = pipeline.clone();
        let metrics_conn = metrics.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let pipeline = pipeline.clone();
            let metrics = metrics_conn.clone();
            async move { Ok::<_, Infallible>(handle(&*pipeline, &metrics, req, conn).await) }
        });
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let tls = tls.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            metrics.open_connections.fetch_add(1, Ordering::Relaxed);
            let result = match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls_stream) => {
                        let conn = builder
                            .serve_connection_with_upgrades(TokioIo::new(tls_stream), service)
                            .into_owned();
                        watcher.watch(conn).await
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, %remote, "tls handshake failed");
                        Ok(())
                    }
                },
                None => {
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    watcher.watch(conn).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, %remote, "connection ended with an error");
            }
            metrics.open_connections.fetch_sub(1, Ordering::Relaxed);
        });
    }

    drop(listener);
    tracing::info!(
        grace_secs = options.shutdown_grace.as_secs(),
        "stopped accepting; draining in-flight requests"
    );
    if tokio::time::timeout(options.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; closing the remaining connections");
    }
}

async fn handle<P: Pipeline>(
    pipeline: &P,
    metrics: &Metrics,
    req: Request<Incoming>,
    conn: ConnInfo,
) -> Response<Body> {
    match pipeline.request(req, conn).await {
        Step::Respond { response, route } => {
            metrics.request(route, response.status().as_u16());
            response
        }
        Step::Forward(forward) => {
            let route = forward.route;
            let response = upstream::forward(forward, conn, metrics).await;
            metrics.request(Some(route), response.status().as_u16());
            response
        }
    }
}
