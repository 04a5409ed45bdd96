//! The one rescue (linkerd2-proxy's `ServerRescue`, Pingora's `fail_to_proxy`): layers return
//! typed failures — the store's [`StoreError`], the proxy's [`ProxyError`], a policy denial with
//! its reason, a client's bad input as an [`ApiError`] — and this module is the only place they
//! become a status, an error code and a message. The messages come from one catalogue,
//! `reasons.toml` (see [`crate::error`]).

use taxgate_policy::Decision;
use taxgate_proxy::ProxyError;
use taxgate_store::StoreError;

use crate::error::{ApiError, Code};

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
        ProxyError::UpstreamUnavailable { .. } => Code::UpstreamUnavailable.into(),
        ProxyError::UpstreamTimeout { .. } => Code::UpstreamTimeout.into(),
    }
}
