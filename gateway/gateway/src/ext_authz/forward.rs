//! The HTTP listener of `[ext_authz]`: `/ext/forward-auth` (Traefik, Caddy), `/ext/auth-request`
//! (nginx), `/ext/envoy/…` (Envoy's HTTP service) and the AuthZEN endpoints. Served by the
//! proxy crate like every listener (TLS, HTTP/1.1 and HTTP/2, the path rules on the request
//! target itself), with this [`Pipeline`] answering every request: nothing is forwarded from
//! here.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use taxgate_proxy::body::{Body, empty, full};
use taxgate_proxy::{ConnInfo, Outcome, Pipeline, ProxyError, Step};

use super::{Answer, Denial, ExtAuthz, HEADER_ERROR, HEADER_EXT_TOKEN, Mode, client_of};
use crate::error::{ApiError, Code};

/// `path_prefix` of Envoy's HTTP service: the original path follows it.
pub(super) const ENVOY_PREFIX: &str = "/ext/envoy";
/// Traefik ForwardAuth and Caddy `forward_auth`.
const FORWARD_AUTH: &str = "/ext/forward-auth";
/// nginx `auth_request`.
const AUTH_REQUEST: &str = "/ext/auth-request";

/// Envoy's HTTP service reads this response header as the list of request headers to remove.
const ENVOY_HEADERS_TO_REMOVE: &str = "x-envoy-auth-headers-to-remove";

/// The HTTP listener's pipeline.
pub(super) struct Listener {
    ext: Arc<ExtAuthz>,
}

impl Listener {
    pub(super) fn new(ext: Arc<ExtAuthz>) -> Listener {
        Listener { ext }
    }

    async fn answer(&self, req: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
        let presented = req
            .headers()
            .get(HEADER_EXT_TOKEN)
            .map(HeaderValue::as_bytes);
        if !self.ext.caller_admitted(presented) {
            let denial = self.ext.refuse(Code::ExtTokenRequired.into()).await;
            return denial_response(denial, None);
        }
        let path = req.uri().path();
        let client = client_of(req.headers(), conn.peer.ip());
        match path {
            FORWARD_AUTH => self.forward_auth(&req, client).await,
            AUTH_REQUEST => self.auth_request(&req, client).await,
            super::authzen::EVALUATION | super::authzen::EVALUATIONS => {
                super::authzen::evaluate(&self.ext, req, client).await
            }
            super::authzen::CONFIGURATION => super::authzen::configuration(&req, conn.tls),
            _ => match path.strip_prefix(ENVOY_PREFIX) {
                Some(original) if original.starts_with('/') => {
                    self.envoy(&req, original, client).await
                }
                _ => denial_response(self.ext.refuse(Code::NotFound.into()).await, None),
            },
        }
    }

    /// Traefik ForwardAuth and Caddy `forward_auth`: the original request is in
    /// `X-Forwarded-Method` / `X-Forwarded-Uri`; the answer is the inline one.
    async fn forward_auth(
        &self,
        req: &Request<Incoming>,
        client: std::net::IpAddr,
    ) -> Response<Body> {
        let h = req.headers();
        let (method, target) = match (
            original_method(h, "x-forwarded-method"),
            one(h, "x-forwarded-uri"),
        ) {
            (Ok(m), Ok(t)) => (m, t),
            (Err(e), _) | (_, Err(e)) => {
                return denial_response(self.ext.refuse(e).await, None);
            }
        };
        if let Some(name) = taxgate_proxy::headers::override_header(h, None) {
            let refused = ApiError::field(Code::InvalidInput, name.as_str());
            return denial_response(self.ext.refuse(refused).await, None);
        }
        match self
            .ext
            .decide(&method, target, h, client, Mode::ForwardAuth)
            .await
        {
            Answer::Allow { mut identity, .. } => {
                if absent_as_empty(req) {
                    for name in IDENTITY {
                        if !identity.iter().any(|(n, _)| n == *name) {
                            identity.push(((*name).clone(), HeaderValue::from_static("")));
                        }
                    }
                }
                allow_response(identity, None)
            }
            Answer::Deny(denial) => denial_response(denial, None),
        }
    }

