//! Step-up (CONTRACT section 10): a fresh second factor for a live session. `POST
//! /auth/step-up` opens a challenge bound to the asking session; the usual SMS and face steps
//! run on it; completing it writes the session's `factor_at` (and `face_at`) and answers the
//! session view with the same token. Whether an action needs a fresh factor is the policies'
//! decision (`@step_up_max_age`); Rust only records when a factor completed.
//!
//! The second-factor endpoints (`/auth/sms/*`, `/auth/face/start`, `/auth/face/complete`) come
//! through [`Auth::second_factor`]: it sees the request's headers, which the login flows do
//! not, so it can hold a step-up challenge to its session and note the device a login comes
//! from. Also here: the new-device notice (`login_notice`) of a completed login.

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use taxgate_store::{
    Challenge, ChallengePurpose, FaceStatus, Factor, Person, SessionDevice, Store, Timestamp,
};

use super::{ApiResult, Auth, challenge_answer};
use crate::api::{self, Json};
use crate::authn::device::{self, LOGIN_DEVICE};
use crate::authn::sms::{Purpose, SmsMessage};
use crate::authn::token;
use crate::error::{ApiError, Code};
use crate::gate::{Admitted, actions};
use crate::pipeline::unix_now;
use crate::rescue::Failure;
use crate::session::ResolvedSession;
use taxgate_proxy::ConnInfo;

/// A device not used for this long makes a login's notice (CONTRACT section 11).
const NEW_DEVICE_WINDOW_SECS: i64 = 90 * 86_400;

/// Which second-factor endpoint a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactor {
    /// `POST /auth/sms/send`.
    SmsSend,
    /// `POST /auth/sms/verify`.
    SmsVerify,
    /// `POST /auth/face/start`.
    FaceStart,
    /// `POST /auth/face/complete`.
    FaceComplete,
}

impl Auth {
    /// `POST /auth/step-up` `{}`: a challenge for a fresh second factor of the presenting
    /// session, with the factors it can use (SMS when there is a number to send to, face when
    /// there is a person to scan).
    pub async fn step_up(&self, req: Request<Incoming>, conn: ConnInfo) -> ApiResult {
        let session = self.session_for(&req, actions::STEP_UP, conn).await?;
        // The body is `{}`; anything readable as JSON is accepted, nothing in it is used.
        let _ = api::read_json(req).await?;
        let now = unix_now();
        let store = &self.core.store;
        let s = &session.session;
        let person = match &s.person {
            Some(id) => store.person(id).await.map_err(|e| self.store_err(e))?,
            None => None,
        };
        // A legacy enterprise session's code goes where its login's went: the firm's phone.
        let phone = match (&person, &s.enterprise) {
            (Some(p), _) => p.phone.clone(),
            (None, Some(t)) => store
                .enterprise(t)
                .await
                .map_err(|e| self.store_err(e))?
                .and_then(|e| e.phone),
            (None, None) => None,
        };
        let mut factors = Vec::new();
        if phone.is_some() {
            factors.push("sms");
        }
        if person.is_some() {
            factors.push("face");
        }
        if factors.is_empty() {
            return Err(Code::PhoneMissing.into());
        }
        let challenge_token = token::new_token().map_err(|_| ApiError::from(Code::Internal))?;
        let challenge = Challenge {
            id_hash: token::hash(&challenge_token),
            purpose: ChallengePurpose::StepUp,
            entry: Some(s.entry),
            person: s.person.clone(),
            enterprise: s.enterprise.clone(),
            agency: s.agency.clone(),
            target_phone: phone.clone(),
            code_hash: None,
            code_expires_at: None,
            code_attempts: 0,
            face_nonce: None,
            face_status: None,
            face_expires_at: None,
            client_addr: Some(conn.remote.ip().to_string()),
            created_at: now,
            expires_at: now + self.core.config.login.challenge_ttl_secs as i64,
            consumed_at: None,
        };
        store
            .create_step_up_challenge(&challenge, s.id.as_str())
            .await
            .map_err(|e| self.store_err(e))?;
        let mut ev = self.event(now, "step_up_started", true, conn.remote.ip());
        ev.session_id = Some(s.id.clone());
        ev.person = s.person.clone();
        ev.enterprise = s.enterprise.clone();
        ev.entry = Some(s.entry);
        self.audit(ev).await?;
        Ok(challenge_answer(&challenge_token, &factors, phone.as_ref()))
    }

    /// The second-factor endpoints. A step-up challenge is only ever used by its own session
    /// (another session, or none, reads it as `challenge_expired`) and completes into a fresh
    /// factor of that session; every other challenge goes to its flow as before, with the
    /// device of this request for the session a login issues.
    pub async fn second_factor(
        &self,
        step: SecondFactor,
        req: Request<Incoming>,
        conn: ConnInfo,
    ) -> ApiResult {
        let (parts, body) = api::read_json(req).await?;
        let now = unix_now();
        if let Some(c) = self.presented_step_up(&body).await? {
            let session = self.step_up_session(&c, &parts.headers, now).await?;
            return match step {
                SecondFactor::SmsSend => self.sms_send(body, conn).await,
                SecondFactor::FaceStart => self.face_start(body, conn).await,
                SecondFactor::SmsVerify => {
                    let c = self.live_challenge(&body, conn, now).await?;
                    self.check_code(&c, &body, now).await?;
                    self.complete_step_up(&c, &session, Factor::Sms, conn, now)
                        .await
                }
                SecondFactor::FaceComplete => {
                    let c = self.live_challenge(&body, conn, now).await?;
                    match c.face_status {
                        Some(FaceStatus::Passed) => {
                            self.complete_step_up(&c, &session, Factor::Face, conn, now)
                                .await
                        }
                        Some(FaceStatus::Failed) => Err(Code::FaceFailed.into()),
                        Some(FaceStatus::Pending)
                            if c.face_expires_at.is_some_and(|t| t <= now) =>
                        {
                            Err(Code::ChallengeExpired.into())
                        }
                        _ => Err(Code::FacePending.into()),
                    }
                }
            };
        }
        let device = device::of_request(&parts.headers, conn.remote.ip());
        let flow = async {
            match step {
                SecondFactor::SmsSend => self.sms_send(body, conn).await,
                SecondFactor::SmsVerify => self.sms_verify(body, conn).await,
                SecondFactor::FaceStart => self.face_start(body, conn).await,
                SecondFactor::FaceComplete => self.face_complete(body, conn).await,
            }
        };
        LOGIN_DEVICE.scope(device, flow).await
    }

