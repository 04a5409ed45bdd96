//! Load over a live population (issue 17): requests rotate over the bearer tokens of a token
//! file written by `population` (`TOKEN KIND` a line), uniformly or Zipf-skewed, against a mix
//! of routes: enterprise and agent sessions send `--mix` (default 80% `query`, 10% `declare`,
//! 10% `invoice`, so tax handlers asking for `invoice` and invoice clerks asking for `declare`
//! are denied: about 5% of requests), person-entry sessions `personal_tax`. HTTP/1.1 keep-alive
//! over `--connections` connections, one client thread.
//!
//! - `--mode closed` (default): every connection sends its next request as soon as the last
//!   answer arrived, for `--duration` seconds after `--warmup` seconds (max throughput;
//!   latency from the send).
//! - `--mode open --rate R`: request i is due at `start + i / R` on connection i mod C, and its
//!   latency runs from when it was due (no coordinated omission), as in `openloop`.
//! - `--sweep`: closed loop over every session once, in token-file order, then stop: each
//!   session's first request, as after a login (the harness's warm-up, so that a measured run
//!   sees every session cached, as a population that has been live for a while is).
//!
//! The same requests (the same `Authorization: Bearer …` headers) go to the bare pass-through
//! and nginx, so every target parses the same bytes. A 403 is a denial (expected for some
//! requests); any other status but 2xx, and any failed exchange, is an error.
//!
//! Usage: popload --url http://127.0.0.1:8080[,http://127.0.0.1:8081…] --tokens /tmp/p.tokens [--skew 1.0]
//!        [--mode closed|open] [--sweep] [--rate 5000] [--duration 10] [--warmup 0] [--connections 64]
//!        [--mix query=80,declare=10,invoice=10] [--seed 1]
//! `--skew 0` (default) is uniform; `--skew s` draws session rank r with weight 1/(r+1)^s over a
//! seeded shuffle of the tokens. Prints one JSON line.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderValue;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use taxgate_benches::{connect_h1, micros, percentile};

struct Args {
    /// Connection i goes to `urls[i % urls.len()]` (several gateway instances on one store).
    urls: Vec<http::Uri>,
    tokens: String,
    skew: f64,
    open: bool,
    /// Every session once, in order, then stop.
    sweep: bool,
    rate: f64,
    duration: f64,
    warmup: f64,
    connections: usize,
    mix: Vec<(String, u32)>,
    seed: u64,
}

impl Args {
    /// The target of connection `index`.
    fn url(&self, index: usize) -> &http::Uri {
        &self.urls[index % self.urls.len()]
    }
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        urls: vec!["http://127.0.0.1:8080".parse().map_err(|_| "url")?],
        tokens: String::new(),
        skew: 0.0,
        open: false,
        sweep: false,
        rate: 0.0,
        duration: 10.0,
        warmup: 0.0,
        connections: 64,
        mix: vec![
            ("query".into(), 80),
            ("declare".into(), 10),
            ("invoice".into(), 10),
        ],
        seed: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => {
                a.urls = val()?
                    .split(',')
                    .map(|u| u.trim().parse().map_err(|e| format!("--url `{u}`: {e}")))
                    .collect::<Result<_, String>>()?
            }
            "--tokens" => a.tokens = val()?,
            "--skew" => a.skew = val()?.parse().map_err(|e| format!("--skew: {e}"))?,
            "--mode" => {
                a.open = match val()?.as_str() {
                    "open" => true,
                    "closed" => false,
                    other => return Err(format!("--mode: `{other}` is not open or closed")),
                }
            }
            "--sweep" => a.sweep = true,
            "--rate" => a.rate = val()?.parse().map_err(|e| format!("--rate: {e}"))?,
            "--duration" => a.duration = val()?.parse().map_err(|e| format!("--duration: {e}"))?,
            "--warmup" => a.warmup = val()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            "--connections" => {
                a.connections = val()?.parse().map_err(|e| format!("--connections: {e}"))?
            }
            "--mix" => {
                a.mix = val()?
                    .split(',')
                    .map(|part| {
                        let (action, w) = part
                            .split_once('=')
                            .ok_or(format!("--mix: `{part}` is not action=weight"))?;
                        let w = w.parse().map_err(|e| format!("--mix `{part}`: {e}"))?;
                        Ok((action.trim().to_string(), w))
                    })
                    .collect::<Result<_, String>>()?
            }
            "--seed" => a.seed = val()?.parse().map_err(|e| format!("--seed: {e}"))?,
            other => return Err(format!("unknown flag `{other}`")),
        }
    }
    if a.urls.is_empty() {
        return Err("--url needs at least one URL".into());
    }
    if a.tokens.is_empty() {
        return Err("--tokens is required".into());
    }
    if a.duration <= 0.0 || a.connections == 0 || a.warmup < 0.0 || a.skew < 0.0 {
        return Err(
            "duration and connections must be positive, warmup and skew not negative".into(),
        );
    }
    if a.open && a.sweep {
        return Err("--sweep is a closed loop: not with --mode open".into());
    }
    if a.open && a.rate <= 0.0 {
        return Err("--mode open needs a positive --rate".into());
    }
    if a.mix.iter().map(|(_, w)| *w).sum::<u32>() == 0 {
        return Err("--mix needs a positive weight".into());
    }
    Ok(a)
}

