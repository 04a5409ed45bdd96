//! taxgate-proxy: the reverse-proxy layer. It accepts connections (optionally TLS via rustls),
//! serves HTTP/1.1 and HTTP/2 with hyper, puts every request target in its one canonical form
//! ([`path`]), caps connections, hands each request to a [`Pipeline`] and forwards what the
//! pipeline lets through to a pooled [`Upstream`], streaming bodies both ways and keeping the
//! headers clean in both directions ([`headers`]). It knows nothing of tax, stores or policies:
//! whatever goes wrong here is a typed [`ProxyError`] the pipeline turns into an answer
//! ([`Pipeline::rescue`]), and every request's outcome, the upstream's included, is reported
//! back once ([`Pipeline::logging`]). The workspace's compiler keeps it that way: this crate
//! depends on no other crate of the workspace.

pub mod body;
pub mod headers;
pub mod idle;
pub mod path;
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
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::body::Body;
pub use upstream::{Upstream, UpstreamOptions};

/// What the proxy knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The client: the peer, or behind a trusted proxy the right-most untrusted
    /// `x-forwarded-for` entry (with the peer's port). Rate limits, challenge binding and the
    /// audit use it.
    pub remote: SocketAddr,
    /// The TCP peer itself.
    pub peer: SocketAddr,
    /// The peer is in `[server] trusted_proxies`: its forwarding headers are kept.
    pub trusted_peer: bool,
    /// The connection came through the TLS listener.
    pub tls: bool,
}

impl ConnInfo {
    /// A direct connection (no proxy in front).
    pub fn direct(peer: SocketAddr, tls: bool) -> ConnInfo {
        ConnInfo {
            remote: peer,
            peer,
            trusted_peer: false,
            tls,
        }
    }
}

/// What the pipeline decided for one request.
pub enum Step {
    /// Answer directly (gateway endpoints, errors, denials).
    Respond {
        /// The answer sent to the client.
        response: Response<Body>,
        /// Index of the matched route, for metrics.
        route: Option<usize>,
    },
    /// Forward to an upstream.
    Forward(Forward),
}

/// A request the pipeline allowed, with what the proxy must add to it.
pub struct Forward {
    /// The request to send, as the pipeline left it.
    pub request: Request<Body>,
    /// Where to send it.
    pub upstream: Arc<Upstream>,
    /// Identity headers to set after the client's `x-taxgate-*` headers were removed.
    pub identity: Vec<(HeaderName, HeaderValue)>,
    /// Index of the matched route, for metrics.
    pub route: usize,
    /// A cookie only the gateway sets: an upstream's `Set-Cookie` for it is removed.
    pub reserved_cookie: Arc<str>,
    /// The span of the upstream call (`Span::none()` when not traced): the exchange runs in
    /// it, and its answer's status is recorded on it.
    pub span: tracing::Span,
}

/// Why the proxy itself could not carry a request through. The proxy never answers on its own:
/// [`Pipeline::rescue`] turns each of these into a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The request target's path is refused ([`path::canonical`]).
    #[error("invalid request path: {0:?}")]
    InvalidPath(path::PathError),
    /// More than one `Host` header (RFC 9112 section 3.2).
    #[error("more than one Host header")]
    DuplicateHost,
    /// The client's request body failed mid-upload (bad chunk, cut short, client gone); the
    /// upstream request was abandoned before its end.
    #[error("client request body failed: {0}")]
    ClientBody(String),
    /// The client was still sending its request body, and the gateway waiting for it, when the
    /// upstream's timeout ran out: the client's slowness, not the upstream's.
    #[error("client request body still arriving after {secs} s")]
    ClientBodyTimeout {
        /// The upstream's timeout.
        secs: u64,
    },
    /// The upstream could not be reached or failed the exchange (refused, TLS, reset).
    #[error("upstream `{upstream}` failed: {cause}")]
    UpstreamUnavailable {
        /// The upstream's configured name.
        upstream: Arc<str>,
        /// The error chain, for operators.
        cause: String,
    },
    /// The upstream did not send its response head within its timeout.
    #[error("upstream `{upstream}` did not answer within {secs} s")]
    UpstreamTimeout {
        /// The upstream's configured name.
        upstream: Arc<str>,
        /// Its timeout.
        secs: u64,
    },
}

