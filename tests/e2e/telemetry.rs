//! Issue 20: OpenTelemetry traces (CONTRACT section 12), seen from a fake OTLP/HTTP collector
//! that decodes the real binary's exports with the `opentelemetry-proto` types.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;

use taxgate_e2e::{
    Answer, Collector, ENT_A, ExportedSpan, ServeChild, TestBody, Upstream, WANG, WANG_PW,
    config_text, empty, get, login_sms_at, migrate_and_import, read, seed_json,
};

/// One HTTP/1.1 request to `addr` from the local address `src` (127.0.0.2 is a trusted proxy
/// in these tests, 127.0.0.1 is not).
async fn send_from(src: IpAddr, addr: SocketAddr, req: Request<TestBody>) -> Answer {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(src, 0)).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    read(sender.send_request(req).await.unwrap()).await
}

const TRUSTED: [u8; 4] = [127, 0, 0, 2];
const UNTRUSTED: [u8; 4] = [127, 0, 0, 1];

fn traced_get(path: &str, token: &str, traceparent: &str, tracestate: &str) -> Request<TestBody> {
    Request::get(path)
        .header("host", "gw.test")
        .header("cookie", format!("taxgate_session={token}"))
        .header("traceparent", traceparent)
        .header("tracestate", tracestate)
        .body(empty())
        .unwrap()
}

/// `00-<trace>-<parent>-<flags>` split.
fn parts(traceparent: &str) -> (String, String, String) {
    let p: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(p.len(), 4, "{traceparent}");
    assert_eq!(p[0], "00", "{traceparent}");
    assert_eq!((p[1].len(), p[2].len()), (32, 16), "{traceparent}");
    (p[1].to_string(), p[2].to_string(), p[3].to_string())
}

fn named<'a>(spans: &'a [ExportedSpan], name: &str) -> Vec<&'a ExportedSpan> {
    spans.iter().filter(|s| s.name() == name).collect()
}

fn children<'a>(spans: &'a [ExportedSpan], parent: &ExportedSpan) -> Vec<&'a ExportedSpan> {
    spans
        .iter()
        .filter(|s| s.parent_id() == parent.span_id() && s.trace_id() == parent.trace_id())
        .collect()
}

fn by_id<'a>(spans: &'a [ExportedSpan], id: &str) -> &'a ExportedSpan {
    spans
        .iter()
        .find(|s| s.span_id() == id)
        .unwrap_or_else(|| panic!("no span {id}"))
}

