//! Bindings (a person's role in an enterprise) and agency agreements (an agency's staff acting
//! for a client).

use sqlx::Executor;

use super::SqlStore;
use super::dialect::{BindArg as _, Cols as _, Dialect, Tx, found_in, on, touched};
use super::rows::{BINDING_SELECT, agreement_at, all, binding_at, find, one, select};
use crate::decode;
use crate::error::StoreError;
use crate::ids::{IdNumber, TaxpayerId};
use crate::model::{AgencyAgreement, Binding, Timestamp};
use crate::records::{BindingUpdate, ConfirmOutcome, Invalidation, NewBinding, Side};
use crate::store_api::StoreResult;

/// Binding `id`, on any connection (`st.db()`) or inside a transaction (`on(&mut tx)`).
pub(crate) async fn binding<'e, D: Dialect>(
    exec: impl Executor<'e, Database = D>,
    id: &str,
) -> StoreResult<Option<Binding>> {
    find(
        exec,
        select(&BINDING_SELECT, "WHERE b.id = $1"),
        id,
        binding_at,
    )
    .await
}

/// The bindings matching `filter` (on `b`), newest first; `keys` are its `$1`, `$2`…
pub(crate) async fn bindings_where<S: SqlStore>(
    st: &S,
    filter: &str,
    keys: &[&str],
) -> StoreResult<Vec<Binding>> {
    let sql = select(
        &BINDING_SELECT,
        &format!("WHERE {filter} ORDER BY b.created_at DESC, b.id"),
    );
    let mut query = sqlx::query(sql);
    for k in keys {
        query = query.arg(*k);
    }
    all(&query.fetch_all(st.db()).await?, binding_at)
}

pub(crate) async fn create_binding<S: SqlStore>(st: &S, new: NewBinding) -> StoreResult<Binding> {
    let binding = Binding {
        id: crate::records::new_id()?,
        person: new.person,
        enterprise: new.enterprise,
        role: new.role,
        permissions: new.permissions,
        valid_from: new.valid_from,
        valid_until: new.valid_until,
        enterprise_confirmed: new.enterprise_confirmed,
        person_confirmed: new.person_confirmed,
        revoked_at: None,
        created_at: new.now,
        updated_at: new.now,
        updated_by: new.by,
    };
    insert_binding(st.db(), &binding, new.granted_by.as_deref())
        .await
        .map_err(|e| match e {
            StoreError::Conflict { .. } => StoreError::conflict(
                "an active binding with this person, enterprise and role exists",
            ),
            other => other,
        })?;
    Ok(binding)
}

pub(crate) async fn insert_binding<'e, D: Dialect>(
    exec: impl Executor<'e, Database = D>,
    b: &Binding,
    granted_by: Option<&str>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO bindings (id, person, enterprise, role, permissions, valid_from, \
         valid_until, enterprise_confirmed, person_confirmed, revoked_at, created_at, \
         updated_at, updated_by, granted_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .arg(b.id.as_str())
    .arg(b.person.as_str())
    .arg(b.enterprise.as_str())
    .arg(b.role.as_str())
    .arg(b.permissions.as_deref().map(decode::groups_json))
    .arg(b.valid_from)
    .arg(b.valid_until)
    .arg(b.enterprise_confirmed)
    .arg(b.person_confirmed)
    .arg(b.revoked_at)
    .arg(b.created_at)
    .arg(b.updated_at)
    .arg(b.updated_by.as_str())
    .arg(granted_by)
    .execute(exec)
    .await?;
    Ok(())
}