impl ProxyError {
    /// A short name of the failure, for traces and logs (`upstream_timeout`...).
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::InvalidPath(_) => "invalid_path",
            ProxyError::DuplicateHost => "duplicate_host",
            ProxyError::ClientBody(_) => "client_body",
            ProxyError::ClientBodyTimeout { .. } => "client_body_timeout",
            ProxyError::UpstreamUnavailable { .. } => "upstream_unavailable",
            ProxyError::UpstreamTimeout { .. } => "upstream_timeout",
        }
    }
}

/// What became of one forwarded request on the upstream leg.
#[derive(Debug, Clone)]
pub struct UpstreamOutcome {
    /// [`Upstream::index`] of the upstream.
    pub index: usize,
    /// Time to the upstream's response head (or to its failure); `None` when no request left.
    pub latency: Option<Duration>,
    /// The failure, if the exchange failed.
    pub error: Option<ProxyError>,
}

/// The outcome of one request, reported to [`Pipeline::logging`] once its response head is
/// ready (Pingora's `logging` phase): for metrics, logs and the audit of failures.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Index of the matched route, if any.
    pub route: Option<usize>,
    /// Status sent to the client.
    pub status: u16,
    /// The proxy's own refusal, when the request never reached the pipeline.
    pub refused: Option<ProxyError>,
    /// The upstream leg, when the request was forwarded.
    pub upstream: Option<UpstreamOutcome>,
    /// The connection the request came on.
    pub conn: ConnInfo,
}

/// The one extension point of the proxy (in the spirit of Pingora's `ProxyHttp`): everything
/// tax-specific enters here.
pub trait Pipeline: Send + Sync + 'static {
    /// The span the whole request runs in (trace context, route, status). Called first, with
    /// [`ConnInfo::trusted_peer`] already known; it may remove headers it alone reads (a trace
    /// context from an untrusted peer). Default: not traced.
    fn span(&self, _req: &mut Request<Incoming>, _conn: &ConnInfo) -> tracing::Span {
        tracing::Span::none()
    }

    /// Decide what happens to a request: answer it, or forward it.
    fn request(&self, req: Request<Incoming>, conn: ConnInfo) -> impl Future<Output = Step> + Send;

    /// The answer to a request the proxy could not carry through (linkerd2-proxy's
    /// `ServerRescue`): the only place a [`ProxyError`] becomes a response.
    fn rescue(&self, error: &ProxyError) -> Response<Body>;

    /// Called once per request when its response head is ready, with what became of it.
    fn logging(&self, outcome: &Outcome);
}

/// Connection counters of the listeners, shared with whoever renders metrics.
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Client connections open now.
    pub open_connections: std::sync::atomic::AtomicI64,
    /// Client connections accepted.
    pub connections_total: std::sync::atomic::AtomicU64,
    /// Connections closed at accept by the global cap.
    pub connections_refused_global: std::sync::atomic::AtomicU64,
    /// Connections closed at accept by the per-address cap.
    pub connections_refused_per_address: std::sync::atomic::AtomicU64,
}

/// Connection-level settings of a listener.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Largest request head accepted (HTTP/1.1 buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    /// How long a client may take to send a request head; also the wait for a first request,
    /// and the base of the HTTP/2 idle timeout.
    pub header_read_timeout: Duration,
    /// How long open connections may take to finish after shutdown begins.
    pub shutdown_grace: Duration,
    /// Accept HTTP/2 with prior knowledge on cleartext.
    pub h2c: bool,
    /// Peers whose `x-forwarded-*` headers are believed (`[server] trusted_proxies`).
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
    /// `Strict-Transport-Security` for every response on a TLS listener; `None`: not sent.
    pub hsts: Option<HeaderValue>,
    /// Open connections at most (0: no cap); more are closed at accept.
    pub max_connections: usize,
    /// Open connections from one client address (IPv6: one /64) at most (0: no cap).
    pub max_connections_per_address: usize,
    /// `x-forwarded-host` for every forwarded request (the host of `public_origin`); `None`:
    /// the request's own authority or `Host`.
    pub forwarded_host: Option<HeaderValue>,
}

impl ServeOptions {
    /// Options for a listener nobody outside reaches (admin): no caps, no proxies trusted.
    pub fn internal(&self) -> ServeOptions {
        ServeOptions {
            trusted_proxies: Arc::from(Vec::new()),
            hsts: None,
            max_connections: 0,
            max_connections_per_address: 0,
            forwarded_host: None,
            ..self.clone()
        }
    }
}

