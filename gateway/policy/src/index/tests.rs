//! The indexed answer equals the whole set's answer: decision, determining policies, reason and
//! errors, on generated policy sets (unvalidated, so evaluation errors happen too) and
//! generated requests.

use std::collections::HashMap;
use std::str::FromStr;

use cedar_policy::{Effect, EntityTypeName, EntityUid, Policy, PolicyId, PolicySet};
use proptest::prelude::*;
use taxgate_model::model::{Entry, PermissionGroup, Role};

use crate::cases::{
    AgreementFacts, BindingFacts, DEFAULT_AGENCY, DEFAULT_ENTERPRISE, DEFAULT_PERSON, SessionFacts,
    Time, session_slice,
};
use crate::load::{self, DEFAULT_PRIORITY, Location, PolicyMeta};
use crate::testing::repo_policies;
use crate::{ActiveSet, EntitySlice, RequestFacts};

const ENTERPRISES: [&str; 3] = [DEFAULT_ENTERPRISE, DEFAULT_AGENCY, "91440101MA5CJQ4N59"];
const ACTIONS: [&str; 9] = [
    "login",
    "declare",
    "invoice",
    "personal_tax",
    "view_session",
    "logout",
    "manage_personnel",
    "confirm_authorization",
    "no_such_action",
];

fn principal_scope() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("principal".to_string()),
        Just("principal is Session".to_string()),
        Just("principal == Session::\"s1\"".to_string()),
        Just("principal == Session::\"other\"".to_string()),
        Just("principal in Role::\"admin\"".to_string()),
        Just("principal in Role::\"tax_handler\"".to_string()),
        Just("principal is Session in Role::\"agent\"".to_string()),
        Just("principal is Person".to_string()),
    ]
}

fn action_scope() -> impl Strategy<Value = String> {
    let one = prop::sample::select(&ACTIONS[..]);
    prop_oneof![
        Just("action".to_string()),
        one.clone()
            .prop_map(|a| format!("action == Action::\"{a}\"")),
        (one.clone(), one)
            .prop_map(|(a, b)| format!("action in [Action::\"{a}\", Action::\"{b}\"]")),
    ]
}

fn resource_scope() -> impl Strategy<Value = String> {
    let e = prop::sample::select(&ENTERPRISES[..]);
    prop_oneof![
        Just("resource".to_string()),
        Just("resource is Enterprise".to_string()),
        Just("resource is Person".to_string()),
        Just("resource is Session".to_string()),
        e.clone()
            .prop_map(|e| format!("resource == Enterprise::\"{e}\"")),
        e.clone()
            .prop_map(|e| format!("resource in Enterprise::\"{e}\"")),
        e.prop_map(|e| format!("resource is Enterprise in Enterprise::\"{e}\"")),
        Just(format!("resource == Person::\"{DEFAULT_PERSON}\"")),
        Just("resource == Session::\"s1\"".to_string()),
    ]
}

fn condition() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("true".to_string()),
        Just("false".to_string()),
        Just("principal.must_change_password".to_string()),
        Just("principal has binding".to_string()),
        Just("context.now < 1000".to_string()),
        // These fail to evaluate for some requests (wrong type, missing attribute or entity).
        Just("resource.is_agency".to_string()),
        Just("principal.binding.revoked".to_string()),
        Just("context.legacy_login_until > 5".to_string()),
        Just("principal in Role::\"admin\"".to_string()),
        // Guards (see `guard`): leading conjuncts the index reads, some with a failing or
        // erroring rest, some in forms it must not read.
        Just("principal.entry == Entry::\"agent\" && principal.binding.revoked".to_string()),
        Just("Entry::\"enterprise\" == principal.entry && resource.is_agency".to_string()),
        Just("principal.entry == \"enterprise\"".to_string()),
        Just("principal.entry == Entry::\"person\"".to_string()),
        Just("principal has binding && principal.binding.revoked".to_string()),
        Just("principal has binding && principal.entry == Entry::\"enterprise\" && context.now < 1000".to_string()),
        Just("principal.must_change_password && principal.binding.revoked".to_string()),
        Just("principal.factor == \"sms\" && principal has agreement".to_string()),
        Just("principal.factor && true".to_string()),
        Just("principal.binding.revoked && principal.entry == Entry::\"agent\"".to_string()),
        Just("principal.agency == Enterprise::\"x\" && false".to_string()),
        Just("principal.role == Role::\"admin\" || principal.entry == Entry::\"agent\"".to_string()),
        Just("principal.expires_at == 500 && principal.binding.valid_from < 1".to_string()),
        Just("principal has binding.permissions && principal.binding.revoked".to_string()),
        Just("true } unless { principal.entry == Entry::\"agent\"".to_string()),
        Just("principal.entry == Entry::\"agent\" } when { principal.binding.revoked".to_string()),
    ]
}