pub(crate) async fn confirm_binding<S: SqlStore>(
    st: &S,
    id: &str,
    side: Side,
    by: &str,
    now: Timestamp,
) -> StoreResult<ConfirmOutcome> {
    let sql = match side {
        Side::Enterprise => {
            "UPDATE bindings SET enterprise_confirmed = TRUE, updated_at = $2, \
             updated_by = $3 WHERE id = $1 AND revoked_at IS NULL \
             AND enterprise_confirmed = FALSE"
        }
        // A pending grant is confirmed only while the binding that made it is live (not
        // revoked, within its validity): it dies with its granter.
        Side::Person => {
            "UPDATE bindings SET person_confirmed = TRUE, updated_at = $2, \
             updated_by = $3 WHERE id = $1 AND revoked_at IS NULL \
             AND person_confirmed = FALSE \
             AND (granted_by IS NULL OR EXISTS (SELECT 1 FROM bindings g \
                  WHERE g.id = bindings.granted_by AND g.revoked_at IS NULL \
                  AND g.valid_from <= $2 \
                  AND (g.valid_until IS NULL OR g.valid_until > $2)))"
        }
    };
    let mut tx = st.begin_write().await?;
    let update = sqlx::query(sql).arg(id).arg(now).arg(by);
    let changed = touched(on(&mut tx), update).await? == 1;
    let binding = binding(on(&mut tx), id).await?;
    let Some(binding) = binding.filter(|b| b.revoked_at.is_none()) else {
        return Err(StoreError::NotFound);
    };
    if !changed && side == Side::Person && !binding.person_confirmed {
        // Not confirmed, not revoked, yet not updated: its granter's binding is no longer
        // live. The grant dies now (as revoking the granter would have done), and the answer
        // is the same as for a revoked grant.
        let mut dead = vec![id.to_string()];
        sqlx::query(
            "UPDATE bindings SET revoked_at = $2, updated_at = $2 \
             WHERE id = $1 AND revoked_at IS NULL",
        )
        .arg(id)
        .arg(now)
        .execute(on(&mut tx))
        .await?;
        dead.extend(revoke_pending_grants_of(&mut tx, id, now).await?);
        let inv: Vec<Invalidation> = dead
            .into_iter()
            .map(|id| Invalidation::Binding { id })
            .collect();
        st.commit_notifying(tx, inv).await?;
        return Err(StoreError::NotFound);
    }
    if !changed {
        return Ok(ConfirmOutcome::AlreadyConfirmed(binding));
    }
    let inv = vec![Invalidation::Binding { id: id.to_string() }];
    st.commit_notifying(tx, inv).await?;
    Ok(ConfirmOutcome::Confirmed(binding))
}

pub(crate) async fn revoke_binding<S: SqlStore>(
    st: &S,
    id: &str,
    by: &str,
    now: Timestamp,
) -> StoreResult<Binding> {
    let mut tx = st.begin_write().await?;
    let update = sqlx::query(
        "UPDATE bindings SET revoked_at = $2, updated_at = $2, updated_by = $3 \
         WHERE id = $1 AND revoked_at IS NULL",
    )
    .arg(id)
    .arg(now)
    .arg(by);
    found_in(on(&mut tx), update).await?;
    let binding = binding(on(&mut tx), id)
        .await?
        .ok_or(StoreError::NotFound)?;
    let mut inv = vec![Invalidation::Binding { id: id.to_string() }];
    inv.extend(
        revoke_pending_grants_of(&mut tx, id, now)
            .await?
            .into_iter()
            .map(|id| Invalidation::Binding { id }),
    );
    st.commit_notifying(tx, inv).await?;
    Ok(binding)
}

pub(crate) async fn update_binding<S: SqlStore>(
    st: &S,
    update: &BindingUpdate,
) -> StoreResult<Binding> {
    let id = update.expected.id.as_str();
    let mut tx = st.begin_write().await?;
    st.lock_key(&mut tx, &format!("binding:{id}")).await?;
    let current = binding(on(&mut tx), id)
        .await?
        .filter(|b| b.revoked_at.is_none())
        .ok_or(StoreError::NotFound)?;
    // Decided on what the caller read: a change made meanwhile (another update, a
    // confirmation, a revoke) means that decision was about another binding.
    if current != update.expected {
        return Err(StoreError::conflict(
            "the binding changed while the update was decided",
        ));
    }
    let person_confirmed = current.person_confirmed && !update.reconfirm;
    sqlx::query(
        "UPDATE bindings SET permissions = $2, valid_until = $3, person_confirmed = $4, \
         updated_at = $5, updated_by = $6 WHERE id = $1 AND revoked_at IS NULL",
    )
    .arg(id)
    .arg(update.permissions.as_deref().map(decode::groups_json))
    .arg(update.valid_until)
    .arg(person_confirmed)
    .arg(update.now)
    .arg(update.by.as_str())
    .execute(on(&mut tx))
    .await?;
    let after = binding(on(&mut tx), id)
        .await?
        .ok_or(StoreError::NotFound)?;
    st.commit_notifying(tx, vec![Invalidation::Binding { id: id.to_string() }])
        .await?;
    Ok(after)
}

