//! Shadow evaluation (`[policies] shadow_dir`): a candidate policy set decides live traffic
//! beside the enforced one, off the response path, and never changes a response.
//!
//! The pipeline offers each decided request with `try_send` into a bounded queue (an `Arc` of
//! the session, the action, the facts and the enforced decision); one worker task decides it
//! with the shadow engine and compares. A full queue drops the job and counts it
//! (`taxgate_shadow_dropped_total`): the shadow never slows or blocks a request. Disagreements
//! on allow/deny are counted by kind and written to the audit log as `shadow_disagreement`
//! events whose detail holds both decisions.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use taxgate_store::AuditEvent;
use tokio::sync::mpsc;

use crate::audit::Audit;
use crate::session::{Prepared, ResolvedSession};
use taxgate_policy::{Decision, PolicyEngine, RequestFacts};

/// Jobs waiting for the worker, at most.
pub const QUEUE: usize = 4096;

/// The audit action of a disagreement event.
pub const DISAGREEMENT_ACTION: &str = "shadow_disagreement";

struct Job {
    session: Arc<ResolvedSession>,
    prepared: Arc<Prepared>,
    action: String,
    facts: RequestFacts,
    decision_id: String,
    enforced: Decision,
}

#[derive(Default)]
struct Counts {
    decisions: AtomicU64,
    allow_to_deny: AtomicU64,
    deny_to_allow: AtomicU64,
    dropped: AtomicU64,
}

/// Counters of the shadow evaluation, for `/metrics` and `/admin/policies`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShadowCounts {
    /// Requests the shadow set has decided.
    pub decisions: u64,
    /// Of those, enforced allows the shadow set denied.
    pub allow_to_deny: u64,
    /// Of those, enforced denials the shadow set allowed.
    pub deny_to_allow: u64,
    /// Requests not shadowed because the queue was full.
    pub dropped: u64,
}

/// The shadow evaluation: the candidate engine and the queue to its worker task.
pub struct Shadow {
    engine: Arc<PolicyEngine>,
    tx: mpsc::Sender<Job>,
    counts: Arc<Counts>,
}

impl Shadow {
    /// Starts the worker on the current runtime.
    pub fn start(engine: Arc<PolicyEngine>, audit: Audit) -> Arc<Shadow> {
        Self::start_with_capacity(engine, audit, QUEUE)
    }

