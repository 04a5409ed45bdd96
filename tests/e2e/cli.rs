//! The real `taxgate` binary: config errors, graceful shutdown, bounded memory while streaming.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use taxgate_e2e::*;

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `taxgate serve` on fixed free ports and wait until it answers.
async fn spawn_serve(
    dir: &std::path::Path,
    upstream: &str,
    extra: &str,
) -> (Child, std::net::SocketAddr) {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (public, admin) = (free(), free());
    let text = config_text(dir, upstream, extra)
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
    let cfg = dir.join("taxgate.toml");
    std::fs::write(&cfg, text).unwrap();
    let child = Command::new(taxgate_bin())
        .args(["serve", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = Child(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(admin).await.is_err() {
        assert!(Instant::now() < deadline, "taxgate did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, public)
}

#[test]
fn config_errors_name_the_key_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "upstream = \"etax\"\n\n[[routes]]\nprefix = \"/api/query\"",
            "upstream = \"nope\"\n\n[[routes]]\nprefix = \"/api/query\"",
            "routes[0].upstream",
        ),
        (
            "listen = \"127.0.0.1:0\"\nshutdown",
            "listen = \"127.0.0.1:99999\"\nshutdown",
            "server.listen",
        ),
        (
            "timeout_secs = 2",
            "timeout_secs = \"two\"",
            "upstreams[0].timeout_secs",
        ),
        (
            "[session]\n",
            "[session]\ncookie_name = \"bad name\"\n",
            "session.cookie_name",
        ),
    ];
    for (from, to, key) in cases {
        let text = config_text(dir.path(), "http://127.0.0.1:9", "").replacen(from, to, 1);
        assert_ne!(
            text,
            config_text(dir.path(), "http://127.0.0.1:9", ""),
            "{key}: case did not apply"
        );
        let cfg = dir.path().join("bad.toml");
        std::fs::write(&cfg, text).unwrap();
        let out = Command::new(taxgate_bin())
            .args(["serve", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{key}: {stderr}");
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
        assert!(stderr.contains("bad.toml"), "file not named in: {stderr}");
    }
    // TLS files that do not exist
    let text = config_text(dir.path(), "http://127.0.0.1:9", "").replacen(
        "shutdown_grace_secs = 5\n",
        "shutdown_grace_secs = 5\n[server.tls]\ncert = \"missing.pem\"\nkey = \"missing.key\"\n",
        1,
    );
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = Command::new(taxgate_bin())
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.tls.cert"));
    // usage errors exit 2
    let out = Command::new(taxgate_bin()).arg("serve").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (child, public) = spawn_serve(dir.path(), &up.url(), "\n[dev]\nallow_all = true\n").await;
    let slow = tokio::spawn(async move { get(public, "/api/declare/slow/1500/x").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = child.0.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // No new connections once draining started.
    assert!(
        tokio::net::TcpStream::connect(public).await.is_err(),
        "still accepting after SIGTERM"
    );
    let a = slow.await.unwrap();
    assert_eq!(a.status, StatusCode::OK, "the in-flight request was cut");
    let mut child = child;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            assert!(st.success(), "exit status {st:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "taxgate did not exit after draining"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn large_bodies_stream_in_bounded_memory() {
    const SIZE: usize = 256 * 1024 * 1024;
    let mut up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (child, public) = spawn_serve(dir.path(), &up.url(), "\n[dev]\nallow_all = true\n").await;
    let before = peak_rss_kib(child.0.id());

    let chunk = Bytes::from(vec![b'u'; 256 * 1024]);
    let frames = (0..SIZE / chunk.len())
        .map(move |_| Ok::<_, BoxError>(hyper::body::Frame::data(chunk.clone())));
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed();
    let req = Request::post("/api/declare/upload")
        .header("host", "gw.test")
        .header("content-length", SIZE.to_string())
        .body(body)
        .unwrap();
    let a = send(public, req).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(up.next_seen().await.body_len, SIZE as u64);

    let resp = get_unread(public, &format!("/api/declare/stream/{SIZE}")).await;
    let mut body = resp.into_body();
    let mut got = 0usize;
    while let Some(frame) = body.frame().await {
        if let Some(d) = frame.unwrap().data_ref() {
            got += d.len();
        }
    }
    assert_eq!(got, SIZE);

    let peak = peak_rss_kib(child.0.id());
    assert!(
        peak < before + 64 * 1024,
        "peak RSS grew from {before} KiB to {peak} KiB while streaming 2 x 256 MiB"
    );
}

fn run(args: &[&str], cwd: &std::path::Path) -> std::process::Output {
    Command::new(taxgate_bin())
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

#[test]
fn migrate_and_import_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("taxgate.toml");
    std::fs::write(&cfg, config_text(dir.path(), "http://127.0.0.1:9", "")).unwrap();
    let cfg = cfg.to_str().unwrap();
    let out = run(&["migrate", "--config", cfg], dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // One bad ID number, one bad phone, one binding to nobody: every row reported, nothing stored.
    let mut bad = seed_json();
    bad["persons"][1]["id_number"] = "140105198503150023".into();
    bad["persons"][2]["phone"] = "12345".into();
    bad["bindings"][0]["enterprise"] = "91350200776049653A".into();
    let seed = dir.path().join("bad.json");
    std::fs::write(&seed, bad.to_string()).unwrap();
    let out = run(
        &["import", "--config", cfg, seed.to_str().unwrap()],
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for path in [
        "persons[1].id_number",
        "persons[2].phone",
        "bindings[0].enterprise",
    ] {
        assert!(stderr.contains(path), "{path} not reported in: {stderr}");
    }
    assert!(stderr.contains("nothing was imported"), "{stderr}");
    let count = |table: &str| {
        let db = dir.path().join("taxgate.db");
        let out = Command::new("python3")
            .args([
                "-c",
                &format!(
                    "import sqlite3;print(sqlite3.connect('{}').execute('select count(*) from {table}').fetchone()[0])",
                    db.display()
                ),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(count("persons"), "0", "a bad seed changed the store");

    let seed = dir.path().join("good.json");
    std::fs::write(&seed, seed_json().to_string()).unwrap();
    for _ in 0..2 {
        let out = run(
            &["import", "--config", cfg, seed.to_str().unwrap()],
            dir.path(),
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(count("persons"), "7", "re-importing is idempotent");
    assert_eq!(count("bindings"), "6");
    assert_eq!(count("agency_agreements"), "1");

    let out = run(
        &["import", "--config", cfg, "/nonexistent.json"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.json"));
}

#[test]
fn policy_commands() {
    let policies = policies_dir();
    let p = policies.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["policy", "validate", "--policies", p], dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["policy", "test", "--policies", p], dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default().to_string();
    assert!(
        last.ends_with(" failed") && last.contains(" passed, 0 failed"),
        "last line: {last}"
    );

    // A broken copy: validation fails with file:line, exit 1.
    let broken = dir.path().join("policies");
    std::fs::create_dir_all(broken.join("tests")).unwrap();
    for f in ["schema.cedarschema", "reasons.toml"] {
        std::fs::copy(policies.join(f), broken.join(f)).unwrap();
    }
    std::fs::write(
        broken.join("bad.cedar"),
        "@id(\"ok\")\npermit (principal, action, resource);\n\n@id(\"typo\")\npermit (principal, action == Action::\"declare\", resource) when { principal.nope };\n",
    )
    .unwrap();
    let out = run(
        &["policy", "validate", "--policies", broken.to_str().unwrap()],
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("bad.cedar:"), "no file:line in: {stderr}");
    let out = run(&["policy"], dir.path());
    assert_eq!(out.status.code(), Some(2));
}

/// The real binary at debug log level through a whole login: no password, SMS code, session
/// token, challenge or full ID number appears in any log line.
#[tokio::test]
async fn no_secret_reaches_the_logs() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (public, admin) = (free(), free());
    let text = config_text(dir.path(), &up.url(), "")
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
    let cfg = dir.path().join("taxgate.toml");
    std::fs::write(&cfg, text).unwrap();
    let seed = dir.path().join("seed.json");
    std::fs::write(&seed, seed_json().to_string()).unwrap();
    let out = run(
        &[
            "import",
            "--config",
            cfg.to_str().unwrap(),
            seed.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(out.status.success());
    let log = dir.path().join("taxgate.log");
    let child = Command::new(taxgate_bin())
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "debug")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::options().append(true).open(&log).unwrap())
        .spawn()
        .unwrap();
    let child = Child(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(public).await.is_err() {
        assert!(Instant::now() < deadline, "taxgate did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let post = |path: &'static str, body: serde_json::Value, token: Option<String>| async move {
        let mut r = Request::post(path).header("content-type", "application/json");
        if let Some(t) = token {
            r = r.header("cookie", format!("taxgate_session={t}"));
        }
        send(public, r.body(full(body.to_string())).unwrap()).await
    };
    // A failed attempt first (its password must not be logged either), then a real login.
    post(
        "/auth/login",
        serde_json::json!({"entry": "person", "account": WANG, "password": "Typo-Pass-99"}),
        None,
    )
    .await;
    let a = post("/auth/login", serde_json::json!({"entry": "enterprise", "taxpayer_id": ENT_A, "account": WANG, "password": WANG_PW}), None).await;
    let challenge = a.json()["challenge"].as_str().unwrap().to_string();
    post(
        "/auth/sms/send",
        serde_json::json!({"challenge": challenge}),
        None,
    )
    .await;
    let outbox = std::fs::read_to_string(dir.path().join("sms-outbox.jsonl")).unwrap();
    let code6 = serde_json::from_str::<serde_json::Value>(outbox.lines().last().unwrap()).unwrap()
        ["code"]
        .as_str()
        .unwrap()
        .to_string();
    let wrong = if code6 == "000000" {
        "111111"
    } else {
        "000000"
    };
    post(
        "/auth/sms/verify",
        serde_json::json!({"challenge": challenge, "code": wrong}),
        None,
    )
    .await;
    let v = post(
        "/auth/sms/verify",
        serde_json::json!({"challenge": challenge, "code": code6}),
        None,
    )
    .await;
    let token = session_token(&v);
    post(
        "/auth/password",
        serde_json::json!({"old_password": WANG_PW, "new_password": "Secret-New-77"}),
        Some(token.clone()),
    )
    .await;
    let _ = send(
        public,
        Request::get("/api/declare/x")
            .header("cookie", format!("taxgate_session={token}"))
            .body(empty())
            .unwrap(),
    )
    .await;
    drop(child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines().count() > 3,
        "the gateway logged nothing: {text}"
    );
    for secret in [
        WANG_PW,
        "Typo-Pass-99",
        "Secret-New-77",
        &code6,
        &token,
        &challenge,
        WANG,
    ] {
        assert!(
            !text.contains(secret),
            "`{secret}` appears in the logs:\n{text}"
        );
    }
}
