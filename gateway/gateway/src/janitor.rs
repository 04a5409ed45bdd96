//! Housekeeping: expired sessions, expired challenges and old SMS-log rows are deleted
//! periodically, so the tables the hot paths index stay the size of the live population.
//! Every instance runs it; the deletes are idempotent, so several instances doing the same work
//! is harmless. Audit events older than `[audit] retention_days` (and the entity slices only
//! they referred to) are deleted too; `retention_days = 0` keeps them forever.

use std::time::Duration;

use taxgate_store::{AnyStore, Store};

use crate::pipeline::unix_now;

const EVERY: Duration = Duration::from_secs(600);
/// Challenges are kept a while after expiry, so a late answer reads `challenge_expired`
/// rather than nothing.
const CHALLENGE_GRACE_SECS: i64 = 3600;
/// The SMS limits look one Beijing day back at most.
const SMS_LOG_KEEP_SECS: i64 = 2 * 86_400;

/// One pass; returns (sessions, challenges, sms rows) deleted.
pub async fn sweep(
    store: &AnyStore,
    now: i64,
) -> Result<(u64, u64, u64), taxgate_store::StoreError> {
    let sessions = store.delete_expired_sessions(now).await?;
    let challenges = store
        .delete_expired_challenges(now - CHALLENGE_GRACE_SECS)
        .await?;
    let sms = store.prune_sms_log(now - SMS_LOG_KEEP_SECS).await?;
    // PostgreSQL: the audit partitions of the coming days (see the store's migration 0010).
    store.audit_upkeep(now).await?;
    Ok((sessions, challenges, sms))
}

/// Audit retention: deletes audit events older than `retention_days` and the slices no
/// remaining event refers to. `0` keeps everything.
pub async fn purge_audit(
    store: &AnyStore,
    now: i64,
    retention_days: u32,
) -> Result<taxgate_store::AuditPurge, taxgate_store::StoreError> {
    if retention_days == 0 {
        return Ok(taxgate_store::AuditPurge::default());
    }
    store
        .purge_audit(now - i64::from(retention_days) * 86_400)
        .await
}

/// Sweep every ten minutes for as long as the process runs.
pub fn start(store: AnyStore, retention_days: u32) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await;
            match sweep(&store, unix_now()).await {
                Ok((s, c, m)) if s + c + m > 0 => {
                    tracing::info!(
                        sessions = s,
                        challenges = c,
                        sms_log = m,
                        "expired rows deleted"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "housekeeping failed; will retry"),
            }
            match purge_audit(&store, unix_now(), retention_days).await {
                Ok(p) if p.events + p.slices > 0 => {
                    tracing::info!(
                        events = p.events,
                        slices = p.slices,
                        retention_days,
                        "audit retention: old rows deleted"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "audit retention failed; will retry"),
            }
        }
    })
}
