//! `GET /openapi.json` on the admin listener: the OpenAPI 3.1 description of the public
//! listener's own API (login, session, step-up, forgotten password, the account centre and its
//! sessions, the pages), for generic clients and fuzzers. Downstream routes (`[[routes]]`) and
//! the external-authorization listener are not in it.
//!
//! The operations and their bodies are `utoipa` derives (`paths`, [`schemas`]; the handlers
//! answer with the schema types themselves); the error
//! answers of each operation come from one table here ([`ERRORS`]) and all share one schema,
//! `ErrorBody`, whose `code` is an enum of every [`Code`] and every reason of the policies loaded
//! at start. The document is built once, when the gateway starts.

mod paths;
pub mod schemas;

use std::collections::BTreeMap;

use utoipa::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::server::Server;
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, ResponseBuilder, schema::Type};

use crate::error::Code;
use schemas::{ErrorBody, ErrorCode, GroupName, RoleName, SessionView, error_code_schema};

/// The cookie that carries the session.
pub const SESSION_COOKIE: &str = "taxgate_session";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "taxgate public API",
        description = "The gateway's own endpoints on the public listener: login and its second factors, the session, step-up, phone recovery and the forgotten password, the account centre and the person's sessions. The session travels in the cookie `taxgate_session` or as `Authorization: Bearer <token>`. Every error has the body `ErrorBody`. Downstream routes and the external-authorization listener are not described here.",
        license(name = "Apache-2.0")
    ),
    paths(
        paths::login, paths::sms_send, paths::sms_verify, paths::face_start, paths::face_qr,
        paths::face_callback, paths::face_complete, paths::face_demo_sign, paths::phone_recover,
        paths::phone_recover_verify, paths::password_reset, paths::password_reset_complete,
        paths::session, paths::change_password, paths::logout, paths::step_up,
        paths::identities, paths::switch, paths::switch_leave, paths::overview,
        paths::personnel_add, paths::personnel_list, paths::personnel_revoke,
        paths::personnel_confirm, paths::personnel_update, paths::authorizations,
        paths::authorization_confirm, paths::authorization_unbind, paths::apply, paths::phone,
        paths::phone_verify, paths::sessions, paths::session_revoke,
        paths::sessions_revoke_others, paths::personnel_sessions,
        paths::personnel_session_revoke, paths::login_page, paths::account_page
    ),
    components(schemas(ErrorBody, ErrorCode, SessionView, RoleName, GroupName)),
    tags(
        (name = "login", description = "logging in: first factor, SMS and face"),
        (name = "recovery", description = "phone recovery (找回手机号码) and the forgotten password (忘记密码)"),
        (name = "session", description = "the presented session"),
        (name = "account", description = "the account centre: identities, switching, phone"),
        (name = "personnel", description = "人员权限管理, the enterprise side"),
        (name = "authorizations", description = "企业授权管理 and applications, the person side"),
        (name = "sessions", description = "安全中心: the person's and the enterprise's sessions"),
        (name = "pages", description = "the HTML pages")
    )
)]
struct PublicApi;

