//! Persons and enterprises: lookups, passwords, the phone (一号一人), and the lockout of every
//! kind of login key (persons, enterprises, unknown account strings).

use std::sync::LazyLock;

use sqlx::AssertSqlSafe;

use super::SqlStore;
use super::audit::insert_events;
use super::dialect::{BindArg as _, Cols as _, Dialect, Tx, found_in, on};
use super::rows::{ENTERPRISE_SELECT, PERSON_SELECT, enterprise_at, find, person_at, q, select};
use crate::decode;
use crate::error::StoreError;
use crate::ids::{IdNumber, Phone, TaxpayerId};
use crate::model::{Enterprise, Person, Secret, Timestamp};
use crate::records::{
    AuditEvent, CheckOutcome, CheckReservation, FailureState, GuardKey, Invalidation, LockoutRule,
    PhoneAudit,
};
use crate::store_api::StoreResult;

pub(crate) async fn person_by_account<S: SqlStore>(
    st: &S,
    account: &str,
) -> StoreResult<Option<Person>> {
    let (column, key) = if let Ok(id) = IdNumber::parse(account) {
        ("id_number", id.as_str().to_string())
    } else if let Ok(phone) = Phone::parse(account) {
        ("phone", phone.as_str().to_string())
    } else {
        let username = account.trim();
        // Case-insensitive; where usernames clash in case only (see the view
        // `username_clashes`), only the exact spelling matches, never a guess.
        let rows = sqlx::query(select(
            &PERSON_SELECT,
            "WHERE lower(p.username) = lower($1) \
             ORDER BY CASE WHEN p.username = $1 THEN 0 ELSE 1 END LIMIT 2",
        ))
        .arg(username)
        .fetch_all(st.db())
        .await?;
        let mut found = Vec::with_capacity(rows.len());
        for r in &rows {
            if let Some(p) = person_at(r, "p_")? {
                found.push(p);
            }
        }
        let exact = found
            .first()
            .is_some_and(|p| p.username.as_deref() == Some(username));
        return Ok(if exact || found.len() == 1 {
            found.into_iter().next()
        } else {
            None
        });
    };
    let sql = select(&PERSON_SELECT, &format!("WHERE p.{column} = $1"));
    find(st.db(), sql, &key, |r| person_at(r, "p_")).await
}

pub(crate) async fn person<S: SqlStore>(st: &S, id: &IdNumber) -> StoreResult<Option<Person>> {
    let sql = select(&PERSON_SELECT, "WHERE p.id_number = $1");
    find(st.db(), sql, id.as_str(), |r| person_at(r, "p_")).await
}

pub(crate) async fn enterprise<S: SqlStore>(
    st: &S,
    id: &TaxpayerId,
) -> StoreResult<Option<Enterprise>> {
    let sql = q(&ENTERPRISE_SELECT);
    find(st.db(), sql, id.as_str(), |r| enterprise_at(r, "e_")).await
}

/// Count a failed login on `key` (outside the reservation protocol).
pub(crate) async fn record_failure<S: SqlStore>(
    st: &S,
    key: GuardKey,
    now: Timestamp,
    max_failures: i32,
    lockout_secs: i64,
) -> StoreResult<FailureState> {
    let mut tx = st.begin_write().await?;
    let state = failure_in(&mut tx, &key, now, max_failures, lockout_secs, 0).await?;
    tx.commit().await?;
    Ok(state)
}

/// Forget the failures and any lock of `key` (a successful login outside the reservations).
pub(crate) async fn reset_failures<S: SqlStore>(st: &S, key: &GuardKey) -> StoreResult<()> {
    let (sql, k) = guard_of(key);
    sqlx::query(q(&sql.reset)).arg(k).execute(st.db()).await?;
    Ok(())
}

pub(crate) async fn set_password<S: SqlStore>(
    st: &S,
    id: &IdNumber,
    phc: &Secret,
    must_change: bool,
    now: Timestamp,
) -> StoreResult<()> {
    let mut tx = st.begin_write().await?;
    let update = sqlx::query(
        "UPDATE persons SET password_hash = $2, must_change_password = $3, \
         updated_at = $4 WHERE id_number = $1",
    )
    .arg(id.as_str())
    .arg(phc.expose())
    .arg(must_change)
    .arg(now);
    found_in(on(&mut tx), update).await?;
    void_challenges_of(&mut tx, &GuardKey::Person(id.clone()), now).await?;
    let inv = vec![Invalidation::Person {
        id_number: id.clone(),
    }];
    st.commit_notifying(tx, inv).await?;
    Ok(())
}

