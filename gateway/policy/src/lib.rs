//! The policy engine: loads `policies/` (schema, `*.cedar`, `reasons.toml`), validates it in
//! strict mode, indexes it and swaps it in atomically; builds per-session entity slices; decides
//! requests. Rust establishes facts (the slice, `now`); the policies decide.
//!
//! Hot path: a decision on a session's built `EntitySlice` builds only the request context and
//! evaluates the policies the index selects (and `session::Prepared` reuses it for identical
//! inputs).

mod decision;
mod index;
mod load;
mod personnel;
mod reasons;
mod slice;
mod watch;

pub mod commands;

pub mod cases;
pub mod coverage;
pub mod replay;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use arc_swap::ArcSwap;
use cedar_policy::{Context, Entities, EntityUid, Request, RestrictedExpression, Schema};
use taxgate_model::model::Timestamp;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use decision::{Decision, NOT_PERMITTED, POLICY_ERROR};

/// The action of a login decision: may this attempt take up this identity?
pub const LOGIN: &str = "login";
/// The action of a switch decision (身份切换): may this session's person take up this identity
/// of the same entry without logging in again?
pub const SWITCH_TO: &str = "switch_to";
/// The actions decided over candidate identities ([`ActiveSet::decide_identity`]).
pub const IDENTITY_ACTIONS: [&str; 2] = [LOGIN, SWITCH_TO];
pub use load::{DEFAULT_PRIORITY, LoadErrors, Location};
pub use personnel::{PERSONNEL_ACTIONS, PersonnelChange};
pub use reasons::Reasons;
pub use slice::{EntitySlice, LOGIN_ATTEMPT_ID, LoginAttempt, LoginCandidate, NO_END, SliceFacts};
pub use watch::{DEBOUNCE, PolicyWatcher, watch};

use index::PolicyIndex;

/// Errors of the policy engine. Only loading, slice building and watching can fail; a decision
/// is always a [`Decision`].
#[derive(Debug, thiserror::Error)]
pub enum AuthzError {
    /// The policy directory does not load or validate.
    #[error("policy set in `{dir}` is invalid:\n{errors}")]
    Invalid {
        /// The policy directory.
        dir: String,
        /// Every problem found, `file:line: message` each.
        errors: LoadErrors,
    },
    /// The Cedar entities of a session (or a recorded slice) cannot be built.
    #[error("cannot build the entity slice: {0}")]
    Slice(String),
    /// The policy directory cannot be watched for changes.
    #[error("cannot watch `{dir}`: {message}")]
    Watch {
        /// The policy directory.
        dir: String,
        /// What the watcher reported.
        message: String,
    },
    /// A valid new set was refused on reload: it lacks a required action, or the reload gate
    /// said no. The message says why.
    #[error("{0}")]
    Gate(String),
}

/// The facts of one request that are not in the slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestFacts {
    /// Epoch seconds of the request.
    pub now: Timestamp,
    /// End of the legacy enterprise-password login (`[login] legacy_login_until`); `None`:
    /// retired.
    pub legacy_login_until: Option<Timestamp>,
}

impl RequestFacts {
    /// The facts of a request at `now`, with the legacy login retired.
    pub fn at(now: Timestamp) -> Self {
        RequestFacts {
            now,
            legacy_login_until: None,
        }
    }
}

/// A validated, indexed policy set. In-flight decisions keep the `Arc` they started with.
pub struct ActiveSet {
    /// Content version of the set, as audit records and `GET /admin/policies` show it.
    pub version: Arc<str>,
    /// When this set was loaded.
    pub loaded_at: OffsetDateTime,
    /// Problems that did not stop the set from loading.
    pub warnings: Vec<String>,
    /// The error messages of the set's `reasons.toml`.
    pub reasons: Reasons,
    downstream_actions: Vec<String>,
    actions: Vec<String>,
    schema: Schema,
    index: PolicyIndex,
    /// The distinct answers [`ActiveSet::decide_until`] gave, shared: sessions remember their
    /// decisions, and most of them hold one of a few dozen answers.
    answers: Mutex<HashMap<Decision, Arc<Decision>>>,
}

