//! Policy test cases (`policies/tests/*.json`).
//!
//! ```json
//! {
//!   "description": "what these cases are about",
//!   "cases": [{
//!     "name": "tax handler may declare",
//!     "now": "2025-06-01T10:00:00+08:00",          // RFC 3339 or epoch seconds
//!     "legacy_login_until": "2026-12-31T23:59:59+08:00",   // optional; absent: retired
//!     "session": {                                  // the facts of a session (or login attempt)
//!       "entry": "enterprise", "role": "tax_handler",
//!       "person": "140105199001011238", "enterprise": "91140100MA0K123488",
//!       "binding": {"permissions": ["declare"], "valid_until": "2030-01-01T00:00:00+08:00"}
//!     },
//!     "action": "declare",
//!     "expect": "allow"                              // or "deny" with "reason": "<code>"
//!   }]
//! }
//! ```
//! Instead of `session`, a case may give raw Cedar entities (`entities`, the Cedar JSON entity
//! format, validated against the schema) with `principal` and `resource` uids such as
//! `Session::"s1"`. With `session` and action `login`, the session's binding or agreement is the
//! login candidate and the engine's login decision is used.

use std::path::Path;
use std::str::FromStr;

use cedar_policy::{Entities, EntityUid};
use serde::Deserialize;
use taxgate_model::model::{
    AgencyAgreement, Binding, Enterprise, Entry, Factor, PermissionGroup, Person, Role, Secret,
    Session, SessionSlice, Timestamp,
};
use taxgate_model::{IdNumber, TaxpayerId};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{
    ActiveSet, Decision, EntitySlice, LoginAttempt, LoginCandidate, PERSONNEL_ACTIONS,
    PersonnelChange, RequestFacts,
};

/// The sample person of a case that names none (ID number).
pub const DEFAULT_PERSON: &str = "140105199001011238";
/// The sample enterprise of a case that names none (credit code).
pub const DEFAULT_ENTERPRISE: &str = "91140100MA0K123488";
/// The sample agency of a case that names none (credit code).
pub const DEFAULT_AGENCY: &str = "91350200776049653A";

/// A time: RFC 3339 text or epoch seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Time {
    /// Epoch seconds.
    Seconds(i64),
    /// RFC 3339 text, checked when the case runs.
    Text(String),
}

impl Time {
    fn seconds(&self) -> Result<Timestamp, String> {
        match self {
            Time::Seconds(s) => Ok(*s),
            Time::Text(t) => OffsetDateTime::parse(t, &Rfc3339)
                .map(|d| d.unix_timestamp())
                .map_err(|e| format!("`{t}` is not an RFC 3339 time: {e}")),
        }
    }
}

/// One `policies/tests/*.json` file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// What these cases are about.
    #[serde(default)]
    pub description: String,
    /// The cases, run in order.
    pub cases: Vec<Case>,
}

/// One request and the decision expected for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Names the case in reports.
    pub name: String,
    /// The request's time (`context.now`).
    pub now: Time,
    /// End of the legacy login; absent: retired.
    #[serde(default)]
    pub legacy_login_until: Option<Time>,
    /// The facts of the session (or login attempt) asking; or give `entities`.
    #[serde(default)]
    pub session: Option<SessionFacts>,
    /// Raw Cedar entities (JSON entity format), instead of `session`.
    #[serde(default)]
    pub entities: Option<serde_json::Value>,
    /// With `entities`: the principal's uid, such as `Session::"s1"`.
    #[serde(default)]
    pub principal: Option<String>,
    /// With `entities`: the resource's uid.
    #[serde(default)]
    pub resource: Option<String>,
    /// The Cedar action asked for.
    pub action: String,
    /// The change asked for, with a personnel action (`grant_binding`, `revoke_binding`,
    /// `accept_binding`); required there and only there.
    #[serde(default)]
    pub personnel: Option<PersonnelFacts>,
    /// The outcome expected.
    pub expect: Expect,
    /// The denial reason expected; required with `deny`.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The facts of a personnel change (`PersonnelContext`): the binding's role and permissions
/// (absent: the role's defaults), its enterprise (default: the session's, else the sample
/// enterprise) and whether its person is staff of an agency agreement with that enterprise.
/// The groups the asker holds and those the binding gives are worked out as the gateway does.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonnelFacts {
    /// The binding's role.
    pub role: Role,
    /// The binding's permission groups; absent: the role's defaults.
    #[serde(default)]
    pub permissions: Option<Vec<PermissionGroup>>,
    /// The binding's enterprise; absent: the session's, else the sample enterprise.
    #[serde(default)]
    pub enterprise: Option<String>,
    /// The binding's person is staff of an agency agreement with that enterprise.
    #[serde(default)]
    pub conflict_of_roles: bool,
    /// `revoke_binding`: whether the enterprise side has confirmed the stored binding.
    #[serde(default)]
    pub enterprise_confirmed: Option<bool>,
}

