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
/// The factors a step-up may use, named in a `step_up_required` answer.
const STEP_UP_FACTORS: &[&str] = &["sms", "face"];
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
    /// The policies denied until the session has a second factor at most `max_age_secs` old:
    /// the deciding forbid carries `@step_up_max_age` (CONTRACT section 10).
    StepUp {
        /// The forbid's `@reason` (`step_up_required` in the repository's policies).
        reason: String,
        /// From its `@step_up_max_age("N")`.
        max_age_secs: u64,
    },
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
        let reason = decision
            .reason
            .as_deref()
            .unwrap_or(taxgate_policy::NOT_PERMITTED)
            .to_string();
        match decision.step_up_max_age {
            Some(max_age_secs) => Failure::StepUp {
                reason,
                max_age_secs,
            },
            None => Failure::Denied(reason),
        }
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
            Failure::StepUp {
                reason,
                max_age_secs,
            } => {
                let (zh, en) = self.engine.message(&reason);
                ApiError::step_up(&reason, &zh, &en, STEP_UP_FACTORS, max_age_secs)
            }
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
        self.respond_to(failure, wants_page.then_some(""))
    }

    /// [`Rescue::respond`] for a browser's `GET` of the page at `page` (path and query; `None`:
    /// not a page request): without a live session it is sent to `/login?next=<page>` (when the
    /// page is a safe return path, [`crate::web::safe_return_path`]) with `reason=expired` when
    /// the session ended, so the login says so and brings the person back (issue 22 point 4).
    pub fn respond_to(&self, failure: Failure, page: Option<&str>) -> Response<Body> {
        if let (Some(page), Failure::LoginRequired(code)) = (page, &failure) {
            let mut location = String::from("/login");
            let mut sep = '?';
            if crate::web::safe_return_path(page) && page != "/login" {
                let next = percent_encoding::utf8_percent_encode(page, QUERY_VALUE);
                location.push_str(&format!("?next={next}"));
                sep = '&';
            }
            if *code == Code::SessionExpired {
                location.push(sep);
                location.push_str("reason=expired");
            }
            let mut r = Response::new(empty());
            *r.status_mut() = StatusCode::FOUND;
            let value = HeaderValue::from_str(&location)
                .unwrap_or_else(|_| HeaderValue::from_static("/login"));
            r.headers_mut().insert(header::LOCATION, value);
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

/// What a query value must encode: everything but unreserved characters and `/`.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Whether a request is a browser's `GET` of a page (it accepts `text/html`).
pub fn wants_page(method: &http::Method, headers: &http::HeaderMap) -> bool {
    method == http::Method::GET
        && headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"))
}
