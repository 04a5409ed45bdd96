use cedar_policy::{Context, Entities, Request, RestrictedExpression};
use taxgate_model::model::{Entry, PermissionGroup, Role};

use super::*;
use crate::cases::{AgreementFacts, BindingFacts, SessionFacts, session_slice};
use crate::testing::repo_policies;
use crate::{ActiveSet, RequestFacts};

fn facts(entry: Entry) -> SessionFacts {
    SessionFacts {
        entry,
        role: None,
        person: Some(crate::cases::DEFAULT_PERSON.to_string()),
        enterprise: None,
        agency: None,
        must_change_password: false,
        factor: None,
        factor_at: None,
        face_at: None,
        binding: None,
        agreement: None,
    }
}

fn samples() -> Vec<SessionFacts> {
    let mut enterprise = facts(Entry::Enterprise);
    enterprise.role = Some(Role::TaxHandler);
    enterprise.binding = Some(BindingFacts {
        permissions: Some(vec![PermissionGroup::Declare]),
        enterprise_confirmed: true,
        person_confirmed: true,
        ..BindingFacts::default()
    });
    let mut defaults = facts(Entry::Enterprise);
    defaults.role = Some(Role::Admin);
    defaults.binding = Some(BindingFacts::default());
    let mut agent = facts(Entry::Agent);
    agent.enterprise = Some(crate::cases::DEFAULT_ENTERPRISE.to_string());
    agent.agreement = Some(AgreementFacts {
        scope: vec![PermissionGroup::Query],
        staff: Some(vec!["11010519491231002X".to_string()]),
        ..AgreementFacts::default()
    });
    let mut legacy = facts(Entry::EnterpriseLegacy);
    legacy.person = None;
    vec![
        enterprise,
        defaults,
        agent,
        facts(Entry::Agent),
        facts(Entry::Person),
        legacy,
    ]
}

#[test]
fn built_entities_conform_to_the_schema() {
    let set = ActiveSet::compile(&repo_policies()).unwrap();
    for f in samples() {
        let slice = EntitySlice::build(&session_slice(&f).unwrap()).unwrap();
        let again: Vec<_> = slice.entities().iter().cloned().collect();
        if let Err(e) = Entities::from_entities(again, Some(set.schema())) {
            panic!("{:?}: {e}", f.entry);
        }
        // The context and request built without schema checks on the hot path are valid too.
        for action in set.actions() {
            let resource = set.resource_for(&slice, action);
            if resource.id().unescaped().is_empty() {
                continue; // the placeholder of a missing entity
            }
            let mut pairs = vec![
                ("now".to_string(), RestrictedExpression::new_long(1)),
                (
                    "legacy_login_until".to_string(),
                    RestrictedExpression::new_long(2),
                ),
            ];
            if crate::PERSONNEL_ACTIONS.contains(&action.as_str()) {
                // The personnel actions' context, exactly as the gateway builds it.
                let enterprise =
                    taxgate_model::TaxpayerId::parse(crate::cases::DEFAULT_ENTERPRISE).unwrap();
                let change = crate::PersonnelChange {
                    enterprise: &enterprise,
                    role: Role::TaxHandler,
                    permissions: Some(&[PermissionGroup::Query]),
                    conflict_of_roles: false,
                    enterprise_confirmed: None,
                };
                pairs.extend(
                    set.personnel_context(&slice, &change, &RequestFacts::at(1))
                        .unwrap(),
                );
            }
            let context = Context::from_pairs(pairs).unwrap();
            let r = Request::new(
                slice.principal().clone(),
                action_uid(action).unwrap(),
                resource.clone(),
                context,
                Some(set.schema()),
            );
            assert!(r.is_ok(), "{:?} {action} {resource}: {r:?}", f.entry);
        }
    }
}

#[test]
fn login_attempt_entities_conform_to_the_schema() {
    let set = ActiveSet::compile(&repo_policies()).unwrap();
    let mut f = facts(Entry::Enterprise);
    f.role = Some(Role::Admin);
    f.binding = Some(BindingFacts::default());
    let s = session_slice(&f).unwrap();
    let attempt = LoginAttempt {
        entry: Entry::Enterprise,
        person: s.person.as_ref(),
        enterprise: s.enterprise.as_ref(),
    };
    let b = s.binding.clone().unwrap();
    let slice = EntitySlice::for_login(&attempt, Some(LoginCandidate::Binding(&b)), 5).unwrap();
    let again: Vec<_> = slice.entities().iter().cloned().collect();
    Entities::from_entities(again, Some(set.schema())).unwrap();
    assert_eq!(
        set.resource_for(&slice, "login").to_string(),
        format!("Enterprise::\"{}\"", crate::cases::DEFAULT_ENTERPRISE)
    );
}

