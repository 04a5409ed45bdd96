//! The one place where errors become HTTP responses (CONTRACT section 3): every error body is
//! `{"error": {"code", "message" (zh), "message_en", "field"?}}`. Details go to the log, never to
//! the client.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

use taxgate_proxy::body::{Body, full};

/// The gateway's own error codes. Policy denials carry the code of the deciding forbid's
/// `@reason` and its message from `policies/reasons.toml` instead ([`ApiError::Denied`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 400: the body or a field of it is not valid.
    InvalidInput,
    /// 401: wrong account or password.
    InvalidCredentials,
    /// 423: too many wrong passwords; the account is locked for a while.
    AccountLocked,
    /// 404: no route serves the path (nothing is proxied).
    RouteNotFound,
    /// 404: no such resource among the gateway's own.
    NotFound,
    /// 405: the route or endpoint does not take this method.
    MethodNotAllowed,
    /// 401: the request carries no session.
    LoginRequired,
    /// 401: the session has ended; log in again.
    SessionExpired,
    /// 403: the identity lacks the permission.
    NotPermitted,
    /// 403: a POST from another site.
    CrossSite,
    /// 429: too many requests from this address.
    RateLimited,
    /// 413: the body is larger than the endpoint reads.
    PayloadTooLarge,
    /// 502: the tax backend could not be reached.
    UpstreamUnavailable,
    /// 504: the tax backend did not answer in time.
    UpstreamTimeout,
    /// 408: the client was still sending its request body when the upstream's time ran out.
    ClientBodyTimeout,
    /// 503: the store cannot be reached (or the audit log cannot record); nothing was forwarded.
    StoreUnavailable,
    /// 503: no policy set is loaded; nothing was forwarded.
    PolicyUnavailable,
    /// 500: a failure of the gateway itself; the details are in the log.
    Internal,
    /// 401: the login step has expired or was used up.
    ChallengeExpired,
    /// 401: the SMS code is wrong or has expired.
    InvalidCode,
    /// 429: a code went to this number moments ago.
    SmsTooFrequent,
    /// 429: this number has had the most codes allowed today.
    SmsDailyLimit,
    /// 503: the SMS provider could not send.
    SmsUnavailable,
    /// 409: the account has no phone number (its new holder may have taken it).
    PhoneMissing,
    /// 409: the face scan in the app has not finished.
    FacePending,
    /// 401: the face scan failed.
    FaceFailed,
    /// 401: a callback's signature is bad or stale.
    BadSignature,
    /// 404: a face-scan code that is unknown or used.
    UnknownNonce,
    /// 422: the person scanned is not the person logging in.
    IdentityMismatch,
    /// 400: the new password breaks a password rule.
    WeakPassword,
    /// 404: the person has no natural-person account yet.
    PersonNotRegistered,
    /// 409: the person already holds this role in the enterprise.
    AlreadyLinked,
    /// 409: the binding or authorization is already confirmed.
    AlreadyConfirmed,
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 400: a path the proxy refuses (dot segments, encoded separators, controls) or one that
    /// another reading would route elsewhere.
    InvalidPath,
    /// 400: the request carries two different session tokens.
    AmbiguousSession,
    // phone recovery and face (issue 15 points 2, 7)
    /// 403: the face scan must pass first (phone recovery).
    FaceRequired,
    // external authorization (issue 18, CONTRACT section 9)
    /// The caller of the external-authorization listener did not send the configured
    /// `x-taxgate-ext-token`.
    ExtTokenRequired,
    /// An AuthZEN subject whose assertion does not verify.
    InvalidAssertion,
}

