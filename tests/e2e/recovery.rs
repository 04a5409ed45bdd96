//! Issue 15 points 2, 7, 11, 12 and issue 21 point 11, as an attacker would try them: phone
//! recovery (找回手机号码) that needs the face, a failed face that ends the challenge, strong
//! new passwords, secure start-up defaults and the face-callback budget.

use http::StatusCode;
use serde_json::json;
use taxgate_e2e::*;
use taxgate_store::{Phone, Store};

const ATTACKER_PHONE: &str = "13700000009";

async fn phone_of(env: &Env, person: &str) -> Option<Phone> {
    env.gw.person(person).await.phone
}

/// Whether the session behind `token` is revoked in the store (not only refused by a cache).
async fn revoked(env: &Env, token: &str) -> bool {
    env.gw
        .core
        .store
        .session_slice(&taxgate_gateway::authn::token::hash(token))
        .await
        .unwrap()
        .is_none_or(|s| s.session.revoked_at.is_some())
}

/// The attack of issue 15 point 2: with 王芳's password alone, move her second factor to the
/// attacker's number and log in by SMS. Now nothing is sent before a face scan of 王芳 passed,
/// and every step that would send or use a code answers 403 `face_required`.
#[tokio::test]
async fn recovery_with_the_password_alone_sends_nothing() {
    let env = Env::start("").await;
    let a = env
        .post(
            "/auth/phone/recover",
            json!({"account": "wangfang", "password": WANG_PW, "phone": ATTACKER_PHONE}),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let v = a.json();
    assert_eq!(v["factors"], json!(["face"]));
    assert!(v.get("phone_masked").is_none());
    let c = v["challenge"].as_str().unwrap().to_string();
    assert!(env.sms().is_empty(), "nothing is sent yet: {:?}", env.sms());

    let send = env
        .post("/auth/sms/send", json!({"challenge": c}), None)
        .await;
    assert_eq!(
        (send.status, send.error_code()),
        (StatusCode::FORBIDDEN, "face_required".into())
    );
    let verify = env
        .post(
            "/auth/phone/recover/verify",
            json!({"challenge": c, "code": "123456"}),
            None,
        )
        .await;
    assert_eq!(
        (verify.status, verify.error_code()),
        (StatusCode::FORBIDDEN, "face_required".into())
    );
    // A face scan started but not passed is not enough either.
    let start = env
        .post("/auth/face/start", json!({"challenge": c}), None)
        .await;
    assert_eq!(start.status, StatusCode::OK);
    let pending = env
        .post("/auth/face/complete", json!({"challenge": c}), None)
        .await;
    assert_eq!(pending.error_code(), "face_pending");
    let verify = env
        .post(
            "/auth/phone/recover/verify",
            json!({"challenge": c, "code": "123456"}),
            None,
        )
        .await;
    assert_eq!(verify.error_code(), "face_required");
    assert!(env.sms().is_empty());
    assert_eq!(
        phone_of(&env, WANG).await,
        Some(Phone::parse("13800138000").unwrap())
    );
    // The attacker's own face is not 王芳's: the challenge fails for good.
    let mine = env.face_scan(&c, ZHOU, "pass").await;
    assert_eq!(mine.error_code(), "identity_mismatch");
    let verify = env
        .post(
            "/auth/phone/recover/verify",
            json!({"challenge": c, "code": "123456"}),
            None,
        )
        .await;
    assert_eq!(
        (verify.status, verify.error_code()),
        (StatusCode::UNAUTHORIZED, "face_failed".into())
    );
    assert!(env.sms().is_empty());
    // 王芳's SMS login still goes to her own number.
    let login = env.login("person", None, WANG, WANG_PW).await;
    assert_eq!(login.json()["phone_masked"], "138****8000");
}

/// A migrated user's initial password (the last six characters of the ID number) is all an
/// attacker needs to know; recovery still asks for the person's face.
#[tokio::test]
async fn a_migrated_user_cannot_be_recovered_with_the_initial_password() {
    let env = Env::start("").await;
    let a = env
        .post(
            "/auth/phone/recover",
            json!({"account": ZHAO, "password": &ZHAO[12..], "phone": ATTACKER_PHONE}),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["factors"], json!(["face"]));
    let c = a.json()["challenge"].as_str().unwrap().to_string();
    let v = env
        .post(
            "/auth/phone/recover/verify",
            json!({"challenge": c, "code": "000000"}),
            None,
        )
        .await;
    assert_eq!(v.error_code(), "face_required");
    assert!(env.sms().iter().all(|m| m["to"] != ATTACKER_PHONE));
    assert_eq!(
        phone_of(&env, ZHAO).await,
        Some(Phone::parse("13900000003").unwrap())
    );
}

/// A session by face (the SMS resend interval does not get in the way).
async fn login_face(env: &Env, ent: Option<&str>, account: &str, pw: &str) -> String {
    let entry = if ent.is_some() {
        "enterprise"
    } else {
        "person"
    };
    let a = env.login(entry, ent, account, pw).await;
    let c = a.json()["challenge"].as_str().unwrap().to_string();
    assert_eq!(
        env.face_scan(&c, account, "pass").await.status,
        StatusCode::NO_CONTENT
    );
    let done = env
        .post("/auth/face/complete", json!({"challenge": c}), None)
        .await;
    assert_eq!(done.status, StatusCode::OK);
    session_token(&done)
}

/// The whole recovery: face first, then the code to the new number, then the number moves, the
/// old number and the number's old holder are told, and every session of the person dies.
#[tokio::test]
async fn recovery_after_the_face_moves_the_number_notifies_and_revokes_sessions() {
    let env = Env::start("\n[login]\nsms_resend_secs = 60\n").await;
    // 王芳 is logged in twice (as an attacker who knew her password and phone might be).
    let (first, _) = env
        .login_sms("person", None, WANG, WANG_PW, "13800138000")
        .await;
    let second = login_face(&env, Some(ENT_A), WANG, WANG_PW).await;
    // Her new number is 周杰's.
    let new_phone = "13900000006";
    let before = env.sms().len();
    let a = env
        .post(
            "/auth/phone/recover",
            json!({"account": WANG, "password": WANG_PW, "phone": new_phone}),
            None,
        )
        .await;
    let c = a.json()["challenge"].as_str().unwrap().to_string();
    assert_eq!(env.sms().len(), before, "nothing sent before the face");
    let cb = env.face_scan(&c, WANG, "pass").await;
    assert_eq!(cb.status, StatusCode::NO_CONTENT);
    let done = env
        .post("/auth/face/complete", json!({"challenge": c}), None)
        .await;
    assert_eq!(done.status, StatusCode::OK);
    assert_eq!(
        done.json(),
        json!({"challenge": c, "resend_after_secs": 60})
    );
    let sent = env.sms();
    assert_eq!(sent.len(), before + 1);
    let m = sent.last().unwrap();
    assert_eq!(
        (m["to"].as_str(), m["purpose"].as_str()),
        (Some(new_phone), Some("recover_phone"))
    );
    let code6 = m["code"].as_str().unwrap().to_string();
    // Nothing moved yet, and nobody was told yet.
    assert_eq!(
        phone_of(&env, ZHOU).await,
        Some(Phone::parse(new_phone).unwrap())
    );
    assert!(env.phone_notices().is_empty());
    assert!(!revoked(&env, &first).await);

    let wrong = if code6 == "000000" {
        "111111"
    } else {
        "000000"
    };
    let bad = env
        .post(
            "/auth/phone/recover/verify",
            json!({"challenge": c, "code": wrong}),
            None,
        )
        .await;
    assert_eq!(
        (bad.status, bad.error_code()),
        (StatusCode::UNAUTHORIZED, "invalid_code".into())
    );
    let ok = env
        .post(
            "/auth/phone/recover/verify",
            json!({"challenge": c, "code": code6}),
            None,
        )
        .await;
    assert_status(&ok, StatusCode::NO_CONTENT);
    // 一号一人: the number is 王芳's and no longer 周杰's.
    assert_eq!(
        phone_of(&env, WANG).await,
        Some(Phone::parse(new_phone).unwrap())
    );
    assert_eq!(phone_of(&env, ZHOU).await, None);
    // Her previous number and the number's previous holder each got one notice, no code.
    let mut notices = env.phone_notices();
    notices.sort();
    assert_eq!(
        notices,
        vec!["13800138000".to_string(), new_phone.to_string()]
    );
    // Every session of 王芳 is revoked in the store and refused at once.
    for token in [&first, &second] {
        assert!(revoked(&env, token).await);
        let s = env.get("/auth/session", Some(token)).await;
        assert_eq!(
            (s.status, s.error_code()),
            (StatusCode::UNAUTHORIZED, "login_required".into())
        );
    }
    // The challenge is used up.
    let again = env
        .post(
            "/auth/phone/recover/verify",
            json!({"challenge": c, "code": code6}),
            None,
        )
        .await;
    assert_eq!(again.error_code(), "challenge_expired");
    // The next login's code goes to the new number.
    let login = env.login("person", None, WANG, WANG_PW).await;
    assert_eq!(login.json()["phone_masked"], "139****0006");
}

/// 孙丽 has no phone and takes a number nobody holds: there is nobody to tell.
#[tokio::test]
async fn recovery_of_a_person_without_a_phone_tells_nobody_else() {
    let env = Env::start("").await;
    let c = env
        .recover_until_code(SUN, SUN_PW, "13700000001", SUN)
        .await;
    let code6 = env.last_code("13700000001");
    let ok = env
        .post(
            "/auth/phone/recover/verify",
            json!({"challenge": c, "code": code6}),
            None,
        )
        .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT);
    assert_eq!(
        phone_of(&env, SUN).await,
        Some(Phone::parse("13700000001").unwrap())
    );
    assert!(env.phone_notices().is_empty());
}