/// Open connections, in all and per client address, for the caps of [`ServeOptions`].
struct ConnCounts {
    max: usize,
    per_address: usize,
    open: std::sync::atomic::AtomicUsize,
    by_address: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// Holds one connection's place in [`ConnCounts`] until the connection ends.
struct ConnSlot {
    counts: Arc<ConnCounts>,
    key: std::net::IpAddr,
}

/// IPv6 clients get a /64 each (what one subscriber is usually given), IPv4 an address.
fn address_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            std::net::IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

impl ConnCounts {
    /// A slot for a new connection from `peer`, or which cap refused it.
    fn admit(self: &Arc<Self>, peer: std::net::IpAddr) -> Result<ConnSlot, &'static str> {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        if self.max > 0 && before >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err("global");
        }
        let key = address_key(peer);
        if self.per_address > 0 {
            let mut map = self
                .by_address
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let n = map.entry(key).or_insert(0);
            if *n >= self.per_address {
                drop(map);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err("per_address");
            }
            *n += 1;
        }
        Ok(ConnSlot {
            counts: self.clone(),
            key,
        })
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let c = &self.counts;
        c.open.fetch_sub(1, Ordering::AcqRel);
        if c.per_address > 0 {
            let mut map = c
                .by_address
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(n) = map.get_mut(&self.key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&self.key);
                }
            }
        }
    }
}

