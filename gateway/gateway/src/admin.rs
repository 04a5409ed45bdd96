//! The admin listener: `/healthz`, `/readyz`, `/metrics`, `/admin/policies`,
//! `POST /admin/policies/reload`, `POST /admin/reload` (policies, assertion keys, TLS
//! certificate), `/.well-known/jwks.json` (the keys that verify `x-taxgate-assertion`) and
//! `/openapi.json` (the OpenAPI 3.1 description of the public API, [`crate::openapi`]). Served
//! on its own address, never on the public listener.

use std::future::Future;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use crate::assertion::{Assertions, JWKS_PATH};
use crate::error::{ApiError, Code};
use taxgate_proxy::body::{Body, full};
use taxgate_proxy::{ConnInfo, Outcome, Pipeline, ProxyError, Step};

/// What the admin endpoints need from the running gateway.
pub trait AdminState: Send + Sync + 'static {
    /// `Ok` when the store answers and a policy set is loaded; `Err` says what is missing.
    fn ready(&self) -> impl Future<Output = Result<(), String>> + Send;
    /// The Prometheus text exposition served at `/metrics`.
    fn metrics_text(&self) -> String;
    /// The `/admin/policies` answer: version and load time of the active set, why the last reload
    /// failed (if it did), the reload gate's last word and the shadow set's, when configured.
    fn policies_status(&self) -> serde_json::Value;
    /// Reload the policy files now (`POST /admin/policies/reload`) and answer the status
    /// afterwards; a refused set leaves the active one in place.
    fn reload_policies(&self) -> impl Future<Output = serde_json::Value> + Send;
    /// Reload everything that reloads without a restart (`POST /admin/reload`, SIGHUP):
    /// policies, assertion keys, TLS certificate. Default: the policies only.
    fn reload_all(&self) -> impl Future<Output = serde_json::Value> + Send {
        self.reload_policies()
    }
    /// The assertion keys, when `[upstream_identity]` is configured.
    fn assertions(&self) -> Option<&Assertions> {
        None
    }
    /// The `/openapi.json` document, built once at start; `None`: not served (404).
    fn openapi(&self) -> Option<Bytes> {
        None
    }
}

/// The admin listener's [`Pipeline`]: answers every request itself and forwards nothing.
pub struct Admin<S>(pub std::sync::Arc<S>);

impl<S: AdminState> Pipeline for Admin<S> {
    async fn request(&self, req: Request<Incoming>, _conn: ConnInfo) -> Step {
        let response = match (req.method(), req.uri().path()) {
            (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
            (&Method::GET, "/readyz") => match self.0.ready().await {
                Ok(()) => text(StatusCode::OK, "ready\n"),
                Err(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("not ready: {why}\n"),
                ),
            },
            (&Method::GET, "/metrics") => {
                let mut r = Response::new(full(Bytes::from(self.0.metrics_text())));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                r
            }
            (&Method::GET, "/admin/policies") => json(StatusCode::OK, &self.0.policies_status()),
            (&Method::POST, "/admin/policies/reload") => {
                json(StatusCode::OK, &self.0.reload_policies().await)
            }
            (&Method::POST, "/admin/reload") => json(StatusCode::OK, &self.0.reload_all().await),
            (&Method::GET | &Method::HEAD, "/openapi.json") => match self.0.openapi() {
                Some(document) => {
                    let mut r = Response::new(full(document));
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    r
                }
                None => ApiError::from(Code::NotFound).into_response(),
            },
            (method, JWKS_PATH) => match self.0.assertions() {
                Some(assertions) => jwks_response(method, assertions),
                None => ApiError::from(Code::NotFound).into_response(),
            },
            (
                _,
                "/healthz"
                | "/readyz"
                | "/metrics"
                | "/admin/policies"
                | "/admin/policies/reload"
                | "/admin/reload"
                | "/openapi.json",
            ) => ApiError::from(Code::MethodNotAllowed).into_response(),
            _ => ApiError::from(Code::NotFound).into_response(),
        };
        Step::Respond {
            response,
            route: None,
        }
    }

    fn rescue(&self, error: &ProxyError) -> Response<Body> {
        crate::rescue::proxy(error).into_response()
    }

    /// The admin listener's requests are not counted with the public ones.
    fn logging(&self, _outcome: &Outcome) {}
}

/// `GET /.well-known/jwks.json`: the signing key and, during a rotation, the previous one.
/// Cached briefly by verifiers; they refetch on an unknown `kid` anyway.
pub fn jwks_response(method: &Method, assertions: &Assertions) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return ApiError::from(Code::MethodNotAllowed).into_response();
    }
    let mut r = Response::new(full(assertions.jwks()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A JSON answer of the admin listener (no `Cache-Control`, unlike the public API's).
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
