//! 安全中心 (CONTRACT section 11): the person's sessions — every live one across entries and
//! enterprises, ending one, ending the others — and, on the enterprise side, the live sessions
//! acting for the enterprise, for those who manage its personnel. Each call is a Cedar decision
//! first (`manage_sessions`, `manage_personnel_sessions`); the lists only ever hold the asker's
//! own sessions (or its enterprise's), so another person's session is never found (404). An
//! ended session is dead on every instance at once: the store publishes its invalidation, as
//! for a logout.

use std::net::IpAddr;
use std::sync::Arc;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};
use taxgate_store::{AuditEvent, SessionListing, Store, Timestamp};

use crate::api::{self, no_content};
use crate::authn::login::Auth;
use crate::error::{ApiError, Code};
use crate::gate::actions;
use crate::openapi::schemas::{OwnSession, PersonnelSession};
use crate::pipeline::unix_now;
use crate::rescue::Handled;
use crate::server::Core;
use crate::session::ResolvedSession;
use taxgate_proxy::ConnInfo;

/// Whether `path` is one of the session centre's.
pub fn serves(path: &str) -> bool {
    ["/account/sessions", "/account/personnel/sessions"]
        .iter()
        .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
}

/// `/account/sessions*` and `/account/personnel/sessions*`.
pub async fn dispatch(
    core: &Arc<Core>,
    auth: &Auth,
    req: Request<Incoming>,
    conn: ConnInfo,
) -> Handled {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let centre = Centre { core };
    let method = req.method().clone();
    match (method, segments.as_slice()) {
        (Method::GET, ["account", "sessions"]) => {
            let s = auth
                .session_for(&req, actions::MANAGE_SESSIONS, conn)
                .await?;
            centre.own(&s).await
        }
        (Method::POST, ["account", "sessions", "revoke-others"]) => {
            let s = auth
                .session_for(&req, actions::MANAGE_SESSIONS, conn)
                .await?;
            centre.end_others(&s, conn.remote.ip()).await
        }
        (Method::POST, ["account", "sessions", id, "revoke"]) => {
            let s = auth
                .session_for(&req, actions::MANAGE_SESSIONS, conn)
                .await?;
            centre.end_own(&s, id, conn.remote.ip()).await
        }
        (Method::GET, ["account", "personnel", "sessions"]) => {
            let s = auth
                .session_for(&req, actions::MANAGE_PERSONNEL_SESSIONS, conn)
                .await?;
            centre.enterprise(&s).await
        }
        (Method::POST, ["account", "personnel", "sessions", id, "revoke"]) => {
            let s = auth
                .session_for(&req, actions::MANAGE_PERSONNEL_SESSIONS, conn)
                .await?;
            centre.end_enterprise(&s, id, conn.remote.ip()).await
        }
        (_, ["account", "sessions"] | ["account", "personnel", "sessions"])
        | (_, ["account", "sessions", "revoke-others"])
        | (_, ["account", "sessions", _, "revoke"])
        | (_, ["account", "personnel", "sessions", _, "revoke"]) => {
            Err(Code::MethodNotAllowed.into())
        }
        _ => Err(Code::NotFound.into()),
    }
}

struct Centre<'a> {
    core: &'a Arc<Core>,
}

