//! Issue 11: upstream trust. Signed identity assertions verified by an independent JOSE library
//! (jwt-simple, not the gateway's jsonwebtoken) against the JWKS fetched over HTTP, key rotation,
//! mutual TLS to upstreams, and `taxgate keys generate`.

use std::path::{Path, PathBuf};

use http::{Request, StatusCode};
use jwt_simple::prelude::*;
use taxgate_e2e::*;
use taxgate_gateway::assertion::{Algorithm, write_new_key};

#[derive(Debug, Serialize, Deserialize)]
struct Identity {
    person: Option<String>,
    enterprise: Option<String>,
    role: Option<String>,
    entry: Option<String>,
    agency: Option<String>,
    decision: String,
    policy_version: String,
}

/// Verify `token` as a backend would: pick the JWKS key by `kid`, check signature, `aud`,
/// `iss`, `exp`.
fn verify(
    jwks: &serde_json::Value,
    token: &str,
    audience: &str,
) -> Result<JWTClaims<Identity>, String> {
    let meta = Token::decode_metadata(token).map_err(|e| e.to_string())?;
    let kid = meta.key_id().ok_or("no kid")?.to_string();
    let jwk = jwks["keys"]
        .as_array()
        .ok_or("no keys")?
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .ok_or_else(|| format!("kid {kid} is not in the JWKS"))?
        .to_string();
    let options = VerificationOptions {
        allowed_audiences: Some(HashSet::from_strings(&[audience])),
        allowed_issuers: Some(HashSet::from_strings(&["taxgate"])),
        ..Default::default()
    };
    match meta.algorithm() {
        "EdDSA" => Ed25519PublicKey::from_jwk(&jwk)
            .map_err(|e| format!("jwk: {e}"))?
            .verify_token::<Identity>(token, Some(options)),
        "ES256" => ES256PublicKey::from_jwk(&jwk)
            .map_err(|e| format!("jwk: {e}"))?
            .verify_token::<Identity>(token, Some(options)),
        other => return Err(format!("unexpected alg {other}")),
    }
    .map_err(|e| e.to_string())
}

async fn jwks(addr: std::net::SocketAddr) -> serde_json::Value {
    let a = get(addr, "/.well-known/jwks.json").await;
    assert_status(&a, StatusCode::OK);
    a.json()
}

fn identity_config(key: &Path, previous: Option<&Path>, extra: &str) -> String {
    let mut s = format!("[upstream_identity]\nsigning_key = \"{}\"\n", key.display());
    if let Some(p) = previous {
        s.push_str(&format!("previous_key = \"{}\"\n", p.display()));
    }
    s.push_str(extra);
    s
}

async fn wang(env: &Env) -> String {
    env.login_wang().await.0
}

/// An allowed request through `env` whose upstream refuses the TLS handshake: 502
/// `upstream_unavailable`.
async fn assert_upstream_unavailable(env: &Env) {
    let token = wang(env).await;
    let a = env.get("/api/declare/x", Some(&token)).await;
    assert_eq!(
        (a.status, a.error_code()),
        (StatusCode::BAD_GATEWAY, "upstream_unavailable".to_string())
    );
}

/// One allowed request; returns what the upstream saw.
async fn forwarded(env: &mut Env, token: &str, path: &str) -> Seen {
    let a = env.get(path, Some(token)).await;
    assert_status(&a, StatusCode::OK);
    env.up.next_seen().await
}

