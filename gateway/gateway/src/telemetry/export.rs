//! The OTLP/HTTP exporter: opentelemetry-otlp's protobuf encoding and retries, over the
//! gateway's own hyper client (hyper-util + hyper-rustls with the ring provider, as for the
//! upstreams) instead of a second HTTP stack, with every export counted.
//!
//! The SDK's batch processor exports from a thread of its own and waits there; the request
//! itself runs on the gateway's tokio runtime (the client needs its reactor and timers), so a
//! collector that is slow or down costs that thread time, never a request.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use crate::metrics::Counter;

/// Span batches the collector did not take (unreachable, refused, timed out).
pub static EXPORT_FAILURES: Counter = Counter::new(
    "taxgate_trace_export_failures_total",
    "Span batches the OTLP collector did not accept (down, refusing, too slow); their spans are lost, requests are not affected.",
);
/// Spans the collector accepted.
pub static SPANS_EXPORTED: Counter = Counter::new(
    "taxgate_trace_spans_exported_total",
    "Spans the OTLP collector accepted.",
);

/// The largest collector answer read (OTLP answers are a few bytes).
const MAX_ANSWER: usize = 64 * 1024;

/// The OTLP span exporter posting to `url`, wrapped to count.
pub(super) fn exporter(
    url: &str,
    timeout: Duration,
    handle: tokio::runtime::Handle,
) -> Result<Counted, String> {
    let client = Collector::new(timeout, handle)?;
    let inner = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(timeout)
        .build()
        .map_err(|e| format!("telemetry.otlp_endpoint: {e}"))?;
    Ok(Counted(inner))
}

/// An HTTP client for the exporter that runs each request on the gateway's runtime.
#[derive(Clone)]
struct Collector {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    handle: tokio::runtime::Handle,
    timeout: Duration,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector").finish_non_exhaustive()
    }
}

impl Collector {
    fn new(timeout: Duration, handle: tokio::runtime::Handle) -> Result<Collector, String> {
        let mut tls = taxgate_proxy::tls::client_config(None, None)
            .map_err(|e| format!("telemetry: tls: {e}"))?;
        // The connector sets ALPN itself (and refuses a config that already has it).
        tls.alpn_protocols.clear();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .build(connector);
        Ok(Collector {
            client,
            handle,
            timeout,
        })
    }

    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let timeout = self.timeout;
        let task = self.handle.spawn(async move {
            let exchange = async {
                let response = client.request(request.map(Full::new)).await?;
                let (parts, body) = response.into_parts();
                let body = Limited::new(body, MAX_ANSWER).collect().await?.to_bytes();
                Ok::<_, HttpError>(Response::from_parts(parts, body))
            };
            match tokio::time::timeout(timeout, exchange).await {
                Ok(result) => result,
                Err(_) => Err(HttpError::from("the collector did not answer in time")),
            }
        });
        task.await.map_err(|e| HttpError::from(e.to_string()))?
    }
}

impl HttpClient for Collector {
    fn send_bytes<'a, 'b>(
        &'a self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(self.send(request))
    }
}

/// The OTLP exporter, counting what it exported and what failed.
#[derive(Debug)]
pub(super) struct Counted(opentelemetry_otlp::SpanExporter);

/// Unix seconds of the last failure logged: one warning a minute while the collector is down.
static LAST_WARNED: AtomicU64 = AtomicU64::new(0);

impl SpanExporter for Counted {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let n = batch.len() as u64;
        let export = self.0.export(batch);
        async move {
            let result = export.await;
            match &result {
                Ok(()) => SPANS_EXPORTED.add(n),
                Err(e) => {
                    EXPORT_FAILURES.inc();
                    let now = crate::pipeline::unix_now().max(0) as u64;
                    let last = LAST_WARNED.load(Ordering::Relaxed);
                    if now >= last + 60
                        && LAST_WARNED
                            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                            .is_ok()
                    {
                        tracing::warn!(error = %e, spans = n, "trace export failed; spans dropped");
                    }
                }
            }
            result
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.0.set_resource(resource);
    }
}
