//! One scenario suite, generic over the `Store` trait, run against SQLite (a temp file) and
//! PostgreSQL (a fresh database per test on the server in `TAXGATE_TEST_PG_URL`; see
//! `.ci/postgres.sh`). Without that variable the PostgreSQL half prints a notice and skips,
//! unless `TAXGATE_REQUIRE_PG=1`, which turns the skip into a failure (CI).

// Test code: a failed step should stop the test loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::unreachable,
    reason = "a scenario suite: a failed step fails the test loudly"
)]

use std::time::Duration;

use sqlx::Connection as _;
use taxgate_store::password::verify_password;
use taxgate_store::seed::import_seed;
use taxgate_store::*;

const NOW: Timestamp = 1_750_000_000;
const ALICE: &str = "140105199001011238";
const BOB: &str = "11010519491231002X";
const CAROL: &str = "110105198001010016";
const ACME: &str = "91140100MA0K123488";
const AGENCY: &str = "91350200776049653A";
const CLIENT: &str = "91440101MA5CJQ4N59";

fn id(s: &str) -> IdNumber {
    IdNumber::parse(s).unwrap()
}
fn tid(s: &str) -> TaxpayerId {
    TaxpayerId::parse(s).unwrap()
}
fn phone(s: &str) -> Phone {
    Phone::parse(s).unwrap()
}

/// Alice (password, phone, legal representative of ACME), Bob (migrated, no password), Carol
/// (staff of the agency); ACME, an agency and its client.
const SEED: &str = r#"{
  "persons": [
    {"id_number": "140105199001011238", "name": "王芳", "username": "wangfang",
     "phone": "13800138000", "password": "Chang3-Me!now"},
    {"id_number": "11010519491231002X", "name": "李雷", "phone": "13900139000"},
    {"id_number": "110105198001010016", "name": "韩梅梅", "username": "hanmm"}
  ],
  "enterprises": [
    {"taxpayer_id": "91140100MA0K123488", "name": "太原示例科技有限公司",
     "legacy_password": "Old-Ent-Pass1", "phone": "13900139000", "agency": false},
    {"taxpayer_id": "91350200776049653A", "name": "示例税务师事务所", "agency": true},
    {"taxpayer_id": "91440101MA5CJQ4N59", "name": "广州示例贸易有限公司"}
  ],
  "bindings": [
    {"person": "140105199001011238", "enterprise": "91140100MA0K123488",
     "role": "legal_representative", "permissions": ["declare", "invoice", "query", "tax_affairs"],
     "valid_from": "2023-01-01T00:00:00+08:00", "valid_until": "2099-12-31T23:59:59+08:00",
     "enterprise_confirmed": true, "person_confirmed": true}
  ],
  "agency_agreements": [
    {"agency": "91350200776049653A", "client": "91440101MA5CJQ4N59",
     "staff": ["110105198001010016"], "scope": ["declare", "query"],
     "valid_until": "2099-12-31T23:59:59+08:00", "client_confirmed": true}
  ]
}"#;

async fn seeded<S: Store>(s: &S) {
    import_seed(s, SEED, NOW).await.unwrap();
}

fn session(sid: &str, token_hash: &str, person: &str) -> Session {
    Session {
        id: sid.into(),
        token_hash: token_hash.into(),
        entry: Entry::Enterprise,
        person: Some(id(person)),
        enterprise: None,
        agency: None,
        role: None,
        binding_id: None,
        agreement_id: None,
        factor: Factor::Sms,
        created_at: NOW,
        last_seen_at: NOW,
        expires_at: NOW + 28_800,
        revoked_at: None,
        factor_at: NOW,
        face_at: 0,
    }
}

async fn recv_within(
    rx: &mut tokio::sync::broadcast::Receiver<Invalidation>,
    want: &Invalidation,
) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(got)) if &got == want => return true,
            Ok(Ok(_)) => continue,
            _ => return false,
        }
    }
}

// ---- scenarios ------------------------------------------------------------------------------

/// A cache hooked to the store must have dropped a narrowed entry by the time the write
/// returns, so the caller's very next request can never see it (a broadcast consumed by a task
/// would race with that request).
async fn invalidation_hooks_run_before_the_write_returns<S: Store>(s: S) {
    seeded(&s).await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Invalidation>::new()));
    let sink = seen.clone();
    s.on_invalidation(std::sync::Arc::new(move |inv: &Invalidation| {
        sink.lock().unwrap().push(inv.clone());
    }));
    s.create_session(&session("s1", "h1", ALICE)).await.unwrap();
    assert!(s.revoke_session("s1", NOW).await.unwrap());
    // No await between the write and the check.
    assert!(
        seen.lock()
            .unwrap()
            .contains(&Invalidation::Session { id: "s1".into() }),
        "the hook had not run when revoke_session returned"
    );
    let b = s.bindings_of_person(&id(ALICE)).await.unwrap().remove(0);
    s.revoke_binding(&b.id, "test", NOW).await.unwrap();
    assert!(
        seen.lock()
            .unwrap()
            .contains(&Invalidation::Binding { id: b.id.clone() })
    );
}