/// `/account/phone` tells the previous number and the old holder too.
#[tokio::test]
async fn an_account_phone_change_notifies_the_previous_number_and_the_old_holder() {
    let env = Env::start("").await;
    let (me, _) = env
        .login_sms("person", None, ZHOU, ZHOU_PW, "13900000006")
        .await;
    let start = env
        .post("/account/phone", json!({"phone": "13800138000"}), Some(&me))
        .await;
    assert_eq!(start.status, StatusCode::OK);
    let c = start.json()["challenge"].as_str().unwrap().to_string();
    assert!(env.phone_notices().is_empty());
    let v = env
        .post(
            "/account/phone/verify",
            json!({"challenge": c, "code": env.last_code("13800138000")}),
            Some(&me),
        )
        .await;
    assert_eq!(v.status, StatusCode::NO_CONTENT);
    let mut notices = env.phone_notices();
    notices.sort();
    assert_eq!(
        notices,
        vec!["13800138000".to_string(), "13900000006".to_string()]
    );
    // The session that changed its own number lives on.
    assert_eq!(
        env.get("/auth/session", Some(&me)).await.status,
        StatusCode::OK
    );
}

// ---- issue 15 point 7: a failed face fails the whole challenge -------------------------------

async fn every_later_call_is_face_failed(env: &Env, c: &str) {
    for path in ["/auth/face/start", "/auth/face/complete", "/auth/sms/send"] {
        let a = env.post(path, json!({"challenge": c}), None).await;
        assert_eq!(
            (a.status, a.error_code()),
            (StatusCode::UNAUTHORIZED, "face_failed".into()),
            "{path}"
        );
    }
    let a = env
        .post(
            "/auth/sms/verify",
            json!({"challenge": c, "code": "123456"}),
            None,
        )
        .await;
    assert_eq!(
        (a.status, a.error_code()),
        (StatusCode::UNAUTHORIZED, "face_failed".into()),
        "/auth/sms/verify"
    );
}