#[tokio::test]
async fn upstreams_verify_the_assertion_with_an_independent_library() {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("assertion.pem");
    write_new_key(&key, Algorithm::EdDSA, false).unwrap();
    let mut env = Env::start(&identity_config(
        &key,
        None,
        "publish_jwks_publicly = true\n",
    ))
    .await;
    let token = wang(&env).await;

    // A client-sent assertion never reaches the upstream: the gateway's own replaces it.
    let forged = "eyJhbGciOiJub25lIn0.eyJwZXJzb24iOiIxMTAxMDUxOTQ5MTIzMTAwMjEifQ.";
    let a = send(
        env.gw.public,
        Request::get("/api/declare/vat")
            .header("host", "gw.test")
            .header("cookie", format!("taxgate_session={token}"))
            .header("x-taxgate-assertion", forged)
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let seen = env.up.next_seen().await;
    let sent = seen.headers_named("x-taxgate-assertion");
    assert_eq!(sent.len(), 1);
    assert_ne!(sent[0], forged);
    let assertion = sent[0].to_string();

    let set = jwks(env.gw.admin).await;
    assert_eq!(set["keys"].as_array().unwrap().len(), 1);
    assert_eq!(set["keys"][0]["use"], "sig");
    assert_eq!(set["keys"][0]["alg"], "EdDSA");
    // Published on the public listener too, without a session.
    assert_eq!(jwks(env.gw.public).await, set);

    let claims = verify(&set, &assertion, "etax").unwrap();
    let c = &claims.custom;
    assert_eq!(c.person.as_deref(), seen.header("x-taxgate-person"));
    assert_eq!(c.person.as_deref(), Some(WANG));
    assert_eq!(c.enterprise.as_deref(), seen.header("x-taxgate-enterprise"));
    assert_eq!(c.role.as_deref(), seen.header("x-taxgate-role"));
    assert_eq!(c.entry.as_deref(), Some("enterprise"));
    assert_eq!(c.agency, None);
    assert!(seen.header("x-taxgate-agency").is_none());
    assert_eq!(Some(c.decision.as_str()), seen.header("x-taxgate-decision"));
    assert_eq!(c.policy_version, env.gw.core.engine.version().to_string());
    assert!(claims.jwt_id.is_some());
    let (iat, exp) = (claims.issued_at.unwrap(), claims.expires_at.unwrap());
    assert_eq!(exp.as_secs() - iat.as_secs(), 60);
    assert!(
        verify(&set, &assertion, "another-upstream").is_err(),
        "aud is checked"
    );

    // Change one claim of the payload, keep the signature: refused.
    let parts: Vec<&str> = assertion.split('.').collect();
    let mut payload: serde_json::Value =
        serde_json::from_slice(&Base64UrlSafeNoPadding::decode_to_vec(parts[1], None).unwrap())
            .unwrap();
    payload["person"] = "110105194912310021".into();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        Base64UrlSafeNoPadding::encode_to_string(payload.to_string()).unwrap(),
        parts[2]
    );
    assert!(verify(&set, &tampered, "etax").is_err());

    // Person entry: no enterprise claim, as there is no enterprise header.
    let (person, _) = env
        .login_sms("person", None, ZHOU, ZHOU_PW, "13900000006")
        .await;
    let seen = forwarded(&mut env, &person, "/api/personal/x").await;
    let c = verify(&set, seen.header("x-taxgate-assertion").unwrap(), "etax")
        .unwrap()
        .custom;
    assert_eq!(
        (c.person.as_deref(), c.entry.as_deref()),
        (Some(ZHOU), Some("person"))
    );
    assert!(c.enterprise.is_none() && seen.header("x-taxgate-enterprise").is_none());
}

#[tokio::test]
async fn without_upstream_identity_there_is_no_assertion_and_no_jwks() {
    // Absent, the gateway refuses to start (issue 15 point 12); this is the explicit opt-out.
    let mut env = Env::start("\n[upstream_identity]\ndisabled = true\n").await;
    let token = wang(&env).await;
    let seen = forwarded(&mut env, &token, "/api/declare/x").await;
    assert!(seen.header("x-taxgate-assertion").is_none());
    let a = get(env.gw.admin, "/.well-known/jwks.json").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    // Not routed on the public listener either.
    let a = get(env.gw.public, "/.well-known/jwks.json").await;
    assert_eq!(a.error_code(), "route_not_found");
}

