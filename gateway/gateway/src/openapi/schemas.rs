//! The bodies of the public API as schema types. Every success answer is one of these types,
//! serialized by its handler, so the document and the answers cannot drift apart. The request
//! bodies are read field by field ([`crate::api::Json`]) and the error body is written in
//! `error.rs`: those are described here, and the end-to-end tests hold the descriptions to what
//! the gateway accepts and answers (tests/e2e/openapi.rs).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::{PartialSchema, ToSchema};

use taxgate_store::{PermissionGroup, Role};

use crate::error::Code;

/// A string schema whose values are `values`.
fn string_enum<'a>(description: &str, values: impl IntoIterator<Item = &'a str>) -> Schema {
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .description(Some(description))
            .enum_values(Some(values))
            .build(),
    )
}

/// `role`: the store's roles, read from [`Role::ALL`] so the list cannot drift.
pub struct RoleName;

impl PartialSchema for RoleName {
    fn schema() -> RefOr<Schema> {
        RefOr::T(string_enum(
            "a role in an enterprise (`agent`: agency staff; `legacy_enterprise`: the retired enterprise login)",
            Role::ALL.iter().map(|r| r.as_str()),
        ))
    }
}

impl ToSchema for RoleName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Role")
    }
}

/// A permission group, read from [`PermissionGroup::ALL`].
pub struct GroupName;

impl PartialSchema for GroupName {
    fn schema() -> RefOr<Schema> {
        RefOr::T(string_enum(
            "a permission group: `declare` 申报缴税, `invoice` 发票业务, `query` 涉税查询, `tax_affairs` 涉税办理, `personal_tax` 自然人业务",
            PermissionGroup::ALL.iter().map(|g| g.as_str()),
        ))
    }
}

impl ToSchema for GroupName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("PermissionGroup")
    }
}

/// The `code` of an error body: every code of [`Code::ALL`]. The document replaces this list
/// with the same codes and the loaded policies' reasons when it is built
/// ([`super::document`]).
pub struct ErrorCode;

impl PartialSchema for ErrorCode {
    fn schema() -> RefOr<Schema> {
        RefOr::T(error_code_schema(&[]))
    }
}

impl ToSchema for ErrorCode {}

/// The `ErrorCode` schema: the gateway's own codes, then the policies' `reasons`.
pub fn error_code_schema(reasons: &[&str]) -> Schema {
    let mut codes: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    for r in reasons {
        if !codes.contains(r) {
            codes.push(r);
        }
    }
    string_enum(
        "the gateway's own error codes, then the reasons of the policies' forbids (reasons.toml)",
        codes,
    )
}

/// How the session was entered.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryName {
    /// 企业业务
    Enterprise,
    /// 自然人业务
    Person,
    /// 代理业务
    Agent,
    /// the retired enterprise-password login
    EnterpriseLegacy,
}

/// The second factor of the login.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FactorName {
    /// an SMS code
    Sms,
    /// the face scan in the app
    Face,
}

/// A binding's or agreement's status as the account centre shows it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BindingStatus {
    /// confirmed by both sides and within its validity
    Active,
    /// waiting for a confirmation
    Pending,
    /// outside its validity
    Expired,
    /// ended
    Revoked,
}

/// The session view (`GET /auth/session`, a completed login, a switch). The handlers serialize
/// this type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SessionView {
    /// The person's ID number; null for a legacy enterprise session.
    #[schema(required = true)]
    pub person: Option<String>,
    /// The person's name (legacy: the enterprise's).
    #[schema(required = true)]
    pub name: Option<String>,
    /// How the session was entered.
    #[schema(value_type = EntryName)]
    pub entry: &'static str,
    /// The taxpayer id of the enterprise acted for.
    #[schema(required = true)]
    pub enterprise: Option<String>,
    /// Its name.
    #[schema(required = true)]
    pub enterprise_name: Option<String>,
    /// The role held in it.
    #[schema(required = true, value_type = Option<RoleName>)]
    pub role: Option<&'static str>,
    /// The agency's taxpayer id (agent entry).
    #[schema(required = true)]
    pub agency: Option<String>,
    /// A migrated user's first session: only `/auth/password`, `/auth/session` and
    /// `/auth/logout` are allowed.
    pub must_change_password: bool,
    /// The second factor of the login.
    #[schema(value_type = FactorName)]
    pub mfa: &'static str,
    /// The absolute end of the session (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// The body of every error answer.