    /// nginx `auth_request`: only 2xx, 401 and 403 are understood; the real code goes in
    /// `x-taxgate-error` and the body.
    async fn auth_request(
        &self,
        req: &Request<Incoming>,
        client: std::net::IpAddr,
    ) -> Response<Body> {
        let h = req.headers();
        let (method, target) = match (
            original_method(h, "x-original-method"),
            one(h, "x-original-uri"),
        ) {
            (Ok(m), Ok(t)) => (m, t),
            (Err(e), _) | (_, Err(e)) => {
                return denial_response(self.ext.refuse(e).await, Some(StatusCode::FORBIDDEN));
            }
        };
        // nginx passes the client's headers on itself: one that would make the backend run
        // another method or URL than the one decided is refused (`X-Original-URI` is nginx's
        // own, as the configuration sets it).
        if let Some(name) = taxgate_proxy::headers::override_header(h, Some("x-original-uri")) {
            let refused = ApiError::field(Code::InvalidInput, name.as_str());
            return denial_response(self.ext.refuse(refused).await, Some(StatusCode::FORBIDDEN));
        }
        match self
            .ext
            .decide(&method, target, h, client, Mode::AuthRequest)
            .await
        {
            Answer::Allow { identity, .. } => allow_response(identity, None),
            Answer::Deny(denial) => {
                let status = if denial.unauthenticated() {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::FORBIDDEN
                };
                denial_response(denial, Some(status))
            }
        }
    }

    /// Envoy's HTTP service: the original method and path (after `/ext/envoy`) and headers.
    async fn envoy(
        &self,
        req: &Request<Incoming>,
        original: &str,
        client: std::net::IpAddr,
    ) -> Response<Body> {
        let target = match req.uri().query() {
            Some(q) => format!("{original}?{q}"),
            None => original.to_string(),
        };
        match self
            .ext
            .decide(
                req.method(),
                &target,
                req.headers(),
                client,
                Mode::EnvoyHttp,
            )
            .await
        {
            Answer::Allow { identity, edits } => {
                let mut identity = identity;
                identity.extend(edits.set);
                let remove = (!edits.remove.is_empty())
                    .then(|| HeaderValue::from_str(&edits.remove.join(",")).ok())
                    .flatten();
                allow_response(identity, remove)
            }
            Answer::Deny(denial) => denial_response(denial, None),
        }
    }
}

impl Pipeline for Listener {
    async fn request(&self, req: Request<Incoming>, conn: ConnInfo) -> Step {
        Step::Respond {
            response: self.answer(req, conn).await,
            route: None,
        }
    }

    fn rescue(&self, error: &ProxyError) -> Response<Body> {
        crate::rescue::proxy(error).into_response()
    }

    fn logging(&self, _outcome: &Outcome) {}
}

/// The identity headers a session may lack (agency outside agent entry, person in a legacy
/// session, enterprise in person entry).
static IDENTITY: [&http::HeaderName; 5] = [
    &crate::session::HEADER_PERSON,
    &crate::session::HEADER_ENTERPRISE,
    &crate::session::HEADER_ROLE,
    &crate::session::HEADER_ENTRY,
    &crate::session::HEADER_AGENCY,
];

/// `?absent=empty`: the caller wants every identity header, empty when the session has none.
/// Caddy 2.6's `copy_headers` copies its own unresolved placeholder for a header the auth
/// response lacks (`{http.reverse_proxy.header.X-Taxgate-Agency}`) and skips an empty one.
fn absent_as_empty(req: &Request<Incoming>) -> bool {
    req.uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "absent=empty"))
}

/// The one value of header `name`, which the calling proxy must send exactly once.
fn one<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, ApiError> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => v
            .to_str()
            .map_err(|_| ApiError::field(Code::InvalidInput, name)),
        _ => Err(ApiError::field(Code::InvalidInput, name)),
    }
}

/// The original method from header `name` (case-sensitive, as the routes list methods).
fn original_method(headers: &HeaderMap, name: &'static str) -> Result<Method, ApiError> {
    one(headers, name).and_then(|m| {
        Method::from_bytes(m.as_bytes()).map_err(|_| ApiError::field(Code::InvalidInput, name))
    })
}

/// 200, empty, with the identity headers (and Envoy's removal list).
fn allow_response(
    identity: Vec<(http::HeaderName, HeaderValue)>,
    remove: Option<HeaderValue>,
) -> Response<Body> {
    let mut r = Response::new(empty());
    let headers = r.headers_mut();
    for (name, value) in identity {
        headers.insert(name, value);
    }
    if let Some(remove) = remove {
        headers.insert(ENVOY_HEADERS_TO_REMOVE, remove);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The inline refusal (or `status` instead of its own), with its code in `x-taxgate-error`.
fn denial_response(denial: Denial, status: Option<StatusCode>) -> Response<Body> {
    let mut r = Response::new(full(denial.body));
    *r.status_mut() = status.unwrap_or(denial.status);
    let headers = r.headers_mut();
    for (name, value) in denial.headers {
        headers.insert(name, value);
    }
    if let Ok(code) = HeaderValue::from_str(&denial.code) {
        headers.insert(HEADER_ERROR.clone(), code);
    }
    r
}