/// The codes each operation (by `operation_id`) can answer besides the ones every operation of
/// its kind can (`common_codes`). Policy reasons are answered 403 (`conflict_of_roles` 409).
pub const ERRORS: &[(&str, &[&str])] = &[
    (
        "login",
        &[
            "invalid_credentials",
            "account_locked",
            "not_linked",
            "binding_pending",
            "binding_expired",
            "no_agency_relation",
            "legacy_login_retired",
            "not_permitted",
        ],
    ),
    (
        "sms_send",
        &[
            "challenge_expired",
            "face_failed",
            "face_required",
            "phone_missing",
            "sms_too_frequent",
            "sms_daily_limit",
            "sms_unavailable",
        ],
    ),
    (
        "sms_verify",
        &[
            "invalid_code",
            "challenge_expired",
            "face_failed",
            "face_required",
            "account_locked",
            "not_linked",
            "binding_pending",
            "binding_expired",
            "no_agency_relation",
            "legacy_login_retired",
            "not_permitted",
        ],
    ),
    ("face_start", &["challenge_expired", "face_failed"]),
    ("face_qr", &["internal_error"]),
    (
        "face_callback",
        &[
            "bad_signature",
            "unknown_nonce",
            "identity_mismatch",
            "rate_limited",
        ],
    ),
    (
        "face_complete",
        &[
            "face_pending",
            "face_failed",
            "face_required",
            "challenge_expired",
            "account_locked",
            "not_linked",
            "binding_pending",
            "binding_expired",
            "no_agency_relation",
            "legacy_login_retired",
            "not_permitted",
            "phone_missing",
            "sms_too_frequent",
            "sms_daily_limit",
            "sms_unavailable",
        ],
    ),
    (
        "face_demo_sign",
        &[
            "not_found",
            "face_pending",
            "challenge_expired",
            "face_failed",
        ],
    ),
    ("phone_recover", &["invalid_credentials", "account_locked"]),
    (
        "phone_recover_verify",
        &["face_required", "invalid_code", "challenge_expired"],
    ),
    ("password_reset", &[]),
    (
        "password_reset_complete",
        &[
            "weak_password",
            "invalid_code",
            "face_required",
            "challenge_expired",
        ],
    ),
    ("session", &[]),
    (
        "change_password",
        &["weak_password", "invalid_credentials", "account_locked"],
    ),
    ("logout", &[]),
    ("step_up", &[]),
    ("identities", &[]),
    (
        "switch",
        &[
            "not_linked",
            "binding_pending",
            "binding_expired",
            "no_agency_relation",
            "enterprise_login_required",
            "conflict_of_roles",
        ],
    ),
    ("switch_leave", &[]),
    ("overview", &[]),
    (
        "personnel_add",
        &[
            "person_not_registered",
            "grant_not_permitted",
            "already_linked",
            "conflict_of_roles",
            "step_up_required",
        ],
    ),
    ("personnel_list", &[]),
    (
        "personnel_revoke",
        &["not_found", "grant_not_permitted", "step_up_required"],
    ),
    (
        "personnel_confirm",
        &[
            "not_found",
            "already_confirmed",
            "grant_not_permitted",
            "conflict_of_roles",
            "step_up_required",
        ],
    ),
    (
        "personnel_update",
        &["not_found", "grant_not_permitted", "step_up_required"],
    ),
    ("authorizations", &[]),
    (
        "authorization_confirm",
        &["not_found", "already_confirmed", "conflict_of_roles"],
    ),
    ("authorization_unbind", &["not_found"]),
    (
        "apply",
        &["not_found", "already_linked", "conflict_of_roles"],
    ),
    (
        "phone",
        &[
            "sms_too_frequent",
            "sms_daily_limit",
            "sms_unavailable",
            "step_up_required",
        ],
    ),
    (
        "phone_verify",
        &["invalid_code", "challenge_expired", "step_up_required"],
    ),
    ("sessions", &[]),
    ("session_revoke", &["not_found"]),
    ("sessions_revoke_others", &[]),
    ("personnel_sessions", &[]),
    ("personnel_session_revoke", &["not_found"]),
    ("login_page", &[]),
    ("account_page", &[]),
];

/// What an operation is, for the codes every such operation can answer.
struct Kind {
    path: String,
    post: bool,
    json_body: bool,
    session: bool,
}

