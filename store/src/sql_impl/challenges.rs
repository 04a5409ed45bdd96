//! Login challenges (SMS codes, face checks) and the limits on sending SMS: the log of sends and
//! the fixed-window budgets.

use sqlx::Executor;

use super::SqlStore;
use super::dialect::{Affected as _, BindArg as _, Cols as _, Dialect, found_in, on, touched};
use super::rows::{CHALLENGE_SELECT, challenge_at, find, select};
use crate::error::StoreError;
use crate::ids::{IdNumber, Phone, TaxpayerId};
use crate::model::{Secret, Timestamp};
use crate::records::{Challenge, ChallengePurpose, SmsLimit, SmsRequest, SmsReservation, SmsStats};
use crate::store_api::StoreResult;

pub(crate) async fn create<S: SqlStore>(st: &S, c: &Challenge) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO challenges (id_hash, purpose, entry, person, enterprise, agency, \
         target_phone, code_hash, code_expires_at, code_attempts, face_nonce, \
         face_status, client_addr, created_at, expires_at, consumed_at, \
         face_expires_at) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .arg(c.id_hash.as_str())
    .arg(c.purpose.as_str())
    .arg(c.entry.map(|e| e.as_str()))
    .arg(c.person.as_ref().map(IdNumber::as_str))
    .arg(c.enterprise.as_ref().map(TaxpayerId::as_str))
    .arg(c.agency.as_ref().map(TaxpayerId::as_str))
    .arg(c.target_phone.as_ref().map(Phone::as_str))
    .arg(c.code_hash.as_ref().map(Secret::expose))
    .arg(c.code_expires_at)
    .arg(c.code_attempts)
    .arg(c.face_nonce.as_deref())
    .arg(c.face_status.map(|s| s.as_str()))
    .arg(c.client_addr.as_deref())
    .arg(c.created_at)
    .arg(c.expires_at)
    .arg(c.consumed_at)
    .arg(c.face_expires_at)
    .execute(st.db())
    .await?;
    Ok(())
}

/// The challenge `filter` (`WHERE c.… = $1`) finds for `key`.
pub(crate) async fn by<S: SqlStore>(
    st: &S,
    filter: &str,
    key: &str,
) -> StoreResult<Option<Challenge>> {
    let sql = select(&CHALLENGE_SELECT, filter);
    find(st.db(), sql, key, |r| challenge_at(r).map(Some)).await
}

pub(crate) async fn record_code_attempt<S: SqlStore>(st: &S, id_hash: &str) -> StoreResult<i32> {
    let row = sqlx::query(
        "UPDATE challenges SET code_attempts = code_attempts + 1 \
         WHERE id_hash = $1 RETURNING code_attempts",
    )
    .arg(id_hash)
    .fetch_optional(st.db())
    .await?
    .ok_or(StoreError::NotFound)?;
    Ok(row.only()?)
}

pub(crate) async fn reserve_code_attempt<S: SqlStore>(
    st: &S,
    id_hash: &str,
    now: Timestamp,
    max_attempts: i32,
) -> StoreResult<Option<i32>> {
    let row = sqlx::query(
        "UPDATE challenges SET code_attempts = code_attempts + 1 \
         WHERE id_hash = $1 AND code_attempts < $2 AND consumed_at IS NULL \
         AND expires_at > $3 RETURNING code_attempts",
    )
    .arg(id_hash)
    .arg(max_attempts)
    .arg(now)
    .fetch_optional(st.db())
    .await?;
    Ok(row.map(|r| r.only()).transpose()?)
}

