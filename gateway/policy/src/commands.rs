//! `taxgate policy validate|test|explain`: the policy author's tools. Each returns the text to
//! print and whether the command succeeded (the CLI exits 1 when not).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::cases::{check, read_case_file, run_case};
use crate::{ActiveSet, Decision};

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
    let mut uses: Vec<taxgate_model::PolicyUse> = Vec::new();
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
                uses.push(taxgate_model::PolicyUse {
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
