//! The one decision gate. Every Cedar decision the gateway makes goes through
//! [`Gate::decide`]: each downstream request, each account-centre call, a login's candidate
//! identities, the identity a session is issued for, a switch, each change to a binding. The
//! gate builds the request from the facts Rust established, asks the policy crate, writes one
//! audit record with the same fields whatever the question and whatever the answer, and returns
//! a typed [`Verdict`]. A denial becomes an answer only through [`Verdict::permit`] and the
//! rescue ([`crate::rescue`]); nothing else in the gateway allows or denies.
//!
//! [`Gate::admit`] is the walk every request of a live session takes before its decision (the
//! token, the session, the store's health, the entity slice): the pipeline and the account
//! centre share it, so they fail the same way.

pub mod shadow;

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use serde_json::Value;
use taxgate_policy::{
    AuthzError, Decision, LoginAttempt, LoginCandidate, PersonnelChange, PolicyEngine, RequestFacts,
};
use taxgate_store::{AuditEvent, AuditSlice, StoreError, Timestamp};

use crate::audit::Audit;
use crate::error::Code;
use crate::ext_authz::Mode;
use crate::health::StoreHealth;
use crate::rescue::Failure;
use crate::session::{Lookup, Prepared, ResolvedSession, Sessions};
use shadow::Shadow;

/// Every action the gateway itself asks about (the routes name the downstream ones). The list
/// is checked against the schema when the policies load and on every reload
/// ([`PolicyEngine::require_actions`]): a set that lacks one is refused, so a misspelt name is
/// found at start, not as a denial in production.
pub mod actions {
    /// A login's candidate identities, and the identity a session is issued for.
    pub const LOGIN: &str = taxgate_policy::LOGIN;
    /// The identity a switch goes to (身份切换).
    pub const SWITCH_TO: &str = taxgate_policy::SWITCH_TO;
    /// `GET /auth/session`.
    pub const VIEW_SESSION: &str = "view_session";
    /// `POST /auth/password`.
    pub const CHANGE_PASSWORD: &str = "change_password";
    /// `POST /auth/logout`.
    pub const LOGOUT: &str = "logout";
    /// `GET /account/identities`.
    pub const LIST_IDENTITIES: &str = "list_identities";
    /// `POST /account/switch`: may this session switch at all.
    pub const SWITCH_IDENTITY: &str = "switch_identity";
    /// 人员权限管理: listing, adding, confirming and revoking the enterprise's bindings.
    pub const MANAGE_PERSONNEL: &str = "manage_personnel";
    /// One binding granted (added, or an application confirmed).
    pub const GRANT_BINDING: &str = "grant_binding";
    /// One binding withdrawn or ended.
    pub const REVOKE_BINDING: &str = "revoke_binding";
    /// A person confirming an enterprise's grant, or applying.
    pub const ACCEPT_BINDING: &str = "accept_binding";
    /// `GET /account/authorizations`.
    pub const LIST_AUTHORIZATIONS: &str = "list_authorizations";
    /// `POST /account/authorizations/{id}/confirm`.
    pub const CONFIRM_AUTHORIZATION: &str = "confirm_authorization";
    /// `POST /account/authorizations/{id}/unbind` (解除绑定).
    pub const UNBIND: &str = "unbind";
    /// `POST /account/phone` and its verification.
    pub const CHANGE_PHONE: &str = "change_phone";
    /// `POST /account/applications` (办税人员自主申请).
    pub const APPLY_BINDING: &str = "apply_binding";
    /// `POST /auth/step-up`: a fresh second factor for this session.
    pub const STEP_UP: &str = "step_up";
    /// `/account/sessions*` (安全中心): the person's own sessions.
    pub const MANAGE_SESSIONS: &str = "manage_sessions";
    /// `/account/personnel/sessions*`: the sessions acting for the enterprise.
    pub const MANAGE_PERSONNEL_SESSIONS: &str = "manage_personnel_sessions";

    /// All of the above.
    pub const ALL: &[&str] = &[
        LOGIN,
        SWITCH_TO,
        VIEW_SESSION,
        CHANGE_PASSWORD,
        LOGOUT,
        LIST_IDENTITIES,
        SWITCH_IDENTITY,
        MANAGE_PERSONNEL,
        GRANT_BINDING,
        REVOKE_BINDING,
        ACCEPT_BINDING,
        LIST_AUTHORIZATIONS,
        CONFIRM_AUTHORIZATION,
        UNBIND,
        CHANGE_PHONE,
        APPLY_BINDING,
        STEP_UP,
        MANAGE_SESSIONS,
        MANAGE_PERSONNEL_SESSIONS,
    ];
}

