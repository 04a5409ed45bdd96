//! A fake OpenTelemetry collector: a hyper server that accepts OTLP/HTTP protobuf on
//! `POST /v1/traces`, decodes each export with the `opentelemetry-proto` types and keeps the
//! spans (and the raw bodies, for greps).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;

use crate::client::{TestBody, full};

/// One exported span with its resource's `service.name`.
#[derive(Debug, Clone)]
pub struct ExportedSpan {
    pub service: String,
    pub span: Span,
}

impl ExportedSpan {
    pub fn name(&self) -> &str {
        &self.span.name
    }
    pub fn trace_id(&self) -> String {
        hex::encode(&self.span.trace_id)
    }
    pub fn span_id(&self) -> String {
        hex::encode(&self.span.span_id)
    }
    pub fn parent_id(&self) -> String {
        hex::encode(&self.span.parent_span_id)
    }
    /// The attribute `key` as text (ints printed), if present.
    pub fn attr(&self, key: &str) -> Option<String> {
        self.span
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .map(any_text)
    }
}

fn any_text(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// Every attribute value of `kvs`, as text.
fn values(kvs: &[KeyValue]) -> impl Iterator<Item = String> + '_ {
    kvs.iter().filter_map(|kv| kv.value.as_ref()).map(any_text)
}

#[derive(Default)]
struct Received {
    spans: Vec<ExportedSpan>,
    bodies: Vec<Vec<u8>>,
    bad: Vec<String>,
}

/// The collector; stops with the test's runtime.
pub struct Collector {
    pub addr: SocketAddr,
    received: Arc<Mutex<Received>>,
}

impl Collector {
    pub async fn start() -> Collector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Received::default()));
        let store = received.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let store = store.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let store = store.clone();
                        async move { Ok::<_, std::convert::Infallible>(accept(req, &store).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Collector { addr, received }
    }

    /// `[telemetry]` pointing at this collector.
    pub fn config(&self) -> String {
        format!("\n[telemetry]\notlp_endpoint = \"http://{}\"\n", self.addr)
    }

    pub fn spans(&self) -> Vec<ExportedSpan> {
        self.received.lock().unwrap().spans.clone()
    }

    /// Every attribute value exported (span and resource attributes, span names), for greps.
    pub fn all_text(&self) -> Vec<String> {
        let r = self.received.lock().unwrap();
        let mut out = Vec::new();
        for body in &r.bodies {
            let export = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
            for rs in &export.resource_spans {
                if let Some(res) = &rs.resource {
                    out.extend(values(&res.attributes));
                }
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        out.push(s.name.clone());
                        out.extend(values(&s.attributes));
                        for e in &s.events {
                            out.push(e.name.clone());
                            out.extend(values(&e.attributes));
                        }
                        if let Some(st) = &s.status {
                            out.push(st.message.clone());
                        }
                    }
                }
            }
        }
        out
    }

    /// Requests that were not a decodable `POST /v1/traces`.
    pub fn bad_requests(&self) -> Vec<String> {
        self.received.lock().unwrap().bad.clone()
    }

    /// Wait until `pred` holds for the spans received (the batch processor exports once a
    /// second), at most 15 s.
    pub async fn wait_for(
        &self,
        what: &str,
        pred: impl Fn(&[ExportedSpan]) -> bool,
    ) -> Vec<ExportedSpan> {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let spans = self.spans();
            if pred(&spans) {
                return spans;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "collector: {what} not exported in 15 s; got {:#?}",
                spans
                    .iter()
                    .map(|s| (s.name(), s.trace_id(), s.span_id(), s.parent_id()))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn accept(req: Request<Incoming>, store: &Mutex<Received>) -> Response<TestBody> {
    let ok = req.method() == http::Method::POST
        && req.uri().path() == "/v1/traces"
        && req
            .headers()
            .get("content-type")
            .is_some_and(|v| v == "application/x-protobuf");
    let what = format!(
        "{} {} {:?}",
        req.method(),
        req.uri(),
        req.headers().get("content-type")
    );
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let mut r = store.lock().unwrap();
    match ExportTraceServiceRequest::decode(body.as_ref()) {
        Ok(export) if ok => {
            for rs in export.resource_spans {
                let service = rs
                    .resource
                    .as_ref()
                    .and_then(|res| res.attributes.iter().find(|kv| kv.key == "service.name"))
                    .and_then(|kv| kv.value.as_ref())
                    .map(any_text)
                    .unwrap_or_default();
                for ss in rs.scope_spans {
                    for span in ss.spans {
                        r.spans.push(ExportedSpan {
                            service: service.clone(),
                            span,
                        });
                    }
                }
            }
            r.bodies.push(body.to_vec());
            let mut resp = Response::new(full(Vec::new()));
            resp.headers_mut().insert(
                "content-type",
                http::HeaderValue::from_static("application/x-protobuf"),
            );
            resp
        }
        other => {
            r.bad.push(format!("{what}: {other:?}"));
            let mut resp = Response::new(full(Vec::new()));
            *resp.status_mut() = StatusCode::BAD_REQUEST;
            resp
        }
    }
}