async fn sessions<S: Store>(s: S) {
    seeded(&s).await;
    let alice = id(ALICE);
    let b = s.bindings_of_person(&alice).await.unwrap().remove(0);
    let mut sess = session("s1", "h1", ALICE);
    s.create_session(&sess).await.unwrap();
    assert!(matches!(
        s.create_session(&sess).await,
        Err(StoreError::Conflict { .. })
    ));
    s.set_session_identity(
        "s1",
        &SessionIdentity {
            enterprise: Some(tid(ACME)),
            role: Some(Role::LegalRepresentative),
            binding_id: Some(b.id.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    s.touch_session("s1", NOW + 60).await.unwrap();
    let slice = s.session_slice("h1").await.unwrap().unwrap();
    assert_eq!(slice.session.last_seen_at, NOW + 60);
    assert_eq!(slice.session.role, Some(Role::LegalRepresentative));
    assert_eq!(slice.person.as_ref().unwrap().name, "王芳");
    assert_eq!(slice.enterprise.as_ref().unwrap().taxpayer_id, tid(ACME));
    assert_eq!(slice.binding.as_ref().unwrap(), &b);
    assert_eq!(slice.agency, None);
    assert_eq!(slice.agreement, None);
    assert_eq!(s.session_slice("nope").await.unwrap(), None);
    // The same slice by the session's public id (AuthZEN re-reads a session named in an
    // assertion); never by a token hash given as an id.
    assert_eq!(
        s.session_slice_by_id("s1").await.unwrap().as_ref(),
        Some(&slice)
    );
    assert_eq!(s.session_slice_by_id("h1").await.unwrap(), None);

    // An agent session sees its agreement with the staff list.
    let g = s
        .agreement_between(&tid(AGENCY), &tid(CLIENT))
        .await
        .unwrap()
        .unwrap();
    let mut agent = session("s2", "h2", CAROL);
    agent.entry = Entry::Agent;
    agent.agency = Some(tid(AGENCY));
    agent.enterprise = Some(tid(CLIENT));
    agent.role = Some(Role::Agent);
    agent.agreement_id = Some(g.id.clone());
    s.create_session(&agent).await.unwrap();
    let slice = s.session_slice("h2").await.unwrap().unwrap();
    assert_eq!(slice.agreement.as_ref().unwrap().staff, vec![id(CAROL)]);
    assert!(slice.agency.as_ref().unwrap().is_agency);

    // Many sessions' activity in one write: each gets its own time; an unknown id is no error.
    s.touch_sessions(&[
        ("s1".to_string(), NOW + 70),
        ("s2".to_string(), NOW + 80),
        ("nope".to_string(), NOW + 90),
    ])
    .await
    .unwrap();
    s.touch_sessions(&[]).await.unwrap();
    // Never backwards; the latest of one session's times in one write; many in one write.
    s.touch_sessions(&[
        ("s1".to_string(), NOW + 60),
        ("s2".to_string(), NOW + 75),
        ("s2".to_string(), NOW + 80),
    ])
    .await
    .unwrap();
    let many: Vec<(String, Timestamp)> = (0..300)
        .map(|i| (format!("absent-{i}"), NOW + i))
        .chain([("s2".to_string(), NOW + 1)])
        .collect();
    s.touch_sessions(&many).await.unwrap();
    let seen = |h: &'static str| {
        let s = &s;
        async move {
            s.session_slice(h)
                .await
                .unwrap()
                .unwrap()
                .session
                .last_seen_at
        }
    };
    assert_eq!((seen("h1").await, seen("h2").await), (NOW + 70, NOW + 80));

    assert!(s.revoke_session("s1", NOW + 100).await.unwrap());
    s.touch_sessions(&[("s1".to_string(), NOW + 200)])
        .await
        .unwrap();
    let revoked = s.session_slice("h1").await.unwrap().unwrap().session;
    assert_eq!(
        revoked.last_seen_at,
        NOW + 70,
        "a revoked session's activity is not recorded"
    );
    assert!(!s.revoke_session("s1", NOW + 200).await.unwrap());
    let slice = s.session_slice("h1").await.unwrap().unwrap();
    assert_eq!(slice.session.revoked_at, Some(NOW + 100));
    let by_id = s.session_slice_by_id("s1").await.unwrap().unwrap();
    assert_eq!(
        by_id.session.revoked_at,
        Some(NOW + 100),
        "a revocation is seen by id too"
    );
    assert!(matches!(
        s.set_session_identity("s1", &SessionIdentity::default())
            .await,
        Err(StoreError::NotFound)
    ));

    sess.id = "s3".into();
    sess.token_hash = "h3".into();
    s.create_session(&sess).await.unwrap();
    sess.id = "s4".into();
    sess.token_hash = "h4".into();
    sess.expires_at = NOW + 10;
    s.create_session(&sess).await.unwrap();
    assert_eq!(
        s.revoke_person_sessions(&alice, None, NOW + 5)
            .await
            .unwrap(),
        2
    );
    assert_eq!(s.delete_expired_sessions(NOW + 11).await.unwrap(), 1);
    assert_eq!(s.session_slice("h4").await.unwrap(), None);
    assert!(
        s.session_slice("h3")
            .await
            .unwrap()
            .unwrap()
            .session
            .revoked_at
            .is_some()
    );
}

async fn lockout<S: Store>(s: S) {
    seeded(&s).await;
    let alice = id(ALICE);
    for n in 1..5 {
        let st = s.record_person_failure(&alice, NOW, 5, 1800).await.unwrap();
        assert_eq!(
            st,
            FailureState {
                failed_count: n,
                locked_until: None
            }
        );
    }
    let st = s.record_person_failure(&alice, NOW, 5, 1800).await.unwrap();
    assert_eq!(
        st,
        FailureState {
            failed_count: 5,
            locked_until: Some(NOW + 1800)
        }
    );
    let p = s.person(&alice).await.unwrap().unwrap();
    assert_eq!((p.failed_logins, p.locked_until), (5, Some(NOW + 1800)));
    // After the lock expired, counting starts again.
    let st = s
        .record_person_failure(&alice, NOW + 1800, 5, 1800)
        .await
        .unwrap();
    assert_eq!(
        st,
        FailureState {
            failed_count: 1,
            locked_until: None
        }
    );
    s.reset_person_failures(&alice).await.unwrap();
    let p = s.person(&alice).await.unwrap().unwrap();
    assert_eq!((p.failed_logins, p.locked_until), (0, None));
    assert!(matches!(
        s.record_person_failure(&id("110105198001010032"), NOW, 5, 1800)
            .await,
        Err(StoreError::NotFound)
    ));

    // Concurrent failures are all counted.
    let acme = tid(ACME);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (s, acme) = (s.clone(), acme.clone());
        tasks.push(tokio::spawn(async move {
            s.record_enterprise_failure(&acme, NOW, 100, 60)
                .await
                .unwrap()
        }));
    }
    let mut counts: Vec<i32> = Vec::new();
    for t in tasks {
        counts.push(t.await.unwrap().failed_count);
    }
    counts.sort();
    assert_eq!(counts, (1..=10).collect::<Vec<_>>());
    s.reset_enterprise_failures(&acme).await.unwrap();
    assert_eq!(s.enterprise(&acme).await.unwrap().unwrap().failed_logins, 0);
}

async fn phone_transfer<S: Store>(s: S) {
    seeded(&s).await;
    let mut rx = s.subscribe_invalidations();
    // Alice holds 13800138000. Carol takes it: Alice loses it.
    let p = phone("13800138000");
    // The transfer's record commits with it: one event for the new holder, one for the old.
    let event = |id: &str, action: &str| AuditEvent {
        action: action.into(),
        request_id: None,
        person: None,
        ..decision(id, NOW, None, &[])
    };
    let audit = PhoneAudit {
        bound: Some(event("t-bound", "phone_bound")),
        cleared: Some(event("t-cleared", "phone_cleared")),
    };
    let before = s.count_audit().await.unwrap();
    let prev = s.transfer_phone(&id(CAROL), &p, NOW, &audit).await.unwrap();
    assert_eq!(prev, Some(id(ALICE)));
    assert_eq!(s.count_audit().await.unwrap(), before + 2);
    assert_eq!(s.person(&id(ALICE)).await.unwrap().unwrap().phone, None);
    assert_eq!(
        s.person_by_account("+86 138 0013 8000")
            .await
            .unwrap()
            .unwrap()
            .id_number,
        id(CAROL)
    );
    assert!(
        recv_within(
            &mut rx,
            &Invalidation::Person {
                id_number: id(ALICE)
            }
        )
        .await
    );
    // Nobody else held it: only the `bound` event is written.
    let again = PhoneAudit {
        bound: Some(event("t-bound-2", "phone_bound")),
        cleared: Some(event("t-cleared-2", "phone_cleared")),
    };
    assert_eq!(
        s.transfer_phone(&id(CAROL), &p, NOW, &again).await.unwrap(),
        None
    );
    assert_eq!(s.count_audit().await.unwrap(), before + 3);

    // Bob and Alice race for the same new number many times over.
    let q = phone("13700137000");
    let mut tasks = Vec::new();
    for i in 0..12 {
        let s = s.clone();
        let who = if i % 2 == 0 { id(ALICE) } else { id(BOB) };
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            s.transfer_phone(&who, &q, NOW, &PhoneAudit::default())
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let mut n = 0;
    for who in [ALICE, BOB, CAROL] {
        if s.person(&id(who)).await.unwrap().unwrap().phone.as_ref() == Some(&q) {
            n += 1;
        }
    }
    assert_eq!(n, 1, "exactly one holder");
    assert!(matches!(
        s.transfer_phone(&id("110105198001010032"), &q, NOW, &PhoneAudit::default())
            .await,
        Err(StoreError::NotFound)
    ));
}

async fn bindings<S: Store>(s: S) {
    seeded(&s).await;
    let new = NewBinding {
        person: id(BOB),
        enterprise: tid(ACME),
        role: Role::TaxHandler,
        permissions: Some(vec![PermissionGroup::Declare, PermissionGroup::Query]),
        valid_from: NOW,
        valid_until: Some(NOW + 86_400),
        enterprise_confirmed: true,
        person_confirmed: false,
        by: ALICE.into(),
        granted_by: None,
        now: NOW,
    };
    let b = s.create_binding(new.clone()).await.unwrap();
    assert_eq!(s.binding(&b.id).await.unwrap().unwrap(), b);
    assert!(matches!(
        s.create_binding(new.clone()).await,
        Err(StoreError::Conflict { .. })
    ));
    let mut other = new.clone();
    other.person = id("110105198001010032");
    assert!(matches!(
        s.create_binding(other).await,
        Err(StoreError::NotFound)
    ));

    let mut rx = s.subscribe_invalidations();
    let ConfirmOutcome::Confirmed(c) = s
        .confirm_binding(&b.id, Side::Person, BOB, NOW + 1)
        .await
        .unwrap()
    else {
        panic!("first confirmation must be recorded");
    };
    assert!(c.person_confirmed && c.enterprise_confirmed);
    assert_eq!((c.updated_at, c.updated_by.as_str()), (NOW + 1, BOB));
    assert!(recv_within(&mut rx, &Invalidation::Binding { id: b.id.clone() }).await);
    assert!(matches!(
        s.confirm_binding(&b.id, Side::Person, BOB, NOW + 2)
            .await
            .unwrap(),
        ConfirmOutcome::AlreadyConfirmed(_)
    ));
    assert!(matches!(
        s.confirm_binding("nope", Side::Person, BOB, NOW).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.bindings_of_enterprise(&tid(ACME)).await.unwrap().len(), 2);
    assert_eq!(
        s.bindings_between(&id(BOB), &tid(ACME)).await.unwrap(),
        vec![c.clone()]
    );

    let r = s.revoke_binding(&b.id, ALICE, NOW + 3).await.unwrap();
    assert_eq!(r.revoked_at, Some(NOW + 3));
    assert!(recv_within(&mut rx, &Invalidation::Binding { id: b.id.clone() }).await);
    assert!(matches!(
        s.revoke_binding(&b.id, ALICE, NOW + 4).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.confirm_binding(&b.id, Side::Enterprise, ALICE, NOW + 4)
            .await,
        Err(StoreError::NotFound)
    ));
    // After a revoke the same person, enterprise and role may be bound again.
    let again = s.create_binding(new).await.unwrap();
    assert_ne!(again.id, b.id);
    assert_eq!(s.bindings_of_person(&id(BOB)).await.unwrap().len(), 2);
}

async fn challenges<S: Store>(s: S) {
    seeded(&s).await;
    let c = challenge_for("c1", ALICE);
    s.create_challenge(&c).await.unwrap();
    assert_eq!(s.challenge("c1").await.unwrap().unwrap(), c);
    assert_eq!(s.record_code_attempt("c1").await.unwrap(), 1);
    assert_eq!(s.record_code_attempt("c1").await.unwrap(), 2);
    assert!(matches!(
        s.record_code_attempt("zz").await,
        Err(StoreError::NotFound)
    ));
    s.set_challenge_code("c1", &Secret("h(code)".into()), NOW + 300)
        .await
        .unwrap();
    s.set_face_nonce("c1", "n1", NOW + 120).await.unwrap();
    let got = s.challenge_by_nonce("n1").await.unwrap().unwrap();
    assert_eq!(got.face_expires_at, Some(NOW + 120));
    assert_eq!(got.code_hash, Some(Secret("h(code)".into())));
    assert_eq!(got.code_attempts, 2);
    assert_eq!(got.face_status, Some(FaceStatus::Pending));
    assert!(s.set_face_result("n1", true).await.unwrap());
    assert!(
        !s.set_face_result("n1", false).await.unwrap(),
        "a nonce is usable once"
    );
    assert!(!s.set_face_result("n2", true).await.unwrap());
    assert_eq!(
        s.challenge("c1").await.unwrap().unwrap().face_status,
        Some(FaceStatus::Passed)
    );

    // Many racing consumers: exactly one wins.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.consume_challenge("c1", NOW + 10).await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        if t.await.unwrap().unwrap() {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(
        s.challenge("c1").await.unwrap().unwrap().consumed_at,
        Some(NOW + 10)
    );

    let mut late = c.clone();
    late.id_hash = "c2".into();
    s.create_challenge(&late).await.unwrap();
    assert!(
        !s.consume_challenge("c2", NOW + 300).await.unwrap(),
        "expired"
    );
    assert_eq!(s.delete_expired_challenges(NOW + 301).await.unwrap(), 2);

    // SMS log.
    let p = phone("13800138000");
    for t in [NOW - 90_000, NOW - 100, NOW - 30] {
        s.record_sms_sent(&p, ChallengePurpose::Login, t)
            .await
            .unwrap();
    }
    assert_eq!(
        s.sms_stats(&p, NOW - 86_400).await.unwrap(),
        SmsStats {
            count: 2,
            last_sent_at: Some(NOW - 30)
        }
    );
    assert_eq!(
        s.sms_stats(&phone("13600136000"), 0).await.unwrap(),
        SmsStats {
            count: 0,
            last_sent_at: None
        }
    );
    // Pruning forgets old rows only; the limits still see the last day.
    assert_eq!(s.prune_sms_log(NOW - 86_400).await.unwrap(), 1);
    assert_eq!(s.prune_sms_log(NOW - 86_400).await.unwrap(), 0);
    assert_eq!(
        s.sms_stats(&p, 0).await.unwrap(),
        SmsStats {
            count: 2,
            last_sent_at: Some(NOW - 30)
        }
    );
}

async fn audit<S: Store>(s: S) {
    let events: Vec<AuditEvent> = (0..1203)
        .map(|i| AuditEvent {
            id: format!("a{i}"),
            at: NOW + i,
            request_id: Some(format!("r{i}")),
            session_id: Some("s1".into()),
            person: Some(id(ALICE)),
            enterprise: Some(tid(ACME)),
            role: Some(Role::Admin),
            entry: Some(Entry::Enterprise),
            action: "declare".into(),
            path: Some("/api/declare".into()),
            allowed: i % 2 == 0,
            policies: vec!["p1".into(), "p2".into()],
            reason: None,
            policy_version: Some("v1".into()),
            client_addr: None,
            detail: Some("{}".into()),
            slice: None,
            legacy_login_until: None,
        })
        .collect();
    assert_eq!(s.count_audit().await.unwrap(), 0);
    s.append_audit(&events).await.unwrap();
    s.append_audit(&[]).await.unwrap();
    assert_eq!(s.count_audit().await.unwrap(), 1203);
    // A batch with one bad row (duplicate id) stores nothing.
    let mut bad = events[..3].to_vec();
    bad[0].id = "fresh".into();
    assert!(s.append_audit(&bad).await.is_err());
    assert_eq!(s.count_audit().await.unwrap(), 1203);
}

fn decision(id: &str, at: Timestamp, slice: Option<&AuditSlice>, policies: &[&str]) -> AuditEvent {
    AuditEvent {
        id: id.into(),
        at,
        request_id: Some(id.into()),
        session_id: Some("s1".into()),
        person: Some(id_alice()),
        enterprise: Some(tid(ACME)),
        role: Some(Role::TaxHandler),
        entry: Some(Entry::Enterprise),
        action: "declare".into(),
        path: Some("/api/declare/x".into()),
        allowed: !policies.is_empty(),
        policies: policies.iter().map(|p| p.to_string()).collect(),
        reason: policies.is_empty().then(|| "not_permitted".to_string()),
        policy_version: Some("v1".into()),
        client_addr: None,
        detail: None,
        slice: slice.cloned(),
        legacy_login_until: Some(NOW + 86_400),
    }
}

fn id_alice() -> IdNumber {
    id(ALICE)
}

fn audit_slice(hash: &str, json: &str) -> AuditSlice {
    AuditSlice {
        hash: hash.into(),
        json: Some(json.into()),
        refresh: false,
    }
}

/// `hash=json` of the stored slices among `hashes`, sorted.
async fn slice_rows<S: Store>(s: &S, hashes: &[&str]) -> Vec<String> {
    let hashes: Vec<String> = hashes.iter().map(|h| h.to_string()).collect();
    let mut rows: Vec<String> = s
        .audit_slices(&hashes)
        .await
        .unwrap()
        .into_iter()
        .map(|(h, json)| format!("{h}={json}"))
        .collect();
    rows.sort();
    rows
}

/// A refreshing event (hash only) moves an existing slice's last use up, so retention keeps
/// it while decisions name it, and never creates a row for a slice the store does not have.
async fn refreshing_events_keep_a_slice_and_create_none<S: Store>(s: S) {
    let slack = taxgate_store::AUDIT_SLICE_SLACK_SECS;
    let whole = audit_slice("hr", r#"{"slice":"r"}"#);
    s.append_audit_with_slices(
        &[(whole.clone(), NOW)],
        &[decision("r1", NOW, Some(&whole), &[])],
    )
    .await
    .unwrap();
    let refresh = |hash: &str| AuditSlice {
        hash: hash.into(),
        json: None,
        refresh: true,
    };
    let named = AuditSlice {
        refresh: false,
        ..refresh("hr")
    };
    s.append_audit_with_slices(
        &[
            (refresh("hr"), NOW + 5_000),
            (refresh("ghost"), NOW + 5_000),
            (named.clone(), NOW + 9_000),
        ],
        &[decision("r2", NOW + 5_000, Some(&named), &[])],
    )
    .await
    .unwrap();
    assert_eq!(
        slice_rows(&s, &["hr", "ghost"]).await,
        [r#"hr={"slice":"r"}"#],
        "the refresh of an unknown slice created nothing"
    );
    // Past the first use's retention, not the refresh's: kept. A hash-only event without the
    // flag (at NOW + 9 000) moved nothing.
    s.purge_audit(NOW + 1 + slack).await.unwrap();
    assert_eq!(slice_rows(&s, &["hr"]).await, [r#"hr={"slice":"r"}"#]);
    let purged = s.purge_audit(NOW + 5_001 + slack).await.unwrap();
    assert_eq!(purged.slices, 1);
    assert!(slice_rows(&s, &["hr"]).await.is_empty());
}

async fn decision_replay_records<S: Store>(s: S) {
    let one = audit_slice("h1", r#"{"slice":1}"#);
    let two = audit_slice("h2", r#"{"slice":2}"#);
    // A login event (no request id) is not a downstream decision.
    let mut login = decision("login-1", NOW, None, &[]);
    login.request_id = None;
    login.action = "login".into();
    s.append_audit_with_slices(
        &[(one.clone(), NOW), (two.clone(), NOW + 1)],
        &[
            decision("d1", NOW, Some(&one), &["p.a"]),
            decision("d2", NOW + 1, Some(&two), &[]),
            decision("old", NOW - 10, None, &["p.a", "p.b"]),
            login,
        ],
    )
    .await
    .unwrap();
    // The same slice again (another instance, or the writer's periodic report) keeps its first
    // stored content and only moves its last use up.
    s.append_audit_with_slices(
        &[(audit_slice("h1", r#"{"other":true}"#), NOW + 5)],
        &[decision("d3", NOW + 5, Some(&one), &["p.a"])],
    )
    .await
    .unwrap();
    // A hash twice in one call is one row, with the later use (PostgreSQL refuses to update a
    // row twice in one statement).
    s.append_audit_with_slices(&[(two.clone(), NOW + 1), (two.clone(), NOW)], &[])
        .await
        .unwrap();
    assert_eq!(s.count_audit().await.unwrap(), 5);

    let all = s.recorded_decisions(NOW - 100, 100).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        ["d3", "d2", "d1", "old"],
        "newest first, downstream only"
    );
    let d2 = &all[1];
    assert_eq!(d2.slice_hash.as_deref(), Some("h2"));
    assert_eq!(d2.legacy_login_until, Some(NOW + 86_400));
    assert_eq!(
        (d2.allowed, d2.reason.as_deref()),
        (false, Some("not_permitted"))
    );
    assert_eq!(d2.role, Some(Role::TaxHandler));
    assert_eq!(d2.entry, Some(Entry::Enterprise));
    assert_eq!(all[3].slice_hash, None);
    assert_eq!(all[3].policies, ["p.a", "p.b"]);
    // Window and limit.
    assert_eq!(s.recorded_decisions(NOW, 100).await.unwrap().len(), 3);
    let latest = s.recorded_decisions(NOW - 100, 2).await.unwrap();
    assert_eq!(
        latest.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["d3", "d2"]
    );

    let mut slices = s
        .audit_slices(&["h1".into(), "h2".into(), "nope".into()])
        .await
        .unwrap();
    slices.sort();
    assert_eq!(
        slices,
        [
            ("h1".to_string(), r#"{"slice":1}"#.to_string()),
            ("h2".to_string(), r#"{"slice":2}"#.to_string())
        ]
    );
    assert!(s.audit_slices(&[]).await.unwrap().is_empty());

    // Coverage: per combination of determining policies and outcome.
    let mut uses = s.policy_use(NOW - 100).await.unwrap();
    uses.sort_by(|a, b| a.policies.cmp(&b.policies));
    assert_eq!(
        uses,
        [
            PolicyUse {
                policies: vec![],
                allowed: false,
                decisions: 1
            },
            PolicyUse {
                policies: vec!["p.a".into()],
                allowed: true,
                decisions: 2
            },
            PolicyUse {
                policies: vec!["p.a".into(), "p.b".into()],
                allowed: true,
                decisions: 1
            },
        ]
    );
    assert_eq!(s.policy_use(NOW + 1).await.unwrap().len(), 2);

    // Retention: events before the cutoff go; a slice goes once its last use (moved up by
    // every report, here h1's to NOW + 5 by d3's batch) is older than the cutoff by more than
    // the slack writers are allowed between reports.
    let purged = s.purge_audit(NOW + 1).await.unwrap();
    assert_eq!(
        purged,
        AuditPurge {
            events: 3,
            slices: 0
        }
    );
    let purged = s.purge_audit(NOW + 2).await.unwrap();
    assert_eq!(
        purged,
        AuditPurge {
            events: 1,
            slices: 0
        },
        "d2 went; h2's last use (NOW + 1) is within the slack of the cutoff"
    );
    assert_eq!(s.count_audit().await.unwrap(), 1);
    let purged = s
        .purge_audit(NOW + 2 + AUDIT_SLICE_SLACK_SECS)
        .await
        .unwrap();
    assert_eq!(
        purged,
        AuditPurge {
            events: 1,
            slices: 1
        },
        "d3 and h2 went; h1 was last used at NOW + 5"
    );
    let left = s.audit_slices(&["h1".into(), "h2".into()]).await.unwrap();
    assert_eq!(
        left,
        [("h1".to_string(), r#"{"slice":1}"#.to_string())],
        "the first stored content stays"
    );
    let purged = s
        .purge_audit(NOW + 6 + AUDIT_SLICE_SLACK_SECS)
        .await
        .unwrap();
    assert_eq!(
        purged,
        AuditPurge {
            events: 0,
            slices: 1
        }
    );
    assert_eq!(s.count_audit().await.unwrap(), 0);
    assert!(s.audit_slices(&["h1".into()]).await.unwrap().is_empty());
}

async fn invalidation_local<S: Store>(s: S) {
    seeded(&s).await;
    let mut rx = s.subscribe_invalidations();
    s.create_session(&session("s1", "h1", ALICE)).await.unwrap();
    s.revoke_session("s1", NOW).await.unwrap();
    assert!(recv_within(&mut rx, &Invalidation::Session { id: "s1".into() }).await);
    s.set_password(&id(BOB), &Secret("x".into()), false, NOW)
        .await
        .unwrap();
    assert!(recv_within(&mut rx, &Invalidation::Person { id_number: id(BOB) }).await);
    assert_eq!(
        s.person(&id(BOB)).await.unwrap().unwrap().password_hash,
        Secret("x".into())
    );
    let g = s
        .agreement_between(&tid(AGENCY), &tid(CLIENT))
        .await
        .unwrap()
        .unwrap();
    s.revoke_agreement(&g.id, NOW).await.unwrap();
    assert!(recv_within(&mut rx, &Invalidation::Agreement { id: g.id.clone() }).await);
    assert_eq!(
        s.agreement_between(&tid(AGENCY), &tid(CLIENT))
            .await
            .unwrap(),
        None
    );
    assert!(
        s.agreements_of_staff(&tid(AGENCY), &id(CAROL))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn import_all_or_nothing<S: Store>(s: S) {
    let bad = SEED.replace("\"13900139000\"}", "\"13900139000\", \"username\": \"x\"}");
    let Err(ImportError::Rows(errs)) = import_seed(&s, &bad, NOW).await else {
        panic!("a bad row must fail the import");
    };
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].path, "persons[1].username");
    // Nothing stored.
    assert_eq!(s.person(&id(ALICE)).await.unwrap(), None);
    assert_eq!(s.enterprise(&tid(ACME)).await.unwrap(), None);
    assert!(s.bindings_of_person(&id(ALICE)).await.unwrap().is_empty());
}

async fn import_idempotent<S: Store>(s: S) {
    let first = import_seed(&s, SEED, NOW).await.unwrap();
    assert_eq!(
        (
            first.persons_created,
            first.enterprises_created,
            first.bindings_created,
            first.agreements_created
        ),
        (3, 3, 1, 1)
    );
    let snapshot = async |s: &S| {
        let mut out = Vec::new();
        for p in [ALICE, BOB, CAROL] {
            out.push(format!(
                "{:?}",
                s.person(&id(p)).await.unwrap().map(|p| (
                    p.password_hash.0,
                    p.phone,
                    p.username,
                    p.updated_at,
                    p.must_change_password
                ))
            ));
            out.push(format!("{:?}", s.bindings_of_person(&id(p)).await.unwrap()));
        }
        for e in [ACME, AGENCY, CLIENT] {
            out.push(format!(
                "{:?}",
                s.enterprise(&tid(e)).await.unwrap().map(|e| (
                    e.legacy_password_hash.map(|h| h.0),
                    e.is_agency,
                    e.phone
                ))
            ));
        }
        out.push(format!(
            "{:?}",
            s.agreement_between(&tid(AGENCY), &tid(CLIENT))
                .await
                .unwrap()
        ));
        out
    };
    let before = snapshot(&s).await;
    let second = import_seed(&s, SEED, NOW + 1000).await.unwrap();
    assert_eq!(second, ImportSummary::default());
    assert_eq!(snapshot(&s).await, before);

    // Passwords: given one verifies; a migrated user's is the last 6 and must change.
    let alice = s.person(&id(ALICE)).await.unwrap().unwrap();
    assert!(verify_password(&alice.password_hash, "Chang3-Me!now"));
    assert!(!alice.must_change_password);
    let bob = s.person(&id(BOB)).await.unwrap().unwrap();
    assert!(verify_password(&bob.password_hash, "31002X"));
    assert!(bob.must_change_password);
    let acme = s.enterprise(&tid(ACME)).await.unwrap().unwrap();
    assert!(verify_password(
        acme.legacy_password_hash.as_ref().unwrap(),
        "Old-Ent-Pass1"
    ));

    // A re-import never overwrites a password that was changed.
    let new_hash = password::hash_password("N3w-secret!").unwrap();
    s.set_password(&id(BOB), &new_hash, false, NOW + 5)
        .await
        .unwrap();
    let third = import_seed(&s, SEED, NOW + 2000).await.unwrap();
    assert_eq!(third, ImportSummary::default());
    let bob = s.person(&id(BOB)).await.unwrap().unwrap();
    assert_eq!(bob.password_hash, new_hash);
    assert!(!bob.must_change_password);

    // A change in the file is applied: phones move between seeded persons.
    let moved = SEED
        .replace("\"phone\": \"13800138000\"", "\"phone\": \"13600136000\"")
        .replace(
            "\"username\": \"hanmm\"}",
            "\"username\": \"hanmm\", \"phone\": \"13800138000\"}",
        );
    let fourth = import_seed(&s, &moved, NOW + 3000).await.unwrap();
    assert_eq!(fourth.persons_updated, 2, "{fourth:?}");
    assert_eq!(
        s.person_by_account("13800138000")
            .await
            .unwrap()
            .unwrap()
            .id_number,
        id(CAROL)
    );
    assert_eq!(
        s.person_by_account("wangfang")
            .await
            .unwrap()
            .unwrap()
            .phone,
        Some(phone("13600136000"))
    );
}

async fn import_conflicts<S: Store>(s: S) {
    seeded(&s).await;
    // Alice (in the store, not in this seed) holds 13800138000; a seed giving it to someone else
    // and a seed with two persons sharing a number are both reported with their paths.
    let seed = r#"{"persons": [
        {"id_number": "110105198001010032", "name": "甲", "phone": "13800138000", "password": "p"},
        {"id_number": "110105198001010059", "name": "乙", "phone": "13500135000", "password": "p",
         "username": "wangfang"},
        {"id_number": "110105198001010075", "name": "丙", "phone": "13500135000", "password": "p"}],
      "bindings": [
        {"person": "110105198001010091", "enterprise": "91140100MA0K123488", "role": "admin"}],
      "agency_agreements": [
        {"agency": "91140100MA0K123488", "client": "91440101MA5CJQ4N59",
         "staff": ["110105198001010032"], "scope": ["query"]},
        {"agency": "91350200776049653A", "client": "91140100MA0K123488",
         "staff": ["140105199001011238"], "scope": ["query"]}]}"#;
    let Err(ImportError::Rows(errs)) = import_seed(&s, seed, NOW).await else {
        panic!("must fail");
    };
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "persons[2].phone",
            "persons[0].phone",
            "persons[1].username",
            "bindings[0].person",
            "agency_agreements[0].agency",
            "agency_agreements[1].staff[0]",
        ],
        "{errs:#?}"
    );
    assert!(errs[1].reason.contains("一号一人"));
    assert!(
        !errs[1].reason.contains(ALICE),
        "no full ID numbers in messages"
    );
    assert_eq!(s.person(&id("110105198001010032")).await.unwrap(), None);
}

// ---- harness --------------------------------------------------------------------------------

async fn sqlite_store() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/sub/taxgate.db", dir.path().display());
    let AnyStore::Sqlite(s) = AnyStore::connect(&url).await.unwrap() else {
        panic!("sqlite url must give a SqliteStore");
    };
    s.migrate().await.unwrap();
    s.migrate().await.unwrap();
    (s, dir)
}

/// A fresh database on the test server, or None (skip) when no server is configured.
async fn pg_url() -> Option<String> {
    let Ok(base) = std::env::var("TAXGATE_TEST_PG_URL") else {
        if std::env::var("TAXGATE_REQUIRE_PG").as_deref() == Ok("1") {
            panic!("TAXGATE_REQUIRE_PG=1 but TAXGATE_TEST_PG_URL is unset: start .ci/postgres.sh");
        }
        eprintln!("skipping PostgreSQL: TAXGATE_TEST_PG_URL unset");
        return None;
    };
    let name = format!("t_{}", new_id().unwrap());
    let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let (head, _) = base.rsplit_once('/').unwrap();
    Some(format!("{head}/{name}"))
}

async fn pg_store() -> Option<PgStore> {
    let url = pg_url().await?;
    let AnyStore::Postgres(s) = AnyStore::connect(&url).await.unwrap() else {
        panic!("postgres url must give a PgStore");
    };
    s.migrate().await.unwrap();
    s.migrate().await.unwrap();
    Some(s)
}

/// Issue 15 point 7: once a face result failed, no new nonce can be attached to the challenge
/// (a second scan), even by a start that read the challenge before the failure was recorded.
async fn face_failure_is_final<S: Store>(s: S) {
    seeded(&s).await;
    let c = Challenge {
        purpose: ChallengePurpose::RecoverPhone,
        target_phone: Some(phone("13700000009")),
        ..challenge_for("cf", ALICE)
    };
    s.create_challenge(&c).await.unwrap();
    s.set_face_nonce("cf", "f1", NOW + 120).await.unwrap();
    // A pending nonce may be replaced (the QR code expired and was refreshed).
    s.set_face_nonce("cf", "f2", NOW + 120).await.unwrap();
    assert!(s.set_face_result("f2", false).await.unwrap());
    assert!(matches!(
        s.set_face_nonce("cf", "f3", NOW + 120).await,
        Err(StoreError::NotFound)
    ));
    let got = s.challenge("cf").await.unwrap().unwrap();
    assert_eq!(got.face_status, Some(FaceStatus::Failed));
    assert_eq!(got.face_nonce.as_deref(), Some("f2"));
}

macro_rules! scenario {
    ($name:ident) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let (s, _dir) = sqlite_store().await;
                super::$name(s).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(s) = pg_store().await {
                    super::$name(s).await;
                }
            }
        }
    };
}

scenario!(sessions);
scenario!(invalidation_hooks_run_before_the_write_returns);
scenario!(lockout);
scenario!(phone_transfer);
scenario!(bindings);
scenario!(challenges);
scenario!(audit);
scenario!(decision_replay_records);
scenario!(refreshing_events_keep_a_slice_and_create_none);
scenario!(invalidation_local);
scenario!(import_all_or_nothing);
scenario!(import_idempotent);
scenario!(import_conflicts);
scenario!(pending_grants_die_with_their_granter);
scenario!(agency_staff_of_client);
scenario!(import_binding_of_stored_agency_staff);

/// Issue 21 point 5 at import: a seed binding for a person who is staff of a stored agreement
/// with that enterprise as client is refused (nothing imported), unless the same seed takes
/// them off that agreement's staff.
async fn import_binding_of_stored_agency_staff<S: Store>(s: S) {
    seeded(&s).await;
    let binding = r#"{"person": "110105198001010016", "enterprise": "91440101MA5CJQ4N59",
                      "role": "tax_handler", "enterprise_confirmed": true, "person_confirmed": true}"#;
    let seed = format!(r#"{{"bindings": [{binding}]}}"#);
    let Err(ImportError::Rows(errs)) = import_seed(&s, &seed, NOW).await else {
        panic!("must fail");
    };
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, vec!["bindings[0].person"], "{errs:#?}");
    assert!(errs[0].reason.contains(AGENCY), "{}", errs[0].reason);
    assert!(s.bindings_of_person(&id(CAROL)).await.unwrap().is_empty());

    let seed = format!(
        r#"{{"bindings": [{binding}], "agency_agreements": [
            {{"agency": "91350200776049653A", "client": "91440101MA5CJQ4N59",
              "staff": ["11010519491231002X"], "scope": ["declare", "query"],
              "valid_until": "2099-12-31T23:59:59+08:00", "client_confirmed": true}}]}}"#
    );
    import_seed(&s, &seed, NOW).await.unwrap();
    assert_eq!(s.bindings_of_person(&id(CAROL)).await.unwrap().len(), 1);
    assert!(
        s.staff_agencies(&id(CAROL), &tid(CLIENT))
            .await
            .unwrap()
            .is_empty()
    );
}

/// Issue 21 point 8: a grant not yet confirmed by its person dies with the binding that made it:
/// revoking the granter's binding revokes it in the same transaction (keeping `updated_by`), and
/// once the granter's binding is no longer live (here: expired) it cannot be confirmed.
async fn pending_grants_die_with_their_granter<S: Store>(s: S) {
    seeded(&s).await;
    let alice = s.bindings_of_person(&id(ALICE)).await.unwrap();
    let lr = &alice[0];
    // Alice (legal representative) makes Bob finance manager; Bob confirms.
    let grant = |person: &str, role, granted_by: &str, valid_until| NewBinding {
        person: id(person),
        enterprise: tid(ACME),
        role,
        permissions: None,
        valid_from: NOW,
        valid_until,
        enterprise_confirmed: true,
        person_confirmed: false,
        by: ALICE.into(),
        granted_by: Some(granted_by.to_string()),
        now: NOW,
    };
    let fm = s
        .create_binding(grant(BOB, Role::FinanceManager, &lr.id, None))
        .await
        .unwrap();
    s.confirm_binding(&fm.id, Side::Person, BOB, NOW)
        .await
        .unwrap();
    // Bob, as finance manager, grants Carol tax handler (pending) and invoice clerk (pending).
    let mut by_bob = grant(CAROL, Role::TaxHandler, &fm.id, None);
    by_bob.by = BOB.into();
    let th = s.create_binding(by_bob.clone()).await.unwrap();
    by_bob.role = Role::InvoiceClerk;
    let ic = s.create_binding(by_bob).await.unwrap();
    // A grant Carol confirmed already stays.
    s.confirm_binding(&ic.id, Side::Person, CAROL, NOW + 1)
        .await
        .unwrap();

    // Bob's binding ends: Carol's pending grant from Bob ends with it, in the same write.
    let mut rx = s.subscribe_invalidations();
    s.revoke_binding(&fm.id, ALICE, NOW + 10).await.unwrap();
    let th_now = s.binding(&th.id).await.unwrap().unwrap();
    assert_eq!(th_now.revoked_at, Some(NOW + 10));
    assert_eq!(th_now.updated_by, BOB, "updated_by keeps the granter");
    assert!(!th_now.person_confirmed);
    assert_eq!(s.binding(&ic.id).await.unwrap().unwrap().revoked_at, None);
    let mut seen = Vec::new();
    while let Ok(inv) = rx.try_recv() {
        seen.push(format!("{inv:?}"));
    }
    assert!(seen.contains(&format!("Binding({})", th.id)), "{seen:?}");
    assert!(
        matches!(
            s.confirm_binding(&th.id, Side::Person, CAROL, NOW + 11)
                .await,
            Err(StoreError::NotFound)
        ),
        "a dead grant cannot be confirmed"
    );

    // A granter whose binding expired: the grant cannot be confirmed, and dies on the attempt.
    let short = s
        .create_binding(grant(BOB, Role::Admin, &lr.id, Some(NOW + 100)))
        .await
        .unwrap();
    s.confirm_binding(&short.id, Side::Person, BOB, NOW)
        .await
        .unwrap();
    let mut by_admin = grant(CAROL, Role::TicketBuyer, &short.id, None);
    by_admin.by = BOB.into();
    let tb = s.create_binding(by_admin).await.unwrap();
    assert!(matches!(
        s.confirm_binding(&tb.id, Side::Person, CAROL, NOW + 100)
            .await,
        Err(StoreError::NotFound)
    ));
    let tb_now = s.binding(&tb.id).await.unwrap().unwrap();
    assert_eq!(tb_now.revoked_at, Some(NOW + 100));
    assert!(!tb_now.person_confirmed);
    assert_eq!(tb_now.updated_by, BOB);

    // While the granter is live, confirming works as before.
    let mut by_alice = grant(CAROL, Role::TicketBuyer, &lr.id, None);
    by_alice.valid_from = NOW;
    let ok = s.create_binding(by_alice).await.unwrap();
    assert!(matches!(
        s.confirm_binding(&ok.id, Side::Person, CAROL, NOW + 200)
            .await,
        Ok(ConfirmOutcome::Confirmed(_))
    ));
}

/// The fact behind separation of duties: Carol is staff of the agency's agreement with CLIENT.
async fn agency_staff_of_client<S: Store>(s: S) {
    seeded(&s).await;
    assert_eq!(
        s.staff_agencies(&id(CAROL), &tid(CLIENT)).await.unwrap(),
        vec![tid(AGENCY)]
    );
    assert!(
        s.staff_agencies(&id(CAROL), &tid(ACME))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.staff_agencies(&id(BOB), &tid(CLIENT))
            .await
            .unwrap()
            .is_empty()
    );
    let g = s
        .agreement_between(&tid(AGENCY), &tid(CLIENT))
        .await
        .unwrap()
        .unwrap();
    s.revoke_agreement(&g.id, NOW).await.unwrap();
    assert!(
        s.staff_agencies(&id(CAROL), &tid(CLIENT))
            .await
            .unwrap()
            .is_empty()
    );
}
scenario!(face_failure_is_final);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_store_rejects_unknown_schemes() {
    assert!(matches!(
        AnyStore::connect("mysql://x/y").await,
        Err(StoreError::Invalid { .. })
    ));
    let s = AnyStore::connect("sqlite::memory:").await.unwrap();
    s.migrate().await.unwrap();
    s.ping().await.unwrap();
    assert_eq!(s.backend(), "sqlite");
}

/// A logout on one instance reaches another through LISTEN/NOTIFY, and a listener that lost its
/// connection reconnects and tells its subscribers to drop everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_invalidation_across_instances() {
    let Some(url) = pg_url().await else { return };
    let a = PgStore::connect(&url).await.unwrap();
    a.migrate().await.unwrap();
    let b = PgStore::connect(&url).await.unwrap();
    seeded(&a).await;
    let mut rx = b.subscribe_invalidations();
    a.create_session(&session("s1", "h1", ALICE)).await.unwrap();
    a.revoke_session("s1", NOW).await.unwrap();
    assert!(recv_within(&mut rx, &Invalidation::Session { id: "s1".into() }).await);
    let bind = a.bindings_of_person(&id(ALICE)).await.unwrap().remove(0);
    a.revoke_binding(&bind.id, ALICE, NOW).await.unwrap();
    assert!(
        recv_within(
            &mut rx,
            &Invalidation::Binding {
                id: bind.id.clone()
            }
        )
        .await
    );

    // Kill every listening connection: both instances reconnect and publish All.
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(killed.len() >= 2, "{killed:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut got_all = false;
    while let Ok(Ok(inv)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        if inv == Invalidation::All {
            got_all = true;
            break;
        }
    }
    assert!(got_all, "a reconnect must publish All");
    // And notifications flow again after the reconnect.
    a.create_session(&session("s2", "h2", ALICE)).await.unwrap();
    a.revoke_session("s2", NOW).await.unwrap();
    assert!(recv_within(&mut rx, &Invalidation::Session { id: "s2".into() }).await);
}

// ---- limits that hold under concurrency (issues 15 and 21) -----------------------------------

const RULE: LockoutRule = LockoutRule {
    max_failures: 5,
    lockout_secs: 1800,
    reservation_secs: 60,
};

/// `n` reservations on `key` at once; how many were admitted.
async fn reserve_at_once<S: Store>(s: &S, key: &GuardKey, n: usize, now: Timestamp) -> usize {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (s, key, barrier) = (s.clone(), key.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            s.reserve_password_check(&key, now, &RULE).await.unwrap()
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        if t.await.unwrap() == CheckReservation::Admitted {
            admitted += 1;
        }
    }
    admitted
}

async fn password_checks_are_reserved<S: Store>(s: S) {
    seeded(&s).await;
    let alice = GuardKey::Person(id(ALICE));
    // However many arrive together, no more checks run than failures are allowed.
    assert_eq!(reserve_at_once(&s, &alice, 40, NOW).await, 5);
    assert_eq!(
        s.reserve_password_check(&alice, NOW, &RULE).await.unwrap(),
        CheckReservation::Refused { locked_until: None },
        "five checks are under way"
    );
    // An abandoned check gives its place back.
    s.settle_password_check(&alice, CheckOutcome::Abandoned, NOW, &RULE)
        .await
        .unwrap();
    assert_eq!(reserve_at_once(&s, &alice, 10, NOW).await, 1);
    // A challenge the person has open dies with the lock.
    let mut c = challenge_for("lock-c", ALICE);
    s.create_challenge(&c).await.unwrap();
    let mut last = None;
    for n in 1..=5 {
        let st = s
            .settle_password_check(&alice, CheckOutcome::Failed, NOW, &RULE)
            .await
            .unwrap();
        assert_eq!(st.failed_count, n);
        last = Some(st);
    }
    assert_eq!(last.unwrap().locked_until, Some(NOW + 1800));
    assert_eq!(
        s.challenge("lock-c").await.unwrap().unwrap().consumed_at,
        Some(NOW),
        "the lock voids the open challenge"
    );
    assert_eq!(
        s.reserve_password_check(&alice, NOW + 10, &RULE)
            .await
            .unwrap(),
        CheckReservation::Refused {
            locked_until: Some(NOW + 1800)
        }
    );
    // After the lock, counting starts again; a success clears the failures.
    assert_eq!(reserve_at_once(&s, &alice, 8, NOW + 1800).await, 5);
    for _ in 0..4 {
        s.settle_password_check(&alice, CheckOutcome::Failed, NOW + 1800, &RULE)
            .await
            .unwrap();
    }
    let st = s
        .settle_password_check(&alice, CheckOutcome::Succeeded, NOW + 1800, &RULE)
        .await
        .unwrap();
    assert_eq!(
        st,
        FailureState {
            failed_count: 0,
            locked_until: None
        }
    );
    let p = s.person(&id(ALICE)).await.unwrap().unwrap();
    assert_eq!((p.failed_logins, p.locked_until), (0, None));

    // Reservations of an instance that died mid-check expire.
    assert_eq!(reserve_at_once(&s, &alice, 6, NOW + 2000).await, 5);
    assert_eq!(reserve_at_once(&s, &alice, 6, NOW + 2059).await, 0);
    assert_eq!(reserve_at_once(&s, &alice, 6, NOW + 2060).await, 5);

    // An account string that names nobody locks the same way.
    let nobody = GuardKey::Account(account_key("NoBody-Here"));
    assert_eq!(nobody, GuardKey::Account("user:nobody-here".into()));
    assert_eq!(reserve_at_once(&s, &nobody, 30, NOW).await, 5);
    for n in 1..=5 {
        let st = s
            .settle_password_check(&nobody, CheckOutcome::Failed, NOW, &RULE)
            .await
            .unwrap();
        assert_eq!(st.failed_count, n);
    }
    assert_eq!(
        s.reserve_password_check(&nobody, NOW, &RULE).await.unwrap(),
        CheckReservation::Refused {
            locked_until: Some(NOW + 1800)
        }
    );
    // The legacy enterprise password too, and an unknown person is NotFound.
    let acme = GuardKey::Enterprise(tid(ACME));
    assert_eq!(reserve_at_once(&s, &acme, 12, NOW).await, 5);
    assert!(matches!(
        s.reserve_password_check(&GuardKey::Person(id("110105198001010032")), NOW, &RULE)
            .await,
        Err(StoreError::NotFound)
    ));
    // Pruning forgets unknown-account guards no longer locked.
    s.prune_sms_log(NOW + 1801).await.unwrap();
    assert_eq!(reserve_at_once(&s, &nobody, 7, NOW + 1801).await, 5);

    // Failures count within the lockout period of the first: four, then one 1800 s after the
    // first starts afresh; four, then one 1799 s after, locks.
    for (name, late, locks) in [("window-a", 1800, false), ("window-b", 1799, true)] {
        let key = GuardKey::Account(account_key(name));
        let t = NOW + 10_000;
        for at in [t, t + 100, t + 200, t + 300, t + late] {
            assert_eq!(reserve_at_once(&s, &key, 1, at).await, 1);
            let st = s
                .settle_password_check(&key, CheckOutcome::Failed, at, &RULE)
                .await
                .unwrap();
            if at == t + late {
                assert_eq!(st.locked_until.is_some(), locks, "{name}");
                assert_eq!(st.failed_count, if locks { 5 } else { 1 }, "{name}");
            }
        }
    }

    // A password change voids the person's open challenges.
    c.id_hash = "pw-c".into();
    s.create_challenge(&c).await.unwrap();
    s.set_password(&id(ALICE), &Secret("new".into()), false, NOW + 3000)
        .await
        .unwrap();
    assert_eq!(
        s.challenge("pw-c").await.unwrap().unwrap().consumed_at,
        Some(NOW + 3000)
    );
}

fn challenge_for(id_hash: &str, person: &str) -> Challenge {
    Challenge {
        id_hash: id_hash.into(),
        purpose: ChallengePurpose::Login,
        entry: Some(Entry::Person),
        person: Some(id(person)),
        enterprise: None,
        agency: None,
        target_phone: Some(phone("13800138000")),
        code_hash: None,
        code_expires_at: None,
        code_attempts: 0,
        face_nonce: None,
        face_status: None,
        face_expires_at: None,
        client_addr: Some("127.0.0.1".into()),
        created_at: NOW,
        expires_at: NOW + 300,
        consumed_at: None,
    }
}

async fn code_attempts_are_reserved<S: Store>(s: S) {
    seeded(&s).await;
    s.create_challenge(&challenge_for("k1", ALICE))
        .await
        .unwrap();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (s, barrier) = (s.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            s.reserve_code_attempt("k1", NOW, 5).await.unwrap()
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        if let Some(n) = t.await.unwrap() {
            got.push(n);
        }
    }
    got.sort();
    assert_eq!(got, [1, 2, 3, 4, 5]);
    assert_eq!(s.challenge("k1").await.unwrap().unwrap().code_attempts, 5);
    // Used or expired challenges admit nothing.
    s.create_challenge(&challenge_for("k2", ALICE))
        .await
        .unwrap();
    assert_eq!(
        s.reserve_code_attempt("k2", NOW + 300, 5).await.unwrap(),
        None
    );
    assert!(s.consume_challenge("k2", NOW).await.unwrap());
    assert_eq!(s.reserve_code_attempt("k2", NOW, 5).await.unwrap(), None);
    assert_eq!(s.reserve_code_attempt("zz", NOW, 5).await.unwrap(), None);
}

fn sms_limits(now: Timestamp) -> SmsLimits {
    SmsLimits {
        resend_secs: 60,
        number_daily: 10,
        person_daily: 20,
        address_hourly: 30,
        global_per_minute: 600,
        day_start: now - now.rem_euclid(86_400),
    }
}

async fn sms_at_once<S: Store>(
    s: &S,
    n: usize,
    mk: impl Fn(usize) -> (Phone, Option<IdNumber>, String, SmsLimits),
) -> Vec<SmsReservation> {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (s, barrier) = (s.clone(), barrier.clone());
        let (phone, person, addr, limits) = mk(i);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let req = SmsRequest {
                phone: &phone,
                purpose: ChallengePurpose::BindPhone,
                person: person.as_ref(),
                address: Some(&addr),
                now: NOW,
                limits,
            };
            s.reserve_sms(&req).await.unwrap()
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn granted(r: &[SmsReservation]) -> usize {
    r.iter().filter(|r| **r == SmsReservation::Granted).count()
}

fn refused_by(r: &[SmsReservation], limit: SmsLimit) -> usize {
    r.iter()
        .filter(|r| matches!(r, SmsReservation::Refused { limit: l, .. } if *l == limit))
        .count()
}

async fn sms_limits_hold_under_concurrency<S: Store>(s: S) {
    seeded(&s).await;
    let victim = phone("13700137000");
    // One number, the resend interval: one code of 60.
    let r = sms_at_once(&s, 60, |i| {
        (
            victim.clone(),
            Some(id(ALICE)),
            format!("10.0.0.{i}"),
            sms_limits(NOW),
        )
    })
    .await;
    assert_eq!(granted(&r), 1);
    assert_eq!(refused_by(&r, SmsLimit::ResendInterval), 59);
    assert_eq!(s.sms_stats(&victim, 0).await.unwrap().count, 1);
    // Without the interval, the daily limit of the number: 10 of 60 (one was sent already).
    let no_interval = |n: Timestamp| SmsLimits {
        resend_secs: 0,
        ..sms_limits(n)
    };
    let r = sms_at_once(&s, 60, |i| {
        (
            victim.clone(),
            Some(id(ALICE)),
            format!("10.0.1.{i}"),
            no_interval(NOW),
        )
    })
    .await;
    assert_eq!(granted(&r), 9);
    assert_eq!(refused_by(&r, SmsLimit::NumberDaily), 51);
    match r.iter().find(|r| **r != SmsReservation::Granted).unwrap() {
        SmsReservation::Refused {
            retry_after_secs, ..
        } => {
            assert_eq!(*retry_after_secs, sms_limits(NOW).day_start + 86_400 - NOW)
        }
        SmsReservation::Granted => unreachable!(),
    }
    // Per person across numbers: 20 a day (10 already went to the victim's number).
    let r = sms_at_once(&s, 40, |i| {
        (
            phone(&format!("1360013{:04}", i)),
            Some(id(ALICE)),
            format!("10.0.2.{i}"),
            no_interval(NOW),
        )
    })
    .await;
    assert_eq!(granted(&r), 10);
    assert_eq!(refused_by(&r, SmsLimit::PersonDaily), 30);
    // Per address across persons and numbers: 30 an hour.
    let r = sms_at_once(&s, 45, |i| {
        (
            phone(&format!("1350013{:04}", i)),
            None,
            "10.9.9.9".into(),
            no_interval(NOW),
        )
    })
    .await;
    assert_eq!(granted(&r), 30);
    assert_eq!(refused_by(&r, SmsLimit::AddressHourly), 15);
    // And in all: the global budget per minute (600 by default; 70 here, 50 are used).
    let tight = |n| SmsLimits {
        global_per_minute: 70,
        ..no_interval(n)
    };
    let r = sms_at_once(&s, 40, |i| {
        (
            phone(&format!("1340013{:04}", i)),
            None,
            format!("10.0.3.{i}"),
            tight(NOW),
        )
    })
    .await;
    assert_eq!(granted(&r), 20);
    assert_eq!(refused_by(&r, SmsLimit::GlobalPerMinute), 20);
}

async fn budgets_and_usernames<S: Store>(s: S) {
    seeded(&s).await;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(30));
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let (s, barrier) = (s.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            s.take_budget("login_fail:10.1.1.1", NOW, 12).await.unwrap()
        }));
    }
    let mut taken = 0;
    for t in tasks {
        if t.await.unwrap().is_some() {
            taken += 1;
        }
    }
    assert_eq!(taken, 12);
    s.give_back_budget("login_fail:10.1.1.1", NOW)
        .await
        .unwrap();
    assert_eq!(
        s.take_budget("login_fail:10.1.1.1", NOW, 12).await.unwrap(),
        Some(12)
    );
    assert_eq!(
        s.take_budget("login_fail:10.1.1.1", NOW, 12).await.unwrap(),
        None
    );
    // A new window starts from one.
    assert_eq!(
        s.take_budget("login_fail:10.1.1.1", NOW + 3600, 12)
            .await
            .unwrap(),
        Some(1)
    );

    // Usernames are case-insensitive.
    for account in ["WangFang", "WANGFANG", " wangfang "] {
        assert_eq!(
            s.person_by_account(account)
                .await
                .unwrap()
                .unwrap()
                .id_number,
            id(ALICE),
            "{account}"
        );
    }
    // Usernames that clash in case only (allowed by imports before this version): the exact
    // spelling finds its person, any other spelling finds nobody rather than a guess.
    let clash = r#"{"persons": [
        {"id_number": "110105198001010016", "name": "韩梅梅", "username": "hanmm"},
        {"id_number": "110105198001010032", "name": "韩梅", "username": "HanMM",
         "password": "Han-Mei-2026!"}
    ]}"#;
    import_seed(&s, clash, NOW).await.unwrap();
    let found = |account: &'static str| {
        let s = s.clone();
        async move {
            s.person_by_account(account)
                .await
                .unwrap()
                .map(|p| p.id_number)
        }
    };
    assert_eq!(found("hanmm").await, Some(id(CAROL)));
    assert_eq!(found("HanMM").await, Some(id("110105198001010032")));
    assert_eq!(found("HANMM").await, None, "ambiguous: no guess");
    assert_eq!(account_key("wangFANG"), "user:wangfang");
    assert_eq!(account_key("+86 138 0013 8000"), "phone:13800138000");
    assert_eq!(account_key("11010519491231002x"), "id:11010519491231002X");
}

