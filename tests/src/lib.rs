//! Support for the end-to-end tests: a real upstream (hyper) that reports what it received, the
//! real gateway started in-process or as the real binary on `127.0.0.1:0`, an HTTP client, and
//! test certificates.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type TestBody = BoxBody<Bytes, BoxError>;

pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).map_err(|n| match n {}).boxed()
}

pub fn empty() -> TestBody {
    full(Bytes::new())
}

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
    /// Why the request body ended before its end (`None`: read completely).
    pub body_error: Option<String>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A real HTTP/1.1 upstream on loopback. Behaviour by path:
/// - `/slow/<ms>/...`: waits before answering;
/// - `/stream/<n>`: answers with `n` bytes, streamed in 64 KiB chunks;
/// - `/first-chunk/...`: reports (on `first_chunk`) as soon as the first body chunk arrives,
///   then reads the rest;
/// - `/cut/...`: announces 1000 bytes, sends 10 and closes;
/// - anything else: `200` with a JSON echo of method, path, headers and body length.
///
/// Every request is also sent on `seen`.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: mpsc::UnboundedReceiver<Seen>,
    pub first_chunk: mpsc::UnboundedReceiver<usize>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let (chunk_tx, first_chunk) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let seen_tx = seen_tx.clone();
                let chunk_tx = chunk_tx.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        upstream_handle(req, seen_tx.clone(), chunk_tx.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            seen,
            first_chunk,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn next_seen(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(10), self.seen.recv())
            .await
            .expect("upstream saw no request in 10 s")
            .expect("upstream stopped")
    }
}

async fn upstream_handle(
    req: Request<Incoming>,
    seen_tx: mpsc::UnboundedSender<Seen>,
    chunk_tx: mpsc::UnboundedSender<usize>,
) -> Result<Response<TestBody>, Infallible> {
    let path = req.uri().path().to_string();
    let mut seen = Seen {
        method: req.method().to_string(),
        path_and_query: req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: req
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect(),
        body_len: 0,
        body_error: None,
    };
    if let Some(rest) = after(&path, "/slow/") {
        let ms: u64 = rest.split('/').next().unwrap_or("0").parse().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut body = req.into_body();
    let mut first = true;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                seen.body_error = Some(e.to_string());
                break;
            }
        };
        if let Some(data) = frame.data_ref() {
            if first && path.contains("/first-chunk/") {
                let _ = chunk_tx.send(data.len());
            }
            first = false;
            seen.body_len += data.len() as u64;
        }
        // Trailers count as headers the upstream could be fooled by: recorded with them.
        if let Some(trailers) = frame.trailers_ref() {
            for (n, v) in trailers {
                seen.headers
                    .push((n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()));
            }
        }
    }
    let echo = serde_json::json!({
        "method": seen.method,
        "path": seen.path_and_query,
        "body_len": seen.body_len,
        "headers": seen.headers.iter().map(|(n, v)| vec![n.clone(), v.clone()]).collect::<Vec<_>>(),
    });
    let _ = seen_tx.send(seen);
    if let Some(n) = after(&path, "/stream/") {
        let total: usize = n.parse().unwrap_or(0);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let chunks = (0..total.div_ceil(chunk.len())).map(move |i| {
            let len = chunk.len().min(total - i * chunk.len());
            Ok::<_, BoxError>(hyper::body::Frame::data(chunk.slice(..len)))
        });
        return Ok(Response::builder()
            .header("content-length", total.to_string())
            .body(http_body_util::StreamBody::new(futures_util::stream::iter(chunks)).boxed())
            .unwrap());
    }
    if path.contains("/cut/") {
        // Send the head and 10 bytes, wait so they are flushed, then fail the body.
        let frames = futures_util::stream::unfold(0u8, |step| async move {
            match step {
                0 => Some((
                    Ok::<_, BoxError>(hyper::body::Frame::data(Bytes::from_static(b"0123456789"))),
                    1,
                )),
                1 => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Some((Err("cut".into()), 2))
                }
                _ => None,
            }
        });
        return Ok(Response::builder()
            .header("content-length", "1000")
            .body(http_body_util::StreamBody::new(frames).boxed())
            .unwrap());
    }
    Ok(Response::builder()
        .header("content-type", "application/json")
        .header("connection", "x-upstream-hop")
        .header("x-upstream-hop", "1")
        .header("keep-alive", "timeout=5")
        .body(full(echo.to_string()))
        .unwrap())
}

