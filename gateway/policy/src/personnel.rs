//! The personnel decisions (`grant_binding`, `revoke_binding`, `accept_binding`): the facts of
//! one change to a binding go into the request context (`PersonnelContext` of the schema); the
//! policies decide (`policies/personnel.cedar`).
//!
//! Two of those facts are themselves what the policies say: the permission groups the asking
//! identity holds (each group asked as its downstream action on the asker's slice) and the groups
//! the binding concerned gives (the same questions on a slice holding that binding, active). So
//! role defaults exist in one place only, the policies, and "may not grant what you do not hold"
//! compares exactly what each identity would be allowed.

use cedar_policy::{EntityId, EntityUid, RestrictedExpression};
use taxgate_model::TaxpayerId;
use taxgate_model::model::{Binding, Entry, Factor, PermissionGroup, Role, Session, SessionSlice};

use super::slice::types;
use super::{ActiveSet, Decision, EntitySlice, POLICY_ERROR, RequestFacts};

/// The actions whose context is `PersonnelContext`.
pub const PERSONNEL_ACTIONS: [&str; 3] = ["grant_binding", "revoke_binding", "accept_binding"];

/// One change to a binding, as the gateway established it.
#[derive(Debug, Clone, Copy)]
pub struct PersonnelChange<'a> {
    /// The binding's enterprise.
    pub enterprise: &'a TaxpayerId,
    /// The binding's role (requested, or of the binding being ended).
    pub role: Role,
    /// The binding's explicit permission groups; `None`: the role's defaults.
    pub permissions: Option<&'a [PermissionGroup]>,
    /// The binding's person is staff of a non-revoked agency agreement whose client is the
    /// binding's enterprise.
    pub conflict_of_roles: bool,
    /// A stored binding (revoke): whether the enterprise side has confirmed it. `None` for a
    /// binding still to be made.
    pub enterprise_confirmed: Option<bool>,
}

const PROBE_SESSION: &str = "personnel-probe";

impl ActiveSet {
    /// The permission groups the policies allow the identity of `slice` now.
    pub fn held_groups(&self, slice: &EntitySlice, facts: &RequestFacts) -> Vec<PermissionGroup> {
        PermissionGroup::ALL
            .into_iter()
            .filter(|g| self.decide(slice, g.as_str(), facts).allowed)
            .collect()
    }

    /// The permission groups a binding of `change` gives once it is active (confirmed by both
    /// sides, within its validity): what the policies would allow an identity holding it.
    pub fn binding_groups(
        &self,
        change: &PersonnelChange<'_>,
        facts: &RequestFacts,
    ) -> Result<Vec<PermissionGroup>, String> {
        let binding = Binding {
            id: "personnel-probe".to_string(),
            person: probe_person()?,
            enterprise: change.enterprise.clone(),
            role: change.role,
            permissions: change.permissions.map(<[PermissionGroup]>::to_vec),
            valid_from: i64::MIN,
            valid_until: None,
            enterprise_confirmed: true,
            person_confirmed: true,
            revoked_at: None,
            created_at: 0,
            updated_at: 0,
            updated_by: String::new(),
        };
        let session = Session {
            id: PROBE_SESSION.to_string(),
            token_hash: String::new(),
            entry: Entry::Enterprise,
            person: Some(binding.person.clone()),
            enterprise: Some(change.enterprise.clone()),
            agency: None,
            role: Some(change.role),
            binding_id: Some(binding.id.clone()),
            agreement_id: None,
            factor: Factor::Sms,
            created_at: facts.now,
            last_seen_at: facts.now,
            expires_at: i64::MAX,
            revoked_at: None,
            factor_at: facts.now,
            face_at: 0,
        };
        let slice = SessionSlice {
            session,
            person: None,
            enterprise: None,
            agency: None,
            binding: Some(binding),
            agreement: None,
        };
        let slice = EntitySlice::build(&slice).map_err(|e| e.to_string())?;
        Ok(self.held_groups(&slice, facts))
    }

