//! Issue 2: the streaming reverse proxy, with authorization switched off by `[dev] allow_all`
//! (so these tests see the proxy alone) or left on (fail closed).

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use taxgate_e2e::*;
use tokio::sync::mpsc;

const ALLOW_ALL: &str = "\n[dev]\nallow_all = true\n";

async fn open_gateway(upstream: &str) -> (Gateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&config_text(dir.path(), upstream, ALLOW_ALL), dir.path()).await;
    (gw, dir)
}

#[tokio::test]
async fn routes_by_longest_prefix_and_404s_the_rest() {
    let mut up = Upstream::start().await;
    let (gw, _dir) = open_gateway(&up.url()).await;

    let a = get(gw.public, "/api/declare/vat?period=2026-10").await;
    assert_eq!(a.status, StatusCode::OK);
    let seen = up.next_seen().await;
    assert_eq!(seen.path_and_query, "/api/declare/vat?period=2026-10");
    assert_eq!(seen.method, "GET");

    // PUT is not among /api/declare's methods: 405 with Allow (CONTRACT section 2, amended;
    // it was 404 when the method took part in choosing the route).
    let a = send(
        gw.public,
        Request::put("/api/declare/vat").body(empty()).unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.error_code(), "method_not_allowed");
    assert_eq!(a.headers["allow"], "POST, GET, HEAD");

    for path in ["/", "/api/declarex", "/nowhere", "/metrics", "/healthz"] {
        let a = get(gw.public, path).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(a.error_code(), "route_not_found", "{path}");
        let body = a.json();
        assert!(body["error"]["message"].is_string());
        assert!(body["error"]["message_en"].is_string());
    }
    assert!(
        up.seen.try_recv().is_err(),
        "nothing unrouted reached the upstream"
    );
    gw.stop().await;
}

#[tokio::test]
async fn without_a_decision_nothing_is_forwarded() {
    let mut up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&config_text(dir.path(), &up.url(), ""), dir.path()).await;
    let a = get(gw.public, "/api/declare/vat").await;
    assert!(
        a.status == StatusCode::UNAUTHORIZED || a.status == StatusCode::FORBIDDEN,
        "{:?}",
        a.status
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        up.seen.try_recv().is_err(),
        "a request was forwarded without a decision"
    );
    gw.stop().await;
}

#[tokio::test]
async fn request_body_streams_before_it_is_complete() {
    let mut up = Upstream::start().await;
    let (gw, _dir) = open_gateway(&up.url()).await;

    let (tx, rx) = mpsc::channel::<Result<hyper::body::Frame<Bytes>, BoxError>>(4);
    let body = http_body_util::StreamBody::new(tokio_stream_from(rx)).boxed();
    let req = Request::post("/api/declare/first-chunk/upload")
        .header("host", "gw.test")
        .body(body)
        .unwrap();
    let addr = gw.public;
    let answer = tokio::spawn(async move { send(addr, req).await });

    tx.send(Ok(hyper::body::Frame::data(Bytes::from(vec![7u8; 1000]))))
        .await
        .unwrap();
    // The upstream must see the first chunk while the client still holds the rest back: a
    // proxy that buffers the whole body would never get here.
    let first = tokio::time::timeout(Duration::from_secs(5), up.first_chunk.recv())
        .await
        .expect("the first chunk did not reach the upstream before the body was complete")
        .unwrap();
    assert!(first > 0);
    for _ in 0..10 {
        tx.send(Ok(hyper::body::Frame::data(Bytes::from(vec![7u8; 1000]))))
            .await
            .unwrap();
    }
    drop(tx);
    let a = answer.await.unwrap();
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["body_len"], 11_000);
    gw.stop().await;
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn hop_by_hop_and_identity_headers_are_stripped() {
    let mut up = Upstream::start().await;
    let (gw, _dir) = open_gateway(&up.url()).await;
    let req = Request::get("/api/query/list")
        .header("host", "gw.test")
        .header("connection", "keep-alive, X-Private-Hop")
        .header("x-private-hop", "secret")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("X-Taxgate-Person", "110105194912310021")
        .header("x-TAXGATE-role", "legal_representative")
        .header("x-taxgate-enterprise", "91350200776049653A")
        .header("x-taxgate-enterprise", "91440101MA5CJQ4N59")
        .header("x-forwarded-for", "203.0.113.9")
        .header("cookie", "lang=zh; taxgate_session=abc; theme=dark")
        .header("authorization", "Bearer abc")
        .header("accept", "application/json")
        .body(empty())
        .unwrap();
    let a = send(gw.public, req).await;
    assert_eq!(a.status, StatusCode::OK);
    let seen = up.next_seen().await;
    for gone in [
        "x-private-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "authorization",
    ] {
        assert!(seen.header(gone).is_none(), "{gone} reached the upstream");
    }
    assert!(
        seen.headers
            .iter()
            .all(|(n, _)| !n.starts_with("x-taxgate-")),
        "client identity headers reached the upstream: {:?}",
        seen.headers
    );
    // A client's own x-forwarded-for is dropped: the peer is no trusted proxy (CONTRACT
    // section 3, amended; it used to be appended to).
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-host"), Some("gw.test"));
    assert_eq!(seen.header("cookie"), Some("lang=zh; theme=dark"));
    assert_eq!(seen.header("accept"), Some("application/json"));
    // The upstream's own hop-by-hop headers do not reach the client either.
    assert!(a.headers.get("x-upstream-hop").is_none());
    assert!(a.headers.get("keep-alive").is_none());
    gw.stop().await;
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_is_504() {
    // A port with nothing listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (gw, _dir) = open_gateway(&format!("http://{closed}")).await;
    let a = get(gw.public, "/api/declare/x").await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    assert_eq!(a.error_code(), "upstream_unavailable");
    gw.stop().await;

    // An upstream that accepts and closes without answering.
    let rude = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rude_addr = rude.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = rude.accept().await {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            drop(s);
        }
    });
    let (gw, _dir) = open_gateway(&format!("http://{rude_addr}")).await;
    let a = get(gw.public, "/api/declare/x").await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    assert_eq!(a.error_code(), "upstream_unavailable");
    gw.stop().await;

    let up = Upstream::start().await;
    let (gw, _dir) = open_gateway(&up.url()).await;
    let started = std::time::Instant::now();
    let a = get(gw.public, "/api/declare/slow/5000/x").await;
    assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(a.error_code(), "upstream_timeout");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "the 2 s upstream timeout fired after {took:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_response_cut_mid_body_is_not_reported_complete() {
    let up = Upstream::start().await;
    let (gw, _dir) = open_gateway(&up.url()).await;
    let resp = get_unread(gw.public, "/api/declare/cut/x").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.into_body().collect().await.is_err(),
        "a truncated upstream body was delivered as if complete"
    );
    gw.stop().await;
}