/// The codes every operation of a kind can answer: the path rules and the store for all; the
/// body rules and the cross-site check for POSTs; the per-address limit on `/auth/*`; the session
/// and its policy decision for those that need one.
fn common_codes(kind: &Kind) -> Vec<&'static str> {
    let mut codes = vec!["invalid_path"];
    if kind.path.starts_with("/auth/") || kind.path.starts_with("/account/") {
        codes.extend(["ambiguous_session", "store_unavailable", "internal_error"]);
    }
    if kind.json_body {
        codes.extend([
            "invalid_input",
            "payload_too_large",
            "unsupported_media_type",
        ]);
    }
    if kind.post && kind.path != "/auth/face/callback" {
        codes.push("cross_site");
    }
    if kind.path.starts_with("/auth/") {
        codes.push("rate_limited");
    }
    if kind.path.contains('{') {
        codes.push("not_found");
    }
    if kind.session {
        codes.extend([
            "login_required",
            "session_expired",
            "not_permitted",
            "password_change_required",
            "legacy_login_retired",
            "client_not_selected",
            "policy_error",
            "policy_unavailable",
        ]);
    }
    codes
}

/// The HTTP status of an error code: the gateway's own from [`Code::status`], a policy reason
/// 403 (`conflict_of_roles` 409, as the rescue answers it).
fn status_of(code: &str) -> u16 {
    Code::ALL
        .iter()
        .find(|c| c.as_str() == code)
        .map(|c| c.status().as_u16())
        .unwrap_or(if code == "conflict_of_roles" {
            409
        } else {
            403
        })
}

/// The codes an operation answers, by status: its own (from [`ERRORS`]) and its kind's.
fn error_responses(operation_id: &str, kind: &Kind) -> BTreeMap<u16, Vec<&'static str>> {
    let own = ERRORS
        .iter()
        .find(|(id, _)| *id == operation_id)
        .map(|(_, codes)| *codes)
        .unwrap_or_default();
    let mut by_status: BTreeMap<u16, Vec<&'static str>> = BTreeMap::new();
    for code in common_codes(kind).into_iter().chain(own.iter().copied()) {
        let codes = by_status.entry(status_of(code)).or_default();
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    by_status
}

fn add_errors(path: &str, post: bool, op: &mut Operation) {
    let kind = Kind {
        path: path.to_string(),
        post,
        json_body: op.request_body.is_some(),
        session: op.security.is_some(),
    };
    let id = op.operation_id.clone().unwrap_or_default();
    for (status, codes) in error_responses(&id, &kind) {
        let listed = codes
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut response = ResponseBuilder::new().description(listed).content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        );
        if status == 429 {
            response = response.header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(
                        utoipa::openapi::ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(1)),
                    )
                    .description(Some("seconds to wait; also `retry_after_secs` in the body"))
                    .build(),
            );
        }
        op.responses
            .responses
            .insert(status.to_string(), RefOr::T(response.build()));
    }
}

/// The document: the public API, `servers` = `public_origin` when configured, the error codes
/// with the policies' `reasons` (the loaded set's).
pub fn document(public_origin: Option<&str>, reasons: &[&str]) -> utoipa::openapi::OpenApi {
    let mut api = PublicApi::openapi();
    for (path, item) in api.paths.paths.iter_mut() {
        if let Some(op) = item.get.as_mut() {
            add_errors(path, false, op);
        }
        if let Some(op) = item.post.as_mut() {
            add_errors(path, true, op);
        }
    }
    let components = api.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "session_cookie",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            SESSION_COOKIE,
            "the session token, as `Set-Cookie` gave it",
        ))),
    );
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "the same session token as `Authorization: Bearer <token>`",
                ))
                .build(),
        ),
    );
    components.schemas.insert(
        "ErrorCode".to_string(),
        RefOr::T(error_code_schema(reasons)),
    );
    if let Some(origin) = public_origin {
        api.servers = Some(vec![Server::new(origin.trim_end_matches('/'))]);
    }
    api
}

/// [`document`] as the JSON `/openapi.json` serves.
pub fn document_json(public_origin: Option<&str>, reasons: &[&str]) -> bytes::Bytes {
    let api = document(public_origin, reasons);
    bytes::Bytes::from(api.to_json().unwrap_or_default())
}

