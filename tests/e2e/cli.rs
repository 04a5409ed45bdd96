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

    let stream = tokio::net::TcpStream::connect(public).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(
            Request::get(format!("/api/declare/stream/{SIZE}"))
                .header("host", "gw.test")
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
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
