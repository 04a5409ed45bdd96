//! Issue 19, CONTRACT section 11: the person's sessions (安全中心). Every live session of the
//! person is listed with its device, another person's is never listed or ended, ending one
//! (or all the others) is honoured at once, on every instance; the enterprise side is for
//! personnel managers only; a login from a new device sends a `login_notice`.

use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use serde_json::{Value, json};
use taxgate_e2e::*;

const CHROME_WIN: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const FIREFOX_LINUX: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

/// `POST path` with a JSON body and a `User-Agent`.
async fn post_as(env: &Env, ua: &str, path: &str, body: Value) -> Answer {
    let req = Request::post(path)
        .header("host", "gw.test")
        .header("content-type", "application/json")
        .header("user-agent", ua)
        .body(full(body.to_string()))
        .unwrap();
    send(env.gw.public, req).await
}

/// A whole SMS login from a browser with user agent `ua`; returns the session token.
async fn login_as(env: &Env, ua: &str, login: Value, phone: &str) -> String {
    let a = post_as(env, ua, "/auth/login", login).await;
    assert_status(&a, StatusCode::OK);
    let challenge = a.json()["challenge"].as_str().unwrap().to_string();
    let sent = post_as(env, ua, "/auth/sms/send", json!({"challenge": challenge})).await;
    assert_status(&sent, StatusCode::OK);
    let code = env.last_code(phone);
    let v = post_as(
        env,
        ua,
        "/auth/sms/verify",
        json!({"challenge": challenge, "code": code}),
    )
    .await;
    assert_status(&v, StatusCode::OK);
    session_token(&v)
}

fn wang(entry: &str) -> Value {
    match entry {
        "person" => json!({"entry": "person", "account": WANG, "password": WANG_PW}),
        _ => {
            json!({"entry": "enterprise", "taxpayer_id": ENT_A, "account": WANG, "password": WANG_PW})
        }
    }
}

async fn list(env: &Env, token: &str) -> Vec<Value> {
    let a = env.get("/account/sessions", Some(token)).await;
    assert_status(&a, StatusCode::OK);
    a.json().as_array().unwrap().clone()
}

fn current_id(list: &[Value]) -> String {
    list.iter()
        .find(|s| s["current"] == true)
        .and_then(|s| s["id"].as_str())
        .unwrap()
        .to_string()
}

