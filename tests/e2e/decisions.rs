//! Issue 4: downstream requests decided by the Cedar policies, end to end.

use std::time::Duration;

use http::{Request, StatusCode};
use taxgate_e2e::*;
use taxgate_store::Store;

#[tokio::test]
async fn allowed_requests_reach_the_upstream_with_identity_headers() {
    let mut env = Env::start("").await;
    let (token, _) = env.login_wang().await;
    let req = Request::post("/api/declare/vat")
        .header("host", "gw.test")
        .header("cookie", format!("lang=zh; taxgate_session={token}"))
        .header("x-taxgate-person", "110105194912310021")
        .header("X-Taxgate-Role", "admin")
        .body(full("{}"))
        .unwrap();
    let a = send(env.gw.public, req).await;
    assert_eq!(a.status, StatusCode::OK);
    let seen = env.up.next_seen().await;
    assert_eq!(seen.headers_named("x-taxgate-person"), vec![WANG]);
    assert_eq!(seen.header("x-taxgate-enterprise"), Some(ENT_A));
    assert_eq!(
        seen.headers_named("x-taxgate-role"),
        vec!["legal_representative"]
    );
    assert_eq!(seen.header("x-taxgate-entry"), Some("enterprise"));
    assert!(seen.header("x-taxgate-agency").is_none());
    let decision = seen.header("x-taxgate-decision").unwrap().to_string();
    assert_eq!(decision.len(), 24);
    assert_eq!(
        seen.header("cookie"),
        Some("lang=zh"),
        "the session cookie stays at the gateway"
    );

    // Every decision is audited, allow and deny, with the policy version.
    let denied = env.get("/api/personal/x", Some(&token)).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let version = env.gw.core.engine.version().to_string();
    assert!(
        env.gw.core.store.count_audit().await.unwrap() >= 4,
        "login, session, allow, deny"
    );
    assert_eq!(version.len(), 64);
}

