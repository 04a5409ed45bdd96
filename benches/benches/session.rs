//! The per-request session path, hit against miss, on the real `Sessions` and `PolicyEngine`:
//!
//! - `session_resolve/hit`: token -> SHA-256 -> moka hit -> liveness checks;
//! - `session_resolve/miss_sqlite` (and `miss_postgres`): the cache is emptied before every
//!   lookup, so each one runs the store's `session_slice` query, builds the entity slice and the
//!   identity headers, and puts the result back in the cache: exactly what the first request of
//!   a session (or the first after an invalidation) pays;
//! - `decision_step/*`: the same plus `decide()`: what the pipeline does before it forwards;
//! - `entity_slice/build`: the Cedar entities of one session alone (the in-process share of a
//!   miss).
//!
//! Run (release):
//!     cargo bench -p taxgate-benches --bench session -j2
//! With PostgreSQL (a throwaway server, e.g. `.ci/postgres.sh start && . /tmp/taxgate-pg.env`):
//!     TAXGATE_TEST_PG_URL=postgres://… cargo bench -p taxgate-benches --bench session -j2
//! Without `TAXGATE_TEST_PG_URL` the PostgreSQL rows are skipped (and say so).
//!
//! Issue 8's target: a decision on a cache miss on SQLite costs at most 3x a hit.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "bench fixtures: a failed setup should abort the bench loudly"
)]

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use taxgate_gateway::authn::token;
use taxgate_gateway::session::{Lookup, Sessions};
use taxgate_policy::{EntitySlice, PolicyEngine, RequestFacts};
use taxgate_store::fixtures::binding_session;
use taxgate_store::{AnyStore, Invalidation, Store};

const NOW: i64 = 1_750_000_000;
const PERSONS: u64 = 1_000;
const BINDINGS: u64 = 10_000;
const SESSIONS: u64 = 1_000;

fn repo_policies() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// The i-th session's token: well formed (43 URL-safe characters), deterministic.
fn token_of(i: u64) -> String {
    format!("{i:0>43}")
}

async fn populate(store: &AnyStore) {
    store.migrate().await.expect("migrate");
    store
        .bulk_populate(PERSONS, BINDINGS, NOW - 86_400)
        .await
        .expect("populate");
    // Session i holds binding k = 10 i: person i, that person's first enterprise.
    for i in 0..SESSIONS {
        let session = binding_session(
            format!("s{i}"),
            token::hash(&token_of(i)),
            i * (BINDINGS / SESSIONS),
            PERSONS,
            NOW,
        )
        .expect("session");
        store.create_session(&session).await.expect("session");
    }
}

fn sessions(store: &AnyStore) -> Arc<Sessions> {
    Sessions::new(
        store.clone(),
        100_000,
        4_096,
        Duration::from_secs(300),
        1_800,
    )
}

fn facts() -> RequestFacts {
    RequestFacts {
        now: NOW + 1,
        legacy_login_until: None,
    }
}

fn live(lookup: Lookup) -> Arc<taxgate_gateway::session::ResolvedSession> {
    match lookup {
        Lookup::Live(s) => s,
        _ => panic!("the bench session is not live"),
    }
}

/// The hit, miss and decision rows for one backend.
fn backend(c: &mut Criterion, rt: &tokio::runtime::Runtime, name: &str, store: AnyStore) {
    let engine = PolicyEngine::load(repo_policies()).expect("policies");
    let cache = sessions(&store);
    let tokens: Vec<String> = (0..SESSIONS).map(token_of).collect();
    // Every session resolves and is allowed to declare: the bench measures the allowed path.
    for t in &tokens {
        let s = live(rt.block_on(cache.resolve(t, NOW + 1)).expect("resolve"));
        assert!(
            engine
                .decide(&cache.entities(&s).unwrap().entities, "declare", &facts())
                .allowed
        );
    }

    let mut g = c.benchmark_group("session_resolve");
    if name == "sqlite" {
        let mut i = 0usize;
        g.bench_function("hit", |b| {
            b.iter(|| {
                i = (i + 1) % tokens.len();
                black_box(live(
                    rt.block_on(cache.resolve(&tokens[i], NOW + 1)).unwrap(),
                ))
            })
        });
    }
    let mut i = 0usize;
    g.bench_function(format!("miss_{name}"), |b| {
        b.iter(|| {
            i = (i + 1) % tokens.len();
            cache.invalidate(&Invalidation::All);
            black_box(live(
                rt.block_on(cache.resolve(&tokens[i], NOW + 1)).unwrap(),
            ))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("decision_step");
    if name == "sqlite" {
        for t in &tokens {
            rt.block_on(cache.resolve(t, NOW + 1)).unwrap();
        }
        let mut i = 0usize;
        g.bench_function("cache_hit", |b| {
            b.iter(|| {
                i = (i + 1) % tokens.len();
                let s = live(rt.block_on(cache.resolve(&tokens[i], NOW + 1)).unwrap());
                black_box(engine.decide(&cache.entities(&s).unwrap().entities, "declare", &facts()))
            })
        });
    }
    let mut i = 0usize;
    g.bench_function(format!("cache_miss_{name}"), |b| {
        b.iter(|| {
            i = (i + 1) % tokens.len();
            cache.invalidate(&Invalidation::All);
            let s = live(rt.block_on(cache.resolve(&tokens[i], NOW + 1)).unwrap());
            black_box(engine.decide(&cache.entities(&s).unwrap().entities, "declare", &facts()))
        })
    });
    g.finish();

    if name == "sqlite" {
        let slice = rt
            .block_on(store.session_slice(&token::hash(&tokens[0])))
            .unwrap()
            .expect("session");
        let mut g = c.benchmark_group("entity_slice");
        g.bench_function("build", |b| {
            b.iter(|| black_box(EntitySlice::build(black_box(&slice)).unwrap()))
        });
        // What a miss adds for decision replay: the slice as canonical JSON and its hash.
        let built = EntitySlice::build(&slice).unwrap();
        g.bench_function("replay_json", |b| {
            b.iter(|| black_box(built.replay_json().unwrap()))
        });
        g.finish();
    }
}

fn bench(c: &mut Criterion) {
    let rt = taxgate_benches::store_runtime().expect("runtime");

    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/bench.db", dir.path().display());
    let store = rt.block_on(async {
        let store = AnyStore::connect(&url).await.expect("sqlite");
        populate(&store).await;
        store
    });
    backend(c, &rt, "sqlite", store);

    match std::env::var("TAXGATE_TEST_PG_URL") {
        Ok(base) => {
            let name = format!("bench_{}", token::new_id().unwrap());
            let status = std::process::Command::new("psql")
                .arg(&base)
                .args(["-q", "-c", &format!("CREATE DATABASE {name}")])
                .status()
                .expect("psql");
            assert!(status.success(), "cannot create the bench database");
            let (server, _) = base.rsplit_once('/').unwrap();
            let store = rt.block_on(async {
                let store = AnyStore::connect(&format!("{server}/{name}"))
                    .await
                    .expect("postgres");
                populate(&store).await;
                store
            });
            backend(c, &rt, "postgres", store);
        }
        Err(_) => eprintln!("skipping the PostgreSQL rows: TAXGATE_TEST_PG_URL is unset"),
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench
}
criterion_main!(benches);
