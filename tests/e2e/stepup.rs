//! Issue 19, CONTRACT section 10: step-up. A stale factor is refused by the policies with 403
//! `step_up_required`, a step-up on the same session (SMS or face) makes it fresh, and the
//! action then goes ahead without a new session; a step-up challenge belongs to its session.

use http::StatusCode;
use serde_json::{Value, json};
use taxgate_e2e::*;
use taxgate_store::Store;

/// The public id of the session `token` (the `current` entry of its session list).
async fn session_id(env: &Env, token: &str) -> String {
    let list = env.get("/account/sessions", Some(token)).await;
    assert_status(&list, StatusCode::OK);
    list.json()
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .and_then(|s| s["id"].as_str())
        .expect("the current session is listed")
        .to_string()
}

/// Ages the factor of session `token` to an hour ago, as if it had logged in then.
async fn age_factor(env: &Env, token: &str) {
    let id = session_id(env, token).await;
    assert!(
        env.gw
            .core
            .store
            .set_session_factor(&id, unix_now() - 3600, false)
            .await
            .unwrap()
    );
}

#[track_caller]
fn assert_step_up_required(a: &Answer) {
    assert_eq!(
        (a.status, a.error_code()),
        (StatusCode::FORBIDDEN, "step_up_required".to_string()),
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    let e = &a.json()["error"];
    assert_eq!(e["step_up"]["factors"], json!(["sms", "face"]));
    assert_eq!(e["step_up"]["max_age_secs"], 600);
    assert!(e["message"].as_str().unwrap().contains("验证"));
    assert!(!e["message_en"].as_str().unwrap().is_empty());
}

/// `POST /auth/step-up` for `token`; returns the challenge.
async fn step_up(env: &Env, token: &str) -> (String, Value) {
    let a = env.post("/auth/step-up", json!({}), Some(token)).await;
    assert_status(&a, StatusCode::OK);
    let v = a.json();
    (v["challenge"].as_str().unwrap().to_string(), v)
}

/// The whole flow on one store: a fresh login adds a person, an aged factor cannot revoke,
/// a step-up by SMS on the same session can, and the token never changes.
async fn stale_factor_then_step_up(env: &Env) {
    let (boss, _) = env.login_wang().await;
    let add = env
        .post(
            "/account/personnel",
            json!({"id_number": ZHOU, "role": "tax_handler"}),
            Some(&boss),
        )
        .await;
    assert_status(&add, StatusCode::CREATED);
    let binding = add.json()["binding"].as_str().unwrap().to_string();

    age_factor(env, &boss).await;
    let revoke = format!("/account/personnel/{binding}/revoke");
    let refused = env.post(&revoke, json!({}), Some(&boss)).await;
    assert_step_up_required(&refused);
    // Reading needs no fresh factor, and the refusal changed nothing.
    let listed = env.get("/account/personnel", Some(&boss)).await;
    assert_status(&listed, StatusCode::OK);
    assert!(
        listed
            .json()
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["binding"] == binding.as_str() && b["status"] == "pending")
    );

    let (challenge, answer) = step_up(env, &boss).await;
    assert_eq!(answer["factors"], json!(["sms", "face"]));
    assert_eq!(answer["phone_masked"], "138****8000");
    let sent = env
        .post(
            "/auth/sms/send",
            json!({"challenge": challenge}),
            Some(&boss),
        )
        .await;
    assert_status(&sent, StatusCode::OK);
    let last = env.sms().last().cloned().unwrap();
    assert_eq!(
        (last["to"].as_str(), last["purpose"].as_str()),
        (Some("13800138000"), Some("step_up"))
    );
    let code = env.last_code("13800138000");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let bad = env
        .post(
            "/auth/sms/verify",
            json!({"challenge": challenge, "code": wrong}),
            Some(&boss),
        )
        .await;
    assert_eq!(
        (bad.status, bad.error_code()),
        (StatusCode::UNAUTHORIZED, "invalid_code".to_string())
    );
    assert_eq!(bad.json()["error"]["attempts_left"], 4);
    // Still refused: a wrong code is no factor.
    assert_step_up_required(&env.post(&revoke, json!({}), Some(&boss)).await);

    let ok = env
        .post(
            "/auth/sms/verify",
            json!({"challenge": challenge, "code": code}),
            Some(&boss),
        )
        .await;
    assert_status(&ok, StatusCode::OK);
    assert!(
        ok.headers.get("set-cookie").is_none(),
        "a step-up keeps the session token"
    );
    let view = ok.json();
    assert_eq!(view["person"], WANG);
    assert_eq!(view["enterprise"], ENT_A);
    assert_eq!(view["mfa"], "sms");
    assert!(view["factor_at"].is_string());
    assert_eq!(view["face_at"], Value::Null);

    let done = env.post(&revoke, json!({}), Some(&boss)).await;
    assert_status(&done, StatusCode::NO_CONTENT);
    assert_status(&env.get("/auth/session", Some(&boss)).await, StatusCode::OK);
    // Used up: the same challenge does not step up twice.
    let again = env
        .post(
            "/auth/sms/verify",
            json!({"challenge": challenge, "code": code}),
            Some(&boss),
        )
        .await;
    assert_eq!(again.error_code(), "challenge_expired");
}

