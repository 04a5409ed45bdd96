//! Issue 15 point 4 and issue 21 points 5, 8 and 13, end to end: no escalation through
//! personnel management (403 `grant_not_permitted`), separation of duties wherever a binding comes
//! to be (409 `conflict_of_roles`), pending grants that die with their granter, and no validity
//! that has already ended (400 `invalid_input`). Every refusal is checked against the store too:
//! nothing changed.

use http::StatusCode;
use serde_json::{Value, json};
use taxgate_e2e::*;
use taxgate_store::{Binding, IdNumber, NewBinding, Role, Store, TaxpayerId};

/// 赵敏 with a password of her own (the shared seed makes her a migrated user).
const ZHAO_PW: &str = "Zhao-Min-2026!";
const ZHAO_PHONE: &str = "13900000003";
/// 钱进: administrator of A limited to `query`.
const QIAN: &str = "140105198002020078";
const QIAN_PW: &str = "Qian-Jin-2026!";
const QIAN_PHONE: &str = "13900000011";
const WANG_PHONE: &str = "13800138000";
const ZHOU_PHONE: &str = "13900000006";
const CHEN_PHONE: &str = "13900000004";

/// The shared seed, with 赵敏 (finance manager of A) holding `zhao_groups` and a password, and
/// 钱进 an administrator of A limited to `query`.
fn seed(zhao_groups: Option<&[&str]>, zhao_until: Option<&str>) -> Value {
    let mut seed = seed_json();
    for p in seed["persons"].as_array_mut().unwrap() {
        if p["id_number"] == ZHAO {
            p["password"] = ZHAO_PW.into();
        }
    }
    seed["persons"].as_array_mut().unwrap().push(json!(
        {"id_number": QIAN, "name": "钱进", "phone": QIAN_PHONE, "password": QIAN_PW}
    ));
    for b in seed["bindings"].as_array_mut().unwrap() {
        if b["person"] == ZHAO && b["enterprise"] == ENT_A {
            if let Some(groups) = zhao_groups {
                b["permissions"] = json!(groups);
            }
            if let Some(until) = zhao_until {
                b["valid_from"] = "2023-01-01T00:00:00+08:00".into();
                b["valid_until"] = until.into();
            }
        }
    }
    seed["bindings"].as_array_mut().unwrap().push(json!(
        {"person": QIAN, "enterprise": ENT_A, "role": "admin", "permissions": ["query"],
         "enterprise_confirmed": true, "person_confirmed": true}
    ));
    seed
}

fn id(s: &str) -> IdNumber {
    IdNumber::parse(s).unwrap()
}

fn tid(s: &str) -> TaxpayerId {
    TaxpayerId::parse(s).unwrap()
}

/// Every binding of `person` in A, revoked ones included.
async fn bindings_in_a(env: &Env, person: &str) -> Vec<Binding> {
    env.gw
        .core
        .store
        .bindings_between(&id(person), &tid(ENT_A))
        .await
        .unwrap()
}

async fn all_bindings_of_a(env: &Env) -> Vec<Binding> {
    env.gw
        .core
        .store
        .bindings_of_enterprise(&tid(ENT_A))
        .await
        .unwrap()
}

fn refused(a: &Answer, status: StatusCode, code: &str) {
    assert_eq!(
        (a.status, a.error_code().as_str()),
        (status, code),
        "{}",
        String::from_utf8_lossy(&a.body)
    );
}

async fn add(env: &Env, who: &str, body: Value) -> Answer {
    env.post("/account/personnel", body, Some(who)).await
}