/// Distinct answers an [`ActiveSet`] shares at most; beyond, answers are not shared.
const MAX_SHARED_ANSWERS: usize = 4096;

impl ActiveSet {
    /// Read, validate (strict) and index the policy directory `dir`.
    pub fn compile(dir: &Path) -> Result<Self, AuthzError> {
        let compiled = load::compile(dir).map_err(|errors| AuthzError::Invalid {
            dir: dir.display().to_string(),
            errors,
        })?;
        let index = PolicyIndex::build(compiled.policies, compiled.meta, &compiled.schema);
        Ok(ActiveSet {
            version: Arc::from(compiled.version),
            loaded_at: OffsetDateTime::now_utc(),
            warnings: compiled.warnings,
            reasons: compiled.reasons,
            downstream_actions: compiled.downstream_actions,
            actions: compiled.actions,
            schema: compiled.schema,
            index,
            answers: Mutex::default(),
        })
    }

    /// A set made directly from parsed policies (tests: generated sets that skip validation).
    #[cfg(test)]
    pub(crate) fn from_policies(
        schema: Schema,
        policies: cedar_policy::PolicySet,
        meta: std::collections::HashMap<cedar_policy::PolicyId, load::PolicyMeta>,
    ) -> Self {
        let index = PolicyIndex::build(policies, meta, &schema);
        ActiveSet {
            version: Arc::from("test"),
            loaded_at: OffsetDateTime::UNIX_EPOCH,
            warnings: Vec::new(),
            reasons: Reasons::default(),
            downstream_actions: Vec::new(),
            actions: Vec::new(),
            schema,
            index,
            answers: Mutex::default(),
        }
    }

    /// Number of policies in the set.
    pub fn len(&self) -> usize {
        self.index.full().num_of_policies()
    }

    /// The set has no policy at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The resource of `action` for this slice (what the request acts on).
    pub fn resource_for(&self, slice: &EntitySlice, action: &str) -> EntityUid {
        let types = self
            .index
            .action(action)
            .map(|a| a.resource_types.as_slice())
            .unwrap_or(&[]);
        slice.resource_for(action, types)
    }

    /// Decides one request given as Cedar values (the slice path and the test runner both end
    /// here). `indexed: false` evaluates the whole set in one call (the reference answer).
    pub fn decide_request(
        &self,
        principal: &EntityUid,
        action: &str,
        resource: &EntityUid,
        entities: &Entities,
        facts: &RequestFacts,
        indexed: bool,
    ) -> Decision {
        self.decide_request_with(
            principal,
            action,
            resource,
            entities,
            facts,
            Vec::new(),
            indexed,
        )
    }

