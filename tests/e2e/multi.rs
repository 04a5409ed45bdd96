//! Issue 9, several instances on one PostgreSQL: a login begun on one instance is finished on
//! the other, password failures and SMS-code attempts add up across instances, a logout on one
//! is enforced on the other within a second, and each instance reloads its own policy directory
//! independently. (An unbind across instances is `account::unbind_on_one_instance_is_enforced_on_
//! the_other`; SIGTERM of one of two is in `faults`.) Skipped without PostgreSQL unless
//! `TAXGATE_REQUIRE_PG=1`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use serde_json::{Value, json};
use taxgate_e2e::*;

/// Two in-process gateways, A and B, on one fresh PostgreSQL database, sharing the SMS outbox;
/// B reads `policies_b` when given (A reads `policies_a`, or the repository's `policies/`).
struct Pair {
    env: Env,
    b: Gateway,
}

impl Pair {
    async fn start(policies_a: Option<&Path>, policies_b: Option<&Path>) -> Option<Pair> {
        let url = test_postgres_url()?;
        let dir = tempfile::tempdir().unwrap();
        let up = Upstream::start().await;
        let text = config_text_with_store(dir.path(), &up.url(), "", &url);
        let with_policies = |p: Option<&Path>| match p {
            Some(p) => text.replace(
                &policies_dir().display().to_string(),
                &p.display().to_string(),
            ),
            None => text.clone(),
        };
        let a = Gateway::start(&with_policies(policies_a), dir.path()).await;
        let b = Gateway::start(&with_policies(policies_b), dir.path()).await;
        taxgate_store::import_seed(&a.core.store, &seed_json().to_string(), unix_now())
            .await
            .unwrap();
        Some(Pair {
            env: Env { dir, gw: a, up },
            b,
        })
    }

    fn a(&self) -> SocketAddr {
        self.env.gw.public
    }

    async fn stop(self) {
        self.b.stop().await;
        self.env.gw.stop().await;
    }
}

async fn post(addr: SocketAddr, path: &str, body: Value, session: Option<&str>) -> Answer {
    let mut req = Request::post(path)
        .header("host", "gw.test")
        .header("content-type", "application/json");
    if let Some(token) = session {
        req = req.header("cookie", format!("taxgate_session={token}"));
    }
    send(addr, req.body(full(body.to_string())).unwrap()).await
}

async fn get_as(addr: SocketAddr, path: &str, session: &str) -> Answer {
    send(
        addr,
        Request::get(path)
            .header("host", "gw.test")
            .header("cookie", format!("taxgate_session={session}"))
            .body(empty())
            .unwrap(),
    )
    .await
}

fn login_body(password: &str) -> Value {
    json!({"entry": "enterprise", "taxpayer_id": ENT_A, "account": WANG, "password": password})
}

/// A six-digit code that is not `code`.
fn wrong(code: &str) -> &'static str {
    if code == "000000" { "111111" } else { "000000" }
}

fn body_text(a: &Answer) -> String {
    String::from_utf8_lossy(&a.body).into_owned()
}