/// splitmix64: small, fast, good enough to pick sessions and routes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The population as the client sends it: each token's `Authorization` value and whether it
/// is a person-entry session, and how session ranks are drawn.
struct Population {
    auth: Vec<HeaderValue>,
    person: Vec<bool>,
    /// Zipf: cumulative weights by rank, and rank -> token index. Empty: uniform.
    cdf: Vec<f64>,
    order: Vec<u32>,
    /// (path, cumulative weight) of the enterprise/agent mix.
    mix: Vec<(http::Uri, u32)>,
    personal: http::Uri,
}

impl Population {
    fn load(args: &Args) -> Result<Population, String> {
        let text =
            std::fs::read_to_string(&args.tokens).map_err(|e| format!("`{}`: {e}", args.tokens))?;
        let mut auth = Vec::new();
        let mut person = Vec::new();
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            let (Some(token), kind) = (parts.next(), parts.next()) else {
                continue;
            };
            auth.push(
                HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|e| format!("token file: {e}"))?,
            );
            person.push(kind == Some("p"));
        }
        if auth.is_empty() {
            return Err(format!("`{}` holds no tokens", args.tokens));
        }
        let n = auth.len();
        let (mut cdf, mut order) = (Vec::new(), Vec::new());
        if args.skew > 0.0 {
            let mut sum = 0.0;
            cdf = (0..n)
                .map(|r| {
                    sum += 1.0 / ((r + 1) as f64).powf(args.skew);
                    sum
                })
                .collect();
            // Hot ranks land on sessions of every kind: a seeded Fisher-Yates shuffle.
            order = (0..n as u32).collect();
            let mut rng = Rng(args.seed ^ 0x5EED);
            for i in (1..n).rev() {
                order.swap(i, rng.below(i as u64 + 1) as usize);
            }
        }
        let mut acc = 0;
        let mix = args
            .mix
            .iter()
            .map(|(action, w)| {
                acc += w;
                let uri = format!("/api/{action}/x")
                    .parse()
                    .map_err(|e| format!("--mix `{action}`: {e}"))?;
                Ok((uri, acc))
            })
            .collect::<Result<_, String>>()?;
        Ok(Population {
            auth,
            person,
            cdf,
            order,
            mix,
            personal: http::Uri::from_static("/api/personal_tax/x"),
        })
    }

    fn pick(&self, rng: &mut Rng) -> usize {
        if self.cdf.is_empty() {
            return rng.below(self.auth.len() as u64) as usize;
        }
        let total = self.cdf.last().copied().unwrap_or(1.0);
        let x = rng.unit() * total;
        let rank = self.cdf.partition_point(|c| *c < x).min(self.cdf.len() - 1);
        self.order.get(rank).map_or(0, |i| *i as usize)
    }

    fn request(&self, rng: &mut Rng, host: &HeaderValue) -> Request<Empty<Bytes>> {
        let i = self.pick(rng);
        self.request_of(i, rng, host)
    }

    /// A request of session `i` (its route drawn from the mix).
    fn request_of(&self, i: usize, rng: &mut Rng, host: &HeaderValue) -> Request<Empty<Bytes>> {
        let uri = if self.person.get(i).copied().unwrap_or(false) {
            &self.personal
        } else {
            let total = self.mix.last().map_or(1, |(_, w)| *w);
            let x = rng.below(u64::from(total)) as u32;
            self.mix
                .iter()
                .find(|(_, w)| x < *w)
                .map_or(&self.personal, |(u, _)| u)
        };
        let mut req = Request::new(Empty::new());
        *req.uri_mut() = uri.clone();
        let h = req.headers_mut();
        h.insert(http::header::HOST, host.clone());
        if let Some(v) = self.auth.get(i) {
            h.insert(http::header::AUTHORIZATION, v.clone());
        }
        req
    }
}