#[tokio::test]
async fn rotation_keeps_old_assertions_valid_until_the_previous_key_is_removed() {
    let keys = tempfile::tempdir().unwrap();
    let old = keys.path().join("old.pem");
    let new = keys.path().join("new.pem");
    write_new_key(&old, Algorithm::ES256, false).unwrap();
    write_new_key(&new, Algorithm::EdDSA, false).unwrap();

    // Before: the old key signs.
    let mut env = Env::start(&identity_config(&old, None, "")).await;
    let token = wang(&env).await;
    let seen = forwarded(&mut env, &token, "/api/declare/x").await;
    let old_assertion = seen.header("x-taxgate-assertion").unwrap().to_string();
    let before = jwks(env.gw.admin).await;
    assert_eq!(before["keys"][0]["alg"], "ES256");
    verify(&before, &old_assertion, "etax").unwrap();
    env.gw.stop().await;

    // During: the new key signs, the old one is still published.
    let mut env = Env::start(&identity_config(&new, Some(&old), "")).await;
    let token = wang(&env).await;
    let seen = forwarded(&mut env, &token, "/api/declare/x").await;
    let new_assertion = seen.header("x-taxgate-assertion").unwrap().to_string();
    let during = jwks(env.gw.admin).await;
    assert_eq!(during["keys"].as_array().unwrap().len(), 2);
    assert_eq!(during["keys"][1], before["keys"][0]);
    verify(&during, &old_assertion, "etax").expect("old assertion during the overlap");
    verify(&during, &new_assertion, "etax").expect("new assertion");
    assert_eq!(
        Token::decode_metadata(&new_assertion).unwrap().algorithm(),
        "EdDSA",
        "the previous key never signs"
    );
    env.gw.stop().await;

    // After: previous_key removed, restarted; the old key's assertions no longer verify.
    let env = Env::start(&identity_config(&new, None, "")).await;
    let after = jwks(env.gw.admin).await;
    assert_eq!(after["keys"].as_array().unwrap().len(), 1);
    let e = verify(&after, &old_assertion, "etax").unwrap_err();
    assert!(e.contains("not in the JWKS"), "{e}");
    verify(&after, &new_assertion, "etax").unwrap();
}

/// A gateway in front of the TLS upstream `up`, with `tls` as its `[[upstreams]] tls` value.
async fn tls_env(up: Upstream, url: &str, tls: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path(), url, "").replacen(
        "timeout_secs = 2",
        &format!("timeout_secs = 2\ntls = {tls}"),
        1,
    );
    let gw = Gateway::start(&text, dir.path()).await;
    taxgate_store::import_seed(&gw.core.store, &seed_json().to_string(), unix_now())
        .await
        .unwrap();
    Env { dir, gw, up }
}

fn toml_path(p: &Path) -> String {
    format!("\"{}\"", p.display())
}

