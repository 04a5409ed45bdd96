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
mod reset;
mod session;
mod sms_factor;
mod start;
mod step_up;

pub use session::{session_view, session_view_of};
pub use step_up::SecondFactor;

use std::net::IpAddr;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use taxgate_store::{AuditEvent, Challenge, IdNumber, Phone, StoreError, TaxpayerId, Timestamp};
use tokio::sync::Semaphore;

use super::sms::SmsSender;
use crate::api;
use crate::error::{ApiError, Code, Hints};
use crate::gate::{Admitted, Asker, Question, actions};
use crate::openapi::schemas::ChallengeAnswer;
use crate::pipeline::unix_now;
use crate::rescue::Failure;
use crate::server::Core;
use crate::session::ResolvedSession;
use taxgate_policy::{LoginAttempt, LoginCandidate};
use taxgate_proxy::ConnInfo;
use taxgate_proxy::body::Body;

type ApiResult = crate::rescue::Handled;

/// The `/auth/*` handlers: the login factors, phone recovery and binding, password changes. Each
/// login is decided by the `login` policies and audited.
pub struct Auth {
    core: Arc<Core>,
    sms: Arc<dyn SmsSender>,
    /// argon2 runs on the blocking pool, at most this many at once, so a login storm cannot take
    /// every core from the proxy.
    hashing: Semaphore,
}

impl Auth {
    /// A store failure as the client sees it, through the rescue (which marks a store that
    /// is down as such, as the pipeline does).
    fn store_err(&self, e: StoreError) -> ApiError {
        self.core.rescue.store(e)
    }

    /// Handlers sending codes through `sms`. At most half the cores (at least one) hash passwords
    /// at once.
    pub fn new(core: Arc<Core>, sms: Arc<dyn SmsSender>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Auth {
            core,
            sms,
            hashing: Semaphore::new((cores / 2).max(1)),
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

    /// The live session a request presents and the policy decision for `action` on it.
    pub async fn session_for(
        &self,
        req: &Request<Incoming>,
        action: &str,
        conn: ConnInfo,
    ) -> Result<Arc<ResolvedSession>, Failure> {
        let now = unix_now();
        let gate = &self.core.gate;
        let Admitted { session } = gate.admit(req.headers(), now).await?;
        // Every decision is one audit record, allowed or not (a read of a firm's personnel
        // list shows full ID numbers: who looked must be on record).
        let question = Question::Session {
            session: &session,
            action,
        };
        let asker = Asker::session(now, conn.remote.ip(), &session).at_path(req.uri().path());
        gate.decide(question, asker).await?.permit()?;
        Ok(session)
    }

    /// The gate's decision on a login attempt taking up one of `candidates` (the `login`
    /// action); a denial is the error. With the index of the candidate that allowed.
    async fn login_decision(
        &self,
        attempt: &LoginAttempt<'_>,
        candidates: &[LoginCandidate<'_>],
        requested: Option<&TaxpayerId>,
        now: Timestamp,
        client: IpAddr,
    ) -> Result<Option<usize>, Failure> {
        let question = Question::Identity {
            action: actions::LOGIN,
            attempt,
            candidates,
        };
        let mut asker = Asker::anonymous(now, client);
        // An enterprise that does not exist is not in the attempt: the record names what was
        // asked for.
        if attempt.enterprise.is_none()
            && let Some(t) = requested
        {
            asker = asker.with_detail(serde_json::json!({ "taxpayer_id": t.as_str() }));
        }
        let verdict = self.core.gate.decide(question, asker).await?.permit()?;
        Ok(verdict.candidate)
    }
}

/// The answer to a first factor that passed: the challenge, the second factors it admits, and
/// the masked number a code would go to.
fn challenge_answer(challenge: &str, factors: &[&str], phone: Option<&Phone>) -> Response<Body> {
    let answer = ChallengeAnswer {
        challenge: challenge.to_string(),
        factors: factors.iter().map(|f| f.to_string()).collect(),
        phone_masked: phone.map(Phone::masked),
    };
    api::typed(StatusCode::OK, &answer)
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
