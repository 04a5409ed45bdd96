//! Login fixtures: the people and enterprises of the test seed, and a whole SMS login against
//! any gateway whose file outbox the test can read.

use std::net::SocketAddr;
use std::path::Path;

use crate::client::{Answer, assert_ok, post_json};

pub const ENT_A: &str = "91140100MA0K123488";
pub const ENT_B: &str = "91140100MA0K70011E";
pub const AGENCY: &str = "91140100MA0K7002X6";
/// 王芳: legal representative of A (active), phone 13800138000.
pub const WANG: &str = "140105199001011238";
pub const WANG_PW: &str = "Chang3-Me!now";
/// 李雷: tax handler of A, not yet confirmed by himself (pending).
pub const LI: &str = "140105198503150022";
pub const LI_PW: &str = "Li-Lei-2026!";
/// 张伟: invoice clerk of A whose binding ended in 2024 (expired).
pub const ZHANG: &str = "140105199207080036";
pub const ZHANG_PW: &str = "Zhang-Wei-99";
/// 赵敏: migrated user (no password in the seed), finance manager of A and tax handler of B.
pub const ZHAO: &str = "110101198001010045";
/// 陈静: agency staff; the agreement with client A covers declare and query.
pub const CHEN: &str = "140102197511110051";
pub const CHEN_PW: &str = "Chen-Jing-01";
/// 孙丽: tax handler of A without a phone number.
pub const SUN: &str = "140105199502200061";
pub const SUN_PW: &str = "Sun-Li-2026!";
/// 周杰: registered, bound to nothing.
pub const ZHOU: &str = "310101198808080076";
pub const ZHOU_PW: &str = "Zhou-Jie-2026";
pub const ENT_A_LEGACY_PW: &str = "Old-Ent-Pass1";

pub fn seed_json() -> serde_json::Value {
    serde_json::json!({
        "persons": [
            {"id_number": WANG, "name": "王芳", "username": "wangfang", "phone": "13800138000", "password": WANG_PW},
            {"id_number": LI, "name": "李雷", "phone": "13900000001", "password": LI_PW},
            {"id_number": ZHANG, "name": "张伟", "phone": "13900000002", "password": ZHANG_PW},
            {"id_number": ZHAO, "name": "赵敏", "phone": "13900000003"},
            {"id_number": CHEN, "name": "陈静", "phone": "13900000004", "password": CHEN_PW},
            {"id_number": SUN, "name": "孙丽", "password": SUN_PW},
            {"id_number": ZHOU, "name": "周杰", "phone": "13900000006", "password": ZHOU_PW}
        ],
        "enterprises": [
            {"taxpayer_id": ENT_A, "name": "太原示例科技有限公司", "legacy_password": ENT_A_LEGACY_PW, "phone": "13900139000", "agency": false},
            {"taxpayer_id": ENT_B, "name": "晋阳贸易有限公司", "agency": false},
            {"taxpayer_id": AGENCY, "name": "山西诚信税务师事务所", "agency": true}
        ],
        "bindings": [
            {"person": WANG, "enterprise": ENT_A, "role": "legal_representative",
             "valid_from": "2023-01-01T00:00:00+08:00", "enterprise_confirmed": true, "person_confirmed": true},
            {"person": LI, "enterprise": ENT_A, "role": "tax_handler",
             "enterprise_confirmed": true, "person_confirmed": false},
            {"person": ZHANG, "enterprise": ENT_A, "role": "invoice_clerk",
             "valid_from": "2023-01-01T00:00:00+08:00", "valid_until": "2024-12-31T23:59:59+08:00",
             "enterprise_confirmed": true, "person_confirmed": true},
            {"person": ZHAO, "enterprise": ENT_A, "role": "finance_manager",
             "enterprise_confirmed": true, "person_confirmed": true},
            {"person": ZHAO, "enterprise": ENT_B, "role": "tax_handler",
             "enterprise_confirmed": true, "person_confirmed": true},
            {"person": SUN, "enterprise": ENT_A, "role": "tax_handler",
             "enterprise_confirmed": true, "person_confirmed": true}
        ],
        "agency_agreements": [
            {"agency": AGENCY, "client": ENT_A, "staff": [CHEN], "scope": ["declare", "query"],
             "valid_until": "2099-12-31T23:59:59+08:00", "client_confirmed": true}
        ]
    })
}

/// The `/auth/login` body for `account` entering as `entry` (with the enterprise, if any).
pub(crate) fn login_body(
    entry: &str,
    taxpayer_id: Option<&str>,
    account: &str,
    password: &str,
) -> serde_json::Value {
    let mut body = serde_json::json!({"entry": entry, "account": account, "password": password});
    if let Some(t) = taxpayer_id {
        body["taxpayer_id"] = t.into();
    }
    body
}

/// The session token set by a response's `Set-Cookie`.
pub fn session_token(a: &Answer) -> String {
    let cookie = a
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no Set-Cookie in {:?}", a.headers));
    cookie
        .split(';')
        .next()
        .and_then(|kv| kv.strip_prefix("taxgate_session="))
        .unwrap()
        .to_string()
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Every message in the file outbox `outbox`, oldest first (none before the first was sent).
pub(crate) fn outbox_messages(outbox: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(outbox)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The newest code the file outbox `outbox` sent to `phone`.
pub fn outbox_code(outbox: &Path, phone: &str) -> String {
    outbox_messages(outbox)
        .iter()
        .rev()
        .find(|m| m["to"] == phone && m["code"].is_string())
        .and_then(|m| m["code"].as_str().map(String::from))
        .unwrap_or_else(|| panic!("no code was sent to {phone}"))
}

/// A whole SMS login (`login` is the `/auth/login` body) against the gateway at `addr`, whose
/// file outbox is `outbox`; returns the session token.
pub async fn login_sms_at(
    addr: SocketAddr,
    outbox: &Path,
    login: serde_json::Value,
    phone: &str,
) -> String {
    login_sms_view_at(addr, outbox, login, phone).await.0
}

/// [`login_sms_at`], also returning the session view.
pub async fn login_sms_view_at(
    addr: SocketAddr,
    outbox: &Path,
    login: serde_json::Value,
    phone: &str,
) -> (String, serde_json::Value) {
    let post = |path, body| post_json(addr, path, body, None);
    let a = post("/auth/login", login).await;
    assert_ok(&a, "login");
    let challenge = a.json()["challenge"].as_str().unwrap().to_string();
    let sent = post(
        "/auth/sms/send",
        serde_json::json!({"challenge": challenge}),
    )
    .await;
    assert_ok(&sent, "sms send");
    let code = outbox_code(outbox, phone);
    let v = post(
        "/auth/sms/verify",
        serde_json::json!({"challenge": challenge, "code": code}),
    )
    .await;
    assert_ok(&v, "sms verify");
    (session_token(&v), v.json())
}
