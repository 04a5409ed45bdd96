//! `taxgate policy replay|coverage`: the policy commands that read the store's recorded
//! decisions. The logic is the policy crate's ([`taxgate_policy::replay`],
//! [`taxgate_policy::coverage`]); this is where the store is opened and the report printed.

use std::fmt::Write as _;
use std::path::Path;

use taxgate_gateway::config::Config;
use taxgate_gateway::pipeline::unix_now;
use taxgate_gateway::widening;
use taxgate_policy::{ActiveSet, coverage, replay as policy_replay};

/// Exit status of `taxgate policy replay`, by CONTRACT section 1's rule: 0 no widening; 1 a
/// widening found, or a user error (config, candidate set, store), told apart by `error:` on
/// stderr and no report on stdout; 2 a usage error (`--since`).
pub const REPLAY_WIDENING: u8 = 1;
pub const REPLAY_FAILED: u8 = 1;
pub const REPLAY_USAGE: u8 = 2;

/// `taxgate policy replay`: re-decides the recorded downstream decisions since `since` (at
/// most `limit`, newest first) with the candidate set in `candidate` and reports every flip.
/// Returns (stdout text, stderr text, exit status).
pub async fn replay(
    config: &Config,
    candidate: &Path,
    since: &str,
    limit: u32,
    allow_widening: bool,
    json: bool,
) -> (String, String, u8) {
    let now = unix_now();
    let since_at = match policy_replay::parse_since(since, now) {
        Ok(t) => t,
        Err(e) => {
            return (
                String::new(),
                format!("error: --since: {e}\n"),
                REPLAY_USAGE,
            );
        }
    };
    let set = match ActiveSet::compile(candidate) {
        Ok(set) => set,
        Err(e) => {
            return (
                String::new(),
                format!("error: --candidate: {e}\n"),
                REPLAY_FAILED,
            );
        }
    };
    let store = match taxgate_gateway::server::open_store(config).await {
        Ok(s) => s,
        Err(e) => {
            return (
                String::new(),
                format!("error: {}: {e}\n", config.source),
                REPLAY_FAILED,
            );
        }
    };
    let (records, slices) = match widening::load(&store, since_at, i64::from(limit)).await {
        Ok(x) => x,
        Err(e) => {
            return (
                String::new(),
                format!("error: cannot read the recorded decisions: {e}\n"),
                REPLAY_FAILED,
            );
        }
    };
    let report = policy_replay::replay(&set, &records, &slices);
    let code = if report.widens() && !allow_widening {
        REPLAY_WIDENING
    } else {
        0
    };
    let out = if json {
        let mut v = serde_json::to_value(&report).unwrap_or_default();
        if let Some(map) = v.as_object_mut() {
            map.insert("since".into(), serde_json::json!(since_at));
            map.insert("limit".into(), serde_json::json!(limit));
            map.insert(
                "limit_reached".into(),
                serde_json::json!(records.len() as u64 >= u64::from(limit)),
            );
            map.insert(
                "candidate".into(),
                serde_json::json!(candidate.display().to_string()),
            );
            map.insert("widening".into(), serde_json::json!(report.widens()));
        }
        format!("{v}\n")
    } else {
        let mut text = policy_replay::render_text(&report, since_at);
        if records.len() as u64 >= u64::from(limit) {
            let _ = writeln!(
                text,
                "(limit of {limit} decisions reached: older ones were not replayed)"
            );
        }
        if report.widens() && allow_widening {
            let _ = writeln!(text, "widening accepted (--allow-widening)");
        }
        text
    };
    (out, String::new(), code)
}

/// `taxgate policy coverage`: per policy of the configured set, the downstream decisions it
/// determined in the last `days` days, and the policies that determined none.
/// Returns (stdout text, stderr text, success).
pub async fn coverage(config: &Config, days: u32, json: bool) -> (String, String, bool) {
    let set = match ActiveSet::compile(&config.policies.dir) {
        Ok(set) => set,
        Err(e) => return (String::new(), format!("error: policies.dir: {e}\n"), false),
    };
    let store = match taxgate_gateway::server::open_store(config).await {
        Ok(s) => s,
        Err(e) => {
            return (
                String::new(),
                format!("error: {}: {e}\n", config.source),
                false,
            );
        }
    };
    let since = unix_now() - i64::from(days) * 86_400;
    let uses = match taxgate_store::Store::policy_use(&store, since).await {
        Ok(u) => u,
        Err(e) => {
            return (
                String::new(),
                format!("error: cannot read the recorded decisions: {e}\n"),
                false,
            );
        }
    };
    let report = coverage::count(&set, uses);
    let out = if json {
        let mut v = serde_json::to_value(&report).unwrap_or_default();
        if let Some(map) = v.as_object_mut() {
            map.insert("days".into(), serde_json::json!(days));
            map.insert("since".into(), serde_json::json!(since));
        }
        format!("{v}\n")
    } else {
        coverage::render_text(
            &report,
            &format!("downstream decision(s) in the last {days} day(s)"),
        )
    };
    (out, String::new(), true)
}
