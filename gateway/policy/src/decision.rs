//! Turning Cedar responses into one [`Decision`].
//!
//! Cedar's answer is combined from one or more responses over disjoint parts of the policy set
//! (see `index`): satisfied permits, satisfied forbids and errors are unions, so the combination
//! is exactly the answer of the whole set.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use cedar_policy::{PolicyId, Response};

use super::load::PolicyMeta;

/// The reason of a deny when no permit applied.
pub const NOT_PERMITTED: &str = "not_permitted";
/// The reason of a deny caused by a forbid that failed to evaluate (fail closed).
pub const POLICY_ERROR: &str = "policy_error";

/// The answer to one request. A value, not an error: evaluation problems deny and are listed in
/// `errors`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decision {
    /// Whether the request may go ahead.
    pub allowed: bool,
    /// Deny only: the `@reason` of the deciding forbid, `not_permitted` when no permit applied,
    /// `policy_error` when a forbid could not be evaluated.
    pub reason: Option<String>,
    /// The determining policies: on allow the satisfied permits (sorted by id); on deny the
    /// satisfied forbids, deciding one first (by `@priority`, then id); empty for `not_permitted`.
    pub policies: Vec<String>,
    /// Evaluation errors, `policy `id`: message`, sorted.
    pub errors: Vec<String>,
    /// Version of the policy set that decided.
    pub version: Arc<str>,
    /// Deny only: the deciding forbid's `@step_up_max_age("N")`: a second factor from the last
    /// N seconds would lift it (CONTRACT section 10). `None` for every other refusal.
    pub step_up_max_age: Option<u64>,
}

impl Decision {
    pub(crate) fn deny(reason: &str, error: Option<String>, version: Arc<str>) -> Self {
        Decision {
            allowed: false,
            reason: Some(reason.to_string()),
            policies: Vec::new(),
            errors: error.into_iter().collect(),
            version,
            step_up_max_age: None,
        }
    }

    /// The priority of this decision's reason (lower: more fundamental), for choosing among
    /// the denies of several login candidates. `not_permitted` (no forbid, no permit) ranks
    /// below every forbid: a candidate with a specific reason is more helpful.
    pub(crate) fn priority(&self, meta: &HashMap<PolicyId, PolicyMeta>) -> i64 {
        self.policies
            .first()
            .and_then(|id| meta.get(&PolicyId::new(id)))
            .map(|m| m.priority)
            .unwrap_or(i64::MIN)
    }
}

fn id_str(id: &PolicyId) -> &str {
    id.as_ref()
}

/// Collects the satisfied policies and errors of several responses.
#[derive(Default)]
pub(crate) struct Accumulator {
    permits: Vec<PolicyId>,
    forbids: Vec<PolicyId>,
    errored_forbids: Vec<PolicyId>,
    errors: BTreeSet<String>,
}

impl Accumulator {
    pub fn add(&mut self, response: &Response, meta: &HashMap<PolicyId, PolicyMeta>) {
        let diagnostics = response.diagnostics();
        for id in diagnostics.reason() {
            // Policies without meta cannot occur (every policy is registered at load); count
            // them as forbids so that an inconsistency can only deny.
            if meta.get(id).is_none_or(|m| m.forbid) {
                self.forbids.push(id.clone());
            } else {
                self.permits.push(id.clone());
            }
        }
        for err in diagnostics.errors() {
            let cedar_policy::AuthorizationError::PolicyEvaluationError(e) = err;
            let id = e.policy_id();
            if meta.get(id).is_none_or(|m| m.forbid) {
                self.errored_forbids.push(id.clone());
            }
            self.errors.insert(err.to_string());
        }
    }

    pub fn finish(mut self, meta: &HashMap<PolicyId, PolicyMeta>, version: Arc<str>) -> Decision {
        let errors: Vec<String> = self.errors.into_iter().collect();
        let key = |id: &PolicyId| {
            (
                meta.get(id).map(|m| m.priority).unwrap_or(i64::MIN),
                id_str(id).to_string(),
            )
        };
        self.forbids.sort_by_cached_key(key);
        self.forbids.dedup();
        // The highest-priority forbid (the first after sorting) gives the reason.
        if let Some(first) = self.forbids.first() {
            let reason = meta
                .get(first)
                .and_then(|m| m.reason.clone())
                .unwrap_or_else(|| POLICY_ERROR.to_string());
            return Decision {
                allowed: false,
                reason: Some(reason),
                policies: self
                    .forbids
                    .iter()
                    .map(|id| id_str(id).to_string())
                    .collect(),
                errors,
                version,
                step_up_max_age: meta.get(first).and_then(|m| m.step_up_max_age),
            };
        }
        if !self.errored_forbids.is_empty() {
            // A forbid that could not be evaluated might have applied: fail closed.
            self.errored_forbids.sort_by_cached_key(key);
            self.errored_forbids.dedup();
            return Decision {
                allowed: false,
                reason: Some(POLICY_ERROR.to_string()),
                policies: self
                    .errored_forbids
                    .iter()
                    .map(|id| id_str(id).to_string())
                    .collect(),
                errors,
                version,
                step_up_max_age: None,
            };
        }
        if !self.permits.is_empty() {
            let mut policies: Vec<String> = self
                .permits
                .iter()
                .map(|id| id_str(id).to_string())
                .collect();
            policies.sort();
            policies.dedup();
            return Decision {
                allowed: true,
                reason: None,
                policies,
                errors,
                version,
                step_up_max_age: None,
            };
        }
        Decision {
            allowed: false,
            reason: Some(NOT_PERMITTED.to_string()),
            policies: Vec::new(),
            errors,
            version,
            step_up_max_age: None,
        }
    }
}
