//! Open-loop load at a fixed rate, for latency: request i is due at `start + i / rate`, and its
//! latency runs from when it was due, not from when it was sent, so a slow server cannot hide
//! behind a waiting client (no coordinated omission). HTTP/1.1 over `--connections` keep-alive
//! connections (request i on connection i mod C), or HTTP/2 prior knowledge over one
//! connection with `--h2`. Prints one JSON line of percentiles.
//!
//! Usage: openloop --url http://127.0.0.1:8080/api/declare/x --rate 5000 --duration 10
//!        [--connections 64] [--header "cookie: taxgate_session=…"] [--h2]

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use taxgate_benches::{connect_h1, micros, percentile};

struct Args {
    url: http::Uri,
    rate: f64,
    duration: f64,
    connections: usize,
    headers: Vec<(String, String)>,
    h2: bool,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        url: "http://127.0.0.1:8080/".parse().map_err(|_| "url")?,
        rate: 1000.0,
        duration: 10.0,
        connections: 64,
        headers: Vec::new(),
        h2: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = val()?.parse().map_err(|e| format!("--url: {e}"))?,
            "--rate" => a.rate = val()?.parse().map_err(|e| format!("--rate: {e}"))?,
            "--duration" => a.duration = val()?.parse().map_err(|e| format!("--duration: {e}"))?,
            "--connections" => {
                a.connections = val()?.parse().map_err(|e| format!("--connections: {e}"))?
            }
            "--header" => {
                let h = val()?;
                let (k, v) = h.split_once(':').ok_or("--header wants `name: value`")?;
                a.headers.push((k.trim().to_string(), v.trim().to_string()));
            }
            "--h2" => a.h2 = true,
            other => return Err(format!("unknown flag `{other}`")),
        }
    }
    if a.rate <= 0.0 || a.duration <= 0.0 || a.connections == 0 {
        return Err("rate, duration and connections must be positive".into());
    }
    Ok(a)
}

fn request(args: &Args) -> Request<Empty<Bytes>> {
    let path = args.url.path_and_query().map_or("/", |p| p.as_str());
    let mut b = Request::get(path);
    if !args.h2 {
        b = b.header(
            "host",
            args.url.authority().map_or("localhost", |a| a.as_str()),
        );
    } else {
        b = b.uri(args.url.clone());
    }
    for (k, v) in &args.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    b.body(Empty::new()).unwrap_or_default()
}

/// (latencies in µs, errors)
type Tally = (Vec<u32>, u64);

async fn h1_connection(
    args: &Args,
    index: usize,
    start: Instant,
    total: u64,
) -> Result<Tally, String> {
    let mut sender = connect_h1(&args.url).await?;
    let mut lat = Vec::new();
    let mut errors = 0;
    let mut i = index as u64;
    while i < total {
        let due = start + Duration::from_secs_f64(i as f64 / args.rate);
        tokio::time::sleep_until(due.into()).await;
        match sender.send_request(request(args)).await {
            Ok(resp) if resp.status().is_success() => {
                let _ = resp.into_body().collect().await;
                lat.push(micros(due.elapsed()));
            }
            Ok(resp) => {
                let _ = resp.into_body().collect().await;
                errors += 1;
            }
            Err(_) => {
                errors += 1;
                break;
            }
        }
        i += args.connections as u64;
    }
    Ok((lat, errors))
}

async fn h2_run(args: &Args, start: Instant, total: u64) -> Result<Tally, String> {
    let addr = format!(
        "{}:{}",
        args.url.host().unwrap_or("127.0.0.1"),
        args.url.port_u16().unwrap_or(80)
    );
    let stream = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / args.rate);
        tokio::time::sleep_until(due.into()).await;
        let mut s = sender.clone();
        let req = request(args);
        tasks.push(tokio::spawn(async move {
            match s.send_request(req).await {
                Ok(resp) if resp.status().is_success() => {
                    let _ = resp.into_body().collect().await;
                    Some(micros(due.elapsed()))
                }
                _ => None,
            }
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        match t.await {
            Ok(Some(us)) => lat.push(us),
            _ => errors += 1,
        }
    }
    Ok((lat, errors))
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("openloop: {e}");
            std::process::exit(2);
        }
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        std::process::exit(1);
    };
    let total = (args.rate * args.duration) as u64;
    let (mut lat, errors, elapsed) = rt.block_on(async {
        let start = Instant::now() + Duration::from_millis(100);
        let results: Vec<Result<Tally, String>> = if args.h2 {
            vec![h2_run(&args, start, total).await]
        } else {
            let futs = (0..args.connections).map(|c| h1_connection(&args, c, start, total));
            futures_util::future::join_all(futs).await
        };
        let mut lat = Vec::new();
        let mut errors = 0u64;
        for r in results {
            match r {
                Ok((l, e)) => {
                    lat.extend(l);
                    errors += e;
                }
                Err(e) => {
                    eprintln!("openloop: {e}");
                    errors += 1;
                }
            }
        }
        (lat, errors, start.elapsed())
    });
    lat.sort_unstable();
    println!(
        "{{\"rate\":{},\"sent\":{},\"ok\":{},\"errors\":{},\"achieved_rps\":{:.0},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{}}}",
        args.rate,
        total,
        lat.len(),
        errors,
        lat.len() as f64 / elapsed.as_secs_f64(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.90),
        percentile(&lat, 0.99),
        percentile(&lat, 0.999),
        lat.last().copied().unwrap_or(0)
    );
}
