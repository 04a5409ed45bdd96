//! `taxgate demo`: the whole gateway on one machine with nothing installed. SQLite under
//! `./demo-data/`, the repository's `policies/`, a sample e-tax backend on loopback that echoes
//! who called it, demo accounts for every entry and every refusal, SMS codes on the terminal.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

use taxgate_gateway::config::Config;
use taxgate_proxy::body::{Body, full};

/// Where the policies are: `./policies` when run from the repository, else the source tree this
/// binary was built from.
pub fn find_policies() -> Option<PathBuf> {
    let here = PathBuf::from("policies");
    if here.join("schema.cedarschema").exists() {
        return Some(here);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    built.join("schema.cedarschema").exists().then_some(built)
}

/// Start the sample backend on a free loopback port. It answers every path with the identity
/// the gateway vouched for, so a demo user sees what a backend receives.
pub async fn start_backend() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(backend))
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn backend(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let h = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let business = match req.uri().path().split('/').nth(2) {
        Some("declare") => "申报缴税 (declare)",
        Some("invoice") => "发票业务 (invoice)",
        Some("query") => "涉税查询 (query)",
        Some("tax-affairs") => "涉税办理 (tax affairs)",
        Some("personal") => "自然人业务 (personal tax)",
        _ => "sample e-tax backend",
    };
    let body = json!({
        "backend": "taxgate demo e-tax backend",
        "business": business,
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "called_by": {
            "person": h("x-taxgate-person"),
            "enterprise": h("x-taxgate-enterprise"),
            "role": h("x-taxgate-role"),
            "entry": h("x-taxgate-entry"),
            "agency": h("x-taxgate-agency"),
            "decision": h("x-taxgate-decision"),
        }
    });
    let mut r = Response::new(full(Bytes::from(
        serde_json::to_vec_pretty(&body).unwrap_or_default(),
    )));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    Ok(r)
}

/// The demo's config, as TOML text (printed paths are relative to the working directory).
pub fn config_text(
    port: u16,
    admin_port: u16,
    data: &Path,
    policies: &Path,
    backend: SocketAddr,
    legacy_until: &str,
    signing_key: &Path,
) -> String {
    let routes = [
        ("/api/declare", "declare"),
        ("/api/invoice", "invoice"),
        ("/api/query", "query"),
        ("/api/tax-affairs", "tax_affairs"),
        ("/api/personal", "personal_tax"),
    ]
    .iter()
    .map(|(prefix, action)| {
        format!("[[routes]]\nprefix = \"{prefix}\"\naction = \"{action}\"\nupstream = \"etax\"\n")
    })
    .collect::<Vec<_>>()
    .join("\n");
    format!(
        r#"[server]
listen = "127.0.0.1:{port}"
public_origin = "http://127.0.0.1:{port}"

[admin]
listen = "127.0.0.1:{admin_port}"

[store]
url = "sqlite://{db}"

[policies]
dir = "{policies}"
watch = true

[sms]
provider = "file"
path = "{outbox}"
echo = true

[face]
callback_secret = "demo-face-secret"

[session]
cookie_secure = false

[login]
legacy_login_until = "{legacy_until}"

[upstream_identity]
signing_key = "{signing_key}"

[[upstreams]]
name = "etax"
url = "http://{backend}"

{routes}"#,
        signing_key = signing_key.display(),
        db = data.join("taxgate.db").display(),
        policies = policies.display(),
        outbox = data.join("sms-outbox.jsonl").display(),
    )
}