#[derive(Default)]
struct Tally {
    /// Latencies in µs of answered requests (2xx and 403).
    lat: Vec<u32>,
    ok: u64,
    denied: u64,
    errors: u64,
    /// Unexpected statuses (0: the exchange failed).
    statuses: BTreeMap<u16, u64>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.lat.extend(other.lat);
        self.ok += other.ok;
        self.denied += other.denied;
        self.errors += other.errors;
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
    }

    fn error(&mut self, status: u16) {
        self.errors += 1;
        *self.statuses.entry(status).or_default() += 1;
    }
}

/// One exchange; `Err` when the connection is gone.
async fn exchange(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    req: Request<Empty<Bytes>>,
) -> Result<u16, ()> {
    let resp = sender.send_request(req).await.map_err(|_| ())?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await.map_err(|_| ())?;
    Ok(status)
}

fn count(t: &mut Tally, status: u16, latency_us: u32) {
    match status {
        200..=299 => t.ok += 1,
        403 => t.denied += 1,
        other => {
            t.error(other);
            return;
        }
    }
    t.lat.push(latency_us);
}

/// What a closed-loop connection sends next.
#[derive(Clone, Copy)]
enum Next<'a> {
    /// A session drawn from the population, until this instant.
    Until(Instant),
    /// `--sweep`: the next session not yet sent (a counter shared by the connections), until
    /// every one has been.
    Sweep(&'a AtomicUsize),
}

async fn closed_connection(
    args: &Args,
    pop: &Population,
    index: usize,
    measure_from: Instant,
    next: Next<'_>,
) -> Result<Tally, String> {
    let url = args.url(index);
    let host = host_of(url)?;
    let mut sender = connect_h1(url).await?;
    let mut rng = Rng(args.seed.wrapping_add(index as u64 * 0x1000_0001));
    let mut t = Tally::default();
    loop {
        let i = match next {
            Next::Until(until) if Instant::now() < until => pop.pick(&mut rng),
            Next::Sweep(counter) => match counter.fetch_add(1, Ordering::Relaxed) {
                i if i < pop.auth.len() => i,
                _ => break,
            },
            Next::Until(_) => break,
        };
        let req = pop.request_of(i, &mut rng, &host);
        let sent = Instant::now();
        let result = exchange(&mut sender, req).await;
        let measured = sent >= measure_from;
        match result {
            Ok(status) if measured => count(&mut t, status, micros(sent.elapsed())),
            Ok(_) => {}
            Err(()) => {
                if measured {
                    t.error(0);
                }
                sender = connect_h1(url).await?;
            }
        }
    }
    Ok(t)
}

