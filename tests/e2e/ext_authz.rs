//! Issue 18, external authorization (CONTRACT section 9): taxgate deciding behind the proxy an
//! operator already runs. Against the real peers: nginx (`auth_request`) and Caddy
//! (`forward_auth`) from Debian in front of the echo backend, and a tonic client of Envoy's
//! `Authorization/Check` built from the same `envoy-types` protos as the server. Traefik's
//! ForwardAuth and Envoy's HTTP service are exercised through their protocols (requests shaped
//! as they send them). Every mode must answer what the inline gateway answers, overwrite or
//! remove spoofed `x-taxgate-*`, refuse path confusion, require the token when one is set, and
//! honour a revocation on another instance (PostgreSQL).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse};
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address, socket_address};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use http::StatusCode;
use serde_json::{Value, json};
use taxgate_e2e::*;

/// The shared token of the tests that set one.
const TOKEN: &str = "ext-token-0123456789abcdef";

fn ext_section(token: bool) -> String {
    let token = if token {
        format!("token = \"{TOKEN}\"\n")
    } else {
        String::new()
    };
    format!("\n[ext_authz]\nlisten = \"127.0.0.1:0\"\ngrpc_listen = \"127.0.0.1:0\"\n{token}")
}

async fn env(token: bool) -> Env {
    Env::start(&ext_section(token)).await
}

fn ext(env: &Env) -> SocketAddr {
    env.gw.ext.expect("the ext_authz listener is bound")
}

/// A request to the ext listener with `headers`.
async fn ext_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
) -> Answer {
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "taxgate-ext.internal");
    for (n, v) in headers {
        req = req.header(*n, v.as_str());
    }
    send(addr, req.body(empty()).unwrap()).await
}

/// Traefik ForwardAuth / Caddy `forward_auth`: the original request in `X-Forwarded-*`, the
/// client's headers as they came.
async fn forward_auth(
    addr: SocketAddr,
    method: &str,
    uri: &str,
    session: Option<&str>,
    extra: &[(&str, &str)],
) -> Answer {
    let mut headers = vec![
        ("x-forwarded-method", method.to_string()),
        ("x-forwarded-uri", uri.to_string()),
        ("x-forwarded-host", "etax.example.cn".to_string()),
        ("x-forwarded-proto", "https".to_string()),
        ("x-forwarded-for", "203.0.113.7".to_string()),
    ];
    if let Some(token) = session {
        headers.push(("cookie", format!("theme=dark; taxgate_session={token}")));
    }
    for (n, v) in extra {
        headers.push((n, v.to_string()));
    }
    ext_request(addr, "GET", "/ext/forward-auth", &headers).await
}

/// The inline gateway's answer to the same request.
async fn inline(env: &Env, method: &str, uri: &str, session: Option<&str>) -> Answer {
    let mut req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "gw.test");
    if let Some(token) = session {
        req = req.header("cookie", format!("taxgate_session={token}"));
    }
    send(env.gw.public, req.body(empty()).unwrap()).await
}

fn body_text(a: &Answer) -> String {
    String::from_utf8_lossy(&a.body).into_owned()
}

fn header<'a>(a: &'a Answer, name: &str) -> Option<&'a str> {
    a.headers.get(name).and_then(|v| v.to_str().ok())
}

/// `detail` of the audit record `id`, from the SQLite store of `env`.
async fn audit_detail(env: &Env, id: &str) -> Value {
    let db = env.dir.path().join("taxgate.db");
    let script = format!(
        "import sqlite3,json\nr=sqlite3.connect('{}').execute(\"select detail from audit_events where id = ?\", ('{id}',)).fetchone()\nprint(json.dumps(r[0] if r else None))",
        db.display()
    );
    eventually(
        Duration::from_secs(5),
        "the audit record is written",
        || async {
            let out = std::process::Command::new("python3")
                .args(["-c", &script])
                .output()
                .unwrap();
            let v: Value = serde_json::from_slice(&out.stdout).ok()?;
            let text = v.as_str()?.to_string();
            serde_json::from_str(&text).ok()
        },
    )
    .await
}

// ---- Traefik ForwardAuth / Caddy forward_auth, through the protocol ----------------------------

