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
        .post("/auth/sms/send", json!({"challenge": challenge}), Some(&boss))
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
    assert_status(
        &env.get("/auth/session", Some(&boss)).await,
        StatusCode::OK,
    );
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
        .post("/auth/face/start", json!({"challenge": challenge}), Some(&me))
        .await;
    assert_status(&start, StatusCode::OK);
    let nonce = start.json()["nonce"].as_str().unwrap().to_string();
    let pending = env
        .post("/auth/face/complete", json!({"challenge": challenge}), Some(&me))
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
        .post("/auth/face/complete", json!({"challenge": challenge}), Some(&me))
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
    let login = env
        .login("enterprise", Some(ENT_A), WANG, WANG_PW)
        .await;
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
        (StatusCode::TOO_MANY_REQUESTS, "sms_too_frequent".to_string())
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
