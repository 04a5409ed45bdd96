//! Issue 21 points 1, 2, 4 and 7 and issue 15 points 5 and 6: limits that hold under
//! concurrency and a lockout that reveals nothing. Each race releases its requests at one
//! instant (every connection holds its request but the last byte, then all last bytes go
//! together; `burst`), on SQLite and on two instances sharing PostgreSQL, and counts what got
//! through in the store: exactly the limit. (PostgreSQL halves skip without
//! `TAXGATE_TEST_PG_URL` unless `TAXGATE_REQUIRE_PG=1`.)

use std::net::SocketAddr;

use http::StatusCode;
use serde_json::{Value, json};
use taxgate_e2e::*;
use taxgate_gateway::authn::token;
use taxgate_store::Store;

/// Two in-process gateways on one fresh PostgreSQL database, sharing the SMS outbox.
struct Pair {
    env: Env,
    b: Gateway,
}

impl Pair {
    async fn start(extra: &str) -> Option<Pair> {
        let url = test_postgres_url()?;
        let dir = tempfile::tempdir().unwrap();
        let up = Upstream::start().await;
        let text = config_text_with_store(dir.path(), &up.url(), extra, &url);
        let a = Gateway::start(&text, dir.path()).await;
        let b = Gateway::start(&text, dir.path()).await;
        taxgate_store::import_seed(&a.core.store, &seed_json().to_string(), unix_now())
            .await
            .unwrap();
        Some(Pair {
            env: Env { dir, gw: a, up },
            b,
        })
    }

    /// A, B, A, B, …
    fn addrs(&self) -> [SocketAddr; 2] {
        [self.env.gw.public, self.b.public]
    }

    async fn stop(self) {
        self.b.stop().await;
        self.env.gw.stop().await;
    }
}

fn login_req(addr: SocketAddr, account: &str, password: &str) -> BurstRequest {
    BurstRequest {
        addr,
        path: "/auth/login".into(),
        body: json!({"entry": "person", "account": account, "password": password}),
        session: None,
    }
}