/// Issue 15 point 4: a finance manager holding only `query` granted itself
/// `legal_representative` with all four groups, confirmed it, switched and declared.
#[tokio::test]
async fn a_query_only_finance_manager_cannot_grant_itself_more() {
    let env = Env::start_with("", &seed(Some(&["query"]), None)).await;
    let (fm, view) = env
        .login_sms("enterprise", Some(ENT_A), ZHAO, ZHAO_PW, ZHAO_PHONE)
        .await;
    assert_eq!(view["role"], "finance_manager");
    let before = all_bindings_of_a(&env).await;

    // The attack as reported, and every other way to the same groups.
    for body in [
        json!({"id_number": ZHAO, "role": "legal_representative",
               "permissions": ["declare", "invoice", "query", "tax_affairs"]}),
        json!({"id_number": ZHAO, "role": "legal_representative"}),
        json!({"id_number": ZHOU, "role": "legal_representative", "permissions": ["query"]}),
        json!({"id_number": ZHAO, "role": "admin", "permissions": ["query"]}),
        json!({"id_number": ZHOU, "role": "finance_manager"}),
        // More than it holds, explicitly or through the role's defaults.
        json!({"id_number": ZHAO, "role": "tax_handler", "permissions": ["declare", "query"]}),
        json!({"id_number": ZHOU, "role": "tax_handler"}),
        json!({"id_number": ZHOU, "role": "invoice_clerk"}),
    ] {
        let a = add(&env, &fm, body.clone()).await;
        refused(&a, StatusCode::FORBIDDEN, "grant_not_permitted");
        assert!(a.json()["error"]["message_en"].as_str().unwrap().len() > 10);
        assert!(a.json()["error"]["message"].as_str().unwrap().len() > 10);
    }
    assert_eq!(all_bindings_of_a(&env).await, before, "nothing changed");
    // Still only query: the self-grant never came to be, so nothing to confirm or switch to.
    assert_eq!(
        env.get("/api/declare/x", Some(&fm)).await.error_code(),
        "not_permitted"
    );
    let switch = env
        .post(
            "/account/switch",
            json!({"enterprise": ENT_A, "role": "legal_representative"}),
            Some(&fm),
        )
        .await;
    assert_eq!(switch.status, StatusCode::FORBIDDEN);

    // Within its own groups it still manages personnel.
    let ok = add(
        &env,
        &fm,
        json!({"id_number": ZHOU, "role": "invoice_clerk", "permissions": ["query"]}),
    )
    .await;
    assert_status(&ok, StatusCode::CREATED);
    let zhou = bindings_in_a(&env, ZHOU).await;
    assert_eq!(zhou.len(), 1);
    assert_eq!(zhou[0].role, Role::InvoiceClerk);
}

/// Finance managers and administrators are made only by the legal representative.
#[tokio::test]
async fn managers_are_made_only_by_the_legal_representative() {
    let env = Env::start_with("", &seed(None, None)).await;
    let (fm, _) = env
        .login_sms("enterprise", Some(ENT_A), ZHAO, ZHAO_PW, ZHAO_PHONE)
        .await;
    for role in ["admin", "finance_manager"] {
        let a = add(&env, &fm, json!({"id_number": ZHOU, "role": role})).await;
        refused(&a, StatusCode::FORBIDDEN, "grant_not_permitted");
    }
    assert!(bindings_in_a(&env, ZHOU).await.is_empty());
    // A full finance manager adds a tax handler with the role's defaults.
    let th = add(&env, &fm, json!({"id_number": ZHOU, "role": "tax_handler"})).await;
    assert_eq!(th.status, StatusCode::CREATED);

    let (lr, _) = env
        .login_sms("enterprise", Some(ENT_A), WANG, WANG_PW, WANG_PHONE)
        .await;
    let admin = add(&env, &lr, json!({"id_number": ZHOU, "role": "admin"})).await;
    assert_status(&admin, StatusCode::CREATED);
    let lr_again = add(
        &env,
        &lr,
        json!({"id_number": ZHOU, "role": "legal_representative"}),
    )
    .await;
    refused(&lr_again, StatusCode::FORBIDDEN, "grant_not_permitted");
    let roles: Vec<Role> = bindings_in_a(&env, ZHOU)
        .await
        .iter()
        .map(|b| b.role)
        .collect();
    assert_eq!(roles.len(), 2);
    assert!(roles.contains(&Role::Admin) && roles.contains(&Role::TaxHandler));

    // Confirming a person's application is a grant too: an administrator-applicant is
    // confirmed only by the legal representative.
    let (me, _) = env
        .login_sms("person", None, ZHOU, ZHOU_PW, ZHOU_PHONE)
        .await;
    let apply = env
        .post(
            "/account/applications",
            json!({"enterprise": ENT_A, "role": "finance_manager"}),
            Some(&me),
        )
        .await;
    assert_eq!(apply.status, StatusCode::CREATED);
    let app = apply.json()["binding"].as_str().unwrap().to_string();
    let by_fm = env
        .post(
            &format!("/account/personnel/{app}/confirm"),
            json!({}),
            Some(&fm),
        )
        .await;
    refused(&by_fm, StatusCode::FORBIDDEN, "grant_not_permitted");
    let stored = env.gw.core.store.binding(&app).await.unwrap().unwrap();
    assert!(
        !stored.enterprise_confirmed,
        "the refused confirmation changed nothing"
    );
    let by_lr = env
        .post(
            &format!("/account/personnel/{app}/confirm"),
            json!({}),
            Some(&lr),
        )
        .await;
    assert_eq!(by_lr.status, StatusCode::NO_CONTENT);
}