#[derive(ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong, in both languages, with the hints a client may act on.
#[derive(ToSchema)]
pub struct ErrorDetail {
    /// The error code.
    #[schema(value_type = ErrorCode)]
    pub code: String,
    /// The message in Chinese.
    pub message: String,
    /// The message in English.
    pub message_en: String,
    /// The request field at fault (input errors).
    pub field: Option<String>,
    /// Tries left before the account locks or the challenge dies.
    #[schema(minimum = 0)]
    pub attempts_left: Option<u32>,
    /// Seconds until the account lock ends.
    #[schema(minimum = 0)]
    pub locked_for_secs: Option<u64>,
    /// Seconds to wait (every 429; also in `Retry-After`).
    #[schema(minimum = 0)]
    pub retry_after_secs: Option<u64>,
    /// The fresh factor a step-up needs (403 `step_up_required`).
    pub step_up: Option<StepUpHint>,
}

/// Which fresh factor an action needs.
#[derive(ToSchema)]
pub struct StepUpHint {
    /// The factors that may be used.
    pub factors: Vec<FactorName>,
    /// How old the factor may be.
    #[schema(minimum = 0)]
    pub max_age_secs: u64,
}

// ---- requests --------------------------------------------------------------------------------

/// `POST /auth/login`.
#[derive(ToSchema)]
pub struct LoginRequest {
    /// The entry.
    pub entry: EntryName,
    /// The enterprise (enterprise, legacy) or agency (agent); absent for `person`. A unified
    /// social credit code (18, both check characters) or a legacy 15/17/20-character id.
    #[schema(pattern = r"^([0-9A-Za-z]{15}|[0-9A-Za-z]{17,18}|[0-9A-Za-z]{20})$")]
    pub taxpayer_id: Option<String>,
    /// An ID number, a phone number or a username (not for `enterprise_legacy`).
    #[schema(min_length = 1, max_length = 64)]
    pub account: Option<String>,
    /// The password (the enterprise's for `enterprise_legacy`).
    #[schema(min_length = 1, max_length = 128)]
    pub password: String,
}

/// A body naming a challenge.
#[derive(ToSchema)]
pub struct ChallengeRequest {
    /// The challenge token.
    #[schema(min_length = 1, max_length = 64)]
    pub challenge: String,
}

/// A challenge and the SMS code sent for it.
#[derive(ToSchema)]
pub struct CodeRequest {
    /// The challenge token.
    #[schema(min_length = 1, max_length = 64)]
    pub challenge: String,
    /// The SMS code.
    #[schema(min_length = 1, max_length = 16)]
    pub code: String,
}

/// The result of a face scan.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FaceResult {
    /// the scan passed
    Pass,
    /// the scan failed
    Fail,
}

/// `POST /auth/face/callback`, from the app backend (signed: `x-taxgate-signature`,
/// `x-taxgate-timestamp`).
#[derive(ToSchema)]
pub struct FaceCallback {
    /// The nonce of the QR code.
    #[schema(min_length = 1, max_length = 64)]
    pub nonce: String,
    /// The ID number of the person scanned (GB 11643, with its check character).
    #[schema(pattern = r"^[0-9]{17}[0-9Xx]$")]
    pub id_number: String,
    /// The outcome.
    pub result: FaceResult,
}

/// `POST /auth/face/demo-sign` (`taxgate demo` only).
#[derive(ToSchema)]
pub struct DemoSignRequest {
    /// The challenge token.
    #[schema(min_length = 1, max_length = 64)]
    pub challenge: String,
    /// The outcome to sign (default `pass`).
    pub result: Option<FaceResult>,
}

/// `POST /auth/phone/recover`.
#[derive(ToSchema)]
pub struct PhoneRecoverRequest {
    /// An ID number, a phone number or a username.
    #[schema(min_length = 1, max_length = 64)]
    pub account: String,
    /// The password.
    #[schema(min_length = 1, max_length = 128)]
    pub password: String,
    /// The new mobile number.
    #[schema(pattern = r"^(\+86|0086)?1[3-9][0-9]{9}$")]
    pub phone: String,
}

