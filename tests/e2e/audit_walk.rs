//! Issue 21 point 10: every decision and every security event is one audit record. The walk
//! calls every endpoint of the public API once, as a taxpayer would, and counts the records
//! each call left: none may leave none (allowed reads of the personnel list, identities and the
//! session view, SMS sends, wrong codes, phone changes and face starts used to).

use std::time::Duration;

use http::StatusCode;
use serde_json::json;
use taxgate_e2e::*;
use taxgate_store::Store;

/// The audit rows written so far, once the writer has caught up with `at_least`.
async fn records(env: &Env, at_least: i64) -> i64 {
    let store = env.gw.core.store.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let n = store.count_audit().await.unwrap();
        if n >= at_least || std::time::Instant::now() > deadline {
            // Let a batch that is still lingering land, so the next step counts only its own.
            tokio::time::sleep(Duration::from_millis(40)).await;
            return store.count_audit().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Run `step`, and assert it left at least one audit record.
macro_rules! audited {
    ($env:expr, $count:expr, $what:expr, $step:expr) => {{
        let answer = $step;
        let now = records(&$env, $count + 1).await;
        assert!(
            now > $count,
            "{} ({}) left no audit record",
            $what,
            answer.status
        );
        $count = now;
        answer
    }};
}

#[tokio::test]
async fn every_endpoint_leaves_an_audit_record() {
    let env = Env::start("").await;
    let mut n = records(&env, 0).await;

    // 企业业务 login: password, a wrong code, the right code.
    let login = audited!(
        env,
        n,
        "POST /auth/login",
        env.login("enterprise", Some(ENT_A), WANG, WANG_PW).await
    );
    let challenge = login.json()["challenge"].as_str().unwrap().to_string();
    audited!(
        env,
        n,
        "POST /auth/sms/send",
        env.post("/auth/sms/send", json!({"challenge": challenge}), None)
            .await
    );
    let code = env.last_code("13800138000");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let a = audited!(
        env,
        n,
        "POST /auth/sms/verify (wrong code)",
        env.post(
            "/auth/sms/verify",
            json!({"challenge": challenge, "code": wrong}),
            None
        )
        .await
    );
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let v = audited!(
        env,
        n,
        "POST /auth/sms/verify",
        env.post(
            "/auth/sms/verify",
            json!({"challenge": challenge, "code": code}),
            None
        )
        .await
    );
    assert_eq!(v.status, StatusCode::OK);
    let token = session_token(&v);
    let t = Some(token.as_str());

    for path in ["/auth/session", "/account/identities", "/account/personnel"] {
        let a = audited!(env, n, format!("GET {path}"), env.get(path, t).await);
        assert_eq!(a.status, StatusCode::OK, "{path}");
    }
    let added = audited!(
        env,
        n,
        "POST /account/personnel",
        env.post(
            "/account/personnel",
            json!({"id_number": ZHOU, "role": "tax_handler"}),
            t
        )
        .await
    );
    assert_status(&added, StatusCode::CREATED);
    let binding = added.json()["binding"].as_str().unwrap().to_string();
    audited!(
        env,
        n,
        "POST /account/personnel/{binding}/revoke",
        env.post(
            &format!("/account/personnel/{binding}/revoke"),
            json!({}),
            t
        )
        .await
    );
    audited!(
        env,
        n,
        "POST /account/switch",
        env.post(
            "/account/switch",
            json!({"enterprise": ENT_B, "role": "tax_handler"}),
            t
        )
        .await
    );
    audited!(env, n, "GET /api/query/x", env.get("/api/query/x", t).await);
    audited!(
        env,
        n,
        "POST /auth/password (wrong old password)",
        env.post(
            "/auth/password",
            json!({"old_password": "not-it", "new_password": "Another-Pass-2026!"}),
            t
        )
        .await
    );
    audited!(
        env,
        n,
        "POST /auth/logout",
        env.post("/auth/logout", json!({}), t).await
    );

    // 自然人业务: the person side and the phone change.
    let (person, _) = env
        .login_sms("person", None, ZHOU, ZHOU_PW, "13900000006")
        .await;
    n = records(&env, n + 1).await;
    let p = Some(person.as_str());
    audited!(
        env,
        n,
        "GET /account/authorizations",
        env.get("/account/authorizations", p).await
    );
    let started = audited!(
        env,
        n,
        "POST /account/phone",
        env.post("/account/phone", json!({"phone": "13700000009"}), p)
            .await
    );
    if started.status == StatusCode::OK {
        let challenge = started.json()["challenge"].as_str().unwrap().to_string();
        audited!(
            env,
            n,
            "POST /account/phone/verify",
            env.post(
                "/account/phone/verify",
                json!({"challenge": challenge, "code": env.last_code("13700000009")}),
                p
            )
            .await
        );
    }

    // The face factor: a start on a fresh challenge.
    let login = env.login("enterprise", Some(ENT_A), WANG, WANG_PW).await;
    n = records(&env, n + 1).await;
    let challenge = login.json()["challenge"].as_str().unwrap().to_string();
    audited!(
        env,
        n,
        "POST /auth/face/start",
        env.post("/auth/face/start", json!({"challenge": challenge}), None)
            .await
    );
    assert!(n > 0);
}

/// Issue 16: every kind of decision goes through the one gate and is recorded with the same
/// fields — a login's candidates, the identity a session is issued for, an account-centre call,
/// a switch, a binding change and a downstream request, allowed and denied alike.
#[tokio::test]
async fn every_kind_of_decision_is_audited_with_the_same_fields() {
    let env = Env::start("").await;
    let (boss, _) = env.login_wang().await;
    assert_eq!(
        env.get("/auth/session", Some(&boss)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        env.get("/api/declare/vat", Some(&boss)).await.status,
        StatusCode::OK
    );
    // A switch to an identity Wang does not hold: Cedar's deny, with its reason.
    let switch = env
        .post(
            "/account/switch",
            json!({"enterprise": ENT_B, "role": "tax_handler"}),
            Some(&boss),
        )
        .await;
    assert_eq!(switch.status, StatusCode::FORBIDDEN);
    assert_eq!(switch.error_code(), "not_linked");
    // A grant the personnel policies refuse: nobody adds a legal representative.
    let grant = env
        .post(
            "/account/personnel",
            json!({"id_number": ZHOU, "role": "legal_representative"}),
            Some(&boss),
        )
        .await;
    assert_eq!(grant.status, StatusCode::FORBIDDEN);
    assert_eq!(grant.error_code(), "grant_not_permitted");
    // A login the policies refuse (Li's binding is not confirmed by Li).
    let li = env.login("enterprise", Some(ENT_A), LI, LI_PW).await;
    assert_eq!(li.error_code(), "binding_pending");

    // Let the writer catch up, then read every decision record.
    records(&env, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let db = env.dir.path().join("taxgate.db");
    let script = format!(
        "import sqlite3,json\n\
         rows=sqlite3.connect('{}').execute(\"select action, allowed, policies, reason, \
         policy_version, client_addr, entry, at, person, session_id from audit_events \
         where action in ('login','view_session','declare','switch_to','grant_binding')\").fetchall()\n\
         print(json.dumps(rows))",
        db.display()
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let kinds = [
        ("login", true),
        ("login", false),
        ("view_session", true),
        ("declare", true),
        ("switch_to", false),
        ("grant_binding", false),
    ];
    for (action, allowed) in kinds {
        let matching: Vec<&serde_json::Value> = rows
            .iter()
            .filter(|r| r[0] == action && (r[1] == 1) == allowed)
            .collect();
        assert!(
            !matching.is_empty(),
            "no {action} allowed={allowed} record in {rows:?}"
        );
        for r in matching {
            let policies: Vec<String> = serde_json::from_str(r[2].as_str().unwrap_or("[]"))
                .unwrap_or_else(|e| panic!("{action}: policies {:?}: {e}", r[2]));
            if allowed {
                assert!(
                    !policies.is_empty(),
                    "{action}: an allow names its policies: {r}"
                );
            } else {
                assert!(r[3].is_string(), "{action}: a deny names its reason: {r}");
            }
            assert_eq!(
                r[4].as_str().map(str::len),
                Some(64),
                "{action}: policy version: {r}"
            );
            assert_eq!(r[5], "127.0.0.1", "{action}: client: {r}");
            assert!(r[6].is_string(), "{action}: entry: {r}");
            assert!(r[7].as_i64().is_some_and(|t| t > 0), "{action}: time: {r}");
            assert!(r[8].is_string(), "{action}: person: {r}");
        }
    }
    // Questions asked for a live session name it.
    for r in rows.iter().filter(|r| r[0] != "login") {
        assert!(r[9].is_string(), "the session of {r}");
    }
}