/// What the policies are asked.
pub enum Question<'a> {
    /// May this live session do `action`? Every downstream request (the route's action) and
    /// each account-centre call.
    Session {
        /// The live session (its entity slice is built only when no remembered decision
        /// answers).
        session: &'a Arc<ResolvedSession>,
        /// The action.
        action: &'a str,
    },
    /// May this attempt take up one of these identities? `action` is [`actions::LOGIN`] (a
    /// login, and the session issued after its second factor) or [`actions::SWITCH_TO`].
    Identity {
        /// The action.
        action: &'static str,
        /// The entry, person and enterprise (agency) of the attempt.
        attempt: &'a LoginAttempt<'a>,
        /// The bindings or agreements that could give the identity.
        candidates: &'a [LoginCandidate<'a>],
    },
    /// May this session make this change to a binding (`grant_binding`, `revoke_binding`,
    /// `accept_binding`)?
    Personnel {
        /// The asking session's entity slice.
        entities: &'a Arc<Prepared>,
        /// The action.
        action: &'a str,
        /// The facts of the change.
        change: &'a PersonnelChange<'a>,
    },
}

/// Who asks, when and from where: the subject of the audit record.
pub struct Asker<'a> {
    /// The time of the question (epoch seconds).
    pub now: Timestamp,
    /// The client address.
    pub client: IpAddr,
    /// The live session that asks, if any (none during a login).
    pub session: Option<&'a Arc<ResolvedSession>>,
    /// The request path, for request decisions.
    pub path: Option<&'a str>,
    /// What else the record should say (the target of a switch, the binding changed).
    pub detail: Option<Value>,
    /// A downstream request: also evaluated by the shadow set, if one is configured.
    pub downstream: bool,
    /// How a downstream request reached the gate (inline, or one of the external-authorization
    /// modes): in its audit record's detail and `taxgate_decisions_total{mode}`.
    pub mode: Mode,
}

impl<'a> Asker<'a> {
    /// A question asked for a live session.
    pub fn session(now: Timestamp, client: IpAddr, session: &'a Arc<ResolvedSession>) -> Asker<'a> {
        Asker {
            now,
            client,
            session: Some(session),
            path: None,
            detail: None,
            downstream: false,
            mode: Mode::Inline,
        }
    }

    /// A question asked during a login, before there is a session.
    pub fn anonymous(now: Timestamp, client: IpAddr) -> Asker<'a> {
        Asker {
            now,
            client,
            session: None,
            path: None,
            detail: None,
            downstream: false,
            mode: Mode::Inline,
        }
    }

    /// With the request path.
    pub fn at_path(mut self, path: &'a str) -> Self {
        self.path = Some(path);
        self
    }

    /// With a detail for the record.
    pub fn with_detail(mut self, detail: Value) -> Self {
        self.detail = Some(detail);
        self
    }
}

/// The answer of the gate: the decision, and the id of its audit record (also the request's
/// `x-taxgate-decision`).
#[derive(Debug)]
pub struct Verdict {
    /// The decision (shared: a remembered one is not copied).
    pub decision: Arc<Decision>,
    /// Its audit record's id.
    pub id: String,
    /// For a [`Question::Identity`]: the index of the candidate that allowed.
    pub candidate: Option<usize>,
}

impl Verdict {
    /// Whether the policies allowed.
    pub fn allowed(&self) -> bool {
        self.decision.allowed
    }

    /// The verdict when allowed; the denial, with its reason, as a failure otherwise.
    pub fn permit(self) -> Result<Verdict, Failure> {
        if self.decision.allowed {
            Ok(self)
        } else {
            Err(Failure::denied(&self.decision))
        }
    }
}

/// A live session admitted to its decision: the session and its entity slice.
pub struct Admitted {
    /// The session.
    pub session: Arc<ResolvedSession>,
}

/// The decision gate.
pub struct Gate {
    engine: Arc<PolicyEngine>,
    sessions: Arc<Sessions>,
    audit: Audit,
    health: StoreHealth,
    shadow: Option<Arc<Shadow>>,
    legacy_login_until: Option<Timestamp>,
    cookie_name: String,
}

impl Gate {
    /// A gate over `engine` that records into `audit`. Fails when the active policy set does
    /// not declare every action of [`actions::ALL`].
    pub fn new(
        engine: Arc<PolicyEngine>,
        sessions: Arc<Sessions>,
        audit: Audit,
        health: StoreHealth,
        shadow: Option<Arc<Shadow>>,
        legacy_login_until: Option<Timestamp>,
        cookie_name: String,
    ) -> Result<Gate, String> {
        engine.require_actions(actions::ALL)?;
        Ok(Gate {
            engine,
            sessions,
            audit,
            health,
            shadow,
            legacy_login_until,
            cookie_name,
        })
    }

