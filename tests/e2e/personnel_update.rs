//! Issue 22 point 2: `POST /account/personnel/{binding}/update` (修改权限, 延长有效期, CONTRACT
//! section 3) on SQLite and PostgreSQL: an expired 办税员 extended back into work, narrowing at
//! once on live sessions, widening pending until the person confirms again, the no-escalation
//! rules (403 `grant_not_permitted`, nothing changed), the `binding_changed` notice; and
//! `GET /account/overview`, which tells the page what the identity may do.

use http::StatusCode;
use serde_json::{Value, json};
use taxgate_e2e::*;

/// 钱进: administrator of A limited to `query`.
const QIAN: &str = "140105198002020078";
const QIAN_PW: &str = "Qian-Jin-2026!";
const QIAN_PHONE: &str = "13900000011";
const SUN_PHONE: &str = "13900000015";

/// The shared seed, with 孙丽 (tax handler of A, role defaults) given a phone and 钱进 an
/// administrator of A limited to `query`.
fn seed() -> Value {
    let mut seed = seed_json();
    for p in seed["persons"].as_array_mut().unwrap() {
        if p["id_number"] == SUN {
            p["phone"] = SUN_PHONE.into();
        }
    }
    seed["persons"].as_array_mut().unwrap().push(json!(
        {"id_number": QIAN, "name": "钱进", "phone": QIAN_PHONE, "password": QIAN_PW}
    ));
    seed["bindings"].as_array_mut().unwrap().push(json!(
        {"person": QIAN, "enterprise": ENT_A, "role": "admin", "permissions": ["query"],
         "enterprise_confirmed": true, "person_confirmed": true}
    ));
    seed
}

async fn sqlite() -> Env {
    Env::start_with("", &seed()).await
}

async fn postgres() -> Option<Env> {
    let url = test_postgres_url()?;
    let (env, _) = Env::start_on(&url).await;
    // `start_on` imports the shared seed; the extra rows of this file's seed go in on top.
    taxgate_store::import_seed(&env.gw.core.store, &seed().to_string(), unix_now())
        .await
        .unwrap();
    Some(env)
}

/// The binding id of `person` in A, from the personnel list `session` sees.
async fn binding_of(env: &Env, session: &str, person: &str) -> Value {
    let list = env.get("/account/personnel", Some(session)).await;
    assert_status(&list, StatusCode::OK);
    list.json()
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["person"] == person && b["status"] != "revoked")
        .cloned()
        .unwrap_or_else(|| panic!("no binding of {person} in {}", list.json()))
}

async fn update(env: &Env, session: &str, binding: &str, body: Value) -> Answer {
    env.post(
        &format!("/account/personnel/{binding}/update"),
        body,
        Some(session),
    )
    .await
}