/// `POST /auth/password/reset`.
#[derive(ToSchema)]
pub struct ResetRequest {
    /// An ID number, a phone number or a username.
    #[schema(min_length = 1, max_length = 64)]
    pub account: String,
}

/// `POST /auth/password/reset/complete`.
#[derive(ToSchema)]
pub struct ResetCompleteRequest {
    /// The reset challenge whose factor passed.
    #[schema(min_length = 1, max_length = 64)]
    pub challenge: String,
    /// The new password.
    #[schema(min_length = 1, max_length = 128)]
    pub new_password: String,
}

/// `POST /auth/password`.
#[derive(ToSchema)]
pub struct PasswordChangeRequest {
    /// The current password.
    #[schema(min_length = 1, max_length = 128)]
    pub old_password: String,
    /// The new password.
    #[schema(min_length = 1, max_length = 128)]
    pub new_password: String,
}

/// `{}`: a body with nothing the gateway reads.
#[derive(ToSchema)]
pub struct EmptyRequest {}

/// `POST /account/switch`.
#[derive(ToSchema)]
pub struct SwitchRequest {
    /// The taxpayer id of the enterprise to act for.
    #[schema(pattern = r"^([0-9A-Za-z]{15}|[0-9A-Za-z]{17,18}|[0-9A-Za-z]{20})$")]
    pub enterprise: String,
    /// The role to act as.
    #[schema(value_type = RoleName)]
    pub role: String,
}

/// `POST /account/personnel`: a grant by the enterprise.
#[derive(ToSchema)]
pub struct GrantRequest {
    /// The person's ID number.
    #[schema(pattern = r"^[0-9]{17}[0-9Xx]$")]
    pub id_number: String,
    /// The role granted.
    #[schema(value_type = RoleName)]
    pub role: String,
    /// The groups; absent or null: the role's defaults.
    #[schema(value_type = Option<Vec<GroupName>>, max_items = 16)]
    pub permissions: Option<Vec<String>>,
    /// The end of validity (RFC 3339, in the future); absent or null: no end.
    #[schema(format = DateTime, max_length = 40)]
    pub valid_until: Option<String>,
}

/// `POST /account/applications`: a person's application to an enterprise.
#[derive(ToSchema)]
pub struct ApplicationRequest {
    /// The enterprise's taxpayer id.
    #[schema(pattern = r"^([0-9A-Za-z]{15}|[0-9A-Za-z]{17,18}|[0-9A-Za-z]{20})$")]
    pub enterprise: String,
    /// The role applied for.
    #[schema(value_type = RoleName)]
    pub role: String,
    /// The groups; absent or null: the role's defaults.
    #[schema(value_type = Option<Vec<GroupName>>, max_items = 16)]
    pub permissions: Option<Vec<String>>,
    /// The end of validity; absent or null: no end.
    #[schema(format = DateTime, max_length = 40)]
    pub valid_until: Option<String>,
}

/// `POST /account/personnel/{binding}/update`: null or absent leaves a field as it is.
#[derive(ToSchema)]
pub struct UpdateRequest {
    /// The new groups.
    #[schema(value_type = Option<Vec<GroupName>>, max_items = 16)]
    pub permissions: Option<Vec<String>>,
    /// The new end of validity.
    #[schema(format = DateTime, max_length = 40)]
    pub valid_until: Option<String>,
}

/// `POST /account/phone`.
#[derive(ToSchema)]
pub struct PhoneRequest {
    /// The new mobile number (`1[3-9]` and 9 digits, after `+86`/`0086`).
    #[schema(pattern = r"^(\+86|0086)?1[3-9][0-9]{9}$")]
    pub phone: String,
}

// ---- answers ---------------------------------------------------------------------------------

/// A first factor passed: the challenge and the second factors it admits. The handlers
/// serialize this type.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChallengeAnswer {
    /// The challenge token for the next steps.
    pub challenge: String,
    /// The second factors this challenge admits.
    #[schema(value_type = Vec<FactorName>)]
    pub factors: Vec<String>,
    /// The number a code would go to, masked (only when there is one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_masked: Option<String>,
}

