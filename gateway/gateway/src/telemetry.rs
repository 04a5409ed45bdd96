//! OpenTelemetry traces (CONTRACT section 12).
//!
//! Every request is a `tracing` span ([`request_span`], created by the proxy through
//! [`taxgate_proxy::Pipeline::span`]) with children for the session lookup and the decision
//! (gate.rs) and for the upstream call ([`upstream_call`]). With `[telemetry] otlp_endpoint`
//! set, [`Telemetry::layer`] bridges those spans to the OpenTelemetry SDK (tracing-opentelemetry)
//! whose batch processor posts them to the collector as OTLP/HTTP protobuf from its own thread:
//! a request only hands its finished spans to a bounded queue, so a collector that is slow or
//! down never holds up or fails a request; failed exports are counted
//! ([`EXPORT_FAILURES`]). Without an endpoint no layer is installed, the spans are disabled at
//! their callsite and cost one atomic load each.
//!
//! Whatever the export, the upstream receives a W3C `traceparent` for the gateway's call to it.
//! A client's `traceparent` (and `tracestate`) continues its trace only from a peer in
//! `[server] trusted_proxies`; from anyone else both headers are dropped and a new trace starts.
//!
//! Span attributes are the method, the route, the action, the decision, its reason code, the
//! audit id, the upstream's name and the status: never a path (it may hold an ID number), a
//! header, a token, a code or a password.

mod export;

use http::{HeaderName, HeaderValue, Request};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry::{Context, propagation::TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, IdGenerator, RandomIdGenerator, Sampler,
    SdkTracerProvider,
};
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::TelemetryConfig;
use crate::metrics::Counter;
use taxgate_proxy::ConnInfo;

pub use export::{EXPORT_FAILURES, SPANS_EXPORTED};

/// The target of every span meant for export: the log output leaves it out, the OpenTelemetry
/// layer takes only it.
pub const TARGET: &str = "taxgate::trace";

/// The W3C Trace Context request headers.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// See [`TRACEPARENT`].
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The trace a trusted proxy's request belongs to, kept in the request's extensions between
/// [`request_span`] and [`upstream_call`].
#[derive(Debug, Clone)]
struct ClientTrace(SpanContext);

/// The tracer provider while export is on; flushes what is queued when shut down.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Start the exporter described by `config` (nothing when `otlp_endpoint` is absent). Must
    /// be called inside the gateway's tokio runtime: the exporter's HTTP requests run on it.
    pub fn start(config: &TelemetryConfig) -> Result<Telemetry, String> {
        let Some(url) = config.traces_url() else {
            return Ok(Telemetry { provider: None });
        };
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| "telemetry: no async runtime to export on".to_string())?;
        let timeout = std::time::Duration::from_secs(config.export_timeout_secs);
        let exporter = export::exporter(&url, timeout, handle)?;
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(config.max_queue_size)
            .with_max_export_batch_size(config.max_queue_size.min(2048))
            .with_scheduled_delay(std::time::Duration::from_secs(1))
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(
                opentelemetry_sdk::Resource::builder_empty()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        tracing::info!(endpoint = %url, "exporting traces over OTLP/HTTP");
        Ok(Telemetry {
            provider: Some(provider),
        })
    }

    /// Whether spans are exported.
    pub fn enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// The `tracing` layer that turns the gateway's spans (target [`TARGET`]) into
    /// OpenTelemetry spans, or `None` when export is off.
    pub fn layer<S>(&self) -> Option<Box<dyn tracing_subscriber::Layer<S> + Send + Sync>>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
    {
        use tracing_subscriber::Layer as _;
        let provider = self.provider.as_ref()?;
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("taxgate"))
            .with_location(false)
            .with_threads(false)
            .with_level(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target(TARGET, tracing::Level::INFO),
            );
        Some(Box::new(layer))
    }

    /// Export what is still queued (bounded by the export timeout) and stop. Blocks: call it
    /// off the async workers.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "traces not all exported at shutdown");
        }
    }
}

/// The log filter's directive that keeps the trace spans out of the log output.
pub const LOG_DIRECTIVE: &str = "taxgate::trace=off";

/// The span of one request, made before anything else looks at it. From a trusted proxy, a
/// valid `traceparent` becomes its parent (and is remembered for [`upstream_call`]); from
/// anyone else the client's `traceparent` and `tracestate` are removed, so they reach neither
/// the trace nor the upstream.
pub fn request_span(req: &mut Request<hyper::body::Incoming>, conn: &ConnInfo) -> Span {
    let client = if conn.trusted_peer {
        let cx = TraceContextPropagator::new()
            .extract(&opentelemetry_http::HeaderExtractor(req.headers()));
        let sc = cx.span().span_context().clone();
        sc.is_valid().then_some(sc)
    } else {
        None
    };
    let headers = req.headers_mut();
    headers.remove(&TRACEPARENT);
    headers.remove(&TRACESTATE);
    let span = tracing::info_span!(
        target: TARGET,
        "request",
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = req.method().as_str(),
        http.route = Empty,
        taxgate.action = Empty,
        http.response.status_code = Empty,
    );
    if let Some(sc) = client {
        if !span.is_disabled() {
            let _ = span.set_parent(Context::new().with_remote_span_context(sc.clone()));
        }
        req.extensions_mut().insert(ClientTrace(sc));
    }
    span
}

/// Name the current request span after its route (`POST /api/declare`) and action.
pub fn record_route(method: &http::Method, prefix: &str, action: &str) {
    let span = Span::current();
    if span.is_disabled() {
        return;
    }
    // The span was started when the request entered it: its name changes through the SDK.
    span.context()
        .span()
        .update_name(format!("{method} {prefix}"));
    span.record("http.route", prefix);
    span.record("taxgate.action", action);
}

