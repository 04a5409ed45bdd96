//! Issue 20: a client that uploads its body too slowly is told so (408 `client_body_timeout`,
//! counted apart), instead of the 504 `upstream_timeout` that blamed the backend; a backend that
//! is slow with the whole body in hand is still 504.

use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use taxgate_e2e::{Gateway, Upstream, config_text, get, raw_statuses};

async fn counter(admin: std::net::SocketAddr, name: &str) -> u64 {
    let a = get(admin, "/metrics").await;
    assert_eq!(a.status, StatusCode::OK);
    String::from_utf8_lossy(&a.body)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_trickled_upload_is_the_clients_timeout_not_the_upstreams() {
    let mut up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The upstream's timeout is 2 s (config_text).
    let text = config_text(dir.path(), &up.url(), "\n[dev]\nallow_all = true\n");
    let gw = Gateway::start(&text, dir.path()).await;

    let mut s = tokio::net::TcpStream::connect(gw.public).await.unwrap();
    s.write_all(
        b"POST /api/declare/upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    // One byte every 200 ms: still uploading when the 2 s run out.
    let mut answer = Vec::new();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 4096];
    while started.elapsed() < Duration::from_secs(6) {
        let _ = s.write_all(b"x").await;
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}}") {
                    break;
                }
            }
            Err(_) => {}
        }
    }
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(raw_statuses(&answer), [408], "{text}");
    assert!(text.contains("\"client_body_timeout\""), "{text}");
    assert!(started.elapsed() >= Duration::from_secs(2));
    let seen = up.next_seen().await;
    assert_eq!(seen.path_and_query, "/api/declare/upload");
    assert!(
        seen.body_error.is_some(),
        "the upstream saw the upload abandoned"
    );
    assert_eq!(
        counter(gw.admin, "taxgate_client_body_timeouts_total").await,
        1
    );

    // The backend slow with the whole body in hand: its timeout, 504, not counted as the
    // client's.
    let mut s = tokio::net::TcpStream::connect(gw.public).await.unwrap();
    s.write_all(
        b"POST /api/declare/slow/3000/x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(6), s.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(raw_statuses(&answer), [504], "{text}");
    assert!(text.contains("\"upstream_timeout\""), "{text}");
    assert_eq!(
        counter(gw.admin, "taxgate_client_body_timeouts_total").await,
        1
    );
    gw.stop().await;
}