/// A code was (or, for a reset, may have been) sent. The handlers serialize this type.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResendAnswer {
    /// Seconds before another code may be asked for.
    #[schema(minimum = 0)]
    pub resend_after_secs: u64,
}

/// A reset challenge's factor passed. The handlers serialize this type.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VerifiedAnswer {
    /// Which factor.
    #[schema(value_type = FactorName)]
    pub verified: &'static str,
}

/// Phone recovery: the face passed and a code went to the new number. The handlers serialize
/// this type.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecoveryCodeAnswer {
    /// The same challenge.
    pub challenge: String,
    /// Seconds before another code may be asked for.
    #[schema(minimum = 0)]
    pub resend_after_secs: u64,
}

/// `POST /auth/sms/verify`: a login or step-up (the session view) or a reset (`verified`).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum SmsVerifyAnswer {
    /// A login or step-up challenge.
    Session(SessionView),
    /// A reset challenge.
    Verified(VerifiedAnswer),
}

/// `POST /auth/face/complete`: a login or step-up, a phone recovery, or a reset.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum FaceCompleteAnswer {
    /// A login or step-up challenge.
    Session(SessionView),
    /// A phone-recovery challenge.
    Recovery(RecoveryCodeAnswer),
    /// A reset challenge.
    Verified(VerifiedAnswer),
}

/// `POST /auth/face/start`. The handler serializes this type.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FaceStartAnswer {
    /// The nonce the QR code carries.
    pub nonce: String,
    /// The QR payload, `taxgate-face://v1?nonce=…`.
    pub qr: String,
    /// Seconds the nonce lives.
    #[schema(minimum = 0)]
    pub expires_in: u64,
}

/// `POST /auth/face/demo-sign`: the callback the app backend would send. The handler
/// serializes this type.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DemoSignAnswer {
    /// The callback body.
    pub body: String,
    /// Its `x-taxgate-timestamp`.
    pub timestamp: String,
    /// Its `x-taxgate-signature`.
    pub signature: String,
}

/// `POST /account/phone`. The handler serializes this type.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PhoneChallengeAnswer {
    /// The challenge the code is verified on.
    pub challenge: String,
}

/// An identity of the person (`GET /account/identities`); for an agent, a client of the agency.
/// The handler serializes this type.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Identity {
    /// The enterprise's taxpayer id.
    pub enterprise: String,
    /// Its name.
    #[schema(required = true)]
    pub enterprise_name: Option<String>,
    /// The role.
    #[schema(value_type = RoleName)]
    pub role: &'static str,
    /// The end of validity; null: no end.
    #[schema(required = true, format = DateTime)]
    pub valid_until: Option<String>,
    /// `active`, `pending` or `expired`.
    #[schema(value_type = BindingStatus)]
    pub status: &'static str,
    /// The binding's id (not for an agent's clients).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binding: Option<String>,
    /// Whether the session acts through it (not for an agent's clients).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<bool>,
    /// An agent's client: the groups the agreement covers.
    #[schema(value_type = Option<Vec<GroupName>>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<Vec<&'static str>>,
    /// Present when the end is within 30 days.
    #[schema(minimum = 0)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<i64>,
}

/// `{"binding", "status"}`: a binding was made. The handlers serialize this type.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BindingCreated {
    /// The binding's id.
    pub binding: String,
    /// Its status (`pending` until both sides confirm).
    #[schema(value_type = BindingStatus)]
    pub status: &'static str,
}

/// A binding in a list (`GET /account/personnel`, `GET /account/authorizations`, an update).
/// The handlers serialize this type.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BindingItem {
    /// The binding's id.
    pub binding: String,
    /// The person's ID number.
    pub person: String,
    /// The person's name (personnel lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The enterprise's taxpayer id.
    pub enterprise: String,
    /// The enterprise's name (the person's list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enterprise_name: Option<String>,
    /// The role.
    #[schema(value_type = RoleName)]
    pub role: &'static str,
    /// The groups; null: the role's defaults.
    #[schema(required = true, value_type = Option<Vec<GroupName>>)]
    pub permissions: Option<Vec<&'static str>>,
    /// `permissions` is null.
    pub uses_role_defaults: bool,
    /// The start of validity.
    #[schema(format = DateTime)]
    pub valid_from: String,
    /// The end of validity; null: no end (长期).
    #[schema(required = true, format = DateTime)]
    pub valid_until: Option<String>,
    /// The enterprise confirmed.
    pub enterprise_confirmed: bool,
    /// The person confirmed.
    pub person_confirmed: bool,
    /// The status.
    #[schema(value_type = BindingStatus)]
    pub status: &'static str,
    /// The last change.
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// Who made it (an ID number, `import`, `system`).
    pub updated_by: String,
    /// Present when the end is within 30 days.
    #[schema(minimum = 0)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<i64>,
    /// `GET /account/personnel` only: the groups the binding gives once active.
    #[schema(value_type = Option<Vec<GroupName>>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<&'static str>>,
}