impl Code {
    /// Every code, in declaration order: the `code` enum of `/openapi.json`'s error schema is
    /// built from this list (a unit test below keeps it complete).
    pub const ALL: [Code; 39] = [
        Code::InvalidInput,
        Code::InvalidCredentials,
        Code::AccountLocked,
        Code::RouteNotFound,
        Code::NotFound,
        Code::MethodNotAllowed,
        Code::LoginRequired,
        Code::SessionExpired,
        Code::NotPermitted,
        Code::CrossSite,
        Code::RateLimited,
        Code::PayloadTooLarge,
        Code::UpstreamUnavailable,
        Code::UpstreamTimeout,
        Code::ClientBodyTimeout,
        Code::StoreUnavailable,
        Code::PolicyUnavailable,
        Code::Internal,
        Code::ChallengeExpired,
        Code::InvalidCode,
        Code::SmsTooFrequent,
        Code::SmsDailyLimit,
        Code::SmsUnavailable,
        Code::PhoneMissing,
        Code::FacePending,
        Code::FaceFailed,
        Code::BadSignature,
        Code::UnknownNonce,
        Code::IdentityMismatch,
        Code::WeakPassword,
        Code::PersonNotRegistered,
        Code::AlreadyLinked,
        Code::AlreadyConfirmed,
        Code::UnsupportedMediaType,
        Code::InvalidPath,
        Code::AmbiguousSession,
        Code::FaceRequired,
        Code::ExtTokenRequired,
        Code::InvalidAssertion,
    ];

