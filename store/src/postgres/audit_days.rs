//! The day partitions of `audit_events` (migration 0010): made ahead of time, and dropped
//! whole by retention.
//!
//! A partition is `audit_events_dYYYYMMDD` for the UTC day whose epoch seconds are
//! `[day * 86400, (day + 1) * 86400)`. Names and bounds are made here from integers only, so
//! the DDL (which takes no bind parameters) never carries outside text.

use sqlx::{PgPool, Row as _};

use crate::error::StoreError;
use crate::model::Timestamp;
use crate::store_api::StoreResult;

const DAY: i64 = 86_400;
/// Partitions kept ready: from yesterday (a clock a little behind) to this many days ahead, so
/// a housekeeping pass that does not run for a while still finds each day's partition made.
const DAYS_AHEAD: i64 = 3;
/// Serialises the instances that make or drop partitions at the same moment.
const LOCK: &str = "taxgate.audit_days";
const PREFIX: &str = "audit_events_d";

/// A statement made here from integers and [`PREFIX`] only (DDL takes no bind parameters).
fn ddl(text: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(text)
}

/// `YYYYMMDD` of a day number (days since 1970-01-01), or `None` out of range.
fn day_name(day: i64) -> Option<String> {
    let date = time::OffsetDateTime::from_unix_timestamp(day.checked_mul(DAY)?).ok()?;
    Some(format!(
        "{PREFIX}{:04}{:02}{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    ))
}

/// The day number of a partition's name, if it is one of ours.
fn day_of(name: &str) -> Option<i64> {
    let digits = name.strip_prefix(PREFIX)?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i32 = digits.parse().ok()?;
    let month = time::Month::try_from(u8::try_from(n / 100 % 100).ok()?).ok()?;
    let date =
        time::Date::from_calendar_date(n / 10_000, month, u8::try_from(n % 100).ok()?).ok()?;
    let day = date
        .midnight()
        .assume_utc()
        .unix_timestamp()
        .div_euclid(DAY);
    // Only the canonical spelling: `day_name` of the result must give the name back.
    (day_name(day).as_deref() == Some(name)).then_some(day)
}

/// Make sure the partitions from the day before `now` to [`DAYS_AHEAD`] days after exist. Rows
/// the default partition took for such a day (written while its partition did not exist) are
/// moved into it in the same transaction.
pub(crate) async fn prepare(pool: &PgPool, now: Timestamp) -> StoreResult<()> {
    let today = now.div_euclid(DAY);
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(LOCK)
        .execute(&mut *tx)
        .await?;
    for day in today - 1..=today + DAYS_AHEAD {
        let Some(name) = day_name(day) else {
            continue;
        };
        let exists: bool = sqlx::query("SELECT to_regclass($1) IS NOT NULL")
            .bind(&name)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        if exists {
            continue;
        }
        let (lo, hi) = (day * DAY, (day + 1) * DAY);
        let stray: bool = sqlx::query(
            "SELECT EXISTS (SELECT 1 FROM audit_events_default WHERE at >= $1 AND at < $2)",
        )
        .bind(lo)
        .bind(hi)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        if stray {
            // The default partition holds rows of this day: a partition for it cannot be made
            // over them, so they move into a new table first, which is then attached.
            sqlx::query(ddl(format!(
                "CREATE TABLE {name} (LIKE audit_events INCLUDING DEFAULTS, \
                 CHECK (at >= {lo} AND at < {hi}))"
            )))
            .execute(&mut *tx)
            .await?;
            sqlx::query(ddl(format!(
                "WITH moved AS (DELETE FROM audit_events_default \
                 WHERE at >= {lo} AND at < {hi} RETURNING *) \
                 INSERT INTO {name} SELECT * FROM moved"
            )))
            .execute(&mut *tx)
            .await?;
            sqlx::query(ddl(format!(
                "ALTER TABLE audit_events ATTACH PARTITION {name} FOR VALUES FROM ({lo}) TO ({hi})"
            )))
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(ddl(format!(
                "CREATE TABLE {name} PARTITION OF audit_events FOR VALUES FROM ({lo}) TO ({hi})"
            )))
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Retention's first step: drop every day partition that ends at or before `before`, and
/// return how many events they held. What is left before `before` (part of a day, and the
/// default partition) the caller deletes row by row.
pub(crate) async fn drop_before(pool: &PgPool, before: Timestamp) -> StoreResult<u64> {
    let rows = sqlx::query(
        "SELECT c.relname::text AS name FROM pg_inherits i \
         JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'audit_events'::regclass",
    )
    .fetch_all(pool)
    .await?;
    let mut days: Vec<(i64, String)> = Vec::new();
    for row in &rows {
        let name: String = row.try_get("name")?;
        if let Some(day) = day_of(&name)
            && (day + 1) * DAY <= before
        {
            days.push((day, name));
        }
    }
    days.sort();
    let mut dropped = 0u64;
    for (_, name) in days {
        // One short transaction a day: dropping a partition locks the parent table, and the
        // audit writers wait on it only for as long as one drop takes.
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(LOCK)
            .execute(&mut *tx)
            .await?;
        if sqlx::query("SELECT to_regclass($1) IS NOT NULL")
            .bind(&name)
            .fetch_one(&mut *tx)
            .await?
            .try_get::<bool, _>(0)?
        {
            let n: i64 = sqlx::query(ddl(format!("SELECT COUNT(*) FROM {name}")))
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            sqlx::query(ddl(format!("DROP TABLE {name}")))
                .execute(&mut *tx)
                .await?;
            dropped += u64::try_from(n)
                .map_err(|_| StoreError::Internal(format!("{name}: negative count")))?;
        }
        tx.commit().await?;
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::{DAY, day_name, day_of};

    #[test]
    fn day_names_round_trip_and_refuse_other_spellings() {
        for day in [0i64, 1, 19_000, 20_788, 2_932_896] {
            let name = day_name(day).unwrap_or_default();
            assert_eq!(day_of(&name), Some(day), "{name}");
        }
        assert_eq!(day_name(20_788).as_deref(), Some("audit_events_d20261201"));
        assert_eq!(day_of("audit_events_d20261201"), Some(1_796_083_200 / DAY));
        for bad in [
            "audit_events_default",
            "audit_events_d2026121",
            "audit_events_d20261301",
            "audit_events_d20260230",
            "audit_events_d+0261201",
            "other_d20261201",
        ] {
            assert_eq!(day_of(bad), None, "{bad}");
        }
    }
}