    /// [`ActiveSet::decide_request`] with more context attributes than `RequestContext` has
    /// (the `PersonnelContext` of the personnel actions).
    #[allow(
        clippy::too_many_arguments,
        reason = "the Cedar request's parts, passed through unchanged"
    )]
    pub(crate) fn decide_request_with(
        &self,
        principal: &EntityUid,
        action: &str,
        resource: &EntityUid,
        entities: &Entities,
        facts: &RequestFacts,
        extra: Vec<(String, RestrictedExpression)>,
        indexed: bool,
    ) -> Decision {
        let entry = self.index.action(action);
        let action_uid = match entry {
            Some(a) => a.uid.clone(),
            None => match slice::action_uid(action) {
                Ok(uid) => uid,
                Err(e) => {
                    return Decision::deny(POLICY_ERROR, Some(e.to_string()), self.version.clone());
                }
            },
        };
        let context = if extra.is_empty() {
            request_context(facts)
        } else {
            let mut pairs = context_pairs(facts);
            pairs.extend(extra);
            Context::from_pairs(pairs).map_err(|e| e.to_string())
        };
        let request = context.and_then(|context| {
            // No schema check here: the context always has the shape of `RequestContext`
            // (tested), and the check costs more than the decision.
            Request::new(
                principal.clone(),
                action_uid,
                resource.clone(),
                context,
                None,
            )
            .map_err(|e| e.to_string())
        });
        let request = match request {
            Ok(r) => r,
            Err(e) => return Decision::deny(POLICY_ERROR, Some(e), self.version.clone()),
        };
        if indexed {
            self.index.evaluate(
                entry,
                &request,
                principal,
                resource,
                entities,
                self.version.clone(),
            )
        } else {
            self.index
                .evaluate_full(&request, entities, self.version.clone())
        }
    }

    /// The indexed decision for a session.
    pub fn decide(&self, slice: &EntitySlice, action: &str, facts: &RequestFacts) -> Decision {
        let resource = self.resource_for(slice, action);
        self.decide_request(
            slice.principal(),
            action,
            &resource,
            slice.entities(),
            facts,
            true,
        )
    }

    /// [`ActiveSet::decide`], and the first second after `facts.now` at which the decision
    /// may differ with only the time changed (`now + 1` at the latest when the policies use
    /// the time in a way the clock analysis does not follow; `i64::MAX`: never). A caller may
    /// reuse the decision for every request of this slice and action, with the same other
    /// facts and policy version, at a time in `facts.now..until`.
    pub fn decide_until(
        &self,
        slice: &EntitySlice,
        action: &str,
        facts: &RequestFacts,
    ) -> (Arc<Decision>, Timestamp) {
        let resource = self.resource_for(slice, action);
        let decision = self.decide_request(
            slice.principal(),
            action,
            &resource,
            slice.entities(),
            facts,
            true,
        );
        let until = match self.index.action(action) {
            Some(a) => a
                .clock
                .until(slice.principal(), &resource, slice.entities(), facts),
            None => facts.now.saturating_add(1),
        };
        (self.shared(decision), until)
    }

    /// `decision` as the one shared copy of that answer.
    fn shared(&self, decision: Decision) -> Arc<Decision> {
        let mut answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(a) = answers.get(&decision) {
            return a.clone();
        }
        let a = Arc::new(decision);
        if answers.len() < MAX_SHARED_ANSWERS {
            answers.insert((*a).clone(), a.clone());
        }
        a
    }

    /// The same decision over the whole, unindexed set (the reference for tests and benches).
    pub fn decide_unindexed(
        &self,
        slice: &EntitySlice,
        action: &str,
        facts: &RequestFacts,
    ) -> Decision {
        let resource = self.resource_for(slice, action);
        self.decide_request(
            slice.principal(),
            action,
            &resource,
            slice.entities(),
            facts,
            false,
        )
    }

    /// The ids of every policy of this set, sorted.
    pub fn policy_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .index
            .meta
            .keys()
            .map(|id| AsRef::<str>::as_ref(id).to_string())
            .collect();
        ids.sort();
        ids
    }

    /// Where a policy of this set is defined.
    pub fn location(&self, policy: &str) -> Option<&Location> {
        self.index
            .meta
            .get(&cedar_policy::PolicyId::new(policy))
            .map(|m| &m.location)
    }

    /// The schema of this set.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The login decision over every candidate identity: allowed if one allows; otherwise the
    /// deny closest to success (the candidate whose deciding forbid has the highest
    /// `@priority` number, e.g. `binding_pending` over `not_linked`). No candidate at all is
    /// decided by the policies too (`not_linked`, `no_agency_relation`).
    pub fn decide_login(
        &self,
        attempt: &LoginAttempt<'_>,
        candidates: &[LoginCandidate<'_>],
        facts: &RequestFacts,
    ) -> Decision {
        self.decide_identity(LOGIN, attempt, candidates, facts)
    }

    /// A decision on taking up an identity — [`LOGIN`] or [`SWITCH_TO`] — over every candidate
    /// (binding or agreement), as [`ActiveSet::decide_login`] describes.
    pub fn decide_identity(
        &self,
        action: &str,
        attempt: &LoginAttempt<'_>,
        candidates: &[LoginCandidate<'_>],
        facts: &RequestFacts,
    ) -> Decision {
        self.choose_identity(action, attempt, candidates, facts).0
    }

    /// [`ActiveSet::decide_identity`], and which candidate allowed (its index), if one did:
    /// the first in the caller's order.
    pub fn choose_identity(
        &self,
        action: &str,
        attempt: &LoginAttempt<'_>,
        candidates: &[LoginCandidate<'_>],
        facts: &RequestFacts,
    ) -> (Decision, Option<usize>) {
        let options: Vec<Option<LoginCandidate<'_>>> = if candidates.is_empty() {
            vec![None]
        } else {
            candidates.iter().copied().map(Some).collect()
        };
        let mut best: Option<(i64, Decision)> = None;
        for (index, candidate) in options.into_iter().enumerate() {
            let decision = match EntitySlice::for_login(attempt, candidate, facts.now) {
                Ok(slice) => self.decide(&slice, action, facts),
                Err(e) => Decision::deny(POLICY_ERROR, Some(e.to_string()), self.version.clone()),
            };
            if decision.allowed {
                return (decision, candidate.map(|_| index));
            }
            let priority = decision.priority(&self.index.meta);
            // Strictly greater: among equals the first candidate (the caller's order) wins.
            if best.as_ref().is_none_or(|(p, _)| priority > *p) {
                best = Some((priority, decision));
            }
        }
        let decision = match best {
            Some((_, d)) => d,
            None => Decision::deny(NOT_PERMITTED, None, self.version.clone()),
        };
        (decision, None)
    }

    /// The actions of `required` this set's schema does not declare.
    pub fn missing_actions(&self, required: &[&str]) -> Vec<String> {
        let declared: std::collections::HashSet<String> = self
            .schema
            .actions()
            .map(|uid| uid.id().unescaped().to_string())
            .collect();
        required
            .iter()
            .filter(|a| !declared.contains(**a))
            .map(|a| a.to_string())
            .collect()
    }

    /// (Chinese, English) message of an error code; a generic message for an unknown code.
    pub fn message(&self, code: &str) -> (Arc<str>, Arc<str>) {
        self.reasons.message(code)
    }

    /// Actions marked `@downstream` in the schema: what a route's `action` may name.
    pub fn downstream_actions(&self) -> &[String] {
        &self.downstream_actions
    }

    /// Every action of the schema.
    pub fn actions(&self) -> &[String] {
        &self.actions
    }
}

/// For `GET /admin/policies`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PolicyStatus {
    /// Version of the active set.
    pub version: String,
    /// RFC 3339.
    pub loaded_at: String,
    /// Why the last reload failed, if it did (the active set is then the last good one).
    pub last_error: Option<String>,
    /// The last decision of the reload gate, when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateStatus>,
}