/// `attempt` again while it conflicts, at most five times in all.
pub(crate) async fn retry_conflicts<T, F: Future<Output = StoreResult<T>>>(
    mut attempt: impl FnMut() -> F,
) -> StoreResult<T> {
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(StoreError::Conflict { .. }) if tries < 5 => continue,
            other => return other,
        }
    }
}

pub(crate) async fn transfer_phone<S: SqlStore>(
    st: &S,
    id: &IdNumber,
    phone: &Phone,
    now: Timestamp,
    audit: &PhoneAudit,
) -> StoreResult<Option<IdNumber>> {
    let mut tx = st.begin_write().await?;
    // Racing transfers of one number run one after the other (SQLite: the write lock taken by
    // BEGIN IMMEDIATE; PostgreSQL: an advisory lock on the number), otherwise two of them lock
    // the two persons' rows in opposite orders.
    st.lock_key(&mut tx, phone.as_str()).await?;
    let previous = sqlx::query(
        "UPDATE persons SET phone = NULL, updated_at = $3 \
         WHERE phone = $1 AND id_number <> $2 RETURNING id_number",
    )
    .arg(phone.as_str())
    .arg(id.as_str())
    .arg(now)
    .fetch_all(on(&mut tx))
    .await?;
    let update = sqlx::query("UPDATE persons SET phone = $1, updated_at = $3 WHERE id_number = $2")
        .arg(phone.as_str())
        .arg(id.as_str())
        .arg(now);
    found_in(on(&mut tx), update).await?;
    let previous = match previous.first() {
        Some(p) => Some(decode::id_number("id_number", &p.only::<String>()?)?),
        None => None,
    };
    // The record of the transfer commits with it: a crash leaves both or neither.
    let mut events: Vec<AuditEvent> = audit.bound.iter().cloned().collect();
    if let (Some(p), Some(cleared)) = (&previous, &audit.cleared) {
        let mut ev = cleared.clone();
        ev.person = Some(p.clone());
        events.push(ev);
    }
    insert_events(&mut tx, &events, false).await?;
    let mut inv = vec![Invalidation::Person {
        id_number: id.clone(),
    }];
    if let Some(p) = &previous {
        inv.push(Invalidation::Person {
            id_number: p.clone(),
        });
    }
    st.commit_notifying(tx, inv).await?;
    Ok(previous)
}

// ---- lockout ---------------------------------------------------------------------------------

/// Checks under way after releasing `release` of them (a parameter: 0 or 1); a reservation
/// whose time has passed counts as none.
fn in_flight_after(release: &str) -> String {
    format!(
        "(CASE WHEN login_reserved_until > $2 AND login_in_flight > {release} \
         THEN login_in_flight - {release} ELSE 0 END)"
    )
}

/// The SQL of one lockout table: `persons`, `enterprises` or `login_guards` (unknown account
/// strings); the same columns in each.
struct GuardSql {
    table: &'static str,
    key: &'static str,
    /// $1 key, $2 now, $3 max failures, $4 reservation seconds, $5 lockout seconds.
    reserve: String,
    /// $1 key.
    state: String,
    /// $1 key, $2 now, $3 max failures, $4 lockout seconds, $5 reservations released.
    fail: String,
    /// $1 key, $2 now, $3 reservations released.
    succeed: String,
    /// $1 key, $2 now, $3 reservations released.
    abandon: String,
    /// $1 key.
    reset: String,
}

