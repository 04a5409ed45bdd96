//! The account centre (账户中心, CONTRACT section 3): identities and switching (身份切换),
//! personnel (人员权限管理, enterprise side), authorizations (企业授权管理, person side), and
//! applications (办税人员自主申请). Every call is a policy decision first; the target of a switch
//! is decided by the same `login` rules as a fresh login, so a switch can never reach an identity
//! a login could not.

mod overview;

use std::net::IpAddr;
use std::sync::Arc;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};
use taxgate_store::{
    AgencyAgreement, AuditEvent, Binding, BindingUpdate, ConfirmOutcome, Entry, IdNumber,
    NewBinding, PermissionGroup, Role, SessionIdentity, Side, Store, StoreError, TaxpayerId,
    Timestamp,
};

use crate::api::{self, Json, json as json_response, no_content};
use crate::authn::login::{Auth, session_view};
use crate::error::{ApiError, Code};
use crate::gate::{Asker, Question, Verdict, actions};
use crate::openapi::schemas::{BindingCreated, BindingItem, Identity};
use crate::pipeline::unix_now;
use crate::server::Core;
use crate::session::ResolvedSession;
use taxgate_policy::{LoginAttempt, LoginCandidate, PersonnelChange};
use taxgate_proxy::ConnInfo;

type ApiResult = crate::rescue::Handled;

/// Bindings ending within this many days carry `expires_in_days`.
const EXPIRY_WARNING_DAYS: i64 = 30;

/// A binding's status as the account centre shows it (display only: access is the policies').
fn status(b: &Binding, now: Timestamp) -> &'static str {
    if b.revoked_at.is_some() {
        "revoked"
    } else if !(b.enterprise_confirmed && b.person_confirmed) {
        "pending"
    } else if b.valid_from > now || b.valid_until.is_some_and(|u| u <= now) {
        "expired"
    } else {
        "active"
    }
}

fn until(t: Option<Timestamp>) -> Value {
    t.map_or(Value::Null, |t| Value::String(api::rfc3339(t)))
}

fn expires_in_days(valid_until: Option<Timestamp>, now: Timestamp) -> Option<i64> {
    valid_until
        .filter(|u| *u > now)
        .map(|u| (u - now) / 86_400)
        .filter(|d| *d < EXPIRY_WARNING_DAYS)
}

fn permissions(p: &Option<Vec<PermissionGroup>>) -> Value {
    match p {
        Some(list) => json!(list.iter().map(|g| g.as_str()).collect::<Vec<_>>()),
        None => Value::Null,
    }
}

/// Enterprise permission groups named in a request, without duplicates; `personal_tax` (or an
/// unknown name) is bad input.
fn parse_groups(list: &[&str]) -> Result<Vec<PermissionGroup>, ApiError> {
    let mut groups = Vec::new();
    for g in list {
        match PermissionGroup::parse(g) {
            Some(PermissionGroup::PersonalTax) | None => {
                return Err(ApiError::field(Code::InvalidInput, "permissions"));
            }
            Some(g) if !groups.contains(&g) => groups.push(g),
            Some(_) => {}
        }
    }
    Ok(groups)
}

fn binding_json(
    b: &Binding,
    enterprise_name: Option<&str>,
    person_name: Option<&str>,
    now: Timestamp,
) -> BindingItem {
    BindingItem {
        binding: b.id.clone(),
        person: b.person.as_str().to_string(),
        name: person_name.map(str::to_string),
        enterprise: b.enterprise.as_str().to_string(),
        enterprise_name: enterprise_name.map(str::to_string),
        role: b.role.as_str(),
        permissions: b
            .permissions
            .as_ref()
            .map(|list| list.iter().map(|g| g.as_str()).collect()),
        uses_role_defaults: b.permissions.is_none(),
        valid_from: api::rfc3339(b.valid_from),
        valid_until: b.valid_until.map(api::rfc3339),
        enterprise_confirmed: b.enterprise_confirmed,
        person_confirmed: b.person_confirmed,
        status: status(b, now),
        updated_at: api::rfc3339(b.updated_at),
        updated_by: b.updated_by.clone(),
        expires_in_days: expires_in_days(b.valid_until, now),
        groups: None,
    }
}

/// The `/account/*` handlers. Each one is a policy decision first, and every change it makes is
/// audited.
pub struct Account {
    core: Arc<Core>,
}