/// The demo accounts: one for each entry and each refusal a newcomer should see.
pub const ACCOUNTS: &[(&str, &str, &str, &str, &str)] = &[
    // (entry, taxpayer id, account, password, what happens)
    (
        "企业业务 enterprise",
        "91140100MA0K123488",
        "wangfang",
        "Chang3-Me!now",
        "法定代表人 legal representative: everything, manages personnel",
    ),
    (
        "企业业务 enterprise",
        "91140100MA0K123488",
        "110101198001010045",
        "010045",
        "migrated 财务负责人: first login with the last 6 of the ID, must change the password; also 办税员 of 91140100MA0K70011E (switch)",
    ),
    (
        "企业业务 enterprise",
        "91140100MA0K123488",
        "140105199502200061",
        "Sun-Li-2026!",
        "办税员 tax handler without a phone: face scan only; no invoices",
    ),
    (
        "企业业务 enterprise",
        "91140100MA0K123488",
        "140105198503150022",
        "Li-Lei-2026!",
        "refused: binding_pending (confirm it in 自然人业务 first)",
    ),
    (
        "企业业务 enterprise",
        "91140100MA0K123488",
        "140105199207080036",
        "Zhang-Wei-99",
        "refused: binding_expired (王芳 extends it: 人员权限管理 → 修改)",
    ),
    (
        "企业业务 enterprise",
        "91140100MA0K123488",
        "310101198808080076",
        "Zhou-Jie-2026",
        "refused: not_linked (use 自然人业务 instead)",
    ),
    (
        "自然人业务 person",
        "",
        "310101198808080076",
        "Zhou-Jie-2026",
        "personal tax; 企业授权管理",
    ),
    (
        "自然人业务 person",
        "",
        "140105198503150022",
        "Li-Lei-2026!",
        "confirm the pending binding to 91140100MA0K123488",
    ),
    (
        "代理业务 agent",
        "91140100MA0K7002X6",
        "140102197511110051",
        "Chen-Jing-01",
        "agency staff: pick client 91140100MA0K123488 (declare, query only)",
    ),
    (
        "旧版企业登录 legacy",
        "91140100MA0K123488",
        "(enterprise password)",
        "Old-Ent-Pass1",
        "old enterprise-password login until the sunset; SMS to 139****9000",
    ),
];

/// The demo seed (the same people as [`ACCOUNTS`]).
pub fn seed() -> serde_json::Value {
    json!({
        "persons": [
            {"id_number": "140105199001011238", "name": "王芳", "username": "wangfang", "phone": "13800138000", "password": "Chang3-Me!now"},
            {"id_number": "140105198503150022", "name": "李雷", "phone": "13900000001", "password": "Li-Lei-2026!"},
            {"id_number": "140105199207080036", "name": "张伟", "phone": "13900000002", "password": "Zhang-Wei-99"},
            {"id_number": "110101198001010045", "name": "赵敏", "phone": "13900000003"},
            {"id_number": "140102197511110051", "name": "陈静", "phone": "13900000004", "password": "Chen-Jing-01"},
            {"id_number": "140105199502200061", "name": "孙丽", "password": "Sun-Li-2026!"},
            {"id_number": "310101198808080076", "name": "周杰", "phone": "13900000006", "password": "Zhou-Jie-2026"}
        ],
        "enterprises": [
            {"taxpayer_id": "91140100MA0K123488", "name": "太原示例科技有限公司", "legacy_password": "Old-Ent-Pass1", "phone": "13900139000", "agency": false},
            {"taxpayer_id": "91140100MA0K70011E", "name": "晋阳贸易有限公司", "agency": false},
            {"taxpayer_id": "91140100MA0K7002X6", "name": "山西诚信税务师事务所", "agency": true}
        ],
        "bindings": [
            {"person": "140105199001011238", "enterprise": "91140100MA0K123488", "role": "legal_representative", "enterprise_confirmed": true, "person_confirmed": true},
            {"person": "140105198503150022", "enterprise": "91140100MA0K123488", "role": "tax_handler", "enterprise_confirmed": true, "person_confirmed": false},
            {"person": "140105199207080036", "enterprise": "91140100MA0K123488", "role": "invoice_clerk", "valid_from": "2023-01-01T00:00:00+08:00", "valid_until": "2024-12-31T23:59:59+08:00", "enterprise_confirmed": true, "person_confirmed": true},
            {"person": "110101198001010045", "enterprise": "91140100MA0K123488", "role": "finance_manager", "enterprise_confirmed": true, "person_confirmed": true},
            {"person": "110101198001010045", "enterprise": "91140100MA0K70011E", "role": "tax_handler", "enterprise_confirmed": true, "person_confirmed": true},
            {"person": "140105199502200061", "enterprise": "91140100MA0K123488", "role": "tax_handler", "enterprise_confirmed": true, "person_confirmed": true}
        ],
        "agency_agreements": [
            {"agency": "91140100MA0K7002X6", "client": "91140100MA0K123488", "staff": ["140102197511110051"], "scope": ["declare", "query"], "valid_until": "2099-12-31T23:59:59+08:00", "client_confirmed": true}
        ]
    })
}