    /// The snake_case `code` of the error body.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidInput => "invalid_input",
            Code::InvalidCredentials => "invalid_credentials",
            Code::AccountLocked => "account_locked",
            Code::RouteNotFound => "route_not_found",
            Code::NotFound => "not_found",
            Code::MethodNotAllowed => "method_not_allowed",
            Code::LoginRequired => "login_required",
            Code::SessionExpired => "session_expired",
            Code::NotPermitted => "not_permitted",
            Code::CrossSite => "cross_site",
            Code::RateLimited => "rate_limited",
            Code::PayloadTooLarge => "payload_too_large",
            Code::UpstreamUnavailable => "upstream_unavailable",
            Code::UpstreamTimeout => "upstream_timeout",
            Code::ClientBodyTimeout => "client_body_timeout",
            Code::StoreUnavailable => "store_unavailable",
            Code::PolicyUnavailable => "policy_unavailable",
            Code::Internal => "internal_error",
            Code::ChallengeExpired => "challenge_expired",
            Code::InvalidCode => "invalid_code",
            Code::SmsTooFrequent => "sms_too_frequent",
            Code::SmsDailyLimit => "sms_daily_limit",
            Code::SmsUnavailable => "sms_unavailable",
            Code::PhoneMissing => "phone_missing",
            Code::FacePending => "face_pending",
            Code::FaceFailed => "face_failed",
            Code::BadSignature => "bad_signature",
            Code::UnknownNonce => "unknown_nonce",
            Code::IdentityMismatch => "identity_mismatch",
            Code::WeakPassword => "weak_password",
            Code::PersonNotRegistered => "person_not_registered",
            Code::AlreadyLinked => "already_linked",
            Code::AlreadyConfirmed => "already_confirmed",
            Code::UnsupportedMediaType => "unsupported_media_type",
            Code::InvalidPath => "invalid_path",
            Code::AmbiguousSession => "ambiguous_session",
            Code::FaceRequired => "face_required",
            Code::ExtTokenRequired => "ext_token_required",
            Code::InvalidAssertion => "invalid_assertion",
        }
    }

    /// The HTTP status the code is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            Code::InvalidInput
            | Code::WeakPassword
            | Code::InvalidPath
            | Code::AmbiguousSession => StatusCode::BAD_REQUEST,
            Code::InvalidCredentials
            | Code::LoginRequired
            | Code::SessionExpired
            | Code::ChallengeExpired
            | Code::InvalidCode
            | Code::FaceFailed
            | Code::BadSignature
            | Code::ExtTokenRequired
            | Code::InvalidAssertion => StatusCode::UNAUTHORIZED,
            Code::AccountLocked => StatusCode::LOCKED,
            Code::RouteNotFound
            | Code::NotFound
            | Code::UnknownNonce
            | Code::PersonNotRegistered => StatusCode::NOT_FOUND,
            Code::PhoneMissing
            | Code::FacePending
            | Code::AlreadyLinked
            | Code::AlreadyConfirmed => StatusCode::CONFLICT,
            Code::IdentityMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            Code::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Code::NotPermitted | Code::CrossSite | Code::FaceRequired => StatusCode::FORBIDDEN,
            Code::RateLimited | Code::SmsTooFrequent | Code::SmsDailyLimit => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            Code::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Code::ClientBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Code::StoreUnavailable | Code::PolicyUnavailable | Code::SmsUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// (zh, en)
    pub fn messages(self) -> (&'static str, &'static str) {
        match self {
            Code::InvalidInput => ("输入信息有误,请检查后重新提交", "the input is not valid"),
            Code::InvalidPath => (
                "请求地址不合法",
                "the request path is not valid (dot segments, encoded separators or controls are refused)",
            ),
            Code::AmbiguousSession => (
                "请求携带了多个不同的登录凭证",
                "the request carries two different session tokens",
            ),
            Code::InvalidCredentials => (
                "账号或密码错误,请重新输入",
                "the account or password is wrong",
            ),
            Code::AccountLocked => (
                "密码错误次数过多,账号已锁定,请稍后再试",
                "too many wrong passwords: the account is locked for a while",
            ),
            Code::RouteNotFound => ("请求的业务地址不存在", "no route serves this path"),
            Code::NotFound => ("请求的资源不存在", "not found"),
            Code::MethodNotAllowed => ("不支持的请求方法", "method not allowed"),
            Code::LoginRequired => ("请先登录", "please log in first"),
            Code::SessionExpired => (
                "登录已超时,请重新登录",
                "the session has expired: please log in again",
            ),
            Code::NotPermitted => (
                "您没有办理该业务的权限,请联系企业的法定代表人、财务负责人或管理员授权",
                "you lack the permission for this business; ask the enterprise's legal representative, finance manager or administrator",
            ),
            Code::CrossSite => ("请求来源不被允许", "cross-site requests are refused"),
            Code::RateLimited => ("请求过于频繁,请稍后再试", "too many requests: slow down"),
            Code::PayloadTooLarge => ("请求内容过大", "the request body is too large"),
            Code::UpstreamUnavailable => (
                "业务系统暂时无法访问,请稍后再试",
                "the tax backend is unavailable",
            ),
            Code::UpstreamTimeout => (
                "业务系统响应超时,请稍后再试",
                "the tax backend did not answer in time",
            ),
            Code::ClientBodyTimeout => (
                "请求内容上传过慢,请检查网络后重试",
                "the request body arrived too slowly; check the connection and try again",
            ),
            Code::StoreUnavailable => (
                "系统繁忙,请稍后再试",
                "the gateway's store is unavailable: nothing was forwarded",
            ),
            Code::PolicyUnavailable => (
                "系统繁忙,请稍后再试",
                "no policy set is loaded: nothing was forwarded",
            ),
            Code::Internal => ("系统内部错误,请稍后再试", "internal error"),
            Code::ChallengeExpired => (
                "验证已超时或已失效,请重新登录",
                "the login step has expired or was used up: start again",
            ),
            Code::InvalidCode => (
                "短信验证码错误或已过期",
                "the SMS code is wrong or has expired",
            ),
            Code::SmsTooFrequent => (
                "验证码发送过于频繁,请稍后再试",
                "a code was sent to this number moments ago: wait before asking again",
            ),
            Code::SmsDailyLimit => (
                "该手机号码今日获取验证码次数已达上限",
                "this number has received the most codes allowed today",
            ),
            Code::SmsUnavailable => (
                "短信服务暂时不可用,请稍后再试或使用扫码验证",
                "the SMS service is unavailable: try again or use the face scan",
            ),
            Code::PhoneMissing => (
                "该账号未绑定手机号码(可能已被他人验证使用),请使用扫码验证或找回手机号码",
                "no phone number on this account (it may have been taken by its new holder): use the face scan or recover the number",
            ),
            Code::FacePending => ("等待手机端扫码验证", "waiting for the face scan in the app"),
            Code::FaceFailed => (
                "人脸识别未通过,请重新登录",
                "the face scan failed: start again",
            ),
            Code::BadSignature => ("签名校验失败", "bad or stale signature"),
            Code::UnknownNonce => ("二维码无效或已使用", "unknown or used face-scan code"),
            Code::IdentityMismatch => (
                "扫码人与登录人身份不一致",
                "the person scanned is not the person logging in",
            ),
            Code::WeakPassword => (
                "密码须为8-20位,包含大写字母、小写字母、数字、符号中的至少三种,且不能包含身份证号码或用户名",
                "a password has 8-20 characters mixing at least three of upper case, lower case, digits and symbols, and does not contain the ID number or username",
            ),
            Code::PersonNotRegistered => (
                "该办税人员尚未注册,请其先注册自然人账户",
                "this person has no natural-person account yet: they must register first",
            ),
            Code::AlreadyLinked => (
                "该人员已与本企业关联此身份",
                "this person already holds this role in the enterprise",
            ),
            Code::AlreadyConfirmed => ("该授权已确认", "already confirmed"),
            Code::UnsupportedMediaType => (
                "请求格式错误,应为 JSON",
                "the request body must be JSON (Content-Type: application/json)",
            ),
            Code::FaceRequired => (
                "请先在手机端完成人脸识别验证",
                "the face scan in the app must pass first",
            ),
            Code::ExtTokenRequired => (
                "外部授权调用方未提供有效的令牌",
                "the caller must send the configured x-taxgate-ext-token",
            ),
            Code::InvalidAssertion => (
                "身份断言无效或已过期",
                "the identity assertion does not verify or has expired",
            ),
        }
    }
}

