//! The SMS second factor: sending a code under every limit the store counts (`/auth/sms/send`,
//! also used by phone recovery and binding), checking a code with its attempts reserved, and
//! `/auth/sms/verify`, which turns a login challenge into a session.

use std::net::IpAddr;

use http::StatusCode;
use subtle::ConstantTimeEq;
use taxgate_store::{
    Challenge, ChallengePurpose, FaceStatus, Factor, Secret, SmsLimit, SmsLimits, SmsRequest,
    SmsReservation, Store, Timestamp,
};

use super::{ApiResult, Auth, retry_after};
use crate::api::{self, Json};
use crate::authn::ratelimit::address_key;
use crate::authn::sms::{Purpose, SmsMessage};
use crate::authn::token;
use crate::error::{ApiError, Code, Hints};
use crate::metrics::SMS_REFUSED;
use crate::openapi::schemas::ResendAnswer;
use crate::pipeline::unix_now;
use taxgate_proxy::ConnInfo;

/// Beijing time: the SMS daily limit resets at local midnight.
const CHINA_OFFSET_SECS: i64 = 8 * 3600;

impl Auth {
    /// `POST /auth/sms/send`.
    pub async fn sms_send(&self, body: Json, conn: ConnInfo) -> ApiResult {
        let now = unix_now();
        let c = self.live_challenge(&body, conn, now).await?;
        match (c.purpose, c.face_status) {
            (ChallengePurpose::Login | ChallengePurpose::StepUp, _)
            | (ChallengePurpose::RecoverPhone, Some(FaceStatus::Passed)) => {}
            (ChallengePurpose::RecoverPhone, _) => return Err(Code::FaceRequired.into()),
            (ChallengePurpose::ResetPassword, _) => return self.reset_sms_send(&c, now).await,
            _ => return Err(Code::ChallengeExpired.into()),
        }
        self.send_code(&c, now).await?;
        Ok(api::typed(
            StatusCode::OK,
            &ResendAnswer {
                resend_after_secs: self.core.config.login.sms_resend_secs,
            },
        ))
    }

    /// Reserve the send under every SMS limit in the store (CONTRACT section 3, "Every code
    /// sent counts"), then send a fresh code and store its hash.
    pub(super) async fn send_code(&self, c: &Challenge, now: Timestamp) -> Result<(), ApiError> {
        self.send_code_as(c, now, false).await
    }

