//! Per request: route -> session -> entity slice -> decision -> forward or refuse.
//!
//! Rust establishes the facts (which route, which session, is it live); the policies decide.
//! Nothing is forwarded without a decision: store errors, policy errors and a full audit queue
//! all refuse (fail closed).

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use taxgate_store::{AuditEvent, StoreError, Timestamp};

use crate::assertion::{Assertions, HEADER_ASSERTION, JWKS_PATH};
use crate::audit::Audit;
use crate::error::{ApiError, Code};
use crate::routes::{Route, RouteTable, Selected};
use crate::session::{HEADER_DECISION, Lookup, ResolvedSession, Sessions};
use taxgate_policy::{Decision, PolicyEngine, RequestFacts};
use taxgate_proxy::body::{Body, boxed, empty};
use taxgate_proxy::{ConnInfo, Forward, Outcome, Pipeline, ProxyError, Step, headers};

/// Everything the pipeline needs, assembled by `server`.
pub struct Gateway {
    pub routes: RouteTable,
    pub cookie_name: String,
    /// The same name, shared with every forward: an upstream may not set this cookie.
    pub reserved_cookie: Arc<str>,
    pub allow_all: bool,
    pub engine: Arc<PolicyEngine>,
    pub sessions: Arc<Sessions>,
    pub audit: Audit,
    pub legacy_login_until: Option<Timestamp>,
    pub health: crate::health::StoreHealth,
    pub endpoints: Arc<dyn Endpoints>,
    /// Signs `x-taxgate-assertion` for every forwarded request; `None`: no assertion.
    pub assertions: Option<Arc<Assertions>>,
    /// Answer `GET /.well-known/jwks.json` here too (`publish_jwks_publicly`).
    pub public_jwks: bool,
    /// `[policies] shadow_dir`: a candidate set decides beside the enforced one, off the
    /// response path.
    pub shadow: Option<Arc<crate::shadow::Shadow>>,
    /// Requests by route and status, upstream latencies: fed by [`Pipeline::logging`].
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// The gateway's own HTTP endpoints (`/auth/*`, `/account/*`, pages): the paths
/// [`crate::config::is_reserved_path`] keeps free of routes. Behind a trait so the pipeline does
/// not depend on the login flows; only requests for those paths pay for the boxed future.
pub trait Endpoints: Send + Sync + 'static {
    fn handle<'a>(
        &'a self,
        req: Request<Incoming>,
        conn: ConnInfo,
    ) -> std::pin::Pin<Box<dyn Future<Output = Response<Body>> + Send + 'a>>;
}

/// No endpoints of its own: the reserved paths answer 404.
pub struct NoEndpoints;

impl Endpoints for NoEndpoints {
    fn handle<'a>(
        &'a self,
        _req: Request<Incoming>,
        _conn: ConnInfo,
    ) -> std::pin::Pin<Box<dyn Future<Output = Response<Body>> + Send + 'a>> {
        Box::pin(async { ApiError::from(Code::NotFound).into_response() })
    }
}

pub fn unix_now() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as Timestamp)
        .unwrap_or(0)
}

/// The session token a request presents (the cookie or a bearer token); two different ones in
/// one request are refused with 400 `ambiguous_session`.
pub fn presented_token<'a>(
    headers: &'a http::HeaderMap,
    cookie_name: &str,
) -> Result<Option<&'a str>, ApiError> {
    headers::session_token(headers, cookie_name).map_err(|_| Code::AmbiguousSession.into())
}

fn respond(response: Response<Body>, route: Option<usize>) -> Step {
    Step::Respond { response, route }
}

impl Pipeline for Gateway {
    async fn request(&self, req: Request<Incoming>, conn: ConnInfo) -> Step {
        if self.public_jwks
            && req.uri().path() == JWKS_PATH
            && let Some(assertions) = &self.assertions
        {
            return respond(crate::admin::jwks_response(req.method(), assertions), None);
        }
        if crate::config::is_reserved_path(req.uri().path()) {
            return respond(self.endpoints.handle(req, conn).await, None);
        }
        // The path is canonical here (the proxy refused what is not): the route is chosen by it
        // alone.
        let route = match self.routes.select(req.uri().path(), req.method()) {
            Selected::Route(route) => route,
            Selected::MethodNotAllowed(route) => {
                let mut r = ApiError::from(Code::MethodNotAllowed).into_response();
                if let Ok(v) = HeaderValue::from_str(&route.allow_header()) {
                    r.headers_mut().insert(header::ALLOW, v);
                }
                return respond(r, Some(route.index));
            }
            Selected::Ambiguous => {
                return respond(ApiError::from(Code::InvalidPath).into_response(), None);
            }
            Selected::NoRoute => {
                return respond(ApiError::from(Code::RouteNotFound).into_response(), None);
            }
        };
        if self.allow_all {
            return self.forward(req, route, Vec::new());
        }
        self.downstream(req, conn, route).await
    }

    fn rescue(&self, error: &ProxyError) -> Response<Body> {
        crate::rescue::proxy(error).into_response()
    }

    fn logging(&self, outcome: &Outcome) {
        self.metrics.request(outcome.route, outcome.status);
        if let Some(upstream) = &outcome.upstream
            && let Some(latency) = upstream.latency
        {
            self.metrics
                .upstream_latency(upstream.index, latency.as_secs_f64());
        }
    }
}