/// Name the current request span after one of the gateway's own endpoints: its path with
/// every segment that could be an id (a digit in it, or longer than 24 characters) read as
/// `{id}` (`/account/personnel/{id}/revoke`), so no identifier reaches the trace.
pub fn record_own_path(method: &http::Method, path: &str) {
    let span = Span::current();
    if span.is_disabled() {
        return;
    }
    let route = own_route(path);
    span.context()
        .span()
        .update_name(format!("{method} {route}"));
    span.record("http.route", route.as_str());
}

fn own_route(path: &str) -> String {
    let mut route = String::with_capacity(path.len());
    for segment in path.split('/').skip(1).take(6) {
        route.push('/');
        if segment.len() > 24 || segment.bytes().any(|b| b.is_ascii_digit()) {
            route.push_str("{id}");
        } else {
            route.push_str(segment);
        }
    }
    if route.is_empty() {
        route.push('/');
    }
    route
}

/// Record the answer's status on the current request span (5xx marks it failed).
pub fn record_status(status: u16) {
    let span = Span::current();
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
}

/// The span of the call to `upstream` (a child of the request span) and the trace headers the
/// upstream receives: `traceparent` with this span's id, and `tracestate` when a trusted caller
/// sent one. With export off the ids are made here (the trusted caller's trace id, else a new
/// one), so the upstream always gets a `traceparent`.
pub fn upstream_call<B>(
    req: &Request<B>,
    upstream: &str,
) -> (Span, Vec<(HeaderName, HeaderValue)>) {
    let span = tracing::info_span!(
        target: TARGET,
        "upstream",
        otel.kind = "client",
        taxgate.upstream = upstream,
        http.response.status_code = Empty,
        error.type = Empty,
    );
    let recorded = if span.is_disabled() {
        None
    } else {
        let sc = span.context().span().span_context().clone();
        sc.is_valid().then_some(sc)
    };
    let sc = recorded.unwrap_or_else(|| {
        let ids = RandomIdGenerator::default();
        match req.extensions().get::<ClientTrace>() {
            Some(ClientTrace(parent)) => SpanContext::new(
                parent.trace_id(),
                ids.new_span_id(),
                parent.trace_flags(),
                false,
                parent.trace_state().clone(),
            ),
            None => SpanContext::new(
                ids.new_trace_id(),
                ids.new_span_id(),
                TraceFlags::default(),
                false,
                TraceState::default(),
            ),
        }
    });
    (span, trace_headers(&sc))
}

fn trace_headers(sc: &SpanContext) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(2);
    if let Ok(v) =
        HeaderValue::from_str(&traceparent(sc.trace_id(), sc.span_id(), sc.trace_flags()))
    {
        out.push((TRACEPARENT.clone(), v));
    }
    let state = sc.trace_state().header();
    if !state.is_empty()
        && let Ok(v) = HeaderValue::from_str(&state)
    {
        out.push((TRACESTATE.clone(), v));
    }
    out
}

/// `00-<trace id>-<span id>-<flags>` (W3C Trace Context, version 00).
fn traceparent(trace: TraceId, span: SpanId, flags: TraceFlags) -> String {
    format!("00-{trace}-{span}-{:02x}", flags.to_u8())
}

/// Registered with the other counters at start.
pub fn counters() -> [&'static Counter; 2] {
    [&SPANS_EXPORTED, &EXPORT_FAILURES]
}

#[cfg(test)]
#[expect(clippy::indexing_slicing, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn own_routes_hold_no_identifier() {
        assert_eq!(own_route("/auth/sms/verify"), "/auth/sms/verify");
        assert_eq!(
            own_route("/account/personnel/b_1f3a/revoke"),
            "/account/personnel/{id}/revoke"
        );
        assert_eq!(
            own_route("/account/sessions/abcdefghijklmnopqrstuvwxyzAB/revoke"),
            "/account/sessions/{id}/revoke"
        );
        assert_eq!(own_route("/login"), "/login");
        assert_eq!(own_route("/"), "/");
    }

    #[test]
    fn traceparent_is_w3c_version_00() {
        let t = traceparent(
            TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736),
            SpanId::from(0x00f067aa0ba902b7),
            TraceFlags::SAMPLED,
        );
        assert_eq!(t, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    }

    #[test]
    fn without_export_the_upstream_still_gets_a_fresh_traceparent() {
        let req = Request::get("/").body(()).unwrap_or_default();
        let (span, headers) = upstream_call(&req, "etax");
        assert!(span.is_disabled());
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert_eq!(headers[0].0, TRACEPARENT);
        let value = headers[0].1.to_str().unwrap();
        assert_eq!(value.len(), 55, "{value}");
        assert!(
            value.starts_with("00-") && value.ends_with("-00"),
            "{value}"
        );
    }

    #[test]
    fn without_export_a_trusted_callers_trace_id_and_state_are_kept() {
        let parent = SpanContext::new(
            TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736),
            SpanId::from(0x00f067aa0ba902b7),
            TraceFlags::SAMPLED,
            true,
            "vendor=x".parse().unwrap_or_default(),
        );
        let mut req = Request::get("/").body(()).unwrap_or_default();
        req.extensions_mut().insert(ClientTrace(parent));
        let (_, headers) = upstream_call(&req, "etax");
        let values: Vec<_> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap_or_default()))
            .collect();
        assert_eq!(values.len(), 2, "{values:?}");
        assert_eq!(values[1], ("tracestate", "vendor=x"));
        let (name, tp) = values[0];
        assert_eq!(name, "traceparent");
        assert!(
            tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{tp}"
        );
        assert!(
            !tp.contains("00f067aa0ba902b7") && tp.ends_with("-01"),
            "{tp}"
        );
    }
}