/// An error answer to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// One of the gateway's own codes, optionally naming the input field at fault.
    Gateway {
        /// The code, which gives the status and the messages.
        code: Code,
        /// The input field at fault, if one is.
        field: Option<String>,
    },
    /// A code whose status and messages come from elsewhere: a policy denial (403 with the
    /// `@reason` code and its reasons.toml messages) or a flow-specific error (e.g. 429
    /// `sms_too_frequent`).
    Custom {
        /// The HTTP status.
        status: StatusCode,
        /// The `code` of the body.
        code: String,
        /// The message in Chinese.
        message: String,
        /// The message in English.
        message_en: String,
    },
    /// A policy denial that a fresh second factor lifts (CONTRACT section 10): 403 with
    /// `"step_up": {"factors": [...], "max_age_secs": N}` in the body.
    StepUp {
        /// The `code` of the body (the forbid's `@reason`).
        code: String,
        /// The message in Chinese.
        message: String,
        /// The message in English.
        message_en: String,
        /// The second factors a step-up may use.
        factors: &'static [&'static str],
        /// How old the factor may be.
        max_age_secs: u64,
    },
    /// One of the gateway's own codes with the hints of CONTRACT section 13.
    Hinted {
        /// The code, which gives the status and the messages.
        code: Code,
        /// What the client may do next.
        hints: Hints,
    },
}

/// What a client may do next (CONTRACT section 13): `attempts_left` on a 401
/// `invalid_credentials` / `invalid_code`, `locked_for_secs` on a 423, `retry_after_secs` (and
/// the `Retry-After` header) on a 429. Every 429 carries a retry hint: 60 s when none is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hints {
    /// Wrong tries left: passwords before the account locks, SMS codes before the challenge
    /// ends.
    pub attempts_left: Option<u32>,
    /// Seconds until a locked account opens again.
    pub locked_for_secs: Option<u64>,
    /// Seconds to wait before trying again; also sent as `Retry-After`.
    pub retry_after_secs: Option<u64>,
}

/// The retry hint of a 429 that names none.
const DEFAULT_RETRY_AFTER_SECS: u64 = 60;

impl From<Code> for ApiError {
    fn from(code: Code) -> Self {
        ApiError::Gateway { code, field: None }
    }
}

impl ApiError {
    /// `code`, naming the input field at fault (`field` in the body).
    pub fn field(code: Code, field: impl Into<String>) -> Self {
        ApiError::Gateway {
            code,
            field: Some(field.into()),
        }
    }

    /// `code` with what the client may do next.
    pub fn hinted(code: Code, hints: Hints) -> Self {
        ApiError::Hinted { code, hints }
    }

