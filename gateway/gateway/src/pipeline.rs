//! Per request: route -> session -> entity slice -> decision -> forward or refuse.
//!
//! Rust establishes the facts (which route, which session, is it live); the policies decide.
//! Nothing is forwarded without a decision: store errors, policy errors and a full audit queue
//! all refuse (fail closed).

use std::sync::Arc;

use http::{HeaderValue, Request, Response, header};
use hyper::body::Incoming;
use taxgate_store::Timestamp;

use crate::assertion::{Assertions, HEADER_ASSERTION, JWKS_PATH};
use crate::error::{ApiError, Code};
use crate::gate::{Admitted, Asker, Gate, Question};
use crate::rescue::{Failure, Rescue};
use crate::routes::{Route, RouteTable, Selected};
use crate::session::HEADER_DECISION;
use taxgate_proxy::body::{Body, boxed};
use taxgate_proxy::{ConnInfo, Forward, Outcome, Pipeline, ProxyError, Step, headers};

/// Everything the pipeline needs, assembled by `server`.
pub struct Gateway {
    /// The configured routes, matched on the canonical path.
    pub routes: RouteTable,
    /// The session cookie (`[session] cookie_name`), stripped with the bearer token from every
    /// forwarded request.
    pub cookie_name: String,
    /// The same name, shared with every forward: an upstream may not set this cookie.
    pub reserved_cookie: Arc<str>,
    /// `[dev] allow_all`: forward every routed request without session, decision, audit or
    /// identity. Development only.
    pub allow_all: bool,
    /// Every decision, and the session walk before it.
    pub gate: Arc<Gate>,
    /// Every failure's answer.
    pub rescue: Rescue,
    /// Answers the gateway's own paths.
    pub endpoints: Arc<dyn Endpoints>,
    /// Signs `x-taxgate-assertion` for every forwarded request; `None`: no assertion.
    pub assertions: Option<Arc<Assertions>>,
    /// Answer `GET /.well-known/jwks.json` here too (`publish_jwks_publicly`).
    pub public_jwks: bool,
    /// Requests by route and status, upstream latencies: fed by [`Pipeline::logging`].
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// The gateway's own HTTP endpoints (`/auth/*`, `/account/*`, pages): the paths
/// [`crate::config::is_reserved_path`] keeps free of routes. Behind a trait so the pipeline does
/// not depend on the login flows; only requests for those paths pay for the boxed future.
pub trait Endpoints: Send + Sync + 'static {
    /// Answer one request for a reserved path; every failure is already an answer here.
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

/// The system clock in unix seconds (0 if it reads before 1970).
pub fn unix_now() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as Timestamp)
        .unwrap_or(0)
}

fn respond(response: Response<Body>, route: Option<usize>) -> Step {
    Step::Respond { response, route }
}

impl Pipeline for Gateway {
    fn span(&self, req: &mut Request<Incoming>, conn: &ConnInfo) -> tracing::Span {
        crate::telemetry::request_span(req, conn)
    }

    async fn request(&self, req: Request<Incoming>, conn: ConnInfo) -> Step {
        if self.public_jwks
            && req.uri().path() == JWKS_PATH
            && let Some(assertions) = &self.assertions
        {
            return respond(crate::admin::jwks_response(req.method(), assertions), None);
        }
        if crate::config::is_reserved_path(req.uri().path()) {
            crate::telemetry::record_own_path(req.method(), req.uri().path());
            return respond(self.endpoints.handle(req, conn).await, None);
        }
        // The path is canonical here (the proxy refused what is not): the route is chosen by it
        // alone.
        let route = match self.routes.select(req.uri().path(), req.method()) {
            Selected::Route(route) => {
                crate::telemetry::record_route(req.method(), &route.prefix, &route.action);
                route
            }
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
        crate::telemetry::record_status(outcome.status);
        self.metrics.request(outcome.route, outcome.status);
        if let Some(upstream) = &outcome.upstream
            && let Some(ProxyError::ClientBodyTimeout { .. }) = upstream.error
        {
            crate::metrics::CLIENT_BODY_TIMEOUTS.inc();
        }
        if let Some(upstream) = &outcome.upstream
            && let Some(latency) = upstream.latency
        {
            self.metrics
                .upstream_latency(upstream.index, latency.as_secs_f64());
        }
    }
}

impl Gateway {
    /// A request for a route: its session, the decision on the route's action, and the identity
    /// the upstream is told — or the failure's answer.
    async fn downstream(&self, req: Request<Incoming>, conn: ConnInfo, route: &Route) -> Step {
        let now = unix_now();
        match self.decide_request(&req, conn, route, now).await {
            Ok(identity) => self.forward(req, route, identity),
            Err(failure) => {
                let page = crate::rescue::wants_page(req.method(), req.headers());
                respond(self.rescue.respond(failure, page), Some(route.index))
            }
        }
    }

    async fn decide_request(
        &self,
        req: &Request<Incoming>,
        conn: ConnInfo,
        route: &Route,
        now: Timestamp,
    ) -> Result<Vec<(http::HeaderName, HeaderValue)>, Failure> {
        let Admitted { session, entities } = self.gate.admit(req.headers(), now).await?;
        let asker = Asker {
            downstream: true,
            ..Asker::session(now, conn.remote.ip(), &session).at_path(req.uri().path())
        };
        let question = Question::Session {
            entities: &entities,
            action: &route.action,
        };
        let verdict = self.gate.decide(question, asker).await?.permit()?;
        let mut identity = session.identity_headers();
        if let Ok(v) = HeaderValue::from_str(&verdict.id) {
            identity.push((HEADER_DECISION.clone(), v));
        }
        if let Some(assertions) = &self.assertions {
            let version = &verdict.decision.version;
            match assertions.sign(&identity, &verdict.id, version, &route.upstream.name, now) {
                Ok(v) => identity.push((HEADER_ASSERTION.clone(), v)),
                Err(e) => {
                    // Fail closed: an upstream that verifies would refuse the request anyway.
                    tracing::error!(error = %e, "refusing: no identity assertion");
                    return Err(Code::Internal.into());
                }
            }
        }
        Ok(identity)
    }

    fn forward(
        &self,
        req: Request<Incoming>,
        route: &Route,
        mut identity: Vec<(http::HeaderName, HeaderValue)>,
    ) -> Step {
        let (span, trace) = crate::telemetry::upstream_call(&req, &route.upstream.name);
        identity.extend(trace);
        let mut request = req.map(boxed);
        headers::strip_session_tokens(request.headers_mut(), &self.cookie_name);
        Step::Forward(Forward {
            request,
            upstream: Arc::clone(&route.upstream),
            identity,
            route: route.index,
            reserved_cookie: self.reserved_cookie.clone(),
            span,
        })
    }
}
