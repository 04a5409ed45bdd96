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

use super::{ConnInfo, Forward, headers};
use crate::body::{Body, BoxError, boxed};
use crate::config::UpstreamConfig;
use crate::error::{ApiError, Code};
use crate::metrics::Metrics;

pub struct Upstream {
    pub name: String,
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
    /// Build from a validated config entry.
    pub fn new(index: usize, config: &UpstreamConfig) -> Result<Upstream, String> {
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
        connector.set_connect_timeout(Some(config.timeout()));
        connector.enforce_http(!https);
        let tls = config.tls.clone().unwrap_or_default();
        let client_auth = tls.cert.as_deref().zip(tls.key.as_deref());
        let tls_config = super::tls::client_config(tls.ca.as_deref(), client_auth)
            .map_err(|e| format!("upstream `{}`: tls: {e}", config.name))?;
        let resolver: Arc<dyn ResolveServerName + Send + Sync> = match &tls.server_name {
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
            name: config.name.clone(),
            index,
            scheme_authority: format!("{}://{authority}", if https { "https" } else { "http" }),
            base_path: uri.path().trim_end_matches('/').to_string(),
            authority,
            timeout: config.timeout(),
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

/// Forward one allowed request and stream the answer back. Never buffers a body.
pub async fn forward(
    fwd: Forward,
    conn: ConnInfo,
    metrics: &Metrics,
    forwarded_host: Option<&http::HeaderValue>,
) -> Response<Body> {
    let Forward {
        mut request,
        upstream,
        identity,
        reserved_cookie,
        ..
    } = fwd;
    let Ok(uri) = upstream.target(request.uri()) else {
        return ApiError::from(Code::UpstreamUnavailable).into_response();
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
    // Tag the client's body errors so a failed exchange can be blamed on the right side.
    let request = request.map(|body| {
        body.map_err(|e| -> BoxError { Box::new(ClientBodyError(e)) })
            .boxed()
    });

    let started = Instant::now();
    let result = tokio::time::timeout(upstream.timeout, upstream.client.request(request)).await;
    match result {
        Ok(Err(e)) if caused_by_client_body(&e) => {
            // A malformed body (bad chunk, cut short, client gone mid-upload): the upstream
            // request was abandoned before its end, so the upstream never saw it complete.
            // The client's fault, not the upstream's: 400, and no upstream failure logged.
            tracing::info!(
                upstream = %upstream.name,
                error = %error_chain(&e),
                "client request body failed; upstream request abandoned"
            );
            ApiError::from(Code::InvalidInput).into_response()
        }
        Ok(Ok(response)) => {
            metrics.upstream_latency(upstream.index, started.elapsed().as_secs_f64());
            let (mut parts, body) = response.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers);
            headers::strip_upstream_response(&mut parts.headers, &reserved_cookie);
            // The timeout also bounds every silence of the upstream mid-body.
            let body = super::idle::IdleTimeout::new(body, upstream.timeout);
            Response::from_parts(parts, boxed(body))
        }
        Ok(Err(e)) => {
            metrics.upstream_latency(upstream.index, started.elapsed().as_secs_f64());
            // The client error alone says "client error (Connect)"; the cause (refused, TLS
            // handshake: unknown issuer, certificate required...) is what an operator needs.
            tracing::warn!(upstream = %upstream.name, error = %error_chain(&e), "upstream request failed");
            ApiError::from(Code::UpstreamUnavailable).into_response()
        }
        Err(_) => {
            metrics.upstream_latency(upstream.index, started.elapsed().as_secs_f64());
            tracing::warn!(
                upstream = %upstream.name,
                timeout_secs = upstream.timeout.as_secs(),
                "upstream did not answer in time"
            );
            ApiError::from(Code::UpstreamTimeout).into_response()
        }
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