/// The rest of `path` after the first `marker` (markers may follow a route prefix).
fn after<'a>(path: &'a str, marker: &str) -> Option<&'a str> {
    path.find(marker).map(|i| &path[i + marker.len()..])
}

/// A response read to the end.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub version: http::Version,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    /// `error.code` of a contract error body.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", String::from_utf8_lossy(&self.body)))
            .to_string()
    }
}

/// One HTTP/1.1 request on a fresh connection.
pub async fn send(addr: SocketAddr, req: Request<TestBody>) -> Answer {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.unwrap();
    read(resp).await
}

pub async fn read(resp: Response<Incoming>) -> Answer {
    let version = resp.version();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
        version,
    }
}

pub async fn get(addr: SocketAddr, path: &str) -> Answer {
    send(
        addr,
        Request::get(path)
            .header("host", "gw.test")
            .body(empty())
            .unwrap(),
    )
    .await
}

/// The sections of a gateway config a test does not care about.
pub fn config_text(dir: &Path, upstream_url: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace_secs = 5

[admin]
listen = "127.0.0.1:0"

[store]
url = "sqlite://{db}"

[policies]
dir = "{policies}"
watch = false

[sms]
provider = "file"
path = "{outbox}"

[face]
callback_secret = "test-face-secret"

{session}
{login}
{identity}
[[upstreams]]
name = "etax"
url = "{upstream_url}"
timeout_secs = 2

[[routes]]
prefix = "/api/declare"
methods = ["POST", "GET"]
action = "declare"
upstream = "etax"

[[routes]]
prefix = "/api/query"
action = "query"
upstream = "etax"

[[routes]]
prefix = "/api/invoice"
action = "invoice"
upstream = "etax"

[[routes]]
prefix = "/api/tax-affairs"
action = "tax_affairs"
upstream = "etax"

[[routes]]
prefix = "/api/personal"
action = "personal_tax"
upstream = "etax"
{extra}
"#,
        db = dir.join("taxgate.db").display(),
        policies = policies_dir().display(),
        outbox = dir.join("sms-outbox.jsonl").display(),
        // Tests log the same person in repeatedly: no resend interval unless a test sets one.
        login = if extra.contains("[login]") {
            ""
        } else {
            "[login]\nsms_resend_secs = 0\n"
        },
        // Secure by default (issue 15 point 12): every test gateway signs identity assertions
        // with a key of its own, unless the test brings its own [upstream_identity].
        identity = if extra.contains("[upstream_identity]") {
            String::new()
        } else {
            test_identity_section(dir)
        },
        // A test that brings its own [session] table replaces this one.
        session = if extra.contains("[session]") {
            ""
        } else {
            "[session]\ncookie_secure = false\n"
        },
    )
}

/// The repository's `policies/` directory.
pub fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("policies")
}

/// A gateway running in this process, fully wired (login, account centre, pages).
pub struct Gateway {
    pub public: SocketAddr,
    pub admin: SocketAddr,
    pub core: Arc<taxgate_gateway::server::Core>,
    pub shutdown: taxgate_gateway::server::Shutdown,
    pub done: tokio::task::JoinHandle<()>,
}

impl Gateway {
    pub async fn start(config_text: &str, dir: &Path) -> Gateway {
        let config = taxgate_gateway::config::Config::from_toml(config_text, "test.toml", dir)
            .unwrap_or_else(|e| panic!("test config refused: {e}"));
        let shutdown = taxgate_gateway::server::Shutdown::new();
        let server = taxgate_gateway::run::serve(config, shutdown.clone())
            .await
            .unwrap_or_else(|e| panic!("gateway did not start: {e}"));
        let public = server.public_addr();
        let admin = server.admin_addr();
        let core = server.core().clone();
        let done = tokio::spawn(server.run(shutdown.clone()));
        Gateway {
            public,
            admin,
            core,
            shutdown,
            done,
        }
    }

    pub async fn stop(self) {
        self.shutdown.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.done).await;
    }
}