/// The outcome a case expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// The request is allowed.
    Allow,
    /// The request is denied (with the case's `reason`).
    Deny,
}

/// The session (or login attempt) of a case, with sample defaults for what it leaves out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionFacts {
    /// The login entry.
    pub entry: Entry,
    /// The session's role; absent: the entry's own role (agent, legacy), else the binding's.
    #[serde(default)]
    pub role: Option<Role>,
    /// ID number; defaults to a sample person except for the legacy entry. `null`: none.
    #[serde(default = "some_default_person")]
    pub person: Option<String>,
    /// The enterprise acted for; absent: the sample enterprise in the enterprise and legacy
    /// entries, none otherwise.
    #[serde(default)]
    pub enterprise: Option<String>,
    /// The agency; absent: the sample agency in agent entry, none otherwise.
    #[serde(default)]
    pub agency: Option<String>,
    /// The person must change their password first.
    #[serde(default)]
    pub must_change_password: bool,
    /// The second factor; absent: SMS.
    #[serde(default)]
    pub factor: Option<Factor>,
    /// When the session's latest second factor completed (CONTRACT section 10); absent: at the
    /// case's `now` (a fresh factor). `0`: none on record.
    #[serde(default)]
    pub factor_at: Option<Time>,
    /// When its latest face verification passed; absent: at `factor_at` when `factor` is
    /// `face`, else 0 (none).
    #[serde(default)]
    pub face_at: Option<Time>,
    /// The binding in use.
    #[serde(default)]
    pub binding: Option<BindingFacts>,
    /// The agreement in use.
    #[serde(default)]
    pub agreement: Option<AgreementFacts>,
}

impl SessionFacts {
    /// The sample person on the enterprise entry as `role`, through `binding` confirmed by both
    /// sides: the common session of unit tests.
    #[cfg(any(test, feature = "testing"))]
    pub fn confirmed_enterprise(role: Role, binding: BindingFacts) -> SessionFacts {
        SessionFacts {
            entry: Entry::Enterprise,
            role: Some(role),
            person: some_default_person(),
            enterprise: None,
            agency: None,
            must_change_password: false,
            factor: None,
            factor_at: None,
            face_at: None,
            binding: Some(BindingFacts {
                enterprise_confirmed: true,
                person_confirmed: true,
                ..binding
            }),
            agreement: None,
        }
    }
}

fn some_default_person() -> Option<String> {
    Some(DEFAULT_PERSON.to_string())
}

/// The binding of a case's session; what it leaves out comes from the session.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingFacts {
    /// Absent: the session's role, else `tax_handler`.
    #[serde(default)]
    pub role: Option<Role>,
    /// Absent: the session's person, else the sample person.
    #[serde(default)]
    pub person: Option<String>,
    /// Absent: the session's enterprise, else the sample enterprise.
    #[serde(default)]
    pub enterprise: Option<String>,
    /// Absent: the role's defaults.
    #[serde(default)]
    pub permissions: Option<Vec<PermissionGroup>>,
    /// Absent: epoch 0.
    #[serde(default)]
    pub valid_from: Option<Time>,
    /// Absent: no end.
    #[serde(default)]
    pub valid_until: Option<Time>,
    /// Absent: confirmed.
    #[serde(default = "yes")]
    pub enterprise_confirmed: bool,
    /// Absent: confirmed.
    #[serde(default = "yes")]
    pub person_confirmed: bool,
    /// The binding is revoked.
    #[serde(default)]
    pub revoked: bool,
}

/// The agency agreement of a case's session; what it leaves out comes from the session.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgreementFacts {
    /// Absent: the session's agency, else the sample agency.
    #[serde(default)]
    pub agency: Option<String>,
    /// Absent: the session's enterprise, else the sample enterprise.
    #[serde(default)]
    pub client: Option<String>,
    /// Absent: the session's person.
    #[serde(default)]
    pub staff: Option<Vec<String>>,
    /// The permission groups covered; absent: none.
    #[serde(default)]
    pub scope: Vec<PermissionGroup>,
    /// Absent: epoch 0.
    #[serde(default)]
    pub valid_from: Option<Time>,
    /// Absent: no end.
    #[serde(default)]
    pub valid_until: Option<Time>,
    /// Absent: confirmed.
    #[serde(default = "yes")]
    pub client_confirmed: bool,
    /// The agreement is revoked.
    #[serde(default)]
    pub revoked: bool,
}

fn yes() -> bool {
    true
}

/// Reads and parses one case file; the error gives the JSON line.
pub fn read_case_file(path: &Path) -> Result<CaseFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("line {}: {e}", e.line()))
}