#[cfg(test)]
#[expect(clippy::indexing_slicing, reason = "tests fail loudly")]
mod tests {
    use super::*;

    fn doc() -> serde_json::Value {
        serde_json::from_slice(&document_json(Some("https://gw.example/"), &["not_linked"]))
            .unwrap_or_default()
    }

    #[test]
    fn every_operation_has_its_error_table_row() {
        let api = PublicApi::openapi();
        let mut ids = Vec::new();
        for item in api.paths.paths.values() {
            for op in [&item.get, &item.post].into_iter().flatten() {
                ids.push(op.operation_id.clone().unwrap_or_default());
            }
        }
        for id in &ids {
            assert!(
                ERRORS.iter().any(|(e, _)| e == id),
                "`{id}` has no row in ERRORS"
            );
        }
        for (id, _) in ERRORS {
            assert!(
                ids.iter().any(|i| i == id),
                "ERRORS names `{id}`, no operation"
            );
        }
    }

    #[test]
    fn every_listed_code_is_a_code() {
        let known: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        let reasons = [
            "not_linked",
            "binding_pending",
            "binding_expired",
            "no_agency_relation",
            "legacy_login_retired",
            "enterprise_login_required",
            "conflict_of_roles",
            "grant_not_permitted",
            "step_up_required",
            "password_change_required",
            "client_not_selected",
            "policy_error",
        ];
        for (id, codes) in ERRORS {
            for c in *codes {
                assert!(
                    known.contains(c) || reasons.contains(c),
                    "`{c}` of `{id}` is no code"
                );
            }
        }
    }

    #[test]
    fn document_is_openapi_3_1_with_servers_and_security() {
        let d = doc();
        assert!(d["openapi"].as_str().unwrap_or("").starts_with("3.1"));
        assert_eq!(d["servers"][0]["url"], "https://gw.example");
        let schemes = &d["components"]["securitySchemes"];
        assert_eq!(schemes["session_cookie"]["in"], "cookie");
        assert_eq!(schemes["session_cookie"]["name"], SESSION_COOKIE);
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
        let login = &d["paths"]["/auth/login"]["post"]["responses"];
        assert!(login["429"]["headers"]["Retry-After"].is_object());
        assert!(
            login["401"]["description"]
                .as_str()
                .unwrap_or("")
                .contains("`invalid_credentials`")
        );
        let session = &d["paths"]["/auth/session"]["get"];
        assert!(session["security"].is_array());
        assert!(session["responses"]["401"].is_object());
    }

    #[test]
    fn error_code_enum_holds_every_code_and_the_reasons() {
        let d = doc();
        let codes = d["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for c in Code::ALL {
            assert!(codes.contains(&c.as_str().into()), "{c:?}");
        }
        assert!(codes.contains(&"not_linked".into()));
    }

    #[test]
    fn statuses_follow_the_codes() {
        assert_eq!(status_of("invalid_input"), 400);
        assert_eq!(status_of("sms_daily_limit"), 429);
        assert_eq!(status_of("not_linked"), 403);
        assert_eq!(status_of("conflict_of_roles"), 409);
    }

    /// The session view the handlers write is valid for its own schema's required fields.
    #[test]
    fn session_view_fields_are_the_schemas() {
        let d = doc();
        let schema = &d["components"]["schemas"]["SessionView"];
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let view = SessionView {
            person: None,
            name: None,
            entry: "person",
            enterprise: None,
            enterprise_name: None,
            role: None,
            agency: None,
            must_change_password: false,
            mfa: "sms",
            expires_at: "2099-12-31T15:59:59Z".into(),
        };
        let v = serde_json::to_value(&view).unwrap_or_default();
        let fields: Vec<&str> = v
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let mut sorted_required = required.clone();
        sorted_required.sort_unstable();
        let mut sorted_fields = fields.clone();
        sorted_fields.sort_unstable();
        assert_eq!(sorted_required, sorted_fields);
    }
}