    /// One of the gateway's codes with messages that say more than its default ones (which
    /// password rule failed).
    pub fn explained(code: Code, message: String, message_en: String) -> Self {
        ApiError::Custom {
            status: code.status(),
            code: code.as_str().to_string(),
            message,
            message_en,
        }
    }

    /// A policy denial: 403 with the reason's messages.
    pub fn denied(code: &str, message: &str, message_en: &str) -> Self {
        ApiError::Custom {
            status: StatusCode::FORBIDDEN,
            code: code.to_string(),
            message: message.to_string(),
            message_en: message_en.to_string(),
        }
    }

    /// A denial lifted by a step-up: 403 with the factors and the factor's maximum age.
    pub fn step_up(
        code: &str,
        message: &str,
        message_en: &str,
        factors: &'static [&'static str],
        max_age_secs: u64,
    ) -> Self {
        ApiError::StepUp {
            code: code.to_string(),
            message: message.to_string(),
            message_en: message_en.to_string(),
            factors,
            max_age_secs,
        }
    }

    /// The same error with another status (a denial that is a conflict with existing state).
    pub fn with_status(self, status: StatusCode) -> Self {
        match self {
            ApiError::Custom {
                code,
                message,
                message_en,
                ..
            } => ApiError::Custom {
                status,
                code,
                message,
                message_en,
            },
            other => other,
        }
    }

    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Gateway { code, .. } | ApiError::Hinted { code, .. } => code.status(),
            ApiError::Custom { status, .. } => *status,
            ApiError::StepUp { .. } => StatusCode::FORBIDDEN,
        }
    }

    /// The `code` of the error body.
    pub fn code(&self) -> &str {
        match self {
            ApiError::Gateway { code, .. } | ApiError::Hinted { code, .. } => code.as_str(),
            ApiError::Custom { code, .. } | ApiError::StepUp { code, .. } => code,
        }
    }

    /// The answer: the contract's error body, never cached; a 429 carries `Retry-After` (60 s when
    /// no hint names one).
    pub fn into_response(self) -> Response<Body> {
        #[derive(Serialize)]
        struct Inner<'a> {
            code: &'a str,
            message: &'a str,
            message_en: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            field: Option<&'a str>,
            #[serde(flatten)]
            hints: HintFields,
            #[serde(skip_serializing_if = "Option::is_none")]
            step_up: Option<StepUpFields>,
        }
        #[derive(Serialize)]
        struct StepUpFields {
            factors: &'static [&'static str],
            max_age_secs: u64,
        }
        #[derive(Serialize, Default)]
        struct HintFields {
            #[serde(skip_serializing_if = "Option::is_none")]
            attempts_left: Option<u32>,
            #[serde(skip_serializing_if = "Option::is_none")]
            locked_for_secs: Option<u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            retry_after_secs: Option<u64>,
        }
        #[derive(Serialize)]
        struct Outer<'a> {
            error: Inner<'a>,
        }
        let status = self.status();
        let mut hints = match &self {
            ApiError::Hinted { hints, .. } => *hints,
            _ => Hints::default(),
        };
        if status == StatusCode::TOO_MANY_REQUESTS && hints.retry_after_secs.is_none() {
            hints.retry_after_secs = Some(DEFAULT_RETRY_AFTER_SECS);
        }
        let hint_fields = HintFields {
            attempts_left: hints.attempts_left,
            locked_for_secs: hints.locked_for_secs,
            retry_after_secs: hints.retry_after_secs,
        };
        let inner = match &self {
            ApiError::Gateway { code, field } => {
                let (zh, en) = code.messages();
                Inner {
                    code: code.as_str(),
                    message: zh,
                    message_en: en,
                    field: field.as_deref(),
                    hints: hint_fields,
                    step_up: None,
                }
            }
            ApiError::Hinted { code, .. } => {
                let (zh, en) = code.messages();
                Inner {
                    code: code.as_str(),
                    message: zh,
                    message_en: en,
                    field: None,
                    hints: hint_fields,
                    step_up: None,
                }
            }
            ApiError::Custom {
                code,
                message,
                message_en,
                ..
            } => Inner {
                code,
                message,
                message_en,
                field: None,
                hints: hint_fields,
                step_up: None,
            },
            ApiError::StepUp {
                code,
                message,
                message_en,
                factors,
                max_age_secs,
            } => Inner {
                code,
                message,
                message_en,
                field: None,
                hints: hint_fields,
                step_up: Some(StepUpFields {
                    factors,
                    max_age_secs: *max_age_secs,
                }),
            },
        };
        let body = serde_json::to_vec(&Outer { error: inner }).unwrap_or_default();
        let mut resp = Response::new(full(Bytes::from(body)));
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(secs) = hints.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

