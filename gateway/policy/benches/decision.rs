//! Decision cost: the raw Cedar loop vs taxgate's `decide()` on a cached slice, and `decide()`
//! as the policy count grows (indexed, with the unindexed whole-set answer for comparison).
//!
//! Run: `cargo bench -p taxgate-policy --bench decision -j2`
//!
//! Last run (2026-11-27, release, quiet 2-core VM; criterion median): raw 48.1 µs, decide
//! 32.4 µs (148% of the raw loop's throughput); indexed 32 / 96 / 996 / 9,996 policies: 30.5 /
//! 32.5 / 39.3 / 35.5 µs. The table is in benches/README.md.
//!
//! The request in every group: an enterprise-entry tax handler with an active binding asking
//! for `declare`. The scaled sets are the repository's policy set (32 policies) plus
//! per-enterprise rules (`resource == Enterprise::"…"` over declare/invoice/query), one of them
//! for the requesting enterprise, so the indexed path also evaluates its specific bucket.

#![allow(
    clippy::unwrap_used,
    reason = "bench fixtures: a failed setup should abort the bench loudly"
)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use cedar_policy::{Authorizer, Context, EntityUid, PolicySet, Request, RestrictedExpression};
use criterion::{Criterion, criterion_group, criterion_main};
use taxgate_policy::cases::{DEFAULT_ENTERPRISE, SessionFacts, session_slice};
use taxgate_policy::{EntitySlice, PolicyEngine, RequestFacts};

const NOW: i64 = 1_748_743_200;

/// The gateway's allocator (`gateway/taxgate/src/main.rs`): Cedar allocates and frees a few
/// hundred small objects per decision, so the allocator is part of what a decision costs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn repo_policies() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

fn slice() -> Arc<EntitySlice> {
    let facts: SessionFacts = serde_json::from_str(
        r#"{"entry": "enterprise", "role": "tax_handler",
            "binding": {"valid_from": 0, "valid_until": 4102444800}}"#,
    )
    .unwrap();
    Arc::new(EntitySlice::build(&session_slice(&facts).unwrap()).unwrap())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// The repository's set plus `extra` per-enterprise rules, half permits, half forbids.
fn policy_dir(extra: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_policies(), dir.path());
    let mut text = String::new();
    for i in 0..extra {
        let enterprise = if i == 0 {
            DEFAULT_ENTERPRISE.to_string()
        } else {
            format!("91140100MA{i:08}")
        };
        if i % 2 == 0 {
            text.push_str(&format!(
                "@id(\"extra.{i}\")\npermit (principal, action in [Action::\"declare\", Action::\"invoice\", Action::\"query\"], resource == Enterprise::\"{enterprise}\")\nwhen {{ principal has binding && principal.binding.role == Role::\"admin\" }};\n"
            ));
        } else {
            text.push_str(&format!(
                "@id(\"extra.{i}\")\n@reason(\"not_permitted\")\nforbid (principal, action in [Action::\"declare\", Action::\"invoice\", Action::\"query\"], resource == Enterprise::\"{enterprise}\")\nwhen {{ context.now < 0 }};\n"
            ));
        }
    }
    if extra > 0 {
        std::fs::write(dir.path().join("zz_extra.cedar"), text).unwrap();
    }
    dir
}

fn raw_policy_set(dir: &Path) -> PolicySet {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
        .collect();
    files.sort();
    let text: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    PolicySet::from_str(&text).unwrap()
}

fn facts() -> RequestFacts {
    RequestFacts {
        now: NOW,
        legacy_login_until: None,
    }
}

fn raw_vs_decide(c: &mut Criterion) {
    let dir = policy_dir(0);
    let engine = PolicyEngine::load(dir.path()).unwrap();
    let slice = slice();
    let set = engine.current();
    let resource = set.resource_for(&slice, "declare");
    let request = Request::new(
        slice.principal().clone(),
        EntityUid::from_str("Action::\"declare\"").unwrap(),
        resource,
        Context::from_pairs([("now".to_string(), RestrictedExpression::new_long(NOW))]).unwrap(),
        None,
    )
    .unwrap();
    let policies = raw_policy_set(dir.path());
    let authorizer = Authorizer::new();
    assert!(engine.decide(&slice, "declare", &facts()).allowed);

    let mut g = c.benchmark_group("decision");
    g.bench_function("raw_is_authorized_prepared_request", |b| {
        b.iter(|| black_box(authorizer.is_authorized(&request, &policies, slice.entities())))
    });
    g.bench_function("taxgate_decide_cached_slice", |b| {
        b.iter(|| black_box(engine.decide(&slice, black_box("declare"), &facts())))
    });
    g.finish();
}

fn scaling(c: &mut Criterion) {
    let slice = slice();
    let mut g = c.benchmark_group("decide_by_policy_count");
    for extra in [0usize, 64, 964, 9964] {
        let dir = policy_dir(extra);
        let engine = PolicyEngine::load(dir.path()).unwrap();
        let set = engine.current();
        let total = set.len();
        assert!(set.decide(&slice, "declare", &facts()).allowed);
        g.bench_function(format!("indexed_{total}"), |b| {
            b.iter(|| black_box(set.decide(&slice, black_box("declare"), &facts())))
        });
        g.bench_function(format!("unindexed_{total}"), |b| {
            b.iter(|| black_box(set.decide_unindexed(&slice, black_box("declare"), &facts())))
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = raw_vs_decide, scaling
}
criterion_main!(benches);
