//! The per-session entity slice: the handful of Cedar entities one decision needs (session,
//! person, enterprise or agency, the binding or agreement in use), never the population.
//!
//! Built from a cached session's record and [`SliceFacts`] and kept for the most recently used
//! sessions (`session::Sessions::entities`); a decision then only builds its context. Times are epoch seconds as `Long`; an open end is [`NO_END`].

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::LazyLock;

use cedar_policy::{Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use taxgate_model::model::{
    AgencyAgreement, Binding, Enterprise, Entry, PermissionGroup, Person, Role, SessionSlice,
    Timestamp,
};
use taxgate_model::{IdNumber, TaxpayerId};

use super::AuthzError;

/// `valid_until` of a binding or agreement without an end (长期).
pub const NO_END: i64 = i64::MAX;

/// The id of the principal of a login attempt (session ids are hex, so this never collides).
pub const LOGIN_ATTEMPT_ID: &str = "login-attempt";

pub(crate) struct TypeNames {
    pub session: EntityTypeName,
    pub person: EntityTypeName,
    pub enterprise: EntityTypeName,
    pub binding: EntityTypeName,
    pub agreement: EntityTypeName,
    pub role: EntityTypeName,
    pub entry: EntityTypeName,
    pub group: EntityTypeName,
    pub action: EntityTypeName,
}

static TYPES: LazyLock<Result<TypeNames, String>> = LazyLock::new(|| {
    let t = |s: &str| EntityTypeName::from_str(s).map_err(|e| format!("type `{s}`: {e}"));
    Ok(TypeNames {
        session: t("Session")?,
        person: t("Person")?,
        enterprise: t("Enterprise")?,
        binding: t("Binding")?,
        agreement: t("AgencyAgreement")?,
        role: t("Role")?,
        entry: t("Entry")?,
        group: t("PermissionGroup")?,
        action: t("Action")?,
    })
});

pub(crate) fn types() -> Result<&'static TypeNames, AuthzError> {
    TYPES
        .as_ref()
        .map_err(|e| AuthzError::Slice(format!("entity type names: {e}")))
}

fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
}

/// One candidate identity of a login attempt.
#[derive(Debug, Clone, Copy)]
pub enum LoginCandidate<'a> {
    /// A binding of the person to the enterprise (enterprise entry).
    Binding(&'a Binding),
    /// An agreement of the agency naming the person as staff (agent entry).
    Agreement(&'a AgencyAgreement),
}

/// What `POST /auth/login` established before asking the policies: the entry, the person (none
/// for the legacy login) and the enterprise logged into (the agency in agent entry).
#[derive(Debug, Clone, Copy)]
pub struct LoginAttempt<'a> {
    /// The login entry used.
    pub entry: Entry,
    /// The person who passed the first factor; `None` in the legacy login.
    pub person: Option<&'a Person>,
    /// The enterprise logged into (the agency in agent entry).
    pub enterprise: Option<&'a Enterprise>,
}

/// The Cedar entities of one session (or login attempt) and the uids a request needs.
#[derive(Debug, Clone)]
pub struct EntitySlice {
    entities: Entities,
    principal: EntityUid,
    person: Option<EntityUid>,
    enterprise: Option<EntityUid>,
    agency: Option<EntityUid>,
    entry: Entry,
}

/// The facts a slice is made of, borrowed from a `SessionSlice` or a login attempt.
struct Parts<'a> {
    session_id: &'a str,
    entry: Entry,
    factor: &'a str,
    authenticated_at: Timestamp,
    factor_at: Timestamp,
    face_at: Timestamp,
    expires_at: Timestamp,
    role: Option<Role>,
    must_change_password: bool,
    person_id: Option<&'a IdNumber>,
    enterprise_is_agency: bool,
    enterprise_id: Option<&'a TaxpayerId>,
    agency_is_agency: bool,
    agency_id: Option<&'a TaxpayerId>,
    binding: Option<&'a Binding>,
    agreement: Option<&'a AgencyAgreement>,
}