/// What an enterprise grants (or a person applies for): role, permission groups (`None`: the
/// role's defaults) and the end of validity (`None`: no end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRequest {
    /// The role granted; never `agent` (agency agreements grant that) nor the legacy enterprise
    /// login.
    pub role: Role,
    /// The permission groups, without duplicates and never `personal_tax`; `None`: the role's
    /// defaults.
    pub permissions: Option<Vec<PermissionGroup>>,
    /// When the binding ends (unix seconds, in the future when parsed); `None`: no end.
    pub valid_until: Option<Timestamp>,
}

impl Account {
    /// The account centre over the running gateway's store, gate and audit.
    pub fn new(core: Arc<Core>) -> Self {
        Account { core }
    }

    /// One audit record of a change the account centre made, after the gate allowed it (the
    /// decision itself has its own record).
    async fn audit(
        &self,
        s: &ResolvedSession,
        action: &str,
        client: IpAddr,
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
            ..AuditEvent::new(self.core.audit.next_id(), unix_now(), action, true)
        };
        self.core
            .audit
            .record(event)
            .await
            .map_err(|_| ApiError::from(Code::StoreUnavailable))
    }

    async fn enterprise_name(&self, id: &TaxpayerId) -> Option<String> {
        self.core
            .store
            .enterprise(id)
            .await
            .ok()
            .flatten()
            .map(|e| e.name)
    }

    fn person_of(s: &Arc<ResolvedSession>) -> Result<&IdNumber, ApiError> {
        s.session
            .person
            .as_ref()
            .ok_or(ApiError::from(Code::NotPermitted))
    }

    // ---- identities and switching -------------------------------------------------------------

    /// `GET /account/identities`.
    pub async fn identities(&self, s: &Arc<ResolvedSession>) -> ApiResult {
        let now = unix_now();
        let store = &self.core.store;
        let sess = &s.session;
        let person = Self::person_of(s)?;
        let mut out = Vec::new();
        if sess.entry == Entry::Agent {
            let agency = sess
                .agency
                .as_ref()
                .ok_or(ApiError::from(Code::NotPermitted))?;
            for a in store
                .agreements_of_staff(agency, person)
                .await
                .map_err(|e| self.core.rescue.store(e))?
            {
                out.push(self.client_json(&a, now).await);
            }
        } else {
            for b in store
                .bindings_of_person(person)
                .await
                .map_err(|e| self.core.rescue.store(e))?
            {
                if b.revoked_at.is_some() {
                    continue;
                }
                let name = self.enterprise_name(&b.enterprise).await;
                out.push(Identity {
                    enterprise: b.enterprise.as_str().to_string(),
                    enterprise_name: name,
                    role: b.role.as_str(),
                    valid_until: b.valid_until.map(api::rfc3339),
                    status: status(&b, now),
                    current: Some(sess.binding_id.as_deref() == Some(b.id.as_str())),
                    binding: Some(b.id),
                    scope: None,
                    expires_in_days: expires_in_days(b.valid_until, now),
                });
            }
        }
        Ok(api::typed(StatusCode::OK, &out))
    }

    async fn client_json(&self, a: &AgencyAgreement, now: Timestamp) -> Identity {
        let active = a.client_confirmed
            && a.revoked_at.is_none()
            && a.valid_from <= now
            && a.valid_until.is_none_or(|u| u > now);
        let status = if !a.client_confirmed {
            "pending"
        } else if active {
            "active"
        } else {
            "expired"
        };
        Identity {
            enterprise: a.client.as_str().to_string(),
            enterprise_name: self.enterprise_name(&a.client).await,
            role: Role::Agent.as_str(),
            valid_until: a.valid_until.map(api::rfc3339),
            status,
            binding: None,
            current: None,
            scope: Some(a.scope.iter().map(|g| g.as_str()).collect()),
            expires_in_days: expires_in_days(a.valid_until, now),
        }
    }

    /// `POST /account/switch {enterprise, role}`: the session's identity becomes another binding
    /// of its person (enterprise entry) or another client of its agency (agent entry), once the
    /// policies allow that identity; the token stays.
    pub async fn switch(&self, s: &Arc<ResolvedSession>, body: Json, conn: ConnInfo) -> ApiResult {
        let target = body.parse("enterprise", TaxpayerId::parse)?;
        let now = unix_now();
        let store = &self.core.store;
        let sess = &s.session;
        let person_id = Self::person_of(s)?;
        // The person as stored now (the session cache keeps only what decisions need).
        let person = store
            .person(person_id)
            .await
            .map_err(|e| self.core.rescue.store(e))?
            .ok_or(ApiError::from(Code::NotPermitted))?;
        let person = &person;
        let org = store
            .enterprise(&target)
            .await
            .map_err(|e| self.core.rescue.store(e))?;
        let attempt = LoginAttempt {
            entry: sess.entry,
            person: Some(person),
            enterprise: org.as_ref(),
        };
        let client = conn.remote.ip();
        let detail = json!({"to_enterprise": target.as_str()});
        // Rust establishes the candidates (the person's bindings with the requested role in the
        // target, or the agency's agreement with it naming the agent); the policies decide
        // which, if any, the session may switch to — also that a natural-person session holds
        // none (`switch.entry_has_identities`).
        let identity = match sess.entry {
            Entry::Enterprise => {
                let role = body.parse("role", |r| Role::parse(r).ok_or(()))?;
                let bindings: Vec<Binding> = store
                    .bindings_between(person_id, &target)
                    .await
                    .map_err(|e| self.core.rescue.store(e))?
                    .into_iter()
                    .filter(|b| b.role == role)
                    .collect();
                let candidates: Vec<_> = bindings.iter().map(LoginCandidate::Binding).collect();
                let verdict = self
                    .switch_decision(s, &attempt, &candidates, client, now, detail)
                    .await?;
                let chosen = verdict.candidate.and_then(|i| bindings.get(i));
                chosen.map(|b| SessionIdentity {
                    enterprise: Some(b.enterprise.clone()),
                    agency: None,
                    role: Some(b.role),
                    binding_id: Some(b.id.clone()),
                    agreement_id: None,
                })
            }
            Entry::Agent => {
                let agency = sess
                    .agency
                    .as_ref()
                    .ok_or(ApiError::from(Code::NotPermitted))?;
                let agreement = store
                    .agreement_between(agency, &target)
                    .await
                    .map_err(|e| self.core.rescue.store(e))?;
                let agency_org = store
                    .enterprise(agency)
                    .await
                    .map_err(|e| self.core.rescue.store(e))?;
                // The login rules of the agent entry are about the agency; the agreement names
                // the client.
                let agent_attempt = LoginAttempt {
                    entry: Entry::Agent,
                    person: Some(person),
                    enterprise: agency_org.as_ref(),
                };
                let candidates: Vec<_> = agreement.iter().map(LoginCandidate::Agreement).collect();
                self.switch_decision(s, &agent_attempt, &candidates, client, now, detail)
                    .await?;
                agreement.as_ref().map(|a| SessionIdentity {
                    enterprise: Some(a.client.clone()),
                    agency: Some(agency.clone()),
                    role: Some(Role::Agent),
                    binding_id: None,
                    agreement_id: Some(a.id.clone()),
                })
            }
            Entry::Person | Entry::EnterpriseLegacy => {
                self.switch_decision(s, &attempt, &[], client, now, detail)
                    .await?;
                None
            }
        };
        // An allowed switch always names the candidate that allowed it.
        let identity = identity.ok_or(ApiError::from(Code::Internal))?;
        store
            .set_session_identity(&sess.id, &identity)
            .await
            .map_err(|e| self.core.rescue.store(e))?;
        self.audit(
            s,
            "switch_identity",
            conn.remote.ip(),
            json!({"to_enterprise": target.as_str(), "role": identity.role.map(Role::as_str)}),
        )
        .await?;
        let slice = store
            .session_slice(&sess.token_hash)
            .await
            .map_err(|e| self.core.rescue.store(e))?
            .ok_or(ApiError::from(Code::LoginRequired))?;
        Ok(json_response(StatusCode::OK, &session_view(&slice)))
    }

    /// The gate's decision on switching to one of `candidates`; a denial is the error.
    async fn switch_decision(
        &self,
        s: &Arc<ResolvedSession>,
        attempt: &LoginAttempt<'_>,
        candidates: &[LoginCandidate<'_>],
        client: std::net::IpAddr,
        now: Timestamp,
        detail: Value,
    ) -> Result<Verdict, ApiError> {
        let question = Question::Identity {
            action: actions::SWITCH_TO,
            attempt,
            candidates,
        };
        let asker = Asker::session(now, client, s).with_detail(detail);
        self.core
            .gate
            .decide(question, asker)
            .await
            .and_then(Verdict::permit)
            .map_err(|f| self.core.rescue.error(f))
    }

    /// The policy decision on one change to a binding (`grant_binding`, `revoke_binding`,
    /// `accept_binding`), audited either way. A refusal changes nothing: callers ask before any
    /// write. `conflict_of_roles` is a conflict with existing state (409); every other refusal
    /// is 403 with the policy's reason (the rescue's mapping).
    async fn decide_change(
        &self,
        s: &Arc<ResolvedSession>,
        action: &str,
        change: &PersonnelChange<'_>,
        conn: ConnInfo,
        detail: Value,
    ) -> Result<(), ApiError> {
        let entities = self.core.sessions.entities(s).map_err(|e| {
            tracing::error!(error = %e, "cannot build the entity slice of a session");
            ApiError::from(Code::Internal)
        })?;
        let question = Question::Personnel {
            entities: &entities,
            action,
            change,
        };
        let asker = Asker::session(unix_now(), conn.remote.ip(), s).with_detail(detail);
        self.core
            .gate
            .decide(question, asker)
            .await
            .and_then(Verdict::permit)
            .map(|_| ())
            .map_err(|f| self.core.rescue.error(f))
    }

    /// The separation-of-duties fact for a binding of `person` in `enterprise`.
    async fn conflict_of_roles(
        &self,
        person: &IdNumber,
        enterprise: &TaxpayerId,
    ) -> Result<bool, ApiError> {
        self.core
            .store
            .staff_agencies(person, enterprise)
            .await
            .map(|agencies| !agencies.is_empty())
            .map_err(|e| self.core.rescue.store(e))
    }

    // ---- personnel (enterprise side) ----------------------------------------------------------

    fn enterprise_of(s: &Arc<ResolvedSession>) -> Result<&TaxpayerId, ApiError> {
        s.session
            .enterprise
            .as_ref()
            .ok_or(ApiError::from(Code::NotPermitted))
    }

    /// The grant part of a personnel or application body (`role`, `permissions`,
    /// `valid_until`). Public for the fuzz target.
    pub fn parse_binding_request(body: &Json) -> Result<BindingRequest, ApiError> {
        let role = body.parse("role", |r| match Role::parse(r) {
            Some(Role::Agent | Role::LegacyEnterprise) | None => Err(()),
            Some(role) => Ok(role),
        })?;
        let permissions = match body.opt_str_list("permissions")? {
            None => None,
            Some(list) => Some(parse_groups(&list)?),
        };
        let valid_until = match body.opt_str("valid_until", 40)? {
            None => None,
            Some(s) => Some(
                crate::config::parse_rfc3339(s)
                    .map_err(|_| ApiError::field(Code::InvalidInput, "valid_until"))?,
            ),
        };
        // A grant or application that has already ended is a mistake, never a binding.
        if valid_until.is_some_and(|u| u <= unix_now()) {
            return Err(ApiError::field(Code::InvalidInput, "valid_until"));
        }
        Ok(BindingRequest {
            role,
            permissions,
            valid_until,
        })
    }

    /// `POST /account/personnel`: the enterprise adds a registered person; pending until the
    /// person confirms.
    pub async fn add_personnel(
        &self,
        s: &Arc<ResolvedSession>,
        body: Json,
        conn: ConnInfo,
    ) -> ApiResult {
        let enterprise = Self::enterprise_of(s)?.clone();
        let id_number = body.parse("id_number", IdNumber::parse)?;
        let BindingRequest {
            role,
            permissions,
            valid_until,
        } = Self::parse_binding_request(&body)?;
        let now = unix_now();
        let store = &self.core.store;
        if store
            .person(&id_number)
            .await
            .map_err(|e| self.core.rescue.store(e))?
            .is_none()
        {
            return Err(Code::PersonNotRegistered.into());
        }
        let change = PersonnelChange {
            enterprise: &enterprise,
            role,
            permissions: permissions.as_deref(),
            conflict_of_roles: self.conflict_of_roles(&id_number, &enterprise).await?,
            enterprise_confirmed: None,
        };
        self.decide_change(
            s,
            actions::GRANT_BINDING,
            &change,
            conn,
            json!({"person": id_number.masked(), "role": role.as_str(),
                   "permissions": self::permissions(&permissions)}),
        )
        .await?;
        let by = Self::person_of(s)
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|_| "legacy".into());
        let binding = store
            .create_binding(NewBinding {
                person: id_number.clone(),
                enterprise,
                role,
                permissions,
                valid_from: now,
                valid_until,
                enterprise_confirmed: true,
                person_confirmed: false,
                by,
                // The grant dies with the binding it was made through.
                granted_by: s.session.binding_id.clone(),
                now,
            })
            .await
            .map_err(|e| self.core.rescue.store(e))?;
        self.audit(
            s,
            "add_personnel",
            conn.remote.ip(),
            json!({"binding": binding.id, "person": id_number.masked(), "role": role.as_str()}),
        )
        .await?;
        Ok(api::typed(
            StatusCode::CREATED,
            &BindingCreated {
                status: status(&binding, now),
                binding: binding.id,
            },
        ))
    }

    /// `GET /account/personnel`.
    pub async fn list_personnel(&self, s: &Arc<ResolvedSession>) -> ApiResult {
        let enterprise = Self::enterprise_of(s)?;
        let now = unix_now();
        let store = &self.core.store;
        let mut out = Vec::new();
        for b in store
            .bindings_of_enterprise(enterprise)
            .await
            .map_err(|e| self.core.rescue.store(e))?
        {
            let name = store.person(&b.person).await.ok().flatten().map(|p| p.name);
            let mut item = binding_json(&b, None, name.as_deref(), now);
            // What the binding gives once active, as the policies read it (role defaults
            // included): the page shows and edits this, holding no defaults of its own.
            let change = PersonnelChange {
                enterprise: &b.enterprise,
                role: b.role,
                permissions: b.permissions.as_deref(),
                conflict_of_roles: false,
                enterprise_confirmed: None,
            };
            if let Ok(groups) = self.core.gate.binding_groups(&change, now) {
                item.groups = Some(groups.iter().map(|g| g.as_str()).collect());
            }
            out.push(item);
        }
        Ok(api::typed(StatusCode::OK, &out))
    }

    /// Binding `id` if it is live and `belongs` to the caller, else 404 (the same answer for
    /// someone else's binding as for none: ids are not confirmed to strangers).
    async fn live_binding(
        &self,
        id: &str,
        belongs: impl Fn(&Binding) -> bool,
    ) -> Result<Binding, ApiError> {
        self.core
            .store
            .binding(id)
            .await
            .map_err(|e| self.core.rescue.store(e))?
            .filter(|b| b.revoked_at.is_none() && belongs(b))
            .ok_or(ApiError::from(Code::NotFound))
    }

    /// The enterprise's own, non-revoked binding `id`, else 404.
    async fn own_binding(&self, s: &Arc<ResolvedSession>, id: &str) -> Result<Binding, ApiError> {
        let enterprise = Self::enterprise_of(s)?;
        self.live_binding(id, |b| &b.enterprise == enterprise).await
    }

    /// `POST /account/personnel/{binding}/revoke`: withdraw a pending request or end a binding.
    pub async fn revoke_personnel(
        &self,
        s: &Arc<ResolvedSession>,
        id: &str,
        conn: ConnInfo,
    ) -> ApiResult {
        let b = self.own_binding(s, id).await?;
        let change = PersonnelChange {
            enterprise: &b.enterprise,
            role: b.role,
            permissions: b.permissions.as_deref(),
            conflict_of_roles: false,
            enterprise_confirmed: Some(b.enterprise_confirmed),
        };
        self.decide_change(
            s,
            actions::REVOKE_BINDING,
            &change,
            conn,
            json!({"binding": b.id, "role": b.role.as_str()}),
        )
        .await?;
        let by = Self::person_of(s)
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|_| "legacy".into());
        self.core
            .store
            .revoke_binding(&b.id, &by, unix_now())
            .await
            .map_err(|e| self.core.rescue.store(e))?;
        self.audit(
            s,
            "revoke_personnel",
            conn.remote.ip(),
            json!({"binding": b.id}),
        )
        .await?;
        Ok(no_content())
    }

    /// `POST /account/personnel/{binding}/update {permissions?, valid_until?}` (修改权限,
    /// 延长有效期): `null` or absent leaves a field as it is. The change is decided as a grant of
    /// the binding as it would be (`grant_binding`: the no-escalation rules apply); a change
    /// that widens what the binding gives (by the policies' own reading of both) needs the
    /// person's confirmation again, anything else applies at once. The person is told by SMS.
    pub async fn update_personnel(
        &self,
        s: &Arc<ResolvedSession>,
        id: &str,
        body: Json,
        conn: ConnInfo,
        auth: &Auth,
    ) -> ApiResult {
        let permissions = match body.opt_str_list("permissions")? {
            None => None,
            Some(list) => Some(parse_groups(&list)?),
        };
        let valid_until = match body.opt_str("valid_until", 40)? {
            None => None,
            Some(v) => {
                let t = crate::config::parse_rfc3339(v)
                    .map_err(|_| ApiError::field(Code::InvalidInput, "valid_until"))?;
                // Extending into the past is a mistake, never a change.
                if t <= unix_now() {
                    return Err(ApiError::field(Code::InvalidInput, "valid_until").into());
                }
                Some(t)
            }
        };
        if permissions.is_none() && valid_until.is_none() {
            return Err(ApiError::field(Code::InvalidInput, "permissions").into());
        }
        // Decided on the binding as read; if it changes before the write, decide again once.
        let mut tries = 0;
        let after = loop {
            tries += 1;
            let b = self.own_binding(s, id).await?;
            let new_permissions = permissions.clone().or_else(|| b.permissions.clone());
            let new_until = valid_until.or(b.valid_until);
            let now = unix_now();
            let change = PersonnelChange {
                enterprise: &b.enterprise,
                role: b.role,
                permissions: new_permissions.as_deref(),
                conflict_of_roles: self.conflict_of_roles(&b.person, &b.enterprise).await?,
                enterprise_confirmed: None,
            };
            self.decide_change(
                s,
                actions::GRANT_BINDING,
                &change,
                conn,
                json!({"binding": b.id, "update": true, "role": b.role.as_str(),
                       "permissions": self::permissions(&new_permissions),
                       "valid_until": until(new_until)}),
            )
            .await?;
            let before = PersonnelChange {
                permissions: b.permissions.as_deref(),
                ..change
            };
            let gate = &self.core.gate;
            let groups = |c: &PersonnelChange<'_>| {
                gate.binding_groups(c, now).map_err(|e| {
                    tracing::error!(error = %e, "cannot read the groups of a binding");
                    ApiError::from(Code::PolicyUnavailable)
                })
            };
            let (had, gets) = (groups(&before)?, groups(&change)?);
            let widens = gets.iter().any(|g| !had.contains(g));
            let by = Self::person_of(s)
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|_| "legacy".into());
            let update = BindingUpdate {
                expected: b.clone(),
                permissions: new_permissions.clone(),
                valid_until: new_until,
                reconfirm: widens,
                by,
                now,
            };
            match self.core.store.update_binding(&update).await {
                Ok(after) => break after,
                Err(StoreError::Conflict { .. }) if tries < 2 => continue,
                Err(e) => return Err(self.core.rescue.store(e).into()),
            }
        };
        let now = unix_now();
        self.audit(
            s,
            "update_personnel",
            conn.remote.ip(),
            json!({"binding": after.id, "permissions": self::permissions(&after.permissions),
                   "valid_until": until(after.valid_until),
                   "reconfirm": !after.person_confirmed}),
        )
        .await?;
        let person = self
            .core
            .store
            .person(&after.person)
            .await
            .map_err(|e| self.core.rescue.store(e))?;
        if let Some(phone) = person.as_ref().and_then(|p| p.phone.as_ref()) {
            auth.notice(phone, crate::authn::sms::Purpose::BindingChanged, now)
                .await;
        }
        let name = person.map(|p| p.name);
        Ok(api::typed(
            StatusCode::OK,
            &binding_json(&after, None, name.as_deref(), now),
        ))
    }

    /// The facts of confirming an existing binding (by either side): its role and groups, and
    /// whether its person is agency staff of its enterprise.
    async fn binding_change<'b>(&self, b: &'b Binding) -> Result<PersonnelChange<'b>, ApiError> {
        Ok(PersonnelChange {
            enterprise: &b.enterprise,
            role: b.role,
            permissions: b.permissions.as_deref(),
            conflict_of_roles: self.conflict_of_roles(&b.person, &b.enterprise).await?,
            enterprise_confirmed: None,
        })
    }

    /// `POST /account/personnel/{binding}/confirm`: the enterprise confirms a person's
    /// application.
    pub async fn confirm_application(
        &self,
        s: &Arc<ResolvedSession>,
        id: &str,
        conn: ConnInfo,
    ) -> ApiResult {
        let b = self.own_binding(s, id).await?;
        // Confirming an application makes the binding as much as adding it does.
        let change = self.binding_change(&b).await?;
        self.decide_change(
            s,
            actions::GRANT_BINDING,
            &change,
            conn,
            json!({"binding": b.id, "role": b.role.as_str(),
                   "permissions": permissions(&b.permissions)}),
        )
        .await?;
        let by = Self::person_of(s)
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|_| "legacy".into());
        self.confirm(s, &b, Side::Enterprise, &by, conn).await
    }

    async fn confirm(
        &self,
        s: &Arc<ResolvedSession>,
        b: &Binding,
        side: Side,
        by: &str,
        conn: ConnInfo,
    ) -> ApiResult {
        match self
            .core
            .store
            .confirm_binding(&b.id, side, by, unix_now())
            .await
            .map_err(|e| self.core.rescue.store(e))?
        {
            ConfirmOutcome::Confirmed(_) => {
                self.audit(
                    s,
                    "confirm_binding",
                    conn.remote.ip(),
                    json!({"binding": b.id}),
                )
                .await?;
                Ok(no_content())
            }
            ConfirmOutcome::AlreadyConfirmed(_) => Err(Code::AlreadyConfirmed.into()),
        }
    }

    // ---- authorizations (person side) ---------------------------------------------------------

    /// `GET /account/authorizations`.
    pub async fn authorizations(&self, s: &Arc<ResolvedSession>) -> ApiResult {
        let person = Self::person_of(s)?;
        let now = unix_now();
        let mut out = Vec::new();
        for b in self
            .core
            .store
            .bindings_of_person(person)
            .await
            .map_err(|e| self.core.rescue.store(e))?
        {
            let name = self.enterprise_name(&b.enterprise).await;
            out.push(binding_json(&b, name.as_deref(), None, now));
        }
        Ok(api::typed(StatusCode::OK, &out))
    }

    /// The person's own, non-revoked binding `id`, else 404.
    async fn my_binding(&self, s: &Arc<ResolvedSession>, id: &str) -> Result<Binding, ApiError> {
        let person = Self::person_of(s)?;
        self.live_binding(id, |b| &b.person == person).await
    }

    /// `POST /account/authorizations/{binding}/confirm`.
    pub async fn confirm_authorization(
        &self,
        s: &Arc<ResolvedSession>,
        id: &str,
        conn: ConnInfo,
    ) -> ApiResult {
        let b = self.my_binding(s, id).await?;
        let change = self.binding_change(&b).await?;
        self.decide_change(
            s,
            actions::ACCEPT_BINDING,
            &change,
            conn,
            json!({"binding": b.id, "enterprise": b.enterprise.as_str(), "role": b.role.as_str()}),
        )
        .await?;
        // A grant whose granter's binding is no longer live is gone: 404, as for a withdrawn one.
        let by = b.person.as_str().to_string();
        self.confirm(s, &b, Side::Person, &by, conn).await
    }

    /// `POST /account/authorizations/{binding}/unbind` (解除绑定).
    pub async fn unbind(&self, s: &Arc<ResolvedSession>, id: &str, conn: ConnInfo) -> ApiResult {
        let b = self.my_binding(s, id).await?;
        self.core
            .store
            .revoke_binding(&b.id, b.person.as_str(), unix_now())
            .await
            .map_err(|e| self.core.rescue.store(e))?;
        self.audit(s, "unbind", conn.remote.ip(), json!({"binding": b.id}))
            .await?;
        Ok(no_content())
    }

    /// `POST /account/applications {enterprise, role, permissions?, valid_until?}`: a person
    /// applies to an enterprise (办税人员自主申请); pending until the enterprise confirms.
    pub async fn apply(&self, s: &Arc<ResolvedSession>, body: Json, conn: ConnInfo) -> ApiResult {
        let person = Self::person_of(s)?.clone();
        let enterprise = body.parse("enterprise", TaxpayerId::parse)?;
        let BindingRequest {
            role,
            permissions,
            valid_until,
        } = Self::parse_binding_request(&body)?;
        let now = unix_now();
        let store = &self.core.store;
        if store
            .enterprise(&enterprise)
            .await
            .map_err(|e| self.core.rescue.store(e))?
            .is_none()
        {
            return Err(ApiError::field(Code::NotFound, "enterprise").into());
        }
        let change = PersonnelChange {
            enterprise: &enterprise,
            role,
            permissions: permissions.as_deref(),
            conflict_of_roles: self.conflict_of_roles(&person, &enterprise).await?,
            enterprise_confirmed: None,
        };
        self.decide_change(
            s,
            actions::ACCEPT_BINDING,
            &change,
            conn,
            json!({"enterprise": enterprise.as_str(), "role": role.as_str()}),
        )
        .await?;
        let binding = store
            .create_binding(NewBinding {
                person: person.clone(),
                enterprise,
                role,
                permissions,
                valid_from: now,
                valid_until,
                enterprise_confirmed: false,
                person_confirmed: true,
                by: person.as_str().to_string(),
                granted_by: None,
                now,
            })
            .await
            .map_err(|e| self.core.rescue.store(e))?;
        self.audit(s, "apply", conn.remote.ip(), json!({"binding": binding.id}))
            .await?;
        Ok(api::typed(
            StatusCode::CREATED,
            &BindingCreated {
                status: status(&binding, now),
                binding: binding.id,
            },
        ))
    }
}

