//! Issue 20: `GET /openapi.json` on the admin listener describes the public API (OpenAPI 3.1):
//! every endpoint docs/api.md lists and no other, every error code, answers that hold to their
//! schemas; and schemathesis, driven by that document, finds no 5xx and no answer the document
//! does not describe.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use http::{Request, StatusCode};
use serde_json::{Value, json};

use taxgate_e2e::*;
use taxgate_gateway::error::Code;

/// Generous limits: the fuzzer may hit `/auth/*` many times a minute from one address. The 429s
/// are still in the document.
const FUZZ_CONFIG: &str = "
[login]
sms_resend_secs = 0
auth_requests_per_minute = 100000
max_failures_per_address_hourly = 100000
sms_per_address_hourly = 100000
sms_global_per_minute = 100000
";

async fn document(env: &Env) -> Value {
    let a = get(env.gw.admin, "/openapi.json").await;
    assert_status(&a, StatusCode::OK);
    assert_eq!(a.headers["content-type"], "application/json");
    a.json()
}

/// `METHOD /path` of every operation in the document.
fn operations(doc: &Value) -> BTreeSet<String> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch", "head"].contains(&method.as_str()) {
                ops.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    ops
}

/// `METHOD /path` of every endpoint docs/api.md names on the public listener: each backticked
/// `GET /…` or `POST /…` before the external-authorization section (queries left out).
fn documented_endpoints() -> BTreeSet<String> {
    let api = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/api.md"))
        .unwrap();
    let public = api.split("## External authorization").next().unwrap();
    let mut out = BTreeSet::new();
    for chunk in public.split('`').skip(1).step_by(2) {
        for method in ["GET ", "POST "] {
            if let Some(rest) = chunk.strip_prefix(method)
                && rest.starts_with('/')
            {
                let path = rest.split(['?', ' ']).next().unwrap();
                // The document itself is the admin listener's.
                if path != "/openapi.json" {
                    out.insert(format!("{method}{path}"));
                }
            }
        }
    }
    out
}

/// `instance` is valid for the document's schema `name` (its references resolved in the
/// document).
#[track_caller]
fn assert_valid(doc: &Value, name: &str, instance: &Value) {
    let schema = json!({
        "$ref": format!("#/components/schemas/{name}"),
        "components": doc["components"],
    });
    if let Err(e) = jsonschema::validate(&schema, instance) {
        panic!("{name}: {e} at {}\n{instance:#}", e.instance_path());
    }
}

#[track_caller]
fn assert_invalid(doc: &Value, name: &str, instance: &Value) {
    let schema = json!({
        "$ref": format!("#/components/schemas/{name}"),
        "components": doc["components"],
    });
    assert!(
        jsonschema::validate(&schema, instance).is_err(),
        "{name} should refuse {instance}"
    );
}