/// What the reload gate said about the last set it checked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GateStatus {
    /// RFC 3339.
    pub at: String,
    /// Version of the set checked.
    pub candidate: String,
    /// The gate let the set in.
    pub accepted: bool,
    /// What the gate said.
    pub message: String,
    /// Sets refused by the gate since start.
    pub refusals: u64,
}

/// A check a valid new set must pass before it replaces the active one (e.g. the widening
/// gate of [`replay::WideningGate`]). Runs on the reloading thread, never on the request path.
pub trait ReloadGate: Send + Sync {
    /// `Ok(summary)`: activate. `Err(why)`: keep the active set.
    fn check(&self, candidate: &ActiveSet) -> Result<String, String>;
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReloadCounters {
    /// Successful loads (the initial one included).
    pub reloads: u64,
    /// Reloads refused because the new set was invalid or the gate refused it.
    pub failed_reloads: u64,
    /// Reloads refused by the gate.
    pub gate_refusals: u64,
}

/// The active policy set of the gateway, swapped atomically on reload.
pub struct PolicyEngine {
    dir: PathBuf,
    active: ArcSwap<ActiveSet>,
    last_error: Mutex<Option<String>>,
    reloads: AtomicU64,
    failed_reloads: AtomicU64,
    gate: OnceLock<Arc<dyn ReloadGate>>,
    gate_refusals: AtomicU64,
    last_gate: Mutex<Option<GateStatus>>,
    /// Actions every set must declare ([`PolicyEngine::require_actions`]).
    required: OnceLock<Vec<String>>,
}

fn missing_message(missing: &[String]) -> String {
    format!(
        "the schema does not declare the action(s) the gateway asks about: {}",
        missing.join(", ")
    )
}

/// The `RequestContext` pairs of `facts`.
fn context_pairs(facts: &RequestFacts) -> Vec<(String, RestrictedExpression)> {
    let mut pairs = vec![("now".to_string(), RestrictedExpression::new_long(facts.now))];
    if let Some(until) = facts.legacy_login_until {
        pairs.push((
            "legacy_login_until".to_string(),
            RestrictedExpression::new_long(until),
        ));
    }
    pairs
}

/// The `RequestContext` of `facts`, made once per thread and second: every request of that
/// second has the same one, and a Cedar `Context` is cheap to clone but not to make.
fn request_context(facts: &RequestFacts) -> Result<Context, String> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(RequestFacts, Context)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        if let Ok(last) = last.try_borrow()
            && let Some((f, c)) = last.as_ref()
            && f == facts
        {
            return Ok(c.clone());
        }
        let context = Context::from_pairs(context_pairs(facts)).map_err(|e| e.to_string())?;
        if let Ok(mut last) = last.try_borrow_mut() {
            *last = Some((*facts, context.clone()));
        }
        Ok(context)
    })
}

