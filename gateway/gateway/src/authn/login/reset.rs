//! 忘记密码 (CONTRACT section 13): `POST /auth/password/reset` opens a challenge for an account
//! string, the SMS or face step proves the person, and `POST /auth/password/reset/complete` sets
//! the new password, ends every session of the person and tells the person's phone.
//!
//! Nothing is revealed about the account: an unknown account, or one without a phone, gets the
//! same challenge answer, and `/auth/sms/send` on it answers 200 whether or not a code went out
//! (a code only ever goes to the registered number). Such a challenge can never pass: its code is
//! random and unsent, and a face callback names a person it does not have.

use http::StatusCode;
use serde_json::json;
use taxgate_store::{Challenge, ChallengePurpose, FaceStatus, Phone, Secret, Store, Timestamp};

use super::{ApiResult, Auth, retry_after};
use crate::api::{self, Json, no_content};
use crate::authn::password_rules;
use crate::authn::sms::Purpose;
use crate::authn::token;
use crate::error::{ApiError, Code, Hints};
use crate::openapi::schemas::{ChallengeAnswer, DemoSignAnswer, ResendAnswer, VerifiedAnswer};
use crate::pipeline::unix_now;
use taxgate_proxy::ConnInfo;

impl Auth {
    /// `POST /auth/password/reset {account}`.
    pub async fn password_reset(&self, body: Json, conn: ConnInfo) -> ApiResult {
        let account = body.str("account", 64)?.trim().to_string();
        if account.is_empty() {
            return Err(ApiError::field(Code::InvalidInput, "account").into());
        }
        let now = unix_now();
        let client = conn.remote.ip();
        let person = self
            .core
            .store
            .person_by_account(&account)
            .await
            .map_err(|e| self.store_err(e))?;
        let challenge_token = self
            .new_challenge(
                ChallengePurpose::ResetPassword,
                None,
                person.as_ref().map(|p| &p.id_number),
                None,
                None,
                person.as_ref().and_then(|p| p.phone.clone()),
                now,
                client,
            )
            .await?;
        let mut ev = self.event(now, "password_reset_started", true, client);
        ev.person = person.as_ref().map(|p| p.id_number.clone());
        self.audit(ev).await?;
        // No `phone_masked`: it would tell who has a number.
        Ok(api::typed(
            StatusCode::OK,
            &ChallengeAnswer {
                challenge: challenge_token,
                factors: vec!["sms".into(), "face".into()],
                phone_masked: None,
            },
        ))
    }

    /// `/auth/sms/send` on a reset challenge: a code to the registered phone under every limit,
    /// or, without one, a code nobody receives (stored as a random hash, so the answers, the
    /// resend interval and the wrong-code count look the same).
    pub(super) async fn reset_sms_send(&self, c: &Challenge, now: Timestamp) -> ApiResult {
        let login = &self.core.config.login;
        let ttl = login.sms_code_ttl_secs as i64;
        // The same for every account, known or not, with a phone or not: this challenge's own
        // resend interval, then the per-address and global budgets. A refusal by a limit of the
        // number or the person (a second reset of the same account, its daily limit) would
        // tell a registered phone apart, so it is withheld from the answer (`send_code_as`).
        if let Some(expires) = c.code_expires_at {
            let next = expires - ttl + login.sms_resend_secs as i64;
            if next > now {
                return Err(retry_after(Code::SmsTooFrequent, next - now).into());
            }
        }
        self.silent_send_budget(c, now).await?;
        if c.target_phone.is_some() {
            self.send_code_as(c, now, true).await?;
        } else {
            let unknowable = token::new_token().map_err(|_| ApiError::from(Code::Internal))?;
            self.core
                .store
                .set_challenge_code(&c.id_hash, &Secret(token::hash(&unknowable)), now + ttl)
                .await
                .map_err(|e| self.store_err(e))?;
            self.challenge_event(c, now, "sms_code_not_sent", false, Some("no_phone"))
                .await?;
        }
        Ok(api::typed(
            StatusCode::OK,
            &ResendAnswer {
                resend_after_secs: login.sms_resend_secs,
            },
        ))
    }

    /// The per-address and global SMS budgets a code that is not sent still counts against, so
    /// that a flood of resets of unknown accounts meets the same 429s as one of known accounts
    /// (its own buckets: the SMS log counts only codes sent).
    async fn silent_send_budget(&self, c: &Challenge, now: Timestamp) -> Result<(), ApiError> {
        let login = &self.core.config.login;
        let hour = now.div_euclid(3_600) * 3_600;
        let minute = now.div_euclid(60) * 60;
        let address = c
            .client_addr
            .as_deref()
            .and_then(|a| a.parse::<std::net::IpAddr>().ok())
            .map(crate::authn::ratelimit::address_key)
            .unwrap_or_default();
        let budgets = [
            (
                format!("sms_unsent_addr:{address}"),
                hour,
                i64::from(login.sms_per_address_hourly),
                hour + 3_600,
            ),
            (
                "sms_unsent_global".to_string(),
                minute,
                i64::from(login.sms_global_per_minute),
                minute + 60,
            ),
        ];
        for (bucket, window, limit, ends) in budgets {
            let taken = self
                .core
                .store
                .take_budget(&bucket, window, limit)
                .await
                .map_err(|e| self.store_err(e))?;
            if taken.is_none() {
                self.challenge_event(c, now, "sms_code_refused", false, Some("sms_too_frequent"))
                    .await?;
                return Err(retry_after(Code::SmsTooFrequent, ends - now));
            }
        }
        Ok(())
    }