/// What a session's entity slice is made of beyond the session record itself. The session
/// cache keeps this (a few hundred bytes) instead of the Cedar entities (about 10 KiB a
/// session), and builds the entities from it when a decision needs them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SliceFacts {
    /// The person must change their password first.
    pub must_change_password: bool,
    /// The enterprise acted for is an agency.
    pub enterprise_is_agency: bool,
    /// The session's agency is flagged as an agency.
    pub agency_is_agency: bool,
    /// The binding in use (enterprise entry).
    pub binding: Option<Box<Binding>>,
    /// The agreement in use (agent entry acting for a client).
    pub agreement: Option<Box<AgencyAgreement>>,
}

impl SliceFacts {
    /// Split a stored slice into the session record and the facts its entities need; the
    /// person's and enterprises' other fields (names, password hashes) are not kept.
    pub fn split(slice: SessionSlice) -> (taxgate_model::Session, SliceFacts) {
        let is_agency = |e: &Option<Enterprise>| e.as_ref().is_some_and(|e| e.is_agency);
        let facts = SliceFacts {
            must_change_password: slice
                .person
                .as_ref()
                .is_some_and(|p: &Person| p.must_change_password),
            enterprise_is_agency: is_agency(&slice.enterprise),
            agency_is_agency: is_agency(&slice.agency),
            binding: slice.binding.map(Box::new),
            agreement: slice.agreement.map(Box::new),
        };
        (slice.session, facts)
    }
}

impl EntitySlice {
    /// The slice of a stored session.
    pub fn build(slice: &SessionSlice) -> Result<Self, AuthzError> {
        let s = &slice.session;
        let is_agency = |e: &Option<Enterprise>| e.as_ref().is_some_and(|e| e.is_agency);
        Self::from_parts(Parts {
            session_id: &s.id,
            entry: s.entry,
            factor: s.factor.as_str(),
            authenticated_at: s.created_at,
            factor_at: s.factor_at,
            face_at: s.face_at,
            expires_at: s.expires_at,
            role: s.role,
            must_change_password: slice
                .person
                .as_ref()
                .is_some_and(|p| p.must_change_password),
            person_id: s.person.as_ref(),
            enterprise_is_agency: is_agency(&slice.enterprise),
            enterprise_id: s.enterprise.as_ref(),
            agency_is_agency: is_agency(&slice.agency),
            agency_id: s.agency.as_ref(),
            binding: slice.binding.as_ref(),
            agreement: slice.agreement.as_ref(),
        })
    }

    /// The slice of a cached session: its record and the facts kept beside it. The same
    /// entities as [`EntitySlice::build`] on the slice they were split from.
    pub fn for_session(s: &taxgate_model::Session, facts: &SliceFacts) -> Result<Self, AuthzError> {
        Self::from_parts(Parts {
            session_id: &s.id,
            entry: s.entry,
            factor: s.factor.as_str(),
            authenticated_at: s.created_at,
            factor_at: s.factor_at,
            face_at: s.face_at,
            expires_at: s.expires_at,
            role: s.role,
            must_change_password: facts.must_change_password,
            person_id: s.person.as_ref(),
            enterprise_is_agency: facts.enterprise_is_agency,
            enterprise_id: s.enterprise.as_ref(),
            agency_is_agency: facts.agency_is_agency,
            agency_id: s.agency.as_ref(),
            binding: facts.binding.as_deref(),
            agreement: facts.agreement.as_deref(),
        })
    }