fn id_number(s: &str) -> Result<IdNumber, String> {
    IdNumber::parse(s).map_err(|e| format!("ID number `{s}`: {e}"))
}

fn taxpayer(s: &str) -> Result<TaxpayerId, String> {
    TaxpayerId::parse(s).map_err(|e| format!("taxpayer id `{s}`: {e}"))
}

fn person(id: IdNumber, must_change_password: bool) -> Person {
    Person {
        id_number: id,
        name: "测试".to_string(),
        username: None,
        phone: None,
        password_hash: Secret(String::new()),
        must_change_password,
        failed_logins: 0,
        locked_until: None,
        updated_at: 0,
    }
}

fn enterprise(id: TaxpayerId, is_agency: bool) -> Enterprise {
    Enterprise {
        taxpayer_id: id,
        name: "测试企业".to_string(),
        is_agency,
        legacy_password_hash: None,
        phone: None,
        failed_logins: 0,
        locked_until: None,
    }
}

fn opt_time(t: &Option<Time>) -> Result<Option<Timestamp>, String> {
    t.as_ref().map(Time::seconds).transpose()
}

/// The session slice the facts describe.
pub fn session_slice(f: &SessionFacts) -> Result<SessionSlice, String> {
    session_slice_at(f, 0)
}

/// [`session_slice`] for a case at `now`: a factor the facts leave out completed at `now`.
pub fn session_slice_at(f: &SessionFacts, now: Timestamp) -> Result<SessionSlice, String> {
    let factor_at = opt_time(&f.factor_at)?.unwrap_or(now);
    let person_id = f.person.as_deref().map(id_number).transpose()?;
    let enterprise_id = match (&f.enterprise, f.entry) {
        (Some(e), _) => Some(taxpayer(e)?),
        (None, Entry::Enterprise | Entry::EnterpriseLegacy) => Some(taxpayer(DEFAULT_ENTERPRISE)?),
        (None, _) => None,
    };
    let agency_id = match (&f.agency, f.entry) {
        (Some(a), _) => Some(taxpayer(a)?),
        (None, Entry::Agent) => Some(taxpayer(DEFAULT_AGENCY)?),
        (None, _) => None,
    };
    let role = f.role.or(match f.entry {
        Entry::Agent => Some(Role::Agent),
        Entry::EnterpriseLegacy => Some(Role::LegacyEnterprise),
        Entry::Enterprise => f.binding.as_ref().and_then(|b| b.role),
        Entry::Person => None,
    });
    let binding = match &f.binding {
        None => None,
        Some(b) => Some(Binding {
            id: "b1".to_string(),
            person: match &b.person {
                Some(p) => id_number(p)?,
                None => person_id
                    .clone()
                    .map_or_else(|| id_number(DEFAULT_PERSON), Ok)?,
            },
            enterprise: match &b.enterprise {
                Some(e) => taxpayer(e)?,
                None => enterprise_id
                    .clone()
                    .map_or_else(|| taxpayer(DEFAULT_ENTERPRISE), Ok)?,
            },
            role: b.role.or(role).unwrap_or(Role::TaxHandler),
            permissions: b.permissions.clone(),
            valid_from: opt_time(&b.valid_from)?.unwrap_or(0),
            valid_until: opt_time(&b.valid_until)?,
            enterprise_confirmed: b.enterprise_confirmed,
            person_confirmed: b.person_confirmed,
            revoked_at: b.revoked.then_some(0),
            created_at: 0,
            updated_at: 0,
            updated_by: "test".to_string(),
        }),
    };
    let agreement = match &f.agreement {
        None => None,
        Some(a) => Some(AgencyAgreement {
            id: "a1".to_string(),
            agency: match &a.agency {
                Some(x) => taxpayer(x)?,
                None => agency_id
                    .clone()
                    .map_or_else(|| taxpayer(DEFAULT_AGENCY), Ok)?,
            },
            client: match &a.client {
                Some(x) => taxpayer(x)?,
                None => enterprise_id
                    .clone()
                    .map_or_else(|| taxpayer(DEFAULT_ENTERPRISE), Ok)?,
            },
            staff: match &a.staff {
                Some(list) => list
                    .iter()
                    .map(|s| id_number(s))
                    .collect::<Result<_, _>>()?,
                None => person_id.clone().into_iter().collect(),
            },
            scope: a.scope.clone(),
            valid_from: opt_time(&a.valid_from)?.unwrap_or(0),
            valid_until: opt_time(&a.valid_until)?,
            client_confirmed: a.client_confirmed,
            revoked_at: a.revoked.then_some(0),
            updated_at: 0,
        }),
    };
    let session = Session {
        id: "s1".to_string(),
        token_hash: String::new(),
        entry: f.entry,
        person: person_id.clone(),
        enterprise: enterprise_id.clone(),
        agency: agency_id.clone(),
        role,
        binding_id: binding.as_ref().map(|b| b.id.clone()),
        agreement_id: agreement.as_ref().map(|a| a.id.clone()),
        factor: f.factor.unwrap_or(Factor::Sms),
        created_at: 0,
        last_seen_at: 0,
        expires_at: i64::MAX,
        revoked_at: None,
        factor_at,
        face_at: match opt_time(&f.face_at)? {
            Some(t) => t,
            None if f.factor == Some(Factor::Face) => factor_at,
            None => 0,
        },
    };
    Ok(SessionSlice {
        session,
        person: person_id.map(|id| person(id, f.must_change_password)),
        enterprise: enterprise_id.map(|id| enterprise(id, false)),
        agency: agency_id.map(|id| enterprise(id, true)),
        binding,
        agreement,
    })
}

