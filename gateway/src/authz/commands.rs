//! `taxgate policy validate|test|explain`: the policy author's tools. Each returns the text to
//! print and whether the command succeeded (the CLI exits 1 when not).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::cases::{check, read_case_file, run_case};
use super::{ActiveSet, Decision};

/// Parses and validates (strict) every policy; errors as `file:line: message`.
pub fn validate(dir: &Path) -> (String, bool) {
    let mut out = String::new();
    match ActiveSet::compile(dir) {
        Ok(set) => {
            for w in &set.warnings {
                let _ = writeln!(out, "warning: {w}");
            }
            let _ = writeln!(
                out,
                "ok: {} policies valid against the schema (strict), version {}",
                set.len(),
                set.version
            );
            (out, true)
        }
        Err(super::AuthzError::Invalid { errors, .. }) => {
            for e in &errors.0 {
                let _ = writeln!(out, "error: {e}");
            }
            let _ = writeln!(
                out,
                "{} error(s); the set would not be activated",
                errors.0.len()
            );
            (out, false)
        }
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            (out, false)
        }
    }
}

fn case_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let tests = dir.join("tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&tests)
        .map_err(|e| format!("{}: {e}", tests.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    Ok(files)
}

fn file_label(path: &Path) -> String {
    path.file_name()
        .map(|n| format!("tests/{}", n.to_string_lossy()))
        .unwrap_or_else(|| path.display().to_string())
}

/// Runs every case of `DIR/tests/*.json`. The last line is exactly `N passed, N failed`.
pub fn test(dir: &Path) -> (String, bool) {
    test_with(dir, false)
}

/// As [`test`]; with `coverage`, also lists how many cases each policy determined and which
/// policies determined none, before the last line.
pub fn test_with(dir: &Path, coverage: bool) -> (String, bool) {
    let mut out = String::new();
    let set = match ActiveSet::compile(dir) {
        Ok(set) => set,
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            let _ = writeln!(out, "0 passed, 0 failed");
            return (out, false);
        }
    };
    let files = match case_files(dir) {
        Ok(f) => f,
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            let _ = writeln!(out, "0 passed, 0 failed");
            return (out, false);
        }
    };
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut uses: Vec<taxgate_store::PolicyUse> = Vec::new();
    for path in files {
        let label = file_label(&path);
        let file = match read_case_file(&path) {
            Ok(f) => f,
            Err(e) => {
                failed += 1;
                let _ = writeln!(out, "FAIL {label}: {e}");
                continue;
            }
        };
        for case in &file.cases {
            let decided = run_case(&set, case);
            if let Ok(d) = &decided {
                uses.push(taxgate_store::PolicyUse {
                    policies: d.policies.clone(),
                    allowed: d.allowed,
                    decisions: 1,
                });
            }
            match decided.and_then(|d| check(case, &d)) {
                Ok(()) => {
                    passed += 1;
                    let _ = writeln!(out, "ok   {label}: {}", case.name);
                }
                Err(e) => {
                    failed += 1;
                    let _ = writeln!(out, "FAIL {label}: {}: {e}", case.name);
                }
            }
        }
    }
    if coverage {
        let report = super::coverage::count(&set, uses);
        let _ = writeln!(out, "\ncoverage:");
        out.push_str(&super::coverage::render_text(
            &report,
            "test case(s) decided",
        ));
    }
    let _ = writeln!(out, "{passed} passed, {failed} failed");
    (out, failed == 0 && passed > 0)
}

fn describe(set: &ActiveSet, d: &Decision, out: &mut String) {
    let _ = writeln!(
        out,
        "  decision: {}",
        if d.allowed { "allow" } else { "deny" }
    );
    if let Some(reason) = &d.reason {
        let (zh, en) = set.message(reason);
        let _ = writeln!(out, "  reason:   {reason}");
        let _ = writeln!(out, "  message:  {zh}");
        let _ = writeln!(out, "            {en}");
    }
    if d.policies.is_empty() {
        let _ = writeln!(out, "  determining policies: none (no permit applied)");
    } else {
        let _ = writeln!(out, "  determining policies:");
        for p in &d.policies {
            match set.location(p) {
                Some(at) => {
                    let _ = writeln!(out, "    {p}  ({at})");
                }
                None => {
                    let _ = writeln!(out, "    {p}");
                }
            }
        }
    }
    for e in &d.errors {
        let _ = writeln!(out, "  error: {e}");
    }
    let _ = writeln!(out, "  policy set version: {}", d.version);
}

/// Explains every case of one case file: decision, reason and message, determining policies
/// with their file:line.
pub fn explain(dir: &Path, case_path: &Path) -> (String, bool) {
    let mut out = String::new();
    let set = match ActiveSet::compile(dir) {
        Ok(set) => set,
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            return (out, false);
        }
    };
    let file = match read_case_file(case_path) {
        Ok(f) => f,
        Err(e) => {
            let _ = writeln!(out, "error: {}: {e}", case_path.display());
            return (out, false);
        }
    };
    let mut ok = true;
    for case in &file.cases {
        let _ = writeln!(out, "{} (action `{}`)", case.name, case.action);
        match run_case(&set, case) {
            Ok(d) => {
                describe(&set, &d, &mut out);
                match check(case, &d) {
                    Ok(()) => {
                        let _ = writeln!(out, "  as expected");
                    }
                    Err(e) => {
                        ok = false;
                        let _ = writeln!(out, "  NOT as expected: {e}");
                    }
                }
            }
            Err(e) => {
                ok = false;
                let _ = writeln!(out, "  error: {e}");
            }
        }
    }
    (out, ok)
}

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
    config: &crate::config::Config,
    candidate: &Path,
    since: &str,
    limit: u32,
    allow_widening: bool,
    json: bool,
) -> (String, String, u8) {
    let now = crate::pipeline::unix_now();
    let since_at = match super::replay::parse_since(since, now) {
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
    let store = match crate::server::open_store(config).await {
        Ok(s) => s,
        Err(e) => {
            return (
                String::new(),
                format!("error: {}: {e}\n", config.source),
                REPLAY_FAILED,
            );
        }
    };
    let (records, slices) = match super::replay::load(&store, since_at, i64::from(limit)).await {
        Ok(x) => x,
        Err(e) => {
            return (
                String::new(),
                format!("error: cannot read the recorded decisions: {e}\n"),
                REPLAY_FAILED,
            );
        }
    };
    let report = super::replay::replay(&set, &records, &slices);
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
        let mut text = super::replay::render_text(&report, since_at);
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
pub async fn coverage(
    config: &crate::config::Config,
    days: u32,
    json: bool,
) -> (String, String, bool) {
    let set = match ActiveSet::compile(&config.policies.dir) {
        Ok(set) => set,
        Err(e) => return (String::new(), format!("error: policies.dir: {e}\n"), false),
    };
    let store = match crate::server::open_store(config).await {
        Ok(s) => s,
        Err(e) => {
            return (
                String::new(),
                format!("error: {}: {e}\n", config.source),
                false,
            );
        }
    };
    let since = crate::pipeline::unix_now() - i64::from(days) * 86_400;
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
    let report = super::coverage::count(&set, uses);
    let out = if json {
        let mut v = serde_json::to_value(&report).unwrap_or_default();
        if let Some(map) = v.as_object_mut() {
            map.insert("days".into(), serde_json::json!(days));
            map.insert("since".into(), serde_json::json!(since));
        }
        format!("{v}\n")
    } else {
        super::coverage::render_text(
            &report,
            &format!("downstream decision(s) in the last {days} day(s)"),
        )
    };
    (out, String::new(), true)
}