/// `POST /auth/login` on A, the code sent and verified on B: the challenge lives in the store.
/// Wrong codes count against the challenge on both instances together: four wrong (two on each)
/// still let the right code in; five wrong (three on A, two on B) void the challenge everywhere.
#[tokio::test]
async fn a_login_begun_on_one_instance_is_finished_on_the_other() {
    let Some(pair) = Pair::start(None, None).await else {
        return;
    };
    let (a, b) = (pair.a(), pair.b.public);
    let phone = "13800138000";

    let login = post(a, "/auth/login", login_body(WANG_PW), None).await;
    assert_eq!(login.status, StatusCode::OK, "{}", body_text(&login));
    let challenge = login.json()["challenge"].as_str().unwrap().to_string();
    let sent = post(b, "/auth/sms/send", json!({"challenge": challenge}), None).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", body_text(&sent));
    let code = pair.env.last_code(phone);
    for (i, addr) in [a, b, a, b].into_iter().enumerate() {
        let v = post(
            addr,
            "/auth/sms/verify",
            json!({"challenge": challenge, "code": wrong(&code)}),
            None,
        )
        .await;
        assert_eq!(
            (v.status, v.error_code()),
            (StatusCode::UNAUTHORIZED, "invalid_code".into()),
            "wrong code {i}"
        );
    }
    let verified = post(
        b,
        "/auth/sms/verify",
        json!({"challenge": challenge, "code": code}),
        None,
    )
    .await;
    assert_eq!(verified.status, StatusCode::OK, "{}", body_text(&verified));
    let token = session_token(&verified);
    for addr in [a, b] {
        let s = get_as(addr, "/auth/session", &token).await;
        assert_eq!(s.status, StatusCode::OK);
        assert_eq!(s.json()["person"], WANG);
        assert_eq!(s.json()["enterprise"], ENT_A);
        assert_eq!(s.json()["mfa"], "sms");
    }
    // The challenge is used up on both instances.
    for addr in [a, b] {
        let again = post(
            addr,
            "/auth/sms/verify",
            json!({"challenge": challenge, "code": code}),
            None,
        )
        .await;
        assert_eq!(again.error_code(), "challenge_expired");
    }

    // Five wrong codes, split over both: the challenge is void, the right code too late.
    let login = post(b, "/auth/login", login_body(WANG_PW), None).await;
    let challenge = login.json()["challenge"].as_str().unwrap().to_string();
    let sent = post(a, "/auth/sms/send", json!({"challenge": challenge}), None).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", body_text(&sent));
    let code = pair.env.last_code(phone);
    for addr in [a, b, a, b, a] {
        let _ = post(
            addr,
            "/auth/sms/verify",
            json!({"challenge": challenge, "code": wrong(&code)}),
            None,
        )
        .await;
    }
    for addr in [b, a] {
        let late = post(
            addr,
            "/auth/sms/verify",
            json!({"challenge": challenge, "code": code}),
            None,
        )
        .await;
        assert_eq!(
            (late.status, late.error_code()),
            (StatusCode::UNAUTHORIZED, "challenge_expired".into()),
            "the right code after five wrong ones, split over two instances"
        );
    }
    pair.stop().await;
}

/// Wrong passwords on A and on B add up to one count (`max_password_failures` = 5): the fifth,
/// on B, locks the account, and the right password is then refused 423 on both.
#[tokio::test]
async fn password_failures_add_up_across_instances() {
    let Some(pair) = Pair::start(None, None).await else {
        return;
    };
    let (a, b) = (pair.a(), pair.b.public);
    for (i, addr) in [a, a, a, b].into_iter().enumerate() {
        let r = post(addr, "/auth/login", login_body("Wrong-Pass-1"), None).await;
        assert_eq!(
            (r.status, r.error_code()),
            (StatusCode::UNAUTHORIZED, "invalid_credentials".into()),
            "failure {}",
            i + 1
        );
    }
    let fifth = post(b, "/auth/login", login_body("Wrong-Pass-1"), None).await;
    assert_eq!(
        (fifth.status, fifth.error_code()),
        (StatusCode::LOCKED, "account_locked".into()),
        "the fifth failure (the second on B) must lock: counts are per person, not per instance"
    );
    for addr in [a, b] {
        let r = post(addr, "/auth/login", login_body(WANG_PW), None).await;
        assert_eq!(
            (r.status, r.error_code()),
            (StatusCode::LOCKED, "account_locked".into()),
            "the right password on {addr} while locked"
        );
    }
    let stored = pair.env.gw.person(WANG).await;
    assert_eq!(stored.failed_logins, 5);
    assert!(
        stored.locked_until.is_some_and(|t| t > unix_now() + 1700),
        "locked for lockout_secs (1800): {:?}",
        stored.locked_until
    );
    pair.stop().await;
}

