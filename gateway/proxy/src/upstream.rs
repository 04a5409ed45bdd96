//! Named upstreams: a pooled keep-alive HTTP client each (plain HTTP, or TLS with the
//! upstream's CA, SNI and optional client certificate), with the upstream's timeout, and the
//! forwarding of one request with streaming bodies both ways.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Response, Uri, Version, header};
use http_body_util::BodyExt;
use hyper_rustls::{
    DefaultServerNameResolver, FixedServerNameResolver, HttpsConnector, ResolveServerName,
};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::{ConnInfo, Forward, ProxyError, headers};
use crate::body::{Body, BoxError, boxed};

/// What an upstream is built from (the gateway's `[[upstreams]]` entry, validated).
#[derive(Debug, Clone, Default)]
pub struct UpstreamOptions {
    /// Name, for logs and metrics.
    pub name: String,
    /// `http://` or `https://` base URL; its path is prefixed to every forwarded path.
    pub url: String,
    /// Connect timeout, and the longest wait for the response head or between body chunks.
    pub timeout: Duration,
    /// Idle pooled connections kept per upstream host.
    pub pool_max_idle: usize,
    /// PEM CA certificates the upstream's certificate must chain to; `None`: the webpki roots.
    pub tls_ca: Option<std::path::PathBuf>,
    /// PEM client certificate chain and its key, for mutual TLS.
    pub tls_client_auth: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Name sent as SNI and checked against the certificate; `None`: the URL's host.
    pub tls_server_name: Option<String>,
}

/// One named upstream: its pooled client, base URL and timeout.
pub struct Upstream {
    /// The configured name.
    pub name: Arc<str>,
    /// Index in the config's upstream list (metrics slot).
    pub index: usize,
    scheme_authority: String,
    base_path: String,
    authority: http::uri::Authority,
    timeout: Duration,
    /// One connector type for both schemes; an `https://` upstream's connector refuses plain
    /// HTTP, so no request to it can leave unencrypted.
    client: Client<HttpsConnector<HttpConnector>, Body>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("url", &self.scheme_authority)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Build from validated options; `index` is its place in the configuration (metrics slot).
    pub fn new(index: usize, config: &UpstreamOptions) -> Result<Upstream, String> {
        let uri: Uri = config
            .url
            .parse()
            .map_err(|e| format!("upstream `{}`: {e}", config.name))?;
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("upstream `{}` has no host", config.name))?;
        let https = uri.scheme_str() == Some("https");
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        connector.set_connect_timeout(Some(config.timeout));
        connector.enforce_http(!https);
        let client_auth = config
            .tls_client_auth
            .as_ref()
            .map(|(cert, key)| (cert.as_path(), key.as_path()));
        let tls_config = super::tls::client_config(config.tls_ca.as_deref(), client_auth)
            .map_err(|e| format!("upstream `{}`: tls: {e}", config.name))?;
        let resolver: Arc<dyn ResolveServerName + Send + Sync> = match &config.tls_server_name {
            Some(name) => {
                let name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| {
                    format!("upstream `{}`: tls.server_name `{name}`: {e}", config.name)
                })?;
                Arc::new(FixedServerNameResolver::new(name))
            }
            None => Arc::new(DefaultServerNameResolver::default()),
        };
        let connector = HttpsConnector::new(connector, tls_config, https, resolver);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(config.pool_max_idle)
            .build(connector);
        Ok(Upstream {
            name: Arc::from(config.name.as_str()),
            index,
            scheme_authority: format!("{}://{authority}", if https { "https" } else { "http" }),
            base_path: uri.path().trim_end_matches('/').to_string(),
            authority,
            timeout: config.timeout,
            client,
        })
    }

    fn target(&self, original: &Uri) -> Result<Uri, http::Error> {
        let path_and_query = original
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        Uri::try_from(format!(
            "{}{}{}",
            self.scheme_authority, self.base_path, path_and_query
        ))
        .map_err(Into::into)
    }
}

