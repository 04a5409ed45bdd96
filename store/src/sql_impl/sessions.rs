//! Sessions: create, look up as a slice, touch, revoke, re-identify, expire.

use super::SqlStore;
use super::dialect::{Affected as _, BindArg as _, Cols as _, Dialect, found_in, on, touched};
use super::rows::{agreement_at, binding_at, enterprise_at, person_at, q, session_at};
use crate::ids::{IdNumber, TaxpayerId};
use crate::model::{Session, SessionSlice, Timestamp};
use crate::records::{Invalidation, SessionDevice};
use crate::store_api::{SessionIdentity, StoreResult};

pub(crate) async fn create<S: SqlStore>(
    st: &S,
    s: &Session,
    device: &SessionDevice,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO sessions (id, token_hash, entry, person, enterprise, agency, \
         role, binding_id, agreement_id, factor, created_at, last_seen_at, \
         expires_at, revoked_at, factor_at, face_at, user_agent, ua_family, client_net) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
         $17, $18, $19)",
    )
    .arg(s.id.as_str())
    .arg(s.token_hash.as_str())
    .arg(s.entry.as_str())
    .arg(s.person.as_ref().map(IdNumber::as_str))
    .arg(s.enterprise.as_ref().map(TaxpayerId::as_str))
    .arg(s.agency.as_ref().map(TaxpayerId::as_str))
    .arg(s.role.map(|r| r.as_str()))
    .arg(s.binding_id.as_deref())
    .arg(s.agreement_id.as_deref())
    .arg(s.factor.as_str())
    .arg(s.created_at)
    .arg(s.last_seen_at)
    .arg(s.expires_at)
    .arg(s.revoked_at)
    .arg(s.factor_at)
    .arg(s.face_at)
    .arg(device.user_agent.as_str())
    .arg(device.ua_family.as_str())
    .arg(device.client_net.as_str())
    .execute(st.db())
    .await?;
    Ok(())
}

pub(crate) async fn slice<S: SqlStore>(
    st: &S,
    token_hash: &str,
) -> StoreResult<Option<SessionSlice>> {
    slice_where(st, &S::Db::statements().slice, token_hash).await
}

pub(crate) async fn slice_by_id<S: SqlStore>(
    st: &S,
    id: &str,
) -> StoreResult<Option<SessionSlice>> {
    slice_where(st, &S::Db::statements().slice_by_id, id).await
}

async fn slice_where<S: SqlStore>(
    st: &S,
    statement: &'static str,
    key: &str,
) -> StoreResult<Option<SessionSlice>> {
    let Some(row) = sqlx::query(q(statement))
        .arg(key)
        .fetch_optional(st.db())
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(SessionSlice {
        session: session_at(&row)?,
        person: person_at(&row, "p_")?,
        enterprise: enterprise_at(&row, "e_")?,
        agency: enterprise_at(&row, "a_")?,
        binding: binding_at(&row)?,
        agreement: agreement_at(&row)?,
    }))
}

pub(crate) async fn touch<S: SqlStore>(st: &S, id: &str, now: Timestamp) -> StoreResult<()> {
    sqlx::query("UPDATE sessions SET last_seen_at = $2 WHERE id = $1 AND revoked_at IS NULL")
        .arg(id)
        .arg(now)
        .execute(st.db())
        .await?;
    Ok(())
}

pub(crate) async fn touch_many<S: SqlStore>(
    st: &S,
    touches: &[(String, Timestamp)],
) -> StoreResult<()> {
    if touches.is_empty() {
        return Ok(());
    }
    // One statement per chunk, not per session: at a million sessions nearly every request
    // is due to record its activity, and each statement is a round trip to SQLite's worker
    // thread (or to the PostgreSQL server). In id order, so that instances touching the same
    // sessions lock them in the same order; a time never moves back (another instance may
    // have recorded a later one).
    let mut touches: Vec<&(String, Timestamp)> = touches.iter().collect();
    touches.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    touches.dedup_by(|later, first| later.0 == first.0);
    let mut tx = st.begin_write().await?;
    for chunk in super::fixed_chunks(&touches) {
        let mut qb =
            sqlx::QueryBuilder::<S::Db>::new("UPDATE sessions SET last_seen_at = v.column2 FROM (");
        qb.push_values(chunk.iter(), |mut b, (id, at)| {
            b.arg(id.clone()).arg(*at);
        });
        qb.push(
            ") AS v WHERE sessions.id = v.column1 AND sessions.revoked_at IS NULL \
             AND sessions.last_seen_at < v.column2",
        );
        qb.build().execute(on(&mut tx)).await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn revoke<S: SqlStore>(st: &S, id: &str, now: Timestamp) -> StoreResult<bool> {
    let mut tx = st.begin_write().await?;
    let update =
        sqlx::query("UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .arg(id)
            .arg(now);
    let done = touched(on(&mut tx), update).await? == 1;
    if done {
        let inv = vec![Invalidation::Session { id: id.to_string() }];
        st.commit_notifying(tx, inv).await?;
    } else {
        tx.commit().await?;
    }
    Ok(done)
}

pub(crate) async fn revoke_of_person<S: SqlStore>(
    st: &S,
    person: &IdNumber,
    except: Option<&str>,
    now: Timestamp,
) -> StoreResult<u64> {
    let mut tx = st.begin_write().await?;
    let rows = sqlx::query(
        "UPDATE sessions SET revoked_at = $2 \
         WHERE person = $1 AND revoked_at IS NULL AND id <> COALESCE($3, '') \
         RETURNING id",
    )
    .arg(person.as_str())
    .arg(now)
    .arg(except)
    .fetch_all(on(&mut tx))
    .await?;
    let n = rows.len() as u64;
    let mut inv = Vec::with_capacity(rows.len() + 1);
    for row in &rows {
        inv.push(Invalidation::Session { id: row.only()? });
    }
    inv.push(Invalidation::Person {
        id_number: person.clone(),
    });
    st.commit_notifying(tx, inv).await?;
    Ok(n)
}

pub(crate) async fn set_identity<S: SqlStore>(
    st: &S,
    id: &str,
    ident: &SessionIdentity,
) -> StoreResult<()> {
    let mut tx = st.begin_write().await?;
    let update = sqlx::query(
        "UPDATE sessions SET enterprise = $2, agency = $3, role = $4, \
         binding_id = $5, agreement_id = $6 WHERE id = $1 AND revoked_at IS NULL",
    )
    .arg(id)
    .arg(ident.enterprise.as_ref().map(TaxpayerId::as_str))
    .arg(ident.agency.as_ref().map(TaxpayerId::as_str))
    .arg(ident.role.map(|r| r.as_str()))
    .arg(ident.binding_id.as_deref())
    .arg(ident.agreement_id.as_deref());
    found_in(on(&mut tx), update).await?;
    let inv = vec![Invalidation::Session { id: id.to_string() }];
    st.commit_notifying(tx, inv).await?;
    Ok(())
}

pub(crate) async fn delete_expired<S: SqlStore>(st: &S, now: Timestamp) -> StoreResult<u64> {
    Ok(sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .arg(now)
        .execute(st.db())
        .await?
        .rows_affected())
}
