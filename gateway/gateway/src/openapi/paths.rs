//! The public API's operations: each marker function carries one `#[utoipa::path]` (method,
//! path, request body, success answer). The error answers of each operation are added from the
//! table in `super::ERRORS`, so every code an operation can answer is listed in one place.

#![allow(dead_code, reason = "the functions only carry their `#[utoipa::path]`")]

#[allow(unused_imports, reason = "the paths name the schemas")]
use super::schemas::*;

#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "login",
    operation_id = "login",
    summary = "First factor: account and password for an entry",
    request_body(content = LoginRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "the password passed: a challenge for the second factor", body = ChallengeAnswer)
    )
)]
pub fn login() {}

#[utoipa::path(
    post,
    path = "/auth/sms/send",
    tag = "login",
    operation_id = "sms_send",
    summary = "Send the SMS code of a challenge",
    request_body(content = ChallengeRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "a code was sent (a reset: whether or not one went out)", body = ResendAnswer)
    )
)]
pub fn sms_send() {}

#[utoipa::path(
    post,
    path = "/auth/sms/verify",
    tag = "login",
    operation_id = "sms_verify",
    summary = "Verify the SMS code of a challenge",
    request_body(content = CodeRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "login: the session view and `Set-Cookie`; step-up: the session view, same token; reset: `{\"verified\": \"sms\"}`", body = SmsVerifyAnswer)
    )
)]
pub fn sms_verify() {}

#[utoipa::path(
    post,
    path = "/auth/face/start",
    tag = "login",
    operation_id = "face_start",
    summary = "Start a face scan on a challenge",
    request_body(content = ChallengeRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "the nonce and QR payload for the app", body = FaceStartAnswer)
    )
)]
pub fn face_start() {}

#[utoipa::path(
    get,
    path = "/auth/face/qr",
    tag = "login",
    operation_id = "face_qr",
    summary = "The QR code of a face scan",
    params(
        ("nonce" = String, Query, description = "the nonce of `/auth/face/start`")
    ),
    responses(
        (status = 200, description = "the QR payload as an SVG image", content_type = "image/svg+xml", body = String)
    )
)]
pub fn face_qr() {}

#[utoipa::path(
    post,
    path = "/auth/face/callback",
    tag = "login",
    operation_id = "face_callback",
    summary = "The app backend's signed face result",
    params(
        ("x-taxgate-signature" = String, Header, description = "`sha256=<hex HMAC-SHA256(secret, timestamp + \".\" + body)>`"),
        ("x-taxgate-timestamp" = String, Header, description = "unix seconds; refused when more than 300 s off")
    ),
    request_body(content = FaceCallback, content_type = "application/json"),
    responses(
        (status = 204, description = "the result is recorded")
    )
)]
pub fn face_callback() {}

#[utoipa::path(
    post,
    path = "/auth/face/complete",
    tag = "login",
    operation_id = "face_complete",
    summary = "Complete a challenge whose face scan passed",
    request_body(content = ChallengeRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "login: the session view and `Set-Cookie`; recovery: a code went to the new number; reset: `{\"verified\": \"face\"}`", body = FaceCompleteAnswer)
    )
)]
pub fn face_complete() {}

#[utoipa::path(
    post,
    path = "/auth/face/demo-sign",
    tag = "login",
    operation_id = "face_demo_sign",
    summary = "Sign a face callback with the demo secret",
    request_body(content = DemoSignRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "the signed callback (`taxgate demo` only; 404 `not_found` elsewhere)", body = DemoSignAnswer)
    )
)]
pub fn face_demo_sign() {}

#[utoipa::path(
    post,
    path = "/auth/phone/recover",
    tag = "recovery",
    operation_id = "phone_recover",
    summary = "Start recovering a phone number (找回手机号码)",
    request_body(content = PhoneRecoverRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "a challenge whose only factor is `face`", body = ChallengeAnswer)
    )
)]
pub fn phone_recover() {}

#[utoipa::path(
    post,
    path = "/auth/phone/recover/verify",
    tag = "recovery",
    operation_id = "phone_recover_verify",
    summary = "Verify the code sent to the recovered number",
    request_body(content = CodeRequest, content_type = "application/json"),
    responses(
        (status = 204, description = "the number is the person's; every session of the person ends")
    )
)]
pub fn phone_recover_verify() {}