#[tokio::test]
async fn a_failed_face_ends_the_login_challenge() {
    let env = Env::start("").await;
    let a = env.login("enterprise", Some(ENT_A), WANG, WANG_PW).await;
    let c = a.json()["challenge"].as_str().unwrap().to_string();
    let fail = env.face_scan(&c, WANG, "fail").await;
    assert_eq!(fail.status, StatusCode::NO_CONTENT);
    every_later_call_is_face_failed(&env, &c).await;
    // No second scan was started: the nonce in the store is still the failed one.
    let stored = env
        .gw
        .core
        .store
        .challenge(&taxgate_gateway::authn::token::hash(&c))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.face_status, Some(taxgate_store::FaceStatus::Failed));
    assert!(env.sms().is_empty(), "no code after a failed face");
}

#[tokio::test]
async fn an_identity_mismatch_ends_the_login_challenge() {
    let env = Env::start("").await;
    let a = env.login("person", None, WANG, WANG_PW).await;
    let c = a.json()["challenge"].as_str().unwrap().to_string();
    let other = env.face_scan(&c, ZHOU, "pass").await;
    assert_eq!(other.error_code(), "identity_mismatch");
    every_later_call_is_face_failed(&env, &c).await;
}

#[tokio::test]
async fn a_failed_face_ends_the_recovery_challenge() {
    let env = Env::start("").await;
    let a = env
        .post(
            "/auth/phone/recover",
            json!({"account": WANG, "password": WANG_PW, "phone": ATTACKER_PHONE}),
            None,
        )
        .await;
    let c = a.json()["challenge"].as_str().unwrap().to_string();
    let fail = env.face_scan(&c, WANG, "fail").await;
    assert_eq!(fail.status, StatusCode::NO_CONTENT);
    every_later_call_is_face_failed(&env, &c).await;
    let v = env
        .post(
            "/auth/phone/recover/verify",
            json!({"challenge": c, "code": "123456"}),
            None,
        )
        .await;
    assert_eq!(v.error_code(), "face_failed");
    assert!(env.sms().is_empty());
}