impl PolicyEngine {
    /// Loads `dir`; an invalid set is an error (the gateway refuses to start).
    pub fn load(dir: impl Into<PathBuf>) -> Result<Self, AuthzError> {
        let dir = dir.into();
        let set = ActiveSet::compile(&dir)?;
        for w in &set.warnings {
            tracing::warn!(warning = %w, "policy validation warning");
        }
        tracing::info!(version = %set.version, policies = set.len(), dir = %dir.display(), "policy set loaded");
        Ok(PolicyEngine {
            dir,
            active: ArcSwap::from_pointee(set),
            last_error: Mutex::new(None),
            reloads: AtomicU64::new(1),
            failed_reloads: AtomicU64::new(0),
            gate: OnceLock::new(),
            gate_refusals: AtomicU64::new(0),
            last_gate: Mutex::new(None),
            required: OnceLock::new(),
        })
    }

    /// Checks every later reload with `gate` (the initial load is not gated). Set once.
    pub fn set_gate(&self, gate: Arc<dyn ReloadGate>) -> bool {
        self.gate.set(gate).is_ok()
    }

    /// Asks the gate, if any, about a valid new set; records its answer.
    fn gate_allows(&self, set: &ActiveSet) -> Result<(), String> {
        let Some(gate) = self.gate.get() else {
            return Ok(());
        };
        let verdict = gate.check(set);
        let refusals = match verdict {
            Ok(_) => self.gate_refusals.load(Ordering::Relaxed),
            Err(_) => self.gate_refusals.fetch_add(1, Ordering::Relaxed) + 1,
        };
        let at = OffsetDateTime::now_utc();
        let status = GateStatus {
            at: at
                .format(&Rfc3339)
                .unwrap_or_else(|_| at.unix_timestamp().to_string()),
            candidate: set.version.to_string(),
            accepted: verdict.is_ok(),
            message: match &verdict {
                Ok(m) | Err(m) => m.clone(),
            },
            refusals,
        };
        *self
            .last_gate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(status);
        match verdict {
            Ok(summary) => {
                tracing::info!(candidate = %set.version, %summary, "reload gate: accepted");
                Ok(())
            }
            Err(why) => Err(why),
        }
    }

    /// The policy directory this engine loads.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Re-reads the directory. A valid set replaces the active one (returns its version); an
    /// invalid one is refused, the last good set stays active and the error is recorded.
    pub fn reload(&self) -> Result<Arc<str>, AuthzError> {
        let compiled = ActiveSet::compile(&self.dir).and_then(|set| {
            let required: Vec<&str> = self
                .required
                .get()
                .map(|r| r.iter().map(String::as_str).collect())
                .unwrap_or_default();
            let missing = set.missing_actions(&required);
            if !missing.is_empty() {
                return Err(AuthzError::Gate(missing_message(&missing)));
            }
            self.gate_allows(&set)
                .map(|()| set)
                .map_err(AuthzError::Gate)
        });
        match compiled {
            Ok(set) => {
                let version = set.version.clone();
                let previous = self.active.load().version.clone();
                for w in &set.warnings {
                    tracing::warn!(warning = %w, "policy validation warning");
                }
                self.active.store(Arc::new(set));
                self.reloads.fetch_add(1, Ordering::Relaxed);
                *self.lock_error() = None;
                tracing::info!(%version, %previous, "policy set reloaded");
                Ok(version)
            }
            Err(e) => {
                self.failed_reloads.fetch_add(1, Ordering::Relaxed);
                let message = e.to_string();
                tracing::error!(error = %message, active = %self.active.load().version, "policy reload refused; keeping the last good set");
                *self.lock_error() = Some(message);
                Err(e)
            }
        }
    }