#[utoipa::path(
    post,
    path = "/auth/password/reset",
    tag = "recovery",
    operation_id = "password_reset",
    summary = "Start a forgotten-password reset (忘记密码)",
    request_body(content = ResetRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "a reset challenge (the same for an unknown account)", body = ChallengeAnswer)
    )
)]
pub fn password_reset() {}

#[utoipa::path(
    post,
    path = "/auth/password/reset/complete",
    tag = "recovery",
    operation_id = "password_reset_complete",
    summary = "Set the new password of a verified reset",
    request_body(content = ResetCompleteRequest, content_type = "application/json"),
    responses(
        (status = 204, description = "the password is changed and every session of the person revoked")
    )
)]
pub fn password_reset_complete() {}

#[utoipa::path(
    get,
    path = "/auth/session",
    tag = "session",
    operation_id = "session",
    summary = "The presented session",
    responses(
        (status = 200, description = "the session view", body = SessionView)
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub fn session() {}

#[utoipa::path(
    post,
    path = "/auth/password",
    tag = "session",
    operation_id = "change_password",
    summary = "Change the password",
    request_body(content = PasswordChangeRequest, content_type = "application/json"),
    responses(
        (status = 204, description = "changed; the person's other sessions end")
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub fn change_password() {}

#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "session",
    operation_id = "logout",
    summary = "Log out",
    responses(
        (status = 204, description = "the session is revoked on every instance; the cookie is cleared")
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub fn logout() {}

#[utoipa::path(
    post,
    path = "/auth/step-up",
    tag = "session",
    operation_id = "step_up",
    summary = "Ask for a fresh second factor",
    request_body(content = EmptyRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "a step-up challenge bound to the session", body = ChallengeAnswer)
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub fn step_up() {}

#[utoipa::path(
    get,
    path = "/account/identities",
    tag = "account",
    operation_id = "identities",
    summary = "The identities a switch may choose",
    responses(
        (status = 200, description = "the person's identities (an agent: the agency's clients)", body = Vec<Identity>)
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub fn identities() {}

#[utoipa::path(
    post,
    path = "/account/switch",
    tag = "account",
    operation_id = "switch",
    summary = "Switch identity (身份切换)",
    request_body(content = SwitchRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "the session view; the same token", body = SessionView)
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub fn switch() {}

#[utoipa::path(
    post,
    path = "/account/switch/leave",
    tag = "account",
    operation_id = "switch_leave",
    summary = "An agent leaves the client acted for",
    responses(
        (status = 200, description = "the session view, back at the agency", body = SessionView)
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub fn switch_leave() {}

#[utoipa::path(
    get,
    path = "/account/overview",
    tag = "account",
    operation_id = "overview",
    summary = "What the account centre may show",
    responses(
        (status = 200, description = "what the account centre shows", body = Overview)
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub fn overview() {}

#[utoipa::path(
    post,
    path = "/account/personnel",
    tag = "personnel",
    operation_id = "personnel_add",
    summary = "Add a person to the enterprise (人员权限管理)",
    request_body(content = GrantRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "a pending binding", body = BindingCreated)
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub fn personnel_add() {}

#[utoipa::path(
    get,
    path = "/account/personnel",
    tag = "personnel",
    operation_id = "personnel_list",
    summary = "The enterprise's bindings",
    responses(
        (status = 200, description = "the enterprise's bindings", body = Vec<BindingItem>)
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub fn personnel_list() {}

#[utoipa::path(
    post,
    path = "/account/personnel/{binding}/revoke",
    tag = "personnel",
    operation_id = "personnel_revoke",
    summary = "End a binding or withdraw a request",
    params(
        ("binding" = String, Path, description = "the binding id")
    ),
    responses(
        (status = 204, description = "withdrawn or ended")
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub fn personnel_revoke() {}

#[utoipa::path(
    post,
    path = "/account/personnel/{binding}/confirm",
    tag = "personnel",
    operation_id = "personnel_confirm",
    summary = "Confirm a person's application",
    params(
        ("binding" = String, Path, description = "the binding id")
    ),
    responses(
        (status = 204, description = "the enterprise confirmed")
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub fn personnel_confirm() {}

#[utoipa::path(
    post,
    path = "/account/personnel/{binding}/update",
    tag = "personnel",
    operation_id = "personnel_update",
    summary = "Change a binding's groups or validity",
    params(
        ("binding" = String, Path, description = "the binding id")
    ),
    request_body(content = UpdateRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "the updated binding", body = BindingItem)
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub fn personnel_update() {}

#[utoipa::path(
    get,
    path = "/account/authorizations",
    tag = "authorizations",
    operation_id = "authorizations",
    summary = "The person's bindings (企业授权管理)",
    responses(
        (status = 200, description = "the person's bindings", body = Vec<BindingItem>)
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub fn authorizations() {}

#[utoipa::path(
    post,
    path = "/account/authorizations/{binding}/confirm",
    tag = "authorizations",
    operation_id = "authorization_confirm",
    summary = "Confirm a binding",
    params(
        ("binding" = String, Path, description = "the binding id")
    ),
    responses(
        (status = 204, description = "confirmed; active once both sides did")
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub fn authorization_confirm() {}

#[utoipa::path(
    post,
    path = "/account/authorizations/{binding}/unbind",
    tag = "authorizations",
    operation_id = "authorization_unbind",
    summary = "Unbind (解除绑定)",
    params(
        ("binding" = String, Path, description = "the binding id")
    ),
    responses(
        (status = 204, description = "ended (or refused, if pending)")
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub fn authorization_unbind() {}

#[utoipa::path(
    post,
    path = "/account/applications",
    tag = "authorizations",
    operation_id = "apply",
    summary = "Apply to an enterprise",
    request_body(content = ApplicationRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "a pending application", body = BindingCreated)
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub fn apply() {}

#[utoipa::path(
    post,
    path = "/account/phone",
    tag = "account",
    operation_id = "phone",
    summary = "Bind a new phone number",
    request_body(content = PhoneRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "a code went to the new number", body = PhoneChallengeAnswer)
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub fn phone() {}

#[utoipa::path(
    post,
    path = "/account/phone/verify",
    tag = "account",
    operation_id = "phone_verify",
    summary = "Verify the code sent to the new number",
    request_body(content = CodeRequest, content_type = "application/json"),
    responses(
        (status = 204, description = "the number is the person's (一号一人)")
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub fn phone_verify() {}

#[utoipa::path(
    get,
    path = "/account/sessions",
    tag = "sessions",
    operation_id = "sessions",
    summary = "The person's sessions (安全中心)",
    responses(
        (status = 200, description = "every live session of the person", body = Vec<OwnSession>)
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub fn sessions() {}

#[utoipa::path(
    post,
    path = "/account/sessions/{id}/revoke",
    tag = "sessions",
    operation_id = "session_revoke",
    summary = "End one of the person's sessions",
    params(
        ("id" = String, Path, description = "the id id")
    ),
    responses(
        (status = 204, description = "ended on every instance")
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub fn session_revoke() {}

#[utoipa::path(
    post,
    path = "/account/sessions/revoke-others",
    tag = "sessions",
    operation_id = "sessions_revoke_others",
    summary = "End the person's other sessions",
    responses(
        (status = 204, description = "every other session ended")
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub fn sessions_revoke_others() {}

#[utoipa::path(
    get,
    path = "/account/personnel/sessions",
    tag = "sessions",
    operation_id = "personnel_sessions",
    summary = "Sessions acting for the enterprise",
    responses(
        (status = 200, description = "the live sessions acting for the enterprise", body = Vec<PersonnelSession>)
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub fn personnel_sessions() {}

#[utoipa::path(
    post,
    path = "/account/personnel/sessions/{id}/revoke",
    tag = "sessions",
    operation_id = "personnel_session_revoke",
    summary = "End a session acting for the enterprise",
    params(
        ("id" = String, Path, description = "the id id")
    ),
    responses(
        (status = 204, description = "ended on every instance")
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub fn personnel_session_revoke() {}

#[utoipa::path(
    get,
    path = "/login",
    tag = "pages",
    operation_id = "login_page",
    summary = "The login page",
    responses(
        (status = 200, description = "the login page", content_type = "text/html", body = String)
    )
)]
pub fn login_page() {}

#[utoipa::path(
    get,
    path = "/account",
    tag = "pages",
    operation_id = "account_page",
    summary = "The account centre page",
    responses(
        (status = 200, description = "the account centre page", content_type = "text/html", body = String)
    )
)]
pub fn account_page() {}