/// The request span above the upstream span the upstream's `traceparent` names, checked to
/// have the session lookup, the decision (with `audit_id`) and the upstream call as children.
fn proxied_request<'a>(
    spans: &'a [ExportedSpan],
    traceparent: &str,
    audit_id: &str,
) -> &'a ExportedSpan {
    let (trace, parent, _) = parts(traceparent);
    let upstream = by_id(spans, &parent);
    assert_eq!(upstream.name(), "upstream");
    assert_eq!(upstream.trace_id(), trace, "the upstream saw this trace");
    assert_eq!(upstream.span.kind, 3, "client span");
    assert_eq!(upstream.attr("taxgate.upstream").as_deref(), Some("etax"));
    assert_eq!(
        upstream.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    let request = by_id(spans, &upstream.parent_id());
    assert_eq!(request.name(), "GET /api/declare");
    assert_eq!(request.span.kind, 2, "server span");
    assert_eq!(request.attr("http.route").as_deref(), Some("/api/declare"));
    assert_eq!(request.attr("taxgate.action").as_deref(), Some("declare"));
    assert_eq!(
        request.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    let kids = children(spans, request);
    let mut names: Vec<&str> = kids.iter().map(|s| s.name()).collect();
    names.sort();
    assert_eq!(
        names,
        ["decision", "session lookup", "upstream"],
        "{kids:#?}"
    );
    let decision = kids.iter().find(|s| s.name() == "decision").unwrap();
    assert_eq!(decision.attr("taxgate.audit_id").as_deref(), Some(audit_id));
    assert_eq!(decision.attr("taxgate.decision").as_deref(), Some("allow"));
    assert_eq!(decision.attr("taxgate.action").as_deref(), Some("declare"));
    request
}

#[tokio::test]
async fn a_login_and_proxied_requests_are_traced_to_the_collector() {
    let mut up = Upstream::start().await;
    let collector = Collector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path(), &up.url(), &collector.config()).replacen(
        "shutdown_grace_secs = 5",
        "shutdown_grace_secs = 5\ntrusted_proxies = [\"127.0.0.2\"]",
        1,
    );
    migrate_and_import(dir.path(), &text, &seed_json());
    let gw = ServeChild::start(dir.path(), "gw", &text).await;
    let outbox = dir.path().join("sms-outbox.jsonl");
    let token = login_sms_at(
        gw.public,
        &outbox,
        json!({"entry": "enterprise", "taxpayer_id": ENT_A, "account": WANG, "password": WANG_PW}),
        "13800138000",
    )
    .await;
    let code = std::fs::read_to_string(&outbox)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|m| m["code"].as_str().map(String::from))
        .next_back()
        .unwrap();

    // An untrusted client's trace context is neither continued nor forwarded.
    let theirs = "00-11111111111111111111111111111111-2222222222222222-01";
    let a = send_from(
        IpAddr::from(UNTRUSTED),
        gw.public,
        traced_get("/api/declare/x", &token, theirs, "evil=1"),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let untrusted = up.next_seen().await;
    let untrusted_tp = untrusted.header("traceparent").unwrap().to_string();
    assert!(!untrusted_tp.contains("1111111111111111"), "{untrusted_tp}");
    assert_eq!(untrusted.headers_named("traceparent").len(), 1);
    assert!(untrusted.header("tracestate").is_none());
    let untrusted_audit = untrusted.header("x-taxgate-decision").unwrap().to_string();

    // A trusted proxy's is continued: same trace id, its span as the parent, its state kept.
    let proxy_trace = "0af7651916cd43dd8448eb211c80319c";
    let proxy_span = "b7ad6b7169203331";
    let a = send_from(
        IpAddr::from(TRUSTED),
        gw.public,
        traced_get(
            "/api/declare/y",
            &token,
            &format!("00-{proxy_trace}-{proxy_span}-01"),
            "vendor=abc",
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let trusted = up.next_seen().await;
    let trusted_tp = trusted.header("traceparent").unwrap().to_string();
    let (trace, parent, flags) = parts(&trusted_tp);
    assert_eq!((trace.as_str(), flags.as_str()), (proxy_trace, "01"));
    assert_ne!(
        parent, proxy_span,
        "the gateway's own span, not the proxy's"
    );
    assert_eq!(trusted.header("tracestate"), Some("vendor=abc"));
    let trusted_audit = trusted.header("x-taxgate-decision").unwrap().to_string();

    let spans = collector
        .wait_for("both proxied requests and the login", |spans| {
            let ids: Vec<String> = spans.iter().map(ExportedSpan::span_id).collect();
            let (_, a, _) = parts(&untrusted_tp);
            let (_, b, _) = parts(&trusted_tp);
            ids.contains(&a)
                && ids.contains(&b)
                && spans
                    .iter()
                    .filter(|s| s.name() == "POST /auth/sms/verify")
                    .count()
                    == 1
        })
        .await;
    assert!(
        collector.bad_requests().is_empty(),
        "{:?}",
        collector.bad_requests()
    );
    assert!(spans.iter().all(|s| s.service == "taxgate"));

    let request = proxied_request(&spans, &untrusted_tp, &untrusted_audit);
    assert!(
        request.parent_id().is_empty(),
        "a new trace: the request span is its root"
    );
    assert_ne!(request.trace_id(), "11111111111111111111111111111111");
    let request = proxied_request(&spans, &trusted_tp, &trusted_audit);
    assert_eq!(request.trace_id(), proxy_trace);
    assert_eq!(request.parent_id(), proxy_span);

    // The login: its request spans, each decision a child of its request.
    let login = named(&spans, "POST /auth/login");
    assert_eq!(login.len(), 1);
    let decisions = children(&spans, login[0]);
    assert!(
        decisions
            .iter()
            .any(|d| d.name() == "decision" && d.attr("taxgate.action").as_deref() == Some("login")),
        "{decisions:#?}"
    );
    let verify = named(&spans, "POST /auth/sms/verify")[0];
    assert_eq!(
        verify.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    assert!(
        children(&spans, verify)
            .iter()
            .any(|d| d.name() == "decision")
    );

    // No secret in anything exported: token, code, password, full ID number (also not in the
    // raw protobuf bytes).
    let text = collector.all_text();
    assert!(!text.is_empty());
    for secret in [token.as_str(), code.as_str(), WANG_PW, WANG] {
        let found: Vec<&String> = text.iter().filter(|v| v.contains(secret)).collect();
        assert!(found.is_empty(), "`{secret}` exported in {found:?}");
    }
    let log = std::fs::read_to_string(dir.path().join("gw.log")).unwrap();
    assert!(
        !log.contains("taxgate::trace"),
        "spans stay out of the log: {log}"
    );
}

#[tokio::test]
async fn a_collector_that_is_down_fails_no_request_and_is_counted() {
    let mut up = Upstream::start().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(
        dir.path(),
        &up.url(),
        &format!(
            "\n[dev]\nallow_all = true\n[telemetry]\notlp_endpoint = \"http://{dead}\"\nexport_timeout_secs = 1\n"
        ),
    );
    let gw = ServeChild::start(dir.path(), "gw", &text).await;
    let failures = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("taxgate_trace_export_failures_total "))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or_else(|| panic!("no export failure counter in {metrics}"))
    };
    assert_eq!(failures(&metrics(gw.admin).await), 0);
    let started = std::time::Instant::now();
    let mut last_failures = 0;
    for i in 0..40 {
        let a = get(gw.public, &format!("/api/declare/{i}")).await;
        assert_eq!(a.status, StatusCode::OK, "request {i}");
        let seen = up.next_seen().await;
        assert!(seen.header("traceparent").is_some());
        tokio::time::sleep(Duration::from_millis(100)).await;
        last_failures = failures(&metrics(gw.admin).await);
        if i >= 20 && last_failures > 0 {
            break;
        }
    }
    assert!(last_failures > 0, "no failed export counted");
    assert!(started.elapsed() < Duration::from_secs(20));
}

async fn metrics(admin: SocketAddr) -> String {
    let a = get(admin, "/metrics").await;
    assert_eq!(a.status, StatusCode::OK);
    String::from_utf8(a.body.to_vec()).unwrap()
}