scenario!(password_checks_are_reserved);
scenario!(code_attempts_are_reserved);
scenario!(sms_limits_hold_under_concurrency);
scenario!(budgets_and_usernames);

/// Two PostgreSQL instances (two pools, as two gateways) reserving on one account at once: the
/// limit holds across them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reservations_across_instances() {
    let Some(url) = pg_url().await else { return };
    let a = PgStore::connect(&url).await.unwrap();
    a.migrate().await.unwrap();
    let b = PgStore::connect(&url).await.unwrap();
    seeded(&a).await;
    let key = GuardKey::Person(id(ALICE));
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(60));
    let mut tasks = Vec::new();
    for i in 0..60 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (key, barrier) = (key.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            s.reserve_password_check(&key, NOW, &RULE).await.unwrap()
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        if t.await.unwrap() == CheckReservation::Admitted {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 5);
}

/// Step-up and the session centre (issue 19): a session's factor times, the lists of live
/// sessions with their devices, the devices a person logged in from, step-up challenges bound
/// to their session.
async fn step_up_and_session_lists<S: Store>(s: S) {
    seeded(&s).await;
    let mut rx = s.subscribe_invalidations();
    let mut a = session("sa", "ha", ALICE);
    a.enterprise = Some(tid(ACME));
    let device = SessionDevice {
        user_agent: "Mozilla/5.0 Chrome/120".into(),
        ua_family: "Chrome/Linux".into(),
        client_net: "203.0.113.*".into(),
    };
    s.create_session_on(&a, &device).await.unwrap();
    s.create_session(&session("sb", "hb", ALICE)).await.unwrap();
    s.create_session(&session("sc", "hc", CAROL)).await.unwrap();

    // Factor times: stored, read back in the slice, published as the session's invalidation.
    let slice = s.session_slice("ha").await.unwrap().unwrap();
    assert_eq!((slice.session.factor_at, slice.session.face_at), (NOW, 0));
    assert!(s.set_session_factor("sa", NOW + 100, false).await.unwrap());
    assert!(recv_within(&mut rx, &Invalidation::Session { id: "sa".into() }).await);
    assert!(s.set_session_factor("sa", NOW + 200, true).await.unwrap());
    let slice = s.session_slice("ha").await.unwrap().unwrap();
    assert_eq!(
        (slice.session.factor_at, slice.session.face_at),
        (NOW + 200, NOW + 200)
    );
    assert!(s.set_session_factor("sa", NOW + 300, false).await.unwrap());
    let slice = s.session_slice("ha").await.unwrap().unwrap();
    assert_eq!(
        (slice.session.factor_at, slice.session.face_at),
        (NOW + 300, NOW + 200)
    );
    assert!(!s.set_session_factor("nope", NOW, false).await.unwrap());

    // Lists: the person's own, with devices and names; the enterprise's; nothing revoked.
    let mine = s.person_sessions(&id(ALICE), NOW).await.unwrap();
    let ids: Vec<&str> = mine.iter().map(|l| l.session.id.as_str()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&"sa") && ids.contains(&"sb"));
    let sa = mine.iter().find(|l| l.session.id == "sa").unwrap();
    assert_eq!(sa.device, device);
    assert_eq!(sa.person_name.as_deref(), Some("王芳"));
    let sb = mine.iter().find(|l| l.session.id == "sb").unwrap();
    assert_eq!(sb.device, SessionDevice::default());
    let firm = s.enterprise_sessions(&tid(ACME), NOW).await.unwrap();
    assert_eq!(firm.len(), 1);
    assert_eq!(firm[0].session.id, "sa");
    assert!(s.revoke_session("sb", NOW).await.unwrap());
    assert_eq!(s.person_sessions(&id(ALICE), NOW).await.unwrap().len(), 1);
    // Past its absolute expiry a session is not listed.
    assert!(
        s.person_sessions(&id(ALICE), NOW + 28_800)
            .await
            .unwrap()
            .is_empty()
    );

    // Devices: new, then known within the window, new again after it.
    let window = 90 * 86_400;
    let alice = id(ALICE);
    assert!(
        !s.note_login_device(&alice, "Chrome/Linux", "203.0.113.*", NOW, window)
            .await
            .unwrap()
    );
    assert!(
        s.note_login_device(&alice, "Chrome/Linux", "203.0.113.*", NOW + 10, window)
            .await
            .unwrap()
    );
    assert!(
        !s.note_login_device(&alice, "Firefox/Linux", "203.0.113.*", NOW + 20, window)
            .await
            .unwrap()
    );
    assert!(
        !s.note_login_device(&alice, "Chrome/Linux", "198.51.100.*", NOW + 30, window)
            .await
            .unwrap()
    );
    assert!(
        !s.note_login_device(
            &alice,
            "Chrome/Linux",
            "203.0.113.*",
            NOW + 10 + window + 1,
            window
        )
        .await
        .unwrap()
    );

    // A step-up challenge names its session; another challenge names none.
    let mut c = challenge_for("step-up-hash", ALICE);
    c.purpose = ChallengePurpose::StepUp;
    s.create_step_up_challenge(&c, "sa").await.unwrap();
    assert_eq!(
        s.challenge("step-up-hash").await.unwrap().unwrap().purpose,
        ChallengePurpose::StepUp
    );
    assert_eq!(
        s.challenge_session("step-up-hash")
            .await
            .unwrap()
            .as_deref(),
        Some("sa")
    );
    s.create_challenge(&challenge_for("login-hash", ALICE))
        .await
        .unwrap();
    assert_eq!(s.challenge_session("login-hash").await.unwrap(), None);
    assert_eq!(s.challenge_session("unknown").await.unwrap(), None);
}