    /// The facts of a question asked at `now` that are not in any slice.
    pub fn facts(&self, now: Timestamp) -> RequestFacts {
        RequestFacts {
            now,
            legacy_login_until: self.legacy_login_until,
        }
    }

    /// The live session a request presents and its entity slice: the walk before a session's
    /// decision. No token, an unknown or an ended session, two tokens, a store that is down:
    /// each is a [`Failure`] the rescue answers (a browser asking for a page is sent to
    /// `/login`).
    pub async fn admit(&self, headers: &HeaderMap, now: Timestamp) -> Result<Admitted, Failure> {
        if !self.health.is_up() {
            return Err(Code::StoreUnavailable.into());
        }
        let token = taxgate_proxy::headers::session_token(headers, &self.cookie_name)
            .map_err(|_| Failure::from(Code::AmbiguousSession))?
            .ok_or(Failure::LoginRequired(Code::LoginRequired))?;
        let lookup = tracing::info_span!(target: crate::telemetry::TARGET, "session lookup");
        let session = match tracing::Instrument::instrument(
            self.sessions.resolve(token, now),
            lookup,
        )
        .await
        {
            Ok(Lookup::Live(s)) => s,
            Ok(Lookup::Missing) => return Err(Failure::LoginRequired(Code::LoginRequired)),
            Ok(Lookup::Expired) => return Err(Failure::LoginRequired(Code::SessionExpired)),
            Err(e) => return Err(e.into()),
        };
        Ok(Admitted { session })
    }

    /// Decide `question`, record the decision, and return it. The only place the gateway asks
    /// the policies. The record is written (or queued for the journal) before the answer is
    /// returned: a decision that cannot be recorded is not acted on (fail closed).
    pub async fn decide(
        &self,
        question: Question<'_>,
        asker: Asker<'_>,
    ) -> Result<Verdict, Failure> {
        let facts = self.facts(asker.now);
        let span = tracing::info_span!(
            target: crate::telemetry::TARGET,
            "decision",
            taxgate.action = tracing::field::Empty,
            taxgate.decision = tracing::field::Empty,
            taxgate.reason = tracing::field::Empty,
            taxgate.audit_id = tracing::field::Empty,
        );
        let mut built = None;
        let (action, decision, candidate) = span.in_scope(|| match &question {
            Question::Session { session, action } => (
                *action,
                decide_session(&self.engine, session, action, &facts, || {
                    self.sessions.entities(session)
                })
                .map(|(decision, prepared)| {
                    built = prepared;
                    decision
                }),
                None,
            ),
            Question::Identity {
                action,
                attempt,
                candidates,
            } => {
                let (decision, chosen) = self
                    .engine
                    .choose_identity(action, attempt, candidates, &facts);
                (*action, Ok(Arc::new(decision)), chosen)
            }
            Question::Personnel {
                entities,
                action,
                change,
            } => (
                *action,
                Ok(Arc::new(self.engine.current().decide_personnel(
                    &entities.entities,
                    action,
                    change,
                    &facts,
                ))),
                None,
            ),
        });
        if asker.downstream {
            crate::ext_authz::DECISIONS.inc(asker.mode);
        }
        let decision = match decision {
            Ok(d) => d,
            Err(e) => {
                // Checked when the session was loaded; refuse rather than guess if it changed.
                tracing::error!(error = %e, "cannot build the entity slice of a session");
                return Err(Code::Internal.into());
            }
        };
        let id = self.audit.next_id();
        if !span.is_disabled() {
            span.record("taxgate.action", action);
            span.record(
                "taxgate.decision",
                if decision.allowed { "allow" } else { "deny" },
            );
            if let Some(reason) = &decision.reason {
                span.record("taxgate.reason", reason.as_str());
            }
            span.record("taxgate.audit_id", id.as_str());
        }
        let slice = match &question {
            Question::Session { session, .. } => {
                match session.audit_slice(built.as_deref(), facts.now) {
                    Some(slice) => slice,
                    // Due to carry the whole slice again: the hot cache or a rebuild has it
                    // (kept in `built` for the shadow below).
                    None => match self.sessions.entities(session) {
                        Ok(p) => {
                            let slice = session.audit_slice(Some(&p), facts.now).flatten();
                            built = Some(p);
                            slice
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot build the entity slice of a session");
                            return Err(Code::Internal.into());
                        }
                    },
                }
            }
            Question::Personnel { entities, .. } => entities.replay.clone(),
            Question::Identity { .. } => None,
        };
        let event = record(&id, &question, action, &decision, &asker, &facts, slice);
        let recorded = tracing::Instrument::instrument(self.audit.record(event), span).await;
        if recorded.is_err() {
            return Err(Failure::AuditUnavailable);
        }
        if asker.downstream
            && let (Some(shadow), Question::Session { session, .. }) = (&self.shadow, &question)
            && let Some(entities) = built.or_else(|| self.sessions.entities(session).ok())
        {
            shadow.offer(session, &entities, action, facts, &id, &decision);
        }
        Ok(Verdict {
            decision,
            id,
            candidate,
        })
    }