    /// The step-up challenge a body names, if it names one (anything else is left to the
    /// flows, which refuse it as they always did).
    async fn presented_step_up(&self, body: &Json) -> Result<Option<Challenge>, ApiError> {
        let Ok(Some(presented)) = body.opt_str("challenge", 64) else {
            return Ok(None);
        };
        if !token::well_formed(presented) {
            return Ok(None);
        }
        let found = self
            .core
            .store
            .challenge(&token::hash(presented))
            .await
            .map_err(|e| self.store_err(e))?;
        Ok(found.filter(|c| c.purpose == ChallengePurpose::StepUp))
    }

    /// The live session presenting step-up challenge `c`, which must be the session that asked
    /// for it: no session is `login_required`, another one is `challenge_expired` (as an
    /// unknown challenge: nothing tells whose it is).
    async fn step_up_session(
        &self,
        c: &Challenge,
        headers: &http::HeaderMap,
        now: Timestamp,
    ) -> Result<std::sync::Arc<ResolvedSession>, Failure> {
        let Admitted { session, .. } = self.core.gate.admit(headers, now).await?;
        let owner = self
            .core
            .store
            .challenge_session(&c.id_hash)
            .await
            .map_err(|e| self.store_err(e))?;
        if owner.as_deref() != Some(session.id()) {
            return Err(Code::ChallengeExpired.into());
        }
        Ok(session)
    }

    /// The step-up's factor passed: the challenge is used up, the session's factor time (and
    /// face time) is now, on every instance (the store publishes the session's invalidation).
    async fn complete_step_up(
        &self,
        c: &Challenge,
        session: &ResolvedSession,
        factor: Factor,
        conn: ConnInfo,
        now: Timestamp,
    ) -> ApiResult {
        let store = &self.core.store;
        if !store
            .consume_challenge(&c.id_hash, now)
            .await
            .map_err(|e| self.store_err(e))?
        {
            return Err(Code::ChallengeExpired.into());
        }
        let face = factor == Factor::Face;
        if !store
            .set_session_factor(session.id(), now, face)
            .await
            .map_err(|e| self.store_err(e))?
        {
            // Ended while the factor was checked.
            return Err(Failure::LoginRequired(Code::LoginRequired));
        }
        let s = &session.session;
        let mut ev = self.event(now, "step_up_completed", true, conn.remote.ip());
        ev.session_id = Some(s.id.clone());
        ev.person = s.person.clone();
        ev.enterprise = s.enterprise.clone();
        ev.entry = Some(s.entry);
        ev.detail = Some(json!({ "factor": factor.as_str() }).to_string());
        self.audit(ev).await?;
        let person = match &s.person {
            Some(id) => store.person(id).await.map_err(|e| self.store_err(e))?,
            None => None,
        };
        let enterprise = match &s.enterprise {
            Some(id) => store.enterprise(id).await.map_err(|e| self.store_err(e))?,
            None => None,
        };
        let mut view = super::session_view_of(s, person.as_ref(), enterprise.as_ref());
        let face_at = if face { now } else { s.face_at };
        api::set_field(&mut view, "factor_at", api::rfc3339(now));
        api::set_field(
            &mut view,
            "face_at",
            (face_at > 0).then(|| api::rfc3339(face_at)),
        );
        Ok(api::json(StatusCode::OK, &view))
    }

    /// A login completed from `device`: remembered for the person, and when the person has not
    /// used it for 90 days (or ever) and `[login] notify_new_device` is on, a `login_notice`
    /// goes to their phone. The login has happened: a failure here is logged, not answered.
    pub(super) async fn notice_new_device(
        &self,
        person: Option<&Person>,
        device: &SessionDevice,
        now: Timestamp,
    ) {
        let Some(person) = person else {
            return;
        };
        let known = match self
            .core
            .store
            .note_login_device(
                &person.id_number,
                &device.ua_family,
                &device.client_net,
                now,
                NEW_DEVICE_WINDOW_SECS,
            )
            .await
        {
            Ok(known) => known,
            Err(e) => {
                tracing::warn!(error = %e, "cannot record the device of a login");
                return;
            }
        };
        if known || !self.core.config.login.notify_new_device {
            return;
        }
        let Some(phone) = &person.phone else {
            return;
        };
        let message = SmsMessage {
            to: phone.as_str(),
            code: None,
            purpose: Purpose::LoginNotice,
            at: api::rfc3339(now),
        };
        if let Err(e) = self.sms.send(&message).await {
            tracing::error!(error = %e, to = %phone.masked(), "login notice failed");
        }
    }
}
