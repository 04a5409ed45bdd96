//! Closed-loop load on Envoy's `envoy.service.auth.v3.Authorization/Check` (taxgate's
//! `[ext_authz] grpc_listen`), with a tonic client of the `envoy-types` protos: `--concurrency`
//! callers over one HTTP/2 connection (as Envoy multiplexes its ext_authz calls), each sending
//! the same allowed request for `--duration` seconds. Prints one JSON line: calls/s and latency
//! percentiles in µs. Every answer must be an allow; a denial is counted and fails the run.
//!
//! Usage: checkload --addr 127.0.0.1:9903 --cookie "taxgate_session=…" [--path /api/declare/x]
//!        [--duration 10] [--concurrency 64] [--token …]

use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use taxgate_benches::{micros, percentile};

struct Args {
    addr: String,
    cookie: String,
    path: String,
    duration: f64,
    concurrency: usize,
    token: Option<String>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        addr: "127.0.0.1:9903".into(),
        cookie: String::new(),
        path: "/api/declare/x".into(),
        duration: 10.0,
        concurrency: 64,
        token: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => a.addr = val()?,
            "--cookie" => a.cookie = val()?,
            "--path" => a.path = val()?,
            "--duration" => a.duration = val()?.parse().map_err(|e| format!("--duration: {e}"))?,
            "--concurrency" => {
                a.concurrency = val()?.parse().map_err(|e| format!("--concurrency: {e}"))?
            }
            "--token" => a.token = Some(val()?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

fn request(args: &Args) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: args.path.clone(),
                    host: "etax.example.cn".into(),
                    headers: [("cookie".to_string(), args.cookie.clone())].into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse()?;
    let client = AuthorizationClient::connect(format!("http://{}", args.addr)).await?;
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let mut client = client.clone();
        let req = request(&args);
        let token = args.token.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut denied = 0u64;
            while Instant::now() < deadline {
                let mut r = tonic::Request::new(req.clone());
                if let Some(t) = &token
                    && let Ok(v) = t.parse()
                {
                    r.metadata_mut().insert("x-taxgate-ext-token", v);
                }
                let t0 = Instant::now();
                let answer = client.check(r).await;
                latencies.push(micros(t0.elapsed()));
                match answer {
                    Ok(a) if a.get_ref().status.as_ref().is_some_and(|s| s.code == 0) => {}
                    _ => denied += 1,
                }
            }
            (latencies, denied)
        }));
    }
    let mut all = Vec::new();
    let mut denied = 0;
    for t in tasks {
        let (l, d) = t.await?;
        all.extend(l);
        denied += d;
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort_unstable();
    println!(
        "{}",
        serde_json::json!({
            "calls": all.len(),
            "denied": denied,
            "calls_per_sec": (all.len() as f64 / secs).round(),
            "p50_us": percentile(&all, 0.50),
            "p90_us": percentile(&all, 0.90),
            "p99_us": percentile(&all, 0.99),
        })
    );
    if denied > 0 {
        return Err(format!("{denied} calls were not allowed").into());
    }
    Ok(())
}