    /// The slice of a login attempt with one candidate identity (or none). The principal is a
    /// provisional session; the resource of `login` is the enterprise (agency) or the person.
    pub fn for_login(
        attempt: &LoginAttempt<'_>,
        candidate: Option<LoginCandidate<'_>>,
        now: Timestamp,
    ) -> Result<Self, AuthzError> {
        let (binding, agreement) = match candidate {
            Some(LoginCandidate::Binding(b)) => (Some(b), None),
            Some(LoginCandidate::Agreement(a)) => (None, Some(a)),
            None => (None, None),
        };
        let role = match attempt.entry {
            Entry::Enterprise => binding.map(|b| b.role),
            Entry::Agent => Some(Role::Agent),
            Entry::EnterpriseLegacy => Some(Role::LegacyEnterprise),
            Entry::Person => None,
        };
        let (enterprise, agency) = match attempt.entry {
            Entry::Agent => (None, attempt.enterprise),
            Entry::Person => (None, None),
            Entry::Enterprise | Entry::EnterpriseLegacy => (attempt.enterprise, None),
        };
        Self::from_parts(Parts {
            session_id: LOGIN_ATTEMPT_ID,
            entry: attempt.entry,
            factor: "none",
            authenticated_at: now,
            factor_at: 0,
            face_at: 0,
            expires_at: now,
            role,
            must_change_password: attempt.person.is_some_and(|p| p.must_change_password),
            person_id: attempt.person.map(|p| &p.id_number),
            enterprise_is_agency: enterprise.is_some_and(|e| e.is_agency),
            enterprise_id: enterprise.map(|e| &e.taxpayer_id),
            agency_is_agency: agency.is_some_and(|e| e.is_agency),
            agency_id: agency.map(|e| &e.taxpayer_id),
            binding,
            agreement,
        })
    }

    fn from_parts(p: Parts<'_>) -> Result<Self, AuthzError> {
        let t = types()?;
        let person = p.person_id.map(|id| uid(&t.person, id.as_str()));
        let enterprise = p.enterprise_id.map(|id| uid(&t.enterprise, id.as_str()));
        let agency = p.agency_id.map(|id| uid(&t.enterprise, id.as_str()));
        let principal = uid(&t.session, p.session_id);

        let mut entities: Vec<Entity> = Vec::with_capacity(6);
        let mut seen: HashSet<EntityUid> = HashSet::new();
        let mut push = |e: Entity, seen: &mut HashSet<EntityUid>| {
            if seen.insert(e.uid()) {
                entities.push(e);
            }
        };

        if let Some(u) = &person {
            push(Entity::new_no_attrs(u.clone(), HashSet::new()), &mut seen);
        }
        for (u, is_agency) in [
            (&enterprise, p.enterprise_is_agency),
            (&agency, p.agency_is_agency),
        ] {
            if let Some(u) = u {
                let attrs = HashMap::from([(
                    "is_agency".to_string(),
                    RestrictedExpression::new_bool(is_agency),
                )]);
                push(entity(u.clone(), attrs, HashSet::new())?, &mut seen);
            }
        }
        let binding = match p.binding {
            Some(b) => {
                let e = binding_entity(t, b)?;
                let u = e.uid();
                push(e, &mut seen);
                Some(u)
            }
            None => None,
        };
        let agreement = match p.agreement {
            Some(a) => {
                let e = agreement_entity(t, a)?;
                let u = e.uid();
                push(e, &mut seen);
                Some(u)
            }
            None => None,
        };

        let must_change_password = p.must_change_password;
        let mut attrs = HashMap::from([
            (
                "entry".to_string(),
                RestrictedExpression::new_entity_uid(uid(&t.entry, p.entry.as_str())),
            ),
            (
                "factor".to_string(),
                RestrictedExpression::new_string(p.factor.to_string()),
            ),
            (
                "authenticated_at".to_string(),
                RestrictedExpression::new_long(p.authenticated_at),
            ),
            (
                "expires_at".to_string(),
                RestrictedExpression::new_long(p.expires_at),
            ),
            (
                "factor_at".to_string(),
                RestrictedExpression::new_long(p.factor_at),
            ),
            (
                "face_at".to_string(),
                RestrictedExpression::new_long(p.face_at),
            ),
            (
                "must_change_password".to_string(),
                RestrictedExpression::new_bool(must_change_password),
            ),
        ]);
        let optional = [
            ("person", person.clone()),
            ("enterprise", enterprise.clone()),
            ("agency", agency.clone()),
            ("role", p.role.map(|r| uid(&t.role, r.as_str()))),
            ("binding", binding),
            ("agreement", agreement),
        ];
        for (name, value) in optional {
            if let Some(u) = value {
                attrs.insert(name.to_string(), RestrictedExpression::new_entity_uid(u));
            }
        }
        let parents: HashSet<EntityUid> = p
            .role
            .map(|r| uid(&t.role, r.as_str()))
            .into_iter()
            .collect();
        push(entity(principal.clone(), attrs, parents)?, &mut seen);

        let entities = Entities::from_entities(entities, None)
            .map_err(|e| AuthzError::Slice(e.to_string()))?;
        Ok(EntitySlice {
            entities,
            principal,
            person,
            enterprise,
            agency,
            entry: p.entry,
        })
    }