/// The face callback still answers as before for the app backend: a bad signature is refused.
#[tokio::test]
async fn a_badly_signed_callback_changes_nothing() {
    let env = Env::start("").await;
    let a = env.login("person", None, WANG, WANG_PW).await;
    let c = a.json()["challenge"].as_str().unwrap().to_string();
    let start = env
        .post("/auth/face/start", json!({"challenge": c}), None)
        .await;
    let nonce = start.json()["nonce"].as_str().unwrap().to_string();
    let body = json!({"nonce": nonce, "id_number": WANG, "result": "fail"});
    let bad = face_callback_signed(env.gw.public, "not-the-secret", unix_now(), &body).await;
    assert_eq!(bad.error_code(), "bad_signature");
    let pending = env
        .post("/auth/face/complete", json!({"challenge": c}), None)
        .await;
    assert_eq!(pending.error_code(), "face_pending");
}

// ---- issue 15 point 12: secure by default --------------------------------------------------

/// A test config with its `[upstream_identity]` section removed.
fn config_without_identity(dir: &std::path::Path) -> String {
    let text = config_text(dir, "http://127.0.0.1:9", "");
    let section = test_identity_section(dir);
    assert!(text.contains(&section));
    text.replace(&section, "")
}

#[test]
fn serve_without_upstream_identity_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("taxgate.toml");
    std::fs::write(&cfg, config_without_identity(dir.path())).unwrap();
    let mut child = Killed(
        std::process::Command::new(taxgate_bin())
            .args(["serve", "--config"])
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("serve.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    // A gateway that starts never exits by itself: give it 20 s to refuse.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "taxgate serve started without [upstream_identity]"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("upstream_identity"), "{stderr}");
    assert!(
        stderr.contains("disabled = true"),
        "says how to opt out: {stderr}"
    );
}

#[tokio::test]
async fn the_in_process_gateway_refuses_too() {
    let dir = tempfile::tempdir().unwrap();
    let config = taxgate_gateway::config::Config::from_toml(
        &config_without_identity(dir.path()),
        "test.toml",
        dir.path(),
    )
    .unwrap();
    match taxgate_gateway::run::serve(config, taxgate_gateway::server::Shutdown::new()).await {
        Err(taxgate_gateway::server::StartError::Config { key, .. }) => {
            assert_eq!(key, "upstream_identity")
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("started without [upstream_identity]"),
    }
}

#[tokio::test]
async fn serve_with_identity_disabled_starts_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(
        dir.path(),
        "http://127.0.0.1:9",
        "\n[upstream_identity]\ndisabled = true\n",
    );
    assert!(!text.contains("signing_key"));
    let child = ServeChild::start(dir.path(), "disabled", &text).await;
    drop(child);
    let log = std::fs::read_to_string(dir.path().join("disabled.log")).unwrap();
    assert!(
        log.contains("WARN") && log.contains("disabled = true"),
        "no warning: {log}"
    );
}

/// A child process killed when the test ends, passing or not.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two free loopback ports in a row (the demo's admin port is its port + 1).
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port < 65535 && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two free ports in a row");
}