/// Serve `listener` until `shutdown` resolves, then stop accepting and let in-flight requests
/// finish for at most `options.shutdown_grace`.
pub async fn serve<P: Pipeline>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    pipeline: Arc<P>,
    metrics: Arc<ConnStats>,
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
    // The protocol is chosen before hyper sees the connection: by ALPN on TLS, by a peek at the
    // first bytes on cleartext with h2c. hyper-util's own sniffing is not used: a connection
    // still sniffing when a shutdown begins is dropped unanswered (its `graceful_shutdown`
    // cancels the read), losing a request the client had already sent.
    let builders = Arc::new(Builders {
        h1: builder.clone().http1_only(),
        h2: builder.http2_only(),
    });
    let h2c = tls.is_none() && options.h2c;
    // The shutdown signal for every connection, and a sender each connection holds until it
    // ends: the drain is over when no sender is left.
    let (stop_tx, stop) = watch::channel(false);
    let (alive, mut all_ended) = mpsc::channel::<()>(1);
    let first_request_wait = options.header_read_timeout;
    // HTTP/2 connections that send nothing at all for this long are closed (HTTP/1.1 idle
    // connections already end with the header timeout of their next request).
    let h2_idle = options.header_read_timeout.max(Duration::from_secs(1)) * 6;
    tokio::pin!(shutdown);

    let counts = Arc::new(ConnCounts {
        max: options.max_connections,
        per_address: options.max_connections_per_address,
        open: std::sync::atomic::AtomicUsize::new(0),
        by_address: Default::default(),
    });
    let per_request = Arc::new(PerRequest {
        trusted_proxies: options.trusted_proxies.clone(),
        hsts: options.hsts.clone(),
        forwarded_host: options.forwarded_host.clone(),
    });

    let accept = |stream: TcpStream, remote: SocketAddr| {
        // A dual-stack listener sees IPv4 clients as `::ffff:a.b.c.d`: read them as IPv4, or
        // they would share one /64 bucket and never match an IPv4 trusted proxy.
        let remote = SocketAddr::new(remote.ip().to_canonical(), remote.port());
        let slot = match counts.admit(remote.ip()) {
            Ok(slot) => slot,
            Err(cap) => {
                // Closed at once: an idle connection must not hold a descriptor the admin
                // listener, the store or a real client needs.
                let counter = if cap == "global" {
                    &metrics.connections_refused_global
                } else {
                    &metrics.connections_refused_per_address
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%remote, cap, "connection refused by a connection cap");
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        metrics.connections_total.fetch_add(1, Ordering::Relaxed);
        let conn = ConnInfo::direct(remote, tls.is_some());
        let pipeline = pipeline.clone();
        let per_request = per_request.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let pipeline = pipeline.clone();
            let per_request = per_request.clone();
            async move { Ok::<_, Infallible>(handle(&*pipeline, &per_request, req, conn).await) }
        });
        let mut stop = stop.clone();
        let alive = alive.clone();
        let builders = builders.clone();
        let tls = tls.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _alive = alive;
            let _slot = slot;
            metrics.open_connections.fetch_add(1, Ordering::Relaxed);
            let result = match tls {
                // The handshake gets the header timeout: a client that stops mid-ClientHello
                // must not hold its slot.
                Some(acceptor) => {
                    match tokio::time::timeout(first_request_wait, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            let h2 = tls_stream.get_ref().1.alpn_protocol() == Some(b"h2");
                            if h2 {
                                let io = idle::ReadIdle::new(tls_stream, h2_idle);
                                let conn = builders.h2.serve_connection(TokioIo::new(io), service);
                                serve_until_done(conn, stop).await
                            } else {
                                let conn = builders
                                    .h1
                                    .serve_connection(TokioIo::new(tls_stream), service);
                                serve_until_done(conn, stop).await
                            }
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, %remote, "tls handshake failed");
                            Ok(())
                        }
                        Err(_) => {
                            tracing::debug!(%remote, "tls handshake timed out");
                            Ok(())
                        }
                    }
                }
                None => {
                    let h2 = first_bytes(&stream, first_request_wait, &mut stop).await
                        && h2c
                        && tokio::time::timeout(first_request_wait, h2_preface(&stream))
                            .await
                            .is_ok_and(|is_h2| is_h2.unwrap_or(false));
                    if h2 {
                        let io = idle::ReadIdle::new(stream, h2_idle);
                        let conn = builders.h2.serve_connection(TokioIo::new(io), service);
                        serve_until_done(conn, stop).await
                    } else {
                        let conn = builders.h1.serve_connection(TokioIo::new(stream), service);
                        serve_until_done(conn, stop).await
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, %remote, "connection ended with an error");
            }
            metrics.open_connections.fetch_sub(1, Ordering::Relaxed);
        });
    };

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
        accept(stream, remote);
    }

    // Connections the kernel completed but we had not accepted yet are reset when the listener
    // closes, failing requests their clients may already have sent: take them in too (their
    // requests are answered like every in-flight one), then close.
    let mut late = 0;
    match listener.into_std() {
        Ok(std_listener) => {
            while let Ok((stream, remote)) = std_listener.accept() {
                match stream
                    .set_nonblocking(true)
                    .and_then(|()| TcpStream::from_std(stream))
                {
                    Ok(stream) => {
                        late += 1;
                        accept(stream, remote);
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot serve a late connection"),
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot drain the listener's backlog"),
    }
    tracing::info!(
        grace_secs = options.shutdown_grace.as_secs(),
        late_connections = late,
        "stopped accepting; draining in-flight requests"
    );
    let _ = stop_tx.send(true);
    drop(alive);
    if tokio::time::timeout(options.shutdown_grace, all_ended.recv())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; closing the remaining connections");
    }
}

/// How long a connection accepted before the shutdown may still take to send its first request
/// once the shutdown has begun.
const LATE_FIRST_REQUEST: Duration = Duration::from_secs(1);

/// Wait until the client's first bytes (or its close) can be read: hyper closes a connection it
/// has read nothing from as soon as a shutdown begins, even when the request already waits in
/// the socket. False when nothing came within `limit` (or within [`LATE_FIRST_REQUEST`] of the
/// shutdown), like hyper's own header timeout would.
async fn first_bytes(
    stream: &TcpStream,
    limit: Duration,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let readable = stream.readable();
    tokio::pin!(readable);
    tokio::select! {
        r = &mut readable => return r.is_ok(),
        () = tokio::time::sleep(limit) => return false,
        _ = stop.wait_for(|stopping| *stopping) => {}
    }
    matches!(
        tokio::time::timeout(LATE_FIRST_REQUEST, readable).await,
        Ok(Ok(()))
    )
}

/// Whether a cleartext client opens with the HTTP/2 connection preface (h2c, prior knowledge),
/// looked at without consuming it.
async fn h2_preface(stream: &TcpStream) -> std::io::Result<bool> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut buf = [0u8; PREFACE.len()];
    loop {
        let n = stream.peek(&mut buf).await?;
        // `peek` never reports more bytes than `buf` holds, so `seen` is always `Some`.
        let Some(seen) = buf.get(..n) else {
            return Ok(false);
        };
        if n == 0 || !PREFACE.starts_with(seen) {
            return Ok(false);
        }
        if n == PREFACE.len() {
            return Ok(true);
        }
        // A preface split over packets (rare): look again shortly, bounded by the caller.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Serve one connection; once `stop` turns true, finish what was begun and close. The
/// connection is polled once before the signal is looked at, so that hyper has read the bytes
/// already there (see [`first_bytes`]) and does not take the connection for an unused one.
async fn serve_until_done<I, S, B>(
    conn: auto::Connection<'_, I, S, TokioExecutor>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    tokio::pin!(conn);
    let first = std::future::poll_fn(|cx| match conn.as_mut().poll(cx) {
        std::task::Poll::Ready(result) => std::task::Poll::Ready(Some(result)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await;
    if let Some(result) = first {
        return result;
    }
    tokio::select! {
        result = conn.as_mut() => return result,
        _ = stop.wait_for(|stopping| *stopping) => {}
    }
    conn.as_mut().graceful_shutdown();
    conn.await
}

/// The connection builders of one listener, one per way of choosing the protocol.
struct Builders {
    h1: auto::Builder<TokioExecutor>,
    h2: auto::Builder<TokioExecutor>,
}

/// What every request on a listener is checked and given, whatever the pipeline.
struct PerRequest {
    trusted_proxies: Arc<[ipnet::IpNet]>,
    hsts: Option<HeaderValue>,
    forwarded_host: Option<HeaderValue>,
}

async fn handle<P: Pipeline>(
    pipeline: &P,
    per_request: &PerRequest,
    mut req: Request<Incoming>,
    mut conn: ConnInfo,
) -> Response<Body> {
    use tracing::Instrument as _;
    let trusted = &per_request.trusted_proxies;
    conn.trusted_peer = trusted.iter().any(|n| n.contains(&conn.peer.ip()));
    let span = pipeline.span(&mut req, &conn);
    handle_in(pipeline, per_request, req, conn)
        .instrument(span)
        .await
}

async fn handle_in<P: Pipeline>(
    pipeline: &P,
    per_request: &PerRequest,
    mut req: Request<Incoming>,
    mut conn: ConnInfo,
) -> Response<Body> {
    // RFC 9112 section 3.2: a request with more than one Host is refused.
    let hosts = req.headers().get_all(http::header::HOST).iter().count();
    let mut route = None;
    let mut refused = None;
    let mut upstream_outcome = None;
    let mut response = match canonical_target(&mut req) {
        Err(e) => {
            tracing::debug!(reason = ?e, peer = %conn.peer, "refused: invalid request path");
            let error = ProxyError::InvalidPath(e);
            let response = pipeline.rescue(&error);
            refused = Some(error);
            response
        }
        Ok(()) if hosts > 1 => {
            let error = ProxyError::DuplicateHost;
            let response = pipeline.rescue(&error);
            refused = Some(error);
            response
        }
        Ok(()) => {
            let trusted = &per_request.trusted_proxies;
            if conn.trusted_peer {
                let client = headers::client_address(conn.peer.ip(), req.headers(), trusted);
                conn.remote = SocketAddr::new(client, conn.peer.port());
            }
            match pipeline.request(req, conn).await {
                Step::Respond { response, route: r } => {
                    route = r;
                    response
                }
                Step::Forward(forward) => {
                    route = Some(forward.route);
                    let index = forward.upstream.index;
                    let forwarded_host = per_request.forwarded_host.as_ref();
                    let span = forward.span.clone();
                    let (result, latency) = {
                        use tracing::Instrument as _;
                        upstream::forward(forward, conn, forwarded_host)
                            .instrument(span.clone())
                            .await
                    };
                    let (response, error) = match result {
                        Ok(response) => {
                            span.record("http.response.status_code", response.status().as_u16());
                            (response, None)
                        }
                        Err(error) => {
                            span.record("error.type", error.kind());
                            (pipeline.rescue(&error), Some(error))
                        }
                    };
                    upstream_outcome = Some(UpstreamOutcome {
                        index,
                        latency,
                        error,
                    });
                    response
                }
            }
        }
    };
    if conn.tls
        && let Some(hsts) = &per_request.hsts
    {
        response
            .headers_mut()
            .insert(http::header::STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    pipeline.logging(&Outcome {
        route,
        status: response.status().as_u16(),
        refused,
        upstream: upstream_outcome,
        conn,
    });
    response
}

/// Check the request target's path ([`path::canonical`]) and put its canonical form in place,
/// so that everything after (routing, the decision, the audit, the upstream) sees one path.
fn canonical_target(req: &mut Request<Incoming>) -> Result<(), path::PathError> {
    let canonical = match path::canonical(req.uri().path())? {
        std::borrow::Cow::Borrowed(_) => return Ok(()),
        std::borrow::Cow::Owned(c) => c,
    };
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{canonical}?{q}"),
        None => canonical,
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(
        path_and_query
            .parse()
            .map_err(|_| path::PathError::BadEncoding)?,
    );
    *req.uri_mut() = http::Uri::from_parts(parts).map_err(|_| path::PathError::BadEncoding)?;
    Ok(())
}