/// What [`set_pending`] gives a challenge, each with its own expiry: a new SMS code, or a new
/// face nonce (refused once a face check has failed).
pub(crate) enum Pending<'a> {
    Code(&'a Secret),
    FaceNonce(&'a str),
}

pub(crate) async fn set_pending<S: SqlStore>(
    st: &S,
    id_hash: &str,
    pending: Pending<'_>,
    expires_at: Timestamp,
) -> StoreResult<()> {
    let (sql, value) = match pending {
        Pending::Code(code_hash) => (
            "UPDATE challenges SET code_hash = $2, code_expires_at = $3 WHERE id_hash = $1",
            code_hash.expose(),
        ),
        Pending::FaceNonce(nonce) => (
            "UPDATE challenges SET face_nonce = $2, face_status = 'pending', \
             face_expires_at = $3 WHERE id_hash = $1 \
             AND (face_status IS NULL OR face_status <> 'failed')",
            nonce,
        ),
    };
    let update = sqlx::query(sql).arg(id_hash).arg(value).arg(expires_at);
    found_in(st.db(), update).await
}

pub(crate) async fn set_face_result<S: SqlStore>(
    st: &S,
    nonce: &str,
    passed: bool,
) -> StoreResult<bool> {
    let status = if passed { "passed" } else { "failed" };
    let update = sqlx::query(
        "UPDATE challenges SET face_status = $2 WHERE face_nonce = $1 \
         AND face_status = 'pending' AND consumed_at IS NULL",
    )
    .arg(nonce)
    .arg(status);
    Ok(touched(st.db(), update).await? == 1)
}

pub(crate) async fn consume<S: SqlStore>(
    st: &S,
    id_hash: &str,
    now: Timestamp,
) -> StoreResult<bool> {
    let update = sqlx::query(
        "UPDATE challenges SET consumed_at = $2 WHERE id_hash = $1 \
         AND consumed_at IS NULL AND expires_at > $2",
    )
    .arg(id_hash)
    .arg(now);
    Ok(touched(st.db(), update).await? == 1)
}

pub(crate) async fn mark_verified<S: SqlStore>(
    st: &S,
    id_hash: &str,
    now: Timestamp,
) -> StoreResult<bool> {
    let update = sqlx::query(
        "UPDATE challenges SET verified_at = $2 WHERE id_hash = $1 \
         AND consumed_at IS NULL AND expires_at > $2",
    )
    .arg(id_hash)
    .arg(now);
    Ok(touched(st.db(), update).await? == 1)
}

pub(crate) async fn verified_at<S: SqlStore>(
    st: &S,
    id_hash: &str,
) -> StoreResult<Option<Timestamp>> {
    let row = sqlx::query("SELECT verified_at FROM challenges WHERE id_hash = $1")
        .arg(id_hash)
        .fetch_optional(st.db())
        .await?;
    match row {
        Some(r) => r.col("", "verified_at"),
        None => Ok(None),
    }
}

pub(crate) async fn delete_expired<S: SqlStore>(st: &S, before: Timestamp) -> StoreResult<u64> {
    Ok(sqlx::query("DELETE FROM challenges WHERE expires_at < $1")
        .arg(before)
        .execute(st.db())
        .await?
        .rows_affected())
}

// ---- SMS limits ------------------------------------------------------------------------------

pub(crate) async fn prune_sms_log<S: SqlStore>(st: &S, before: Timestamp) -> StoreResult<u64> {
    sqlx::query("DELETE FROM rate_budgets WHERE window_start < $1")
        .arg(before)
        .execute(st.db())
        .await?;
    sqlx::query(
        "DELETE FROM login_guards WHERE updated_at < $1 \
         AND (locked_until IS NULL OR locked_until < $1)",
    )
    .arg(before)
    .execute(st.db())
    .await?;
    Ok(sqlx::query("DELETE FROM sms_log WHERE sent_at < $1")
        .arg(before)
        .execute(st.db())
        .await?
        .rows_affected())
}

/// The sends to `phone` since `since`, and the last send ever: `n`, `last`.
const SMS_COUNT: &str = "SELECT (SELECT COUNT(*) FROM sms_log WHERE phone = $1 AND sent_at >= $2) \
                         AS n, (SELECT MAX(sent_at) FROM sms_log WHERE phone = $1) AS last";

pub(crate) async fn reserve_sms<S: SqlStore>(
    st: &S,
    r: &SmsRequest<'_>,
) -> StoreResult<SmsReservation> {
    let now = r.now;
    let l = &r.limits;
    let mut tx = st.begin_write().await?;
    // Sends to one number run one after the other (SQLite: BEGIN IMMEDIATE; PostgreSQL: an
    // advisory lock on the number), so the count read next is the count the insert below
    // extends.
    st.lock_key(&mut tx, &format!("sms:{}", r.phone.as_str()))
        .await?;
    let row = sqlx::query(SMS_COUNT)
        .arg(r.phone.as_str())
        .arg(l.day_start)
        .fetch_one(on(&mut tx))
        .await?;
    let count: i64 = row.col("", "n")?;
    let last: Option<Timestamp> = row.col("", "last")?;
    let refuse = |limit, retry: i64| {
        Ok(SmsReservation::Refused {
            limit,
            retry_after_secs: retry.max(1),
        })
    };
    // A request that read its clock before a racing one committed may see a later `last`
    // than its `now`: that is no time since, not negative time.
    if let Some(last) = last
        && l.resend_secs > 0
        && (now - last).max(0) < l.resend_secs
    {
        let since = (now - last).max(0);
        return refuse(SmsLimit::ResendInterval, l.resend_secs - since);
    }
    let next_day = l.day_start + 86_400 - now;
    if count >= l.number_daily {
        return refuse(SmsLimit::NumberDaily, next_day);
    }
    // The budgets are taken in one fixed order (global, person, address), each row locked
    // until commit; a refusal rolls back what was taken before it.
    let minute = now.div_euclid(60) * 60;
    if take_budget_in(on(&mut tx), "sms_global", minute, l.global_per_minute)
        .await?
        .is_none()
    {
        return refuse(SmsLimit::GlobalPerMinute, minute + 60 - now);
    }
    if let Some(person) = r.person {
        let bucket = format!("sms_person:{}", person.as_str());
        if take_budget_in(on(&mut tx), &bucket, l.day_start, l.person_daily)
            .await?
            .is_none()
        {
            return refuse(SmsLimit::PersonDaily, next_day);
        }
    }
    if let Some(addr) = r.address {
        let hour = now.div_euclid(3_600) * 3_600;
        let bucket = format!("sms_addr:{addr}");
        if take_budget_in(on(&mut tx), &bucket, hour, l.address_hourly)
            .await?
            .is_none()
        {
            return refuse(SmsLimit::AddressHourly, hour + 3_600 - now);
        }
    }
    sqlx::query(
        "INSERT INTO sms_log (phone, purpose, sent_at, person, client_addr) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .arg(r.phone.as_str())
    .arg(r.purpose.as_str())
    .arg(now)
    .arg(r.person.map(IdNumber::as_str))
    .arg(r.address)
    .execute(on(&mut tx))
    .await?;
    tx.commit().await?;
    Ok(SmsReservation::Granted)
}

pub(crate) async fn record_sms_sent<S: SqlStore>(
    st: &S,
    phone: &Phone,
    purpose: ChallengePurpose,
    now: Timestamp,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO sms_log (phone, purpose, sent_at) VALUES ($1, $2, $3)")
        .arg(phone.as_str())
        .arg(purpose.as_str())
        .arg(now)
        .execute(st.db())
        .await?;
    Ok(())
}

pub(crate) async fn sms_stats<S: SqlStore>(
    st: &S,
    phone: &Phone,
    since: Timestamp,
) -> StoreResult<SmsStats> {
    let row = sqlx::query(SMS_COUNT)
        .arg(phone.as_str())
        .arg(since)
        .fetch_one(st.db())
        .await?;
    Ok(SmsStats {
        count: row.col("", "n")?,
        last_sent_at: row.col("", "last")?,
    })
}

/// One unit of a fixed-window budget, in one conditional upsert (see `Store::take_budget`).
pub(crate) async fn take_budget_in<'e, D: Dialect>(
    exec: impl Executor<'e, Database = D>,
    bucket: &str,
    window_start: Timestamp,
    limit: i64,
) -> StoreResult<Option<i64>> {
    if limit <= 0 {
        return Ok(None);
    }
    let row = sqlx::query(
        "INSERT INTO rate_budgets (bucket, window_start, used) VALUES ($1, $2, 1) \
         ON CONFLICT (bucket) DO UPDATE SET \
         used = CASE WHEN rate_budgets.window_start < excluded.window_start THEN 1 \
         ELSE rate_budgets.used + 1 END, \
         window_start = CASE WHEN rate_budgets.window_start < excluded.window_start \
         THEN excluded.window_start ELSE rate_budgets.window_start END \
         WHERE rate_budgets.window_start < excluded.window_start \
         OR rate_budgets.used < $3 \
         RETURNING used",
    )
    .arg(bucket)
    .arg(window_start)
    .arg(limit)
    .fetch_optional(exec)
    .await?;
    let used: Option<i32> = row.map(|r| r.only()).transpose()?;
    Ok(used.map(i64::from))
}

pub(crate) async fn give_back_budget<S: SqlStore>(
    st: &S,
    bucket: &str,
    window_start: Timestamp,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE rate_budgets SET used = used - 1 \
         WHERE bucket = $1 AND window_start = $2 AND used > 0",
    )
    .arg(bucket)
    .arg(window_start)
    .execute(st.db())
    .await?;
    Ok(())
}