#[derive(Debug, Clone)]
struct GenPolicy {
    forbid: bool,
    principal: String,
    action: String,
    resource: String,
    condition: String,
    reason: usize,
    priority: Option<i64>,
}

fn gen_policy() -> impl Strategy<Value = GenPolicy> {
    (
        any::<bool>(),
        principal_scope(),
        action_scope(),
        resource_scope(),
        condition(),
        0usize..3,
        prop::option::of(prop::sample::select(vec![10i64, 20, 30])),
    )
        .prop_map(
            |(forbid, principal, action, resource, condition, reason, priority)| GenPolicy {
                forbid,
                principal,
                action,
                resource,
                condition,
                reason,
                priority,
            },
        )
}

fn build_set(policies: &[GenPolicy]) -> ActiveSet {
    static SCHEMA: std::sync::LazyLock<cedar_policy::Schema> =
        std::sync::LazyLock::new(|| match load::compile(&repo_policies()) {
            Ok(c) => c.schema,
            Err(e) => panic!("{e}"),
        });
    let schema = SCHEMA.clone();
    let mut set = PolicySet::new();
    let mut meta = HashMap::new();
    for (i, g) in policies.iter().enumerate() {
        let text = format!(
            "{}({}, {}, {}) when {{ {} }};",
            if g.forbid { "forbid" } else { "permit" },
            g.principal,
            g.action,
            g.resource,
            g.condition
        );
        let policy = Policy::parse(None, &text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let id = PolicyId::new(format!("p{i:02}"));
        let forbid = policy.effect() == Effect::Forbid;
        set.add(policy.new_id(id.clone())).unwrap();
        meta.insert(
            id,
            PolicyMeta {
                forbid,
                priority: g.priority.unwrap_or(DEFAULT_PRIORITY),
                reason: forbid.then(|| format!("reason_{}", g.reason)),
                step_up_max_age: None,
                location: Location {
                    file: "generated.cedar".to_string(),
                    line: i + 1,
                },
            },
        );
    }
    ActiveSet::from_policies(schema, set, meta)
}

fn session_facts() -> impl Strategy<Value = SessionFacts> {
    let entry = prop::sample::select(vec![
        Entry::Enterprise,
        Entry::Person,
        Entry::Agent,
        Entry::EnterpriseLegacy,
    ]);
    let role = prop::option::of(prop::sample::select(Role::ALL.to_vec()));
    let binding = prop::option::of((any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(confirmed, revoked, custom)| BindingFacts {
            permissions: custom.then(|| vec![PermissionGroup::Declare]),
            enterprise_confirmed: confirmed,
            person_confirmed: true,
            revoked,
            valid_until: Some(Time::Seconds(500)),
            ..BindingFacts::default()
        },
    ));
    let agreement = prop::option::of(any::<bool>().prop_map(|confirmed| AgreementFacts {
        scope: vec![PermissionGroup::Declare],
        client_confirmed: confirmed,
        ..AgreementFacts::default()
    }));
    (
        entry,
        role,
        any::<bool>(),
        prop::option::of(prop::sample::select(&ENTERPRISES[..])),
        binding,
        agreement,
    )
        .prop_map(
            |(entry, role, must_change_password, enterprise, binding, agreement)| SessionFacts {
                entry,
                role,
                person: (entry != Entry::EnterpriseLegacy).then(|| DEFAULT_PERSON.to_string()),
                enterprise: enterprise.map(str::to_string),
                agency: None,
                must_change_password,
                factor: None,
                factor_at: None,
                face_at: None,
                binding,
                agreement,
            },
        )
}

#[derive(Debug, Clone)]
struct GenRequest {
    session: SessionFacts,
    action: &'static str,
    /// None: the resource the engine picks; Some: an explicit enterprise.
    resource: Option<&'static str>,
    now: i64,
    legacy_until: Option<i64>,
}

fn gen_request() -> impl Strategy<Value = GenRequest> {
    (
        session_facts(),
        prop::sample::select(&ACTIONS[..]),
        prop::option::of(prop::sample::select(&ENTERPRISES[..])),
        prop::sample::select(vec![0i64, 499, 500, 999, 1000, 2000]),
        prop::option::of(prop::sample::select(vec![1i64, 10, 1500])),
    )
        .prop_map(
            |(session, action, resource, now, legacy_until)| GenRequest {
                session,
                action,
                resource,
                now,
                legacy_until,
            },
        )
}

fn enterprise_uid(id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(
        EntityTypeName::from_str("Enterprise").unwrap(),
        cedar_policy::EntityId::new(id),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn indexed_answer_equals_full_set(
        policies in prop::collection::vec(gen_policy(), 0..30),
        requests in prop::collection::vec(gen_request(), 1..12),
    ) {
        let set = build_set(&policies);
        for r in &requests {
            let slice = EntitySlice::build(&session_slice(&r.session).unwrap()).unwrap();
            let facts = RequestFacts { now: r.now, legacy_login_until: r.legacy_until };
            let resource = match r.resource {
                Some(e) => enterprise_uid(e),
                None => set.resource_for(&slice, r.action),
            };
            let indexed = set.decide_request(slice.principal(), r.action, &resource, slice.entities(), &facts, true);
            let full = set.decide_request(slice.principal(), r.action, &resource, slice.entities(), &facts, false);
            prop_assert_eq!(&indexed, &full, "request {:?}", r);
        }
    }
}

/// The comparison above is only meaningful if it can see a difference: an index that drops the
/// resource-specific policies must disagree with the full set.
#[test]
fn equivalence_check_detects_a_missing_policy() {
    let one = vec![GenPolicy {
        forbid: true,
        principal: "principal".to_string(),
        action: "action".to_string(),
        resource: format!("resource == Enterprise::\"{DEFAULT_ENTERPRISE}\""),
        condition: "true".to_string(),
        reason: 0,
        priority: None,
    }];
    let set = build_set(&one);
    let mut f = session_slice(&SessionFacts {
        entry: Entry::Enterprise,
        role: Some(Role::Admin),
        person: Some(DEFAULT_PERSON.to_string()),
        enterprise: None,
        agency: None,
        must_change_password: false,
        factor: None,
        factor_at: None,
        face_at: None,
        binding: None,
        agreement: None,
    })
    .unwrap();
    f.session.id = "s1".to_string();
    let slice = EntitySlice::build(&f).unwrap();
    let d = set.decide(&slice, "declare", &RequestFacts::at(0));
    assert_eq!(d.reason.as_deref(), Some("reason_0"));
    // Only the specific bucket holds it: the generic set for (Session, Enterprise) is empty.
    let t = crate::slice::types().unwrap();
    assert_eq!(
        set.index.generic_len("declare", &t.session, &t.enterprise),
        Some(0)
    );
}

fn uid_of(ty: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(
        EntityTypeName::from_str(ty).unwrap(),
        cedar_policy::EntityId::new(id),
    )
}

fn enterprise_session(role: Role, permissions: Option<Vec<PermissionGroup>>) -> SessionFacts {
    SessionFacts {
        entry: Entry::Enterprise,
        role: Some(role),
        person: Some(DEFAULT_PERSON.to_string()),
        enterprise: Some(DEFAULT_ENTERPRISE.to_string()),
        agency: None,
        must_change_password: false,
        factor: None,
        factor_at: None,
        face_at: None,
        binding: Some(BindingFacts {
            permissions,
            enterprise_confirmed: true,
            person_confirmed: true,
            ..BindingFacts::default()
        }),
        agreement: None,
    }
}

/// The repository's policies read as guards: the entry, the flags and the role scopes.
#[test]
fn repository_guards_read_entry_flags_and_role_scopes() {
    let set = ActiveSet::compile(&repo_policies()).unwrap();
    let t = crate::slice::types().unwrap();
    let guards: HashMap<String, (bool, usize)> = set
        .index
        .guards("declare", &t.session, &t.enterprise)
        .into_iter()
        .collect();
    // `principal.entry == Entry::"agent" && principal has agreement && principal.agreement…`
    assert_eq!(guards["agent_scope.declare"], (false, 2));
    assert_eq!(guards["enterprise.binding_valid"], (false, 2));
    assert_eq!(guards["role_defaults.tax_handler"], (true, 0));
    assert_eq!(guards["session.password_change_required"], (false, 1));
    // `principal has binding && principal.binding has permissions && …`: one read.
    assert_eq!(guards["binding_permissions.declare"], (false, 1));
}

/// A tax handler's `declare` evaluates the policies that can apply to an enterprise-entry
/// session of that role, not the agent's, the legacy login's or the other roles' ones; and the
/// answers are the whole set's.
#[test]
fn a_tax_handler_declares_against_its_own_policies_only() {
    let set = ActiveSet::compile(&repo_policies()).unwrap();
    let enterprise = uid_of("Enterprise", DEFAULT_ENTERPRISE);
    let facts = RequestFacts::at(1_000);
    let slice =
        EntitySlice::build(&session_slice(&enterprise_session(Role::TaxHandler, None)).unwrap())
            .unwrap();
    let ids = set
        .index
        .bucket_ids("declare", slice.principal(), &enterprise, slice.entities())
        .unwrap();
    assert_eq!(
        ids,
        [
            "binding_permissions.declare",
            "enterprise.binding_confirmed",
            "enterprise.binding_required",
            "enterprise.binding_valid",
            "role_defaults.tax_handler",
        ]
    );
    // Sessions that differ only in their ids (session, binding, person) share the bucket: the
    // key holds what the guards can tell apart, not the ids.
    for n in 0..20 {
        let mut stored = session_slice(&enterprise_session(Role::TaxHandler, None)).unwrap();
        stored.session.id = format!("s{n}");
        if let Some(b) = stored.binding.as_mut() {
            b.id = format!("b{n}");
        }
        let other = EntitySlice::build(&stored).unwrap();
        assert_eq!(
            set.index
                .bucket_ids("declare", other.principal(), &enterprise, other.entities())
                .unwrap(),
            ids
        );
    }
    assert_eq!(set.index.buckets_made("declare"), 1);
    let all = set
        .index
        .generic_len(
            "declare",
            slice.principal().type_name(),
            enterprise.type_name(),
        )
        .unwrap();
    assert!(all > ids.len() + 5, "{all} generic policies for declare");
    for (role, permissions) in [
        (Role::TaxHandler, None),
        (Role::InvoiceClerk, None),
        (Role::Admin, Some(vec![PermissionGroup::Query])),
    ] {
        let slice =
            EntitySlice::build(&session_slice(&enterprise_session(role, permissions)).unwrap())
                .unwrap();
        for action in [
            "declare",
            "invoice",
            "query",
            "manage_personnel",
            "view_session",
            "logout",
        ] {
            assert_eq!(
                set.decide(&slice, action, &facts),
                set.decide_unindexed(&slice, action, &facts),
                "{role:?} {action}"
            );
        }
    }
    // The same session with a password to change: the forbid is back in its bucket.
    let mut must = enterprise_session(Role::TaxHandler, None);
    must.must_change_password = true;
    let slice = EntitySlice::build(&session_slice(&must).unwrap()).unwrap();
    let ids = set
        .index
        .bucket_ids("declare", slice.principal(), &enterprise, slice.entities())
        .unwrap();
    assert!(
        ids.contains(&"session.password_change_required".to_string()),
        "{ids:?}"
    );
    assert_eq!(
        set.decide(&slice, "declare", &facts).reason.as_deref(),
        Some("password_change_required")
    );
    assert_eq!(
        set.decide(&slice, "declare", &facts),
        set.decide_unindexed(&slice, "declare", &facts)
    );
}

/// The guards must not leave out a policy that errors: a principal without the attribute a
/// guarded conjunct reads keeps the policy, and its error still denies.
#[test]
fn a_missing_attribute_keeps_the_policy_and_its_error() {
    let one = vec![GenPolicy {
        forbid: true,
        principal: "principal".to_string(),
        action: "action".to_string(),
        resource: "resource".to_string(),
        condition: "principal.agency == Enterprise::\"x\" && false".to_string(),
        reason: 0,
        priority: None,
    }];
    let set = build_set(&one);
    let slice = EntitySlice::build(&session_slice(&enterprise_session(Role::Admin, None)).unwrap())
        .unwrap();
    let d = set.decide(&slice, "declare", &RequestFacts::at(0));
    assert_eq!(d.reason.as_deref(), Some("policy_error"), "{d:?}");
    assert_eq!(
        d,
        set.decide_unindexed(&slice, "declare", &RequestFacts::at(0))
    );
}

// The clock (see `clock`): a decision holds, with only the time moving, for every second the
// clock gives it.

fn timed_condition() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("context.now < principal.binding.valid_until".to_string()),
        2 => Just("principal.binding.valid_from <= context.now".to_string()),
        2 => Just("principal has factor_at && principal.factor_at >= context.now - 600".to_string()),
        1 => Just("principal.factor_at + 300 > context.now".to_string()),
        1 => Just("context.now + 30 >= principal.binding.valid_until".to_string()),
        1 => Just("30 + context.now > principal.binding.valid_until - 100".to_string()),
        1 => Just("context.now == 1000".to_string()),
        1 => Just("context.now != 499".to_string()),
        1 => Just("1200 <= context.now".to_string()),
        2 => Just("context has legacy_login_until && context.now < context.legacy_login_until".to_string()),
        1 => Just("context.now < principal.agreement.valid_until".to_string()),
        1 => Just("context.now < principal.entry".to_string()),
        1 => Just("if context.now > 700 then principal.must_change_password else true".to_string()),
        1 => Just("principal has binding && !(context.now >= principal.binding.valid_until)".to_string()),
        // Not followed by the clock: such an action's decisions hold for their second only.
        1 => Just("context.now * 2 > 1000".to_string()),
        1 => Just("[context.now].contains(1000)".to_string()),
        1 => Just("principal.binding.valid_until - context.now > 100".to_string()),
        2 => condition(),
    ]
}