/// Listing, ending one, refusing another person's, and ending all the others, on one store.
async fn list_and_end(env: &Env) {
    let pc = login_as(env, CHROME_WIN, wang("enterprise"), "13800138000").await;
    let laptop = login_as(env, FIREFOX_LINUX, wang("person"), "13800138000").await;
    let phone = login_as(env, CHROME_WIN, wang("person"), "13800138000").await;
    let zhou = env
        .login_sms("person", None, ZHOU, ZHOU_PW, "13900000006")
        .await
        .0;

    let mine = list(env, &pc).await;
    assert_eq!(mine.len(), 3, "{mine:?}");
    let me = mine.iter().find(|s| s["current"] == true).unwrap();
    assert_eq!(me["entry"], "enterprise");
    assert_eq!(me["enterprise"], ENT_A);
    assert_eq!(me["role"], "legal_representative");
    assert_eq!(me["mfa"], "sms");
    assert_eq!(
        me["client_addr"], "127.0.0.*",
        "the network, never the address"
    );
    assert_eq!(me["user_agent"], CHROME_WIN);
    for field in ["created_at", "last_seen_at"] {
        let t = me[field].as_str().unwrap();
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap();
    }
    let other = mine
        .iter()
        .find(|s| s["user_agent"] == FIREFOX_LINUX)
        .unwrap();
    assert_eq!(
        (
            other["entry"].clone(),
            other["enterprise"].clone(),
            other["current"].clone()
        ),
        (json!("person"), Value::Null, json!(false))
    );
    for s in &mine {
        let id = s["id"].as_str().unwrap();
        assert_eq!(id.len(), 32, "a public id: {id}");
        for token in [&pc, &laptop, &phone] {
            assert!(!token.contains(id), "the id is not the token");
            assert_ne!(id, taxgate_gateway::authn::token::hash(token));
        }
    }

    // Another person's session is never listed, and never ended (404, it stays alive).
    let zhou_list = list(env, &zhou).await;
    assert_eq!(zhou_list.len(), 1);
    let zhou_id = current_id(&zhou_list);
    assert!(mine.iter().all(|s| s["id"] != zhou_id.as_str()));
    let foreign = env
        .post(
            &format!("/account/sessions/{zhou_id}/revoke"),
            json!({}),
            Some(&pc),
        )
        .await;
    assert_eq!(
        (foreign.status, foreign.error_code()),
        (StatusCode::NOT_FOUND, "not_found".to_string())
    );
    assert_status(&env.get("/auth/session", Some(&zhou)).await, StatusCode::OK);
    let junk = env
        .post("/account/sessions/..%2f/revoke", json!({}), Some(&pc))
        .await;
    assert_ne!(junk.status, StatusCode::NO_CONTENT);

    // Ending one: 结束会话.
    let laptop_id = other["id"].as_str().unwrap().to_string();
    let end = env
        .post(
            &format!("/account/sessions/{laptop_id}/revoke"),
            json!({}),
            Some(&pc),
        )
        .await;
    assert_status(&end, StatusCode::NO_CONTENT);
    let dead = env.get("/auth/session", Some(&laptop)).await;
    assert_eq!(dead.error_code(), "login_required");
    assert_eq!(list(env, &pc).await.len(), 2);
    let twice = env
        .post(
            &format!("/account/sessions/{laptop_id}/revoke"),
            json!({}),
            Some(&pc),
        )
        .await;
    assert_eq!(twice.status, StatusCode::NOT_FOUND);

    // 退出其他设备: only the current one is left.
    let others = env
        .post("/account/sessions/revoke-others", json!({}), Some(&phone))
        .await;
    assert_status(&others, StatusCode::NO_CONTENT);
    assert_eq!(
        env.get("/auth/session", Some(&pc)).await.error_code(),
        "login_required"
    );
    let left = list(env, &phone).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["current"], true);
    assert_status(&env.get("/auth/session", Some(&zhou)).await, StatusCode::OK);
}

#[tokio::test]
async fn sessions_are_listed_and_ended_sqlite() {
    let env = Env::start("").await;
    list_and_end(&env).await;
}

#[tokio::test]
async fn sessions_are_listed_and_ended_postgres() {
    let Some(url) = test_postgres_url() else {
        return;
    };
    let (env, _) = Env::start_on(&url).await;
    list_and_end(&env).await;
}