#[tokio::test]
async fn http2_over_tls_with_alpn() {
    let mut up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pki = test_pki(dir.path());
    let extra = format!(
        "{ALLOW_ALL}\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        pki.cert.display(),
        pki.key.display()
    );
    // [server.tls] must follow [server]; splice it in after the server table instead.
    let text = config_text(dir.path(), &up.url(), "").replace(
        "shutdown_grace_secs = 5\n",
        &format!(
            "shutdown_grace_secs = 5\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            pki.cert.display(),
            pki.key.display()
        ),
    ) + ALLOW_ALL;
    let _ = extra;
    let gw = Gateway::start(&text, dir.path()).await;
    let req = Request::post("https://localhost/api/declare/h2")
        .header("x-taxgate-person", "spoof")
        .body(full("hello over h2"))
        .unwrap();
    let a = send_h2_tls(gw.public, &pki.ca_der, req).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.version, http::Version::HTTP_2);
    let seen = up.next_seen().await;
    assert_eq!(seen.body_len, 13);
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert!(seen.header("x-taxgate-person").is_none());
    gw.stop().await;
}

#[tokio::test]
async fn oversized_request_head_is_refused() {
    let mut up = Upstream::start().await;
    let (gw, _dir) = open_gateway(&up.url()).await;
    let req = Request::get("/api/declare/x")
        .header("host", "gw.test")
        .header("x-big", "a".repeat(40 * 1024))
        .body(empty())
        .unwrap();
    let a = send(gw.public, req).await;
    assert_eq!(a.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(up.seen.try_recv().is_err());
    gw.stop().await;
}

#[tokio::test]
async fn admin_listener_serves_health_and_metrics() {
    let up = Upstream::start().await;
    let (gw, _dir) = open_gateway(&up.url()).await;
    let _ = get(gw.public, "/api/declare/x").await;
    let _ = get(gw.public, "/nowhere").await;
    let health = get(gw.admin, "/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    let metrics = get(gw.admin, "/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(
        text.contains("taxgate_requests_total{route=\"/api/declare\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(text.contains("taxgate_requests_total{route=\"(gateway)\",status=\"404\"} 1"));
    assert!(text.contains("taxgate_upstream_latency_seconds_count{upstream=\"etax\"} 1"));
    assert!(text.contains("taxgate_open_connections"));
    gw.stop().await;
}