    /// The Cedar entities a decision on this slice sees.
    pub fn entities(&self) -> &Entities {
        &self.entities
    }

    /// The request principal: the session (or login attempt).
    pub fn principal(&self) -> &EntityUid {
        &self.principal
    }

    /// The login entry of the session.
    pub fn entry(&self) -> Entry {
        self.entry
    }

    /// The resource of a request for `action`, whose schema resource types are `types`.
    /// A missing entity becomes `Type::""`, which no policy names and no slice contains.
    pub(crate) fn resource_for(
        &self,
        action: &str,
        resource_types: &[EntityTypeName],
    ) -> EntityUid {
        let Ok(t) = types() else {
            return self.principal.clone();
        };
        let wanted = if action == crate::SWITCH_TO {
            // A switch's resource is the enterprise (the agency for an agent) switched into.
            Some(&t.enterprise)
        } else if action == crate::LOGIN {
            // The login's resource follows the entry: the person, the agency or the enterprise.
            Some(match self.entry {
                Entry::Person => &t.person,
                _ => &t.enterprise,
            })
        } else {
            resource_types.first()
        };
        let Some(ty) = wanted else {
            return self.principal.clone();
        };
        let found = if ty == &t.session {
            Some(&self.principal)
        } else if ty == &t.person {
            self.person.as_ref()
        } else if ty == &t.enterprise {
            if crate::IDENTITY_ACTIONS.contains(&action) && self.entry == Entry::Agent {
                self.agency.as_ref()
            } else {
                self.enterprise.as_ref()
            }
        } else {
            None
        };
        found.cloned().unwrap_or_else(|| uid(ty, ""))
    }
}

/// Layout version of [`EntitySlice::replay_json`].
const REPLAY_FORMAT: u64 = 1;

impl EntitySlice {
    /// The slice as JSON for the audit log (decision replay) and a hash of that text. The
    /// entities are sorted by uid so that equal slices give equal text; the hash is the first
    /// 128 bits of its SHA-256, in hex. Built once per session cache fill, never per request.
    pub fn replay_json(&self) -> Result<(String, String), AuthzError> {
        let mut entities = self
            .entities
            .to_json_value()
            .map_err(|e| AuthzError::Slice(e.to_string()))?;
        if let serde_json::Value::Array(list) = &mut entities {
            list.sort_by_cached_key(|e| e.get("uid").map(|u| u.to_string()).unwrap_or_default());
        }
        let id = |u: &Option<EntityUid>| u.as_ref().map(|u| u.id().unescaped().to_string());
        let doc = serde_json::json!({
            "format": REPLAY_FORMAT,
            "session": self.principal.id().unescaped(),
            "entry": self.entry.as_str(),
            "person": id(&self.person),
            "enterprise": id(&self.enterprise),
            "agency": id(&self.agency),
            "entities": entities,
        });
        let text = doc.to_string();
        let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(text.as_bytes()).into();
        Ok((hex::encode(&digest[..16]), text))
    }

    /// Rebuilds a slice from [`EntitySlice::replay_json`]'s text. Like the live slice, the
    /// entities are not checked against a schema: the replayed decision sees exactly what the
    /// recorded one saw.
    pub fn from_replay_json(text: &str) -> Result<Self, AuthzError> {
        let bad = |what: &str| AuthzError::Slice(format!("recorded slice: {what}"));
        let doc: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(&e.to_string()))?;
        if doc.get("format").and_then(serde_json::Value::as_u64) != Some(REPLAY_FORMAT) {
            return Err(bad("unknown format"));
        }
        let t = types()?;
        let text_of = |key: &str| doc.get(key).and_then(serde_json::Value::as_str);
        let session = text_of("session").ok_or_else(|| bad("no `session`"))?;
        let entry = text_of("entry")
            .and_then(Entry::parse)
            .ok_or_else(|| bad("no valid `entry`"))?;
        let entities = doc
            .get("entities")
            .cloned()
            .ok_or_else(|| bad("no `entities`"))?;
        let entities =
            Entities::from_json_value(entities, None).map_err(|e| bad(&e.to_string()))?;
        Ok(EntitySlice {
            entities,
            principal: uid(&t.session, session),
            person: text_of("person").map(|id| uid(&t.person, id)),
            enterprise: text_of("enterprise").map(|id| uid(&t.enterprise, id)),
            agency: text_of("agency").map(|id| uid(&t.enterprise, id)),
            entry,
        })
    }
}