impl Gateway {
    async fn downstream(&self, req: Request<Incoming>, conn: ConnInfo, route: &Route) -> Step {
        let now = unix_now();
        let refuse = |e: ApiError| respond(e.into_response(), Some(route.index));
        if !self.health.is_up() {
            return refuse(Code::StoreUnavailable.into());
        }
        let token = match presented_token(req.headers(), &self.cookie_name) {
            Ok(Some(token)) => token,
            Ok(None) => {
                return respond(login_required(&req, Code::LoginRequired), Some(route.index));
            }
            Err(e) => return refuse(e),
        };
        let session = match self.sessions.resolve(token, now).await {
            Ok(Lookup::Live(s)) => s,
            Ok(Lookup::Missing) => {
                return respond(login_required(&req, Code::LoginRequired), Some(route.index));
            }
            Ok(Lookup::Expired) => {
                return respond(
                    login_required(&req, Code::SessionExpired),
                    Some(route.index),
                );
            }
            Err(e) => {
                log_store_error(&e);
                if matches!(e, StoreError::Unavailable(_)) {
                    self.health.mark_down();
                }
                return refuse(Code::StoreUnavailable.into());
            }
        };
        let facts = RequestFacts {
            now,
            legacy_login_until: self.legacy_login_until,
        };
        let entities = match self.sessions.entities(&session) {
            Ok(e) => e,
            Err(e) => {
                // Checked when the session was loaded; refuse rather than guess if it changed.
                tracing::error!(error = %e, "cannot build the entity slice of a session");
                return refuse(Code::Internal.into());
            }
        };
        let decision = entities.decide(&self.engine, &route.action, &facts);
        let id = self.audit.next_id();
        let mut event = decision_event(
            &id,
            &session,
            &route.action,
            req.uri().path(),
            &decision,
            conn.remote,
            &facts,
        );
        event.slice = entities.replay.clone();
        if self.audit.record(event).await.is_err() {
            return refuse(Code::StoreUnavailable.into());
        }
        if let Some(shadow) = &self.shadow {
            shadow.offer(&session, &entities, &route.action, facts, &id, &decision);
        }
        if !decision.allowed {
            let reason = decision.reason.as_deref().unwrap_or("not_permitted");
            return refuse(self.denial(reason));
        }
        let mut identity = session.identity_headers();
        if let Ok(v) = HeaderValue::from_str(&id) {
            identity.push((HEADER_DECISION.clone(), v));
        }
        if let Some(assertions) = &self.assertions {
            match assertions.sign(&identity, &id, &decision.version, &route.upstream.name, now) {
                Ok(v) => identity.push((HEADER_ASSERTION.clone(), v)),
                Err(e) => {
                    // Fail closed: a backend that verifies would refuse the request anyway.
                    tracing::error!(error = %e, "refusing: no identity assertion");
                    return refuse(Code::Internal.into());
                }
            }
        }
        self.forward(req, route, identity)
    }

    fn forward(
        &self,
        req: Request<Incoming>,
        route: &Route,
        identity: Vec<(http::HeaderName, HeaderValue)>,
    ) -> Step {
        let mut request = req.map(boxed);
        headers::strip_session_tokens(request.headers_mut(), &self.cookie_name);
        Step::Forward(Forward {
            request,
            upstream: Arc::clone(&route.upstream),
            identity,
            route: route.index,
            reserved_cookie: self.reserved_cookie.clone(),
        })
    }

    /// A policy denial as the contract's error: 403, the reason code and its messages.
    pub fn denial(&self, reason: &str) -> ApiError {
        if reason == "not_permitted" {
            return Code::NotPermitted.into();
        }
        let (zh, en) = self.engine.message(reason);
        ApiError::denied(reason, &zh, &en)
    }
}

pub fn log_store_error(e: &StoreError) {
    tracing::error!(error = %e, "store error: refusing (fail closed)");
}

/// 401 for API clients; a browser asking for a page is sent to `/login` instead.
fn login_required(req: &Request<Incoming>, code: Code) -> Response<Body> {
    let wants_html = req.method() == http::Method::GET
        && req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
    if wants_html {
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::FOUND;
        r.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/login"));
        return r;
    }
    ApiError::from(code).into_response()
}

/// The audit record of a downstream decision; `facts.now` is its time.
fn decision_event(
    id: &str,
    session: &ResolvedSession,
    action: &str,
    path: &str,
    decision: &Decision,
    client: SocketAddr,
    facts: &RequestFacts,
) -> AuditEvent {
    let s = &session.session;
    AuditEvent {
        id: id.to_string(),
        at: facts.now,
        request_id: Some(id.to_string()),
        session_id: Some(s.id.clone()),
        person: s.person.clone(),
        enterprise: s.enterprise.clone(),
        role: s.role,
        entry: Some(s.entry),
        action: action.to_string(),
        path: Some(path.to_string()),
        allowed: decision.allowed,
        policies: decision.policies.clone(),
        reason: decision.reason.clone(),
        policy_version: Some(decision.version.to_string()),
        client_addr: Some(client.ip().to_string()),
        detail: None,
        slice: None,
        legacy_login_until: facts.legacy_login_until,
    }
}