#[test]
fn login_picks_the_most_helpful_reason_across_candidates() {
    let set = ActiveSet::compile(&repo_policies()).unwrap();
    let mut f = facts(Entry::Enterprise);
    f.role = Some(Role::TaxHandler);
    f.binding = Some(BindingFacts::default());
    let s = session_slice(&f).unwrap();
    let attempt = LoginAttempt {
        entry: Entry::Enterprise,
        person: s.person.as_ref(),
        enterprise: s.enterprise.as_ref(),
    };
    let mut active = s.binding.clone().unwrap();
    active.enterprise_confirmed = true;
    active.person_confirmed = true;
    let mut revoked = active.clone();
    revoked.id = "revoked".to_string();
    revoked.revoked_at = Some(1);
    let mut pending = active.clone();
    pending.id = "pending".to_string();
    pending.person_confirmed = false;
    let mut expired = active.clone();
    expired.id = "expired".to_string();
    expired.valid_until = Some(10);
    let facts = RequestFacts::at(100);
    let c = |b| LoginCandidate::Binding(b);

    let d = set.decide_login(&attempt, &[c(&revoked), c(&pending), c(&expired)], &facts);
    assert!(!d.allowed);
    assert_eq!(d.reason.as_deref(), Some("binding_pending"));
    let d = set.decide_login(&attempt, &[c(&revoked), c(&expired)], &facts);
    assert_eq!(d.reason.as_deref(), Some("binding_expired"));
    let d = set.decide_login(&attempt, &[c(&revoked), c(&expired), c(&active)], &facts);
    assert!(d.allowed, "{d:?}");
    let d = set.decide_login(&attempt, &[], &facts);
    assert_eq!(d.reason.as_deref(), Some("not_linked"));
    assert_eq!(d.policies, ["enterprise.binding_required"]);
}

#[test]
fn expiry_is_exact_to_the_second_on_a_cached_slice() {
    let set = ActiveSet::compile(&repo_policies()).unwrap();
    let mut f = facts(Entry::Enterprise);
    f.role = Some(Role::TaxHandler);
    f.binding = Some(BindingFacts {
        valid_until: Some(crate::cases::Time::Seconds(1000)),
        enterprise_confirmed: true,
        person_confirmed: true,
        ..BindingFacts::default()
    });
    let slice = EntitySlice::build(&session_slice(&f).unwrap()).unwrap();
    assert!(
        set.decide(&slice, "declare", &RequestFacts::at(999))
            .allowed
    );
    let d = set.decide(&slice, "declare", &RequestFacts::at(1000));
    assert_eq!(d.reason.as_deref(), Some("binding_expired"));
    assert_eq!(d.version, set.version);
}

#[test]
fn replay_json_round_trips_to_the_same_decisions() {
    let set = ActiveSet::compile(&repo_policies()).unwrap();
    let actions = ["declare", "invoice", "query", "tax_affairs", "personal_tax"];
    let at = RequestFacts {
        now: 1_800_000_000,
        legacy_login_until: Some(1_900_000_000),
    };
    for f in samples() {
        let slice = EntitySlice::build(&session_slice(&f).unwrap()).unwrap();
        let (hash, json) = slice.replay_json().unwrap();
        assert_eq!(hash.len(), 32);
        // The same content gives the same text and hash (entities are sorted).
        let rebuilt = EntitySlice::from_replay_json(&json).unwrap();
        assert_eq!(rebuilt.replay_json().unwrap(), (hash.clone(), json.clone()));
        assert_eq!(rebuilt.entry(), slice.entry());
        for action in actions {
            assert_eq!(
                set.decide(&rebuilt, action, &at),
                set.decide(&slice, action, &at),
                "{action} for {:?}",
                f.entry
            );
        }
    }
    assert!(EntitySlice::from_replay_json("{}").is_err());
    assert!(EntitySlice::from_replay_json("not json").is_err());
}

/// The session cache keeps a session's record and `SliceFacts` and builds its entities from
/// them: they must be exactly the entities of the whole slice, for every kind of session
/// (including the flags the record does not hold: must_change_password, is_agency).
#[test]
fn entities_from_cached_facts_equal_those_of_the_whole_slice() {
    let mut variants = samples();
    let mut migrated = facts(Entry::Enterprise);
    migrated.must_change_password = true;
    variants.push(migrated);
    for f in variants {
        let slice = session_slice(&f).unwrap();
        let whole = EntitySlice::build(&slice).unwrap();
        let (session, cached) = SliceFacts::split(slice.clone());
        let from_cache = EntitySlice::for_session(&session, &cached).unwrap();
        assert_eq!(
            from_cache.replay_json().unwrap(),
            whole.replay_json().unwrap(),
            "{f:?}"
        );
        assert_eq!(
            cached.enterprise_is_agency,
            slice.enterprise.as_ref().is_some_and(|e| e.is_agency)
        );
        assert_eq!(
            cached.agency_is_agency,
            slice.agency.as_ref().is_some_and(|e| e.is_agency)
        );
    }
}