#[tokio::test]
async fn stale_factor_is_refused_then_accepted_after_a_step_up_sqlite() {
    let env = Env::start("").await;
    stale_factor_then_step_up(&env).await;
}

#[tokio::test]
async fn stale_factor_is_refused_then_accepted_after_a_step_up_postgres() {
    let Some(url) = test_postgres_url() else {
        return;
    };
    let (env, _) = Env::start_on(&url).await;
    stale_factor_then_step_up(&env).await;
}

/// A face step-up: `/account/phone` refused when stale, the face scan on the step-up
/// challenge (with the session), then the new number's code goes out.
#[tokio::test]
async fn a_face_step_up_sets_face_at_and_lets_the_phone_change() {
    let env = Env::start("").await;
    let (me, _) = env
        .login_sms("person", None, ZHOU, ZHOU_PW, "13900000006")
        .await;
    age_factor(&env, &me).await;
    let change = json!({"phone": "13700000077"});
    assert_step_up_required(&env.post("/account/phone", change.clone(), Some(&me)).await);

    let (challenge, _) = step_up(&env, &me).await;
    let start = env
        .post(
            "/auth/face/start",
            json!({"challenge": challenge}),
            Some(&me),
        )
        .await;
    assert_status(&start, StatusCode::OK);
    let nonce = start.json()["nonce"].as_str().unwrap().to_string();
    let pending = env
        .post(
            "/auth/face/complete",
            json!({"challenge": challenge}),
            Some(&me),
        )
        .await;
    assert_eq!(pending.error_code(), "face_pending");
    let cb = face_callback_signed(
        env.gw.public,
        FACE_SECRET,
        unix_now(),
        &json!({"nonce": nonce, "id_number": ZHOU, "result": "pass"}),
    )
    .await;
    assert_status(&cb, StatusCode::NO_CONTENT);
    let done = env
        .post(
            "/auth/face/complete",
            json!({"challenge": challenge}),
            Some(&me),
        )
        .await;
    assert_status(&done, StatusCode::OK);
    assert!(done.headers.get("set-cookie").is_none());
    assert!(done.json()["face_at"].is_string());
    assert_eq!(done.json()["person"], ZHOU);

    let sent = env.post("/account/phone", change, Some(&me)).await;
    assert_status(&sent, StatusCode::OK);
}

