//! Prometheus metrics without locks on the request path: every series the gateway exports is
//! known at start (routes and upstreams come from the config), so each is a fixed slot of
//! atomics, and rendering walks them.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use taxgate_store::SmsLimit;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Status codes are counted in a flat array indexed by code (100..=599).
struct StatusCounts(Box<[AtomicU64]>);

impl StatusCounts {
    fn new() -> Self {
        StatusCounts((0..600).map(|_| AtomicU64::new(0)).collect())
    }
    fn inc(&self, status: u16) {
        if let Some(c) = self.0.get(status as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn nonzero(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.0
            .iter()
            .enumerate()
            .map(|(i, c)| (i, c.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
    }
}

/// A latency histogram with fixed buckets from 0.5 ms to 10 s (longer observations count only in
/// `+Inf`, the count and the sum).
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Count one observation of `seconds`. The sum keeps whole microseconds.
    pub fn observe(&self, seconds: f64) {
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// A named counter that other modules register at start and bump without locks.
pub struct Counter {
    /// The series name, e.g. `taxgate_audit_events_written_total`.
    pub name: &'static str,
    /// The `# HELP` text.
    pub help: &'static str,
    value: AtomicU64,
}

impl Counter {
    /// A counter at zero, for a `static`.
    pub const fn new(name: &'static str, help: &'static str) -> Self {
        Counter {
            name,
            help,
            value: AtomicU64::new(0),
        }
    }
    /// Add one.
    pub fn inc(&self) {
        self.value.fetch_add(1, Ordering::Relaxed);
    }
    /// Add `n`.
    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// Forwarded requests answered 408 `client_body_timeout`: the client's upload was still
/// arriving when the upstream's timeout ran out (counted apart from the upstream's timeouts).
pub static CLIENT_BODY_TIMEOUTS: Counter = Counter::new(
    "taxgate_client_body_timeouts_total",
    "Requests answered 408 client_body_timeout: the client was still uploading its body at the upstream's timeout.",
);

/// `taxgate_sms_refused_total{limit="…"}`: codes not sent because a limit refused them, one
/// series per limit of CONTRACT section 3 ("Every code sent counts"), all present from start.
pub struct SmsRefused {
    counts: [AtomicU64; SmsLimit::ALL.len()],
}

/// Process-wide, like the other registered counters.
pub static SMS_REFUSED: SmsRefused = SmsRefused {
    counts: [const { AtomicU64::new(0) }; SmsLimit::ALL.len()],
};

impl SmsRefused {
    fn slot(limit: SmsLimit) -> usize {
        SmsLimit::ALL.iter().position(|l| *l == limit).unwrap_or(0)
    }

    /// Count one code refused by `limit`.
    pub fn inc(&self, limit: SmsLimit) {
        if let Some(c) = self.counts.get(Self::slot(limit)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Codes refused by `limit` so far.
    pub fn get(&self, limit: SmsLimit) -> u64 {
        self.counts
            .get(Self::slot(limit))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    fn render(&self, out: &mut String) {
        out.push_str(
            "# HELP taxgate_sms_refused_total SMS codes not sent because a limit refused them.\n",
        );
        out.push_str("# TYPE taxgate_sms_refused_total counter\n");
        for limit in SmsLimit::ALL {
            let _ = writeln!(
                out,
                "taxgate_sms_refused_total{{limit=\"{}\"}} {}",
                limit.as_str(),
                self.get(limit)
            );
        }
    }
}

/// Every series of `/metrics`: requests by route and status, upstream latency, connections and the
/// registered counters. Routes and upstreams are fixed at start and named by their index.
pub struct Metrics {
    route_names: Vec<String>,
    /// One slot per route, plus a last one for requests no route matched or the gateway served.
    requests: Vec<StatusCounts>,
    upstream_names: Vec<String>,
    upstream_latency: Vec<Histogram>,
    /// The public listener's connection counters, kept by the proxy.
    pub connections: Arc<taxgate_proxy::ConnStats>,
    /// Counters registered by other modules (policy reloads, audit drops, decisions...).
    counters: Vec<&'static Counter>,
}

impl Metrics {
    /// All series at zero for these route and upstream names, in config order.
    pub fn new(routes: Vec<String>, upstreams: Vec<String>) -> Self {
        let requests = (0..=routes.len()).map(|_| StatusCounts::new()).collect();
        let upstream_latency = upstreams.iter().map(|_| Histogram::default()).collect();
        Metrics {
            route_names: routes,
            requests,
            upstream_names: upstreams,
            upstream_latency,
            connections: Arc::default(),
            counters: Vec::new(),
        }
    }

    /// Export `counter`, at start (rendered in the order registered).
    pub fn register(&mut self, counter: &'static Counter) {
        self.counters.push(counter);
    }

    /// `route`: the index of the matched route, or `None` for gateway-served/unrouted requests.
    pub fn request(&self, route: Option<usize>, status: u16) {
        let slot = route.unwrap_or(self.route_names.len());
        if let Some(c) = self.requests.get(slot) {
            c.inc(status);
        }
    }

    /// Observe one answer of the upstream at index `upstream` (an unknown index is ignored).
    pub fn upstream_latency(&self, upstream: usize, seconds: f64) {
        if let Some(h) = self.upstream_latency.get(upstream) {
            h.observe(seconds);
        }
    }

    /// Prometheus text exposition format 0.0.4. `extra` lines (gauges owned elsewhere) are appended.
    pub fn render(&self, extra: &str) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP taxgate_requests_total Requests answered, by route and status.\n");
        out.push_str("# TYPE taxgate_requests_total counter\n");
        for (slot, counts) in self.requests.iter().enumerate() {
            let route = self
                .route_names
                .get(slot)
                .map(String::as_str)
                .unwrap_or("(gateway)");
            for (status, n) in counts.nonzero() {
                let _ = writeln!(
                    out,
                    "taxgate_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        out.push_str(
            "# HELP taxgate_upstream_latency_seconds Time to the upstream's response head.\n",
        );
        out.push_str("# TYPE taxgate_upstream_latency_seconds histogram\n");
        for (name, h) in self.upstream_names.iter().zip(&self.upstream_latency) {
            h.render(
                &mut out,
                "taxgate_upstream_latency_seconds",
                &format!("upstream=\"{}\"", escape(name)),
            );
        }
        out.push_str("# HELP taxgate_open_connections Client connections open now.\n");
        out.push_str("# TYPE taxgate_open_connections gauge\n");
        let _ = writeln!(
            out,
            "taxgate_open_connections {}",
            self.connections.open_connections.load(Ordering::Relaxed)
        );
        out.push_str("# HELP taxgate_connections_total Client connections accepted.\n");
        out.push_str("# TYPE taxgate_connections_total counter\n");
        let _ = writeln!(
            out,
            "taxgate_connections_total {}",
            self.connections.connections_total.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP taxgate_connections_refused_total Connections closed at accept by a connection cap.\n",
        );
        out.push_str("# TYPE taxgate_connections_refused_total counter\n");
        for (reason, n) in [
            ("global", &self.connections.connections_refused_global),
            (
                "per_address",
                &self.connections.connections_refused_per_address,
            ),
        ] {
            let _ = writeln!(
                out,
                "taxgate_connections_refused_total{{reason=\"{reason}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        SMS_REFUSED.render(&mut out);
        crate::ext_authz::DECISIONS.render(&mut out);
        for c in &self.counters {
            let _ = writeln!(out, "# HELP {} {}", c.name, c.help);
            let _ = writeln!(out, "# TYPE {} counter", c.name);
            let _ = writeln!(out, "{} {}", c.name, c.get());
        }
        out.push_str(extra);
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests_histogram_and_connections() {
        let m = Metrics::new(vec!["/api/declare".into()], vec!["etax".into()]);
        m.request(Some(0), 200);
        m.request(Some(0), 200);
        m.request(None, 404);
        m.upstream_latency(0, 0.003);
        let text = m.render("");
        assert!(text.contains("taxgate_requests_total{route=\"/api/declare\",status=\"200\"} 2"));
        assert!(text.contains("taxgate_requests_total{route=\"(gateway)\",status=\"404\"} 1"));
        assert!(text.contains(
            "taxgate_upstream_latency_seconds_bucket{upstream=\"etax\",le=\"0.0025\"} 0"
        ));
        assert!(
            text.contains(
                "taxgate_upstream_latency_seconds_bucket{upstream=\"etax\",le=\"0.005\"} 1"
            )
        );
        assert!(text.contains("taxgate_upstream_latency_seconds_count{upstream=\"etax\"} 1"));
        assert!(text.contains("taxgate_open_connections 0"));
        assert!(text.contains("# TYPE taxgate_sms_refused_total counter"));
        for limit in SmsLimit::ALL {
            assert!(text.contains(&format!(
                "taxgate_sms_refused_total{{limit=\"{}\"}}",
                limit.as_str()
            )));
        }
    }
}