scenario!(step_up_and_session_lists);

/// Issue 17: PostgreSQL keeps audit events in day partitions. They are made ahead at migrate
/// and by each upkeep pass; an event whose day had no partition yet is kept (in the default
/// partition) and moved into its day's partition once that is made; retention drops whole days
/// and deletes the rest row by row; a journal replay stays idempotent on the (id, at) key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_audit_is_partitioned_by_day() {
    let Some(url) = pg_url().await else { return };
    let s = PgStore::connect(&url).await.unwrap();
    s.migrate().await.unwrap();
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let day = now.div_euclid(86_400);
    let name = |d: i64| {
        let t = time::OffsetDateTime::from_unix_timestamp(d * 86_400).unwrap();
        format!(
            "audit_events_d{:04}{:02}{:02}",
            t.year(),
            u8::from(t.month()),
            t.day()
        )
    };
    let exists = |n: String| {
        let url = url.clone();
        async move {
            let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL")
                .bind(n)
                .fetch_one(&mut db)
                .await
                .unwrap()
        }
    };
    for d in day - 1..=day + 3 {
        assert!(exists(name(d)).await, "{} made at migrate", name(d));
    }
    assert!(!exists(name(day + 4)).await);

    let ev = |id: &str, at: i64| AuditEvent {
        slice: None,
        ..decision(id, at, None, &["p.a"])
    };
    s.append_audit(&[
        ev("today", now),
        ev("ahead", (day + 10) * 86_400 + 5),
        ev("old", (day - 5) * 86_400),
    ])
    .await
    .unwrap();
    let home = |id: &'static str| {
        let url = url.clone();
        async move {
            let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query_scalar::<_, String>(
                "SELECT tableoid::regclass::text FROM audit_events WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&mut db)
            .await
            .unwrap()
        }
    };
    assert_eq!(home("today").await, name(day));
    assert_eq!(home("ahead").await, "audit_events_default");
    assert_eq!(home("old").await, "audit_events_default");

    // Ten days on: the upkeep makes that day's partition and moves the stray event into it.
    s.audit_upkeep((day + 10) * 86_400).await.unwrap();
    assert_eq!(home("ahead").await, name(day + 10));
    assert_eq!(s.count_audit().await.unwrap(), 3);

    // A journal replay of events the store already has inserts nothing and fails nothing.
    s.append_recovered_audit(&[ev("today", now), ev("ahead", (day + 10) * 86_400 + 5)])
        .await
        .unwrap();
    assert_eq!(s.count_audit().await.unwrap(), 3);

    // Retention up to tomorrow: yesterday's and today's partitions are dropped (today's held one
    // event), the old event is deleted from the default partition.
    let purged = s.purge_audit((day + 1) * 86_400).await.unwrap();
    assert_eq!(purged.events, 2, "{purged:?}");
    assert!(!exists(name(day)).await && !exists(name(day - 1)).await);
    assert!(exists(name(day + 1)).await, "tomorrow's partition stays");
    assert_eq!(s.count_audit().await.unwrap(), 1);
    let left: Vec<String> = sqlx::query_scalar("SELECT id FROM audit_events")
        .fetch_all(&mut db)
        .await
        .unwrap();
    assert_eq!(left, ["ahead"]);
    // The next upkeep makes its window's partitions again (empty ones, here).
    s.audit_upkeep(now).await.unwrap();
    assert!(exists(name(day)).await);
    assert!(exists(name(day + 3)).await);
}

