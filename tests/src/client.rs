//! The test client: request bodies, a response read to the end ([`Answer`]), and one HTTP/1.1
//! request on a fresh connection that panics on failure ([`send`]) or returns it ([`try_send`]).

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type TestBody = BoxBody<Bytes, BoxError>;

pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).map_err(|n| match n {}).boxed()
}

pub fn empty() -> TestBody {
    full(Bytes::new())
}

/// A response read to the end.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub version: http::Version,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    /// `error.code` of a contract error body.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", String::from_utf8_lossy(&self.body)))
            .to_string()
    }
}

/// A fresh HTTP/1.1 connection to `addr`, driven in the background.
async fn connect_http1(addr: SocketAddr) -> http1::SendRequest<TestBody> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    sender
}

/// One HTTP/1.1 request on a fresh connection.
pub async fn send(addr: SocketAddr, req: Request<TestBody>) -> Answer {
    let resp = connect_http1(addr).await.send_request(req).await.unwrap();
    read(resp).await
}

pub async fn read(resp: Response<Incoming>) -> Answer {
    read_to_end(resp).await.unwrap()
}

/// [`read`], with the body's failure returned.
async fn read_to_end(resp: Response<Incoming>) -> Result<Answer, hyper::Error> {
    let version = resp.version();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
        version,
    })
}

pub async fn get(addr: SocketAddr, path: &str) -> Answer {
    read(get_unread(addr, path).await).await
}

/// A `GET` for `gw.test` on a fresh connection, its body left to the caller (for tests of how
/// the body arrives).
pub async fn get_unread(addr: SocketAddr, path: &str) -> Response<Incoming> {
    let req = Request::get(path)
        .header("host", "gw.test")
        .body(empty())
        .unwrap();
    connect_http1(addr).await.send_request(req).await.unwrap()
}

/// `req` with the session cookie, when there is a session.
pub(crate) fn with_session(
    req: http::request::Builder,
    session: Option<&str>,
) -> http::request::Builder {
    match session {
        Some(token) => req.header("cookie", format!("taxgate_session={token}")),
        None => req,
    }
}

/// A JSON `POST` for `gw.test` on a fresh connection, in `session` when given.
pub(crate) async fn post_json(
    addr: SocketAddr,
    path: &str,
    body: serde_json::Value,
    session: Option<&str>,
) -> Answer {
    let req = Request::post(path)
        .header("host", "gw.test")
        .header("content-type", "application/json");
    let req = with_session(req, session);
    send(addr, req.body(full(body.to_string())).unwrap()).await
}

/// Panics, showing `what` and the body, unless `a` is a `200`.
#[track_caller]
pub(crate) fn assert_ok(a: &Answer, what: &str) {
    assert_eq!(
        a.status,
        StatusCode::OK,
        "{what}: {}",
        String::from_utf8_lossy(&a.body)
    );
}

/// Panics, showing the body, unless `a` answered `status`.
#[track_caller]
pub fn assert_status(a: &Answer, status: StatusCode) {
    assert_eq!(a.status, status, "{}", String::from_utf8_lossy(&a.body));
}

/// One HTTP/1.1 request on a fresh connection, with every failure returned instead of panicking:
/// `Err(Refused)` when the connection could not be made, `Err(Failed)` for anything after.
pub async fn try_send(addr: SocketAddr, req: Request<TestBody>) -> Result<Answer, SendError> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| SendError::Refused(e.to_string()))?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| SendError::Failed(e.to_string()))?;
    tokio::spawn(conn);
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| SendError::Failed(e.to_string()))?;
    read_to_end(resp)
        .await
        .map_err(|e| SendError::Failed(format!("body: {e}")))
}

#[derive(Debug)]
pub enum SendError {
    Refused(String),
    Failed(String),
}