    /// [`Shadow::start`] with a queue of `capacity` jobs (at least one) instead of [`QUEUE`].
    pub fn start_with_capacity(
        engine: Arc<PolicyEngine>,
        audit: Audit,
        capacity: usize,
    ) -> Arc<Shadow> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let counts = Arc::new(Counts::default());
        tokio::spawn(worker(engine.clone(), rx, counts.clone(), audit));
        Arc::new(Shadow { engine, tx, counts })
    }

    /// The engine holding the candidate set.
    pub fn engine(&self) -> &Arc<PolicyEngine> {
        &self.engine
    }

    /// Hands a decided request to the worker without waiting; a full queue drops it (counted).
    pub fn offer(
        &self,
        session: &Arc<ResolvedSession>,
        prepared: &Arc<Prepared>,
        action: &str,
        facts: RequestFacts,
        decision_id: &str,
        enforced: &Decision,
    ) {
        let job = Job {
            session: session.clone(),
            prepared: prepared.clone(),
            action: action.to_string(),
            facts,
            decision_id: decision_id.to_string(),
            enforced: enforced.clone(),
        };
        if self.tx.try_send(job).is_err() {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counters so far.
    pub fn counts(&self) -> ShadowCounts {
        let c = &self.counts;
        ShadowCounts {
            decisions: c.decisions.load(Ordering::Relaxed),
            allow_to_deny: c.allow_to_deny.load(Ordering::Relaxed),
            deny_to_allow: c.deny_to_allow.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
        }
    }

    /// Prometheus text of the shadow's series.
    pub fn metrics_text(&self) -> String {
        let c = self.counts();
        let mut out = String::new();
        out.push_str(
            "# HELP taxgate_shadow_decisions_total Requests decided by the shadow policy set.\n\
             # TYPE taxgate_shadow_decisions_total counter\n",
        );
        let _ = writeln!(out, "taxgate_shadow_decisions_total {}", c.decisions);
        out.push_str(
            "# HELP taxgate_shadow_disagreements_total Shadow decisions that differ from the enforced allow/deny.\n\
             # TYPE taxgate_shadow_disagreements_total counter\n",
        );
        let _ = writeln!(
            out,
            "taxgate_shadow_disagreements_total{{kind=\"allow_to_deny\"}} {}",
            c.allow_to_deny
        );
        let _ = writeln!(
            out,
            "taxgate_shadow_disagreements_total{{kind=\"deny_to_allow\"}} {}",
            c.deny_to_allow
        );
        out.push_str(
            "# HELP taxgate_shadow_dropped_total Requests not shadow-evaluated because the queue was full.\n\
             # TYPE taxgate_shadow_dropped_total counter\n",
        );
        let _ = writeln!(out, "taxgate_shadow_dropped_total {}", c.dropped);
        out
    }

    /// For `/admin/policies`: the shadow set's status and the counters.
    pub fn status(&self) -> serde_json::Value {
        let s = self.engine.status();
        let c = self.counts();
        serde_json::json!({
            "dir": self.engine.dir().display().to_string(),
            "version": s.version,
            "loaded_at": s.loaded_at,
            "last_error": s.last_error,
            "decisions": c.decisions,
            "disagreements": {
                "allow_to_deny": c.allow_to_deny,
                "deny_to_allow": c.deny_to_allow,
            },
            "dropped": c.dropped,
        })
    }
}

async fn worker(
    engine: Arc<PolicyEngine>,
    mut rx: mpsc::Receiver<Job>,
    counts: Arc<Counts>,
    audit: Audit,
) {
    while let Some(job) = rx.recv().await {
        let shadow = engine.decide(&job.prepared.entities, &job.action, &job.facts);
        counts.decisions.fetch_add(1, Ordering::Relaxed);
        let kind = match (job.enforced.allowed, shadow.allowed) {
            (true, false) => {
                counts.allow_to_deny.fetch_add(1, Ordering::Relaxed);
                "allow_to_deny"
            }
            (false, true) => {
                counts.deny_to_allow.fetch_add(1, Ordering::Relaxed);
                "deny_to_allow"
            }
            _ => continue,
        };
        let event = disagreement_event(audit.next_id(), &job, &shadow, kind);
        // Off the response path: waiting for room here delays only the shadow.
        if audit.record(event).await.is_err() {
            tracing::warn!(
                decision = %job.decision_id,
                kind,
                "shadow disagreement not audited: the audit queue stayed full"
            );
        }
    }
}

fn summary(d: &Decision) -> serde_json::Value {
    serde_json::json!({
        "version": d.version.as_ref(),
        "allowed": d.allowed,
        "policies": d.policies,
        "reason": d.reason,
    })
}

fn disagreement_event(id: String, job: &Job, shadow: &Decision, kind: &str) -> AuditEvent {
    let s = &job.session.session;
    let detail = serde_json::json!({
        "decision": job.decision_id,
        "kind": kind,
        "action": job.action,
        "enforced": summary(&job.enforced),
        "shadow": summary(shadow),
    });
    AuditEvent {
        id,
        at: job.facts.now,
        // Not a downstream decision of its own: replay and coverage skip it.
        request_id: None,
        session_id: Some(s.id.clone()),
        person: s.person.clone(),
        enterprise: s.enterprise.clone(),
        role: s.role,
        entry: Some(s.entry),
        action: DISAGREEMENT_ACTION.to_string(),
        path: None,
        allowed: shadow.allowed,
        policies: shadow.policies.clone(),
        reason: shadow.reason.clone(),
        policy_version: Some(shadow.version.to_string()),
        client_addr: None,
        detail: Some(detail.to_string()),
        slice: None,
        legacy_login_until: None,
    }
}

#[cfg(test)]
#[expect(clippy::indexing_slicing, reason = "tests fail loudly")]
mod tests {
    use taxgate_store::model::Role;
    use taxgate_store::{AnyStore, Store};

    use super::*;
    use crate::health::StoreHealth;
    use taxgate_policy::cases::{BindingFacts, SessionFacts, session_slice};
    use taxgate_policy::testing::{copy_policies, repo_policies};

    fn tax_handler() -> Arc<ResolvedSession> {
        let facts = SessionFacts::confirmed_enterprise(Role::TaxHandler, BindingFacts::default());
        Arc::new(ResolvedSession::new(session_slice(&facts).unwrap(), 0))
    }

    async fn store() -> AnyStore {
        let store = AnyStore::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    #[tokio::test]
    async fn disagreements_are_counted_and_audited_and_a_full_queue_drops() {
        let store = store().await;
        let (audit, writer) = Audit::start(store.clone(), 64, StoreHealth::new(), None).unwrap();
        let enforced = PolicyEngine::load(repo_policies()).unwrap();
        // The shadow lets every enterprise session invoice and forbids queries.
        let dir = copy_policies();
        std::fs::write(
            dir.path().join("zz_shadow.cedar"),
            "@id(\"shadow.invoice\")\n\
             permit (principal is Session, action == Action::\"invoice\", resource is Enterprise);\n\
             @id(\"shadow.no_query\")\n@reason(\"not_permitted\")\n\
             forbid (principal, action == Action::\"query\", resource);\n",
        )
        .unwrap();
        let shadow_engine = Arc::new(PolicyEngine::load(dir.path()).unwrap());
        let shadow = Shadow::start_with_capacity(shadow_engine, audit.clone(), 3);
        let session = tax_handler();
        let prepared = Arc::new(crate::session::prepare(&session).unwrap());
        let facts = RequestFacts::at(1_800_000_000);
        // Five offers before the worker runs (current-thread runtime): three fit, two drop.
        for action in ["invoice", "query", "declare", "declare", "declare"] {
            let d = enforced.decide(&prepared.entities, action, &facts);
            shadow.offer(&session, &prepared, action, facts, "req-1", &d);
        }
        for _ in 0..100 {
            if shadow.counts().decisions == 3 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(
            shadow.counts(),
            ShadowCounts {
                decisions: 3,
                allow_to_deny: 1,
                deny_to_allow: 1,
                dropped: 2,
            }
        );
        let text = shadow.metrics_text();
        assert!(text.contains("taxgate_shadow_disagreements_total{kind=\"deny_to_allow\"} 1"));
        assert!(text.contains("taxgate_shadow_dropped_total 2"));
        let status = shadow.status();
        assert_eq!(status["disagreements"]["allow_to_deny"], 1);
        assert_eq!(status["version"], shadow.engine().version().as_ref());
        // Both disagreements reach the audit log (nothing else was recorded).
        for _ in 0..100 {
            if store.count_audit().await.unwrap() == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(writer.finish(std::time::Duration::from_secs(5)).await);
        assert_eq!(store.count_audit().await.unwrap(), 2);
    }
}