impl Centre<'_> {
    fn store_err(&self, e: taxgate_store::StoreError) -> ApiError {
        self.core.rescue.store(e)
    }

    /// Still live at `now`: the store leaves out the revoked and the expired, the idle timeout
    /// is the gateway's.
    fn live(&self, l: &SessionListing, now: Timestamp) -> bool {
        let idle = self.core.config.session.idle_timeout_secs as i64;
        l.session.last_seen_at + idle > now
    }

    async fn own_list(
        &self,
        s: &ResolvedSession,
        now: Timestamp,
    ) -> Result<Vec<SessionListing>, ApiError> {
        let person = s
            .session
            .person
            .as_ref()
            .ok_or(ApiError::from(Code::NotPermitted))?;
        let all = self
            .core
            .store
            .person_sessions(person, now)
            .await
            .map_err(|e| self.store_err(e))?;
        Ok(all
            .into_iter()
            .filter(|l| l.session.id == s.id() || self.live(l, now))
            .collect())
    }

    async fn enterprise_list(
        &self,
        s: &ResolvedSession,
        now: Timestamp,
    ) -> Result<Vec<SessionListing>, ApiError> {
        let enterprise = s
            .session
            .enterprise
            .as_ref()
            .ok_or(ApiError::from(Code::NotPermitted))?;
        let all = self
            .core
            .store
            .enterprise_sessions(enterprise, now)
            .await
            .map_err(|e| self.store_err(e))?;
        Ok(all
            .into_iter()
            .filter(|l| l.session.id == s.id() || self.live(l, now))
            .collect())
    }

    /// `GET /account/sessions`.
    async fn own(&self, s: &ResolvedSession) -> Handled {
        let now = unix_now();
        let list = self.own_list(s, now).await?;
        let out: Vec<OwnSession> = list.iter().map(|l| own_json(l, s.id())).collect();
        Ok(api::typed(StatusCode::OK, &out))
    }

    /// `POST /account/sessions/{id}/revoke`.
    async fn end_own(&self, s: &ResolvedSession, id: &str, client: IpAddr) -> Handled {
        let now = unix_now();
        let list = self.own_list(s, now).await?;
        if !list.iter().any(|l| l.session.id == id) {
            return Err(Code::NotFound.into());
        }
        self.end(s, id, "session_ended", client, now).await
    }

    /// `POST /account/sessions/revoke-others`.
    async fn end_others(&self, s: &ResolvedSession, client: IpAddr) -> Handled {
        let now = unix_now();
        let person = s
            .session
            .person
            .as_ref()
            .ok_or(ApiError::from(Code::NotPermitted))?;
        let ended = self
            .core
            .store
            .revoke_person_sessions(person, Some(s.id()), now)
            .await
            .map_err(|e| self.store_err(e))?;
        self.audit(
            s,
            "sessions_ended_others",
            client,
            now,
            json!({ "ended": ended }),
        )
        .await?;
        Ok(no_content())
    }

    /// `GET /account/personnel/sessions`.
    async fn enterprise(&self, s: &ResolvedSession) -> Handled {
        let now = unix_now();
        let list = self.enterprise_list(s, now).await?;
        let out: Vec<PersonnelSession> = list.iter().map(|l| personnel_json(l, s.id())).collect();
        Ok(api::typed(StatusCode::OK, &out))
    }

    /// `POST /account/personnel/sessions/{id}/revoke`.
    async fn end_enterprise(&self, s: &ResolvedSession, id: &str, client: IpAddr) -> Handled {
        let now = unix_now();
        let list = self.enterprise_list(s, now).await?;
        if !list.iter().any(|l| l.session.id == id) {
            return Err(Code::NotFound.into());
        }
        self.end(s, id, "personnel_session_ended", client, now)
            .await
    }

    async fn end(
        &self,
        s: &ResolvedSession,
        id: &str,
        action: &str,
        client: IpAddr,
        now: Timestamp,
    ) -> Handled {
        self.core
            .store
            .revoke_session(id, now)
            .await
            .map_err(|e| self.store_err(e))?;
        self.audit(s, action, client, now, json!({ "session": id }))
            .await?;
        Ok(no_content())
    }

    /// The record of a change made here, after the gate allowed the call.
    async fn audit(
        &self,
        s: &ResolvedSession,
        action: &str,
        client: IpAddr,
        now: Timestamp,
        detail: Value,
    ) -> Result<(), ApiError> {
        let sess = &s.session;
        let event = AuditEvent {
            session_id: Some(sess.id.clone()),
            person: sess.person.clone(),
            enterprise: sess.enterprise.clone(),
            role: sess.role,
            entry: Some(sess.entry),
            policy_version: Some(self.core.engine.version().to_string()),
            client_addr: Some(client.to_string()),
            detail: Some(detail.to_string()),
            ..AuditEvent::new(self.core.audit.next_id(), now, action, true)
        };
        self.core
            .audit
            .record(event)
            .await
            .map_err(|_| ApiError::from(Code::StoreUnavailable))
    }
}

/// A session in the person's own list (CONTRACT section 11).
fn own_json(l: &SessionListing, current: &str) -> OwnSession {
    let s = &l.session;
    OwnSession {
        id: s.id.clone(),
        current: s.id == current,
        entry: s.entry.as_str(),
        enterprise: s.enterprise.as_ref().map(|e| e.as_str().to_string()),
        agency: s.agency.as_ref().map(|e| e.as_str().to_string()),
        role: s.role.map(|r| r.as_str()),
        mfa: s.factor.as_str(),
        client_addr: l.device.client_net.clone(),
        user_agent: l.device.user_agent.clone(),
        created_at: api::rfc3339(s.created_at),
        last_seen_at: api::rfc3339(s.last_seen_at),
    }
}

/// A session in the enterprise's list: the person's ID number masked.
fn personnel_json(l: &SessionListing, current: &str) -> PersonnelSession {
    let s = &l.session;
    PersonnelSession {
        id: s.id.clone(),
        current: s.id == current,
        person: s.person.as_ref().map(|p| p.masked()),
        name: l.person_name.clone(),
        entry: s.entry.as_str(),
        role: s.role.map(|r| r.as_str()),
        created_at: api::rfc3339(s.created_at),
        last_seen_at: api::rfc3339(s.last_seen_at),
    }
}

#[cfg(test)]
mod tests {
    use super::serves;

    #[test]
    fn serves_only_its_own_paths() {
        for p in [
            "/account/sessions",
            "/account/sessions/revoke-others",
            "/account/sessions/abc/revoke",
            "/account/personnel/sessions",
            "/account/personnel/sessions/abc/revoke",
        ] {
            assert!(serves(p), "{p}");
        }
        for p in [
            "/account/sessionsx",
            "/account/session",
            "/account/personnel",
            "/account/personnel/sessionsx/1",
            "/account/personnel/abc/revoke",
        ] {
            assert!(!serves(p), "{p}");
        }
    }
}