/// The `taxgate` binary built for these tests (`target/<profile>/taxgate`). `cargo test
/// --workspace` builds it (the gateway package's own integration test needs it); running this
/// crate alone needs `cargo build -p taxgate` first. Building it from here would deadlock on
/// cargo's lock, which the running `cargo test` holds.
pub fn taxgate_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("taxgate");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test --workspace`, or `cargo build -p taxgate` first",
        bin.display()
    );
    bin
}

/// A CA and a leaf certificate for `localhost` / 127.0.0.1, as PEM files in `dir`.
pub struct TestPki {
    pub ca_der: rustls::pki_types::CertificateDer<'static>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn test_pki(dir: &Path) -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "taxgate test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    let cert = dir.join("gw.pem");
    let key = dir.join("gw.key");
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    TestPki {
        ca_der: ca.der().clone(),
        cert,
        key,
    }
}

/// An HTTP/2 request over TLS (ALPN h2) trusting `ca`.
pub async fn send_h2_tls(
    addr: SocketAddr,
    ca: &rustls::pki_types::CertificateDer<'static>,
    req: Request<TestBody>,
) -> Answer {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.unwrap();
    read(resp).await
}

// ---- login fixtures ---------------------------------------------------------------------------

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

/// A gateway with the login fixtures imported, in front of a real upstream.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub gw: Gateway,
    pub up: Upstream,
}

impl Env {
    pub async fn start(extra_config: &str) -> Env {
        Self::start_with(extra_config, &seed_json()).await
    }

    pub async fn start_with(extra_config: &str, seed: &serde_json::Value) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let up = Upstream::start().await;
        let text = config_text(dir.path(), &up.url(), extra_config);
        let gw = Gateway::start(&text, dir.path()).await;
        taxgate_store::import_seed(&gw.core.store, &seed.to_string(), unix_now())
            .await
            .unwrap_or_else(|e| panic!("test seed refused: {e:?}"));
        Env { dir, gw, up }
    }

    pub fn outbox(&self) -> PathBuf {
        self.dir.path().join("sms-outbox.jsonl")
    }

    /// Every line of the SMS outbox.
    pub fn sms(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.outbox())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The newest code sent to `phone`.
    pub fn last_code(&self, phone: &str) -> String {
        self.sms()
            .iter()
            .rev()
            .find(|m| m["to"] == phone)
            .and_then(|m| m["code"].as_str().map(String::from))
            .unwrap_or_else(|| panic!("no code was sent to {phone}"))
    }

    pub async fn post(&self, path: &str, body: serde_json::Value, session: Option<&str>) -> Answer {
        let mut req = Request::post(path)
            .header("host", "gw.test")
            .header("content-type", "application/json");
        if let Some(token) = session {
            req = req.header("cookie", format!("taxgate_session={token}"));
        }
        send(self.gw.public, req.body(full(body.to_string())).unwrap()).await
    }

    pub async fn get(&self, path: &str, session: Option<&str>) -> Answer {
        let mut req = Request::get(path).header("host", "gw.test");
        if let Some(token) = session {
            req = req.header("cookie", format!("taxgate_session={token}"));
        }
        send(self.gw.public, req.body(empty()).unwrap()).await
    }

    /// `POST /auth/login`; returns the answer.
    pub async fn login(
        &self,
        entry: &str,
        taxpayer_id: Option<&str>,
        account: &str,
        password: &str,
    ) -> Answer {
        let mut body =
            serde_json::json!({"entry": entry, "account": account, "password": password});
        if let Some(t) = taxpayer_id {
            body["taxpayer_id"] = t.into();
        }
        self.post("/auth/login", body, None).await
    }

    /// A full login with the SMS factor; returns the session token and the session view.
    pub async fn login_sms(
        &self,
        entry: &str,
        taxpayer_id: Option<&str>,
        account: &str,
        password: &str,
        phone: &str,
    ) -> (String, serde_json::Value) {
        let mut body =
            serde_json::json!({"entry": entry, "account": account, "password": password});
        if let Some(t) = taxpayer_id {
            body["taxpayer_id"] = t.into();
        }
        login_sms_view_at(self.gw.public, &self.outbox(), body, phone).await
    }
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

/// Headers of a face callback signed like the app backend does (CONTRACT section 6).
pub fn sign_face(secret: &str, timestamp: i64, body: &str) -> (String, String) {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    (
        timestamp.to_string(),
        format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
    )
}

// ---- fault injection and raw-wire helpers (issue 9) ------------------------------------------

/// A fresh database on the test PostgreSQL server (`TAXGATE_TEST_PG_URL`), or `None` with a
/// notice when none is configured — unless `TAXGATE_REQUIRE_PG=1`, when that is a failure.
pub fn test_postgres_url() -> Option<String> {
    let Ok(base) = std::env::var("TAXGATE_TEST_PG_URL") else {
        assert!(
            std::env::var("TAXGATE_REQUIRE_PG").as_deref() != Ok("1"),
            "TAXGATE_REQUIRE_PG=1 but TAXGATE_TEST_PG_URL is unset"
        );
        eprintln!("skipping PostgreSQL: TAXGATE_TEST_PG_URL unset");
        return None;
    };
    let name = format!("e2e_{}", taxgate_gateway::authn::token::new_id().unwrap());
    let (admin, _) = base.rsplit_once('/').unwrap();
    let status = std::process::Command::new("psql")
        .arg(&base)
        .args(["-q", "-c", &format!("CREATE DATABASE {name}")])
        .status()
        .expect("psql");
    assert!(status.success(), "cannot create a test database");
    Some(format!("{admin}/{name}"))
}

/// `config_text` with the store URL replaced (PostgreSQL, or a relay in front of it).
pub fn config_text_with_store(dir: &Path, upstream_url: &str, extra: &str, store: &str) -> String {
    config_text(dir, upstream_url, extra).replace(
        &format!("sqlite://{}", dir.join("taxgate.db").display()),
        store,
    )
}

/// A TCP relay between the gateway and a server (the test PostgreSQL), which a test can cut:
/// `cut` closes every relayed connection and refuses new ones (accepts and closes them at once,
/// so the port stays ours), `restore` relays again.
pub struct Relay {
    pub addr: SocketAddr,
    down: Arc<std::sync::atomic::AtomicBool>,
    generation: tokio::sync::watch::Sender<u64>,
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Relay {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let (down2, gen2) = (down.clone(), generation.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if down2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut cut = gen2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                    // Dropping both ends closes them.
                });
            }
        });
        Relay {
            addr,
            down,
            generation,
        }
    }

    /// Close every relayed connection and refuse new ones.
    pub fn cut(&self) {
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Host and port of a `postgres://user@host:port/db` URL.
pub fn pg_addr(url: &str) -> SocketAddr {
    let rest = url.split_once("://").unwrap().1;
    let host_port = rest.split('/').next().unwrap();
    let host_port = host_port.rsplit_once('@').map_or(host_port, |(_, hp)| hp);
    host_port.parse().unwrap()
}

