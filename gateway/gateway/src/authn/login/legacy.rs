//! The legacy enterprise login (`entry = enterprise_legacy`): the enterprise's old shared
//! password, then an SMS code to the enterprise's registered phone, for as long as the policies
//! (and `login.legacy_until`) still allow that entry.

use taxgate_store::{ChallengePurpose, Entry, GuardKey, Store, TaxpayerId};

use super::password::PasswordAttempt;
use super::{ApiResult, Auth, challenge_answer};
use crate::api::Json;
use crate::error::{ApiError, Code};
use crate::pipeline::unix_now;
use taxgate_policy::LoginAttempt;
use taxgate_proxy::ConnInfo;

impl Auth {
    /// `POST /auth/login` with `entry = enterprise_legacy`: the old enterprise password, then an
    /// SMS to the enterprise's registered phone, while the policies allow it.
    pub(super) async fn login_legacy(&self, body: Json, conn: ConnInfo) -> ApiResult {
        let taxpayer_id = body.parse("taxpayer_id", TaxpayerId::parse)?;
        let pw = body.str("password", 128)?;
        let now = unix_now();
        let client = conn.remote.ip();
        let store = &self.core.store;
        let enterprise = store
            .enterprise(&taxpayer_id)
            .await
            .map_err(|e| self.store_err(e))?;
        let hash = enterprise
            .as_ref()
            .and_then(|e| e.legacy_password_hash.clone());
        // An enterprise without a legacy password locks like an unknown account string.
        let key = match &hash {
            Some(_) => GuardKey::Enterprise(taxpayer_id.clone()),
            None => GuardKey::Account(format!("legacy:{}", taxpayer_id.as_str())),
        };
        let attempt = PasswordAttempt {
            key,
            hash: hash.as_ref(),
            person: None,
            enterprise: Some(taxpayer_id.clone()),
            entry: Some(Entry::EnterpriseLegacy),
        };
        self.checked_password(attempt, pw, client, now).await?;
        let enterprise = enterprise.ok_or(ApiError::from(Code::InvalidCredentials))?;
        let attempt = LoginAttempt {
            entry: Entry::EnterpriseLegacy,
            person: None,
            enterprise: Some(&enterprise),
        };
        self.login_decision(&attempt, &[], Some(&taxpayer_id), now, client)
            .await?;
        let challenge_token = self
            .new_challenge(
                ChallengePurpose::Login,
                Some(Entry::EnterpriseLegacy),
                None,
                Some(taxpayer_id),
                None,
                enterprise.phone.clone(),
                now,
                client,
            )
            .await?;
        Ok(challenge_answer(
            &challenge_token,
            &["sms"],
            enterprise.phone.as_ref(),
        ))
    }
}