/// `taxgate demo` in `cwd` until its admin listener serves the JWKS; returns the key ids.
async fn demo_jwks_kids(cwd: &std::path::Path) -> Vec<String> {
    // Another test may take the free ports first: the demo then exits at once, and we retry.
    for _ in 0..3 {
        if let Some(kids) = demo_jwks_kids_once(cwd).await {
            return kids;
        }
    }
    panic!("taxgate demo could not bind its ports three times");
}

/// One demo run; `None` when it exited because its ports were taken.
async fn demo_jwks_kids_once(cwd: &std::path::Path) -> Option<Vec<String>> {
    let port = free_port_pair();
    let log = cwd.join(format!("demo-{port}.log"));
    let mut child = Killed(
        std::process::Command::new(taxgate_bin())
            .args(["demo", "--port", &port.to_string()])
            .current_dir(cwd)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let admin: std::net::SocketAddr = format!("127.0.0.1:{}", port + 1).parse().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let jwks = loop {
        let req = http::Request::get("/.well-known/jwks.json")
            .body(empty())
            .unwrap();
        match try_send(admin, req).await {
            Ok(a) if a.status == StatusCode::OK => break a.json(),
            Ok(a) => panic!(
                "demo JWKS: {} {}",
                a.status,
                String::from_utf8_lossy(&a.body)
            ),
            Err(_) => {}
        }
        let out = || std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(status) = child.0.try_wait().unwrap() {
            if out().contains("in use") {
                return None;
            }
            panic!("taxgate demo exited ({status}): {}", out());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "taxgate demo did not serve its JWKS in 60 s: {}",
            out()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    drop(child);
    Some(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect(),
    )
}

#[tokio::test]
async fn demo_makes_its_own_key_once_and_reuses_it() {
    let cwd = tempfile::tempdir().unwrap();
    let key = cwd.path().join("demo-data/assertion.pem");
    let first = demo_jwks_kids(cwd.path()).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(key.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let pem = std::fs::read(&key).unwrap();
    let second = demo_jwks_kids(cwd.path()).await;
    assert_eq!(first, second, "the second run reuses the key");
    assert_eq!(std::fs::read(&key).unwrap(), pem);
}

// ---- issue 15 point 11: new passwords that are hard to guess --------------------------------

#[tokio::test]
async fn guessable_and_personal_passwords_are_weak_and_say_why() {
    let env = Env::start("").await;
    let (token, _) = env
        .login_sms("person", None, WANG, WANG_PW, "13800138000")
        .await;
    let change = |new: &'static str| {
        let token = token.clone();
        let env = &env;
        async move {
            env.post(
                "/auth/password",
                json!({"old_password": WANG_PW, "new_password": new}),
                Some(&token),
            )
            .await
        }
    };
    for (new, zh, en) in [
        ("Password1", "容易被猜到", "too easy to guess"),
        ("Qwerty123!", "容易被猜到", "too easy to guess"),
        ("Tel13800138000!", "手机号码", "phone number"),
        ("Tg-19900101-k!", "出生日期", "birth date"),
        ("WangFang-Qz7!", "用户名", "username"),
        ("Abc011238xyz!", "身份证号码", "ID number"),
        (WANG_PW, "原密码", "old one"),
    ] {
        let a = change(new).await;
        assert_eq!(
            (a.status, a.error_code()),
            (StatusCode::BAD_REQUEST, "weak_password".into()),
            "{new}"
        );
        let e = &a.json()["error"];
        assert!(e["message"].as_str().unwrap().contains(zh), "{new}: {e}");
        assert!(e["message_en"].as_str().unwrap().contains(en), "{new}: {e}");
    }
    // Nothing changed: the old password still works.
    assert_eq!(
        env.login("person", None, WANG, WANG_PW).await.status,
        StatusCode::OK
    );
    let ok = change("Kite-Harbor-91!").await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT);
    assert_eq!(
        env.login("person", None, WANG, "Kite-Harbor-91!")
            .await
            .status,
        StatusCode::OK
    );
}

// ---- issue 21 point 11: signed face callbacks have a budget of their own --------------------

/// Start at the beginning of a one-minute window, so no count is reset halfway.
async fn fresh_minute() {
    let into = unix_now().rem_euclid(60);
    if into > 45 {
        tokio::time::sleep(std::time::Duration::from_secs((61 - into) as u64)).await;
    }
}

#[tokio::test]
async fn signed_callbacks_do_not_spend_the_per_address_budget() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let text = config_text(
        dir.path(),
        &up.url(),
        "\n[login]\nauth_requests_per_minute = 5\n",
    )
    .replace(
        "callback_secret = \"test-face-secret\"",
        "callback_secret = \"test-face-secret\"\ncallbacks_per_minute = 20",
    );
    assert!(text.contains("callbacks_per_minute = 20"));
    let gw = Gateway::start(&text, dir.path()).await;
    fresh_minute().await;
    let unknown =
        |i: usize| json!({"nonce": format!("{i:0>43}"), "id_number": WANG, "result": "pass"});
    // An app backend's signed callbacks, far beyond the 5 requests a browser may make.
    for i in 0..20 {
        let a = face_callback_signed(gw.public, FACE_SECRET, unix_now(), &unknown(i)).await;
        assert_eq!(
            (a.status, a.error_code()),
            (StatusCode::NOT_FOUND, "unknown_nonce".into()),
            "signed callback {i}"
        );
    }
    // Their own budget holds.
    let over = face_callback_signed(gw.public, FACE_SECRET, unix_now(), &unknown(20)).await;
    assert_eq!(
        (over.status, over.error_code()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited".into())
    );
    // The per-address budget was not touched: a browser from the same address still gets in...
    assert_ne!(
        get(gw.public, "/auth/session").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // ...while unsigned callbacks spend it (1 used above, 4 left), then are refused with it.
    for i in 0..4 {
        let a = face_callback_signed(gw.public, "forged", unix_now(), &unknown(100 + i)).await;
        assert_eq!(a.error_code(), "bad_signature", "forged callback {i}");
    }
    let forged = face_callback_signed(gw.public, "forged", unix_now(), &unknown(200)).await;
    assert_eq!(
        (forged.status, forged.error_code()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited".into())
    );
    assert_eq!(
        get(gw.public, "/auth/session").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    gw.stop().await;
}

// ---- the recovery on two instances sharing PostgreSQL ---------------------------------------

/// A recovery finished on instance A ends the person's sessions on instance B within a second
/// (the store's revocation and its cross-instance invalidation). Skipped without PostgreSQL
/// unless `TAXGATE_REQUIRE_PG=1`.
#[tokio::test]
async fn a_recovery_on_one_instance_ends_the_sessions_on_the_other() {
    let Some(url) = test_postgres_url() else {
        return;
    };
    let (env, text) = Env::start_on(&url).await;
    let b = Gateway::start(&text, env.dir.path()).await;
    let (token, _) = env.login_wang().await;
    let on_b = |path: &'static str| {
        let token = token.clone();
        let b = b.public;
        async move {
            send(
                b,
                http::Request::get(path)
                    .header("host", "gw.test")
                    .header("cookie", format!("taxgate_session={token}"))
                    .body(empty())
                    .unwrap(),
            )
            .await
        }
    };
    // B has the session in its cache.
    for _ in 0..3 {
        assert_eq!(on_b("/api/declare/cached").await.status, StatusCode::OK);
    }
    let c = env
        .recover_until_code(WANG, WANG_PW, "13700000001", WANG)
        .await;
    let ok = env
        .post(
            "/auth/phone/recover/verify",
            json!({"challenge": c, "code": env.last_code("13700000001")}),
            None,
        )
        .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT);
    let started = std::time::Instant::now();
    loop {
        let r = on_b("/api/declare/after-recovery").await;
        if r.status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "instance B still served the session 1 s after the recovery"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(env.phone_notices(), vec!["13800138000".to_string()]);
    b.stop().await;
}