    /// The decision on one personnel change asked by the identity of `slice`. `action` is one
    /// of [`PERSONNEL_ACTIONS`]; its resource is the enterprise acted for (`grant_binding`,
    /// `revoke_binding`) or the session's person (`accept_binding`).
    pub fn decide_personnel(
        &self,
        slice: &EntitySlice,
        action: &str,
        change: &PersonnelChange<'_>,
        facts: &RequestFacts,
    ) -> Decision {
        match self.personnel_context(slice, change, facts) {
            Ok(extra) => {
                let resource = self.resource_for(slice, action);
                self.decide_request_with(
                    slice.principal(),
                    action,
                    &resource,
                    slice.entities(),
                    facts,
                    extra,
                    true,
                )
            }
            Err(e) => Decision::deny(POLICY_ERROR, Some(e), self.version.clone()),
        }
    }

    pub(crate) fn personnel_context(
        &self,
        slice: &EntitySlice,
        change: &PersonnelChange<'_>,
        facts: &RequestFacts,
    ) -> Result<Vec<(String, RestrictedExpression)>, String> {
        let t = types().map_err(|e| e.to_string())?;
        let groups = |list: Vec<PermissionGroup>| {
            RestrictedExpression::new_set(list.into_iter().map(|g| {
                RestrictedExpression::new_entity_uid(EntityUid::from_type_name_and_id(
                    t.group.clone(),
                    EntityId::new(g.as_str()),
                ))
            }))
        };
        let role =
            EntityUid::from_type_name_and_id(t.role.clone(), EntityId::new(change.role.as_str()));
        let mut pairs = vec![
            (
                "binding_role".to_string(),
                RestrictedExpression::new_entity_uid(role),
            ),
            (
                "binding_permissions".to_string(),
                groups(self.binding_groups(change, facts)?),
            ),
            (
                "asker_permissions".to_string(),
                groups(self.held_groups(slice, facts)),
            ),
            (
                "conflict_of_roles".to_string(),
                RestrictedExpression::new_bool(change.conflict_of_roles),
            ),
        ];
        if let Some(confirmed) = change.enterprise_confirmed {
            pairs.push((
                "binding_enterprise_confirmed".to_string(),
                RestrictedExpression::new_bool(confirmed),
            ));
        }
        Ok(pairs)
    }
}

