//! Sessions: issuing one when a second factor passed (with the policies' second decision on the
//! identity it takes), `GET /auth/session` and its view, and `POST /auth/logout`.

use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::{Value, json};
use taxgate_store::{
    Binding, Challenge, Enterprise, Entry, Factor, Person, Role, Session, SessionSlice, Store,
    Timestamp,
};

use super::{ApiResult, Auth};
use crate::api::{self, json as json_response, no_content};
use crate::authn::token;
use crate::error::{ApiError, Code};
use crate::openapi::schemas::SessionView;
use crate::pipeline::unix_now;
use taxgate_policy::{LoginAttempt, LoginCandidate};
use taxgate_proxy::ConnInfo;
use taxgate_proxy::body::Body;

impl Auth {
    /// Turn a challenge whose second factor passed into a session (single use), after asking the
    /// policies once more which identity it may take.
    pub(super) async fn complete_login(
        &self,
        c: Challenge,
        factor: Factor,
        conn: ConnInfo,
        now: Timestamp,
    ) -> ApiResult {
        let store = &self.core.store;
        // Only a login's challenge becomes a session (a step-up's completes in `step_up`).
        if c.purpose != taxgate_store::ChallengePurpose::Login {
            return Err(Code::ChallengeExpired.into());
        }
        if !store
            .consume_challenge(&c.id_hash, now)
            .await
            .map_err(|e| self.store_err(e))?
        {
            return Err(Code::ChallengeExpired.into());
        }
        let entry = c.entry.ok_or(ApiError::from(Code::ChallengeExpired))?;
        let person = match &c.person {
            Some(id) => Some(
                store
                    .person(id)
                    .await
                    .map_err(|e| self.store_err(e))?
                    .ok_or(ApiError::from(Code::ChallengeExpired))?,
            ),
            None => None,
        };
        let org_id = c.enterprise.as_ref().or(c.agency.as_ref());
        let org = match org_id {
            Some(t) => store.enterprise(t).await.map_err(|e| self.store_err(e))?,
            None => None,
        };
        let attempt = LoginAttempt {
            entry,
            person: person.as_ref(),
            enterprise: org.as_ref(),
        };
        // The identity: the first candidate the policies allow (bindings for the enterprise
        // entry); agents start at the agency and pick a client by switching.
        let client = conn.remote.ip();
        let binding: Option<Binding> = match (entry, &person, &c.enterprise) {
            (Entry::Enterprise, Some(p), Some(t)) => {
                let bindings = store
                    .bindings_between(&p.id_number, t)
                    .await
                    .map_err(|e| self.store_err(e))?;
                let all: Vec<_> = bindings.iter().map(LoginCandidate::Binding).collect();
                let chosen = self
                    .login_decision(&attempt, &all, Some(t), now, client)
                    .await?;
                chosen.and_then(|i| bindings.get(i)).cloned()
            }
            (Entry::Agent, Some(p), _) => {
                let agreements = match &c.agency {
                    Some(a) => store
                        .agreements_of_staff(a, &p.id_number)
                        .await
                        .map_err(|e| self.store_err(e))?,
                    None => Vec::new(),
                };
                let all: Vec<_> = agreements.iter().map(LoginCandidate::Agreement).collect();
                self.login_decision(&attempt, &all, c.agency.as_ref(), now, client)
                    .await?;
                None
            }
            _ => {
                self.login_decision(&attempt, &[], org_id, now, client)
                    .await?;
                None
            }
        };
        let role = match entry {
            Entry::Enterprise => binding.as_ref().map(|b| b.role),
            Entry::Agent => Some(Role::Agent),
            Entry::EnterpriseLegacy => Some(Role::LegacyEnterprise),
            Entry::Person => None,
        };
        let session_token = token::new_token().map_err(|_| ApiError::from(Code::Internal))?;
        let session = Session {
            id: token::new_id().map_err(|_| ApiError::from(Code::Internal))?,
            token_hash: token::hash(&session_token),
            entry,
            person: c.person.clone(),
            enterprise: c.enterprise.clone(),
            agency: c.agency.clone(),
            role,
            binding_id: binding.as_ref().map(|b| b.id.clone()),
            agreement_id: None,
            factor,
            created_at: now,
            last_seen_at: now,
            expires_at: now + self.core.config.session.absolute_timeout_secs as i64,
            revoked_at: None,
            factor_at: now,
            face_at: if factor == Factor::Face { now } else { 0 },
        };
        let device = crate::authn::device::current();
        store
            .create_session_on(&session, &device)
            .await
            .map_err(|e| self.store_err(e))?;
        self.notice_new_device(person.as_ref(), &device, now).await;
        let mut ev = self.event(now, "session_created", true, conn.remote.ip());
        ev.session_id = Some(session.id.clone());
        ev.person = session.person.clone();
        ev.enterprise = session.enterprise.clone().or(session.agency.clone());
        ev.role = session.role;
        ev.entry = Some(entry);
        ev.detail = Some(json!({ "factor": factor.as_str() }).to_string());
        self.audit(ev).await?;
        let slice = SessionSlice {
            session,
            person,
            enterprise: if entry == Entry::Agent {
                None
            } else {
                org.clone()
            },
            agency: if entry == Entry::Agent { org } else { None },
            binding,
            agreement: None,
        };
        let mut resp = json_response(StatusCode::OK, &session_view(&slice));
        let max_age = self.core.config.session.absolute_timeout_secs;
        self.set_session_cookie(&mut resp, &session_token, max_age);
        Ok(resp)
    }