fn timed_policy() -> impl Strategy<Value = GenPolicy> {
    (gen_policy(), timed_condition()).prop_map(|(p, condition)| GenPolicy { condition, ..p })
}

fn timed_session() -> impl Strategy<Value = SessionFacts> {
    (
        session_facts(),
        prop::sample::select(vec![500i64, 1000, 1600]),
        prop::sample::select(vec![0i64, 300, 900]),
        prop::option::of(prop::sample::select(vec![400i64, 1100])),
    )
        .prop_map(|(mut s, until, from, factor_at)| {
            if let Some(b) = &mut s.binding {
                b.valid_until = Some(Time::Seconds(until));
                b.valid_from = Some(Time::Seconds(from));
            }
            s.factor_at = factor_at.map(Time::Seconds);
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn a_decision_holds_until_its_clock_says(
        policies in prop::collection::vec(timed_policy(), 1..12),
        session in timed_session(),
        action in prop::sample::select(&ACTIONS[..]),
        now in prop::sample::select(vec![0i64, 299, 300, 499, 500, 700, 999, 1000, 1200, 1700]),
        legacy in prop::option::of(prop::sample::select(vec![10i64, 800, 1500])),
        probes in prop::collection::vec(0i64..2_000, 4),
    ) {
        let set = build_set(&policies);
        let slice = EntitySlice::build(&session_slice(&session).unwrap()).unwrap();
        let facts = RequestFacts { now, legacy_login_until: legacy };
        let (decision, until) = set.decide_until(&slice, action, &facts);
        prop_assert!(until > now);
        prop_assert_eq!(&*decision, &set.decide(&slice, action, &facts));
        let mut times: Vec<i64> = probes.iter().map(|p| now + p).collect();
        times.extend([now + 1, until.saturating_sub(1), now + 300, now + 600]);
        for t in times.into_iter().filter(|t| (now..until).contains(t) && *t < now + 5_000) {
            let later = RequestFacts { now: t, ..facts };
            prop_assert_eq!(&*decision, &set.decide(&slice, action, &later), "at {} (until {})", t, until);
        }
    }
}

fn one_policy(condition: &str) -> ActiveSet {
    build_set(&[GenPolicy {
        forbid: false,
        principal: "principal".to_string(),
        action: "action".to_string(),
        resource: "resource".to_string(),
        condition: condition.to_string(),
        reason: 0,
        priority: None,
    }])
}

fn handler(valid_until: i64, factor_at: Option<i64>) -> EntitySlice {
    let mut facts = enterprise_session(Role::TaxHandler, None);
    if let Some(b) = &mut facts.binding {
        b.valid_until = Some(Time::Seconds(valid_until));
    }
    facts.factor_at = factor_at.map(Time::Seconds);
    EntitySlice::build(&session_slice(&facts).unwrap()).unwrap()
}

/// The breakpoints are where the answer changes, and the property test above can tell: a clock
/// that let a decision stand one second longer would be caught at the binding's end.
#[test]
fn the_clock_stops_at_each_breakpoint_and_nowhere_else() {
    let slice = handler(1_000, Some(100));
    let until = |set: &ActiveSet, now: i64| {
        set.decide_until(&slice, "declare", &RequestFacts::at(now))
            .1
    };
    let binding = one_policy("context.now < principal.binding.valid_until");
    assert_eq!(until(&binding, 10), 1_000);
    assert_eq!(until(&binding, 999), 1_000);
    assert!(set_allows(&binding, &slice, 999) && !set_allows(&binding, &slice, 1_000));
    assert_eq!(
        until(&binding, 1_000),
        1_001,
        "at a breakpoint: that second only"
    );
    assert_eq!(until(&binding, 1_001), i64::MAX, "nothing ahead");
    let factor = one_policy("principal.factor_at >= context.now - 600");
    assert_eq!(until(&factor, 150), 700);
    assert!(set_allows(&factor, &slice, 700) && !set_allows(&factor, &slice, 701));
    let literal = one_policy("1200 <= context.now");
    assert_eq!(until(&literal, 10), 1_200);
    // Both kinds together: the nearest.
    let both = one_policy(
        "context.now < principal.binding.valid_until && principal.factor_at >= context.now - 600",
    );
    assert_eq!(until(&both, 150), 700);
    assert_eq!(until(&both, 800), 1_000);
    // The legacy deadline comes from the request facts.
    let legacy =
        one_policy("context has legacy_login_until && context.now < context.legacy_login_until");
    let facts = RequestFacts {
        now: 10,
        legacy_login_until: Some(400),
    };
    assert_eq!(legacy.decide_until(&slice, "declare", &facts).1, 400);
    assert_eq!(until(&legacy, 10), i64::MAX, "retired: no deadline");
    // A path that is not an integer in the slice is no breakpoint (Cedar fails on it anyway).
    assert_eq!(
        until(
            &one_policy("context.now < principal.agreement.valid_until"),
            10
        ),
        i64::MAX
    );
    // Uses the clock does not follow: one second.
    for c in [
        "context.now * 2 > 1000",
        "[context.now].contains(1000)",
        "principal.binding.valid_until - context.now > 100",
        "context.now < context.now + 1",
        "context == {\"now\": 5}",
    ] {
        assert_eq!(until(&one_policy(c), 10), 11, "{c}");
    }
    // An unknown action: one second.
    assert_eq!(
        binding
            .decide_until(&slice, "no_such_action", &RequestFacts::at(10))
            .1,
        11
    );
}

fn set_allows(set: &ActiveSet, slice: &EntitySlice, now: i64) -> bool {
    set.decide(slice, "declare", &RequestFacts::at(now)).allowed
}

/// The repository's own policies: a handler's `declare` holds until the binding ends; a
/// binding change holds until the factor is too old for a step-up.
#[test]
fn repository_decisions_hold_until_the_binding_ends_or_the_factor_ages() {
    let set = ActiveSet::compile(&repo_policies()).unwrap();
    let slice = handler(1_900_000_000, Some(1_800_000_000));
    let facts = RequestFacts::at(1_800_000_100);
    let (declare, until) = set.decide_until(&slice, "declare", &facts);
    assert!(declare.allowed);
    assert_eq!(until, 1_900_000_000);
    let (_, until) = set.decide_until(&slice, "grant_binding", &facts);
    assert_eq!(until, 1_800_000_600);
    for action in set.actions() {
        let (_, until) = set.decide_until(&slice, action, &facts);
        assert!(
            until > facts.now + 1,
            "{action}: the clock follows every repository policy"
        );
    }
    // Another handler's allowed declare is the same answer, shared rather than copied.
    let other = handler(1_950_000_000, None);
    let (again, _) = set.decide_until(&other, "declare", &facts);
    assert!(std::sync::Arc::ptr_eq(&declare, &again));
}