    /// `/auth/sms/verify` on a reset challenge: a right code marks the challenge as proven; it
    /// stays open for `/auth/password/reset/complete`.
    pub(super) async fn reset_sms_verify(
        &self,
        c: &Challenge,
        body: &Json,
        now: Timestamp,
    ) -> ApiResult {
        self.check_code(c, body, now).await?;
        if !self
            .core
            .store
            .mark_challenge_verified(&c.id_hash, now)
            .await
            .map_err(|e| self.store_err(e))?
        {
            return Err(Code::ChallengeExpired.into());
        }
        Ok(api::typed(
            StatusCode::OK,
            &VerifiedAnswer { verified: "sms" },
        ))
    }

    /// `POST /auth/password/reset/complete {challenge, new_password}`.
    pub async fn password_reset_complete(&self, body: Json, conn: ConnInfo) -> ApiResult {
        let now = unix_now();
        let c = self.live_challenge(&body, conn, now).await?;
        if c.purpose != ChallengePurpose::ResetPassword {
            return Err(Code::ChallengeExpired.into());
        }
        let new = body.str("new_password", 128)?;
        let store = &self.core.store;
        let sms_passed = store
            .challenge_verified_at(&c.id_hash)
            .await
            .map_err(|e| self.store_err(e))?
            .is_some();
        let face_passed = c.face_status == Some(FaceStatus::Passed);
        if !(sms_passed || face_passed) {
            return Err(if c.face_status.is_some() {
                Code::FaceRequired.into()
            } else {
                let max = self.core.config.login.sms_max_attempts as i32;
                ApiError::hinted(
                    Code::InvalidCode,
                    Hints {
                        attempts_left: Some((max - c.code_attempts).max(0) as u32),
                        ..Hints::default()
                    },
                )
                .into()
            });
        }
        // A passed factor always belongs to a person: codes go only to a registered number, and
        // a face callback must name the challenge's person.
        let person_id = c
            .person
            .as_ref()
            .ok_or(ApiError::from(Code::ChallengeExpired))?;
        let person = store
            .person(person_id)
            .await
            .map_err(|e| self.store_err(e))?
            .ok_or(ApiError::from(Code::ChallengeExpired))?;
        let personal = password_rules::Personal {
            id_number: Some(person.id_number.as_str()),
            phone: person.phone.as_ref().map(Phone::as_str),
            username: person.username.as_deref(),
        };
        if let Err(weakness) = password_rules::check(new, &personal) {
            let (zh, en) = weakness.messages();
            return Err(ApiError::explained(Code::WeakPassword, zh, en).into());
        }
        let phc = self.hash(new).await?;
        // Single use before anything changes: two completes racing cannot both set a password.
        if !store
            .consume_challenge(&c.id_hash, now)
            .await
            .map_err(|e| self.store_err(e))?
        {
            return Err(Code::ChallengeExpired.into());
        }
        // Sessions first: a failure after this leaves the person logged out with the old
        // password, never the new password set and old sessions alive.
        let revoked = store
            .revoke_person_sessions(&person.id_number, None, now)
            .await
            .map_err(|e| self.store_err(e))?;
        store
            .set_password(&person.id_number, &phc, false, now)
            .await
            .map_err(|e| self.store_err(e))?;
        // The forgotten password may have locked the account: the new one opens it.
        store
            .reset_person_failures(&person.id_number)
            .await
            .map_err(|e| self.store_err(e))?;
        let mut ev = self.event(now, "password_reset", true, conn.remote.ip());
        ev.person = Some(person.id_number.clone());
        ev.detail = Some(
            json!({ "sessions_revoked": revoked, "factor": if face_passed { "face" } else { "sms" } })
                .to_string(),
        );
        self.audit(ev).await?;
        if let Some(phone) = &person.phone {
            self.notice(phone, Purpose::PasswordChanged, now).await;
        }
        Ok(no_content())
    }
}

impl Auth {
    /// `POST /auth/face/demo-sign {challenge, result?}` (`taxgate demo` only; any other gateway
    /// answers 404): the callback the mobile app's backend would send for this challenge's
    /// pending face scan, signed with `[face] callback_secret`, for the page to post to
    /// `/auth/face/callback` itself (模拟扫码). `result` is `pass` (default) or `fail`.
    pub async fn face_demo_sign(&self, body: Json, conn: ConnInfo) -> ApiResult {
        let now = unix_now();
        let c = self.live_challenge(&body, conn, now).await?;
        let result = match body.opt_str("result", 8)? {
            None | Some("pass") => "pass",
            Some("fail") => "fail",
            Some(_) => return Err(ApiError::field(Code::InvalidInput, "result").into()),
        };
        let (Some(nonce), Some(FaceStatus::Pending)) = (c.face_nonce.as_deref(), c.face_status)
        else {
            return Err(Code::FacePending.into());
        };
        // A challenge without a person (an unknown account's reset) is signed for nobody: the
        // callback then fails as a real app's would.
        let id_number = c
            .person
            .as_ref()
            .map_or("11010519491231002X", |p| p.as_str());
        let callback =
            json!({ "nonce": nonce, "id_number": id_number, "result": result }).to_string();
        let timestamp = now.to_string();
        let signature = crate::authn::face::sign(
            self.core.config.face.callback_secret.expose().as_bytes(),
            &timestamp,
            callback.as_bytes(),
        );
        Ok(api::typed(
            StatusCode::OK,
            &DemoSignAnswer {
                body: callback,
                timestamp,
                signature,
            },
        ))
    }
}