    /// Set the session cookie on `resp`: `token` for `max_age` seconds, or (empty, 0) cleared.
    fn set_session_cookie(&self, resp: &mut Response<Body>, token: &str, max_age: u64) {
        let cfg = &self.core.config.session;
        if let Some(cookie) =
            api::session_cookie(&cfg.cookie_name, token, cfg.cookie_secure, max_age)
        {
            resp.headers_mut().insert(header::SET_COOKIE, cookie);
        }
    }

    /// `GET /auth/session`.
    pub async fn session(&self, req: Request<Incoming>, conn: ConnInfo) -> ApiResult {
        let s = self.session_for(&req, "view_session", conn).await?;
        // Names come from the store: the session cache keeps no more than decisions need.
        let store = &self.core.store;
        let sess = &s.session;
        let person = match &sess.person {
            Some(id) => store.person(id).await.map_err(|e| self.store_err(e))?,
            None => None,
        };
        let enterprise = match &sess.enterprise {
            Some(id) => store.enterprise(id).await.map_err(|e| self.store_err(e))?,
            None => None,
        };
        Ok(json_response(
            StatusCode::OK,
            &session_view_of(sess, person.as_ref(), enterprise.as_ref()),
        ))
    }

    /// `POST /auth/logout`: the session is revoked in the store, which invalidates it on every
    /// instance.
    pub async fn logout(&self, req: Request<Incoming>, conn: ConnInfo) -> ApiResult {
        let s = self.session_for(&req, "logout", conn).await?;
        let now = unix_now();
        self.core
            .store
            .revoke_session(s.id(), now)
            .await
            .map_err(|e| self.store_err(e))?;
        let mut ev = self.event(now, "logout", true, conn.remote.ip());
        ev.session_id = Some(s.id().to_string());
        ev.person = s.session.person.clone();
        self.audit(ev).await?;
        let mut resp = no_content();
        self.set_session_cookie(&mut resp, "", 0);
        Ok(resp)
    }
}

/// The session view of CONTRACT section 3.
pub fn session_view(slice: &SessionSlice) -> Value {
    session_view_of(
        &slice.session,
        slice.person.as_ref(),
        slice.enterprise.as_ref(),
    )
}

/// [`session_view`] from the session record and the person and enterprise read beside it.
pub fn session_view_of(
    s: &Session,
    person: Option<&Person>,
    enterprise: Option<&Enterprise>,
) -> Value {
    let name = person
        .map(|p| p.name.clone())
        .or_else(|| enterprise.map(|e| e.name.clone()));
    let view = SessionView {
        person: s.person.as_ref().map(|p| p.as_str().to_string()),
        name,
        entry: s.entry.as_str(),
        enterprise: s.enterprise.as_ref().map(|t| t.as_str().to_string()),
        enterprise_name: enterprise.map(|e: &Enterprise| e.name.clone()),
        role: s.role.map(Role::as_str),
        agency: s.agency.as_ref().map(|t| t.as_str().to_string()),
        must_change_password: person.is_some_and(|p: &Person| p.must_change_password),
        mfa: s.factor.as_str(),
        expires_at: api::rfc3339(s.expires_at),
    };
    serde_json::to_value(view).unwrap_or_default()
}
