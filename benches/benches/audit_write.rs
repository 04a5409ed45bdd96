//! The audit writer's store call: one batch of decision events appended in one transaction, on
//! SQLite (WAL, the production connection settings) and, with `TAXGATE_TEST_PG_URL`, on
//! PostgreSQL. Every proxied request pays one such row, so this is the per-request cost of
//! auditing that the load harness's gateway-vs-pass-through ratio mostly measures.
//!
//! Run (release, the real figures):
//!     cargo bench -p taxgate-benches --bench audit_write
//!
//! The events look like the gateway's: the 64-character policy version, the determining
//! policies, the client address and a slice hash (slices already written), from one session
//! (the load harness's case: every index grows at one end) or from 100 (each batch touches
//! pages all over the session index). The slices count as already reported: no slice upsert.

// A bench is test code: a failed setup should stop it loudly.
#![allow(clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use taxgate_store::{AnyStore, AuditEvent, AuditSlice, SqliteStore, Store};

/// Events are stamped with the real time, so that on PostgreSQL they land in the day
/// partitions made at migrate (events of a day without one would all go to the default
/// partition, which is not where a running gateway writes).
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn events(n: usize, base: u64, sessions: u64) -> Vec<AuditEvent> {
    let slices: Vec<AuditSlice> = (0..100)
        .map(|i| AuditSlice {
            hash: format!("{i:032x}").into(),
            json: Some(Arc::from("{}")),
            refresh: false,
        })
        .collect();
    (0..n as u64)
        .map(|i| AuditEvent {
            slice: Some(slices[((base + i) % sessions % 100) as usize].clone()),
            ..taxgate_benches::decision_event(
                format!("5f2c9a0be41d{:012x}", base + i),
                now(),
                // Session ids are random in the gateway: scattered here the same way.
                format!(
                    "{:032x}",
                    u128::from((base + i) % sessions)
                        .wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
                ),
            )
        })
        .collect()
}

async fn stores(dir: &std::path::Path) -> Vec<(&'static str, AnyStore)> {
    let url = format!("sqlite://{}/audit.db", dir.display());
    let sqlite = SqliteStore::connect(&url).await.expect("connect");
    sqlite.migrate().await.expect("migrate");
    let mut out = vec![("sqlite", AnyStore::Sqlite(sqlite))];
    if let Ok(url) = std::env::var("TAXGATE_TEST_PG_URL") {
        let pg = AnyStore::connect(&url).await.expect("postgres");
        pg.migrate().await.expect("migrate postgres");
        out.push(("postgres", pg));
    }
    out
}

fn bench(c: &mut Criterion) {
    let rt = taxgate_benches::store_runtime().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let stores = rt.block_on(stores(dir.path()));
    let mut group = c.benchmark_group("audit_append");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6));
    // Ids go on increasing across benches: the table keeps every row.
    let mut base = 0u64;
    for (name, store) in &stores {
        for (batch, sessions) in [(256usize, 1u64), (256, 100), (16, 100), (256, 100_000)] {
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(
                BenchmarkId::new(*name, format!("{batch}x{sessions}sessions")),
                |b| {
                    b.iter_custom(|iters| {
                        let batches: Vec<Vec<AuditEvent>> = (0..iters)
                            .map(|_| {
                                let first = base;
                                base += batch as u64;
                                events(batch, first, sessions)
                            })
                            .collect();
                        let start = Instant::now();
                        rt.block_on(async {
                            for events in &batches {
                                store
                                    .append_audit_with_slices(&[], events)
                                    .await
                                    .expect("append");
                            }
                        });
                        start.elapsed()
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
