//! Policy coverage: how many decisions each policy of a set determined, and which never did,
//! so that stale rules can be found and removed. Counted from the audit log
//! (`taxgate policy coverage`) or from the policy test cases (`taxgate policy test --coverage`).
//!
//! A policy "determined" a decision when it is among the decision's determining policies: on
//! allow every satisfied permit, on deny every satisfied forbid (each alone would have given the
//! same answer).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use taxgate_model::PolicyUse;

use super::ActiveSet;

/// How many counted decisions one policy determined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyCount {
    /// The policy's `@id`.
    pub id: String,
    /// `file:line` in the set.
    pub location: String,
    /// Decisions it was among the determining policies of.
    pub decisions: u64,
}

/// Which policies of a set the counted decisions reached, and which they never did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CoverageReport {
    /// Version of the set the report is about.
    pub version: String,
    /// Decisions counted.
    pub decisions: u64,
    /// Denials no policy determined (no permit applied: `not_permitted`).
    pub no_permit: u64,
    /// Every policy of the set, by id.
    pub policies: Vec<PolicyCount>,
    /// The ids of the set's policies that determined nothing, sorted.
    pub never_fired: Vec<String>,
    /// Policy ids found in the decisions that the set no longer has, with their counts.
    pub not_in_set: BTreeMap<String, u64>,
}

/// Counts `uses` (determining policies and how many decisions each combination decided)
/// against the policies of `set`.
pub fn count(set: &ActiveSet, uses: impl IntoIterator<Item = PolicyUse>) -> CoverageReport {
    let ids = set.policy_ids();
    let mut counts: BTreeMap<String, u64> = ids.iter().map(|id| (id.clone(), 0)).collect();
    let mut report = CoverageReport {
        version: set.version.to_string(),
        ..CoverageReport::default()
    };
    for u in uses {
        let n = u64::try_from(u.decisions).unwrap_or(0);
        report.decisions += n;
        if u.policies.is_empty() && !u.allowed {
            report.no_permit += n;
        }
        for p in u.policies {
            match counts.get_mut(&p) {
                Some(c) => *c += n,
                None => *report.not_in_set.entry(p).or_default() += n,
            }
        }
    }
    report.policies = counts
        .into_iter()
        .map(|(id, decisions)| PolicyCount {
            location: set.location(&id).map(|l| l.to_string()).unwrap_or_default(),
            id,
            decisions,
        })
        .collect();
    report.never_fired = report
        .policies
        .iter()
        .filter(|p| p.decisions == 0)
        .map(|p| p.id.clone())
        .collect();
    report
}

/// The report for people. `what` says what was counted ("decisions in the last 30 days").
pub fn render_text(report: &CoverageReport, what: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {what}; {} denied with no permit applied",
        report.decisions, report.no_permit
    );
    let width = report
        .policies
        .iter()
        .map(|p| p.id.len())
        .max()
        .unwrap_or(0);
    for p in &report.policies {
        let _ = writeln!(out, "{:>8}  {:width$}  {}", p.decisions, p.id, p.location);
    }
    for (id, n) in &report.not_in_set {
        let _ = writeln!(out, "{n:>8}  {id:width$}  (not in this set)");
    }
    if report.never_fired.is_empty() {
        let _ = writeln!(out, "every policy determined at least one decision");
    } else {
        let _ = writeln!(
            out,
            "never fired ({} of {}): {}",
            report.never_fired.len(),
            report.policies.len(),
            report.never_fired.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::repo_policies;

    fn used(policies: &[&str], allowed: bool, decisions: i64) -> PolicyUse {
        PolicyUse {
            policies: policies.iter().map(|p| p.to_string()).collect(),
            allowed,
            decisions,
        }
    }

    #[test]
    fn counts_per_policy_and_lists_the_rest() {
        let set = ActiveSet::compile(&repo_policies()).unwrap();
        let report = count(
            &set,
            [
                used(&["role_defaults.legal_representative"], true, 5),
                used(
                    &["role_defaults.legal_representative", "role_defaults.admin"],
                    true,
                    2,
                ),
                used(&[], false, 3),
                used(&["retired.rule"], false, 1),
            ],
        );
        assert_eq!(report.decisions, 11);
        assert_eq!(report.no_permit, 3);
        let of = |id: &str| {
            report
                .policies
                .iter()
                .find(|p| p.id == id)
                .map(|p| p.decisions)
        };
        assert_eq!(of("role_defaults.legal_representative"), Some(7));
        assert_eq!(of("role_defaults.admin"), Some(2));
        assert_eq!(report.not_in_set.get("retired.rule"), Some(&1));
        assert_eq!(report.policies.len(), set.len());
        assert_eq!(report.never_fired.len(), set.len() - 2);
        assert!(
            !report
                .never_fired
                .contains(&"role_defaults.admin".to_string())
        );
        assert!(
            report
                .policies
                .iter()
                .all(|p| p.location.contains(".cedar:")),
            "{:?}",
            report.policies
        );
        let text = render_text(&report, "decisions");
        assert!(text.contains("never fired"), "{text}");
    }
}