/// `n` wrong passwords for one account at once, spread over `addrs`: four answer 401 with the
/// attempts left, every other 423 with the time the lock lasts, and the store counted exactly
/// five checks (on the old code, every request was checked and counted). The right password
/// afterwards is refused.
async fn wrong_passwords_at_once(env: &Env, addrs: &[SocketAddr], n: usize) {
    let reqs = (0..n)
        .map(|i| login_req(addrs[i % addrs.len()], WANG, "Wrong-Pass-1"))
        .collect();
    let answers = burst(reqs).await;
    assert_eq!(
        count_answers(&answers, 401, "invalid_credentials"),
        4,
        "{answers:?}"
    );
    assert_eq!(count_answers(&answers, 423, "account_locked"), n - 4);
    let left = attempts_left(&answers);
    assert_eq!(left, [1, 2, 3, 4]);
    assert!(answers.iter().filter(|a| a.status == 423).all(|a| {
        a.json["error"]["locked_for_secs"]
            .as_u64()
            .is_some_and(|s| s > 1700 && s <= 1800)
    }));
    let p = env.gw.person(WANG).await;
    assert_eq!(p.failed_logins, 5, "exactly the limit was checked");
    assert!(p.locked_until.unwrap() > unix_now() + 1700);
    for addr in addrs {
        let right = burst(vec![login_req(*addr, WANG, WANG_PW)]).await;
        assert_eq!(
            (right[0].status, right[0].code()),
            (423, "account_locked"),
            "the right password after the limit"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_released_together_are_checked_only_up_to_the_limit() {
    let env = Env::start("").await;
    wrong_passwords_at_once(&env, &[env.gw.public], 150).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_on_two_instances_are_checked_only_up_to_the_limit() {
    let Some(pair) = Pair::start("").await else {
        return;
    };
    wrong_passwords_at_once(&pair.env, &pair.addrs(), 150).await;
    pair.stop().await;
}

/// The phone recovery's first factor is the login's: a burst of wrong passwords there is checked
/// no more often than the limit either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_on_phone_recovery_are_checked_only_up_to_the_limit() {
    let env = Env::start("").await;
    let reqs = (0..100)
        .map(|_| BurstRequest {
            addr: env.gw.public,
            path: "/auth/phone/recover".into(),
            body: json!({"account": WANG, "password": "Wrong-Pass-1", "phone": VICTIM}),
            session: None,
        })
        .collect();
    let answers = burst(reqs).await;
    assert_eq!(count_answers(&answers, 401, "invalid_credentials"), 4);
    assert_eq!(count_answers(&answers, 423, "account_locked"), 96);
    assert_eq!(env.gw.person(WANG).await.failed_logins, 5);
    assert!(env.sms().is_empty());
}

/// The legacy enterprise password locks the same way; a legacy challenge dies with the lock,
/// and an enterprise unknown to the gateway answers like a known one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_legacy_passwords_released_together_are_checked_only_up_to_the_limit() {
    let env = Env::start(
        "\n[login]\nsms_resend_secs = 0\nlegacy_login_until = \"2099-12-31T23:59:59+08:00\"\n",
    )
    .await;
    let legacy = |tid: &str, password: &str| BurstRequest {
        addr: env.gw.public,
        path: "/auth/login".into(),
        body: json!({"entry": "enterprise_legacy", "taxpayer_id": tid, "password": password}),
        session: None,
    };
    let open = burst(vec![legacy(ENT_A, ENT_A_LEGACY_PW)]).await;
    assert_eq!(open[0].status, 200, "{:?}", open[0]);
    let challenge = open[0].json["challenge"].as_str().unwrap().to_string();
    for tid in [ENT_A, ENT_B] {
        let answers = burst((0..60).map(|_| legacy(tid, "Wrong-Pass-1")).collect()).await;
        assert_eq!(
            count_answers(&answers, 401, "invalid_credentials"),
            4,
            "{tid}"
        );
        assert_eq!(count_answers(&answers, 423, "account_locked"), 56, "{tid}");
    }
    let ent = env
        .gw
        .core
        .store
        .enterprise(&taxgate_store::TaxpayerId::parse(ENT_A).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ent.failed_logins, 5, "exactly the limit was checked");
    let late = env
        .post("/auth/sms/send", json!({"challenge": challenge}), None)
        .await;
    assert_eq!(late.error_code(), "challenge_expired");
}

/// The old password of `/auth/password` is checked like a login's: a burst of wrong ones from a
/// stolen session is checked no more often than the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_old_passwords_released_together_are_checked_only_up_to_the_limit() {
    let env = Env::start("").await;
    let (session, _) = env
        .login_sms("person", None, WANG, WANG_PW, "13800138000")
        .await;
    let reqs = (0..60)
        .map(|_| BurstRequest {
            addr: env.gw.public,
            path: "/auth/password".into(),
            body: json!({"old_password": "Wrong-Pass-1", "new_password": "Brand-New-Secret-42!"}),
            session: Some(session.clone()),
        })
        .collect();
    let answers = burst(reqs).await;
    assert_eq!(
        count_answers(&answers, 401, "invalid_credentials"),
        4,
        "{answers:?}"
    );
    assert_eq!(count_answers(&answers, 423, "account_locked"), 56);
    assert_eq!(env.gw.person(WANG).await.failed_logins, 5);
}

/// Right passwords released together are not refused: they are checked in turns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn right_passwords_released_together_all_succeed() {
    let env = Env::start("").await;
    let reqs = (0..30)
        .map(|_| login_req(env.gw.public, WANG, WANG_PW))
        .collect();
    let answers = burst(reqs).await;
    assert_eq!(count_answers(&answers, 200, ""), 30, "{answers:?}");
    assert_eq!(env.gw.person(WANG).await.failed_logins, 0);
}