/// `url` with its host and port replaced by `addr`.
pub fn pg_url_via(url: &str, addr: SocketAddr) -> String {
    let real = pg_addr(url);
    url.replacen(&real.to_string(), &addr.to_string(), 1)
}

/// Poll `check` every 20 ms until it returns `Some`, or panic with `what` after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Everything the upstream has reported so far, without waiting.
pub fn drain_seen(up: &mut Upstream) -> Vec<Seen> {
    let mut out = Vec::new();
    while let Ok(s) = up.seen.try_recv() {
        out.push(s);
    }
    out
}

/// Write `bytes` on a fresh connection and read until the peer closes or `idle` passes without
/// new bytes. Returns what was read and whether the peer closed.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], idle: Duration) -> (Vec<u8>, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The peer may close before everything is written (it refused the head): that is an answer.
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(idle, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
}

/// Status codes of every HTTP/1.1 response head in a raw byte stream, in order.
pub fn raw_statuses(bytes: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(bytes);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text.get(i + 9..i + 12))
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// One HTTP/1.1 request on a fresh connection, with every failure returned instead of panicking:
/// `Err(Refused)` when the connection could not be made, `Err(Failed)` for anything after.
pub async fn try_send(addr: SocketAddr, req: Request<TestBody>) -> Result<Answer, SendError> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| SendError::Refused(e.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| SendError::Failed(e.to_string()))?;
    tokio::spawn(conn);
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| SendError::Failed(e.to_string()))?;
    let version = resp.version();
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| SendError::Failed(format!("body: {e}")))?
        .to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
        version,
    })
}