/// Any valid ID number: the probe's binding needs a person, and no rule about which groups a
/// binding gives looks at who holds it.
fn probe_person() -> Result<taxgate_model::IdNumber, String> {
    taxgate_model::IdNumber::parse(super::cases::DEFAULT_PERSON).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cases::{BindingFacts, SessionFacts, session_slice_at};
    use std::path::PathBuf;

    fn repo_set() -> ActiveSet {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies");
        ActiveSet::compile(&dir).unwrap()
    }

    fn slice(role: Role, permissions: Option<Vec<PermissionGroup>>) -> EntitySlice {
        let f = SessionFacts::confirmed_enterprise(
            role,
            BindingFacts {
                permissions,
                ..BindingFacts::default()
            },
        );
        EntitySlice::build(&session_slice_at(&f, 1_750_000_000).unwrap()).unwrap()
    }

    fn enterprise() -> TaxpayerId {
        TaxpayerId::parse(crate::cases::DEFAULT_ENTERPRISE).unwrap()
    }

    #[test]
    fn role_defaults_come_from_the_policies() {
        let set = repo_set();
        let facts = RequestFacts::at(1_750_000_000);
        let e = enterprise();
        let change = |role, permissions| PersonnelChange {
            enterprise: &e,
            role,
            permissions,
            conflict_of_roles: false,
            enterprise_confirmed: None,
        };
        use PermissionGroup::*;
        assert_eq!(
            set.binding_groups(&change(Role::TaxHandler, None), &facts)
                .unwrap(),
            vec![Declare, Query, TaxAffairs]
        );
        assert_eq!(
            set.binding_groups(&change(Role::Admin, None), &facts)
                .unwrap(),
            vec![Declare, Invoice, Query, TaxAffairs]
        );
        assert_eq!(
            set.binding_groups(&change(Role::InvoiceClerk, Some(&[Declare])), &facts)
                .unwrap(),
            vec![Declare]
        );
        assert_eq!(
            set.held_groups(&slice(Role::FinanceManager, Some(vec![Query])), &facts),
            vec![Query]
        );
    }

    /// The indexed set answers personnel decisions exactly as the whole set does.
    #[test]
    fn indexed_personnel_decisions_equal_the_full_set() {
        let set = repo_set();
        let facts = RequestFacts::at(1_750_000_000);
        let e = enterprise();
        let roles = [
            Role::LegalRepresentative,
            Role::FinanceManager,
            Role::Admin,
            Role::TaxHandler,
            Role::InvoiceClerk,
        ];
        let groups: [Option<&[PermissionGroup]>; 3] = [
            None,
            Some(&[PermissionGroup::Query]),
            Some(&[PermissionGroup::Declare, PermissionGroup::Invoice]),
        ];
        let mut person =
            SessionFacts::confirmed_enterprise(Role::TaxHandler, BindingFacts::default());
        person.entry = Entry::Person;
        person.role = None;
        person.binding = None;
        let person =
            EntitySlice::build(&session_slice_at(&person, 1_750_000_000).unwrap()).unwrap();
        let mut checked = 0;
        for asker_role in roles {
            for asker_groups in groups {
                let asker = slice(asker_role, asker_groups.map(<[_]>::to_vec));
                for role in roles {
                    for permissions in groups {
                        for conflict_of_roles in [false, true] {
                            let change = PersonnelChange {
                                enterprise: &e,
                                role,
                                permissions,
                                conflict_of_roles,
                                enterprise_confirmed: conflict_of_roles.then_some(false),
                            };
                            for (who, action) in [
                                (&asker, "grant_binding"),
                                (&asker, "revoke_binding"),
                                (&person, "accept_binding"),
                            ] {
                                let extra = set.personnel_context(who, &change, &facts).unwrap();
                                let resource = set.resource_for(who, action);
                                let decide = |indexed| {
                                    set.decide_request_with(
                                        who.principal(),
                                        action,
                                        &resource,
                                        who.entities(),
                                        &facts,
                                        extra.clone(),
                                        indexed,
                                    )
                                };
                                let (a, b) = (decide(true), decide(false));
                                assert_eq!(
                                    (a.allowed, &a.reason, &a.policies),
                                    (b.allowed, &b.reason, &b.policies),
                                    "{action} {asker_role:?} {asker_groups:?} -> {role:?} {permissions:?}"
                                );
                                assert!(a.errors.is_empty(), "{:?}", a.errors);
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 5 * 3 * 5 * 3 * 2 * 3);
    }

    #[test]
    fn a_query_only_finance_manager_cannot_grant_itself_more() {
        let set = repo_set();
        let facts = RequestFacts::at(1_750_000_000);
        let e = enterprise();
        let asker = slice(Role::FinanceManager, Some(vec![PermissionGroup::Query]));
        let grant = |role, permissions| PersonnelChange {
            enterprise: &e,
            role,
            permissions,
            conflict_of_roles: false,
            enterprise_confirmed: None,
        };
        let d = set.decide_personnel(
            &asker,
            "grant_binding",
            &grant(Role::LegalRepresentative, None),
            &facts,
        );
        assert_eq!(d.reason.as_deref(), Some("grant_not_permitted"), "{d:?}");
        let d = set.decide_personnel(
            &asker,
            "grant_binding",
            &grant(Role::TaxHandler, Some(&[PermissionGroup::Query])),
            &facts,
        );
        assert!(d.allowed, "{d:?}");
    }
}