fn entity(
    uid: EntityUid,
    attrs: HashMap<String, RestrictedExpression>,
    parents: HashSet<EntityUid>,
) -> Result<Entity, AuthzError> {
    Entity::new(uid, attrs, parents).map_err(|e| AuthzError::Slice(e.to_string()))
}

fn groups(t: &TypeNames, groups: &[PermissionGroup]) -> RestrictedExpression {
    RestrictedExpression::new_set(
        groups
            .iter()
            .map(|g| RestrictedExpression::new_entity_uid(uid(&t.group, g.as_str()))),
    )
}

fn binding_entity(t: &TypeNames, b: &Binding) -> Result<Entity, AuthzError> {
    let mut attrs = HashMap::from([
        (
            "person".to_string(),
            RestrictedExpression::new_entity_uid(uid(&t.person, b.person.as_str())),
        ),
        (
            "enterprise".to_string(),
            RestrictedExpression::new_entity_uid(uid(&t.enterprise, b.enterprise.as_str())),
        ),
        (
            "role".to_string(),
            RestrictedExpression::new_entity_uid(uid(&t.role, b.role.as_str())),
        ),
        (
            "valid_from".to_string(),
            RestrictedExpression::new_long(b.valid_from),
        ),
        (
            "valid_until".to_string(),
            RestrictedExpression::new_long(b.valid_until.unwrap_or(NO_END)),
        ),
        (
            "enterprise_confirmed".to_string(),
            RestrictedExpression::new_bool(b.enterprise_confirmed),
        ),
        (
            "person_confirmed".to_string(),
            RestrictedExpression::new_bool(b.person_confirmed),
        ),
        (
            "revoked".to_string(),
            RestrictedExpression::new_bool(b.revoked_at.is_some()),
        ),
    ]);
    if let Some(list) = &b.permissions {
        attrs.insert("permissions".to_string(), groups(t, list));
    }
    entity(uid(&t.binding, &b.id), attrs, HashSet::new())
}

fn agreement_entity(t: &TypeNames, a: &AgencyAgreement) -> Result<Entity, AuthzError> {
    let attrs = HashMap::from([
        (
            "agency".to_string(),
            RestrictedExpression::new_entity_uid(uid(&t.enterprise, a.agency.as_str())),
        ),
        (
            "client".to_string(),
            RestrictedExpression::new_entity_uid(uid(&t.enterprise, a.client.as_str())),
        ),
        (
            "staff".to_string(),
            RestrictedExpression::new_set(
                a.staff
                    .iter()
                    .map(|p| RestrictedExpression::new_entity_uid(uid(&t.person, p.as_str()))),
            ),
        ),
        ("scope".to_string(), groups(t, &a.scope)),
        (
            "valid_from".to_string(),
            RestrictedExpression::new_long(a.valid_from),
        ),
        (
            "valid_until".to_string(),
            RestrictedExpression::new_long(a.valid_until.unwrap_or(NO_END)),
        ),
        (
            "client_confirmed".to_string(),
            RestrictedExpression::new_bool(a.client_confirmed),
        ),
        (
            "revoked".to_string(),
            RestrictedExpression::new_bool(a.revoked_at.is_some()),
        ),
    ]);
    entity(uid(&t.agreement, &a.id), attrs, HashSet::new())
}

/// Uid of an action (used by the engine and the tests).
pub(crate) fn action_uid(name: &str) -> Result<EntityUid, AuthzError> {
    Ok(uid(&types()?.action, name))
}

#[cfg(test)]
#[expect(clippy::panic, reason = "tests fail loudly")]
mod tests;