#[tokio::test]
async fn openapi_document_is_3_1_and_names_every_documented_endpoint() {
    let env = Env::start("").await;
    let doc = document(&env).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    let served = operations(&doc);
    let documented = documented_endpoints();
    assert!(documented.len() > 30, "docs/api.md parsed: {documented:?}");
    let missing: Vec<_> = documented.difference(&served).collect();
    assert!(
        missing.is_empty(),
        "in docs/api.md, not in /openapi.json: {missing:?}"
    );
    let extra: Vec<_> = served.difference(&documented).collect();
    assert!(
        extra.is_empty(),
        "in /openapi.json, not in docs/api.md: {extra:?}"
    );
    // Session endpoints say how the session travels.
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["session_cookie"]["type"], "apiKey");
    assert_eq!(schemes["session_cookie"]["in"], "cookie");
    assert_eq!(schemes["session_cookie"]["name"], "taxgate_session");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert!(doc["paths"]["/auth/session"]["get"]["security"].is_array());
    assert!(
        doc["paths"]["/auth/login"]["post"]
            .get("security")
            .is_none()
    );
    // Every 429 is declared, with its Retry-After.
    for op in ["/auth/login", "/auth/sms/send", "/account/phone"] {
        let r = &doc["paths"][op]["post"]["responses"]["429"];
        assert!(r["headers"]["Retry-After"].is_object(), "{op}: {r}");
    }
    // Only GET (and HEAD) serve it.
    let a = send(
        env.gw.admin,
        Request::post("/openapi.json").body(empty()).unwrap(),
    )
    .await;
    assert_status(&a, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.error_code(), "method_not_allowed");
    // The public listener does not serve it.
    let a = get(env.gw.public, "/openapi.json").await;
    assert_ne!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn openapi_error_schema_lists_every_code() {
    let env = Env::start("").await;
    let doc = document(&env).await;
    let codes: BTreeSet<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for code in Code::ALL {
        assert!(
            codes.contains(code.as_str()),
            "`{}` is not in ErrorCode",
            code.as_str()
        );
    }
    let reasons = std::fs::read_to_string(policies_dir().join("reasons.toml")).unwrap();
    let reasons: Vec<&str> = reasons
        .lines()
        .filter_map(|l| l.strip_prefix('[')?.strip_suffix(']'))
        .collect();
    assert!(reasons.len() > 5, "reasons.toml parsed: {reasons:?}");
    for reason in reasons {
        assert!(
            codes.contains(reason),
            "reason `{reason}` is not in ErrorCode"
        );
    }
    // Every declared error answer is an ErrorBody.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, r) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        r["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn openapi_real_answers_hold_to_their_schemas() {
    let env = Env::start("").await;
    let doc = document(&env).await;

    // A first factor, then an error with a hint.
    let a = env.login("enterprise", Some(ENT_A), WANG, WANG_PW).await;
    assert_status(&a, StatusCode::OK);
    assert_valid(&doc, "ChallengeAnswer", &a.json());
    let a = env
        .login("enterprise", Some(ENT_A), WANG, "wrong-Password-1")
        .await;
    assert_status(&a, StatusCode::UNAUTHORIZED);
    assert_eq!(a.error_code(), "invalid_credentials");
    assert!(a.json()["error"]["attempts_left"].is_number());
    assert_valid(&doc, "ErrorBody", &a.json());
    // A policy refusal (a reason of reasons.toml) and an input error with its field.
    let a = env.login("enterprise", Some(ENT_A), LI, LI_PW).await;
    assert_eq!(a.error_code(), "binding_pending");
    assert_valid(&doc, "ErrorBody", &a.json());
    let a = env
        .post("/auth/login", json!({"entry": "nope"}), None)
        .await;
    assert_status(&a, StatusCode::BAD_REQUEST);
    assert_eq!(a.json()["error"]["field"], "entry");
    assert_valid(&doc, "ErrorBody", &a.json());

    let (token, view) = env.login_wang().await;
    assert_valid(&doc, "SessionView", &view);
    let a = env.get("/auth/session", Some(&token)).await;
    assert_status(&a, StatusCode::OK);
    assert_valid(&doc, "SessionView", &a.json());
    for (path, schema) in [
        ("/account/identities", "Identity"),
        ("/account/personnel", "BindingItem"),
        ("/account/sessions", "OwnSession"),
        ("/account/personnel/sessions", "PersonnelSession"),
    ] {
        let a = env.get(path, Some(&token)).await;
        assert_status(&a, StatusCode::OK);
        let list = a.json();
        assert!(!list.as_array().unwrap().is_empty(), "{path}");
        for item in list.as_array().unwrap() {
            assert_valid(&doc, schema, item);
        }
    }
    let a = env.get("/account/overview", Some(&token)).await;
    assert_status(&a, StatusCode::OK);
    assert_valid(&doc, "Overview", &a.json());
    let a = env.post("/auth/step-up", json!({}), Some(&token)).await;
    assert_status(&a, StatusCode::OK);
    assert_valid(&doc, "ChallengeAnswer", &a.json());
    let a = env
        .post("/auth/password/reset", json!({"account": WANG}), None)
        .await;
    assert_status(&a, StatusCode::OK);
    assert_valid(&doc, "ChallengeAnswer", &a.json());

    // An agent: the agency's clients, and the overview with the agreement acted through.
    let (agent, _) = env
        .login_sms("agent", Some(AGENCY), CHEN, CHEN_PW, "13900000004")
        .await;
    let a = env.get("/account/identities", Some(&agent)).await;
    assert_status(&a, StatusCode::OK);
    let clients = a.json();
    assert!(clients[0]["scope"].is_array(), "{clients}");
    for item in clients.as_array().unwrap() {
        assert_valid(&doc, "Identity", item);
    }
    let a = env
        .post(
            "/account/switch",
            json!({"enterprise": ENT_A, "role": "agent"}),
            Some(&agent),
        )
        .await;
    assert_status(&a, StatusCode::OK);
    assert_valid(&doc, "SessionView", &a.json());
    let a = env.get("/account/overview", Some(&agent)).await;
    assert_status(&a, StatusCode::OK);
    let overview = a.json();
    assert!(overview["agreement"]["scope"].is_array(), "{overview}");
    assert_valid(&doc, "Overview", &overview);

    // The request schemas take the bodies the gateway accepts (the identifier patterns too).
    for (schema, body) in [
        (
            "LoginRequest",
            json!({"entry": "enterprise", "taxpayer_id": ENT_A, "account": WANG, "password": WANG_PW}),
        ),
        (
            "LoginRequest",
            json!({"entry": "person", "account": "wangfang", "password": WANG_PW}),
        ),
        (
            "SwitchRequest",
            json!({"enterprise": ENT_B, "role": "tax_handler"}),
        ),
        (
            "GrantRequest",
            json!({"id_number": ZHOU, "role": "tax_handler", "permissions": ["declare"], "valid_until": "2099-12-31T23:59:59+08:00"}),
        ),
        (
            "ApplicationRequest",
            json!({"enterprise": ENT_A, "role": "invoice_clerk"}),
        ),
        ("PhoneRequest", json!({"phone": "13800138000"})),
        ("PhoneRequest", json!({"phone": "+8613800138000"})),
        (
            "PhoneRecoverRequest",
            json!({"account": WANG, "password": WANG_PW, "phone": "008613900000009"}),
        ),
        (
            "FaceCallback",
            json!({"nonce": "n", "id_number": "11010519491231002X", "result": "pass"}),
        ),
    ] {
        assert_valid(&doc, schema, &body);
    }
    assert_invalid(&doc, "PhoneRequest", &json!({"phone": "12800138000"}));
    assert_invalid(
        &doc,
        "GrantRequest",
        &json!({"id_number": "1401051990010112", "role": "tax_handler"}),
    );

    // The schemas can fail: a session view without `mfa`, a code that is no code.
    let mut broken = view.clone();
    broken.as_object_mut().unwrap().remove("mfa");
    assert_invalid(&doc, "SessionView", &broken);
    assert_invalid(
        &doc,
        "ErrorBody",
        &json!({"error": {"code": "no_such_code", "message": "x", "message_en": "x"}}),
    );
}

