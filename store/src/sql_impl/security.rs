//! Step-up and the person's sessions (CONTRACT sections 10 and 11): a session's fresh factor,
//! the live sessions of a person or of an enterprise with the device each logged in from, the
//! devices a person logged in from (the new-device notice), and step-up challenges bound to
//! their session.

use sqlx::AssertSqlSafe;

use super::SqlStore;
use super::challenges;
use super::dialect::{BindArg as _, Cols as _, on, touched};
use super::rows::session_at;
use crate::decode::{self, cols};
use crate::ids::{IdNumber, TaxpayerId};
use crate::model::Timestamp;
use crate::records::{Challenge, Invalidation, SessionDevice, SessionListing};
use crate::store_api::StoreResult;

pub(crate) async fn set_factor<S: SqlStore>(
    st: &S,
    id: &str,
    at: Timestamp,
    face: bool,
) -> StoreResult<bool> {
    let mut tx = st.begin_write().await?;
    let update = sqlx::query(
        "UPDATE sessions SET factor_at = $2, \
         face_at = CASE WHEN $3 THEN $2 ELSE face_at END \
         WHERE id = $1 AND revoked_at IS NULL",
    )
    .arg(id)
    .arg(at)
    .arg(face);
    let done = touched(on(&mut tx), update).await? == 1;
    if done {
        let inv = vec![Invalidation::Session { id: id.to_string() }];
        st.commit_notifying(tx, inv).await?;
    } else {
        tx.commit().await?;
    }
    Ok(done)
}

/// The live sessions `filter` (`s.person = $1` or `s.enterprise = $1`) selects, newest first.
async fn listed<S: SqlStore>(
    st: &S,
    filter: &str,
    key: &str,
    now: Timestamp,
) -> StoreResult<Vec<SessionListing>> {
    let sql = format!(
        "SELECT {}, s.user_agent AS d_user_agent, s.ua_family AS d_ua_family, \
         s.client_net AS d_client_net, p.name AS d_name FROM sessions s \
         LEFT JOIN persons p ON p.id_number = s.person \
         WHERE {filter} AND s.revoked_at IS NULL AND s.expires_at > $2 \
         ORDER BY s.created_at DESC, s.id",
        cols("s", decode::SESSION_COLS),
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .arg(key)
        .arg(now)
        .fetch_all(st.db())
        .await?;
    rows.iter()
        .map(|row| {
            Ok(SessionListing {
                session: session_at(row)?,
                device: SessionDevice {
                    user_agent: row.col("d_", "user_agent")?,
                    ua_family: row.col("d_", "ua_family")?,
                    client_net: row.col("d_", "client_net")?,
                },
                person_name: row.col("d_", "name")?,
            })
        })
        .collect()
}

pub(crate) async fn of_person<S: SqlStore>(
    st: &S,
    person: &IdNumber,
    now: Timestamp,
) -> StoreResult<Vec<SessionListing>> {
    listed(st, "s.person = $1", person.as_str(), now).await
}

pub(crate) async fn of_enterprise<S: SqlStore>(
    st: &S,
    enterprise: &TaxpayerId,
    now: Timestamp,
) -> StoreResult<Vec<SessionListing>> {
    listed(st, "s.enterprise = $1", enterprise.as_str(), now).await
}

pub(crate) async fn note_device<S: SqlStore>(
    st: &S,
    person: &IdNumber,
    ua_family: &str,
    client_net: &str,
    now: Timestamp,
    window_secs: i64,
) -> StoreResult<bool> {
    let mut tx = st.begin_write().await?;
    let last: Option<i64> = sqlx::query(
        "SELECT last_seen_at FROM person_devices \
         WHERE person = $1 AND ua_family = $2 AND client_net = $3",
    )
    .arg(person.as_str())
    .arg(ua_family)
    .arg(client_net)
    .fetch_optional(on(&mut tx))
    .await?
    .map(|row| row.only())
    .transpose()?;
    sqlx::query(
        "INSERT INTO person_devices (person, ua_family, client_net, last_seen_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (person, ua_family, client_net) \
         DO UPDATE SET last_seen_at = excluded.last_seen_at",
    )
    .arg(person.as_str())
    .arg(ua_family)
    .arg(client_net)
    .arg(now)
    .execute(on(&mut tx))
    .await?;
    tx.commit().await?;
    Ok(last.is_some_and(|t| t > now - window_secs))
}

pub(crate) async fn create_step_up_challenge<S: SqlStore>(
    st: &S,
    c: &Challenge,
    session_id: &str,
) -> StoreResult<()> {
    challenges::create(st, c).await?;
    // Written right after: until it is, the challenge belongs to no session and nothing can
    // complete it (the completion compares this column with the presenting session).
    sqlx::query("UPDATE challenges SET session_id = $2 WHERE id_hash = $1")
        .arg(c.id_hash.as_str())
        .arg(session_id)
        .execute(st.db())
        .await?;
    Ok(())
}

pub(crate) async fn challenge_session<S: SqlStore>(
    st: &S,
    id_hash: &str,
) -> StoreResult<Option<String>> {
    let row = sqlx::query("SELECT session_id FROM challenges WHERE id_hash = $1")
        .arg(id_hash)
        .fetch_optional(st.db())
        .await?;
    Ok(match row {
        Some(r) => r.only::<Option<String>>()?,
        None => None,
    })
}
