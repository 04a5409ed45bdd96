//! The audit journal (`gateway/gateway/src/audit/journal.rs`): what every request pays before it goes
//! on, so that a crash of the process cannot lose its decision. One append is a JSON
//! serialisation, a hand-off to the journal thread and its group-committed `write(2)` into the
//! page cache. Measured as events per second with 1 appender (the latency of one request's
//! append) and with 64 concurrent appenders (what a loaded gateway sees: the group commit
//! batches them).
//!
//! Run (release, the real figures):
//!     cargo bench -p taxgate-benches --bench journal

// A bench is test code: a failed setup should stop it loudly.
#![allow(clippy::expect_used)]

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use taxgate_gateway::audit::journal::Journal;
use taxgate_store::AuditEvent;

fn event(i: u64) -> AuditEvent {
    taxgate_benches::decision_event(
        format!("5f2c9a0be41d{i:012x}"),
        1_750_000_000,
        format!("{:064x}", i % 1000),
    )
}

fn journal(c: &mut Criterion) {
    let rt = taxgate_benches::store_runtime().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = Journal::open(dir.path(), "bench").expect("journal");
    let mut group = c.benchmark_group("journal_append");
    group.measurement_time(Duration::from_secs(5));
    for appenders in [1u64, 64] {
        group.throughput(Throughput::Elements(appenders));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{appenders}_concurrent")),
            &appenders,
            |b, &appenders| {
                b.iter_custom(|iters| {
                    let journal = journal.clone();
                    rt.block_on(async move {
                        let started = Instant::now();
                        let mut tasks = Vec::new();
                        for a in 0..appenders {
                            let journal = journal.clone();
                            tasks.push(tokio::spawn(async move {
                                for i in 0..iters {
                                    let seg = journal
                                        .append(&event(a * 1_000_000_000 + i))
                                        .await
                                        .expect("append");
                                    journal.shipped([seg]);
                                }
                            }));
                        }
                        for t in tasks {
                            t.await.expect("appender");
                        }
                        started.elapsed()
                    })
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, journal);
criterion_main!(benches);