fn guard_sql(table: &'static str, key: &'static str) -> GuardSql {
    let touch = if table == "login_guards" {
        ", updated_at = $2"
    } else {
        ""
    };
    let expired = "(locked_until IS NOT NULL AND locked_until <= $2)";
    // Failures count while they fall within `lockout` of the first of them, and an expired
    // lock starts afresh: either way the count is stale and restarts.
    let stale = |lockout: &str| {
        format!(
            "({expired} OR (locked_until IS NULL AND failed_logins > 0 \
             AND failures_since <= $2 - {lockout}))"
        )
    };
    let failures = format!("(CASE WHEN {} THEN 0 ELSE failed_logins END)", stale("$5"));
    let live = "(CASE WHEN login_reserved_until > $2 THEN login_in_flight ELSE 0 END)";
    // Every SET expression sees the old row. A failure after a stale count restarts it at 1;
    // reaching the maximum (re)locks.
    let next = format!(
        "(CASE WHEN {} THEN 1 ELSE failed_logins + 1 END)",
        stale("$4")
    );
    let locked = "(locked_until IS NOT NULL AND locked_until > $2)";
    GuardSql {
        table,
        key,
        reserve: format!(
            "UPDATE {table} SET failed_logins = {failures}, \
             locked_until = CASE WHEN {expired} THEN NULL ELSE locked_until END, \
             login_in_flight = {live} + 1, login_reserved_until = $2 + $4{touch} \
             WHERE {key} = $1 AND NOT {locked} AND {failures} + {live} < $3 \
             RETURNING failed_logins"
        ),
        state: format!("SELECT locked_until FROM {table} WHERE {key} = $1"),
        fail: format!(
            "UPDATE {table} SET failed_logins = {next}, \
             failures_since = CASE WHEN {} OR failed_logins = 0 THEN $2 \
             ELSE failures_since END, \
             locked_until = CASE WHEN {next} >= $3 THEN $2 + $4 \
             WHEN {expired} THEN NULL ELSE locked_until END, \
             login_in_flight = {}{touch} \
             WHERE {key} = $1 RETURNING failed_logins, locked_until",
            stale("$4"),
            in_flight_after("$5")
        ),
        // A lock that came while the right password was being checked stands.
        succeed: format!(
            "UPDATE {table} SET \
             failed_logins = CASE WHEN {locked} THEN failed_logins ELSE 0 END, \
             locked_until = CASE WHEN {locked} THEN locked_until ELSE NULL END, \
             login_in_flight = {}{touch} \
             WHERE {key} = $1 RETURNING failed_logins, locked_until",
            in_flight_after("$3")
        ),
        abandon: format!(
            "UPDATE {table} SET login_in_flight = {} \
             WHERE {key} = $1 RETURNING failed_logins, locked_until",
            in_flight_after("$3")
        ),
        reset: format!(
            "UPDATE {table} SET failed_logins = 0, locked_until = NULL \
             WHERE {key} = $1 AND (failed_logins <> 0 OR locked_until IS NOT NULL)"
        ),
    }
}

static PERSON_GUARD: LazyLock<GuardSql> = LazyLock::new(|| guard_sql("persons", "id_number"));
static ENTERPRISE_GUARD: LazyLock<GuardSql> =
    LazyLock::new(|| guard_sql("enterprises", "taxpayer_id"));
static ACCOUNT_GUARD: LazyLock<GuardSql> = LazyLock::new(|| guard_sql("login_guards", "account"));

fn guard_of(key: &GuardKey) -> (&'static GuardSql, &str) {
    match key {
        GuardKey::Person(id) => (&PERSON_GUARD, id.as_str()),
        GuardKey::Enterprise(t) => (&ENTERPRISE_GUARD, t.as_str()),
        GuardKey::Account(a) => (&ACCOUNT_GUARD, a.as_str()),
    }
}

/// Count a failure on `key` inside `tx`; a lock voids the open challenges it guards.
async fn failure_in<D: Dialect>(
    tx: &mut Tx<D>,
    key: &GuardKey,
    now: Timestamp,
    max_failures: i32,
    lockout_secs: i64,
    release: i32,
) -> StoreResult<FailureState> {
    let (sql, k) = guard_of(key);
    let row = sqlx::query(q(&sql.fail))
        .arg(k)
        .arg(now)
        .arg(max_failures)
        .arg(lockout_secs)
        .arg(release)
        .fetch_optional(on(tx))
        .await?
        .ok_or(StoreError::NotFound)?;
    let state = FailureState {
        failed_count: row.col("", "failed_logins")?,
        locked_until: row.col("", "locked_until")?,
    };
    if state.locked_until.is_some_and(|t| t > now) {
        void_challenges_of(tx, key, now).await?;
    }
    Ok(state)
}

