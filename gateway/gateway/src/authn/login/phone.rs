//! Moving a phone number to a person: recovery (找回手机号码: password, face, then a code to
//! the new number) and binding a new number from a session (`/account/phone`); the transfer
//! itself, which clears the number from its previous holder (一号一人), and the notices.

use http::StatusCode;
use serde_json::json;
use taxgate_store::{
    Challenge, ChallengePurpose, Entry, FaceStatus, Phone, PhoneAudit, Store, Timestamp,
};

use super::{ApiResult, Auth, challenge_answer, session_person};
use crate::api::{self, Json, no_content};
use crate::authn::sms::{Purpose, SmsMessage};
use crate::authn::token;
use crate::error::{ApiError, Code};
use crate::openapi::schemas::{PhoneChallengeAnswer, RecoveryCodeAnswer};
use crate::pipeline::unix_now;
use crate::session::ResolvedSession;
use taxgate_proxy::ConnInfo;

/// On a phone transfer's 204: whether the number was cleared from another person's account.
pub const PHONE_TAKEN: http::HeaderName = http::HeaderName::from_static("taxgate-phone-taken");

impl Auth {
    /// `POST /auth/phone/recover`: credentials, then a challenge whose only factor is the face
    /// scan. Nothing is sent yet: a password alone (or a migrated user's initial one) must not
    /// move the second factor to a number of the caller's choosing.
    pub async fn phone_recover(&self, body: Json, conn: ConnInfo) -> ApiResult {
        let account = body.str("account", 64)?.trim().to_string();
        let pw = body.str("password", 128)?;
        let phone = body.parse("phone", Phone::parse)?;
        let now = unix_now();
        let client = conn.remote.ip();
        // The reserved first factor of `/auth/login` (issue 21 point 1).
        let person = self
            .first_factor(&account, pw, Some(Entry::Person), client, now)
            .await?;
        let challenge_token = self
            .new_challenge(
                ChallengePurpose::RecoverPhone,
                Some(Entry::Person),
                Some(&person.id_number),
                None,
                None,
                Some(phone),
                now,
                client,
            )
            .await?;
        let mut ev = self.event(now, "phone_recovery_started", true, client);
        ev.person = Some(person.id_number.clone());
        self.audit(ev).await?;
        Ok(challenge_answer(&challenge_token, &["face"], None))
    }

    /// `/auth/face/complete` on a recovery challenge whose face passed: the code goes to the
    /// new number (purpose `recover_phone`); the challenge stays open for
    /// `/auth/phone/recover/verify`.
    pub(super) async fn recover_code(
        &self,
        c: &Challenge,
        body: &Json,
        now: Timestamp,
    ) -> ApiResult {
        self.send_code(c, now).await?;
        Ok(api::typed(
            StatusCode::OK,
            &RecoveryCodeAnswer {
                challenge: body.str("challenge", 64)?.to_string(),
                resend_after_secs: self.core.config.login.sms_resend_secs,
            },
        ))
    }