#[cfg(test)]
#[expect(clippy::indexing_slicing, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// Every code with the status the contract gives it.
    const CONTRACT_CODES: [(Code, u16); 38] = [
        (Code::InvalidInput, 400),
        (Code::InvalidCredentials, 401),
        (Code::AccountLocked, 423),
        (Code::RouteNotFound, 404),
        (Code::NotFound, 404),
        (Code::MethodNotAllowed, 405),
        (Code::LoginRequired, 401),
        (Code::SessionExpired, 401),
        (Code::NotPermitted, 403),
        (Code::CrossSite, 403),
        (Code::RateLimited, 429),
        (Code::PayloadTooLarge, 413),
        (Code::UpstreamUnavailable, 502),
        (Code::UpstreamTimeout, 504),
        (Code::StoreUnavailable, 503),
        (Code::PolicyUnavailable, 503),
        (Code::Internal, 500),
        (Code::ChallengeExpired, 401),
        (Code::InvalidCode, 401),
        (Code::SmsTooFrequent, 429),
        (Code::SmsDailyLimit, 429),
        (Code::SmsUnavailable, 503),
        (Code::PhoneMissing, 409),
        (Code::FacePending, 409),
        (Code::FaceFailed, 401),
        (Code::BadSignature, 401),
        (Code::UnknownNonce, 404),
        (Code::IdentityMismatch, 422),
        (Code::WeakPassword, 400),
        (Code::PersonNotRegistered, 404),
        (Code::AlreadyLinked, 409),
        (Code::AlreadyConfirmed, 409),
        (Code::UnsupportedMediaType, 415),
        (Code::InvalidPath, 400),
        (Code::AmbiguousSession, 400),
        (Code::FaceRequired, 403),
        (Code::ExtTokenRequired, 401),
        (Code::InvalidAssertion, 401),
    ];

    /// `Code::ALL` holds every variant of `Code` once: the variants are read from this file's
    /// source, so one added to the enum and not to the list fails here.
    #[test]
    fn all_lists_every_code_once() {
        let source = include_str!("error.rs");
        let body = source
            .split("pub enum Code {")
            .nth(1)
            .and_then(|rest| rest.split("\n}").next())
            .expect("the Code enum");
        let declared: Vec<&str> = body
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("//") && l.ends_with(','))
            .map(|l| l.trim_end_matches(','))
            .collect();
        let listed: Vec<String> = Code::ALL.iter().map(|c| format!("{c:?}")).collect();
        assert_eq!(
            listed, declared,
            "Code::ALL must list every variant, in order"
        );
        let names: std::collections::BTreeSet<_> = Code::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), Code::ALL.len(), "two codes share a name");
    }

    #[test]
    fn every_code_has_its_contract_status() {
        let expected = CONTRACT_CODES;
        for (code, status) in expected {
            assert_eq!(code.status().as_u16(), status, "{code:?}");
            let (zh, en) = code.messages();
            assert!(!zh.is_empty() && !en.is_empty());
        }
    }

    /// docs/api.md lists every code with its status, and every reason of `reasons.toml`: a
    /// code added here without its line there fails.
    #[test]
    fn the_api_reference_names_every_code_with_its_status() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let doc = std::fs::read_to_string(root.join("docs/api.md")).unwrap();
        let table = doc
            .split("## Error codes")
            .nth(1)
            .expect("an Error codes section");
        for (code, status) in CONTRACT_CODES {
            let name = format!("`{}`", code.as_str());
            let row = table
                .lines()
                .find(|l| l.starts_with('|') && l.contains(&name));
            assert!(row.is_some(), "docs/api.md: no row for {name}");
            let row = row.unwrap_or_default();
            assert!(
                row.contains(&format!("| {status} |")),
                "docs/api.md: {name} should be listed with {status}: {row}"
            );
        }
        let reasons: toml::Table = std::fs::read_to_string(root.join("policies/reasons.toml"))
            .unwrap()
            .parse()
            .unwrap();
        for reason in reasons.keys() {
            assert!(
                table.contains(&format!("`{reason}`")),
                "docs/api.md lacks `{reason}`"
            );
        }
    }

    /// The codes the contract does not list, with their status (the README lists them).
    #[test]
    fn extra_codes_have_their_status() {
        let extra = [(Code::ClientBodyTimeout, 408, "client_body_timeout")];
        for (code, status, name) in extra.iter().copied() {
            assert_eq!(code.status().as_u16(), status, "{code:?}");
            assert_eq!(code.as_str(), name);
            let (zh, en) = code.messages();
            assert!(!zh.is_empty() && !en.is_empty());
        }
    }

    /// One message catalogue per code: the policies' `reasons.toml` holds only the reasons of
    /// forbid policies, never one of the gateway's own codes (whose text is here).
    #[test]
    fn no_gateway_code_has_a_second_text_in_reasons_toml() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/reasons.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let table: toml::Table = text.parse().unwrap();
        let codes = CONTRACT_CODES;
        for (code, _) in codes {
            assert!(
                !table.contains_key(code.as_str()),
                "`{}` has a message in reasons.toml and in error.rs",
                code.as_str()
            );
        }
    }

    #[tokio::test]
    async fn body_has_contract_shape() {
        let resp = ApiError::field(Code::InvalidInput, "taxpayer_id").into_response();
        assert_eq!(resp.status(), 400);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "application/json; charset=utf-8"
        );
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["error"]["code"], "invalid_input");
        assert_eq!(v["error"]["field"], "taxpayer_id");
        assert!(v["error"]["message"].as_str().unwrap().contains("输入"));
        assert!(v["error"]["message_en"].is_string());
    }

    #[tokio::test]
    async fn hints_go_in_the_body_and_every_429_has_retry_after() {
        let hints = Hints {
            attempts_left: Some(3),
            ..Hints::default()
        };
        let resp = ApiError::hinted(Code::InvalidCredentials, hints).into_response();
        assert_eq!(resp.status(), 401);
        assert!(resp.headers().get(header::RETRY_AFTER).is_none());
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["error"]["code"], "invalid_credentials");
        assert_eq!(v["error"]["attempts_left"], 3);
        assert!(v["error"].get("locked_for_secs").is_none());

        let hints = Hints {
            retry_after_secs: Some(42),
            ..Hints::default()
        };
        let resp = ApiError::hinted(Code::SmsTooFrequent, hints).into_response();
        assert_eq!(resp.headers()[header::RETRY_AFTER], "42");
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["error"]["retry_after_secs"], 42);

        let resp = ApiError::from(Code::RateLimited).into_response();
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "60");
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["error"]["retry_after_secs"], 60);
    }

    #[tokio::test]
    async fn denial_carries_policy_reason() {
        let resp = ApiError::denied("binding_expired", "已过期", "expired").into_response();
        assert_eq!(resp.status(), 403);
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["error"]["code"], "binding_expired");
        assert_eq!(v["error"]["message"], "已过期");
        assert!(v["error"].get("field").is_none());
        assert!(v["error"].get("step_up").is_none());
    }

    #[tokio::test]
    async fn step_up_denial_names_factors_and_max_age() {
        let resp = ApiError::step_up(
            "step_up_required",
            "请验证",
            "verify",
            &["sms", "face"],
            600,
        )
        .into_response();
        assert_eq!(resp.status(), 403);
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["error"]["code"], "step_up_required");
        assert_eq!(v["error"]["message"], "请验证");
        assert_eq!(v["error"]["message_en"], "verify");
        assert_eq!(
            v["error"]["step_up"],
            serde_json::json!({"factors": ["sms", "face"], "max_age_secs": 600})
        );
    }
}
