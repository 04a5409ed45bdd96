//! The login flows of CONTRACT section 3 (Login, Session): first factor, the policy decision on
//! the entry, challenges, the SMS and face second factors, sessions, password change, logout and
//! phone recovery.
//!
//! Rust establishes facts here (is the password right, is the code right, did the app say the
//! face passed); whether this person may log in through this entry for this enterprise is the
//! policies' decision (action `login`), taken at `/auth/login` and taken again when the second
//! factor completes, so a binding revoked in between is honoured.
//!
//! This file holds [`Auth`], what every flow shares (audit events, the policy's refusal, store
//! errors) and [`Auth::session_for`]; each flow is an `impl Auth` in its own file below `login/`.

mod challenge;
mod face_factor;
mod legacy;
mod password;
mod phone;
mod session;
mod sms_factor;
mod start;

pub use session::{session_view, session_view_of};

use std::net::IpAddr;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};
use taxgate_store::{AuditEvent, Challenge, IdNumber, Phone, StoreError, Timestamp};
use tokio::sync::Semaphore;

use super::sms::SmsSender;
use crate::api::json as json_response;
use taxgate_policy::{Decision, RequestFacts};
use taxgate_proxy::body::Body;
use crate::error::{ApiError, Code, Hints};
use crate::pipeline::{presented_token, unix_now};
use crate::rescue::log_store_error;
use taxgate_proxy::ConnInfo;
use crate::server::Core;
use crate::session::{Lookup, ResolvedSession};

type ApiResult = Result<Response<Body>, ApiError>;

fn store_err(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => Code::NotFound.into(),
        other => {
            log_store_error(&other);
            Code::StoreUnavailable.into()
        }
    }
}

pub struct Auth {
    core: Arc<Core>,
    sms: Arc<dyn SmsSender>,
    /// argon2 runs on the blocking pool, at most this many at once, so a login storm cannot take
    /// every core from the proxy.
    hashing: Semaphore,
}

impl Auth {
    pub fn new(core: Arc<Core>, sms: Arc<dyn SmsSender>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Auth {
            core,
            sms,
            hashing: Semaphore::new((cores / 2).max(1)),
        }
    }

    fn facts(&self, now: Timestamp) -> RequestFacts {
        RequestFacts {
            now,
            legacy_login_until: self.core.config.login.legacy_until_unix(),
        }
    }

    async fn audit(&self, event: AuditEvent) -> Result<(), ApiError> {
        self.core
            .audit
            .record(event)
            .await
            .map_err(|_| ApiError::from(Code::StoreUnavailable))
    }

    fn event(&self, now: Timestamp, action: &str, allowed: bool, client: IpAddr) -> AuditEvent {
        AuditEvent {
            client_addr: Some(client.to_string()),
            ..AuditEvent::new(self.core.audit.next_id(), now, action, allowed)
        }
    }

    /// A security event on a challenge (a code sent or refused, a wrong code, a face start or
    /// result): its person, entry, enterprise and the client it is bound to.
    async fn challenge_event(
        &self,
        c: &Challenge,
        now: Timestamp,
        action: &str,
        allowed: bool,
        reason: Option<&str>,
    ) -> Result<(), ApiError> {
        let mut ev = AuditEvent::new(self.core.audit.next_id(), now, action, allowed);
        ev.person = c.person.clone();
        ev.enterprise = c.enterprise.clone();
        ev.entry = c.entry;
        ev.client_addr = c.client_addr.clone();
        ev.reason = reason.map(str::to_string);
        ev.detail = Some(json!({ "purpose": c.purpose.as_str() }).to_string());
        self.audit(ev).await
    }

    fn denial(&self, decision: &Decision) -> ApiError {
        let reason = decision.reason.as_deref().unwrap_or("not_permitted");
        if reason == "not_permitted" {
            return Code::NotPermitted.into();
        }
        let (zh, en) = self.core.engine.message(reason);
        ApiError::denied(reason, &zh, &en)
    }

    /// Record a `login` decision on `ev` (whose person, enterprise and entry the caller set) and
    /// refuse as the policies say when it denied.
    async fn enforce_login(&self, decision: &Decision, mut ev: AuditEvent) -> Result<(), ApiError> {
        ev.policies = decision.policies.clone();
        ev.reason = decision.reason.clone();
        ev.policy_version = Some(decision.version.to_string());
        self.audit(ev).await?;
        if !decision.allowed {
            return Err(self.denial(decision));
        }
        Ok(())
    }

    /// The live session a request presents and the policy decision for `action` on it.
    pub async fn session_for(
        &self,
        req: &Request<Incoming>,
        action: &str,
        conn: ConnInfo,
    ) -> Result<Arc<ResolvedSession>, ApiError> {
        let now = unix_now();
        let token_str = presented_token(req.headers(), &self.core.config.session.cookie_name)?
            .ok_or(ApiError::from(Code::LoginRequired))?;
        let session = match self.core.sessions.resolve(token_str, now).await {
            Ok(Lookup::Live(s)) => s,
            Ok(Lookup::Missing) => return Err(Code::LoginRequired.into()),
            Ok(Lookup::Expired) => return Err(Code::SessionExpired.into()),
            Err(e) => return Err(store_err(e)),
        };
        let entities = self.core.sessions.entities(&session).map_err(|e| {
            tracing::error!(error = %e, "cannot build the entity slice of a session");
            ApiError::from(Code::Internal)
        })?;
        let decision = self
            .core
            .engine
            .decide(&entities.entities, action, &self.facts(now));
        // Every decision is one audit record, allowed or not (a read of a firm's personnel
        // list shows full ID numbers: who looked must be on record).
        let s = &session.session;
        let mut ev = self.event(now, action, decision.allowed, conn.remote.ip());
        ev.session_id = Some(s.id.clone());
        ev.person = s.person.clone();
        ev.enterprise = s.enterprise.clone();
        ev.role = s.role;
        ev.entry = Some(s.entry);
        ev.path = Some(req.uri().path().to_string());
        ev.policies = decision.policies.clone();
        ev.reason = decision.reason.clone();
        ev.policy_version = Some(decision.version.to_string());
        self.audit(ev).await?;
        if !decision.allowed {
            return Err(self.denial(&decision));
        }
        Ok(session)
    }
}

/// The answer to a first factor that passed: the challenge, the second factors it admits, and
/// the masked number a code would go to.
fn challenge_answer(challenge: &str, factors: &[&str], phone: Option<&Phone>) -> Response<Body> {
    let mut answer = json!({ "challenge": challenge, "factors": factors });
    if let Some(phone) = phone {
        answer["phone_masked"] = Value::String(phone.masked());
    }
    json_response(StatusCode::OK, &answer)
}

/// A refusal that says when to try again, never sooner than in a second.
fn retry_after(code: Code, secs: i64) -> ApiError {
    ApiError::hinted(
        code,
        Hints {
            retry_after_secs: Some(secs.max(1) as u64),
            ..Hints::default()
        },
    )
}

/// The person a session acts as; a session without one (legacy enterprise) may not do this.
fn session_person(s: &ResolvedSession) -> Result<&IdNumber, ApiError> {
    s.session
        .person
        .as_ref()
        .ok_or(ApiError::from(Code::NotPermitted))
}
