//! `POST /auth/login` for the personal, enterprise and agent entries: the password, the
//! identities the person could take (bindings or agency agreements), the policies' first
//! decision, and a challenge for the second factor. The legacy entry branches off to `legacy`.

use taxgate_store::{ChallengePurpose, Entry, Store, TaxpayerId};

use super::{ApiResult, Auth, challenge_answer};
use crate::api::Json;
use crate::pipeline::unix_now;
use taxgate_policy::{LoginAttempt, LoginCandidate};
use taxgate_proxy::ConnInfo;

impl Auth {
    /// `POST /auth/login`.
    pub async fn login(&self, body: Json, conn: ConnInfo) -> ApiResult {
        let entry = body.parse("entry", |s| Entry::parse(s).ok_or(()))?;
        if entry == Entry::EnterpriseLegacy {
            return self.login_legacy(body, conn).await;
        }
        let taxpayer_id = match entry {
            Entry::Enterprise | Entry::Agent => Some(body.parse("taxpayer_id", TaxpayerId::parse)?),
            _ => None,
        };
        let account = body.str("account", 64)?.trim().to_string();
        let pw = body.str("password", 128)?;
        let now = unix_now();
        let client = conn.remote.ip();
        let store = &self.core.store;
        let person = self
            .first_factor(&account, pw, Some(entry), client, now)
            .await?;

        // Facts for the policy: the enterprise (or agency) and the candidate identities.
        let enterprise = match &taxpayer_id {
            Some(t) => store.enterprise(t).await.map_err(|e| self.store_err(e))?,
            None => None,
        };
        let (bindings, agreements) = match (&entry, &taxpayer_id) {
            (Entry::Enterprise, Some(t)) => (
                store
                    .bindings_between(&person.id_number, t)
                    .await
                    .map_err(|e| self.store_err(e))?,
                Vec::new(),
            ),
            (Entry::Agent, Some(t)) => (
                Vec::new(),
                store
                    .agreements_of_staff(t, &person.id_number)
                    .await
                    .map_err(|e| self.store_err(e))?,
            ),
            _ => (Vec::new(), Vec::new()),
        };
        let attempt = LoginAttempt {
            entry,
            person: Some(&person),
            enterprise: enterprise.as_ref(),
        };
        let candidates: Vec<LoginCandidate<'_>> = bindings
            .iter()
            .map(LoginCandidate::Binding)
            .chain(agreements.iter().map(LoginCandidate::Agreement))
            .collect();
        self.login_decision(&attempt, &candidates, taxpayer_id.as_ref(), now, client)
            .await?;

        let (enterprise_id, agency_id) = match entry {
            Entry::Agent => (None, taxpayer_id),
            _ => (taxpayer_id, None),
        };
        let challenge_token = self
            .new_challenge(
                ChallengePurpose::Login,
                Some(entry),
                Some(&person.id_number),
                enterprise_id,
                agency_id,
                person.phone.clone(),
                now,
                client,
            )
            .await?;
        let mut factors = Vec::new();
        if person.phone.is_some() {
            factors.push("sms");
        }
        factors.push("face");
        Ok(challenge_answer(
            &challenge_token,
            &factors,
            person.phone.as_ref(),
        ))
    }
}
