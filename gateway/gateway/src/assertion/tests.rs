//! Unit tests of the assertion signer: round trips through jsonwebtoken's verifier, claims that
//! follow the identity headers, JWKS contents, key files.

use jsonwebtoken::{DecodingKey, Validation};

use super::*;
use crate::session::HEADER_DECISION;

fn identity(pairs: &[(&HeaderName, &str)]) -> Vec<(HeaderName, HeaderValue)> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).clone(), HeaderValue::from_str(v).unwrap()))
        .collect()
}

#[derive(Debug, Deserialize)]
struct Owned {
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
    jti: String,
    person: Option<String>,
    enterprise: Option<String>,
    role: Option<String>,
    entry: Option<String>,
    agency: Option<String>,
    decision: String,
    policy_version: String,
}

fn verify(token: &str, jwk: &Jwk, audience: &str) -> jsonwebtoken::errors::Result<Owned> {
    let key = DecodingKey::from_jwk(jwk)?;
    let header = jsonwebtoken::decode_header(token)?;
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[audience]);
    validation.set_issuer(&["taxgate"]);
    validation.set_required_spec_claims(&["exp", "aud", "iss"]);
    jsonwebtoken::decode::<Owned>(token, &key, &validation).map(|d| d.claims)
}

fn now() -> i64 {
    crate::pipeline::unix_now()
}

#[test]
fn both_algorithms_sign_what_a_verifier_accepts() {
    for alg in [Algorithm::EdDSA, Algorithm::ES256] {
        let (key, _) = Key::generate(alg).unwrap();
        let jwk = key.jwk().clone();
        let kid = key.kid().to_string();
        let a = Assertions::new(key, None, "taxgate", 60).unwrap();
        let id = identity(&[
            (&HEADER_PERSON, "140105199001011238"),
            (&HEADER_ENTERPRISE, "91140100MA0K123488"),
            (&HEADER_ROLE, "legal_representative"),
            (&HEADER_ENTRY, "enterprise"),
            (&HEADER_DECISION, "d1"),
        ]);
        let t = now();
        let token = a.sign(&id, "d1", "v1", "etax", t).unwrap();
        let token = token.to_str().unwrap();
        let header = jsonwebtoken::decode_header(token).unwrap();
        assert_eq!(header.alg, alg.jwt());
        assert_eq!(header.kid.as_deref(), Some(kid.as_str()));
        let c = verify(token, &jwk, "etax").unwrap();
        assert_eq!(c.iss, "taxgate");
        assert_eq!(c.aud, "etax");
        assert_eq!((c.iat, c.exp), (t, t + 60));
        assert_eq!(c.person.as_deref(), Some("140105199001011238"));
        assert_eq!(c.enterprise.as_deref(), Some("91140100MA0K123488"));
        assert_eq!(c.role.as_deref(), Some("legal_representative"));
        assert_eq!(c.entry.as_deref(), Some("enterprise"));
        assert_eq!(c.agency, None);
        assert_eq!(
            (c.decision.as_str(), c.policy_version.as_str()),
            ("d1", "v1")
        );
        assert!(!c.jti.is_empty());
        // Another upstream's audience is refused.
        assert!(verify(token, &jwk, "other").is_err(), "{alg}");
    }
}

#[test]
fn absent_headers_are_absent_claims_and_jtis_differ() {
    let (key, _) = Key::generate(Algorithm::EdDSA).unwrap();
    let a = Assertions::new(key, None, "taxgate", 60).unwrap();
    let id = identity(&[
        (&HEADER_ENTERPRISE, "91140100MA0K123488"),
        (&HEADER_ROLE, "legacy_enterprise"),
        (&HEADER_ENTRY, "enterprise_legacy"),
    ]);
    let one = a.sign(&id, "d1", "v", "etax", now()).unwrap();
    let two = a.sign(&id, "d2", "v", "etax", now()).unwrap();
    let payload = |t: &HeaderValue| -> serde_json::Value {
        let part = t.to_str().unwrap().split('.').nth(1).unwrap().to_string();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    };
    let p1 = payload(&one);
    assert!(p1.get("person").is_none(), "{p1}");
    assert!(p1.get("agency").is_none(), "{p1}");
    assert_eq!(p1["entry"], "enterprise_legacy");
    assert_ne!(p1["jti"], payload(&two)["jti"]);
}

#[test]
fn a_tampered_or_expired_assertion_is_refused() {
    let (key, _) = Key::generate(Algorithm::EdDSA).unwrap();
    let jwk = key.jwk().clone();
    let a = Assertions::new(key, None, "taxgate", 60).unwrap();
    let id = identity(&[(&HEADER_PERSON, "140105199001011238")]);
    let token = a.sign(&id, "d", "v", "etax", now()).unwrap();
    let token = token.to_str().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["person"] = "110105194912310021".into();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    assert!(verify(&forged, &jwk, "etax").is_err());
    let old = a.sign(&id, "d", "v", "etax", now() - 600).unwrap();
    assert!(verify(old.to_str().unwrap(), &jwk, "etax").is_err());
}