/// Forward one allowed request and stream the answer back. Never buffers a body. Returns the
/// response or why there is none, and the time to the upstream's answer (`None`: nothing was
/// sent).
pub async fn forward(
    fwd: Forward,
    conn: ConnInfo,
    forwarded_host: Option<&http::HeaderValue>,
) -> (Result<Response<Body>, ProxyError>, Option<Duration>) {
    let Forward {
        mut request,
        upstream,
        identity,
        reserved_cookie,
        ..
    } = fwd;
    let uri = match upstream.target(request.uri()) {
        Ok(uri) => uri,
        Err(e) => {
            let error = ProxyError::UpstreamUnavailable {
                upstream: upstream.name.clone(),
                cause: format!("cannot build the upstream target: {e}"),
            };
            return (Err(error), None);
        }
    };
    // The configured public host, else the request's own: an absolute-form target's authority
    // wins over `Host` (RFC 9112 section 3.2.2).
    let original_host = forwarded_host.cloned().or_else(|| {
        request
            .uri()
            .authority()
            .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
            .or_else(|| request.headers().get(header::HOST).cloned())
    });
    *request.uri_mut() = uri;
    // The upstream leg is HTTP/1.1 whatever the client spoke.
    *request.version_mut() = Version::HTTP_11;
    let h = request.headers_mut();
    headers::strip_hop_by_hop(h);
    headers::strip_client_controlled(h, conn.trusted_peer);
    headers::set_forwarded(h, conn.peer.ip(), conn.tls, original_host);
    if let Ok(host) = http::HeaderValue::from_str(upstream.authority.as_str()) {
        h.insert(header::HOST, host);
    }
    for (name, value) in identity {
        h.insert(name, value);
    }
    // Tag the client's body errors so a failed exchange can be blamed on the right side, and
    // watch whether the exchange waits on the client's bytes when the timeout runs out.
    let upload = Arc::new(UploadState::default());
    let request = request.map(|body| {
        Tracked {
            inner: body,
            state: upload.clone(),
        }
        .map_err(|e| -> BoxError { Box::new(ClientBodyError(e)) })
        .boxed()
    });

    let started = Instant::now();
    let result = tokio::time::timeout(upstream.timeout, upstream.client.request(request)).await;
    let latency = Some(started.elapsed());
    match result {
        Ok(Err(e)) if caused_by_client_body(&e) => {
            // A malformed body (bad chunk, cut short, client gone mid-upload): the upstream
            // request was abandoned before its end, so the upstream never saw it complete.
            // The client's fault, not the upstream's: no upstream failure logged.
            let chain = error_chain(&e);
            tracing::info!(
                upstream = %upstream.name,
                error = %chain,
                "client request body failed; upstream request abandoned"
            );
            (Err(ProxyError::ClientBody(chain)), None)
        }
        Ok(Ok(response)) => {
            let (mut parts, body) = response.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers);
            headers::strip_upstream_response(&mut parts.headers, &reserved_cookie);
            // The timeout also bounds every silence of the upstream mid-body.
            let body = super::idle::IdleTimeout::new(body, upstream.timeout);
            (Ok(Response::from_parts(parts, boxed(body))), latency)
        }
        Ok(Err(e)) => {
            // The client error alone says "client error (Connect)"; the cause (refused, TLS
            // handshake: unknown issuer, certificate required...) is what an operator needs.
            let cause = error_chain(&e);
            tracing::warn!(upstream = %upstream.name, error = %cause, "upstream request failed");
            let error = ProxyError::UpstreamUnavailable {
                upstream: upstream.name.clone(),
                cause,
            };
            (Err(error), latency)
        }
        Err(_) if upload.waiting_on_client() => {
            // The upstream was still reading the request body as the client sent it: the
            // client is the slow side (a trickled upload), not the upstream.
            tracing::info!(
                upstream = %upstream.name,
                timeout_secs = upstream.timeout.as_secs(),
                "client request body still arriving at the upstream's timeout"
            );
            let error = ProxyError::ClientBodyTimeout {
                secs: upstream.timeout.as_secs(),
            };
            // Not the upstream's latency: it was waiting for the client too.
            (Err(error), None)
        }
        Err(_) => {
            tracing::warn!(
                upstream = %upstream.name,
                timeout_secs = upstream.timeout.as_secs(),
                "upstream did not answer in time"
            );
            let error = ProxyError::UpstreamTimeout {
                upstream: upstream.name.clone(),
                secs: upstream.timeout.as_secs(),
            };
            (Err(error), latency)
        }
    }
}

/// Whether the upload of one request body is over, and whether the exchange is waiting for the
/// client's next bytes (the last poll of the body found none).
#[derive(Debug, Default)]
struct UploadState {
    ended: std::sync::atomic::AtomicBool,
    waiting: std::sync::atomic::AtomicBool,
}

impl UploadState {
    fn waiting_on_client(&self) -> bool {
        use std::sync::atomic::Ordering;
        !self.ended.load(Ordering::Acquire) && self.waiting.load(Ordering::Acquire)
    }
}

pin_project_lite::pin_project! {
    /// The client's request body on its way upstream, reporting to an [`UploadState`].
    struct Tracked {
        #[pin]
        inner: Body,
        state: Arc<UploadState>,
    }
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::sync::atomic::Ordering;
        let this = self.project();
        let poll = this.inner.poll_frame(cx);
        match &poll {
            std::task::Poll::Pending => this.state.waiting.store(true, Ordering::Release),
            std::task::Poll::Ready(frame) => {
                this.state.waiting.store(false, Ordering::Release);
                if !matches!(frame, Some(Ok(_))) {
                    this.state.ended.store(true, Ordering::Release);
                }
            }
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// An error of the client's request body, as it reaches the upstream client (which wraps it).
#[derive(Debug)]
struct ClientBodyError(BoxError);

impl std::fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "client request body: {}", self.0)
    }
}

impl std::error::Error for ClientBodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// Whether `e`, an upstream exchange's error, has the client's request body as its cause.
fn caused_by_client_body(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if err.is::<ClientBodyError>() {
            return true;
        }
        next = err.source();
    }
    false
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapper(Option<BoxError>);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("wrapper")
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.0
                .as_deref()
                .map(|e| e as &(dyn std::error::Error + 'static))
        }
    }

    #[test]
    fn a_client_body_error_is_found_anywhere_in_the_chain() {
        let tagged: BoxError = Box::new(ClientBodyError("invalid chunk size".into()));
        let deep = Wrapper(Some(Box::new(Wrapper(Some(tagged)))));
        assert!(caused_by_client_body(&deep));
        assert!(error_chain(&deep).contains("client request body: invalid chunk size"));
    }

    #[test]
    fn an_upstream_error_is_not_blamed_on_the_client() {
        let refused = Wrapper(Some(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        ))));
        assert!(!caused_by_client_body(&refused));
        assert!(!caused_by_client_body(&Wrapper(None)));
    }
}