/// `GET /account/overview`: what a page should show, decided by the policies. The handler
/// serializes this type.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Overview {
    /// Each account-centre action and whether the policies allow it now.
    pub actions: BTreeMap<&'static str, bool>,
    /// The permission groups the identity may use now.
    #[schema(value_type = Vec<GroupName>)]
    pub groups: Vec<&'static str>,
    /// The enterprise acted for.
    #[schema(required = true)]
    pub enterprise_name: Option<String>,
    /// The agency (agent entry).
    #[schema(required = true)]
    pub agency_name: Option<String>,
    /// The binding in use (absent: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binding: Option<OverviewBinding>,
    /// The agency agreement in use, for an agent acting for a client (absent: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agreement: Option<OverviewAgreement>,
    /// The person's number, masked; null: none.
    #[schema(required = true)]
    pub phone_masked: Option<String>,
    /// `[pages] home_url`.
    pub home_url: String,
}

/// The binding a session acts through.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OverviewBinding {
    /// Its id.
    pub binding: String,
    /// Its role.
    #[schema(value_type = RoleName)]
    pub role: &'static str,
    /// Its groups; null: the role's defaults.
    #[schema(required = true, value_type = Option<Vec<GroupName>>)]
    pub permissions: Option<Vec<&'static str>>,
    /// `permissions` is null.
    pub uses_role_defaults: bool,
    /// The end of validity; null: no end.
    #[schema(required = true, format = DateTime)]
    pub valid_until: Option<String>,
}

/// The agency agreement an agent acts through.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OverviewAgreement {
    /// The client's taxpayer id.
    pub client: String,
    /// The groups the agreement covers.
    #[schema(value_type = Vec<GroupName>)]
    pub scope: Vec<&'static str>,
    /// The end of validity; null: no end.
    #[schema(required = true, format = DateTime)]
    pub valid_until: Option<String>,
}

/// One of the person's own sessions (安全中心). The handler serializes this type.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OwnSession {
    /// The session's id (not its token).
    pub id: String,
    /// The session of this request.
    pub current: bool,
    /// Its entry.
    #[schema(value_type = EntryName)]
    pub entry: &'static str,
    /// The enterprise acted for.
    #[schema(required = true)]
    pub enterprise: Option<String>,
    /// The agency (agent entry).
    #[schema(required = true)]
    pub agency: Option<String>,
    /// The role.
    #[schema(required = true, value_type = Option<RoleName>)]
    pub role: Option<&'static str>,
    /// Its second factor.
    #[schema(value_type = FactorName)]
    pub mfa: &'static str,
    /// The client's network, masked (`203.0.113.*`).
    pub client_addr: String,
    /// The browser, as its `User-Agent` names it.
    pub user_agent: String,
    /// When it started.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it was last used.
    #[schema(format = DateTime)]
    pub last_seen_at: String,
}

/// A live session acting for the enterprise (personnel side). The handler serializes this type.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PersonnelSession {
    /// The session's id.
    pub id: String,
    /// The session of this request.
    pub current: bool,
    /// The person's ID number, masked.
    #[schema(required = true)]
    pub person: Option<String>,
    /// The person's name.
    #[schema(required = true)]
    pub name: Option<String>,
    /// Its entry.
    #[schema(value_type = EntryName)]
    pub entry: &'static str,
    /// The role.
    #[schema(required = true, value_type = Option<RoleName>)]
    pub role: Option<&'static str>,
    /// When it started.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it was last used.
    #[schema(format = DateTime)]
    pub last_seen_at: String,
}