#[test]
fn jwks_publishes_both_keys_during_rotation_with_thumbprint_kids() {
    let (new, _) = Key::generate(Algorithm::EdDSA).unwrap();
    let (old, _) = Key::generate(Algorithm::ES256).unwrap();
    let (new_kid, old_kid) = (new.kid().to_string(), old.kid().to_string());
    let a = Assertions::new(new, Some(old), "taxgate", 60).unwrap();
    let set: serde_json::Value = serde_json::from_slice(&a.jwks()).unwrap();
    let keys = set["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["kid"], new_kid.as_str());
    assert_eq!(keys[0]["kty"], "OKP");
    assert_eq!(keys[0]["crv"], "Ed25519");
    assert_eq!(keys[0]["alg"], "EdDSA");
    assert_eq!(keys[0]["use"], "sig");
    assert_eq!(keys[1]["kid"], old_kid.as_str());
    assert_eq!(
        (keys[1]["kty"].as_str(), keys[1]["crv"].as_str()),
        (Some("EC"), Some("P-256"))
    );
    assert_eq!(keys[1]["alg"], "ES256");
    for k in keys {
        assert!(k.get("d").is_none(), "no private part in the JWKS: {k}");
    }
    // RFC 7638: SHA-256 of the canonical members, base64url: 43 characters.
    assert_eq!(new_kid.len(), 43);
}

#[test]
fn rfc_8037_test_vector_thumbprint() {
    // RFC 8037 appendix A.3: the thumbprint of the A.2 public key.
    let jwk: Jwk = serde_json::from_value(serde_json::json!({
        "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    }))
    .unwrap();
    provider::install().unwrap();
    assert_eq!(
        jwk.thumbprint(ThumbprintHash::SHA256).unwrap(),
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    );
}

#[test]
fn key_files_load_infer_the_algorithm_and_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ed = dir.path().join("keys/ed.pem");
    let ec = dir.path().join("ec.pem");
    let written = write_new_key(&ed, Algorithm::EdDSA, false).unwrap();
    write_new_key(&ec, Algorithm::ES256, false).unwrap();
    let loaded = Key::load(&ed, None).unwrap();
    assert_eq!(loaded.algorithm(), Algorithm::EdDSA);
    assert_eq!(loaded.kid(), written.kid());
    assert_eq!(Key::load(&ec, None).unwrap().algorithm(), Algorithm::ES256);
    let e = Key::load(&ec, Some(Algorithm::EdDSA))
        .unwrap_err()
        .to_string();
    assert!(e.contains("ec.pem") && e.contains("EdDSA"), "{e}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&ed).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Never overwritten without --force; with it, a different key.
    let e = write_new_key(&ed, Algorithm::EdDSA, false).unwrap_err();
    assert!(matches!(e, KeyError::Exists { .. }), "{e}");
    assert_eq!(Key::load(&ed, None).unwrap().kid(), written.kid());
    let replaced = write_new_key(&ed, Algorithm::EdDSA, true).unwrap();
    assert_ne!(replaced.kid(), written.kid());
    assert_eq!(Key::load(&ed, None).unwrap().kid(), replaced.kid());

    let missing = Key::load(&dir.path().join("nope.pem"), None).unwrap_err();
    assert!(
        missing.to_string().starts_with("cannot read `"),
        "{missing}"
    );
    let cert = dir.path().join("not-a-key.pem");
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let e = Key::load(&cert, None).unwrap_err().to_string();
    assert!(e.contains("PKCS#8"), "{e}");
}

#[test]
fn debug_never_shows_key_material() {
    let (key, secret) = Key::generate(Algorithm::EdDSA).unwrap();
    let body: String = secret
        .expose()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let a = Assertions::new(key, None, "taxgate", 60).unwrap();
    let shown = format!("{a:?}");
    assert!(shown.contains("kid"), "{shown}");
    assert!(!shown.contains(&body[..20]), "{shown}");
}

#[test]
fn an_ed25519_assertion_is_byte_for_byte_what_jsonwebtoken_encodes() {
    // Ed25519 is deterministic, so the JWS the gateway assembles itself must equal the one
    // jsonwebtoken builds from the same header and claims (and its provider) exactly.
    let (key, secret) = Key::generate(Algorithm::EdDSA).unwrap();
    let der =
        rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(secret.expose().as_bytes()).unwrap();
    let mut header = Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(key.kid().to_string());
    let a = Assertions::new(key, None, "taxgate", 60).unwrap();
    let id = identity(&[
        (&HEADER_PERSON, "140105199001011238"),
        (&HEADER_ROLE, "tax_handler"),
    ]);
    let token = a
        .sign_for_session(&id, "s1", "d1", "v1", "declare", 1_700_000_000)
        .unwrap();
    let token = token.to_str().unwrap();
    let jti = format!("{}0", a.jti_prefix);
    let claims = Claims {
        iss: "taxgate",
        aud: "declare",
        iat: 1_700_000_000,
        exp: 1_700_000_060,
        jti: &jti,
        person: Some("140105199001011238"),
        enterprise: None,
        role: Some("tax_handler"),
        entry: None,
        agency: None,
        decision: "d1",
        policy_version: "v1",
        sid: Some("s1"),
    };
    let expected = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_der(der.secret_pkcs8_der()),
    )
    .unwrap();
    assert_eq!(token, expected);
}