/// A step-up challenge is bound to its session: another session of the same person, or no
/// session, cannot send its code, scan for it or complete it; its own session still can.
#[tokio::test]
async fn a_step_up_challenge_of_another_session_is_refused() {
    let env = Env::start("").await;
    let (a, _) = env.login_wang().await;
    let (b, _) = env.login_wang().await;
    assert_ne!(a, b);
    age_factor(&env, &a).await;
    age_factor(&env, &b).await;
    let (challenge, _) = step_up(&env, &a).await;

    let body = json!({"challenge": challenge});
    for path in ["/auth/sms/send", "/auth/face/start", "/auth/face/complete"] {
        let other = env.post(path, body.clone(), Some(&b)).await;
        assert_eq!(
            (other.status, other.error_code()),
            (StatusCode::UNAUTHORIZED, "challenge_expired".to_string()),
            "{path} from another session"
        );
        let none = env.post(path, body.clone(), None).await;
        assert_eq!(
            (none.status, none.error_code()),
            (StatusCode::UNAUTHORIZED, "login_required".to_string()),
            "{path} without a session"
        );
    }
    let sent = env.post("/auth/sms/send", body.clone(), Some(&a)).await;
    assert_status(&sent, StatusCode::OK);
    let code = env.last_code("13800138000");
    let with_code = json!({"challenge": challenge, "code": code});
    let stolen = env
        .post("/auth/sms/verify", with_code.clone(), Some(&b))
        .await;
    assert_eq!(stolen.error_code(), "challenge_expired");
    let as_login = env.post("/auth/sms/verify", with_code.clone(), None).await;
    assert_eq!(as_login.error_code(), "login_required");
    assert!(as_login.headers.get("set-cookie").is_none());

    // B is still stale; A completes its own challenge (the code was never consumed).
    let probe = json!({"phone": "13700000078"});
    assert_step_up_required(&env.post("/account/phone", probe.clone(), Some(&b)).await);
    let ok = env.post("/auth/sms/verify", with_code, Some(&a)).await;
    assert_status(&ok, StatusCode::OK);
    assert_step_up_required(&env.post("/account/phone", probe, Some(&b)).await);
}

#[tokio::test]
async fn a_step_up_needs_a_session() {
    let env = Env::start("").await;
    let a = env.post("/auth/step-up", json!({}), None).await;
    assert_eq!(
        (a.status, a.error_code()),
        (StatusCode::UNAUTHORIZED, "login_required".to_string())
    );
    let wrong_method = env.get("/auth/step-up", None).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
}

/// Step-up codes count like login codes: the wrong-code limit voids the challenge, and the
/// per-number resend interval holds.
#[tokio::test]
async fn step_up_codes_have_the_limits_of_login_codes() {
    let env = Env::start("[login]\nsms_resend_secs = 60\nsms_max_attempts = 2\n").await;
    // Log in by face so that the resend interval starts with the step-up's code.
    let login = env.login("enterprise", Some(ENT_A), WANG, WANG_PW).await;
    let lc = login.json()["challenge"].as_str().unwrap().to_string();
    let cb = env.face_scan(&lc, WANG, "pass").await;
    assert_status(&cb, StatusCode::NO_CONTENT);
    let done = env
        .post("/auth/face/complete", json!({"challenge": lc}), None)
        .await;
    assert_status(&done, StatusCode::OK);
    let token = session_token(&done);

    let (challenge, _) = step_up(&env, &token).await;
    let body = json!({"challenge": challenge});
    assert_status(
        &env.post("/auth/sms/send", body.clone(), Some(&token)).await,
        StatusCode::OK,
    );
    let again = env.post("/auth/sms/send", body, Some(&token)).await;
    assert_eq!(
        (again.status, again.error_code()),
        (
            StatusCode::TOO_MANY_REQUESTS,
            "sms_too_frequent".to_string()
        )
    );
    assert!(again.headers.get("retry-after").is_some());
    let code = env.last_code("13800138000");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let w = json!({"challenge": challenge, "code": wrong});
    assert_eq!(
        env.post("/auth/sms/verify", w.clone(), Some(&token))
            .await
            .error_code(),
        "invalid_code"
    );
    assert_eq!(
        env.post("/auth/sms/verify", w, Some(&token))
            .await
            .error_code(),
        "challenge_expired"
    );
    let right = json!({"challenge": challenge, "code": code});
    assert_eq!(
        env.post("/auth/sms/verify", right, Some(&token))
            .await
            .error_code(),
        "challenge_expired",
        "the right code after the last wrong one is too late"
    );
}