/// Issue 15 point 4: an administrator limited to `query` ended the legal representative's
/// binding.
#[tokio::test]
async fn only_the_legal_representative_ends_managers_and_nobody_ends_it() {
    let env = Env::start_with("", &seed(None, None)).await;
    let wang = bindings_in_a(&env, WANG).await.remove(0);
    let zhao = bindings_in_a(&env, ZHAO).await.remove(0);
    let qian = bindings_in_a(&env, QIAN).await.remove(0);
    let sun = bindings_in_a(&env, SUN).await.remove(0);
    let (admin, _) = env
        .login_sms("enterprise", Some(ENT_A), QIAN, QIAN_PW, QIAN_PHONE)
        .await;
    let (fm, _) = env
        .login_sms("enterprise", Some(ENT_A), ZHAO, ZHAO_PW, ZHAO_PHONE)
        .await;
    let (lr, _) = env
        .login_sms("enterprise", Some(ENT_A), WANG, WANG_PW, WANG_PHONE)
        .await;
    let revoke = |who: String, b: String| {
        let env = &env;
        async move {
            env.post(
                &format!("/account/personnel/{b}/revoke"),
                json!({}),
                Some(&who),
            )
            .await
        }
    };
    for (who, target) in [
        (&admin, &wang),
        (&fm, &wang),
        (&lr, &wang),
        (&admin, &zhao),
        (&fm, &qian),
    ] {
        let a = revoke(who.clone(), target.id.clone()).await;
        refused(&a, StatusCode::FORBIDDEN, "grant_not_permitted");
        let now = env
            .gw
            .core
            .store
            .binding(&target.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&now, target, "a refused revoke changes nothing");
    }
    // The legal representative still works.
    assert_eq!(
        env.get("/api/declare/x", Some(&lr)).await.status,
        StatusCode::OK
    );

    // A person's application to be legal representative, never confirmed by the enterprise,
    // ends nothing: any personnel manager may refuse it.
    let (me, _) = env
        .login_sms("person", None, ZHOU, ZHOU_PW, ZHOU_PHONE)
        .await;
    let apply = env
        .post(
            "/account/applications",
            json!({"enterprise": ENT_A, "role": "legal_representative"}),
            Some(&me),
        )
        .await;
    assert_eq!(apply.status, StatusCode::CREATED);
    let app = apply.json()["binding"].as_str().unwrap().to_string();
    let a = revoke(admin.clone(), app.clone()).await;
    assert_status(&a, StatusCode::NO_CONTENT);
    assert!(
        env.gw
            .core
            .store
            .binding(&app)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );

    // Ending a tax handler's binding is for any personnel manager; a manager's for the legal
    // representative.
    let a = revoke(admin.clone(), sun.id.clone()).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert!(
        env.gw
            .core
            .store
            .binding(&sun.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    let a = revoke(lr.clone(), qian.id.clone()).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(
        env.get("/account/personnel", Some(&admin))
            .await
            .error_code(),
        "not_linked"
    );
}

/// Issue 21 point 5: the agency's staff member was added to the client as tax handler and then
/// acted for it both as agent and as tax handler; the next import of the unchanged seed failed.
#[tokio::test]
async fn agency_staff_get_no_role_in_the_client() {
    let env = Env::start_with("", &seed(None, None)).await;
    let (lr, _) = env
        .login_sms("enterprise", Some(ENT_A), WANG, WANG_PW, WANG_PHONE)
        .await;
    let a = add(&env, &lr, json!({"id_number": CHEN, "role": "tax_handler"})).await;
    refused(&a, StatusCode::CONFLICT, "conflict_of_roles");
    assert!(a.json()["error"]["message"].as_str().unwrap().len() > 10);
    assert!(bindings_in_a(&env, CHEN).await.is_empty());

    // The person side: applying to the client.
    let (me, _) = env
        .login_sms("person", None, CHEN, CHEN_PW, CHEN_PHONE)
        .await;
    let apply = env
        .post(
            "/account/applications",
            json!({"enterprise": ENT_A, "role": "invoice_clerk"}),
            Some(&me),
        )
        .await;
    refused(&apply, StatusCode::CONFLICT, "conflict_of_roles");
    assert!(bindings_in_a(&env, CHEN).await.is_empty());

    // Confirmations: a grant and an application that exist in the store (made before the
    // agreement named her) are not confirmed by either side.
    let store = &env.gw.core.store;
    let new = |role, enterprise_confirmed, person_confirmed| NewBinding {
        person: id(CHEN),
        enterprise: tid(ENT_A),
        role,
        permissions: None,
        valid_from: unix_now(),
        valid_until: None,
        enterprise_confirmed,
        person_confirmed,
        by: "test".into(),
        granted_by: None,
        now: unix_now(),
    };
    let grant = store
        .create_binding(new(Role::TaxHandler, true, false))
        .await
        .unwrap();
    let application = store
        .create_binding(new(Role::TicketBuyer, false, true))
        .await
        .unwrap();
    let confirm = env
        .post(
            &format!("/account/authorizations/{}/confirm", grant.id),
            json!({}),
            Some(&me),
        )
        .await;
    refused(&confirm, StatusCode::CONFLICT, "conflict_of_roles");
    let confirm = env
        .post(
            &format!("/account/personnel/{}/confirm", application.id),
            json!({}),
            Some(&lr),
        )
        .await;
    refused(&confirm, StatusCode::CONFLICT, "conflict_of_roles");
    assert_eq!(store.binding(&grant.id).await.unwrap().unwrap(), grant);
    assert_eq!(
        store.binding(&application.id).await.unwrap().unwrap(),
        application
    );
    assert_eq!(
        env.login("enterprise", Some(ENT_A), CHEN, CHEN_PW)
            .await
            .error_code(),
        "binding_pending"
    );
    // Clean up the planted rows; the unchanged seed still imports.
    store
        .revoke_binding(&grant.id, "test", unix_now())
        .await
        .unwrap();
    store
        .revoke_binding(&application.id, "test", unix_now())
        .await
        .unwrap();
    taxgate_store::import_seed(store, &seed(None, None).to_string(), unix_now())
        .await
        .unwrap();

    // Someone who is not agency staff of A is added as before.
    let ok = add(&env, &lr, json!({"id_number": ZHOU, "role": "tax_handler"})).await;
    assert_eq!(ok.status, StatusCode::CREATED);
}

/// Issue 21 point 8: after the finance manager's binding ended, a pending grant it had made was
/// confirmed by the grantee and became active.
#[tokio::test]
async fn a_pending_grant_dies_with_its_granter() {
    let env = Env::start_with("", &seed(None, None)).await;
    let (fm, _) = env
        .login_sms("enterprise", Some(ENT_A), ZHAO, ZHAO_PW, ZHAO_PHONE)
        .await;
    let a = add(&env, &fm, json!({"id_number": ZHOU, "role": "tax_handler"})).await;
    assert_eq!(a.status, StatusCode::CREATED);
    let grant = a.json()["binding"].as_str().unwrap().to_string();
    let zhao = bindings_in_a(&env, ZHAO).await.remove(0);

    // The legal representative ends the finance manager's binding.
    let (lr, _) = env
        .login_sms("enterprise", Some(ENT_A), WANG, WANG_PW, WANG_PHONE)
        .await;
    let r = env
        .post(
            &format!("/account/personnel/{}/revoke", zhao.id),
            json!({}),
            Some(&lr),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let stored = env.gw.core.store.binding(&grant).await.unwrap().unwrap();
    assert!(
        stored.revoked_at.is_some(),
        "the pending grant died with its granter"
    );
    assert_eq!(stored.updated_by, ZHAO, "updated_by keeps the granter");

    let (me, _) = env
        .login_sms("person", None, ZHOU, ZHOU_PW, ZHOU_PHONE)
        .await;
    let c = env
        .post(
            &format!("/account/authorizations/{grant}/confirm"),
            json!({}),
            Some(&me),
        )
        .await;
    assert_eq!(c.status, StatusCode::NOT_FOUND);
    assert!(
        !env.gw
            .core
            .store
            .binding(&grant)
            .await
            .unwrap()
            .unwrap()
            .person_confirmed
    );
    assert_eq!(
        env.login("enterprise", Some(ENT_A), ZHOU, ZHOU_PW)
            .await
            .error_code(),
        "not_linked"
    );
}

/// The same when the granter leaves (解除绑定 on the person side).
#[tokio::test]
async fn a_pending_grant_dies_when_its_granter_unbinds() {
    let env = Env::start_with("", &seed(None, None)).await;
    let (fm, _) = env
        .login_sms("enterprise", Some(ENT_A), ZHAO, ZHAO_PW, ZHAO_PHONE)
        .await;
    let a = add(&env, &fm, json!({"id_number": ZHOU, "role": "tax_handler"})).await;
    assert_eq!(a.status, StatusCode::CREATED);
    let grant = a.json()["binding"].as_str().unwrap().to_string();
    let zhao = bindings_in_a(&env, ZHAO).await.remove(0);
    let (person, _) = env
        .login_sms("person", None, ZHAO, ZHAO_PW, ZHAO_PHONE)
        .await;
    let u = env
        .post(
            &format!("/account/authorizations/{}/unbind", zhao.id),
            json!({}),
            Some(&person),
        )
        .await;
    assert_eq!(u.status, StatusCode::NO_CONTENT);
    let stored = env.gw.core.store.binding(&grant).await.unwrap().unwrap();
    assert!(stored.revoked_at.is_some());
    assert_eq!(stored.updated_by, ZHAO);
    let (me, _) = env
        .login_sms("person", None, ZHOU, ZHOU_PW, ZHOU_PHONE)
        .await;
    let c = env
        .post(
            &format!("/account/authorizations/{grant}/confirm"),
            json!({}),
            Some(&me),
        )
        .await;
    assert_eq!(c.status, StatusCode::NOT_FOUND);
}

/// The same when the granter's binding ends by its validity (here: an import that shortens it).
#[tokio::test]
async fn a_pending_grant_dies_when_its_granter_expires() {
    let env = Env::start_with("", &seed(None, None)).await;
    let (fm, _) = env
        .login_sms("enterprise", Some(ENT_A), ZHAO, ZHAO_PW, ZHAO_PHONE)
        .await;
    let a = add(
        &env,
        &fm,
        json!({"id_number": ZHOU, "role": "invoice_clerk"}),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let grant = a.json()["binding"].as_str().unwrap().to_string();
    let store = &env.gw.core.store;
    let ended = seed(None, Some("2025-01-01T00:00:00+08:00"));
    taxgate_store::import_seed(store, &ended.to_string(), unix_now())
        .await
        .unwrap();

    let (me, _) = env
        .login_sms("person", None, ZHOU, ZHOU_PW, ZHOU_PHONE)
        .await;
    let c = env
        .post(
            &format!("/account/authorizations/{grant}/confirm"),
            json!({}),
            Some(&me),
        )
        .await;
    assert_eq!(c.status, StatusCode::NOT_FOUND);
    let stored = store.binding(&grant).await.unwrap().unwrap();
    assert!(stored.revoked_at.is_some() && !stored.person_confirmed);
    assert_eq!(stored.updated_by, ZHAO);
}

/// Issue 21 point 13: `/account/applications` (and `/account/personnel`) accepted a
/// `valid_until` in the past, for any role including `legal_representative`.
#[tokio::test]
async fn a_validity_that_already_ended_is_invalid_input() {
    let env = Env::start_with("", &seed(None, None)).await;
    let (me, _) = env
        .login_sms("person", None, ZHOU, ZHOU_PW, ZHOU_PHONE)
        .await;
    for role in ["legal_representative", "tax_handler"] {
        let a = env
            .post(
                "/account/applications",
                json!({"enterprise": ENT_A, "role": role,
                       "valid_until": "2020-01-01T00:00:00+08:00"}),
                Some(&me),
            )
            .await;
        refused(&a, StatusCode::BAD_REQUEST, "invalid_input");
        assert_eq!(a.json()["error"]["field"], "valid_until");
    }
    let (lr, _) = env
        .login_sms("enterprise", Some(ENT_A), WANG, WANG_PW, WANG_PHONE)
        .await;
    let a = add(
        &env,
        &lr,
        json!({"id_number": ZHOU, "role": "tax_handler",
               "valid_until": "2020-01-01T00:00:00+08:00"}),
    )
    .await;
    refused(&a, StatusCode::BAD_REQUEST, "invalid_input");
    assert_eq!(a.json()["error"]["field"], "valid_until");
    assert!(bindings_in_a(&env, ZHOU).await.is_empty());
    // A future end is fine.
    let a = env
        .post(
            "/account/applications",
            json!({"enterprise": ENT_A, "role": "tax_handler",
                   "valid_until": "2099-01-01T00:00:00+08:00"}),
            Some(&me),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
}