    /// `POST /auth/phone/recover/verify` (and `/account/phone/verify`): the number moves to the
    /// person in one transaction and is cleared from its previous holder (一号一人); the
    /// person's previous number and the previous holder are told. A recovery also ends every
    /// session of the person, on every instance: whoever used the old factor is out.
    pub async fn phone_verify(
        &self,
        body: Json,
        conn: ConnInfo,
        purpose: ChallengePurpose,
    ) -> ApiResult {
        let now = unix_now();
        let c = self.live_challenge(&body, conn, now).await?;
        if c.purpose != purpose {
            return Err(Code::ChallengeExpired.into());
        }
        if purpose == ChallengePurpose::RecoverPhone && c.face_status != Some(FaceStatus::Passed) {
            return Err(Code::FaceRequired.into());
        }
        self.check_code(&c, &body, now).await?;
        if !self
            .core
            .store
            .consume_challenge(&c.id_hash, now)
            .await
            .map_err(|e| self.store_err(e))?
        {
            return Err(Code::ChallengeExpired.into());
        }
        let (Some(person), Some(phone)) = (&c.person, &c.target_phone) else {
            return Err(Code::ChallengeExpired.into());
        };
        let store = &self.core.store;
        // Sessions first: a store failure between the two steps then leaves everyone logged
        // out and the number where it was, never the number moved and the old sessions alive.
        let revoked = if purpose == ChallengePurpose::RecoverPhone {
            store
                .revoke_person_sessions(person, None, now)
                .await
                .map_err(|e| self.store_err(e))?
        } else {
            0
        };
        let before = store
            .person(person)
            .await
            .map_err(|e| self.store_err(e))?
            .and_then(|p| p.phone);
        let mut bound = self.event(now, "phone_bound", true, conn.remote.ip());
        bound.person = Some(person.clone());
        bound.detail =
            Some(json!({ "phone": phone.masked(), "via": purpose.as_str() }).to_string());
        let mut cleared = self.event(now, "phone_cleared", true, conn.remote.ip());
        cleared.detail =
            Some(json!({ "phone": phone.masked(), "taken_by_verification": true }).to_string());
        let audit = PhoneAudit {
            bound: Some(bound),
            cleared: Some(cleared),
        };
        // The events are written in the transfer's transaction, not through the audit queue:
        // a crash right after the transfer must not lose who took whose number.
        let previous_holder = store
            .transfer_phone(person, phone, now, &audit)
            .await
            .map_err(|e| self.store_err(e))?;
        // The person's old number hears that it no longer receives this account's codes, and
        // the number's old holder that the number left their account.
        if let Some(old) = before.as_ref().filter(|old| *old != phone) {
            self.notice(old, Purpose::PhoneChanged, now).await;
        }
        if previous_holder.is_some() {
            self.notice(phone, Purpose::PhoneChanged, now).await;
        }
        if purpose == ChallengePurpose::RecoverPhone {
            let mut ev = self.event(now, "phone_recovered", true, conn.remote.ip());
            ev.person = Some(person.clone());
            ev.detail = Some(json!({ "sessions_revoked": revoked }).to_string());
            self.audit(ev).await?;
        }
        // The page says whether the number was taken from someone (一号一人) only when it was.
        let mut answer = no_content();
        answer.headers_mut().insert(
            PHONE_TAKEN,
            http::HeaderValue::from_static(if previous_holder.is_some() {
                "true"
            } else {
                "false"
            }),
        );
        Ok(answer)
    }

    /// Send a notice (no code). The change it reports has happened: a failed delivery is
    /// logged, not turned into an error for the request that made the change.
    pub(crate) async fn notice(&self, to: &Phone, purpose: Purpose, now: Timestamp) {
        let message = SmsMessage {
            to: to.as_str(),
            code: None,
            purpose,
            at: api::rfc3339(now),
        };
        if let Err(e) = self.sms.send(&message).await {
            tracing::error!(error = %e, to = %to.masked(), purpose = purpose.as_str(), "sms notice failed");
        }
    }

    /// `POST /account/phone`: a code to the new number of the session's person.
    pub async fn phone_bind_start(
        &self,
        session: &ResolvedSession,
        body: Json,
        conn: ConnInfo,
    ) -> ApiResult {
        let phone = body.parse("phone", Phone::parse)?;
        let person = session_person(session)?;
        let now = unix_now();
        let challenge_token = self
            .new_challenge(
                ChallengePurpose::BindPhone,
                Some(session.session.entry),
                Some(person),
                None,
                None,
                Some(phone),
                now,
                conn.remote.ip(),
            )
            .await?;
        let c = self
            .core
            .store
            .challenge(&token::hash(&challenge_token))
            .await
            .map_err(|e| self.store_err(e))?
            .ok_or(ApiError::from(Code::Internal))?;
        self.send_code(&c, now).await?;
        Ok(api::typed(
            StatusCode::OK,
            &PhoneChallengeAnswer {
                challenge: challenge_token,
            },
        ))
    }
}