/// Where schemathesis is: `TAXGATE_SCHEMATHESIS` (the `st` executable), else `st` on `PATH`.
fn schemathesis() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("TAXGATE_SCHEMATHESIS") {
        return Some(p.into());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("st"))
            .find(|p| p.is_file())
    })
}

/// schemathesis against a real gateway with the document from its admin listener: no 5xx, every
/// status, content type and body as the document declares. Bounded: a few examples per operation
/// and a hard timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_schemathesis_finds_nothing() {
    let required = std::env::var("TAXGATE_REQUIRE_SCHEMATHESIS").is_ok_and(|v| v == "1");
    let Some(st) = schemathesis() else {
        assert!(
            !required,
            "TAXGATE_REQUIRE_SCHEMATHESIS=1 but schemathesis (`st`) is not installed"
        );
        println!(
            "skipping schemathesis: `st` not found (pip install schemathesis, or set TAXGATE_SCHEMATHESIS)"
        );
        return;
    };
    let env = Env::start(FUZZ_CONFIG).await;
    // A session for the fuzzer, so it gets past 401: 王芳, legal representative of A.
    let (token, _) = env.login_wang().await;
    let schema_url = format!("http://{}/openapi.json", env.gw.admin);
    let base_url = format!("http://{}", env.gw.public);
    let har = env.dir.path().join("schemathesis.har");
    // The session for both security schemes: with only a header, schemathesis would make up a
    // cookie of its own, and two different tokens are 400 `ambiguous_session`.
    let config = env.dir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "[auth.openapi.session_cookie]\napi_key = \"{token}\"\n\
             [auth.openapi.bearer]\nbearer = \"{token}\"\n"
        ),
    )
    .unwrap();
    let mut cmd = tokio::process::Command::new(&st);
    cmd.arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(&schema_url)
        .args(["--url", &base_url])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--output-sanitize", "false"])
        // Operations that end the fuzzer's own session (it finds the session's id in
        // `GET /account/sessions` and revokes it): tests/e2e/sessions.rs covers them.
        .args(["--exclude-path", "/auth/logout"])
        .args(["--exclude-path", "/account/sessions/revoke-others"])
        .args(["--exclude-path", "/account/sessions/{id}/revoke"])
        .args(["--exclude-path", "/account/personnel/sessions/{id}/revoke"])
        .args(["--max-examples", "8"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--seed", &seed()])
        .args(["--workers", "2"])
        .args(["--request-timeout", "10"])
        .args(["--max-time", &max_time()])
        .args(["--suppress-health-check", "all"])
        .args(["--report", "har", "--report-har-path"])
        .arg(&har)
        // Its example database and cache go to the test's own directory, not the checkout.
        .current_dir(env.dir.path())
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .kill_on_drop(true);
    // The hard bound: the budget, plus the coverage phase and start-up.
    let bound = max_time().parse::<u64>().unwrap_or(90) + 80;
    let run = tokio::time::timeout(Duration::from_secs(bound), cmd.output()).await;
    let output = match run {
        Ok(output) => output.unwrap_or_else(|e| panic!("{} did not run: {e}", st.display())),
        Err(_) => panic!("schemathesis ran past its {bound} s bound"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        output.status.success(),
        "schemathesis found problems (exit {:?}); the output is above",
        output.status.code()
    );
    // It did test, and with the session: what the gateway answered, by status and code.
    if let Some(keep) = std::env::var_os("TAXGATE_SCHEMATHESIS_HAR") {
        std::fs::copy(&har, keep).unwrap();
    }
    let har: Value = serde_json::from_slice(&std::fs::read(&har).unwrap()).unwrap();
    let mut answers = std::collections::BTreeMap::<(String, u64, String), usize>::new();
    for entry in har["log"]["entries"].as_array().unwrap() {
        let method = entry["request"]["method"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let url = entry["request"]["url"].as_str().unwrap_or("");
        let path = url
            .split('?')
            .next()
            .unwrap_or("")
            .splitn(4, '/')
            .nth(3)
            .unwrap_or("");
        let op = format!(
            "{method} /{}",
            path.split('/').take(2).collect::<Vec<_>>().join("/")
        );
        let status = entry["response"]["status"].as_u64().unwrap_or(0);
        let text = entry["response"]["content"]["text"].as_str().unwrap_or("");
        let code = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
            .unwrap_or_default();
        *answers.entry((op, status, code)).or_default() += 1;
    }
    let total: usize = answers.values().sum();
    println!("{total} requests:");
    for ((op, status, code), n) in &answers {
        println!("  {n:>6}  {status} {op} {code}");
    }
    assert!(total > 500, "schemathesis sent only {total} requests");
    let session_ok = answers
        .iter()
        .filter(|((op, status, _), _)| op == "GET /auth/session" && *status == 200)
        .count();
    assert!(
        session_ok > 0,
        "no request reached the session: {answers:?}"
    );
    assert!(
        !answers.keys().any(|(_, status, _)| *status >= 500),
        "a 5xx answer"
    );
}

/// schemathesis' seed (`TAXGATE_SCHEMATHESIS_SEED`, default 20): CI runs the same cases each time;
/// another seed explores others.
fn seed() -> String {
    std::env::var("TAXGATE_SCHEMATHESIS_SEED").unwrap_or_else(|_| "20".to_string())
}

/// schemathesis' time budget, seconds (`TAXGATE_SCHEMATHESIS_SECS`, default 90).
fn max_time() -> String {
    std::env::var("TAXGATE_SCHEMATHESIS_SECS").unwrap_or_else(|_| "90".to_string())
}
