//! Per request: route -> session -> entity slice -> decision -> forward or refuse.
//!
//! Rust establishes the facts (which route, which session, is it live); the policies decide.
//! Nothing is forwarded without a decision: store errors, policy errors and a full audit queue
//! all refuse (fail closed).

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use hyper::body::Incoming;
use taxgate_store::Timestamp;

use crate::assertion::{Assertions, HEADER_ASSERTION, JWKS_PATH};
use crate::error::{ApiError, Code};
use crate::gate::{Admitted, Asker, Gate, Question};
use crate::rescue::{Failure, Rescue};
use crate::routes::{Route, RouteTable, Selected};
use crate::session::HEADER_DECISION;
use taxgate_proxy::body::{Body, boxed};
use taxgate_proxy::{ConnInfo, Forward, Outcome, Pipeline, ProxyError, Step, headers, path};

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

/// How a decision was asked: the public listener itself, or one of the external-authorization
/// endpoints (CONTRACT section 9).
pub use crate::ext_authz::Mode;

/// The original request a decision is asked for: on the public listener the request itself;
/// behind another proxy, what that proxy says the client asked.
pub struct Ask<'a> {
    /// The original method (case-sensitive, as routes list them).
    pub method: &'a Method,
    /// The original path and query, as sent (checked by [`Gateway::judge`]).
    pub target: &'a str,
    /// The client's headers: its `Cookie` / `Authorization` carry the session; `Accept` tells a
    /// page request.
    pub headers: &'a HeaderMap,
    /// The client's address (audit).
    pub client: IpAddr,
    /// Who asks.
    pub mode: Mode,
}

/// What [`Gateway::judge`] found.
pub enum Judgement<'g> {
    /// Allowed: the route, and the identity headers (with the decision id and the assertion)
    /// its upstream is to get.
    Allowed {
        /// The route the path chose.
        route: &'g Route,
        /// `x-taxgate-*` for the upstream.
        identity: Vec<(http::HeaderName, HeaderValue)>,
    },
    /// Refused, not yet answered: the inline gateway and each mode answer it their own way.
    Refused(Refused),
}

/// A refusal of [`Gateway::judge`]: the failure for the rescue, and what its answer needs.
pub struct Refused {
    /// Index of the route the path chose, if any (metrics).
    pub route: Option<usize>,
    /// The `Allow` header of a 405 `method_not_allowed`; `None` for every other refusal.
    pub allow: Option<String>,
    /// A browser asking for a page: its path and query (sent to `/login?next=…` when it has no
    /// session); `None` for any other request.
    pub page: Option<String>,
    /// Why.
    pub failure: Failure,
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
        let ask = Ask {
            method: req.method(),
            // Path and query: the query is not routed on, but a page's return path keeps it.
            target: req
                .uri()
                .path_and_query()
                .map_or(req.uri().path(), |pq| pq.as_str()),
            headers: req.headers(),
            client: conn.remote.ip(),
            mode: Mode::Inline,
        };
        match self.judge(&ask).await {
            Judgement::Allowed { route, identity } => self.forward(req, route, identity),
            Judgement::Refused(refused) => {
                let route = refused.route;
                respond(self.refusal_response(refused), route)
            }
        }
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
    /// The one decision walk, whoever asks: the public listener for the request it carries, and
    /// every external-authorization mode for the request its caller describes. The target's path
    /// rules ([`path::canonical`]), the route, the session ([`Gate::admit`]), the decision
    /// ([`Gate::decide`], audited with `ask.mode`), the identity headers and the assertion are
    /// the same for all of them; only how the answer is sent differs.
    pub async fn judge(&self, ask: &Ask<'_>) -> Judgement<'_> {
        let refused = |route: Option<&Route>, failure: Failure| {
            Judgement::Refused(Refused {
                route: route.map(|r| r.index),
                allow: None,
                page: crate::rescue::wants_page(ask.method, ask.headers)
                    .then(|| ask.target.to_string()),
                failure,
            })
        };
        let path = ask.target.split_once('?').map_or(ask.target, |(p, _)| p);
        // Inline, the proxy already put the canonical path in place (this finds it unchanged);
        // behind another proxy, the path comes from a header and is checked here, by the same
        // rules.
        let path = match path::canonical(path) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(reason = ?e, mode = ask.mode.as_str(), "refused: invalid request path");
                return refused(None, Code::InvalidPath.into());
            }
        };
        let route = match self.routes.select(&path, ask.method) {
            Selected::Route(route) => {
                crate::telemetry::record_route(ask.method, &route.prefix, &route.action);
                route
            }
            Selected::MethodNotAllowed(route) => {
                return Judgement::Refused(Refused {
                    route: Some(route.index),
                    allow: Some(route.allow_header()),
                    page: None,
                    failure: Code::MethodNotAllowed.into(),
                });
            }
            Selected::Ambiguous => return refused(None, Code::InvalidPath.into()),
            Selected::NoRoute => return refused(None, Code::RouteNotFound.into()),
        };
        if self.allow_all {
            return Judgement::Allowed {
                route,
                identity: Vec::new(),
            };
        }
        match self.decide_request(ask, &path, route, unix_now()).await {
            Ok(identity) => Judgement::Allowed { route, identity },
            Err(failure) => refused(Some(route), failure),
        }
    }

    /// The inline answer to a refusal: a browser's page request without a session goes to
    /// `/login`, everything else is the rescue's error (405 with `Allow`).
    pub fn refusal_response(&self, refused: Refused) -> Response<Body> {
        let mut r = self
            .rescue
            .respond_to(refused.failure, refused.page.as_deref());
        if let Some(allow) = refused.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            r.headers_mut().insert(header::ALLOW, allow);
        }
        r
    }

    async fn decide_request(
        &self,
        ask: &Ask<'_>,
        path: &str,
        route: &Route,
        now: Timestamp,
    ) -> Result<Vec<(http::HeaderName, HeaderValue)>, Failure> {
        let Admitted { session } = self.gate.admit(ask.headers, now).await?;
        let asker = Asker {
            downstream: true,
            mode: ask.mode,
            ..Asker::session(now, ask.client, &session).at_path(path)
        };
        let question = Question::Session {
            session: &session,
            action: &route.action,
        };
        let verdict = self.gate.decide(question, asker).await?.permit()?;
        let mut identity = session.identity_headers();
        if let Ok(v) = HeaderValue::from_str(&verdict.id) {
            identity.push((HEADER_DECISION.clone(), v));
        }
        if let Some(assertions) = &self.assertions {
            let version = &verdict.decision.version;
            match assertions.sign_for_session(
                &identity,
                session.id(),
                &verdict.id,
                version,
                &route.upstream.name,
                now,
            ) {
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
