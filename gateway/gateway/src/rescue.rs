//! The one rescue (linkerd2-proxy's `ServerRescue`, Pingora's `fail_to_proxy`): layers return
//! typed failures — the store's [`StoreError`], the proxy's [`ProxyError`], a policy denial with
//! its reason, a client's bad input as an [`ApiError`] — and this module is the only place they
//! become a status, an error code and a message. The messages come from one catalogue,
//! `reasons.toml` (see [`crate::error`]).

use std::sync::Arc;

use http::{HeaderValue, Response, StatusCode, header};
use taxgate_policy::{Decision, PolicyEngine};
use taxgate_proxy::ProxyError;
use taxgate_proxy::body::{Body, empty};
use taxgate_store::StoreError;

use crate::error::{ApiError, Code};
use crate::health::StoreHealth;

/// The result of a gateway handler.
pub type Handled = Result<Response<Body>, Failure>;

/// The deny reason that is the policies' default (no permit applied); its message is the
/// gateway's own `not_permitted`.
const NOT_PERMITTED: &str = taxgate_policy::NOT_PERMITTED;
/// A separation-of-duties refusal is a conflict with existing state: 409, not 403.
const CONFLICT_OF_ROLES: &str = "conflict_of_roles";

/// Why a request handled by the gateway failed, before it is answered.
#[derive(Debug)]
pub enum Failure {
    /// The client's request is wrong, or a rule established in Rust refused it (bad field,
    /// wrong content type, a limit, an expired challenge).
    Client(ApiError),
    /// The store failed or refused the operation.
    Store(StoreError),
    /// The policies denied: the deciding forbid's `@reason` (or `not_permitted`).
    Denied(String),
    /// No live session: `login_required` or `session_expired` (a browser asking for a page is
    /// sent to `/login` instead).
    LoginRequired(Code),
    /// The decision could not be recorded (the audit queue is full): not acted on.
    AuditUnavailable,
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Client(e)
    }
}

impl From<Code> for Failure {
    fn from(code: Code) -> Self {
        Failure::Client(code.into())
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl Failure {
    /// The denial of a decision that did not allow.
    pub fn denied(decision: &Decision) -> Self {
        Failure::Denied(
            decision
                .reason
                .as_deref()
                .unwrap_or(taxgate_policy::NOT_PERMITTED)
                .to_string(),
        )
    }
}

/// A store failure as the client sees it. Details are logged, never sent: a store that cannot
/// be reached (or any other store fault) is 503 `store_unavailable` (fail closed).
pub fn store(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => Code::NotFound.into(),
        StoreError::Conflict { .. } => Code::AlreadyLinked.into(),
        other => {
            log_store_error(&other);
            Code::StoreUnavailable.into()
        }
    }
}

/// Logs a store error the request is refused for.
pub fn log_store_error(e: &StoreError) {
    tracing::error!(error = %e, "store error: refusing (fail closed)");
}

/// A proxy failure as the client sees it.
pub fn proxy(e: &ProxyError) -> ApiError {
    match e {
        ProxyError::InvalidPath(_) => Code::InvalidPath.into(),
        ProxyError::DuplicateHost => ApiError::field(Code::InvalidInput, "host"),
        ProxyError::ClientBody(_) => Code::InvalidInput.into(),
        ProxyError::ClientBodyTimeout { .. } => Code::ClientBodyTimeout.into(),
        ProxyError::UpstreamUnavailable { .. } => Code::UpstreamUnavailable.into(),
        ProxyError::UpstreamTimeout { .. } => Code::UpstreamTimeout.into(),
    }
}

/// Where failures become answers.
#[derive(Clone)]
pub struct Rescue {
    engine: Arc<PolicyEngine>,
    health: StoreHealth,
}

impl Rescue {
    /// A rescue with the active policy set's messages for policy reasons.
    pub fn new(engine: Arc<PolicyEngine>, health: StoreHealth) -> Rescue {
        Rescue { engine, health }
    }

    /// The error a failure is answered with. A store that is down is marked so.
    pub fn error(&self, failure: Failure) -> ApiError {
        match failure {
            Failure::Client(e) => e,
            Failure::Store(e) => {
                if matches!(e, StoreError::Unavailable(_)) {
                    self.health.mark_down();
                }
                store(e)
            }
            Failure::Denied(reason) => self.denial(&reason),
            Failure::LoginRequired(code) => code.into(),
            Failure::AuditUnavailable => Code::StoreUnavailable.into(),
        }
    }

    /// A store failure as the client sees it ([`store`]); a store that is down is marked so.
    pub fn store(&self, e: StoreError) -> ApiError {
        self.error(Failure::Store(e))
    }

    /// The answer to a failure. `wants_page`: the request is a browser's `GET` of a page, which
    /// is sent to `/login` rather than answered 401.
    pub fn respond(&self, failure: Failure, wants_page: bool) -> Response<Body> {
        if wants_page && matches!(failure, Failure::LoginRequired(_)) {
            let mut r = Response::new(empty());
            *r.status_mut() = StatusCode::FOUND;
            r.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/login"));
            return r;
        }
        self.error(failure).into_response()
    }

    /// A policy denial as the contract's error: 403 (409 for `conflict_of_roles`), the reason
    /// code and its messages from `reasons.toml`.
    fn denial(&self, reason: &str) -> ApiError {
        if reason == NOT_PERMITTED {
            return Code::NotPermitted.into();
        }
        let (zh, en) = self.engine.message(reason);
        let denied = ApiError::denied(reason, &zh, &en);
        if reason == CONFLICT_OF_ROLES {
            return denied.with_status(StatusCode::CONFLICT);
        }
        denied
    }
}

/// Whether a request is a browser's `GET` of a page (it accepts `text/html`).
pub fn wants_page(method: &http::Method, headers: &http::HeaderMap) -> bool {
    method == http::Method::GET
        && headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"))
}
