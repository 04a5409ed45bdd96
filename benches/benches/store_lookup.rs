//! `session_slice` (the per-request cache-miss lookup: session + person + enterprise + binding in
//! one indexed query) on SQLite with 1 thousand, 100 thousand and 1 million bindings. They must
//! be flat.
//!
//! Run (release, the real figures):
//!     cargo bench -p taxgate-benches --bench store_lookup
//! Quick check without a release build (SQLite itself then runs unoptimised too):
//!     cargo bench -p taxgate-benches --bench store_lookup --profile dev
//!
//! Populating 1 million bindings (bulk inserts in one transaction, not through the import)
//! takes about a minute in a debug build.
//!
//! Last figures (2026-11-27, release, quiet 2-core VM; criterion mean): 1 thousand 130 µs,
//! 100 thousand 125 µs, 1 million 170 µs (populate: 7 s). See benches/README.md.

// A bench is test code: a failed setup should stop it loudly.
#![allow(clippy::expect_used)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use taxgate_store::fixtures::binding_session;
use taxgate_store::{SqliteStore, Store};

const NOW: i64 = 1_750_000_000;
const SESSIONS: u64 = 1000;

fn token_hash(i: u64) -> String {
    format!("{i:064x}")
}

async fn populate(dir: &std::path::Path, bindings: u64) -> SqliteStore {
    let url = format!("sqlite://{}/bench.db", dir.display());
    let store = SqliteStore::connect(&url).await.expect("connect");
    store.migrate().await.expect("migrate");
    let persons = (bindings / 10).max(100);
    store
        .bulk_populate(persons, bindings, NOW)
        .await
        .expect("populate");
    // Sessions spread over the whole binding table.
    let step = bindings / SESSIONS;
    for i in 0..SESSIONS {
        let session = binding_session(format!("s{i}"), token_hash(i), i * step, persons, NOW)
            .expect("session");
        store.create_session(&session).await.expect("session");
    }
    store
}

fn bench(c: &mut Criterion) {
    let rt = taxgate_benches::store_runtime().expect("runtime");
    let mut group = c.benchmark_group("session_slice");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));
    for bindings in [1_000u64, 100_000, 1_000_000] {
        let dir = tempfile::tempdir().expect("tempdir");
        let started = std::time::Instant::now();
        let store = rt.block_on(populate(dir.path(), bindings));
        eprintln!("populated {bindings} bindings in {:?}", started.elapsed());
        let mut i = 0u64;
        group.bench_with_input(BenchmarkId::from_parameter(bindings), &bindings, |b, _| {
            b.iter(|| {
                i = (i + 1) % SESSIONS;
                let slice = rt
                    .block_on(store.session_slice(&token_hash(i)))
                    .expect("lookup")
                    .expect("session exists");
                assert!(slice.binding.is_some() && slice.person.is_some());
                slice
            })
        });
        rt.block_on(store.close());
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