/// An unknown account answers exactly like a known one: 401 with the same attempts left four
/// times, then 423 with the same lock, whatever the case of the username; a phone number in
/// another spelling is the same account string.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_account_locks_like_a_known_one() {
    let env = Env::start("").await;
    let mut answers = Vec::new();
    for (known, unknown) in [
        ("wangfang", "nobody-here"),
        ("WangFang", "NoBody-Here"),
        ("13800138000", "nobody-here"),
        ("+86 138 0013 8000", "NOBODY-HERE"),
        ("wangfang", "nobody-here"),
        ("wangfang", "nobody-here"),
    ] {
        let k = env.login("person", None, known, "Wrong-Pass-1").await;
        let u = env.login("person", None, unknown, "Wrong-Pass-1").await;
        answers.push((k, u));
    }
    let summary = |a: &Answer| {
        let e = &a.json()["error"];
        (
            a.status.as_u16(),
            e["code"].as_str().unwrap_or("").to_string(),
            e["attempts_left"].as_u64(),
            e["locked_for_secs"].as_u64().map(|s| s > 1700),
        )
    };
    for (i, (k, u)) in answers.iter().enumerate() {
        assert_eq!(summary(k), summary(u), "attempt {i}");
    }
    let statuses: Vec<u16> = answers.iter().map(|(k, _)| k.status.as_u16()).collect();
    assert_eq!(statuses, [401, 401, 401, 401, 423, 423]);
    assert_eq!(answers[0].1.json()["error"]["attempts_left"], 4);
    // Phone numbers are normalised too: an unknown number in two spellings is one account.
    for (i, number) in ["13700137000", "+86 137 0013 7000", "0086 13700137000"]
        .into_iter()
        .enumerate()
    {
        let a = env.login("person", None, number, "Wrong-Pass-1").await;
        assert_eq!(a.json()["error"]["attempts_left"], 4 - i as u64);
    }
    // Usernames are case-insensitive for the right password too.
    let env = Env::start("").await;
    let a = env.login("person", None, "WANGFANG", WANG_PW).await;
    assert_status(&a, StatusCode::OK);
}