    fn lock_error(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // A panic while holding this lock cannot leave the Option inconsistent.
        self.last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The active set; hold it for the whole request so that a reload does not change the
    /// answer halfway.
    pub fn current(&self) -> Arc<ActiveSet> {
        self.active.load_full()
    }

    /// Version of the active set.
    pub fn version(&self) -> Arc<str> {
        self.active.load().version.clone()
    }

    /// The active set and the last reload's outcome, for `GET /admin/policies`.
    pub fn status(&self) -> PolicyStatus {
        let active = self.active.load();
        PolicyStatus {
            version: active.version.to_string(),
            loaded_at: active
                .loaded_at
                .format(&Rfc3339)
                .unwrap_or_else(|_| active.loaded_at.unix_timestamp().to_string()),
            last_error: self.lock_error().clone(),
            gate: self
                .last_gate
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        }
    }

    /// Reloads, failed reloads and gate refusals since start, for metrics.
    pub fn counters(&self) -> ReloadCounters {
        ReloadCounters {
            reloads: self.reloads.load(Ordering::Relaxed),
            failed_reloads: self.failed_reloads.load(Ordering::Relaxed),
            gate_refusals: self.gate_refusals.load(Ordering::Relaxed),
        }
    }

    /// [`ActiveSet::decide`] on the active set.
    pub fn decide(&self, slice: &EntitySlice, action: &str, facts: &RequestFacts) -> Decision {
        self.active.load().decide(slice, action, facts)
    }

    /// [`ActiveSet::decide_login`] on the active set.
    pub fn decide_login(
        &self,
        attempt: &LoginAttempt<'_>,
        candidates: &[LoginCandidate<'_>],
        facts: &RequestFacts,
    ) -> Decision {
        self.active.load().decide_login(attempt, candidates, facts)
    }

    /// [`ActiveSet::decide_identity`] on the active set.
    pub fn decide_identity(
        &self,
        action: &str,
        attempt: &LoginAttempt<'_>,
        candidates: &[LoginCandidate<'_>],
        facts: &RequestFacts,
    ) -> Decision {
        self.active
            .load()
            .decide_identity(action, attempt, candidates, facts)
    }

    /// [`ActiveSet::choose_identity`] on the active set.
    pub fn choose_identity(
        &self,
        action: &str,
        attempt: &LoginAttempt<'_>,
        candidates: &[LoginCandidate<'_>],
        facts: &RequestFacts,
    ) -> (Decision, Option<usize>) {
        self.active
            .load()
            .choose_identity(action, attempt, candidates, facts)
    }

    /// The actions the gateway asks about, checked against the schema now and on every reload
    /// (a set that lacks one is refused). Set once, at start.
    pub fn require_actions(&self, actions: &[&str]) -> Result<(), String> {
        let missing = self.active.load().missing_actions(actions);
        let _ = self
            .required
            .set(actions.iter().map(|a| a.to_string()).collect());
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing_message(&missing))
        }
    }

    /// (Chinese, English) message of an error code; a generic message for an unknown code.
    pub fn message(&self, code: &str) -> (Arc<str>, Arc<str>) {
        self.active.load().message(code)
    }

    /// The active set's `@downstream` actions: what a route's `action` may name.
    pub fn downstream_actions(&self) -> Vec<String> {
        self.active.load().downstream_actions.clone()
    }

    /// Whether a route may name `action` (a `@downstream` action of the active schema).
    pub fn is_downstream_action(&self, action: &str) -> bool {
        self.active
            .load()
            .downstream_actions
            .iter()
            .any(|a| a == action)
    }
}

#[cfg(test)]
#[expect(clippy::indexing_slicing, clippy::panic, reason = "tests fail loudly")]
mod tests;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
