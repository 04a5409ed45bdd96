//! Issue 22 point 9: the repository's own docs stay true. The face-callback signing example in
//! docs/operations.md is computed by the gateway's own signer and accepted by its verifier; the
//! README links the references and no longer points to files a clone does not have; docs/api.md
//! names every endpoint the gateway serves.

use std::path::{Path, PathBuf};

use taxgate_gateway::authn::face;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The first fenced block after `<!-- marker -->`.
fn block_after(doc: &str, marker: &str) -> String {
    let tail = doc
        .split(&format!("<!-- {marker} -->"))
        .nth(1)
        .unwrap_or_else(|| panic!("no `{marker}` in docs/operations.md"));
    let mut parts = tail.splitn(3, "```");
    let _ = parts.next();
    parts
        .next()
        .unwrap()
        .trim_start_matches(|c: char| c.is_ascii_alphabetic())
        .trim()
        .to_string()
}

#[test]
fn docs_signing_example_is_right() {
    let doc = read("docs/operations.md");
    let body = block_after(&doc, "signing-example:body");
    let header = block_after(&doc, "signing-example:signature");
    let signature = header
        .strip_prefix("x-taxgate-signature: ")
        .expect("the header line");
    assert_eq!(
        face::sign(b"change-me", "1767225600", body.as_bytes()),
        signature
    );
    assert_eq!(
        face::verify(
            b"change-me",
            Some("1767225600"),
            Some(signature),
            body.as_bytes(),
            1_767_225_600
        ),
        Ok(())
    );
    // The shell recipe signs the same body.
    assert!(
        doc.contains(&format!("body='{body}'")),
        "the curl example's body"
    );
}

#[test]
fn readme_links_the_references_and_no_file_a_clone_lacks() {
    let readme = read("README.md");
    for link in ["docs/api.md", "docs/operations.md"] {
        assert!(readme.contains(&format!("({link})")), "README links {link}");
        assert!(repo().join(link).exists(), "{link} exists");
    }
    for gone in ["CONTRACT.md", "DESIGN.md", "CONTRACT section", "CONTRACT §"] {
        assert!(!readme.contains(gone), "README still points to {gone}");
        assert!(
            !read("docs/ARCHITECTURE.md").contains(gone),
            "docs/ARCHITECTURE.md still points to {gone}"
        );
        assert!(
            !read("docs/pages.md").contains(gone),
            "docs/pages.md still points to {gone}"
        );
    }
}

#[test]
fn the_api_reference_names_every_endpoint() {
    let api = read("docs/api.md");
    for endpoint in [
        "POST /auth/login",
        "POST /auth/sms/send",
        "POST /auth/sms/verify",
        "POST /auth/face/start",
        "GET /auth/face/qr",
        "POST /auth/face/callback",
        "POST /auth/face/complete",
        "POST /auth/face/demo-sign",
        "POST /auth/phone/recover",
        "POST /auth/phone/recover/verify",
        "POST /auth/password/reset",
        "POST /auth/password/reset/complete",
        "GET /auth/session",
        "POST /auth/password",
        "POST /auth/logout",
        "POST /auth/step-up",
        "GET /account/identities",
        "POST /account/switch",
        "POST /account/switch/leave",
        "GET /account/overview",
        "POST /account/personnel",
        "GET /account/personnel",
        "POST /account/personnel/{binding}/revoke",
        "POST /account/personnel/{binding}/confirm",
        "POST /account/personnel/{binding}/update",
        "GET /account/authorizations",
        "POST /account/authorizations/{binding}/confirm",
        "POST /account/authorizations/{binding}/unbind",
        "POST /account/applications",
        "POST /account/phone",
        "POST /account/phone/verify",
        "GET /account/sessions",
        "POST /account/sessions/{id}/revoke",
        "POST /account/sessions/revoke-others",
        "GET /account/personnel/sessions",
        "POST /account/personnel/sessions/{id}/revoke",
        "/ext/forward-auth",
        "/ext/auth-request",
        "/ext/envoy",
        "envoy.service.auth.v3.Authorization/Check",
        "POST /access/v1/evaluation",
        "POST /access/v1/evaluations",
        "GET /.well-known/authzen-configuration",
    ] {
        assert!(api.contains(endpoint), "docs/api.md lacks `{endpoint}`");
    }
}