/// Failed logins from one address across many accounts: the hourly budget holds under a burst,
/// and the refusal says when to come back.
async fn address_spray(addrs: &[SocketAddr]) {
    let reqs = (0..40)
        .map(|i| {
            login_req(
                addrs[i % addrs.len()],
                &format!("spray-{i}"),
                "Wrong-Pass-1",
            )
        })
        .collect();
    let answers = burst(reqs).await;
    assert_eq!(
        count_answers(&answers, 401, "invalid_credentials"),
        10,
        "{answers:?}"
    );
    assert_eq!(count_answers(&answers, 429, "rate_limited"), 30);
    for a in answers.iter().filter(|a| a.status == 429) {
        let secs = a.json["error"]["retry_after_secs"].as_u64().unwrap();
        assert!((1..=3600).contains(&secs));
        assert_eq!(a.retry_after.as_deref(), Some(secs.to_string().as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_per_address_are_limited() {
    let env = Env::start("\n[login]\nmax_failures_per_address_hourly = 10\n").await;
    address_spray(&[env.gw.public]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_per_address_are_limited_across_two_instances() {
    let Some(pair) = Pair::start("\n[login]\nmax_failures_per_address_hourly = 10\n").await else {
        return;
    };
    address_spray(&pair.addrs()).await;
    pair.stop().await;
}

/// A challenge with a code sent to WANG's phone, on `addr`; returns (challenge, code).
async fn challenge_with_code(env: &Env, addr: SocketAddr) -> (String, String) {
    let login = burst(vec![login_req(addr, WANG, WANG_PW)]).await;
    assert_eq!(login[0].status, 200, "{:?}", login[0]);
    let challenge = login[0].json["challenge"].as_str().unwrap().to_string();
    let sent = burst(vec![BurstRequest {
        addr,
        path: "/auth/sms/send".into(),
        body: json!({"challenge": challenge}),
        session: None,
    }])
    .await;
    assert_eq!(sent[0].status, 200, "{:?}", sent[0]);
    (challenge, env.last_code("13800138000"))
}

fn verify_req(addr: SocketAddr, challenge: &str, code: &str) -> BurstRequest {
    BurstRequest {
        addr,
        path: "/auth/sms/verify".into(),
        body: json!({"challenge": challenge, "code": code}),
        session: None,
    }
}

/// `n` wrong codes on one challenge at once: exactly five are compared (the store counted five
/// attempts; on the old code every one was compared and counted), four answer 401 with the
/// attempts left, and the right code afterwards is refused.
async fn wrong_codes_at_once(env: &Env, addrs: &[SocketAddr], n: usize) {
    let (challenge, code) = challenge_with_code(env, addrs[0]).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let reqs = (0..n)
        .map(|i| verify_req(addrs[i % addrs.len()], &challenge, wrong))
        .collect();
    let answers = burst(reqs).await;
    assert_eq!(
        count_answers(&answers, 401, "invalid_code"),
        4,
        "{answers:?}"
    );
    assert_eq!(count_answers(&answers, 401, "challenge_expired"), n - 4);
    let left = attempts_left(&answers);
    assert_eq!(left, [1, 2, 3, 4]);
    let stored = env
        .gw
        .core
        .store
        .challenge(&token::hash(&challenge))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.code_attempts, 5, "exactly the limit was compared");
    for addr in addrs {
        let right = burst(vec![verify_req(*addr, &challenge, &code)]).await;
        assert_eq!(
            (right[0].status, right[0].code()),
            (401, "challenge_expired")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_released_together_are_compared_only_up_to_the_limit() {
    let env = Env::start("").await;
    wrong_codes_at_once(&env, &[env.gw.public], 150).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_on_two_instances_are_compared_only_up_to_the_limit() {
    let Some(pair) = Pair::start("").await else {
        return;
    };
    wrong_codes_at_once(&pair.env, &pair.addrs(), 150).await;
    pair.stop().await;
}

/// The victim's number of the SMS-bombing race.
const VICTIM: &str = "13700137000";

fn phone_req(addr: SocketAddr, session: &str) -> BurstRequest {
    BurstRequest {
        addr,
        path: "/account/phone".into(),
        body: json!({"phone": VICTIM}),
        session: Some(session.to_string()),
    }
}

fn codes_to(env: &Env, phone: &str) -> usize {
    env.sms().iter().filter(|m| m["to"] == phone).count()
}

/// `n` × `POST /account/phone` to one number at once: exactly `sent` codes go out, the others
/// answer 429 `code` with `Retry-After`.
async fn phone_bombing(env: &Env, addrs: &[SocketAddr], n: usize, sent: usize, code: &str) {
    let (token, _) = env
        .login_sms("person", None, ZHOU, ZHOU_PW, "13900000006")
        .await;
    let reqs = (0..n)
        .map(|i| phone_req(addrs[i % addrs.len()], &token))
        .collect();
    let answers = burst(reqs).await;
    assert_eq!(count_answers(&answers, 200, ""), sent, "{answers:?}");
    assert_eq!(count_answers(&answers, 429, code), n - sent);
    assert!(
        answers
            .iter()
            .filter(|a| a.status == 429)
            .all(|a| a.retry_after.is_some() && a.json["error"]["retry_after_secs"].is_u64())
    );
    assert_eq!(codes_to(env, VICTIM), sent, "codes in the outbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_to_one_number_released_together_keep_the_daily_limit() {
    let env = Env::start("\n[login]\nsms_resend_secs = 0\n").await;
    phone_bombing(&env, &[env.gw.public], 120, 10, "sms_daily_limit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_to_one_number_on_two_instances_keep_the_limits() {
    let Some(pair) = Pair::start("\n[login]\nsms_resend_secs = 60\n").await else {
        return;
    };
    // The resend interval: one code.
    phone_bombing(&pair.env, &pair.addrs(), 120, 1, "sms_too_frequent").await;
    pair.stop().await;
    let Some(pair) = Pair::start("\n[login]\nsms_resend_secs = 0\n").await else {
        return;
    };
    phone_bombing(&pair.env, &pair.addrs(), 120, 10, "sms_daily_limit").await;
    pair.stop().await;
}

/// Issue 21 point 7: a login challenge dies when its person's password changes, and when the
/// account locks, even with the right code in hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_dies_with_a_password_change_or_a_lock() {
    let env = Env::start("\n[login]\nsms_resend_secs = 0\n").await;
    let (challenge, code) = challenge_with_code(&env, env.gw.public).await;
    let (session, _) = env
        .login_sms("person", None, WANG, WANG_PW, "13800138000")
        .await;
    let changed = env
        .post(
            "/auth/password",
            json!({"old_password": WANG_PW, "new_password": "Brand-New-Secret-42!"}),
            Some(&session),
        )
        .await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT);
    let late = env
        .post(
            "/auth/sms/verify",
            json!({"challenge": challenge, "code": code}),
            None,
        )
        .await;
    assert_eq!(
        (late.status, late.error_code()),
        (StatusCode::UNAUTHORIZED, "challenge_expired".into()),
        "a challenge begun with the old password"
    );

    let new_pw = "Brand-New-Secret-42!";
    let login = env.login("person", None, WANG, new_pw).await;
    let challenge = login.json()["challenge"].as_str().unwrap().to_string();
    env.post("/auth/sms/send", json!({"challenge": challenge}), None)
        .await;
    let code = env.last_code("13800138000");
    for _ in 0..5 {
        env.login("person", None, WANG, "Wrong-Pass-1").await;
    }
    assert!(env.gw.person(WANG).await.locked_until.is_some());
    let late = env
        .post(
            "/auth/sms/verify",
            json!({"challenge": challenge, "code": code}),
            None,
        )
        .await;
    assert_eq!(
        (late.status, late.error_code()),
        (StatusCode::UNAUTHORIZED, "challenge_expired".into()),
        "a challenge of a locked account"
    );
}

fn refused_metric(text: &str, limit: &str) -> u64 {
    let series = format!("taxgate_sms_refused_total{{limit=\"{limit}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in the metrics"))
}

async fn metrics(env: &Env) -> String {
    String::from_utf8_lossy(&get(env.gw.admin, "/metrics").await.body).into_owned()
}

/// Issue 15 point 6 (SMS pumping): codes per person, per address and in all are limited on
/// every path that sends one, and each refusal is counted by limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_pumping_is_limited_per_person_address_and_in_all() {
    // Per person: the login's code and two more; then 429 sms_daily_limit, whatever the number.
    let env = Env::start("\n[login]\nsms_resend_secs = 0\nsms_per_person_daily = 3\n").await;
    let before = refused_metric(&metrics(&env).await, "person_daily");
    let (token, _) = env
        .login_sms("person", None, WANG, WANG_PW, "13800138000")
        .await;
    let mut statuses = Vec::new();
    let mut last = None;
    for number in ["13700137001", "13700137002", "13700137003", "13700137004"] {
        let a = env
            .post("/account/phone", json!({"phone": number}), Some(&token))
            .await;
        statuses.push(a.status.as_u16());
        last = Some(a);
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    let last = last.unwrap();
    assert_eq!(last.error_code(), "sms_daily_limit");
    assert!(last.headers.contains_key("retry-after"));
    assert!(refused_metric(&metrics(&env).await, "person_daily") >= before + 2);

    // Per address: two codes an hour from one address, across persons.
    let env = Env::start("\n[login]\nsms_per_address_hourly = 2\n").await;
    let before = refused_metric(&metrics(&env).await, "address_hourly");
    env.login_sms("person", None, WANG, WANG_PW, "13800138000")
        .await;
    env.login_sms("person", None, ZHOU, ZHOU_PW, "13900000006")
        .await;
    let login = env.login("person", None, CHEN, CHEN_PW).await;
    let challenge = login.json()["challenge"].as_str().unwrap().to_string();
    let refused = env
        .post("/auth/sms/send", json!({"challenge": challenge}), None)
        .await;
    assert_eq!(
        (refused.status, refused.error_code()),
        (StatusCode::TOO_MANY_REQUESTS, "sms_too_frequent".into())
    );
    let retry: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry));
    assert_eq!(refused.json()["error"]["retry_after_secs"], retry);
    assert!(refused_metric(&metrics(&env).await, "address_hourly") > before);

    // In all: the global budget per minute.
    let env = Env::start("\n[login]\nsms_global_per_minute = 1\n").await;
    let before = refused_metric(&metrics(&env).await, "global_per_minute");
    let sent: Vec<Value> = {
        let mut v = Vec::new();
        for (account, pw) in [(WANG, WANG_PW), (ZHOU, ZHOU_PW)] {
            let login = env.login("person", None, account, pw).await;
            let challenge = login.json()["challenge"].as_str().unwrap().to_string();
            let a = env
                .post("/auth/sms/send", json!({"challenge": challenge}), None)
                .await;
            let code = a.json()["error"]["code"].as_str().unwrap_or("").to_string();
            v.push(json!([a.status.as_u16(), code]));
        }
        v
    };
    // Both in one minute, unless the minute turned in between.
    if sent[1][0] == 200 {
        eprintln!("the minute turned between the two sends; the global limit was not tested");
    } else {
        assert_eq!(sent, [json!([200, ""]), json!([429, "sms_too_frequent"])]);
        assert!(refused_metric(&metrics(&env).await, "global_per_minute") > before);
    }
}

/// The per-address budget of `/auth/*` is counted in the store: two instances together let
/// through no more than `auth_requests_per_minute`, and the refusal says when the minute ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_requests_on_two_instances_share_one_budget() {
    let Some(pair) = Pair::start("\n[login]\nauth_requests_per_minute = 20\n").await else {
        return;
    };
    // Not across a minute boundary: the budget is per minute.
    let second = unix_now().rem_euclid(60);
    if second >= 50 {
        tokio::time::sleep(std::time::Duration::from_secs((61 - second) as u64)).await;
    }
    let addrs = pair.addrs();
    let reqs = (0..60)
        .map(|i| BurstRequest {
            addr: addrs[i % 2],
            path: "/auth/login".into(),
            body: json!({}),
            session: None,
        })
        .collect();
    let answers = burst(reqs).await;
    assert_eq!(
        count_answers(&answers, 400, "invalid_input"),
        20,
        "{answers:?}"
    );
    assert_eq!(count_answers(&answers, 429, "rate_limited"), 40);
    for a in answers.iter().filter(|a| a.status == 429) {
        let secs = a.json["error"]["retry_after_secs"].as_u64().unwrap();
        assert!((1..=60).contains(&secs));
        assert_eq!(a.retry_after.as_deref(), Some(secs.to_string().as_str()));
    }
    pair.stop().await;
}

/// The code of `/account/phone/verify` is compared through the same reservation: a burst of
/// wrong codes there is compared five times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_on_phone_binding_are_compared_only_up_to_the_limit() {
    let env = Env::start("").await;
    let (token, _) = env
        .login_sms("person", None, ZHOU, ZHOU_PW, "13900000006")
        .await;
    let start = env
        .post("/account/phone", json!({"phone": VICTIM}), Some(&token))
        .await;
    assert_eq!(start.status, StatusCode::OK);
    let challenge = start.json()["challenge"].as_str().unwrap().to_string();
    let code = env.last_code(VICTIM);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let reqs = (0..100)
        .map(|_| BurstRequest {
            addr: env.gw.public,
            path: "/account/phone/verify".into(),
            body: json!({"challenge": challenge, "code": wrong}),
            session: Some(token.clone()),
        })
        .collect();
    let answers = burst(reqs).await;
    assert_eq!(
        count_answers(&answers, 401, "invalid_code"),
        4,
        "{answers:?}"
    );
    let stored = env
        .gw
        .core
        .store
        .challenge(&token::hash(&challenge))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.code_attempts, 5, "exactly the limit was compared");
    let right = env
        .post(
            "/account/phone/verify",
            json!({"challenge": challenge, "code": code}),
            Some(&token),
        )
        .await;
    assert_eq!(right.error_code(), "challenge_expired");
}

/// The `attempts_left` of every answer that has one, in order.
fn attempts_left(answers: &[BurstAnswer]) -> Vec<u64> {
    let mut left: Vec<u64> = answers
        .iter()
        .filter_map(|a| a.json["error"]["attempts_left"].as_u64())
        .collect();
    left.sort();
    left
}
