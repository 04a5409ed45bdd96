//! The face second factor (CONTRACT section 6): a nonce for the app to scan, the signed callback
//! from the mobile-app backend with the scan's result, and `/auth/face/complete`, which turns a
//! passed login challenge into a session (or a passed recovery challenge into a code).

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;
use taxgate_store::{ChallengePurpose, FaceStatus, Factor, IdNumber, Store, StoreError};

use super::{ApiResult, Auth};
use crate::api::{self, Json, no_content};
use crate::authn::{face, token};
use crate::error::{ApiError, Code};
use crate::openapi::schemas::{FaceStartAnswer, VerifiedAnswer};
use crate::pipeline::unix_now;
use taxgate_proxy::ConnInfo;

impl Auth {
    /// `POST /auth/face/start`.
    pub async fn face_start(&self, body: Json, conn: ConnInfo) -> ApiResult {
        let now = unix_now();
        let c = self.live_challenge(&body, conn, now).await?;
        let scannable = matches!(
            c.purpose,
            ChallengePurpose::Login | ChallengePurpose::RecoverPhone | ChallengePurpose::StepUp
        );
        // A reset challenge of an unknown account scans like any other (nothing is revealed);
        // its callback can only fail, naming a person the challenge does not have.
        let reset = c.purpose == ChallengePurpose::ResetPassword;
        if !reset && (!scannable || c.person.is_none()) {
            // The legacy login has no person to scan.
            return Err(ApiError::field(Code::InvalidInput, "challenge").into());
        }
        let nonce = token::new_token().map_err(|_| ApiError::from(Code::Internal))?;
        let ttl = self.core.config.face.ttl_secs;
        // The store refuses a new nonce once a face failed, so a failure recorded after our
        // read still ends the challenge (no second scan).
        match self
            .core
            .store
            .set_face_nonce(&c.id_hash, &nonce, now + ttl as i64)
            .await
        {
            Ok(()) => {}
            Err(StoreError::NotFound) => return Err(Code::FaceFailed.into()),
            Err(e) => return Err(self.store_err(e).into()),
        }
        self.challenge_event(&c, now, "face_started", true, None)
            .await?;
        Ok(api::typed(
            StatusCode::OK,
            &FaceStartAnswer {
                qr: format!("taxgate-face://v1?nonce={nonce}"),
                nonce,
                expires_in: ttl,
            },
        ))
    }

    /// `POST /auth/face/callback`, from the mobile-app backend (CONTRACT section 6).
    pub async fn face_callback(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        budget: face::CallbackBudget<'_>,
    ) -> ApiResult {
        let now = unix_now();
        let client = conn.remote.ip();
        let (parts, raw) = match api::read_body(req, 4096).await {
            Ok(read) => read,
            // An unreadable body is not signed: it counts like any other request.
            Err(_) if !budget.unsigned.allow(client, now) => return Err(Code::RateLimited.into()),
            Err(e) => return Err(e.into()),
        };
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let signed = face::verify(
            self.core.config.face.callback_secret.expose().as_bytes(),
            header("x-taxgate-timestamp"),
            header("x-taxgate-signature"),
            &raw,
            now,
        );
        let budget = if signed.is_ok() {
            budget.signed
        } else {
            budget.unsigned
        };
        if !budget.allow(client, now) {
            return Err(Code::RateLimited.into());
        }
        signed.map_err(|_| ApiError::from(Code::BadSignature))?;
        let v: Value =
            serde_json::from_slice(&raw).map_err(|_| ApiError::from(Code::InvalidInput))?;
        let body = Json(v);
        let nonce = body.str("nonce", 64)?;
        let id_number = body.parse("id_number", IdNumber::parse)?;
        let passed = match body.str("result", 8)? {
            "pass" => true,
            "fail" => false,
            _ => return Err(ApiError::field(Code::InvalidInput, "result").into()),
        };
        let store = &self.core.store;
        let c = store
            .challenge_by_nonce(nonce)
            .await
            .map_err(|e| self.store_err(e))?
            .ok_or(ApiError::from(Code::UnknownNonce))?;
        let live = c.consumed_at.is_none()
            && c.expires_at > now
            && c.face_status == Some(FaceStatus::Pending)
            && c.face_expires_at.is_some_and(|t| t > now);
        if !live {
            return Err(Code::UnknownNonce.into());
        }
        if c.person.as_ref() != Some(&id_number) {
            let _ = store
                .set_face_result(nonce, false)
                .await
                .map_err(|e| self.store_err(e))?;
            let mut ev = self.event(now, "face_callback", false, conn.remote.ip());
            ev.person = c.person.clone();
            ev.reason = Some("identity_mismatch".into());
            self.audit(ev).await?;
            return Err(Code::IdentityMismatch.into());
        }
        if !store
            .set_face_result(nonce, passed)
            .await
            .map_err(|e| self.store_err(e))?
        {
            return Err(Code::UnknownNonce.into());
        }
        let reason = (!passed).then_some("face_failed");
        self.challenge_event(&c, now, "face_result", passed, reason)
            .await?;
        Ok(no_content())
    }

    /// `POST /auth/face/complete`.
    pub async fn face_complete(&self, body: Json, conn: ConnInfo) -> ApiResult {
        let now = unix_now();
        let c = self.live_challenge(&body, conn, now).await?;
        match c.face_status {
            Some(FaceStatus::Passed) if c.purpose == ChallengePurpose::RecoverPhone => {
                self.recover_code(&c, &body, now).await
            }
            Some(FaceStatus::Passed) if c.purpose == ChallengePurpose::ResetPassword => Ok(
                api::typed(StatusCode::OK, &VerifiedAnswer { verified: "face" }),
            ),
            Some(FaceStatus::Passed) => self.complete_login(c, Factor::Face, conn, now).await,
            Some(FaceStatus::Failed) => Err(Code::FaceFailed.into()),
            Some(FaceStatus::Pending) if c.face_expires_at.is_some_and(|t| t <= now) => {
                Err(Code::ChallengeExpired.into())
            }
            _ => Err(Code::FacePending.into()),
        }
    }
}