    /// The permission groups a binding of `change` would give once active, as the active
    /// policies say (role defaults included): a fact for personnel updates (does a change widen
    /// what a binding gives?), never a decision — nothing is allowed or denied by it.
    pub fn binding_groups(
        &self,
        change: &PersonnelChange<'_>,
        now: Timestamp,
    ) -> Result<Vec<taxgate_store::PermissionGroup>, String> {
        self.engine
            .current()
            .binding_groups(change, &self.facts(now))
    }

    /// The store failed in a way that means it is down: requests are refused until the health
    /// check sees it again.
    pub fn store_failed(&self, e: &StoreError) {
        if matches!(e, StoreError::Unavailable(_)) {
            self.health.mark_down();
        }
    }

    /// The policy engine, for what is not a decision (messages, versions).
    pub fn engine(&self) -> &Arc<PolicyEngine> {
        &self.engine
    }
}

/// Decisions on a session that no remembered decision answered, evaluated by the policy set.
pub static DECISIONS_EVALUATED: crate::metrics::Counter = crate::metrics::Counter::new(
    "taxgate_session_decisions_evaluated_total",
    "Decisions on a session evaluated by the policies (no remembered decision answered for these inputs).",
);

/// The enforced set's decision for `action` on a session: the one remembered for these inputs
/// ([`ResolvedSession::remembered`]), or a fresh one over the session's entities (`slice`,
/// called only then), remembered for as long as the policies' clock says it holds.
pub(crate) fn decide_session(
    engine: &PolicyEngine,
    session: &ResolvedSession,
    action: &str,
    facts: &RequestFacts,
    slice: impl FnOnce() -> Result<Arc<Prepared>, AuthzError>,
) -> Result<(Arc<Decision>, Option<Arc<Prepared>>), AuthzError> {
    let set = engine.current();
    if let Some(decision) = session.remembered(action, facts, &set.version) {
        return Ok((decision, None));
    }
    let prepared = slice()?;
    DECISIONS_EVALUATED.inc();
    let (decision, until) = set.decide_until(&prepared.entities, action, facts);
    session.remember(action, facts, until, &decision);
    Ok((decision, Some(prepared)))
}

/// The audit record of one decision. The same fields for every kind of question: the subject
/// (session, person, enterprise, role, entry), the action, the path, the outcome, the deciding
/// policies and reason, the set's version, the client, the slice for replay, the detail.
fn record(
    id: &str,
    question: &Question<'_>,
    action: &str,
    decision: &Decision,
    asker: &Asker<'_>,
    facts: &RequestFacts,
    slice: Option<AuditSlice>,
) -> AuditEvent {
    let session = asker.session.map(|s| &s.session);
    let (person, enterprise, entry) = match question {
        Question::Session { .. } | Question::Personnel { .. } => (
            session.and_then(|s| s.person.clone()),
            session.and_then(|s| s.enterprise.clone()),
            session.map(|s| s.entry),
        ),
        Question::Identity { attempt, .. } => (
            attempt.person.map(|p| p.id_number.clone()),
            attempt.enterprise.map(|e| e.taxpayer_id.clone()),
            Some(attempt.entry),
        ),
    };
    AuditEvent {
        id: id.to_string(),
        at: facts.now,
        // A downstream request's id (its `x-taxgate-decision`): what replay and coverage read
        // as the downstream decisions.
        request_id: asker.downstream.then(|| id.to_string()),
        session_id: session.map(|s| s.id.clone()),
        person,
        enterprise,
        role: session.and_then(|s| s.role),
        entry,
        action: action.to_string(),
        path: asker.path.map(str::to_string),
        allowed: decision.allowed,
        policies: decision.policies.clone(),
        reason: decision.reason.clone(),
        policy_version: Some(decision.version.to_string()),
        client_addr: Some(asker.client.to_string()),
        detail: match (&asker.detail, asker.downstream) {
            (Some(detail), _) => Some(detail.to_string()),
            // Every downstream decision says how it was asked (CONTRACT section 9).
            (None, true) => Some(asker.mode.detail().to_string()),
            (None, false) => None,
        },
        slice,
        legacy_login_until: facts.legacy_login_until,
    }
}