/// Personnel updates (issue 22): applied only to the binding they were decided on, a widening
/// clears the person's confirmation, revoked bindings are not found, and a change is published.
async fn binding_updates<S: Store>(s: S) {
    seeded(&s).await;
    let b = s
        .create_binding(NewBinding {
            person: id(BOB),
            enterprise: tid(ACME),
            role: Role::TaxHandler,
            permissions: None,
            valid_from: NOW,
            valid_until: Some(NOW + 86_400),
            enterprise_confirmed: true,
            person_confirmed: true,
            by: ALICE.into(),
            granted_by: None,
            now: NOW,
        })
        .await
        .unwrap();
    let mut rx = s.subscribe_invalidations();
    let narrowed = s
        .update_binding(&BindingUpdate {
            expected: b.clone(),
            permissions: Some(vec![PermissionGroup::Declare]),
            valid_until: Some(NOW + 2 * 86_400),
            reconfirm: false,
            by: ALICE.into(),
            now: NOW + 1,
        })
        .await
        .unwrap();
    assert_eq!(narrowed.permissions, Some(vec![PermissionGroup::Declare]));
    assert_eq!(narrowed.valid_until, Some(NOW + 2 * 86_400));
    assert!(narrowed.person_confirmed);
    assert_eq!(
        (narrowed.updated_at, narrowed.updated_by.as_str()),
        (NOW + 1, ALICE)
    );
    assert!(recv_within(&mut rx, &Invalidation::Binding { id: b.id.clone() }).await);

    // Decided on the binding before the narrowing: refused, nothing changes.
    let stale = s
        .update_binding(&BindingUpdate {
            expected: b.clone(),
            permissions: None,
            valid_until: None,
            reconfirm: false,
            by: ALICE.into(),
            now: NOW + 2,
        })
        .await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "{stale:?}"
    );
    assert_eq!(s.binding(&b.id).await.unwrap().unwrap(), narrowed);

    let widened = s
        .update_binding(&BindingUpdate {
            expected: narrowed.clone(),
            permissions: Some(vec![PermissionGroup::Declare, PermissionGroup::Invoice]),
            valid_until: narrowed.valid_until,
            reconfirm: true,
            by: ALICE.into(),
            now: NOW + 3,
        })
        .await
        .unwrap();
    assert!(!widened.person_confirmed, "a widening waits for the person");
    assert!(widened.enterprise_confirmed);

    let revoked = s.revoke_binding(&b.id, ALICE, NOW + 4).await.unwrap();
    let gone = s
        .update_binding(&BindingUpdate {
            expected: revoked,
            permissions: None,
            valid_until: None,
            reconfirm: false,
            by: ALICE.into(),
            now: NOW + 5,
        })
        .await;
    assert!(matches!(gone, Err(StoreError::NotFound)), "{gone:?}");
}

