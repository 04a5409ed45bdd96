//! The echo upstream: a real hyper HTTP/1.1 server on loopback, plain or behind TLS, that reports
//! every request it received ([`Seen`]) and answers by path (slow, streamed, cut, echo).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use crate::client::{BoxError, TestBody, full};

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
    /// Why the request body ended before its end (`None`: read completely).
    pub body_error: Option<String>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A real HTTP/1.1 upstream on loopback. Behaviour by path:
/// - `/slow/<ms>/...`: waits before answering;
/// - `/stream/<n>`: answers with `n` bytes, streamed in 64 KiB chunks;
/// - `/first-chunk/...`: reports (on `first_chunk`) as soon as the first body chunk arrives,
///   then reads the rest;
/// - `/cut/...`: announces 1000 bytes, sends 10 and closes;
/// - anything else: `200` with a JSON echo of method, path, headers and body length.
///
/// Every request is also sent on `seen`.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: mpsc::UnboundedReceiver<Seen>,
    pub first_chunk: mpsc::UnboundedReceiver<usize>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        Self::listen(None).await
    }

    /// The same upstream as [`Upstream::start`], behind TLS with `config` (which may require
    /// client certificates). Handshake failures are reported on the [`TlsErrors`] returned.
    pub async fn start_tls(config: Arc<rustls::ServerConfig>) -> (Upstream, TlsErrors) {
        let (err_tx, errors) = mpsc::unbounded_channel();
        let tls = (TlsAcceptor::from(config), err_tx);
        (Self::listen(Some(tls)).await, TlsErrors(errors))
    }

    /// Serve every connection on a fresh loopback port with [`upstream_handle`], after a TLS
    /// handshake (whose failure goes on the sender) when `tls` is given.
    async fn listen(tls: Option<(TlsAcceptor, mpsc::UnboundedSender<String>)>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let (chunk_tx, first_chunk) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (seen_tx, chunk_tx, tls) = (seen_tx.clone(), chunk_tx.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => serve_connection(stream, seen_tx, chunk_tx).await,
                        Some((acceptor, err_tx)) => match acceptor.accept(stream).await {
                            Ok(tls) => serve_connection(tls, seen_tx, chunk_tx).await,
                            Err(e) => {
                                let _ = err_tx.send(e.to_string());
                            }
                        },
                    }
                });
            }
        });
        Upstream {
            addr,
            seen,
            first_chunk,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `https://localhost:PORT` (the test certificates name `localhost`).
    pub fn https_url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    pub async fn next_seen(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(10), self.seen.recv())
            .await
            .expect("upstream saw no request in 10 s")
            .expect("upstream stopped")
    }
}

/// One HTTP/1.1 connection served by [`upstream_handle`].
async fn serve_connection<S>(
    io: S,
    seen_tx: mpsc::UnboundedSender<Seen>,
    chunk_tx: mpsc::UnboundedSender<usize>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| upstream_handle(req, seen_tx.clone(), chunk_tx.clone()));
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

async fn upstream_handle(
    req: Request<Incoming>,
    seen_tx: mpsc::UnboundedSender<Seen>,
    chunk_tx: mpsc::UnboundedSender<usize>,
) -> Result<Response<TestBody>, Infallible> {
    let path = req.uri().path().to_string();
    let mut seen = Seen {
        method: req.method().to_string(),
        path_and_query: req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: req
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect(),
        body_len: 0,
        body_error: None,
    };
    if let Some(rest) = after(&path, "/slow/") {
        let ms: u64 = rest.split('/').next().unwrap_or("0").parse().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut body = req.into_body();
    let mut first = true;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                seen.body_error = Some(e.to_string());
                break;
            }
        };
        if let Some(data) = frame.data_ref() {
            if first && path.contains("/first-chunk/") {
                let _ = chunk_tx.send(data.len());
            }
            first = false;
            seen.body_len += data.len() as u64;
        }
        // Trailers count as headers the upstream could be fooled by: recorded with them.
        if let Some(trailers) = frame.trailers_ref() {
            for (n, v) in trailers {
                seen.headers
                    .push((n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()));
            }
        }
    }
    let echo = serde_json::json!({
        "method": seen.method,
        "path": seen.path_and_query,
        "body_len": seen.body_len,
        "headers": seen.headers.iter().map(|(n, v)| vec![n.clone(), v.clone()]).collect::<Vec<_>>(),
    });
    let _ = seen_tx.send(seen);
    if let Some(n) = after(&path, "/stream/") {
        let total: usize = n.parse().unwrap_or(0);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let chunks = (0..total.div_ceil(chunk.len())).map(move |i| {
            let len = chunk.len().min(total - i * chunk.len());
            Ok::<_, BoxError>(hyper::body::Frame::data(chunk.slice(..len)))
        });
        return Ok(Response::builder()
            .header("content-length", total.to_string())
            .body(http_body_util::StreamBody::new(futures_util::stream::iter(chunks)).boxed())
            .unwrap());
    }
    if path.contains("/cut/") {
        // Send the head and 10 bytes, wait so they are flushed, then fail the body.
        let frames = futures_util::stream::unfold(0u8, |step| async move {
            match step {
                0 => Some((
                    Ok::<_, BoxError>(hyper::body::Frame::data(Bytes::from_static(b"0123456789"))),
                    1,
                )),
                1 => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Some((Err("cut".into()), 2))
                }
                _ => None,
            }
        });
        return Ok(Response::builder()
            .header("content-length", "1000")
            .body(http_body_util::StreamBody::new(frames).boxed())
            .unwrap());
    }
    Ok(Response::builder()
        .header("content-type", "application/json")
        .header("connection", "x-upstream-hop")
        .header("x-upstream-hop", "1")
        .header("keep-alive", "timeout=5")
        .body(full(echo.to_string()))
        .unwrap())
}

/// The rest of `path` after the first `marker` (markers may follow a route prefix).
fn after<'a>(path: &'a str, marker: &str) -> Option<&'a str> {
    path.find(marker).map(|i| &path[i + marker.len()..])
}

/// Everything the upstream has reported so far, without waiting.
pub fn drain_seen(up: &mut Upstream) -> Vec<Seen> {
    let mut out = Vec::new();
    while let Ok(s) = up.seen.try_recv() {
        out.push(s);
    }
    out
}

/// Handshake errors seen by a TLS upstream.
pub struct TlsErrors(pub mpsc::UnboundedReceiver<String>);