#[tokio::test]
async fn mutual_tls_to_upstreams() {
    let pki = tempfile::tempdir().unwrap();
    let d = pki.path();
    let server_ca = TestCa::new(d, "upstream-ca");
    let client_ca = TestCa::new(d, "gateway-clients");
    let (server_cert, server_key) = server_ca.issue(d, "upstream", &["localhost", "127.0.0.1"]);
    let (client_cert, client_key): (PathBuf, PathBuf) =
        client_ca.issue(d, "taxgate-client", &["taxgate.internal"]);

    // The upstream requires a client certificate from `gateway-clients`: taxgate's is accepted.
    let (up, mut handshake_errors) = Upstream::start_tls(tls_server_config(
        &server_cert,
        &server_key,
        Some(&client_ca),
    ))
    .await;
    let port = up.addr.port();
    let tls = format!(
        "{{ ca = {}, cert = {}, key = {}, server_name = \"localhost\" }}",
        toml_path(&server_ca.pem),
        toml_path(&client_cert),
        toml_path(&client_key)
    );
    let mut env = tls_env(up, &format!("https://127.0.0.1:{port}"), &tls).await;
    let token = wang(&env).await;
    let seen = forwarded(&mut env, &token, "/api/declare/over-tls").await;
    assert_eq!(seen.header("x-taxgate-person"), Some(WANG));
    assert_eq!(seen.path_and_query, "/api/declare/over-tls");
    env.gw.stop().await;

    // The same upstream refuses a gateway without a client certificate: 502.
    let (up, mut refused) = Upstream::start_tls(tls_server_config(
        &server_cert,
        &server_key,
        Some(&client_ca),
    ))
    .await;
    let url = up.https_url();
    let env = tls_env(
        up,
        &url,
        &format!("{{ ca = {} }}", toml_path(&server_ca.pem)),
    )
    .await;
    assert_upstream_unavailable(&env).await;
    let why = handshake_error(&mut refused).await;
    assert!(why.to_lowercase().contains("certificate"), "{why}");
    env.gw.stop().await;
    // (The first upstream saw no handshake failure: taxgate's certificate was good.)
    assert!(handshake_errors.0.try_recv().is_err());

    // An upstream whose certificate comes from another CA is refused: 502.
    let rogue_ca = TestCa::new(d, "rogue-ca");
    let (rogue_cert, rogue_key) = rogue_ca.issue(d, "rogue", &["localhost", "127.0.0.1"]);
    let (up, mut rogue_saw) =
        Upstream::start_tls(tls_server_config(&rogue_cert, &rogue_key, None)).await;
    let url = up.https_url();
    let mut env = tls_env(
        up,
        &url,
        &format!("{{ ca = {} }}", toml_path(&server_ca.pem)),
    )
    .await;
    assert_upstream_unavailable(&env).await;
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(200), env.up.seen.recv())
            .await
            .is_err(),
        "nothing reached the rogue upstream"
    );
    // taxgate aborted the handshake (unknown issuer), so the rogue server saw an alert.
    let why = handshake_error(&mut rogue_saw).await;
    assert!(why.to_lowercase().contains("unknown"), "{why}");
}

async fn handshake_error(errors: &mut TlsErrors) -> String {
    tokio::time::timeout(std::time::Duration::from_secs(5), errors.0.recv())
        .await
        .expect("no TLS handshake failure seen by the upstream")
        .unwrap()
}

#[tokio::test]
async fn keys_generate_writes_a_usable_key_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("keys/assertion.pem");
    let run = |args: &[&str]| {
        std::process::Command::new(taxgate_bin())
            .args(args)
            .output()
            .unwrap()
    };
    let out_s = out.display().to_string();
    let first = run(&["keys", "generate", "--out", &out_s]);
    let stdout = String::from_utf8_lossy(&first.stdout).to_string();
    assert!(
        first.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let kid = stdout
        .lines()
        .find_map(|l| l.strip_prefix("kid: "))
        .unwrap()
        .to_string();
    assert!(stdout.contains("\"crv\": \"Ed25519\""), "{stdout}");
    assert!(
        !stdout.contains("\"d\""),
        "no private part printed: {stdout}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let pem = std::fs::read(&out).unwrap();

    let again = run(&["keys", "generate", "--out", &out_s]);
    assert_eq!(again.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("already exists") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), pem, "untouched");

    // A gateway starts with it and publishes it under the printed kid.
    let mut env = Env::start(&identity_config(&out, None, "")).await;
    let set = jwks(env.gw.admin).await;
    assert_eq!(set["keys"][0]["kid"], kid.as_str());
    let token = wang(&env).await;
    let seen = forwarded(&mut env, &token, "/api/declare/x").await;
    verify(&set, seen.header("x-taxgate-assertion").unwrap(), "etax").unwrap();
    env.gw.stop().await;

    let es = dir.path().join("es.pem");
    let es_s = es.display().to_string();
    let forced = run(&[
        "keys",
        "generate",
        "--algorithm",
        "ES256",
        "--out",
        &es_s,
        "--force",
    ]);
    assert!(forced.status.success());
    assert!(String::from_utf8_lossy(&forced.stdout).contains("\"crv\": \"P-256\""));
    let bad = run(&["keys", "generate", "--algorithm", "RS256", "--out", &es_s]);
    assert_eq!(bad.status.code(), Some(2));
}