/// A reset challenge's passed code (issue 22): recorded without using the challenge up, and
/// never on a used or expired one.
async fn verified_challenges<S: Store>(s: S) {
    seeded(&s).await;
    let mut c = challenge_for("reset1", ALICE);
    c.purpose = ChallengePurpose::ResetPassword;
    s.create_challenge(&c).await.unwrap();
    assert_eq!(
        s.challenge("reset1").await.unwrap().unwrap().purpose,
        ChallengePurpose::ResetPassword
    );
    assert_eq!(s.challenge_verified_at("reset1").await.unwrap(), None);
    assert!(s.mark_challenge_verified("reset1", NOW + 1).await.unwrap());
    assert_eq!(
        s.challenge_verified_at("reset1").await.unwrap(),
        Some(NOW + 1)
    );
    assert!(
        s.challenge("reset1")
            .await
            .unwrap()
            .unwrap()
            .consumed_at
            .is_none()
    );
    assert!(s.consume_challenge("reset1", NOW + 2).await.unwrap());
    assert!(!s.mark_challenge_verified("reset1", NOW + 3).await.unwrap());
    assert!(!s.mark_challenge_verified("unknown", NOW).await.unwrap());
    let mut late = challenge_for("reset2", ALICE);
    late.purpose = ChallengePurpose::ResetPassword;
    s.create_challenge(&late).await.unwrap();
    assert!(
        !s.mark_challenge_verified("reset2", NOW + 300)
            .await
            .unwrap()
    );
    assert_eq!(s.challenge_verified_at("unknown").await.unwrap(), None);
}

scenario!(binding_updates);
scenario!(verified_challenges);