/// Void the open challenges a lock or a password change makes stale (issue 21 point 7).
async fn void_challenges_of<D: Dialect>(
    tx: &mut Tx<D>,
    key: &GuardKey,
    now: Timestamp,
) -> StoreResult<()> {
    let (sql, k) = match key {
        GuardKey::Person(id) => (
            "UPDATE challenges SET consumed_at = $2 \
             WHERE person = $1 AND consumed_at IS NULL",
            id.as_str(),
        ),
        GuardKey::Enterprise(t) => (
            "UPDATE challenges SET consumed_at = $2 WHERE enterprise = $1 \
             AND entry = 'enterprise_legacy' AND consumed_at IS NULL",
            t.as_str(),
        ),
        GuardKey::Account(_) => return Ok(()),
    };
    sqlx::query(sql).arg(k).arg(now).execute(on(tx)).await?;
    Ok(())
}

pub(crate) async fn reserve_password_check<S: SqlStore>(
    st: &S,
    key: &GuardKey,
    now: Timestamp,
    rule: &LockoutRule,
) -> StoreResult<CheckReservation> {
    let (sql, k) = guard_of(key);
    // The same statements for a known account and for an unknown string that was tried before
    // (one UPDATE, and one SELECT when refused), so neither the answer nor its time tells them
    // apart; only an unknown string's first try creates its row.
    let reserve = async || -> StoreResult<bool> {
        let admitted = sqlx::query(q(&sql.reserve))
            .arg(k)
            .arg(now)
            .arg(rule.max_failures)
            .arg(rule.reservation_secs)
            .arg(rule.lockout_secs)
            .fetch_optional(st.db())
            .await?;
        Ok(admitted.is_some())
    };
    let state = async || -> StoreResult<Option<Option<Timestamp>>> {
        let row = sqlx::query(q(&sql.state))
            .arg(k)
            .fetch_optional(st.db())
            .await?;
        Ok(row.map(|r| r.only()).transpose()?)
    };
    if reserve().await? {
        return Ok(CheckReservation::Admitted);
    }
    // Refused: read the lock, to tell the client how long it lasts. Not locked, the refusal
    // may have come before a racing first try created the row (or before checks under way
    // settled): try once more, on every kind of key alike.
    let mut locked_until = state().await?;
    if locked_until.is_none() && matches!(key, GuardKey::Account(_)) {
        sqlx::query(
            "INSERT INTO login_guards (account, updated_at) VALUES ($1, $2) \
             ON CONFLICT (account) DO NOTHING",
        )
        .arg(k)
        .arg(now)
        .execute(st.db())
        .await?;
        locked_until = Some(None);
    }
    if matches!(locked_until, Some(None)) {
        if reserve().await? {
            return Ok(CheckReservation::Admitted);
        }
        locked_until = state().await?;
    }
    let Some(locked_until) = locked_until else {
        tracing::debug!(table = sql.table, column = sql.key, "no row to reserve on");
        return Err(StoreError::NotFound);
    };
    Ok(CheckReservation::Refused {
        locked_until: locked_until.filter(|t| *t > now),
    })
}

pub(crate) async fn settle_password_check<S: SqlStore>(
    st: &S,
    key: &GuardKey,
    outcome: CheckOutcome,
    now: Timestamp,
    rule: &LockoutRule,
) -> StoreResult<FailureState> {
    let (sql, k) = guard_of(key);
    let mut tx = st.begin_write().await?;
    let state = match outcome {
        CheckOutcome::Failed => {
            failure_in(&mut tx, key, now, rule.max_failures, rule.lockout_secs, 1).await?
        }
        CheckOutcome::Succeeded | CheckOutcome::Abandoned => {
            let text = if outcome == CheckOutcome::Succeeded {
                &sql.succeed
            } else {
                &sql.abandon
            };
            let row = sqlx::query(AssertSqlSafe(text.as_str()))
                .arg(k)
                .arg(now)
                .arg(1_i32)
                .fetch_optional(on(&mut tx))
                .await?
                .ok_or(StoreError::NotFound)?;
            FailureState {
                failed_count: row.col("", "failed_logins")?,
                locked_until: row.col("", "locked_until")?,
            }
        }
    };
    tx.commit().await?;
    Ok(state)
}

/// Usernames that differ only in case (the view `username_clashes`).
pub(crate) async fn username_clashes<S: SqlStore>(st: &S) -> StoreResult<i64> {
    let row = sqlx::query("SELECT COUNT(*) FROM username_clashes")
        .fetch_one(st.db())
        .await?;
    Ok(row.only()?)
}
