//! The audit trail: events and the session slices they point to, the recorded decisions, the
//! policy use report, retention.

use super::dialect::{Affected as _, BindArg as _, Cols as _, Dialect, Tx, on};
use super::{SqlStore, fixed_chunks};
use crate::error::StoreError;
use crate::model::Timestamp;
use crate::records::{AuditEvent, AuditPurge, AuditSlice, PolicyUse, RecordedDecision};
use crate::store_api::StoreResult;

pub(crate) async fn append_recovered<S: SqlStore>(
    st: &S,
    events: &[AuditEvent],
) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut tx = st.begin_write().await?;
    insert_events(&mut tx, events, true).await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn append_with_slices<S: SqlStore>(
    st: &S,
    slices: &[(AuditSlice, Timestamp)],
    events: &[AuditEvent],
) -> StoreResult<()> {
    if events.is_empty() && slices.is_empty() {
        return Ok(());
    }
    let mut tx = st.begin_write().await?;
    // A slice already stored (by this or another instance) keeps its content (the hash covers
    // it, so both are the same) and only its last use moves up; a slice named by hash only
    // with `refresh` moves an existing row's last use and never creates one. One entry per
    // hash (PostgreSQL refuses to update a row twice in one statement: whole if any event
    // carried it whole, with the latest use), all in hash order, so writers on several
    // instances lock shared rows in the same order and cannot deadlock.
    let mut wanted: Vec<&(AuditSlice, Timestamp)> = slices
        .iter()
        .filter(|(s, _)| s.json.is_some() || s.refresh)
        .collect();
    wanted.sort_by(|a, b| a.0.hash.cmp(&b.0.hash));
    let mut merged: Vec<(&str, Option<&str>, Timestamp)> = Vec::with_capacity(wanted.len());
    for (s, seen) in wanted {
        match merged.last_mut() {
            Some(last) if last.0 == &*s.hash => {
                last.1 = last.1.or(s.json.as_deref());
                last.2 = last.2.max(*seen);
            }
            _ => merged.push((&s.hash, s.json.as_deref(), *seen)),
        }
    }
    // Runs of whole slices go in multi-row inserts, each refresh in its own update, in order.
    let mut whole: Vec<(&str, &str, Timestamp)> = Vec::new();
    for (hash, json, seen) in merged {
        match json {
            Some(json) => whole.push((hash, json, seen)),
            None => {
                insert_slices(&mut tx, &whole).await?;
                whole.clear();
                sqlx::query(
                    "UPDATE audit_slices SET last_seen = $1 WHERE hash = $2 AND last_seen < $1",
                )
                .arg(seen)
                .arg(hash.to_string())
                .execute(on(&mut tx))
                .await?;
            }
        }
    }
    insert_slices(&mut tx, &whole).await?;
    insert_events(&mut tx, events, false).await?;
    tx.commit().await?;
    Ok(())
}

/// Store whole slices (`hash`, JSON, use) inside `tx`, or move up the last use of those
/// already stored.
async fn insert_slices<D: Dialect>(
    tx: &mut Tx<D>,
    slices: &[(&str, &str, Timestamp)],
) -> StoreResult<()> {
    for chunk in fixed_chunks(slices) {
        let mut qb = sqlx::QueryBuilder::<D>::new(
            "INSERT INTO audit_slices (hash, slice, first_seen, last_seen) ",
        );
        qb.push_values(chunk.iter(), |mut b, (hash, json, seen)| {
            b.arg(hash.to_string())
                .arg(json.to_string())
                .arg(*seen)
                .arg(*seen);
        });
        qb.push(
            " ON CONFLICT (hash) DO UPDATE SET last_seen = excluded.last_seen \
             WHERE audit_slices.last_seen < excluded.last_seen",
        );
        qb.build().execute(on(tx)).await?;
    }
    Ok(())
}