/// Two instances on one PostgreSQL: a session ended from the session list on instance A is
/// dead on instance B within a second.
#[tokio::test]
async fn an_ended_session_is_dead_on_a_second_instance() {
    let Some(url) = test_postgres_url() else {
        return;
    };
    let (env, text) = Env::start_on(&url).await;
    let b = Gateway::start(&text, env.dir.path()).await;
    let (victim, _) = env.login_wang().await;
    let (me, _) = env.login_wang().await;
    let on_b = || {
        let addr = b.public;
        let token = victim.clone();
        async move {
            send(
                addr,
                Request::get("/api/declare/x")
                    .header("cookie", format!("taxgate_session={token}"))
                    .body(empty())
                    .unwrap(),
            )
            .await
        }
    };
    assert_eq!(on_b().await.status, StatusCode::OK, "cached on B");
    let victim_id = list(&env, &me)
        .await
        .iter()
        .find(|s| s["current"] == false)
        .and_then(|s| s["id"].as_str())
        .unwrap()
        .to_string();
    let end = env
        .post(
            &format!("/account/sessions/{victim_id}/revoke"),
            json!({}),
            Some(&me),
        )
        .await;
    assert_status(&end, StatusCode::NO_CONTENT);
    let started = Instant::now();
    loop {
        let r = on_b().await;
        if r.status == StatusCode::UNAUTHORIZED {
            assert_eq!(r.error_code(), "login_required");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "instance B still served the ended session after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.stop().await;
}

/// 企业端: the legal representative sees and ends the sessions acting for the enterprise (ID
/// numbers masked); a tax handler is refused by the policies; another enterprise's session is
/// not found.
#[tokio::test]
async fn personnel_sessions_are_for_personnel_managers() {
    let env = Env::start("").await;
    let (boss, _) = env.login_wang().await;
    let sun = env.login("enterprise", Some(ENT_A), SUN, SUN_PW).await;
    // 孙丽 has no phone: the face factor.
    let sc = sun.json()["challenge"].as_str().unwrap().to_string();
    assert_status(
        &env.face_scan(&sc, SUN, "pass").await,
        StatusCode::NO_CONTENT,
    );
    let sun = env
        .post("/auth/face/complete", json!({"challenge": sc}), None)
        .await;
    assert_status(&sun, StatusCode::OK);
    let sun = session_token(&sun);
    let (zhou, _) = env
        .login_sms("person", None, ZHOU, ZHOU_PW, "13900000006")
        .await;

    let refused = env.get("/account/personnel/sessions", Some(&sun)).await;
    assert_eq!(
        (refused.status, refused.error_code()),
        (StatusCode::FORBIDDEN, "not_permitted".to_string())
    );
    let all = env.get("/account/personnel/sessions", Some(&boss)).await;
    assert_status(&all, StatusCode::OK);
    let all = all.json().as_array().unwrap().clone();
    assert_eq!(all.len(), 2, "{all:?}");
    let s = all.iter().find(|s| s["name"] == "孙丽").unwrap();
    assert_eq!(s["person"], "1401**********0061");
    assert_eq!(s["role"], "tax_handler");
    assert!(!String::from_utf8_lossy(&serde_json::to_vec(&all).unwrap()).contains(SUN));
    let sun_id = s["id"].as_str().unwrap().to_string();
    let end_refused = env
        .post(
            &format!("/account/personnel/sessions/{sun_id}/revoke"),
            json!({}),
            Some(&sun),
        )
        .await;
    assert_eq!(end_refused.error_code(), "not_permitted");

    // A session that does not act for the enterprise is not found, and stays alive.
    let zhou_id = list(&env, &zhou).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(all.iter().all(|s| s["id"] != zhou_id.as_str()));
    let foreign = env
        .post(
            &format!("/account/personnel/sessions/{zhou_id}/revoke"),
            json!({}),
            Some(&boss),
        )
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    assert_status(&env.get("/auth/session", Some(&zhou)).await, StatusCode::OK);

    let end = env
        .post(
            &format!("/account/personnel/sessions/{sun_id}/revoke"),
            json!({}),
            Some(&boss),
        )
        .await;
    assert_status(&end, StatusCode::NO_CONTENT);
    assert_eq!(
        env.get("/auth/session", Some(&sun)).await.error_code(),
        "login_required"
    );
}

fn notices(env: &Env, to: &str) -> usize {
    env.sms()
        .iter()
        .filter(|m| m["purpose"] == "login_notice" && m["to"] == to)
        .inspect(|m| assert!(m.get("code").is_none(), "a notice carries no code: {m}"))
        .count()
}

/// A login from a device (user-agent family and network) not seen for 90 days sends a
/// `login_notice`; the same device again does not; a new browser does.
#[tokio::test]
async fn a_login_notice_goes_out_for_a_new_device_only() {
    let env = Env::start("").await;
    let to = "13900000006";
    let zhou = json!({"entry": "person", "account": ZHOU, "password": ZHOU_PW});
    login_as(&env, CHROME_WIN, zhou.clone(), to).await;
    assert_eq!(notices(&env, to), 1, "the first device is new");
    login_as(&env, CHROME_WIN, zhou.clone(), to).await;
    // Another Chrome version on the same platform is the same family.
    login_as(
        &env,
        &CHROME_WIN.replace("120.0.0.0", "121.0.0.0"),
        zhou.clone(),
        to,
    )
    .await;
    assert_eq!(notices(&env, to), 1, "a known device sends nothing");
    login_as(&env, FIREFOX_LINUX, zhou, to).await;
    assert_eq!(notices(&env, to), 2, "a new browser is a new device");
    assert_eq!(notices(&env, "13800138000"), 0);
}

#[tokio::test]
async fn no_login_notice_when_it_is_switched_off() {
    let env = Env::start("[login]\nsms_resend_secs = 0\nnotify_new_device = false\n").await;
    let zhou = json!({"entry": "person", "account": ZHOU, "password": ZHOU_PW});
    login_as(&env, CHROME_WIN, zhou, "13900000006").await;
    assert_eq!(notices(&env, "13900000006"), 0);
}