/// A session used on B (so B has it cached) and logged out on A: B refuses it within a second
/// (the store's NOTIFY drops it from B's cache), and nothing reaches the upstream from B after.
#[tokio::test]
async fn logout_on_one_instance_is_enforced_on_the_other_within_a_second() {
    let Some(mut pair) = Pair::start(None, None).await else {
        return;
    };
    let b = pair.b.public;
    let (token, _) = pair.env.login_wang().await;
    for _ in 0..3 {
        assert_eq!(
            get_as(b, "/api/declare/cached", &token).await.status,
            StatusCode::OK
        );
    }
    let _ = drain_seen(&mut pair.env.up);
    let out = pair.env.post("/auth/logout", json!({}), Some(&token)).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let started = Instant::now();
    let mut allowed_after = 0;
    loop {
        let r = get_as(b, "/api/declare/after-logout", &token).await;
        if r.status == StatusCode::UNAUTHORIZED {
            assert!(
                ["login_required", "session_expired"].contains(&r.error_code().as_str()),
                "{}",
                body_text(&r)
            );
            break;
        }
        assert_eq!(r.status, StatusCode::OK, "{}", body_text(&r));
        allowed_after += 1;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "instance B still served the logged-out session after 1 s ({allowed_after} requests)"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "logout on A enforced on B after {:?} ({allowed_after} requests allowed meanwhile)",
        started.elapsed()
    );
    // It stays refused on both.
    for addr in [pair.a(), b] {
        assert_eq!(
            get_as(addr, "/api/declare/later", &token).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let seen = drain_seen(&mut pair.env.up);
    assert_eq!(
        seen.len(),
        allowed_after,
        "the upstream saw exactly the requests B allowed"
    );
    pair.stop().await;
}

/// Each instance reads its own policy directory: a change reloaded on A decides on A only;
/// B keeps its version (a reload of B's unchanged directory changes nothing) until its own
/// directory gets the same change, after which both report the same version.
#[tokio::test]
async fn each_instance_reloads_its_own_policies() {
    let tmp = tempfile::tempdir().unwrap();
    let (pa, pb) = (tmp.path().join("policies-a"), tmp.path().join("policies-b"));
    copy_dir(&policies_dir(), &pa);
    copy_dir(&policies_dir(), &pb);
    let Some(pair) = Pair::start(Some(&pa), Some(&pb)).await else {
        return;
    };
    let (a, b) = (pair.a(), pair.b.public);
    let (admin_a, admin_b) = (pair.env.gw.admin, pair.b.admin);
    let status = |admin: SocketAddr| async move { get(admin, "/admin/policies").await.json() };
    let reload = |admin: SocketAddr| async move {
        let r = send(
            admin,
            Request::post("/admin/policies/reload")
                .body(empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        r.json()
    };
    let v1 = status(admin_a).await["version"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(status(admin_b).await["version"], v1.as_str());
    let (token, _) = pair.env.login_wang().await;
    let declare = |addr: SocketAddr| {
        let token = token.clone();
        async move { get_as(addr, "/api/declare/x", &token).await }
    };
    assert_eq!(declare(a).await.status, StatusCode::OK);
    assert_eq!(declare(b).await.status, StatusCode::OK);

    let freeze = "@id(\"test.declare_frozen\")\n@reason(\"declare_frozen\")\nforbid (principal, action == Action::\"declare\", resource);\n";
    std::fs::write(pa.join("zz-freeze.cedar"), freeze).unwrap();
    let after_a = reload(admin_a).await;
    let v2 = after_a["version"].as_str().unwrap().to_string();
    assert_ne!(v2, v1, "{after_a}");
    assert!(after_a["last_error"].is_null(), "{after_a}");
    let on_a = declare(a).await;
    assert_eq!(
        (on_a.status, on_a.error_code()),
        (StatusCode::FORBIDDEN, "declare_frozen".into())
    );
    // B did not reload anything: same version, same decisions; reloading its unchanged
    // directory keeps that version.
    assert_eq!(status(admin_b).await["version"], v1.as_str());
    assert_eq!(declare(b).await.status, StatusCode::OK);
    let after_b = reload(admin_b).await;
    assert_eq!(after_b["version"], v1.as_str(), "{after_b}");
    assert_eq!(declare(b).await.status, StatusCode::OK);
    assert_eq!(status(admin_a).await["version"], v2.as_str());

    std::fs::write(pb.join("zz-freeze.cedar"), freeze).unwrap();
    let after_b = reload(admin_b).await;
    assert_eq!(after_b["version"], v2.as_str(), "same files, same version");
    let on_b = declare(b).await;
    assert_eq!(
        (on_b.status, on_b.error_code()),
        (StatusCode::FORBIDDEN, "declare_frozen".into())
    );
    pair.stop().await;
}