/// Insert audit events inside `tx` (the batch writer's and the phone transfer's).
/// `ignore_existing`: ids the table already has are skipped instead of failing the batch (the
/// recovery of a crashed instance's journal, which may hold events the store got before the
/// crash). Everywhere else a duplicate is a bug, refused.
pub(crate) async fn insert_events<D: Dialect>(
    tx: &mut Tx<D>,
    events: &[AuditEvent],
    ignore_existing: bool,
) -> StoreResult<()> {
    // 18 parameters a row: 256 rows stay under both backends' parameter limits.
    for chunk in fixed_chunks(events) {
        let mut qb = sqlx::QueryBuilder::<D>::new(
            "INSERT INTO audit_events (id, at, request_id, session_id, person, \
             enterprise, role, entry, action, path, allowed, policies, reason, \
             policy_version, client_addr, detail, slice_hash, context) ",
        );
        qb.push_values(chunk, |mut b, e| {
            let context = e
                .legacy_login_until
                .map(|until| serde_json::json!({ "legacy_login_until": until }).to_string());
            b.arg(e.id.clone())
                .arg(e.at)
                .arg(e.request_id.clone())
                .arg(e.session_id.clone())
                .arg(e.person.as_ref().map(|p| p.as_str().to_string()))
                .arg(e.enterprise.as_ref().map(|p| p.as_str().to_string()))
                .arg(e.role.map(|r| r.as_str()))
                .arg(e.entry.map(|r| r.as_str()))
                .arg(e.action.clone())
                .arg(e.path.clone())
                .arg(e.allowed)
                .arg(serde_json::Value::from(e.policies.clone()).to_string())
                .arg(e.reason.clone())
                .arg(e.policy_version.clone())
                .arg(e.client_addr.clone())
                .arg(e.detail.clone())
                .arg(e.slice.as_ref().map(|s| s.hash.to_string()))
                .arg(context);
        });
        if ignore_existing {
            // No conflict target: the key is `id` on SQLite and (`id`, `at`) on PostgreSQL,
            // whose partitioned table cannot have a key without the partition column.
            qb.push(" ON CONFLICT DO NOTHING");
        }
        qb.build().execute(on(tx)).await?;
    }
    Ok(())
}

pub(crate) async fn recorded_decisions<S: SqlStore>(
    st: &S,
    since: Timestamp,
    limit: i64,
) -> StoreResult<Vec<RecordedDecision>> {
    let rows = sqlx::query(
        "SELECT id, at, entry, role, action, path, allowed, policies, reason, \
         policy_version, slice_hash, context FROM audit_events \
         WHERE request_id IS NOT NULL AND at >= $1 \
         ORDER BY at DESC, id DESC LIMIT $2",
    )
    .arg(since)
    .arg(limit.max(0))
    .fetch_all(st.db())
    .await?;
    rows.iter().map(super::rows::recorded_decision_at).collect()
}

pub(crate) async fn slices<S: SqlStore>(
    st: &S,
    hashes: &[String],
) -> StoreResult<Vec<(String, String)>> {
    let mut out = Vec::with_capacity(hashes.len());
    for chunk in hashes.chunks(500) {
        let mut qb = sqlx::QueryBuilder::<S::Db>::new(
            "SELECT hash, slice FROM audit_slices WHERE hash IN (",
        );
        let mut list = qb.separated(", ");
        for h in chunk {
            list.arg(h.clone());
        }
        qb.push(")");
        let rows = qb.build().fetch_all(st.db()).await?;
        for row in &rows {
            out.push((row.col("", "hash")?, row.col("", "slice")?));
        }
    }
    Ok(out)
}

pub(crate) async fn policy_use<S: SqlStore>(
    st: &S,
    since: Timestamp,
) -> StoreResult<Vec<PolicyUse>> {
    // Few distinct combinations of determining policies exist, so grouping in SQL keeps this
    // one small result even over millions of decisions.
    let rows = sqlx::query(
        "SELECT policies, allowed, COUNT(*) AS n FROM audit_events \
         WHERE request_id IS NOT NULL AND at >= $1 \
         GROUP BY policies, allowed",
    )
    .arg(since)
    .fetch_all(st.db())
    .await?;
    rows.iter()
        .map(|row| {
            let text: String = row.col("", "policies")?;
            Ok(PolicyUse {
                policies: serde_json::from_str(&text)
                    .map_err(|e| StoreError::corrupt("policies", e))?,
                allowed: row.col("", "allowed")?,
                decisions: row.col("", "n")?,
            })
        })
        .collect()
}

pub(crate) async fn purge<S: SqlStore>(st: &S, before: Timestamp) -> StoreResult<AuditPurge> {
    // Whole days first, where the backend keeps them apart (PostgreSQL drops a day's
    // partition); then what is left before `before`, row by row.
    let dropped = S::Db::drop_audit_days(st.pool(), before).await?;
    let mut tx = st.begin_write().await?;
    let events = dropped
        + sqlx::query("DELETE FROM audit_events WHERE at < $1")
            .arg(before)
            .execute(on(&mut tx))
            .await?
            .rows_affected();
    // A slice inserted by an instance still running the code before migration 0004 has no
    // last use (0): its first use stands in for it.
    let slices = sqlx::query("DELETE FROM audit_slices WHERE last_seen < $1 AND first_seen < $1")
        .arg(before.saturating_sub(crate::records::AUDIT_SLICE_SLACK_SECS))
        .execute(on(&mut tx))
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(AuditPurge { events, slices })
}

pub(crate) async fn count<S: SqlStore>(st: &S) -> StoreResult<i64> {
    let row = sqlx::query("SELECT COUNT(*) FROM audit_events")
        .fetch_one(st.db())
        .await?;
    Ok(row.only()?)
}