/// Runs one case on `set`.
pub fn run_case(set: &ActiveSet, case: &Case) -> Result<Decision, String> {
    let facts = RequestFacts {
        now: case.now.seconds()?,
        legacy_login_until: opt_time(&case.legacy_login_until)?,
    };
    match (&case.session, &case.entities) {
        (Some(session), None) => {
            let slice = session_slice_at(session, facts.now)?;
            if crate::IDENTITY_ACTIONS.contains(&case.action.as_str()) {
                let target = match session.entry {
                    Entry::Agent => slice.agency.as_ref(),
                    _ => slice.enterprise.as_ref(),
                };
                let attempt = LoginAttempt {
                    entry: session.entry,
                    person: slice.person.as_ref(),
                    enterprise: target,
                };
                let mut candidates = Vec::new();
                if let Some(b) = &slice.binding {
                    candidates.push(LoginCandidate::Binding(b));
                }
                if let Some(a) = &slice.agreement {
                    candidates.push(LoginCandidate::Agreement(a));
                }
                Ok(set.decide_identity(&case.action, &attempt, &candidates, &facts))
            } else if PERSONNEL_ACTIONS.contains(&case.action.as_str()) {
                let p = case.personnel.as_ref().ok_or_else(|| {
                    format!(
                        "action `{}` needs `personnel` (the change asked for)",
                        case.action
                    )
                })?;
                let enterprise = match (&p.enterprise, &slice.session.enterprise) {
                    (Some(e), _) => taxpayer(e)?,
                    (None, Some(e)) => e.clone(),
                    (None, None) => taxpayer(DEFAULT_ENTERPRISE)?,
                };
                let change = PersonnelChange {
                    enterprise: &enterprise,
                    role: p.role,
                    permissions: p.permissions.as_deref(),
                    conflict_of_roles: p.conflict_of_roles,
                    enterprise_confirmed: p.enterprise_confirmed,
                };
                let slice = EntitySlice::build(&slice).map_err(|e| e.to_string())?;
                Ok(set.decide_personnel(&slice, &case.action, &change, &facts))
            } else {
                let slice = EntitySlice::build(&slice).map_err(|e| e.to_string())?;
                Ok(set.decide(&slice, &case.action, &facts))
            }
        }
        (None, Some(raw)) => {
            let entities = Entities::from_json_value(raw.clone(), Some(set.schema()))
                .map_err(|e| format!("entities: {e}"))?;
            let uid = |field: &str, v: &Option<String>| -> Result<EntityUid, String> {
                let v = v
                    .as_deref()
                    .ok_or_else(|| format!("`{field}` is required with `entities`"))?;
                EntityUid::from_str(v).map_err(|e| format!("{field} `{v}`: {e}"))
            };
            let principal = uid("principal", &case.principal)?;
            let resource = uid("resource", &case.resource)?;
            Ok(set.decide_request(&principal, &case.action, &resource, &entities, &facts, true))
        }
        _ => {
            Err("give either `session` or `entities` (with `principal` and `resource`)".to_string())
        }
    }
}

/// Whether `decision` is what `case` expects; the error says how it differs.
pub fn check(case: &Case, decision: &Decision) -> Result<(), String> {
    let got = if decision.allowed { "allow" } else { "deny" };
    let want = match case.expect {
        Expect::Allow => "allow",
        Expect::Deny => "deny",
    };
    if got != want {
        return Err(format!(
            "expected {want}, got {got} (reason {}, policies [{}])",
            decision.reason.as_deref().unwrap_or("-"),
            decision.policies.join(", ")
        ));
    }
    if case.expect == Expect::Deny {
        match &case.reason {
            None => return Err("a deny case needs the expected `reason`".to_string()),
            Some(r) if Some(r) != decision.reason.as_ref() => {
                return Err(format!(
                    "expected reason `{r}`, got `{}` (policies [{}])",
                    decision.reason.as_deref().unwrap_or("-"),
                    decision.policies.join(", ")
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}
