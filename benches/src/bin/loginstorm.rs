//! A login storm: `--concurrency` clients post the same password login to `/auth/login` in a
//! closed loop for `--duration` seconds (each one an argon2id verification on the gateway's
//! blocking pool). Run it beside `openloop` against a proxied route to see what a storm does to
//! proxied latency. Prints one JSON line: logins per second and login latency percentiles.
//!
//! Usage: loginstorm --url http://127.0.0.1:8080/auth/login --body '{"entry":…}'
//!        [--concurrency 16] [--duration 10]

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use taxgate_benches::{connect_h1, micros, percentile};

struct Args {
    url: http::Uri,
    body: String,
    concurrency: usize,
    duration: f64,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        url: "http://127.0.0.1:8080/auth/login"
            .parse()
            .map_err(|_| "url")?,
        body: String::new(),
        concurrency: 16,
        duration: 10.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = val()?.parse().map_err(|e| format!("--url: {e}"))?,
            "--body" => a.body = val()?,
            "--concurrency" => {
                a.concurrency = val()?.parse().map_err(|e| format!("--concurrency: {e}"))?
            }
            "--duration" => a.duration = val()?.parse().map_err(|e| format!("--duration: {e}"))?,
            other => return Err(format!("unknown flag `{other}`")),
        }
    }
    if a.body.is_empty() || a.concurrency == 0 || a.duration <= 0.0 {
        return Err("--body is required; concurrency and duration must be positive".into());
    }
    Ok(a)
}

/// (latencies in µs of successful logins, failures)
async fn client(args: &Args, until: Instant) -> Result<(Vec<u32>, u64), String> {
    let mut sender = connect_h1(&args.url).await?;
    let path = args.url.path_and_query().map_or("/", |p| p.as_str());
    let host = args.url.authority().map_or("localhost", |a| a.as_str());
    let (mut lat, mut failures) = (Vec::new(), 0u64);
    while Instant::now() < until {
        let req = Request::post(path)
            .header("host", host)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(args.body.clone())))
            .map_err(|e| e.to_string())?;
        let sent = Instant::now();
        match sender.send_request(req).await {
            Ok(resp) => {
                let ok = resp.status().is_success();
                let _ = resp.into_body().collect().await;
                if ok {
                    lat.push(micros(sent.elapsed()));
                } else {
                    failures += 1;
                }
            }
            Err(_) => {
                failures += 1;
                break;
            }
        }
    }
    Ok((lat, failures))
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("loginstorm: {e}");
            std::process::exit(2);
        }
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        std::process::exit(1);
    };
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(args.duration);
    let (mut lat, failures) = rt.block_on(async {
        let runs = (0..args.concurrency).map(|_| client(&args, until));
        let mut lat = Vec::new();
        let mut failures = 0u64;
        for r in futures_util::future::join_all(runs).await {
            match r {
                Ok((l, f)) => {
                    lat.extend(l);
                    failures += f;
                }
                Err(e) => {
                    eprintln!("loginstorm: {e}");
                    failures += 1;
                }
            }
        }
        (lat, failures)
    });
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    println!(
        "{{\"concurrency\":{},\"ok\":{},\"failures\":{},\"logins_per_sec\":{:.1},\"p50_ms\":{:.1},\"p99_ms\":{:.1},\"max_ms\":{:.1}}}",
        args.concurrency,
        lat.len(),
        failures,
        lat.len() as f64 / elapsed,
        f64::from(percentile(&lat, 0.50)) / 1000.0,
        f64::from(percentile(&lat, 0.99)) / 1000.0,
        f64::from(lat.last().copied().unwrap_or(0)) / 1000.0
    );
}