/// Everything `taxgate demo` prints before serving.
pub fn banner(port: u16, admin_port: u16) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "\ntaxgate demo\n  login page:     http://127.0.0.1:{port}/login\n  account centre: http://127.0.0.1:{port}/account\n  admin:          http://127.0.0.1:{admin_port}/metrics  /admin/policies\n  SMS codes are printed below as they are sent (and appended to demo-data/sms-outbox.jsonl).\n  Face scans: press 模拟扫码 on the face step (it signs the app's callback with `demo-face-secret`; docs/operations.md shows how), or use SMS.\n\n"
    ));
    out.push_str("  entry                 taxpayer id          account              password        what happens\n");
    for (entry, tid, account, pw, what) in ACCOUNTS {
        out.push_str(&format!(
            "  {entry:<20}  {tid:<19}  {account:<19}  {pw:<14}  {what}\n"
        ));
    }
    out.push_str("\n  Try: curl -s http://127.0.0.1:PORT/api/declare/vat -H 'Cookie: taxgate_session=…' after logging in.\n".replace("PORT", &port.to_string()).as_str());
    out
}

/// Build the demo config in `data` (created if missing).
pub fn prepare(port: u16, data: &Path, backend: SocketAddr) -> Result<Config, String> {
    std::fs::create_dir_all(data)
        .map_err(|e| format!("cannot create `{}`: {e}", data.display()))?;
    let policies = find_policies().ok_or(
        "cannot find the policies: run `taxgate demo` from the repository root (it reads ./policies)",
    )?;
    let policies = policies.canonicalize().unwrap_or(policies);
    let data = data.canonicalize().unwrap_or_else(|_| data.to_path_buf());
    let legacy_until = time::OffsetDateTime::now_utc() + time::Duration::days(30);
    let legacy_until = legacy_until
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| e.to_string())?;
    let admin_port = port.checked_add(1).ok_or("--port must be below 65535")?;
    let signing_key = demo_signing_key(&data)?;
    let text = config_text(
        port,
        admin_port,
        &data,
        &policies,
        backend,
        &legacy_until,
        &signing_key,
    );
    let mut config = Config::from_toml(&text, "taxgate demo", &data).map_err(|e| e.to_string())?;
    // 模拟扫码 on the face step: the demo only (a config file cannot set this).
    config.demo = true;
    Ok(config)
}

/// The key that signs the demo's identity assertions: `data/assertion.pem`, generated on the
/// first run (Ed25519, mode 0600) and reused after, so a backend that pinned its JWKS keeps
/// verifying across restarts.
pub fn demo_signing_key(data: &Path) -> Result<PathBuf, String> {
    let path = data.join(DEMO_KEY_FILE);
    if !path.exists() {
        let key = taxgate_gateway::assertion::write_new_key(
            &path,
            taxgate_gateway::assertion::Algorithm::EdDSA,
            false,
        )
        .map_err(|e| e.to_string())?;
        println!(
            "generated the demo's assertion key {} (kid {})",
            path.display(),
            key.kid()
        );
    }
    Ok(path)
}

/// File name of the demo's assertion key under the data directory.
pub const DEMO_KEY_FILE: &str = "assertion.pem";
