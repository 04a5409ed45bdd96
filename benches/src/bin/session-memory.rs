//! Resident memory with N live sessions in the session cache (issue 8: 100 thousand within
//! 200 MiB). It fills a SQLite store with N sessions (one binding each), loads the repository's
//! policies, then resolves every session through the real `Sessions` cache, exactly as the
//! first request of each session does, and reports the process's RSS before and after, with
//! its two parts: anonymous (the process's own memory: caches, entities, runtime) and
//! file-backed (the database pages SQLite reads through its memory map, which are the OS page
//! cache and would be cached by the kernel through read(2) just the same).
//!
//! Usage: session-memory [N]   (default 100000; run the release build)
//! Prints one JSON line.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a bench: a failed setup should abort loudly"
)]

/// The gateway's allocator: the figure is the resident memory `taxgate serve` would have.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use taxgate_gateway::authn::token;
use taxgate_gateway::session::{Lookup, Sessions};
use taxgate_policy::PolicyEngine;
use taxgate_store::fixtures::binding_session;
use taxgate_store::{AnyStore, Store};

const NOW: i64 = 1_750_000_000;

/// A `/proc/self/status` figure of this process (`VmRSS`, `RssAnon`, `RssFile`), in KiB.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn token_of(i: u64) -> String {
    format!("{i:0>43}")
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("N must be a number"))
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies");
    rt.block_on(async {
        let store = AnyStore::connect(&format!("sqlite://{}/mem.db", dir.path().display()))
            .await
            .expect("sqlite");
        store.migrate().await.expect("migrate");
        // Binding k belongs to person k / 10 (see `bulk_populate`): N bindings, N / 10 persons.
        let persons = (n / 10).max(10);
        store
            .bulk_populate(persons, n, NOW - 86_400)
            .await
            .expect("populate");
        let sessions: Vec<_> = (0..n)
            .map(|k| {
                binding_session(format!("s{k}"), token::hash(&token_of(k)), k, persons, NOW)
                    .expect("session")
            })
            .collect();
        store.bulk_sessions(&sessions).await.expect("sessions");
        drop(sessions);
        let engine = PolicyEngine::load(&policies).expect("policies");
        let cache = Sessions::new(
            store.clone(),
            n + 1_000,
            taxgate_gateway::config::SessionConfig::default().entity_cache_capacity,
            Duration::from_secs(3_600),
            1_800,
        );
        // Warm the store's connections and page cache on a sample, so the baseline holds them.
        for k in (0..n).step_by(((n / 1_000).max(1)) as usize) {
            let _ = store.session_slice(&token::hash(&token_of(k))).await;
        }
        let before = status_kib("VmRSS");
        let anon_before = status_kib("RssAnon");
        let started = Instant::now();
        let mut allowed = 0u64;
        for k in 0..n {
            match cache.resolve(&token_of(k), NOW + 1).await.expect("resolve") {
                Lookup::Live(s) => {
                    let d = engine.decide(
                        &cache.entities(&s).expect("entities").entities,
                        "declare",
                        &taxgate_policy::RequestFacts {
                            now: NOW + 1,
                            legacy_login_until: None,
                        },
                    );
                    allowed += u64::from(d.allowed);
                }
                _ => panic!("session {k} is not live"),
            }
        }
        let filled = started.elapsed();
        // Let moka apply its pending inserts before counting.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = status_kib("VmRSS");
        let (anon, file) = (status_kib("RssAnon"), status_kib("RssFile"));
        let cached = cache.cached();
        println!(
            "{{\"sessions\":{n},\"cached\":{cached},\"allowed\":{allowed},\"rss_before_mib\":{:.1},\"rss_after_mib\":{:.1},\"anon_before_mib\":{:.1},\"anon_after_mib\":{:.1},\"file_after_mib\":{:.1},\"anon_bytes_per_session\":{},\"fill_secs\":{:.1}}}",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            anon_before as f64 / 1024.0,
            anon as f64 / 1024.0,
            file as f64 / 1024.0,
            (anon.saturating_sub(anon_before) * 1024) / n.max(1),
            filled.as_secs_f64()
        );
    });
}