/// Every answer of `/ext/forward-auth` is the inline one (status and code), the allow carries
/// the identity and a verifiable assertion, spoofed identity is never echoed, and the record
/// says `forward_auth`.
#[tokio::test]
async fn forward_auth_answers_exactly_as_inline() {
    let mut env = env(false).await;
    let (token, _) = env.login_wang().await;
    let addr = ext(&env);

    let spoof = [
        ("x-taxgate-person", "110101198001010045"),
        ("x-taxgate-enterprise", ENT_B),
        ("x_taxgate_role", "admin"),
    ];
    let ok = forward_auth(addr, "POST", "/api/declare/2026?q=1", Some(&token), &spoof).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", body_text(&ok));
    assert!(ok.body.is_empty(), "an allow has an empty body");
    assert_eq!(header(&ok, "x-taxgate-person"), Some(WANG));
    assert_eq!(header(&ok, "x-taxgate-enterprise"), Some(ENT_A));
    assert_eq!(header(&ok, "x-taxgate-role"), Some("legal_representative"));
    assert_eq!(header(&ok, "x-taxgate-entry"), Some("enterprise"));
    assert!(ok.headers.get("x_taxgate_role").is_none());
    assert!(ok.headers.get("x-taxgate-agency").is_none());
    let decision = header(&ok, "x-taxgate-decision").unwrap().to_string();
    let assertion = header(&ok, "x-taxgate-assertion").unwrap().to_string();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            assertion.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["person"], WANG);
    assert_eq!(claims["decision"], decision.as_str());
    assert_eq!(claims["aud"], "etax");
    assert!(claims["sid"].is_string(), "the assertion names its session");
    let detail = audit_detail(&env, &decision).await;
    assert_eq!(detail["mode"], "forward_auth");
    // The proxy forwards the client's headers itself: a method or URL override (any spelling)
    // would let the backend run what was not decided, so it is refused.
    for name in [
        "x-http-method-override",
        "x_http_method_override",
        "x-original-url",
    ] {
        let r = forward_auth(
            addr,
            "GET",
            "/api/declare/2026",
            Some(&token),
            &[(name, "DELETE")],
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{name}: {}",
            body_text(&r)
        );
        assert_eq!(
            header(&r, "x-taxgate-error"),
            Some("invalid_input"),
            "{name}"
        );
    }

    // Refusals: the inline status and code, for the same request.
    let cases: [(&str, &str, Option<&str>); 9] = [
        ("GET", "/api/personal/x", Some(&token)),
        ("GET", "/api/declare/x", None),
        ("GET", "/nowhere", Some(&token)),
        ("DELETE", "/api/declare/x", Some(&token)),
        ("GET", "/api/query/../declare/x", Some(&token)),
        ("GET", "/api/query/%2e%2e/declare/x", Some(&token)),
        ("GET", "/api/query/%2E%2e/declare/x", Some(&token)),
        ("GET", "/api/query/..;/declare/x", Some(&token)),
        ("GET", "/api/query%2fdeclare/x", Some(&token)),
    ];
    for (method, uri, session) in cases {
        let a = forward_auth(addr, method, uri, session, &[]).await;
        assert_ne!(a.status, StatusCode::OK, "{method} {uri} was allowed");
        let expected = match uri {
            u if u.contains("..") || u.contains("%2") => {
                (StatusCode::BAD_REQUEST, "invalid_path".to_string())
            }
            _ => {
                let i = inline(&env, method, uri, session).await;
                (i.status, i.error_code())
            }
        };
        assert_eq!(
            (a.status, a.error_code()),
            expected,
            "{method} {uri}: {}",
            body_text(&a)
        );
        assert_eq!(header(&a, "x-taxgate-error"), Some(expected.1.as_str()));
        assert!(a.headers.get("x-taxgate-person").is_none());
    }
    let denied = forward_auth(addr, "GET", "/api/personal/x", Some(&token), &[]).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let not_allowed = forward_auth(addr, "DELETE", "/api/declare/x", Some(&token), &[]).await;
    assert_eq!(not_allowed.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(header(&not_allowed, "allow").unwrap().contains("POST"));

    // A browser without a session: 401 with Location /login (the proxy passes it on).
    let page = forward_auth(
        addr,
        "GET",
        "/api/declare/x",
        None,
        &[("accept", "text/html")],
    )
    .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert_eq!(header(&page, "location"), Some("/login"));
    assert_eq!(page.error_code(), "login_required");
    let api = forward_auth(addr, "GET", "/api/declare/x", None, &[]).await;
    assert!(api.headers.get("location").is_none());

    // The store down: 503, as inline.
    env.gw.core.health.mark_down();
    let down = forward_auth(addr, "GET", "/api/declare/x", Some(&token), &[]).await;
    assert_eq!(
        (down.status, down.error_code().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
    );
    eventually(Duration::from_secs(5), "the store is back", || async {
        (forward_auth(addr, "GET", "/api/declare/x", Some(&token), &[])
            .await
            .status
            == StatusCode::OK)
            .then_some(())
    })
    .await;

    // Missing or repeated original-request headers are the caller's error, never a guess.
    let missing = ext_request(
        addr,
        "GET",
        "/ext/forward-auth",
        &[("cookie", format!("taxgate_session={token}"))],
    )
    .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    let twice = ext_request(
        addr,
        "GET",
        "/ext/forward-auth",
        &[
            ("x-forwarded-method", "GET".into()),
            ("x-forwarded-uri", "/api/declare/x".into()),
            ("x-forwarded-uri", "/api/personal/x".into()),
            ("cookie", format!("taxgate_session={token}")),
        ],
    )
    .await;
    assert_eq!(twice.status, StatusCode::BAD_REQUEST);

    // Nothing reached the backend: the ext listener never forwards.
    assert!(drain_seen(&mut env.up).is_empty());
    let text = metrics_text(env.gw.admin).await;
    assert!(
        text.lines().any(
            |l| l.starts_with("taxgate_decisions_total{mode=\"forward_auth\"}")
                && !l.ends_with(" 0")
        ),
        "{text}"
    );
}

async fn metrics_text(admin: SocketAddr) -> String {
    body_text(&get(admin, "/metrics").await)
}

/// Envoy's HTTP service (`path_prefix: /ext/envoy`): the original method and path, the client's
/// headers; the allow also lists the headers Envoy must remove before forwarding.
#[tokio::test]
async fn envoy_http_service_through_its_protocol() {
    let env = env(false).await;
    let (token, _) = env.login_wang().await;
    let addr = ext(&env);
    let headers = |session: bool| {
        let mut h = vec![
            ("x-forwarded-for", "203.0.113.8".to_string()),
            ("x-forwarded-proto", "https".to_string()),
            ("x-request-id", "9f1c".to_string()),
            ("x-envoy-expected-rq-timeout-ms", "200".to_string()),
            ("x-taxgate-person", "110101198001010045".to_string()),
            ("x_taxgate_role", "admin".to_string()),
            ("x-http-method-override", "DELETE".to_string()),
        ];
        if session {
            h.push(("cookie", format!("taxgate_session={token}")));
        }
        h
    };
    let ok = ext_request(
        addr,
        "POST",
        "/ext/envoy/api/declare/2026?x=1",
        &headers(true),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", body_text(&ok));
    assert_eq!(header(&ok, "x-taxgate-person"), Some(WANG));
    assert!(header(&ok, "x-taxgate-assertion").is_some());
    let mut removed: Vec<&str> = header(&ok, "x-envoy-auth-headers-to-remove")
        .unwrap()
        .split(',')
        .collect();
    removed.sort();
    assert_eq!(
        removed,
        ["cookie", "x-http-method-override", "x_taxgate_role"]
    );
    let detail = audit_detail(&env, header(&ok, "x-taxgate-decision").unwrap()).await;
    assert_eq!(detail["mode"], "envoy_http");

    let denied = ext_request(addr, "GET", "/ext/envoy/api/personal/x", &headers(true)).await;
    let inline_denied = inline(&env, "GET", "/api/personal/x", Some(&token)).await;
    assert_eq!(
        (denied.status, denied.error_code()),
        (inline_denied.status, inline_denied.error_code())
    );
    let none = ext_request(addr, "GET", "/ext/envoy/api/declare/x", &headers(false)).await;
    assert_eq!(
        (none.status, none.error_code().as_str()),
        (StatusCode::UNAUTHORIZED, "login_required")
    );
    for confused in [
        "/ext/envoy/api/query/../declare/x",
        "/ext/envoy/api/query/%2e%2e/declare/x",
        "/ext/envoy/api/query/%2E%2E/declare/x",
        "/ext/envoy/api/query/.%2e;x/declare/x",
    ] {
        let a = ext_request(addr, "GET", confused, &headers(true)).await;
        assert_eq!(
            (a.status, a.error_code().as_str()),
            (StatusCode::BAD_REQUEST, "invalid_path"),
            "{confused}"
        );
    }
    let unknown = ext_request(addr, "GET", "/ext/other", &headers(true)).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

// ---- nginx auth_request, the real thing --------------------------------------------------------

/// nginx in front of the echo backend, asking `/ext/auth-request` before every `/api/` request
/// (the README's configuration).
fn nginx_conf(ext: SocketAddr, backend: &str, token: Option<&str>) -> String {
    let token_line = token
        .map(|t| format!("proxy_set_header X-Taxgate-Ext-Token \"{t}\";"))
        .unwrap_or_default();
    format!(
        r#"
    upstream taxgate_ext {{ server {ext}; keepalive 16; }}
    # The backend never sees the session token: the cookie without taxgate_session.
    map $http_cookie $tg_cookie {{
        default $http_cookie;
        "~^taxgate_session=[^;]*;?\s*(?<tg_rest>.*)$" "$tg_rest";
        "~^(?<tg_pre>.*?);\s*taxgate_session=[^;]*(?<tg_post>.*)$" "$tg_pre$tg_post";
    }}
    server {{
        listen 127.0.0.1:{{port}};
        location = /_taxgate_auth {{
            internal;
            proxy_pass http://taxgate_ext/ext/auth-request;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            {token_line}
        }}
        location /api/ {{
            auth_request /_taxgate_auth;
            auth_request_set $tg_person $upstream_http_x_taxgate_person;
            auth_request_set $tg_enterprise $upstream_http_x_taxgate_enterprise;
            auth_request_set $tg_role $upstream_http_x_taxgate_role;
            auth_request_set $tg_entry $upstream_http_x_taxgate_entry;
            auth_request_set $tg_agency $upstream_http_x_taxgate_agency;
            auth_request_set $tg_decision $upstream_http_x_taxgate_decision;
            auth_request_set $tg_assertion $upstream_http_x_taxgate_assertion;
            auth_request_set $tg_error $upstream_http_x_taxgate_error;
            add_header X-Taxgate-Error $tg_error always;
            proxy_set_header X-Taxgate-Person $tg_person;
            proxy_set_header X-Taxgate-Enterprise $tg_enterprise;
            proxy_set_header X-Taxgate-Role $tg_role;
            proxy_set_header X-Taxgate-Entry $tg_entry;
            proxy_set_header X-Taxgate-Agency $tg_agency;
            proxy_set_header X-Taxgate-Decision $tg_decision;
            proxy_set_header X-Taxgate-Assertion $tg_assertion;
            proxy_set_header Authorization "";
            proxy_set_header Cookie $tg_cookie;
            proxy_pass {backend};
        }}
    }}
"#
    )
}

async fn via(
    addr: SocketAddr,
    method: &str,
    target: &str,
    session: Option<&str>,
    extra: &[(&str, &str)],
) -> Answer {
    let mut req = http::Request::builder()
        .method(method)
        .uri(target)
        .header("host", "etax.example.cn");
    if let Some(token) = session {
        req = req.header("cookie", format!("taxgate_session={token}"));
    }
    for (n, v) in extra {
        req = req.header(*n, *v);
    }
    send(addr, req.body(empty()).unwrap()).await
}

#[tokio::test]
async fn nginx_auth_request_in_front_of_the_backend() {
    let mut env = env(true).await;
    let Some(nginx) = start_nginx(&nginx_conf(ext(&env), &env.up.url(), Some(TOKEN))).await else {
        return;
    };
    let (token, _) = env.login_wang().await;
    let px = nginx.addr();

    // Allowed, with the identity, and the client's spoofed identity overwritten or removed.
    let cookie = format!("lang=zh; taxgate_session={token}; theme=dark");
    let ok = via(
        px,
        "POST",
        "/api/declare/2026?period=03",
        None,
        &[
            ("cookie", cookie.as_str()),
            ("x-taxgate-person", "110101198001010045"),
            ("x-taxgate-agency", ENT_B),
            ("x-taxgate-role", "admin"),
        ],
    )
    .await;
    assert_eq!(
        ok.status,
        StatusCode::OK,
        "{}\n{}",
        body_text(&ok),
        nginx.log()
    );
    let seen = drain_seen(&mut env.up);
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.path_and_query, "/api/declare/2026?period=03");
    assert_eq!(s.headers_named("x-taxgate-person"), [WANG]);
    assert_eq!(s.headers_named("x-taxgate-enterprise"), [ENT_A]);
    assert_eq!(s.headers_named("x-taxgate-role"), ["legal_representative"]);
    assert!(
        s.headers_named("x-taxgate-agency").is_empty(),
        "{:?}",
        s.headers
    );
    assert!(s.header("x-taxgate-assertion").is_some());
    assert_eq!(
        s.header("cookie"),
        Some("lang=zh; theme=dark"),
        "the session cookie stays out"
    );
    let detail = audit_detail(&env, s.header("x-taxgate-decision").unwrap()).await;
    assert_eq!(detail["mode"], "auth_request");

    // No session: 401; refused by policy: 403 with the real code in x-taxgate-error.
    let none = via(px, "GET", "/api/declare/x", None, &[]).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(header(&none, "x-taxgate-error"), Some("login_required"));
    let denied = via(px, "GET", "/api/personal/x", Some(&token), &[]).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let code = inline(&env, "GET", "/api/personal/x", Some(&token))
        .await
        .error_code();
    assert_eq!(header(&denied, "x-taxgate-error"), Some(code.as_str()));
    // Every other refusal is 403 too (nginx accepts no other status), the code says which.
    let unrouted = via(px, "GET", "/api/unrouted/x", Some(&token), &[]).await;
    assert_eq!(unrouted.status, StatusCode::FORBIDDEN);
    assert_eq!(
        header(&unrouted, "x-taxgate-error"),
        Some("route_not_found")
    );
    // Path confusion: nginx would resolve `..` itself, but taxgate is asked about the raw URI.
    for confused in [
        "/api/query/../declare/x",
        "/api/query/%2e%2e/declare/x",
        "/api/query/%2E%2E/declare/x",
    ] {
        let a = via(px, "GET", confused, Some(&token), &[]).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{confused}");
        assert_eq!(
            header(&a, "x-taxgate-error"),
            Some("invalid_path"),
            "{confused}"
        );
    }
    assert!(
        drain_seen(&mut env.up).is_empty(),
        "a refused request reached the backend"
    );

    // The token is required: the listener refuses a caller without it.
    let direct = ext_request(
        ext(&env),
        "GET",
        "/ext/auth-request",
        &[
            ("x-original-method", "GET".into()),
            ("x-original-uri", "/api/declare/x".into()),
            ("cookie", format!("taxgate_session={token}")),
        ],
    )
    .await;
    assert_eq!(
        (direct.status, direct.error_code().as_str()),
        (StatusCode::UNAUTHORIZED, "ext_token_required")
    );
    assert!(direct.headers.get("x-taxgate-person").is_none());

    // A logout is honoured at once.
    let out = env.post("/auth/logout", json!({}), Some(&token)).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_eq!(
        via(px, "GET", "/api/declare/x", Some(&token), &[])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert!(drain_seen(&mut env.up).is_empty());
}

// ---- Caddy forward_auth, the real thing --------------------------------------------------------

fn caddyfile(ext: SocketAddr, backend: SocketAddr) -> String {
    format!(
        r#"
http://:{{port}} {{
	route {{
		request_header -X-Taxgate-*
		request_header -X_Taxgate_*
		forward_auth {ext} {{
			uri /ext/forward-auth?absent=empty
			header_up X-Taxgate-Ext-Token "{TOKEN}"
			copy_headers X-Taxgate-Person X-Taxgate-Enterprise X-Taxgate-Role X-Taxgate-Entry X-Taxgate-Agency X-Taxgate-Decision X-Taxgate-Assertion
		}}
		reverse_proxy {backend}
	}}
}}
"#
    )
}

#[tokio::test]
async fn caddy_forward_auth_in_front_of_the_backend() {
    let mut env = env(true).await;
    let Some(caddy) = start_caddy(&caddyfile(ext(&env), env.up.addr)).await else {
        return;
    };
    let (token, _) = env.login_wang().await;
    let px = caddy.addr();
    let ok = via(
        px,
        "GET",
        "/api/query/balance?year=2026",
        Some(&token),
        &[
            ("x-taxgate-person", "110101198001010045"),
            ("x-taxgate-agency", ENT_B),
            ("x_taxgate_role", "admin"),
        ],
    )
    .await;
    assert_eq!(
        ok.status,
        StatusCode::OK,
        "{}\n{}",
        body_text(&ok),
        caddy.log()
    );
    let seen = drain_seen(&mut env.up);
    assert_eq!(seen.len(), 1, "{seen:?}");
    let s = &seen[0];
    assert_eq!(s.path_and_query, "/api/query/balance?year=2026");
    assert_eq!(s.headers_named("x-taxgate-person"), [WANG]);
    assert_eq!(s.headers_named("x-taxgate-enterprise"), [ENT_A]);
    // The spoofed agency is gone; Caddy 2.6 copies the empty value `?absent=empty` asks for
    // (never its unresolved placeholder, never the client's value).
    assert!(
        s.headers_named("x-taxgate-agency")
            .iter()
            .all(|v| v.is_empty()),
        "{:?}",
        s.headers
    );
    assert!(
        s.headers_named("x_taxgate_role").is_empty(),
        "{:?}",
        s.headers
    );
    assert!(s.header("x-taxgate-assertion").is_some());
    assert!(
        s.header("x-taxgate-ext-token").is_none(),
        "the token stays between Caddy and taxgate"
    );

    // Refusals reach the client as taxgate gave them; nothing reaches the backend.
    let page = via(
        px,
        "GET",
        "/api/declare/x",
        None,
        &[("accept", "text/html")],
    )
    .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert_eq!(header(&page, "location"), Some("/login"));
    let denied = via(px, "GET", "/api/personal/x", Some(&token), &[]).await;
    let inline_denied = inline(&env, "GET", "/api/personal/x", Some(&token)).await;
    assert_eq!(
        (denied.status, denied.error_code()),
        (inline_denied.status, inline_denied.error_code())
    );
    for confused in [
        "/api/query/%2e%2e/declare/x",
        "/api/query/%2E%2e/declare/x",
        "/api/query/..;/declare/x",
    ] {
        let a = via(px, "GET", confused, Some(&token), &[]).await;
        assert_eq!(
            a.status,
            StatusCode::BAD_REQUEST,
            "{confused}: {}",
            body_text(&a)
        );
        assert_eq!(a.error_code(), "invalid_path");
    }
    assert!(
        drain_seen(&mut env.up).is_empty(),
        "a refused request reached the backend"
    );
}

// ---- Envoy gRPC Check, with a tonic client of the same protos ----------------------------------

fn check_request(method: &str, path: &str, headers: &[(&str, String)]) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        address: "203.0.113.9".into(),
                        port_specifier: Some(socket_address::PortSpecifier::PortValue(50123)),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            }),
            request: Some(Request {
                http: Some(HttpRequest {
                    method: method.into(),
                    path: path.into(),
                    host: "etax.example.cn".into(),
                    scheme: "https".into(),
                    protocol: "HTTP/1.1".into(),
                    headers: headers
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.clone()))
                        .chain([(":authority".to_string(), "etax.example.cn".to_string())])
                        .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

async fn check(addr: SocketAddr, token: Option<&str>, req: CheckRequest) -> CheckResponse {
    let mut client = AuthorizationClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut request = tonic::Request::new(req);
    if let Some(t) = token {
        request
            .metadata_mut()
            .insert("x-taxgate-ext-token", t.parse().unwrap());
    }
    client.check(request).await.unwrap().into_inner()
}

fn denied_of(r: &CheckResponse) -> (i32, u16, Value) {
    let code = r.status.as_ref().unwrap().code;
    match &r.http_response {
        Some(HttpResponse::DeniedResponse(d)) => (
            code,
            d.status.as_ref().unwrap().code as u16,
            serde_json::from_str(&d.body).unwrap(),
        ),
        other => panic!("not a denial: {other:?}"),
    }
}

const GRPC_OK: i32 = 0;
const GRPC_PERMISSION_DENIED: i32 = 7;
const GRPC_UNAUTHENTICATED: i32 = 16;

#[tokio::test]
async fn grpc_check_with_the_envoy_protos() {
    let env = env(true).await;
    let (token, _) = env.login_wang().await;
    let addr = env.gw.ext_grpc.unwrap();
    let client_headers = |session: bool| {
        let mut h = vec![
            ("x-request-id", "abc".to_string()),
            ("x-taxgate-person", "110101198001010045".to_string()),
            ("x-taxgate-agency", ENT_B.to_string()),
            ("x_taxgate_role", "admin".to_string()),
            ("x-original-url", "/api/declare".to_string()),
        ];
        if session {
            h.push(("cookie", format!("theme=dark; taxgate_session={token}")));
        }
        h
    };

    // Allowed: OkResponse with the identity, the spoofed headers and the session removed.
    let r = check(
        addr,
        Some(TOKEN),
        check_request("POST", "/api/declare/2026?q=1", &client_headers(true)),
    )
    .await;
    assert_eq!(r.status.as_ref().unwrap().code, GRPC_OK, "{r:?}");
    let Some(HttpResponse::OkResponse(ok)) = &r.http_response else {
        panic!("not an OkResponse: {r:?}");
    };
    let set: std::collections::HashMap<&str, &str> = ok
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .map(|h| (h.key.as_str(), h.value.as_str()))
        .collect();
    assert_eq!(set.get("x-taxgate-person"), Some(&WANG));
    assert_eq!(set.get("x-taxgate-enterprise"), Some(&ENT_A));
    assert_eq!(
        set.get("cookie"),
        Some(&"theme=dark"),
        "the session cookie goes, the others stay"
    );
    assert!(set.contains_key("x-taxgate-assertion"));
    for h in &ok.headers {
        // Overwrite, never append to what the client sent.
        assert_eq!(h.append_action, 2, "{h:?}");
    }
    let mut removed = ok.headers_to_remove.clone();
    removed.sort();
    assert_eq!(
        removed,
        ["x-original-url", "x-taxgate-agency", "x_taxgate_role"]
    );
    let detail = audit_detail(&env, set["x-taxgate-decision"]).await;
    assert_eq!(detail["mode"], "envoy_grpc");

    // Denied by policy: PERMISSION_DENIED, the inline status and body.
    let inline_denied = inline(&env, "GET", "/api/personal/x", Some(&token)).await;
    let r = check(
        addr,
        Some(TOKEN),
        check_request("GET", "/api/personal/x", &client_headers(true)),
    )
    .await;
    let (code, status, body) = denied_of(&r);
    assert_eq!(
        (code, status),
        (GRPC_PERMISSION_DENIED, inline_denied.status.as_u16())
    );
    assert_eq!(body["error"]["code"], inline_denied.error_code());

    // No session: UNAUTHENTICATED, 401.
    let r = check(
        addr,
        Some(TOKEN),
        check_request("GET", "/api/declare/x", &client_headers(false)),
    )
    .await;
    let (code, status, body) = denied_of(&r);
    assert_eq!((code, status), (GRPC_UNAUTHENTICATED, 401));
    assert_eq!(body["error"]["code"], "login_required");

    // Path confusion: refused before any route.
    for confused in [
        "/api/query/../declare/x",
        "/api/query/%2e%2e/declare/x",
        "/api/query/%2E%2E;a/declare/x",
        "/api/query%5cdeclare",
    ] {
        let r = check(
            addr,
            Some(TOKEN),
            check_request("GET", confused, &client_headers(true)),
        )
        .await;
        let (code, status, body) = denied_of(&r);
        assert_eq!((code, status), (GRPC_PERMISSION_DENIED, 400), "{confused}");
        assert_eq!(body["error"]["code"], "invalid_path", "{confused}");
    }

    // The token is required: without it (or with another), a denial, never a gRPC error.
    for presented in [None, Some("ext-token-0123456789abcdeX")] {
        let r = check(
            addr,
            presented,
            check_request("GET", "/api/declare/x", &client_headers(true)),
        )
        .await;
        let (code, status, body) = denied_of(&r);
        assert_eq!((code, status), (GRPC_UNAUTHENTICATED, 401));
        assert_eq!(body["error"]["code"], "ext_token_required");
    }
    let text = metrics_text(env.gw.admin).await;
    assert!(
        text.lines().any(
            |l| l.starts_with("taxgate_decisions_total{mode=\"envoy_grpc\"}") && !l.ends_with(" 0")
        ),
        "{text}"
    );
}

// ---- AuthZEN ------------------------------------------------------------------------------------

async fn authzen(addr: SocketAddr, path: &str, body: Value) -> Answer {
    let req = http::Request::post(path)
        .header("host", "pdp.internal")
        .header("content-type", "application/json")
        .header("x-taxgate-ext-token", TOKEN)
        .body(full(body.to_string()))
        .unwrap();
    send(addr, req).await
}

fn evaluation(assertion: &str, action: &str, resource: Value) -> Value {
    json!({
        "subject": {"type": "taxgate_assertion", "id": assertion},
        "action": {"name": action},
        "resource": resource,
        "context": {}
    })
}

#[tokio::test]
async fn authzen_evaluations_on_the_assertion_a_backend_received() {
    let env = env(true).await;
    let (token, _) = env.login_wang().await;
    let addr = ext(&env);
    let ok = forward_auth(
        addr,
        "GET",
        "/api/query/x",
        Some(&token),
        &[("x-taxgate-ext-token", TOKEN)],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", body_text(&ok));
    let assertion = header(&ok, "x-taxgate-assertion").unwrap().to_string();
    let ent_a = json!({"type": "enterprise", "id": ENT_A});

    let yes = authzen(
        addr,
        "/access/v1/evaluation",
        evaluation(&assertion, "declare", ent_a.clone()),
    )
    .await;
    assert_eq!(yes.status, StatusCode::OK, "{}", body_text(&yes));
    let v = yes.json();
    assert_eq!(v["decision"], true);
    let id = v["context"]["decision_id"].as_str().unwrap();
    assert_eq!(audit_detail(&env, id).await["mode"], "authzen");

    let no = authzen(
        addr,
        "/access/v1/evaluation",
        evaluation(&assertion, "personal_tax", ent_a.clone()),
    )
    .await;
    let v = no.json();
    assert_eq!(v["decision"], false);
    let inline_code = inline(&env, "GET", "/api/personal/x", Some(&token))
        .await
        .error_code();
    assert_eq!(v["context"]["reason"], inline_code.as_str());
    assert!(v["context"]["decision_id"].is_string());

    // A batch, defaults at the top; deny_on_first_deny stops at the first denial.
    let batch = authzen(
        addr,
        "/access/v1/evaluations",
        json!({
            "subject": {"type": "taxgate_assertion", "id": assertion},
            "resource": ent_a,
            "evaluations": [
                {"action": {"name": "declare"}},
                {"action": {"name": "personal_tax"}},
                {"action": {"name": "query"}}
            ]
        }),
    )
    .await;
    let v = batch.json();
    let decisions: Vec<&Value> = v["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["decision"])
        .collect();
    assert_eq!(decisions, [&json!(true), &json!(false), &json!(true)]);
    let short = authzen(
        addr,
        "/access/v1/evaluations",
        json!({
            "subject": {"type": "taxgate_assertion", "id": assertion},
            "resource": ent_a,
            "evaluations": [{"action": {"name": "personal_tax"}}, {"action": {"name": "declare"}}],
            "options": {"evaluations_semantic": "deny_on_first_deny"}
        }),
    )
    .await;
    assert_eq!(short.json()["evaluations"].as_array().unwrap().len(), 1);

    // An assertion that does not verify: 401. Another resource than the session's: 400.
    let mut forged = assertion.clone();
    forged.pop();
    forged.push(if assertion.ends_with('A') { 'B' } else { 'A' });
    for bad in [forged.as_str(), "not-a-jwt", ""] {
        let a = authzen(
            addr,
            "/access/v1/evaluation",
            evaluation(bad, "declare", ent_a.clone()),
        )
        .await;
        assert_eq!(
            (a.status, a.error_code().as_str()),
            (StatusCode::UNAUTHORIZED, "invalid_assertion")
        );
    }
    let other = authzen(
        addr,
        "/access/v1/evaluation",
        evaluation(
            &assertion,
            "declare",
            json!({"type": "enterprise", "id": ENT_B}),
        ),
    )
    .await;
    assert_eq!(other.status, StatusCode::BAD_REQUEST);

    // The configuration document names both endpoints on the authority asked.
    let cfg = ext_request(
        addr,
        "GET",
        "/.well-known/authzen-configuration",
        &[("x-taxgate-ext-token", TOKEN.into())],
    )
    .await;
    let v = cfg.json();
    assert_eq!(
        v["access_evaluation_endpoint"],
        "http://taxgate-ext.internal/access/v1/evaluation"
    );
    assert_eq!(
        v["access_evaluations_endpoint"],
        "http://taxgate-ext.internal/access/v1/evaluations"
    );
    let no_token = ext_request(addr, "GET", "/.well-known/authzen-configuration", &[]).await;
    assert_eq!(no_token.status, StatusCode::UNAUTHORIZED);

    // The session behind the assertion is re-read: after a logout the same assertion is false.
    let out = env.post("/auth/logout", json!({}), Some(&token)).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let after = authzen(
        addr,
        "/access/v1/evaluation",
        evaluation(&assertion, "declare", ent_a),
    )
    .await;
    let v = after.json();
    assert_eq!(v["decision"], false, "{v}");
    assert_eq!(v["context"]["reason"], "login_required");
}

// ---- mutual TLS ---------------------------------------------------------------------------------

#[tokio::test]
async fn mutual_tls_refuses_a_caller_without_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ext-ca");
    let (cert, key) = ca.issue(dir.path(), "ext", &["localhost", "127.0.0.1"]);
    let (client_cert, client_key) = ca.issue(dir.path(), "nginx", &["nginx.internal"]);
    let section = format!(
        "\n[ext_authz]\nlisten = \"127.0.0.1:0\"\ngrpc_listen = \"127.0.0.1:0\"\ntls = {{ cert = \"{}\", key = \"{}\", client_ca = \"{}\" }}\n",
        cert.display(),
        key.display(),
        ca.pem.display()
    );
    let env = Env::start(&section).await;
    let (token, _) = env.login_wang().await;
    let addr = ext(&env);
    let connector = |with_cert: bool| {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der()).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let b = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = if with_cert {
            use rustls::pki_types::pem::PemObject;
            let chain = rustls::pki_types::CertificateDer::pem_file_iter(&client_cert)
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&client_key).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        } else {
            b.with_no_client_auth()
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
    };
    let request = || {
        http::Request::get("/ext/forward-auth")
            .header("x-forwarded-method", "GET")
            .header("x-forwarded-uri", "/api/declare/x")
            .header("cookie", format!("taxgate_session={token}"))
            .body(empty())
            .unwrap()
    };
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector(true).connect(name.clone(), tcp).await.unwrap();
    let ok = send_h2_over(tls, request()).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", body_text(&ok));
    assert_eq!(header(&ok, "x-taxgate-person"), Some(WANG));
    // Without a client certificate the handshake (or the first read) fails: no answer at all.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let refused = match connector(false).connect(name, tcp).await {
        Err(_) => true,
        Ok(tls) => {
            let r = tokio::time::timeout(Duration::from_secs(5), async move {
                let (mut sender, conn) = hyper::client::conn::http2::handshake(
                    hyper_util::rt::TokioExecutor::new(),
                    hyper_util::rt::TokioIo::new(tls),
                )
                .await?;
                tokio::spawn(conn);
                sender.send_request(request()).await.map(|_| ())
            })
            .await;
            !matches!(r, Ok(Ok(())))
        }
    };
    assert!(
        refused,
        "a caller without a client certificate was answered"
    );
}

// ---- two instances on PostgreSQL ----------------------------------------------------------------

/// A logout on instance A is honoured by every ext mode of instance B within a second (the
/// store's NOTIFY drops B's cached session; AuthZEN re-reads the store anyway).
#[tokio::test]
async fn a_revocation_on_one_instance_is_honoured_by_the_ext_modes_of_another() {
    let Some(url) = test_postgres_url() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let text = config_text_with_store(dir.path(), &up.url(), &ext_section(false), &url);
    let a = Gateway::start(&text, dir.path()).await;
    let b = Gateway::start(&text, dir.path()).await;
    taxgate_store::import_seed(&a.core.store, &seed_json().to_string(), unix_now())
        .await
        .unwrap();
    let env = Env { dir, gw: a, up };
    let (token, _) = env.login_wang().await;
    let (b_ext, b_grpc) = (b.ext.unwrap(), b.ext_grpc.unwrap());
    let cookie = vec![("cookie", format!("taxgate_session={token}"))];

    // B has the session cached through every mode.
    let ok = forward_auth(b_ext, "GET", "/api/declare/x", Some(&token), &[]).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", body_text(&ok));
    let assertion = header(&ok, "x-taxgate-assertion").unwrap().to_string();
    let r = check(
        b_grpc,
        None,
        check_request("GET", "/api/declare/x", &cookie),
    )
    .await;
    assert_eq!(r.status.unwrap().code, GRPC_OK);
    let ent_a = json!({"type": "enterprise", "id": ENT_A});
    let yes = authzen(
        b_ext,
        "/access/v1/evaluation",
        evaluation(&assertion, "declare", ent_a.clone()),
    )
    .await;
    assert_eq!(yes.json()["decision"], true);

    let out = env.post("/auth/logout", json!({}), Some(&token)).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let started = Instant::now();
    loop {
        let a = forward_auth(b_ext, "GET", "/api/declare/x", Some(&token), &[]).await;
        if a.status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(a.status, StatusCode::OK);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "B still allowed the session after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = check(
        b_grpc,
        None,
        check_request("GET", "/api/declare/x", &cookie),
    )
    .await;
    assert_eq!(denied_of(&r).0, GRPC_UNAUTHENTICATED);
    let auth_request = ext_request(
        b_ext,
        "GET",
        "/ext/auth-request",
        &[
            ("x-original-method", "GET".into()),
            ("x-original-uri", "/api/declare/x".into()),
            ("cookie", format!("taxgate_session={token}")),
        ],
    )
    .await;
    assert_eq!(auth_request.status, StatusCode::UNAUTHORIZED);
    let envoy = ext_request(b_ext, "GET", "/ext/envoy/api/declare/x", &cookie).await;
    assert_eq!(envoy.status, StatusCode::UNAUTHORIZED);
    let no = authzen(
        b_ext,
        "/access/v1/evaluation",
        evaluation(&assertion, "declare", ent_a),
    )
    .await;
    assert_eq!(no.json()["decision"], false);
    b.stop().await;
    env.gw.stop().await;
}