#[tokio::test]
async fn no_session_is_401_and_browsers_go_to_login() {
    let env = Env::start("").await;
    let a = env.get("/api/declare/x", None).await;
    assert_eq!(
        (a.status, a.error_code()),
        (StatusCode::UNAUTHORIZED, "login_required".into())
    );
    let forged = env.get("/api/declare/x", Some(&"A".repeat(43))).await;
    assert_eq!(forged.error_code(), "login_required");
    let browser = send(
        env.gw.public,
        Request::get("/api/declare/x")
            .header("accept", "text/html,application/xhtml+xml")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(browser.status, StatusCode::FOUND);
    // Back to the page after the login (issue 22 point 4).
    assert_eq!(browser.headers["location"], "/login?next=/api/declare/x");
}

#[tokio::test]
async fn role_defaults_and_entry_rules_decide_downstream() {
    let env = Env::start("").await;
    // 孙丽 is a tax handler: declare, query, tax affairs; no invoices by default.
    let a = env.login("enterprise", Some(ENT_A), SUN, SUN_PW).await;
    let c = a.json()["challenge"].as_str().unwrap().to_string();
    let cb = env.face_scan(&c, SUN, "pass").await;
    assert_eq!(cb.status, StatusCode::NO_CONTENT);
    let done = env
        .post(
            "/auth/face/complete",
            serde_json::json!({"challenge": c}),
            None,
        )
        .await;
    let sun = session_token(&done);
    for (path, status) in [
        ("/api/declare/x", StatusCode::OK),
        ("/api/query/x", StatusCode::OK),
        ("/api/tax-affairs/x", StatusCode::OK),
        ("/api/invoice/x", StatusCode::FORBIDDEN),
        ("/api/personal/x", StatusCode::FORBIDDEN),
    ] {
        let a = env.get(path, Some(&sun)).await;
        assert_eq!(a.status, status, "tax handler {path}");
        if status == StatusCode::FORBIDDEN {
            assert_eq!(a.error_code(), "not_permitted", "{path}");
        }
    }

    // Person entry: personal tax only.
    let (person, _) = env
        .login_sms("person", None, ZHOU, ZHOU_PW, "13900000006")
        .await;
    assert_eq!(
        env.get("/api/personal/x", Some(&person)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        env.get("/api/declare/x", Some(&person)).await.status,
        StatusCode::FORBIDDEN
    );

    // An agent who has not picked a client acts for nobody.
    let (agent, _) = env
        .login_sms("agent", Some(AGENCY), CHEN, CHEN_PW, "13900000004")
        .await;
    let a = env.get("/api/declare/x", Some(&agent)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.error_code(), "client_not_selected");
}

#[tokio::test]
async fn a_revoked_binding_is_refused_on_the_next_request() {
    let env = Env::start("").await;
    let (token, _) = env.login_wang().await;
    assert_eq!(
        env.get("/api/declare/x", Some(&token)).await.status,
        StatusCode::OK
    );
    let store = &env.gw.core.store;
    let binding = store
        .bindings_between(
            &taxgate_store::IdNumber::parse(WANG).unwrap(),
            &taxgate_store::TaxpayerId::parse(ENT_A).unwrap(),
        )
        .await
        .unwrap()
        .remove(0);
    store
        .revoke_binding(&binding.id, "test", unix_now())
        .await
        .unwrap();
    // The store's invalidation reaches the gateway's cache before the next request.
    let a = env.get("/api/declare/x", Some(&token)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.error_code(), "not_linked");
}

#[tokio::test]
async fn broken_policies_are_never_activated_and_fixes_are_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let (text, policies) = config_with_watched_policies(dir.path(), &up.url());
    let gw = Gateway::start(&text, dir.path()).await;
    let status = |gw: &Gateway| {
        let addr = gw.admin;
        async move { get(addr, "/admin/policies").await.json() }
    };
    let before = status(&gw).await;
    assert_eq!(before["last_error"], serde_json::Value::Null);
    let v1 = before["version"].as_str().unwrap().to_string();

    // A syntax error: refused, the last good set keeps serving.
    std::fs::write(
        policies.join("zz-broken.cedar"),
        "permit (principal, action, resource",
    )
    .unwrap();
    let mut after = before.clone();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = status(&gw).await;
        if after["last_error"].is_string() {
            break;
        }
    }
    assert!(
        after["last_error"]
            .as_str()
            .unwrap()
            .contains("zz-broken.cedar"),
        "{after}"
    );
    assert_eq!(
        after["version"],
        v1.as_str(),
        "the broken set was activated"
    );
    let metrics = String::from_utf8_lossy(&get(gw.admin, "/metrics").await.body).to_string();
    assert!(
        metrics.contains("taxgate_policy_reload_failures_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("taxgate_policy_last_reload_failed 1"));

    // A schema violation through the admin endpoint: refused as well.
    std::fs::write(
        policies.join("zz-broken.cedar"),
        "@id(\"bad\")\npermit (principal, action == Action::\"declare\", resource) when { principal.no_such_attr };",
    )
    .unwrap();
    let r = send(
        gw.admin,
        Request::post("/admin/policies/reload")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.json()["version"], v1.as_str());
    assert!(r.json()["last_error"].is_string());

    // Fixed: the watcher applies the change.
    std::fs::remove_file(policies.join("zz-broken.cedar")).unwrap();
    std::fs::write(
        policies.join("zz-extra.cedar"),
        "@id(\"extra.noop\")\n@reason(\"not_permitted\")\nforbid (principal, action == Action::\"declare\", resource) when { false };\n",
    )
    .unwrap();
    let mut fixed = after.clone();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        fixed = status(&gw).await;
        if fixed["version"] != v1.as_str() && fixed["last_error"].is_null() {
            break;
        }
    }
    assert_ne!(
        fixed["version"],
        v1.as_str(),
        "the watched change was not applied: {fixed}"
    );
    assert!(fixed["last_error"].is_null());
    assert_eq!(get(gw.admin, "/readyz").await.status, StatusCode::OK);
    gw.stop().await;
}