async fn open_connection(
    args: &Args,
    pop: &Population,
    index: usize,
    start: Instant,
    total: u64,
) -> Result<Tally, String> {
    let url = args.url(index);
    let host = host_of(url)?;
    let mut sender = connect_h1(url).await?;
    let mut rng = Rng(args.seed.wrapping_add(index as u64 * 0x1000_0001));
    let mut t = Tally::default();
    let mut i = index as u64;
    while i < total {
        let due = start + Duration::from_secs_f64(i as f64 / args.rate);
        tokio::time::sleep_until(due.into()).await;
        match exchange(&mut sender, pop.request(&mut rng, &host)).await {
            Ok(status) => count(&mut t, status, micros(due.elapsed())),
            Err(()) => {
                t.error(0);
                sender = connect_h1(url).await?;
            }
        }
        i += args.connections as u64;
    }
    Ok(t)
}

fn host_of(url: &http::Uri) -> Result<HeaderValue, String> {
    HeaderValue::from_str(url.authority().map_or("localhost", |a| a.as_str()))
        .map_err(|e| format!("host: {e}"))
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("popload: {e}");
            std::process::exit(2);
        }
    };
    let pop = match Population::load(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("popload: {e}");
            std::process::exit(2);
        }
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        std::process::exit(1);
    };
    let (mut t, elapsed) = rt.block_on(async {
        let began = Instant::now();
        let start = began + Duration::from_millis(100);
        let measure_from = start + Duration::from_secs_f64(args.warmup);
        let until = measure_from + Duration::from_secs_f64(args.duration);
        let next = AtomicUsize::new(0);
        let results: Vec<Result<Tally, String>> = if args.sweep {
            let futs = (0..args.connections)
                .map(|c| closed_connection(&args, &pop, c, began, Next::Sweep(&next)));
            futures_util::future::join_all(futs).await
        } else if args.open {
            let total = (args.rate * args.duration) as u64;
            let futs = (0..args.connections).map(|c| open_connection(&args, &pop, c, start, total));
            futures_util::future::join_all(futs).await
        } else {
            let futs = (0..args.connections)
                .map(|c| closed_connection(&args, &pop, c, measure_from, Next::Until(until)));
            futures_util::future::join_all(futs).await
        };
        let mut t = Tally::default();
        for r in results {
            match r {
                Ok(one) => t.add(one),
                Err(e) => {
                    eprintln!("popload: {e}");
                    t.error(0);
                }
            }
        }
        let elapsed = if args.sweep {
            // The sweep starts at once (no scheduled start), and ends with its last answer.
            began.elapsed()
        } else if args.open {
            start.elapsed()
        } else {
            measure_from.elapsed()
        };
        (t, elapsed)
    });
    t.lat.sort_unstable();
    let statuses: Vec<String> = t
        .statuses
        .iter()
        .map(|(k, v)| format!("\"{k}\":{v}"))
        .collect();
    println!(
        "{{\"mode\":\"{}\",\"tokens\":{},\"skew\":{},\"rate\":{},\"ok\":{},\"denied\":{},\"errors\":{},\"rps\":{:.0},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"error_statuses\":{{{}}}}}",
        if args.sweep {
            "sweep"
        } else if args.open {
            "open"
        } else {
            "closed"
        },
        pop.auth.len(),
        args.skew,
        args.rate,
        t.ok,
        t.denied,
        t.errors,
        (t.ok + t.denied) as f64 / elapsed.as_secs_f64(),
        percentile(&t.lat, 0.50),
        percentile(&t.lat, 0.90),
        percentile(&t.lat, 0.99),
        percentile(&t.lat, 0.999),
        t.lat.last().copied().unwrap_or(0),
        statuses.join(",")
    );
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn args(tokens: &str, skew: f64) -> Args {
        Args {
            urls: vec![http::Uri::from_static("http://127.0.0.1:1")],
            tokens: tokens.into(),
            skew,
            open: false,
            sweep: false,
            rate: 0.0,
            duration: 1.0,
            warmup: 0.0,
            connections: 1,
            mix: vec![("query".into(), 80), ("declare".into(), 20)],
            seed: 7,
        }
    }

    fn token_file(n: usize) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        for i in 0..n {
            let kind = if i % 10 >= 8 { "p" } else { "e" };
            writeln!(f, "{i:0>43} {kind}").expect("write");
        }
        f
    }

    #[test]
    fn connections_alternate_over_the_instances() {
        let mut a = args("t", 0.0);
        a.urls = vec![
            http::Uri::from_static("http://127.0.0.1:1"),
            http::Uri::from_static("http://127.0.0.1:2"),
        ];
        let ports: Vec<u16> = (0..4).filter_map(|i| a.url(i).port_u16()).collect();
        assert_eq!(ports, [1, 2, 1, 2]);
    }

    #[test]
    fn uniform_reaches_every_session_and_zipf_favours_the_first_rank() {
        let f = token_file(100);
        let path = f.path().display().to_string();
        let uniform = Population::load(&args(&path, 0.0)).expect("load");
        let mut rng = Rng(1);
        let mut seen = [0u32; 100];
        for _ in 0..20_000 {
            seen[uniform.pick(&mut rng)] += 1;
        }
        assert!(seen.iter().all(|c| *c > 100), "{seen:?}");
        let zipf = Population::load(&args(&path, 1.0)).expect("load");
        let mut seen = [0u32; 100];
        for _ in 0..20_000 {
            seen[zipf.pick(&mut rng)] += 1;
        }
        // Rank 0 has weight 1 / H(100) ≈ 19% of the draws; rank 99 about 0.2%.
        let top = seen[zipf.order[0] as usize];
        assert!((3_300..4_400).contains(&top), "{top}");
        assert!(seen[zipf.order[99] as usize] < 150);
    }

    /// `--sweep` sends every session exactly once, over all connections, then stops.
    #[test]
    fn a_sweep_sends_each_session_once() {
        use std::sync::{Arc, Mutex};
        let f = token_file(97);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let seen: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
        let tally = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let port = listener.local_addr().expect("addr").port();
            let record = seen.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let record = record.clone();
                    let service = hyper::service::service_fn(move |req: Request<_>| {
                        let auth = req.headers()[http::header::AUTHORIZATION]
                            .to_str()
                            .expect("ascii")
                            .to_string();
                        *record.lock().expect("lock").entry(auth).or_default() += 1;
                        async {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                Empty::<Bytes>::new(),
                            ))
                        }
                    });
                    tokio::spawn(
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                    );
                }
            });
            let mut a = args(&f.path().display().to_string(), 0.0);
            a.urls = vec![format!("http://127.0.0.1:{port}").parse().expect("url")];
            a.sweep = true;
            let pop = Population::load(&a).expect("load");
            let next = AtomicUsize::new(0);
            let began = Instant::now();
            let futs = (0..4).map(|c| closed_connection(&a, &pop, c, began, Next::Sweep(&next)));
            let mut t = Tally::default();
            for r in futures_util::future::join_all(futs).await {
                t.add(r.expect("connection"));
            }
            t
        });
        assert_eq!((tally.ok, tally.errors), (97, 0));
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len(), 97);
        assert!(seen.values().all(|n| *n == 1), "{seen:?}");
    }

    #[test]
    fn person_sessions_ask_for_personal_tax_and_the_others_follow_the_mix() {
        let f = token_file(10);
        let pop = Population::load(&args(&f.path().display().to_string(), 0.0)).expect("load");
        let host = HeaderValue::from_static("127.0.0.1:1");
        let mut rng = Rng(3);
        let mut paths = BTreeMap::<String, u32>::new();
        for _ in 0..10_000 {
            let req = pop.request(&mut rng, &host);
            let auth = req.headers()[http::header::AUTHORIZATION]
                .to_str()
                .expect("ascii");
            let person = auth.ends_with("08") || auth.ends_with("09");
            let path = req.uri().path().to_string();
            assert_eq!(person, path == "/api/personal_tax/x", "{auth} {path}");
            *paths.entry(path).or_default() += 1;
        }
        let (q, d) = (paths["/api/query/x"], paths["/api/declare/x"]);
        assert!(q > 3 * d && d > 1_000, "{paths:?}");
    }
}
