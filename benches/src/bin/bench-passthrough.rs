//! The baseline of the load harness: taxgate's own proxy (`taxgate_proxy`: connection
//! serving, header hygiene, pooled upstream client, streaming) with a pipeline that forwards
//! every request to one upstream — no route table, no session, no decision, no audit. The
//! difference between this and the gateway is exactly what authorization costs. It is a bench
//! binary, not a mode of `taxgate`, so no production config can reach it.
//! Usage: `bench-passthrough LISTEN UPSTREAM_URL`.

/// The gateway's allocator, so the baseline differs from `taxgate serve` only by authorization.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::Duration;

use http::Request;
use http::Response;
use hyper::body::Incoming;
use taxgate_gateway::metrics::Metrics;
use taxgate_proxy::body::{Body, boxed};
use taxgate_proxy::{
    ConnInfo, ConnStats, Forward, Outcome, Pipeline, ProxyError, ServeOptions, Step, Upstream,
    UpstreamOptions, serve,
};

/// The one upstream, and the same metrics the gateway keeps per request.
struct PassThrough(Arc<Upstream>, Metrics);

impl Pipeline for PassThrough {
    async fn request(&self, req: Request<Incoming>, _conn: ConnInfo) -> Step {
        Step::Forward(Forward {
            request: req.map(boxed),
            upstream: Arc::clone(&self.0),
            identity: Vec::new(),
            route: 0,
            reserved_cookie: Arc::from(""),
            span: tracing::Span::none(),
        })
    }

    fn rescue(&self, error: &ProxyError) -> Response<Body> {
        taxgate_gateway::rescue::proxy(error).into_response()
    }

    fn logging(&self, outcome: &Outcome) {
        self.1.request(outcome.route, outcome.status);
        if let Some(u) = &outcome.upstream
            && let Some(latency) = u.latency
        {
            self.1.upstream_latency(u.index, latency.as_secs_f64());
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:8081".into());
    let upstream_url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:9000".into());
    let upstream = Upstream::new(
        0,
        &UpstreamOptions {
            name: "bench".into(),
            url: upstream_url,
            timeout: Duration::from_secs(30),
            pool_max_idle: 256,
            ..Default::default()
        },
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen).await?;
        eprintln!("bench-passthrough on {}", listener.local_addr()?);
        let metrics = Metrics::new(vec!["/".into()], vec!["bench".into()]);
        serve(
            listener,
            None,
            Arc::new(PassThrough(Arc::new(upstream), metrics)),
            Arc::new(ConnStats::default()),
            ServeOptions {
                max_header_bytes: 16 * 1024,
                header_read_timeout: Duration::from_secs(10),
                shutdown_grace: Duration::from_secs(1),
                h2c: true,
                trusted_proxies: Arc::from(Vec::new()),
                hsts: None,
                max_connections: 0,
                max_connections_per_address: 0,
                forwarded_host: None,
            },
            std::future::pending::<()>(),
        )
        .await;
        Ok(())
    })
}