#[derive(Debug)]
pub enum SendError {
    Refused(String),
    Failed(String),
}

/// A `taxgate serve` child process, killed when dropped.
pub struct ServeChild {
    pub child: std::process::Child,
    pub public: SocketAddr,
    pub admin: SocketAddr,
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServeChild {
    /// Start the real binary with `config` (its two `127.0.0.1:0` listens replaced by free
    /// ports) and wait until the admin listener answers.
    pub async fn start(dir: &Path, name: &str, config: &str) -> ServeChild {
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
        };
        let (public, admin) = (free(), free());
        let text = config
            .replacen(
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"{public}\""),
                1,
            )
            .replacen(
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"{admin}\""),
                1,
            );
        let cfg = dir.join(format!("{name}.toml"));
        std::fs::write(&cfg, text).unwrap();
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let child = std::process::Command::new(taxgate_bin())
            .args(["serve", "--config"])
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let me = ServeChild {
            child,
            public,
            admin,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while get_ok(admin, "/readyz").await.is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "taxgate {name} did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        me
    }

    pub fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// `GET path` answered 200, or `None` (including when nothing listens).
async fn get_ok(addr: SocketAddr, path: &str) -> Option<()> {
    let req = Request::get(path).body(empty()).unwrap();
    match try_send(addr, req).await {
        Ok(a) if a.status == StatusCode::OK => Some(()),
        _ => None,
    }
}

// ---- TLS upstreams and certificates (upstream trust) -----------------------------------------

impl Upstream {
    /// The same upstream as [`Upstream::start`], behind TLS with `config` (which may require
    /// client certificates). Handshake failures are reported on `handshake_errors`.
    pub async fn start_tls(config: Arc<rustls::ServerConfig>) -> (Upstream, TlsErrors) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let (chunk_tx, first_chunk) = mpsc::unbounded_channel();
        let (err_tx, errors) = mpsc::unbounded_channel();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (seen_tx, chunk_tx, err_tx) =
                    (seen_tx.clone(), chunk_tx.clone(), err_tx.clone());
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let tls = match acceptor.accept(stream).await {
                        Ok(tls) => tls,
                        Err(e) => {
                            let _ = err_tx.send(e.to_string());
                            return;
                        }
                    };
                    let svc = service_fn(move |req| {
                        upstream_handle(req, seen_tx.clone(), chunk_tx.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        (
            Upstream {
                addr,
                seen,
                first_chunk,
            },
            TlsErrors(errors),
        )
    }

    /// `https://localhost:PORT` (the test certificates name `localhost`).
    pub fn https_url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }
}

/// Handshake errors seen by a TLS upstream.
pub struct TlsErrors(pub mpsc::UnboundedReceiver<String>);

/// A certificate authority for tests, writing PEM files into a directory.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    /// The CA certificate as a PEM file.
    pub pem: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path, name: &str) -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem = dir.join(format!("{name}.ca.pem"));
        std::fs::write(&pem, issuer.pem()).unwrap();
        TestCa { issuer, pem }
    }

    pub fn der(&self) -> rustls::pki_types::CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A leaf for `names` (server and client use), written as `<stem>.pem` and `<stem>.key`.
    pub fn issue(&self, dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}

