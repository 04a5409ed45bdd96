//! Envoy `ext_authz` v3 over gRPC: `envoy.service.auth.v3.Authorization/Check` on
//! `[ext_authz] grpc_listen`, served by tonic (h2c, or mutual TLS) with the protos of the
//! `envoy-types` crate. The original request is `attributes.request.http`; an allowed request
//! gets an `OkResponse` that sets the identity headers and removes what the inline gateway would
//! remove, a refused one a `DeniedResponse` with the inline status and error body.
//!
//! Every refusal is a `CheckResponse`, never a gRPC error: an Envoy configured with
//! `failure_mode_allow` would let a request through on a gRPC error.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HeaderAppendAction,
    HttpStatusCode,
};
use envoy_types::ext_authz::v3::{
    CheckResponseExt, DeniedHttpResponseBuilder, OkHttpResponseBuilder,
};
use envoy_types::pb::envoy::config::core::v3::address::Address;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::Connected;

use super::{Answer, Denial, ExtAuthz, HEADER_ERROR, HEADER_EXT_TOKEN, Mode};
use crate::error::{ApiError, Code};

/// How long a caller may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The `Authorization` service.
struct Check {
    ext: Arc<ExtAuthz>,
}

/// The caller's address, as a request extension.
#[derive(Clone, Copy, Debug)]
struct Peer(SocketAddr);

#[tonic::async_trait]
impl Authorization for Check {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let presented = request
            .metadata()
            .get(HEADER_EXT_TOKEN)
            .map(|v| v.as_bytes());
        if !self.ext.caller_admitted(presented) {
            let denial = self.ext.refuse(Code::ExtTokenRequired.into()).await;
            return Ok(tonic::Response::new(denied(denial)));
        }
        let peer = request
            .extensions()
            .get::<Peer>()
            .map(|p| p.0.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let request = request.into_inner();
        let attributes = request.attributes.unwrap_or_default();
        let client = attributes
            .source
            .as_ref()
            .and_then(|s| s.address.as_ref())
            .and_then(|a| a.address.as_ref())
            .and_then(|a| match a {
                Address::SocketAddress(s) => s.address.parse::<IpAddr>().ok(),
                _ => None,
            })
            .unwrap_or(peer);
        let Some(http) = attributes.request.and_then(|r| r.http) else {
            let denial = self
                .ext
                .refuse(ApiError::field(
                    Code::InvalidInput,
                    "attributes.request.http",
                ))
                .await;
            return Ok(tonic::Response::new(denied(denial)));
        };
        let Ok(method) = Method::from_bytes(http.method.as_bytes()) else {
            let denial = self
                .ext
                .refuse(ApiError::field(
                    Code::InvalidInput,
                    "attributes.request.http.method",
                ))
                .await;
            return Ok(tonic::Response::new(denied(denial)));
        };
        let headers = header_map(&http);
        let answer = self
            .ext
            .decide(&method, &http.path, &headers, client, Mode::EnvoyGrpc)
            .await;
        Ok(tonic::Response::new(match answer {
            Answer::Allow { identity, edits } => {
                let mut ok = OkHttpResponseBuilder::new();
                let overwrite = Some(HeaderAppendAction::OverwriteIfExistsOrAdd);
                for (name, value) in identity.iter().chain(edits.set.iter()) {
                    if let Ok(v) = value.to_str() {
                        ok.add_header(name.as_str(), v, overwrite, false);
                    }
                }
                for name in edits.remove {
                    ok.remove_header(name);
                }
                let mut response = CheckResponse::with_status(tonic::Status::ok("allowed"));
                response.set_http_response(ok);
                response
            }
            Answer::Deny(denial) => denied(denial),
        }))
    }
}

/// The client's headers as Envoy sent them: the `headers` map (lowercase names, repeated
/// headers joined), or `header_map` when Envoy was told to send that instead. Pseudo-headers
/// (`:path`, `:method`…) are not headers.
fn header_map(
    http: &envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest,
) -> HeaderMap {
    let mut out = HeaderMap::new();
    let mut put = |name: &str, value: &[u8]| {
        if name.starts_with(':') {
            return;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            out.append(n, v);
        }
    };
    for (name, value) in &http.headers {
        put(name, value.as_bytes());
    }
    if http.headers.is_empty()
        && let Some(map) = &http.header_map
    {
        for h in &map.headers {
            let value = if h.raw_value.is_empty() {
                h.value.as_bytes()
            } else {
                h.raw_value.as_slice()
            };
            put(&h.key, value);
        }
    }
    out
}

/// A refusal: the inline status and body, `UNAUTHENTICATED` for 401, else `PERMISSION_DENIED`.
fn denied(denial: Denial) -> CheckResponse {
    let status = if denial.unauthenticated() {
        tonic::Status::unauthenticated(denial.code.clone())
    } else {
        tonic::Status::permission_denied(denial.code.clone())
    };
    let mut http = DeniedHttpResponseBuilder::new();
    let code = HttpStatusCode::try_from(i32::from(denial.status.as_u16()))
        .unwrap_or(HttpStatusCode::Forbidden);
    http.set_http_status(code);
    let overwrite = Some(HeaderAppendAction::OverwriteIfExistsOrAdd);
    for (name, value) in &denial.headers {
        if let Ok(v) = value.to_str() {
            http.add_header(name.as_str(), v, overwrite, false);
        }
    }
    http.add_header(
        HEADER_ERROR.as_str(),
        denial.code.as_str(),
        overwrite,
        false,
    );
    http.set_body(String::from_utf8_lossy(&denial.body).into_owned());
    let mut response = CheckResponse::with_status(status);
    response.set_http_response(http);
    response
}

/// A caller's connection (TCP, or TLS over it) with its address for the service.
struct Conn<S> {
    io: S,
    peer: SocketAddr,
}

impl<S> Connected for Conn<S> {
    type ConnectInfo = Peer;
    fn connect_info(&self) -> Peer {
        Peer(self.peer)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Conn<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Conn<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Either transport, one type for tonic.
enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Serve `Check` on `listener` until `shutdown` resolves. TLS handshakes run on their own
/// tasks, so a slow caller does not hold up the others.
pub(super) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    ext: Arc<ExtAuthz>,
    shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Conn<Io>>(64);
    let acceptor = tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "ext_authz grpc: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let tx = tx.clone();
            match &tls {
                None => {
                    if tx
                        .send(Conn {
                            io: Io::Plain(stream),
                            peer,
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                        {
                            Ok(Ok(s)) => {
                                let _ = tx
                                    .send(Conn {
                                        io: Io::Tls(Box::new(s)),
                                        peer,
                                    })
                                    .await;
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, %peer, "ext_authz grpc: tls handshake failed");
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "ext_authz grpc: tls handshake timed out")
                            }
                        }
                    });
                }
            }
        }
    });
    let incoming = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|conn| (Ok::<_, std::io::Error>(conn), rx))
    });
    // One service, no router: tonic's `router` feature (axum) is not needed.
    let result = tonic::transport::Server::builder()
        .serve_with_incoming_shutdown(AuthorizationServer::new(Check { ext }), incoming, shutdown)
        .await;
    acceptor.abort();
    if let Err(e) = result {
        tracing::error!(error = %e, "ext_authz grpc listener failed");
    }
}