/// Revokes, in `tx`, the pending grants (not yet confirmed by their person) that the holder
/// of binding `granter` made; `updated_by` keeps the granter. Returns their ids.
async fn revoke_pending_grants_of<D: Dialect>(
    tx: &mut Tx<D>,
    granter: &str,
    now: Timestamp,
) -> StoreResult<Vec<String>> {
    let rows = sqlx::query(
        "UPDATE bindings SET revoked_at = $2, updated_at = $2 \
         WHERE granted_by = $1 AND revoked_at IS NULL AND person_confirmed = FALSE \
         RETURNING id",
    )
    .arg(granter)
    .arg(now)
    .fetch_all(on(tx))
    .await?;
    rows.iter().map(|r| r.col("", "id")).collect()
}

// ---- agency agreements ------------------------------------------------------------------------

fn agreement_select<D: Dialect>(rest: &str) -> sqlx::AssertSqlSafe<String> {
    select(&D::statements().agreement_select, rest)
}

pub(crate) async fn agreement<S: SqlStore>(
    st: &S,
    id: &str,
) -> StoreResult<Option<AgencyAgreement>> {
    let sql = agreement_select::<S::Db>("WHERE g.id = $1");
    find(st.db(), sql, id, agreement_at).await
}

pub(crate) async fn agreements_of_staff<S: SqlStore>(
    st: &S,
    agency: &TaxpayerId,
    person: &IdNumber,
) -> StoreResult<Vec<AgencyAgreement>> {
    let sql = agreement_select::<S::Db>(
        "JOIN agreement_staff me ON me.agreement_id = g.id \
         WHERE me.person = $2 AND g.agency = $1 AND g.revoked_at IS NULL \
         ORDER BY g.client",
    );
    let rows = sqlx::query(sql)
        .arg(agency.as_str())
        .arg(person.as_str())
        .fetch_all(st.db())
        .await?;
    all(&rows, agreement_at)
}

pub(crate) async fn agreement_between<S: SqlStore>(
    st: &S,
    agency: &TaxpayerId,
    client: &TaxpayerId,
) -> StoreResult<Option<AgencyAgreement>> {
    let sql =
        agreement_select::<S::Db>("WHERE g.agency = $1 AND g.client = $2 AND g.revoked_at IS NULL");
    let row = sqlx::query(sql)
        .arg(agency.as_str())
        .arg(client.as_str())
        .fetch_optional(st.db())
        .await?;
    one(row, agreement_at)
}

pub(crate) async fn staff_agencies<S: SqlStore>(
    st: &S,
    person: &IdNumber,
    client: &TaxpayerId,
) -> StoreResult<Vec<TaxpayerId>> {
    let rows = sqlx::query(
        "SELECT g.agency AS agency FROM agency_agreements g \
         JOIN agreement_staff st ON st.agreement_id = g.id \
         WHERE g.client = $1 AND st.person = $2 AND g.revoked_at IS NULL \
         ORDER BY g.agency",
    )
    .arg(client.as_str())
    .arg(person.as_str())
    .fetch_all(st.db())
    .await?;
    rows.iter()
        .map(|r| decode::taxpayer_id("agency", &r.col::<String>("", "agency")?))
        .collect()
}

pub(crate) async fn revoke_agreement<S: SqlStore>(
    st: &S,
    id: &str,
    now: Timestamp,
) -> StoreResult<()> {
    let mut tx = st.begin_write().await?;
    let update = sqlx::query(
        "UPDATE agency_agreements SET revoked_at = $2, updated_at = $2 \
         WHERE id = $1 AND revoked_at IS NULL",
    )
    .arg(id)
    .arg(now);
    found_in(on(&mut tx), update).await?;
    let inv = vec![Invalidation::Agreement { id: id.to_string() }];
    st.commit_notifying(tx, inv).await?;
    Ok(())
}