    /// [`Self::send_code`]; with `withhold`, a refusal by a limit of the number or the person
    /// and a failed delivery are not told to the caller: the challenge gets a code nobody
    /// receives, as a reset of an unknown account does, so the answer cannot tell the accounts
    /// apart (忘记密码, CONTRACT section 13). Logged and counted all the same.
    pub(super) async fn send_code_as(
        &self,
        c: &Challenge,
        now: Timestamp,
        withhold: bool,
    ) -> Result<(), ApiError> {
        let login = &self.core.config.login;
        let phone = c
            .target_phone
            .as_ref()
            .ok_or(ApiError::from(Code::PhoneMissing))?;
        let day_start = (now + CHINA_OFFSET_SECS).div_euclid(86_400) * 86_400 - CHINA_OFFSET_SECS;
        let address = c
            .client_addr
            .as_deref()
            .and_then(|a| a.parse::<IpAddr>().ok())
            .map(address_key);
        let request = SmsRequest {
            phone,
            purpose: c.purpose,
            person: c.person.as_ref(),
            address: address.as_deref(),
            now,
            limits: SmsLimits {
                resend_secs: login.sms_resend_secs as i64,
                number_daily: i64::from(login.sms_daily_limit),
                person_daily: i64::from(login.sms_per_person_daily),
                address_hourly: i64::from(login.sms_per_address_hourly),
                global_per_minute: i64::from(login.sms_global_per_minute),
                day_start,
            },
        };
        match self
            .core
            .store
            .reserve_sms(&request)
            .await
            .map_err(|e| self.store_err(e))?
        {
            SmsReservation::Granted => {}
            SmsReservation::Refused {
                limit,
                retry_after_secs,
            } => {
                SMS_REFUSED.inc(limit);
                if withhold {
                    let unknowable =
                        token::new_token().map_err(|_| ApiError::from(Code::Internal))?;
                    self.core
                        .store
                        .set_challenge_code(
                            &c.id_hash,
                            &Secret(token::hash(&unknowable)),
                            now + login.sms_code_ttl_secs as i64,
                        )
                        .await
                        .map_err(|e| self.store_err(e))?;
                    self.challenge_event(c, now, "sms_code_withheld", false, Some(limit.as_str()))
                        .await?;
                    return Ok(());
                }
                let code = match limit {
                    SmsLimit::NumberDaily | SmsLimit::PersonDaily => Code::SmsDailyLimit,
                    SmsLimit::ResendInterval
                    | SmsLimit::AddressHourly
                    | SmsLimit::GlobalPerMinute => Code::SmsTooFrequent,
                };
                self.challenge_event(c, now, "sms_code_refused", false, Some(code.as_str()))
                    .await?;
                return Err(retry_after(code, retry_after_secs));
            }
        }
        let code = token::new_sms_code().map_err(|_| ApiError::from(Code::Internal))?;
        self.core
            .store
            .set_challenge_code(
                &c.id_hash,
                &code_hash(&c.id_hash, &code),
                now + login.sms_code_ttl_secs as i64,
            )
            .await
            .map_err(|e| self.store_err(e))?;
        let purpose = match c.purpose {
            ChallengePurpose::Login => Purpose::Login,
            ChallengePurpose::BindPhone => Purpose::BindPhone,
            ChallengePurpose::RecoverPhone => Purpose::RecoverPhone,
            ChallengePurpose::ResetPassword => Purpose::ResetPassword,
            ChallengePurpose::StepUp => Purpose::StepUp,
        };
        let message = SmsMessage {
            to: phone.as_str(),
            code: Some(&code),
            purpose,
            at: api::rfc3339(now),
        };
        // Recorded before the code leaves: a code sent is on record whatever happens next.
        self.challenge_event(c, now, "sms_code_sent", true, None)
            .await?;
        match self.sms.send(&message).await {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, "sms delivery failed");
                if withhold {
                    Ok(())
                } else {
                    Err(ApiError::from(Code::SmsUnavailable))
                }
            }
        }
    }

    /// Check a code against the challenge. The attempt is reserved in the store first (one
    /// conditional UPDATE), so however many arrive at once no more than `sms_max_attempts` are
    /// compared; the last allowed wrong one voids the challenge.
    pub(super) async fn check_code(
        &self,
        c: &Challenge,
        body: &Json,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        let code = body.str("code", 16)?;
        let max = self.core.config.login.sms_max_attempts as i32;
        let Some(attempt) = self
            .core
            .store
            .reserve_code_attempt(&c.id_hash, now, max)
            .await
            .map_err(|e| self.store_err(e))?
        else {
            return Err(Code::ChallengeExpired.into());
        };
        let right = match (&c.code_hash, c.code_expires_at) {
            (Some(expected), Some(until)) if until > now => {
                let given = code_hash(&c.id_hash, code.trim());
                bool::from(
                    given
                        .expose()
                        .as_bytes()
                        .ct_eq(expected.expose().as_bytes()),
                )
            }
            _ => false,
        };
        if right {
            return Ok(());
        }
        self.challenge_event(c, now, "sms_code_failed", false, Some("invalid_code"))
            .await?;
        if attempt >= max {
            Err(Code::ChallengeExpired.into())
        } else {
            Err(ApiError::hinted(
                Code::InvalidCode,
                Hints {
                    attempts_left: Some((max - attempt) as u32),
                    ..Hints::default()
                },
            ))
        }
    }

    /// `POST /auth/sms/verify`.
    pub async fn sms_verify(&self, body: Json, conn: ConnInfo) -> ApiResult {
        let now = unix_now();
        let c = self.live_challenge(&body, conn, now).await?;
        if c.purpose == ChallengePurpose::ResetPassword {
            return self.reset_sms_verify(&c, &body, now).await;
        }
        if c.purpose != ChallengePurpose::Login {
            return Err(Code::ChallengeExpired.into());
        }
        self.check_code(&c, &body, now).await?;
        self.complete_login(c, Factor::Sms, conn, now).await
    }
}

/// SHA-256 of the code bound to its challenge, so equal codes of two challenges differ.
fn code_hash(challenge_hash: &str, code: &str) -> Secret {
    Secret(token::hash(&format!("{challenge_hash}:{code}")))
}