/// Route an `/account/*` request. Every call is first a policy decision on the session.
pub async fn dispatch(
    account: &Account,
    auth: &Auth,
    req: Request<Incoming>,
    conn: ConnInfo,
) -> ApiResult {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    use http::Method as M;
    match (method, segments.as_slice()) {
        (M::GET, ["account", "identities"]) => {
            let s = auth
                .session_for(&req, actions::LIST_IDENTITIES, conn)
                .await?;
            account.identities(&s).await
        }
        (M::GET, ["account", "overview"]) => {
            let s = auth.session_for(&req, actions::VIEW_SESSION, conn).await?;
            account.overview(&s, conn).await
        }
        (M::POST, ["account", "switch", "leave"]) => {
            let s = auth
                .session_for(&req, actions::SWITCH_IDENTITY, conn)
                .await?;
            account.leave_client(&s, conn).await
        }
        (M::POST, ["account", "switch"]) => {
            let s = auth
                .session_for(&req, actions::SWITCH_IDENTITY, conn)
                .await?;
            account.switch(&s, body(req).await?, conn).await
        }
        (M::POST, ["account", "personnel"]) => {
            let s = auth
                .session_for(&req, actions::MANAGE_PERSONNEL, conn)
                .await?;
            account.add_personnel(&s, body(req).await?, conn).await
        }
        (M::GET, ["account", "personnel"]) => {
            let s = auth
                .session_for(&req, actions::MANAGE_PERSONNEL, conn)
                .await?;
            account.list_personnel(&s).await
        }
        (M::POST, ["account", "personnel", id, "revoke"]) => {
            let s = auth
                .session_for(&req, actions::MANAGE_PERSONNEL, conn)
                .await?;
            account.revoke_personnel(&s, id, conn).await
        }
        (M::POST, ["account", "personnel", id, "update"]) => {
            let s = auth
                .session_for(&req, actions::MANAGE_PERSONNEL, conn)
                .await?;
            account
                .update_personnel(&s, id, body(req).await?, conn, auth)
                .await
        }
        (M::POST, ["account", "personnel", id, "confirm"]) => {
            let s = auth
                .session_for(&req, actions::MANAGE_PERSONNEL, conn)
                .await?;
            account.confirm_application(&s, id, conn).await
        }
        (M::GET, ["account", "authorizations"]) => {
            let s = auth
                .session_for(&req, actions::LIST_AUTHORIZATIONS, conn)
                .await?;
            account.authorizations(&s).await
        }
        (M::POST, ["account", "authorizations", id, "confirm"]) => {
            let s = auth
                .session_for(&req, actions::CONFIRM_AUTHORIZATION, conn)
                .await?;
            account.confirm_authorization(&s, id, conn).await
        }
        (M::POST, ["account", "authorizations", id, "unbind"]) => {
            let s = auth.session_for(&req, actions::UNBIND, conn).await?;
            account.unbind(&s, id, conn).await
        }
        (M::POST, ["account", "applications"]) => {
            let s = auth.session_for(&req, actions::APPLY_BINDING, conn).await?;
            account.apply(&s, body(req).await?, conn).await
        }
        (M::POST, ["account", "phone"]) => {
            let s = auth.session_for(&req, actions::CHANGE_PHONE, conn).await?;
            auth.phone_bind_start(&s, body(req).await?, conn).await
        }
        (M::POST, ["account", "phone", "verify"]) => {
            auth.session_for(&req, actions::CHANGE_PHONE, conn).await?;
            auth.phone_verify(
                body(req).await?,
                conn,
                taxgate_store::ChallengePurpose::BindPhone,
            )
            .await
        }
        (_, ["account", ..]) => Err(Code::NotFound.into()),
        _ => Err(Code::NotFound.into()),
    }
}

async fn body(req: Request<Incoming>) -> Result<Json, ApiError> {
    api::read_json(req).await.map(|(_, j)| j)
}