/// A rustls server config with `cert`/`key`, requiring client certificates from `client_ca`
/// when given.
pub fn tls_server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&TestCa>,
) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.der()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Copy a directory tree (a test's private copy of `policies/`).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `config_text` whose policies are a private copy of the repository's (`dir/policies`, also
/// returned), watched, for tests that change the set while the gateway runs.
pub fn config_with_watched_policies(dir: &Path, upstream_url: &str) -> (String, PathBuf) {
    let policies = dir.join("policies");
    copy_dir(&policies_dir(), &policies);
    let text = config_text(dir, upstream_url, "")
        .replace(
            &policies_dir().display().to_string(),
            &policies.display().to_string(),
        )
        .replace("watch = false", "watch = true");
    (text, policies)
}

// ---- gateways not started through Env (issue 15 and 21) --------------------------------------

/// The newest code the file outbox `outbox` sent to `phone`.
pub fn outbox_code(outbox: &Path, phone: &str) -> String {
    std::fs::read_to_string(outbox)
        .unwrap_or_default()
        .lines()
        .rev()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|m| m["to"] == phone)
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
    let post = |path: &'static str, body: serde_json::Value| {
        let req = Request::post(path)
            .header("host", "gw.test")
            .header("content-type", "application/json")
            .body(full(body.to_string()))
            .unwrap();
        send(addr, req)
    };
    let a = post("/auth/login", login).await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "login: {}",
        String::from_utf8_lossy(&a.body)
    );
    let challenge = a.json()["challenge"].as_str().unwrap().to_string();
    let sent = post(
        "/auth/sms/send",
        serde_json::json!({"challenge": challenge}),
    )
    .await;
    assert_eq!(
        sent.status,
        StatusCode::OK,
        "sms send: {}",
        String::from_utf8_lossy(&sent.body)
    );
    let code = outbox_code(outbox, phone);
    let v = post(
        "/auth/sms/verify",
        serde_json::json!({"challenge": challenge, "code": code}),
    )
    .await;
    assert_eq!(
        v.status,
        StatusCode::OK,
        "sms verify: {}",
        String::from_utf8_lossy(&v.body)
    );
    (session_token(&v), v.json())
}

/// Write `config` to `dir/taxgate.toml` and `seed` beside it, then run the real binary's
/// `migrate` and `import` on them; returns the config's path.
pub fn migrate_and_import(dir: &Path, config: &str, seed: &serde_json::Value) -> PathBuf {
    let cfg = dir.join("taxgate.toml");
    std::fs::write(&cfg, config).unwrap();
    let seed_path = dir.join("seed.json");
    std::fs::write(&seed_path, seed.to_string()).unwrap();
    for args in [&["migrate", "--config"][..], &["import", "--config"][..]] {
        let mut cmd = std::process::Command::new(taxgate_bin());
        cmd.args(args).arg(&cfg);
        if args[0] == "import" {
            cmd.arg(&seed_path);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    cfg
}

// ---- bursts released at one instant (issue 21: limits under concurrency) ---------------------

/// One POST of a [`burst`]: the instance it goes to, the path, the JSON body and a session.
#[derive(Clone)]
pub struct BurstRequest {
    pub addr: SocketAddr,
    pub path: String,
    pub body: serde_json::Value,
    pub session: Option<String>,
}

/// What one request of a burst got: the status, the `Retry-After` header and the JSON body.
#[derive(Debug, Clone)]
pub struct BurstAnswer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub json: serde_json::Value,
}

impl BurstAnswer {
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
}

/// Send every request at the same instant, each on its own connection: first everything but the
/// last byte of each, then, once every connection holds all but one byte (a barrier), every last
/// byte together. Answers come back in the order of `requests`.
pub async fn burst(requests: Vec<BurstRequest>) -> Vec<BurstAnswer> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let barrier = Arc::new(tokio::sync::Barrier::new(requests.len()));
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|r| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let body = r.body.to_string();
                let cookie = r
                    .session
                    .map(|t| format!("cookie: taxgate_session={t}\r\n"))
                    .unwrap_or_default();
                let raw = format!(
                    "POST {} HTTP/1.1\r\nhost: gw.test\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n{cookie}\r\n{body}",
                    r.path,
                    body.len()
                );
                let (head, last) = raw.as_bytes().split_at(raw.len() - 1);
                let mut s = tokio::net::TcpStream::connect(r.addr).await.unwrap();
                s.set_nodelay(true).unwrap();
                s.write_all(head).await.unwrap();
                barrier.wait().await;
                s.write_all(last).await.unwrap();
                let mut out = Vec::new();
                tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut out))
                    .await
                    .expect("an answer within 60 s")
                    .unwrap();
                parse_burst_answer(&out)
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(tasks.len());
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    answers
}

fn parse_burst_answer(raw: &[u8]) -> BurstAnswer {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {text:?}"));
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        body.to_string()
    };
    BurstAnswer {
        status,
        retry_after: header("retry-after"),
        json: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    }
}

