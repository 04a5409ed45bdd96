//! Challenges: the single-use record between a first factor and its second (login, phone
//! recovery, binding a new number), created here and looked up here so that every flow refuses
//! an unknown, expired, used or foreign challenge the same way.

use std::net::IpAddr;

use taxgate_store::{
    Challenge, ChallengePurpose, Entry, FaceStatus, IdNumber, Phone, Store, TaxpayerId, Timestamp,
};

use super::Auth;
use crate::api::Json;
use crate::authn::token;
use crate::error::{ApiError, Code};
use taxgate_proxy::ConnInfo;

impl Auth {
    #[expect(
        clippy::too_many_arguments,
        reason = "each flow sets a different few of the challenge's fields"
    )]
    pub(super) async fn new_challenge(
        &self,
        purpose: ChallengePurpose,
        entry: Option<Entry>,
        person: Option<&IdNumber>,
        enterprise: Option<TaxpayerId>,
        agency: Option<TaxpayerId>,
        target_phone: Option<Phone>,
        now: Timestamp,
        client: IpAddr,
    ) -> Result<String, ApiError> {
        let challenge_token = token::new_token().map_err(|_| ApiError::from(Code::Internal))?;
        let challenge = Challenge {
            id_hash: token::hash(&challenge_token),
            purpose,
            entry,
            person: person.cloned(),
            enterprise,
            agency,
            target_phone,
            code_hash: None,
            code_expires_at: None,
            code_attempts: 0,
            face_nonce: None,
            face_status: None,
            face_expires_at: None,
            client_addr: Some(client.to_string()),
            created_at: now,
            expires_at: now + self.core.config.login.challenge_ttl_secs as i64,
            consumed_at: None,
        };
        self.core
            .store
            .create_challenge(&challenge)
            .await
            .map_err(|e| self.store_err(e))?;
        Ok(challenge_token)
    }

    /// The live challenge a client presents: unknown, expired, used, or started from another
    /// address all read as `challenge_expired` (no oracle for guessing).
    pub(super) async fn live_challenge(
        &self,
        body: &Json,
        conn: ConnInfo,
        now: Timestamp,
    ) -> Result<Challenge, ApiError> {
        let presented = body.str("challenge", 64)?;
        if !token::well_formed(presented) {
            return Err(Code::ChallengeExpired.into());
        }
        let c = self
            .core
            .store
            .challenge(&token::hash(presented))
            .await
            .map_err(|e| self.store_err(e))?
            .ok_or(ApiError::from(Code::ChallengeExpired))?;
        let same_client = c.client_addr.as_deref() == Some(conn.remote.ip().to_string().as_str());
        if c.consumed_at.is_some()
            || c.expires_at <= now
            || !same_client
            || c.code_attempts >= self.core.config.login.sms_max_attempts as i32
        {
            return Err(Code::ChallengeExpired.into());
        }
        // A failed face (or the face of another person) ends the challenge for good.
        if c.face_status == Some(FaceStatus::Failed) {
            return Err(Code::FaceFailed.into());
        }
        Ok(c)
    }
}