/// A policy author's rule, with no code: invoices need a factor from the last 300 s (the example
/// of policies/README.md). A downstream call with a stale factor is refused with the step-up
/// hint and never reaches the backend; after a step-up it goes through.
#[tokio::test]
async fn a_downstream_step_up_rule_is_policy_only() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let (text, policies) = config_with_watched_policies(dir.path(), &up.url());
    std::fs::write(
        policies.join("zz_invoice_step_up.cedar"),
        "@id(\"step_up.invoice\")\n@reason(\"step_up_required\")\n@step_up_max_age(\"300\")\n\
         @priority(\"90\")\nforbid (principal is Session, action == Action::\"invoice\", resource)\n\
         unless { principal has factor_at && principal.factor_at > 0 && \
         principal.factor_at >= context.now - 300 };\n",
    )
    .unwrap();
    let gw = Gateway::start(&text, dir.path()).await;
    taxgate_store::import_seed(&gw.core.store, &seed_json().to_string(), unix_now())
        .await
        .unwrap();
    let mut env = Env { dir, gw, up };
    let (boss, _) = env.login_wang().await;
    assert_status(
        &env.get("/api/invoice/issue", Some(&boss)).await,
        StatusCode::OK,
    );
    age_factor(&env, &boss).await;
    drain_seen(&mut env.up);
    let refused = env.get("/api/invoice/issue", Some(&boss)).await;
    assert_eq!(refused.error_code(), "step_up_required");
    assert_eq!(refused.json()["error"]["step_up"]["max_age_secs"], 300);
    assert!(
        drain_seen(&mut env.up).is_empty(),
        "nothing reached the backend"
    );
    // Other business is not concerned.
    assert_status(
        &env.get("/api/declare/x", Some(&boss)).await,
        StatusCode::OK,
    );

    let (challenge, _) = step_up(&env, &boss).await;
    let body = json!({"challenge": challenge});
    assert_status(
        &env.post("/auth/sms/send", body, Some(&boss)).await,
        StatusCode::OK,
    );
    let code = env.last_code("13800138000");
    let ok = env
        .post(
            "/auth/sms/verify",
            json!({"challenge": challenge, "code": code}),
            Some(&boss),
        )
        .await;
    assert_status(&ok, StatusCode::OK);
    assert_status(
        &env.get("/api/invoice/issue", Some(&boss)).await,
        StatusCode::OK,
    );
}

/// Two instances on one PostgreSQL: a factor aged or refreshed through one is what the other
/// decides on within a second (the session's invalidation crosses over LISTEN/NOTIFY).
#[tokio::test]
async fn a_step_up_on_one_instance_counts_on_the_other() {
    let Some(url) = test_postgres_url() else {
        return;
    };
    let (env, text) = Env::start_on(&url).await;
    let b = Gateway::start(&text, env.dir.path()).await;
    let (me, _) = env
        .login_sms("person", None, ZHOU, ZHOU_PW, "13900000006")
        .await;
    let on_b = |phone: &'static str| {
        let token = me.clone();
        let addr = b.public;
        async move {
            let req = http::Request::post("/account/phone")
                .header("host", "gw.test")
                .header("content-type", "application/json")
                .header("cookie", format!("taxgate_session={token}"))
                .body(full(json!({"phone": phone}).to_string()))
                .unwrap();
            send(addr, req).await
        }
    };
    // Cached on B while fresh.
    assert_status(&on_b("13700000091").await, StatusCode::OK);
    age_factor(&env, &me).await;
    let until = |want: &'static str, phone: &'static str| {
        let on_b = &on_b;
        async move {
            let started = std::time::Instant::now();
            loop {
                let r = on_b(phone).await;
                let code = if r.status == StatusCode::OK {
                    "ok".to_string()
                } else {
                    r.error_code()
                };
                if code == want {
                    return;
                }
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(1),
                    "instance B still answers {code}, not {want}, after 1 s"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    until("step_up_required", "13700000092").await;

    let (challenge, _) = step_up(&env, &me).await;
    assert_status(
        &env.post("/auth/sms/send", json!({"challenge": challenge}), Some(&me))
            .await,
        StatusCode::OK,
    );
    let code = env.last_code("13900000006");
    let ok = env
        .post(
            "/auth/sms/verify",
            json!({"challenge": challenge, "code": code}),
            Some(&me),
        )
        .await;
    assert_status(&ok, StatusCode::OK);
    until("ok", "13700000093").await;
    b.stop().await;
}