async fn extend_narrow_widen(env: Env) {
    let (boss, _) = env.login_wang().await;

    // 张伟's binding ended in 2024: the refusal tells him to have it extended — which works.
    let refused = env.login("enterprise", Some(ENT_A), ZHANG, ZHANG_PW).await;
    assert_eq!(refused.error_code(), "binding_expired");
    assert!(
        refused.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("延长有效期")
    );
    let zhang = binding_of(&env, &boss, ZHANG).await;
    assert_eq!(zhang["status"], "expired");
    let id = zhang["binding"].as_str().unwrap().to_string();
    let past = update(
        &env,
        &boss,
        &id,
        json!({"valid_until": "2020-01-01T00:00:00+08:00"}),
    )
    .await;
    assert_eq!(
        (past.status, past.error_code()),
        (StatusCode::BAD_REQUEST, "invalid_input".into())
    );
    assert_eq!(past.json()["error"]["field"], "valid_until");
    let nothing = update(&env, &boss, &id, json!({})).await;
    assert_eq!(nothing.status, StatusCode::BAD_REQUEST);
    let extended = update(
        &env,
        &boss,
        &id,
        json!({"valid_until": "2099-12-31T23:59:59+08:00", "permissions": null}),
    )
    .await;
    assert_status(&extended, StatusCode::OK);
    assert_eq!(extended.json()["status"], "active");
    assert_eq!(extended.json()["binding"], id.as_str());
    assert_eq!(extended.json()["valid_until"], "2099-12-31T15:59:59Z");
    let notice = env.sms().last().cloned().unwrap();
    assert_eq!(notice["to"], "13900000002");
    assert_eq!(notice["purpose"], "binding_changed");
    assert!(notice.get("code").is_none());
    let (_, view) = env
        .login_sms("enterprise", Some(ENT_A), ZHANG, ZHANG_PW, "13900000002")
        .await;
    assert_eq!(view["role"], "invoice_clerk");

    // 孙丽 works with the role defaults of a 办税员 (declare, query, tax_affairs).
    let (sun, _) = env
        .login_sms("enterprise", Some(ENT_A), SUN, SUN_PW, SUN_PHONE)
        .await;
    assert_eq!(
        env.get("/api/tax-affairs/x", Some(&sun)).await.status,
        StatusCode::OK
    );
    let sun_b = binding_of(&env, &boss, SUN).await;
    assert_eq!(sun_b["uses_role_defaults"], true);
    // The list says what the defaults are, as the policies read them.
    assert_eq!(sun_b["groups"], json!(["declare", "query", "tax_affairs"]));
    let sun_id = sun_b["binding"].as_str().unwrap().to_string();

    // Narrowing applies at once, to the live session too.
    let narrowed = update(
        &env,
        &boss,
        &sun_id,
        json!({"permissions": ["declare", "query"]}),
    )
    .await;
    assert_status(&narrowed, StatusCode::OK);
    assert_eq!(narrowed.json()["status"], "active");
    assert_eq!(narrowed.json()["permissions"], json!(["declare", "query"]));
    let gone = env.get("/api/tax-affairs/x", Some(&sun)).await;
    assert_eq!(gone.status, StatusCode::FORBIDDEN);
    assert_eq!(
        env.get("/api/declare/x", Some(&sun)).await.status,
        StatusCode::OK
    );

    // Widening waits for the person: pending (and unusable) until 孙丽 confirms again.
    let widened = update(
        &env,
        &boss,
        &sun_id,
        json!({"permissions": ["declare", "query", "invoice"]}),
    )
    .await;
    assert_status(&widened, StatusCode::OK);
    assert_eq!(widened.json()["status"], "pending");
    assert_eq!(widened.json()["person_confirmed"], false);
    assert_eq!(
        env.get("/api/invoice/x", Some(&sun)).await.status,
        StatusCode::FORBIDDEN
    );
    let (me, _) = env.login_sms("person", None, SUN, SUN_PW, SUN_PHONE).await;
    let ok = env
        .post(
            &format!("/account/authorizations/{sun_id}/confirm"),
            json!({}),
            Some(&me),
        )
        .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT);
    let (sun, _) = env
        .login_sms("enterprise", Some(ENT_A), SUN, SUN_PW, SUN_PHONE)
        .await;
    assert_eq!(
        env.get("/api/invoice/x", Some(&sun)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn extend_narrow_and_widen_sqlite() {
    extend_narrow_widen(sqlite().await).await;
}

#[tokio::test]
async fn extend_narrow_and_widen_postgres() {
    if let Some(env) = postgres().await {
        extend_narrow_widen(env).await;
    }
}

async fn no_escalation(env: Env) {
    let (boss, _) = env.login_wang().await;
    let (qian, _) = env
        .login_sms("enterprise", Some(ENT_A), QIAN, QIAN_PW, QIAN_PHONE)
        .await;
    let sun = binding_of(&env, &boss, SUN).await;
    let sun_id = sun["binding"].as_str().unwrap();
    let before = binding_of(&env, &boss, SUN).await;

    // 钱进 holds only `query`: he may not hand out `declare`, nor extend a binding that gives
    // more than he holds (an extension re-grants it).
    for body in [
        json!({"permissions": ["declare"]}),
        json!({"valid_until": "2099-12-31T23:59:59+08:00"}),
    ] {
        let a = update(&env, &qian, sun_id, body.clone()).await;
        assert_eq!(
            (a.status, a.error_code()),
            (StatusCode::FORBIDDEN, "grant_not_permitted".into()),
            "{body}"
        );
    }
    // Narrowing to what he holds himself is his to do.
    let ok = update(&env, &qian, sun_id, json!({"permissions": ["query"]})).await;
    assert_status(&ok, StatusCode::OK);
    assert_eq!(ok.json()["status"], "active");

    // The legal representative's binding is never changed here; a finance manager's only by
    // the legal representative.
    let wang = binding_of(&env, &boss, WANG).await;
    let a = update(
        &env,
        &boss,
        wang["binding"].as_str().unwrap(),
        json!({"permissions": ["query"]}),
    )
    .await;
    assert_eq!(a.error_code(), "grant_not_permitted");
    let zhao = binding_of(&env, &boss, ZHAO).await;
    let a = update(
        &env,
        &qian,
        zhao["binding"].as_str().unwrap(),
        json!({"permissions": ["query"]}),
    )
    .await;
    assert_eq!(a.error_code(), "grant_not_permitted");
    let a = update(
        &env,
        &boss,
        zhao["binding"].as_str().unwrap(),
        json!({"permissions": ["declare", "query"]}),
    )
    .await;
    assert_status(&a, StatusCode::OK);

    // A refusal changed nothing; a binding of someone else's enterprise is not found.
    let after_refusals = binding_of(&env, &boss, WANG).await;
    assert_eq!(after_refusals["permissions"], wang["permissions"]);
    assert_ne!(before["permissions"], json!(["query"]));
    let foreign = update(
        &env,
        &boss,
        "no-such-binding",
        json!({"permissions": ["query"]}),
    )
    .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);

    // A 办税员 manages no personnel at all.
    let (sun_s, _) = env
        .login_sms("enterprise", Some(ENT_A), SUN, SUN_PW, SUN_PHONE)
        .await;
    let a = update(&env, &sun_s, sun_id, json!({"permissions": ["query"]})).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn no_escalation_through_updates_sqlite() {
    no_escalation(sqlite().await).await;
}

#[tokio::test]
async fn no_escalation_through_updates_postgres() {
    if let Some(env) = postgres().await {
        no_escalation(env).await;
    }
}

#[tokio::test]
async fn the_overview_says_what_the_identity_may_do() {
    let env = sqlite().await;
    let (boss, _) = env.login_wang().await;
    let o = env.get("/account/overview", Some(&boss)).await;
    assert_status(&o, StatusCode::OK);
    let o = o.json();
    assert_eq!(o["actions"]["manage_personnel"], true);
    assert_eq!(o["enterprise_name"], "太原示例科技有限公司");
    assert_eq!(o["binding"]["role"], "legal_representative");
    assert_eq!(o["binding"]["uses_role_defaults"], true);
    assert_eq!(
        o["groups"],
        json!(["declare", "invoice", "query", "tax_affairs"])
    );

    // A 办税员: no personnel card, the role defaults as the policies read them.
    let (sun, _) = env
        .login_sms("enterprise", Some(ENT_A), SUN, SUN_PW, SUN_PHONE)
        .await;
    let o = env.get("/account/overview", Some(&sun)).await.json();
    assert_eq!(o["actions"]["manage_personnel"], false);
    assert_eq!(o["groups"], json!(["declare", "query", "tax_affairs"]));

    // A person: authorisations yes, personnel no, personal tax yes.
    let (me, _) = env.login_sms("person", None, SUN, SUN_PW, SUN_PHONE).await;
    let o = env.get("/account/overview", Some(&me)).await.json();
    assert_eq!(o["actions"]["manage_personnel"], false);
    assert_eq!(o["actions"]["list_authorizations"], true);
    assert_eq!(o["groups"], json!(["personal_tax"]));
    // Linked and active, yet a person session does not switch: the refusal says how, and never
    // claims there is no link (issue 22 point 1).
    let switch = env
        .post(
            "/account/switch",
            json!({"enterprise": ENT_A, "role": "tax_handler"}),
            Some(&me),
        )
        .await;
    assert_eq!(
        (switch.status, switch.error_code()),
        (StatusCode::FORBIDDEN, "enterprise_login_required".into())
    );
    assert!(
        switch.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("企业业务")
    );

    // An agent: the agency's name; the agreement's scope once acting for a client; leaving
    // the client goes back to the agency.
    let (agent, view) = env
        .login_sms("agent", Some(AGENCY), CHEN, CHEN_PW, "13900000004")
        .await;
    assert_eq!(view["enterprise"], Value::Null);
    let o = env.get("/account/overview", Some(&agent)).await.json();
    assert_eq!(o["agency_name"], "山西诚信税务师事务所");
    let switched = env
        .post(
            "/account/switch",
            json!({"enterprise": ENT_A, "role": "agent"}),
            Some(&agent),
        )
        .await;
    assert_status(&switched, StatusCode::OK);
    let o = env.get("/account/overview", Some(&agent)).await.json();
    assert_eq!(o["agreement"]["scope"], json!(["declare", "query"]));
    assert_eq!(o["groups"], json!(["declare", "query"]));
    assert_eq!(o["enterprise_name"], "太原示例科技有限公司");
    let left = env
        .post("/account/switch/leave", json!({}), Some(&agent))
        .await;
    assert_status(&left, StatusCode::OK);
    assert_eq!(left.json()["enterprise"], Value::Null);
    assert_eq!(left.json()["agency"], AGENCY);
    assert_eq!(
        env.get("/api/declare/x", Some(&agent)).await.status,
        StatusCode::FORBIDDEN
    );
    // A session without an agency has nothing to leave.
    let a = env
        .post("/account/switch/leave", json!({}), Some(&boss))
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
}

/// Two instances on one PostgreSQL: a narrowing made on one is enforced on the other's live
/// session at its next request (the binding's invalidation crosses instances).
#[tokio::test]
async fn a_narrowing_on_one_instance_holds_on_the_other() {
    let Some(url) = test_postgres_url() else {
        return;
    };
    let (env, text) = Env::start_on(&url).await;
    taxgate_store::import_seed(&env.gw.core.store, &seed().to_string(), unix_now())
        .await
        .unwrap();
    let b = Gateway::start(&text, env.dir.path()).await;
    let (boss, _) = env.login_wang().await;
    let (sun, _) = env
        .login_sms("enterprise", Some(ENT_A), SUN, SUN_PW, SUN_PHONE)
        .await;
    let on_b = |path: &'static str| {
        let token = sun.clone();
        let addr = b.public;
        async move {
            send(
                addr,
                http::Request::get(path)
                    .header("host", "gw.test")
                    .header("cookie", format!("taxgate_session={token}"))
                    .body(empty())
                    .unwrap(),
            )
            .await
        }
    };
    assert_eq!(on_b("/api/tax-affairs/x").await.status, StatusCode::OK);
    let id = binding_of(&env, &boss, SUN).await["binding"]
        .as_str()
        .unwrap()
        .to_string();
    let narrowed = update(&env, &boss, &id, json!({"permissions": ["declare"]})).await;
    assert_status(&narrowed, StatusCode::OK);
    let started = std::time::Instant::now();
    loop {
        let r = on_b("/api/tax-affairs/x").await;
        if r.status == StatusCode::FORBIDDEN {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "the other instance still allows tax_affairs"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(on_b("/api/declare/x").await.status, StatusCode::OK);
    b.stop().await;
}

/// Two managers changing one binding at once: each change is decided on the binding it read,
/// and the store applies a change only to that binding (the loser is decided again).
#[tokio::test]
async fn concurrent_updates_each_decide_on_what_they_change() {
    let env = sqlite().await;
    let (boss, _) = env.login_wang().await;
    let id = binding_of(&env, &boss, SUN).await["binding"]
        .as_str()
        .unwrap()
        .to_string();
    let bodies = [
        json!({"permissions": ["declare"]}),
        json!({"valid_until": "2098-12-31T23:59:59+08:00"}),
    ];
    let (a, b) = tokio::join!(
        update(&env, &boss, &id, bodies[0].clone()),
        update(&env, &boss, &id, bodies[1].clone())
    );
    assert_status(&a, StatusCode::OK);
    assert_status(&b, StatusCode::OK);
    // Both changes are in: neither overwrote the other with what it had read.
    let now = binding_of(&env, &boss, SUN).await;
    assert_eq!(now["permissions"], json!(["declare"]));
    assert_eq!(now["valid_until"], "2098-12-31T15:59:59Z");
}