/// How many answers of a burst had this status and error code (`""`: any, or none).
pub fn count_answers(answers: &[BurstAnswer], status: u16, code: &str) -> usize {
    answers
        .iter()
        .filter(|a| a.status == status && (code.is_empty() || a.code() == code))
        .count()
}

// ---- phone recovery and face (issue 15 points 2, 7, 12; issue 21 point 11) -------------------

/// The face secret every test config shares.
pub const FACE_SECRET: &str = "test-face-secret";

/// A face callback with `body`, signed with `secret` at `timestamp`, from the default client.
pub async fn face_callback_signed(
    addr: SocketAddr,
    secret: &str,
    timestamp: i64,
    body: &serde_json::Value,
) -> Answer {
    let body = body.to_string();
    let (ts, sig) = sign_face(secret, timestamp, &body);
    send(
        addr,
        Request::post("/auth/face/callback")
            .header("content-type", "application/json")
            .header("x-taxgate-timestamp", ts)
            .header("x-taxgate-signature", sig)
            .body(full(body))
            .unwrap(),
    )
    .await
}

impl Env {
    /// `/auth/face/start` on `challenge` (must answer 200), then the app's signed callback saying
    /// `result` for `id_number`; returns the callback's answer.
    pub async fn face_scan(&self, challenge: &str, id_number: &str, result: &str) -> Answer {
        let start = self
            .post(
                "/auth/face/start",
                serde_json::json!({"challenge": challenge}),
                None,
            )
            .await;
        assert_eq!(
            start.status,
            StatusCode::OK,
            "face start: {}",
            String::from_utf8_lossy(&start.body)
        );
        let nonce = start.json()["nonce"].as_str().unwrap().to_string();
        face_callback_signed(
            self.gw.public,
            FACE_SECRET,
            unix_now(),
            &serde_json::json!({"nonce": nonce, "id_number": id_number, "result": result}),
        )
        .await
    }

    /// The new recovery flow (CONTRACT section 3) up to the code: `/auth/phone/recover`, a
    /// passing face scan of `id_number`, `/auth/face/complete`. Returns the challenge.
    pub async fn recover_until_code(
        &self,
        account: &str,
        password: &str,
        phone: &str,
        id_number: &str,
    ) -> String {
        let a = self
            .post(
                "/auth/phone/recover",
                serde_json::json!({"account": account, "password": password, "phone": phone}),
                None,
            )
            .await;
        assert_eq!(
            a.status,
            StatusCode::OK,
            "recover: {}",
            String::from_utf8_lossy(&a.body)
        );
        let challenge = a.json()["challenge"].as_str().unwrap().to_string();
        let cb = self.face_scan(&challenge, id_number, "pass").await;
        assert_eq!(cb.status, StatusCode::NO_CONTENT);
        let done = self
            .post(
                "/auth/face/complete",
                serde_json::json!({"challenge": challenge}),
                None,
            )
            .await;
        assert_eq!(
            done.status,
            StatusCode::OK,
            "face complete: {}",
            String::from_utf8_lossy(&done.body)
        );
        challenge
    }

    /// Every `phone_changed` notice in the outbox, by recipient.
    pub fn phone_notices(&self) -> Vec<String> {
        self.sms()
            .iter()
            .filter(|m| m["purpose"] == "phone_changed")
            .map(|m| {
                assert!(m.get("code").is_none(), "a notice carries no code: {m}");
                m["to"].as_str().unwrap().to_string()
            })
            .collect()
    }
}

/// `[upstream_identity]` with an Ed25519 key generated once in `dir` (the secure default the
/// gateway refuses to start without).
pub fn test_identity_section(dir: &Path) -> String {
    let key = dir.join("test-assertion.pem");
    if !key.exists() {
        match taxgate_gateway::assertion::write_new_key(
            &key,
            taxgate_gateway::assertion::Algorithm::EdDSA,
            false,
        ) {
            Ok(_) | Err(taxgate_gateway::assertion::KeyError::Exists { .. }) => {}
            Err(e) => panic!("cannot write the test assertion key: {e}"),
        }
    }
    format!("[upstream_identity]\nsigning_key = \"{}\"\n", key.display())
}
