//! `decide` in a loop, for instruction counts that do not depend on what else the machine runs:
//!
//! ```sh
//! cargo build --release -p taxgate-policy --example decide_loop
//! for n in 1000 2000; do valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!   target/release/examples/decide_loop $n 2>&1 | grep refs; done
//! ```
//! The difference of the two totals over 1,000 is the instructions of one decision (the
//! criterion bench `decision` gives the time on a quiet machine). With a second argument
//! `build`, each iteration also builds the session's entity slice, as a request of a session
//! whose entities the gateway's hot cache no longer holds does.

#![allow(
    clippy::unwrap_used,
    reason = "a measuring tool: a failed setup should abort loudly"
)]

use std::hint::black_box;
use std::path::PathBuf;

use taxgate_policy::cases::{SessionFacts, session_slice};
use taxgate_policy::{EntitySlice, PolicyEngine, RequestFacts};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let engine = PolicyEngine::load(dir).unwrap();
    let facts: SessionFacts = serde_json::from_str(
        r#"{"entry": "enterprise", "role": "tax_handler",
            "binding": {"valid_from": 0, "valid_until": 4102444800}}"#,
    )
    .unwrap();
    let stored = session_slice(&facts).unwrap();
    let build = std::env::args().nth(2).is_some_and(|a| a == "build");
    let slice = EntitySlice::build(&stored).unwrap();
    let now = RequestFacts {
        now: 1_748_743_200,
        legacy_login_until: None,
    };
    let mut allowed = 0usize;
    for _ in 0..n {
        if build {
            let slice = EntitySlice::build(black_box(&stored)).unwrap();
            allowed += usize::from(engine.decide(&slice, "declare", &now).allowed);
        } else {
            allowed += usize::from(engine.decide(black_box(&slice), "declare", &now).allowed);
        }
    }
    assert_eq!(allowed, n);
}
