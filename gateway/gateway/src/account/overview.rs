//! What the account centre shows the current identity (issue 22 point 5): `GET
//! /account/overview` answers which account actions and which permission groups the policies
//! allow this session now, each asked through the gate (one audited decision each, as any other
//! account-centre call), with the names of the enterprise and agency and the agreement's scope.
//! The page hides what is not allowed; it holds no role list of its own. `POST
//! /account/switch/leave` takes an agent back from a client to the agency.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::StatusCode;
use serde_json::json;
use taxgate_store::{PermissionGroup, Role, SessionIdentity, Store};

use super::Account;
use crate::api::{self, json as json_response};
use crate::authn::login::session_view;
use crate::error::{ApiError, Code};
use crate::gate::{Asker, Question, actions};
use crate::openapi::schemas::{Overview, OverviewAgreement, OverviewBinding};
use crate::pipeline::unix_now;
use crate::session::ResolvedSession;
use taxgate_proxy::ConnInfo;

type ApiResult = crate::rescue::Handled;

/// The account-centre actions the page may offer, as the policies name them.
const ACCOUNT_ACTIONS: &[&str] = &[
    actions::LIST_IDENTITIES,
    actions::SWITCH_IDENTITY,
    actions::MANAGE_PERSONNEL,
    actions::LIST_AUTHORIZATIONS,
    actions::CONFIRM_AUTHORIZATION,
    actions::UNBIND,
    actions::APPLY_BINDING,
    actions::CHANGE_PHONE,
    actions::CHANGE_PASSWORD,
];

impl Account {
    /// `GET /account/overview`.
    pub async fn overview(&self, s: &Arc<ResolvedSession>, conn: ConnInfo) -> ApiResult {
        let now = unix_now();
        let gate = &self.core.gate;
        let mut allowed = BTreeMap::new();
        for action in ACCOUNT_ACTIONS {
            let question = Question::Session { session: s, action };
            let asker = Asker::session(now, conn.remote.ip(), s).at_path("/account/overview");
            let verdict = gate.decide(question, asker).await?;
            allowed.insert(*action, verdict.allowed());
        }
        let mut groups = Vec::new();
        for g in PermissionGroup::ALL {
            let question = Question::Session {
                session: s,
                action: g.as_str(),
            };
            let asker = Asker::session(now, conn.remote.ip(), s).at_path("/account/overview");
            if gate.decide(question, asker).await?.allowed() {
                groups.push(g.as_str());
            }
        }
        let sess = &s.session;
        let store = &self.core.store;
        let enterprise_name = match &sess.enterprise {
            Some(t) => self.enterprise_name(t).await,
            None => None,
        };
        let agency_name = match &sess.agency {
            Some(t) => self.enterprise_name(t).await,
            None => None,
        };
        // The number a code would go to, masked, for the phone card (issue 22 point 6).
        let phone_masked = match &sess.person {
            Some(p) => store
                .person(p)
                .await
                .map_err(|e| self.core.rescue.store(e))?
                .and_then(|p| p.phone)
                .map(|phone| phone.masked()),
            None => None,
        };
        let mut out = Overview {
            actions: allowed,
            groups,
            enterprise_name,
            agency_name,
            binding: None,
            agreement: None,
            phone_masked,
            home_url: self.core.config.pages.home_url.clone(),
        };
        // The binding or agreement in use: what it grants as stored (the policies' answer is
        // `groups` above).
        if let Some(id) = sess.binding_id.as_deref()
            && let Some(b) = store
                .binding(id)
                .await
                .map_err(|e| self.core.rescue.store(e))?
        {
            out.binding = Some(OverviewBinding {
                role: b.role.as_str(),
                permissions: b
                    .permissions
                    .as_ref()
                    .map(|list| list.iter().map(|g| g.as_str()).collect()),
                uses_role_defaults: b.permissions.is_none(),
                valid_until: b.valid_until.map(api::rfc3339),
                binding: b.id,
            });
        }
        if let Some(id) = sess.agreement_id.as_deref()
            && let Some(a) = store
                .agreement(id)
                .await
                .map_err(|e| self.core.rescue.store(e))?
        {
            out.agreement = Some(OverviewAgreement {
                client: a.client.as_str().to_string(),
                scope: a.scope.iter().map(|g| g.as_str()).collect(),
                valid_until: a.valid_until.map(api::rfc3339),
            });
        }
        Ok(api::typed(StatusCode::OK, &out))
    }

    /// `POST /account/switch/leave`: an agent acting for a client returns to the agency (the
    /// client list). Access only narrows, so no target is decided; a session without an agency
    /// has nothing to return to.
    pub async fn leave_client(&self, s: &Arc<ResolvedSession>, conn: ConnInfo) -> ApiResult {
        let sess = &s.session;
        let agency = sess
            .agency
            .clone()
            .ok_or(ApiError::from(Code::NotPermitted))?;
        let identity = SessionIdentity {
            enterprise: None,
            agency: Some(agency),
            role: Some(Role::Agent),
            binding_id: None,
            agreement_id: None,
        };
        let store = &self.core.store;
        store
            .set_session_identity(&sess.id, &identity)
            .await
            .map_err(|e| self.core.rescue.store(e))?;
        self.audit(
            s,
            "leave_client",
            conn.remote.ip(),
            json!({"from_enterprise": sess.enterprise.as_ref().map(|t| t.as_str())}),
        )
        .await?;
        let slice = store
            .session_slice(&sess.token_hash)
            .await
            .map_err(|e| self.core.rescue.store(e))?
            .ok_or(ApiError::from(Code::LoginRequired))?;
        Ok(json_response(StatusCode::OK, &session_view(&slice)))
    }
}
