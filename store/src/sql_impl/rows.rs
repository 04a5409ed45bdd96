//! The SELECTs of whole records and the decoders that turn their rows back into records. Every
//! column is selected as `alias_column` (see [`cols`]) so one decoder reads a record whether it
//! came alone or joined into the session slice.

use std::sync::LazyLock;

use sqlx::{AssertSqlSafe, Executor, SqlSafeStr};

use super::dialect::{BindArg as _, Cols, Dialect, Statements};
use crate::decode::{self, cols};
use crate::error::StoreError;
use crate::model::{AgencyAgreement, Binding, Enterprise, Person, Secret, Session};
use crate::records::{Challenge, RecordedDecision};
use crate::store_api::StoreResult;

impl Statements {
    /// The statements for a backend whose string aggregation is `agg(column, ',')`.
    pub(crate) fn new(agg: &str) -> Statements {
        let agreement = format!(
            "{}, (SELECT {agg}(st.person, ',') FROM agreement_staff st \
             WHERE st.agreement_id = g.id) AS g_staff",
            cols("g", decode::AGREEMENT_COLS),
        );
        let slice = format!(
            "SELECT {}, {}, {}, {}, {}, {agreement} FROM sessions s \
                 LEFT JOIN persons p ON p.id_number = s.person \
                 LEFT JOIN enterprises e ON e.taxpayer_id = s.enterprise \
                 LEFT JOIN enterprises a ON a.taxpayer_id = s.agency \
                 LEFT JOIN bindings b ON b.id = s.binding_id \
                 LEFT JOIN agency_agreements g ON g.id = s.agreement_id \
                 WHERE s.token_hash = $1",
            cols("s", decode::SESSION_COLS),
            cols("p", decode::PERSON_COLS),
            cols("e", decode::ENTERPRISE_COLS),
            cols("a", decode::ENTERPRISE_COLS),
            cols("b", decode::BINDING_COLS),
        );
        Statements {
            slice_by_id: slice.replace("WHERE s.token_hash = $1", "WHERE s.id = $1"),
            slice,
            agreement_select: format!("SELECT {agreement} FROM agency_agreements g"),
        }
    }
}

pub(crate) static PERSON_SELECT: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {} FROM persons p", cols("p", decode::PERSON_COLS)));
pub(crate) static ENTERPRISE_SELECT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM enterprises e WHERE e.taxpayer_id = $1",
        cols("e", decode::ENTERPRISE_COLS)
    )
});
pub(crate) static BINDING_SELECT: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {} FROM bindings b", cols("b", decode::BINDING_COLS)));
pub(crate) static CHALLENGE_SELECT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM challenges c",
        cols("c", decode::CHALLENGE_COLS)
    )
});

/// A statement built once, as the `&'static str` sqlx wants.
pub(crate) fn q(sql: &'static str) -> AssertSqlSafe<&'static str> {
    AssertSqlSafe(sql)
}

/// `base` (one of the SELECTs above) narrowed by `rest` (`WHERE …`, `ORDER BY …`).
pub(crate) fn select(base: &str, rest: &str) -> AssertSqlSafe<String> {
    AssertSqlSafe(format!("{base} {rest}"))
}

pub(crate) fn session_at(row: &impl Cols) -> StoreResult<Session> {
    let p = "s_";
    Ok(Session {
        id: row.col(p, "id")?,
        token_hash: row.col(p, "token_hash")?,
        entry: decode::entry("entry", &row.col::<String>(p, "entry")?)?,
        person: decode::opt("person", row.col(p, "person")?, decode::id_number)?,
        enterprise: decode::opt("enterprise", row.col(p, "enterprise")?, decode::taxpayer_id)?,
        agency: decode::opt("agency", row.col(p, "agency")?, decode::taxpayer_id)?,
        role: decode::opt("role", row.col(p, "role")?, decode::role)?,
        binding_id: row.col(p, "binding_id")?,
        agreement_id: row.col(p, "agreement_id")?,
        factor: decode::factor("factor", &row.col::<String>(p, "factor")?)?,
        created_at: row.col(p, "created_at")?,
        last_seen_at: row.col(p, "last_seen_at")?,
        expires_at: row.col(p, "expires_at")?,
        revoked_at: row.col(p, "revoked_at")?,
        factor_at: row.col(p, "factor_at")?,
        face_at: row.col(p, "face_at")?,
    })
}

/// The person whose columns carry prefix `p`; `None` when a LEFT JOIN found none.
pub(crate) fn person_at(row: &impl Cols, p: &str) -> StoreResult<Option<Person>> {
    let Some(id) = row.col::<Option<String>>(p, "id_number")? else {
        return Ok(None);
    };
    Ok(Some(Person {
        id_number: decode::id_number("id_number", &id)?,
        name: row.col(p, "name")?,
        username: row.col(p, "username")?,
        phone: decode::opt("phone", row.col(p, "phone")?, decode::phone)?,
        password_hash: Secret(row.col(p, "password_hash")?),
        must_change_password: row.col(p, "must_change_password")?,
        failed_logins: row.col(p, "failed_logins")?,
        locked_until: row.col(p, "locked_until")?,
        updated_at: row.col(p, "updated_at")?,
    }))
}

pub(crate) fn enterprise_at(row: &impl Cols, p: &str) -> StoreResult<Option<Enterprise>> {
    let Some(id) = row.col::<Option<String>>(p, "taxpayer_id")? else {
        return Ok(None);
    };
    Ok(Some(Enterprise {
        taxpayer_id: decode::taxpayer_id("taxpayer_id", &id)?,
        name: row.col(p, "name")?,
        is_agency: row.col(p, "is_agency")?,
        legacy_password_hash: row
            .col::<Option<String>>(p, "legacy_password_hash")?
            .map(Secret),
        phone: decode::opt("phone", row.col(p, "phone")?, decode::phone)?,
        failed_logins: row.col(p, "failed_logins")?,
        locked_until: row.col(p, "locked_until")?,
    }))
}

pub(crate) fn binding_at(row: &impl Cols) -> StoreResult<Option<Binding>> {
    let p = "b_";
    let Some(id) = row.col::<Option<String>>(p, "id")? else {
        return Ok(None);
    };
    Ok(Some(Binding {
        id,
        person: decode::id_number("person", &row.col::<String>(p, "person")?)?,
        enterprise: decode::taxpayer_id("enterprise", &row.col::<String>(p, "enterprise")?)?,
        role: decode::role("role", &row.col::<String>(p, "role")?)?,
        permissions: decode::opt("permissions", row.col(p, "permissions")?, decode::groups)?,
        valid_from: row.col(p, "valid_from")?,
        valid_until: row.col(p, "valid_until")?,
        enterprise_confirmed: row.col(p, "enterprise_confirmed")?,
        person_confirmed: row.col(p, "person_confirmed")?,
        revoked_at: row.col(p, "revoked_at")?,
        created_at: row.col(p, "created_at")?,
        updated_at: row.col(p, "updated_at")?,
        updated_by: row.col(p, "updated_by")?,
    }))
}

pub(crate) fn agreement_at(row: &impl Cols) -> StoreResult<Option<AgencyAgreement>> {
    let p = "g_";
    let Some(id) = row.col::<Option<String>>(p, "id")? else {
        return Ok(None);
    };
    Ok(Some(AgencyAgreement {
        id,
        agency: decode::taxpayer_id("agency", &row.col::<String>(p, "agency")?)?,
        client: decode::taxpayer_id("client", &row.col::<String>(p, "client")?)?,
        staff: decode::staff("staff", row.col(p, "staff")?)?,
        scope: decode::groups("scope", &row.col::<String>(p, "scope")?)?,
        valid_from: row.col(p, "valid_from")?,
        valid_until: row.col(p, "valid_until")?,
        client_confirmed: row.col(p, "client_confirmed")?,
        revoked_at: row.col(p, "revoked_at")?,
        updated_at: row.col(p, "updated_at")?,
    }))
}

pub(crate) fn challenge_at(row: &impl Cols) -> StoreResult<Challenge> {
    let p = "c_";
    Ok(Challenge {
        id_hash: row.col(p, "id_hash")?,
        purpose: decode::purpose("purpose", &row.col::<String>(p, "purpose")?)?,
        entry: decode::opt("entry", row.col(p, "entry")?, decode::entry)?,
        person: decode::opt("person", row.col(p, "person")?, decode::id_number)?,
        enterprise: decode::opt("enterprise", row.col(p, "enterprise")?, decode::taxpayer_id)?,
        agency: decode::opt("agency", row.col(p, "agency")?, decode::taxpayer_id)?,
        target_phone: decode::opt("target_phone", row.col(p, "target_phone")?, decode::phone)?,
        code_hash: row.col::<Option<String>>(p, "code_hash")?.map(Secret),
        code_expires_at: row.col(p, "code_expires_at")?,
        code_attempts: row.col(p, "code_attempts")?,
        face_nonce: row.col(p, "face_nonce")?,
        face_status: decode::opt(
            "face_status",
            row.col(p, "face_status")?,
            decode::face_status,
        )?,
        face_expires_at: row.col(p, "face_expires_at")?,
        client_addr: row.col(p, "client_addr")?,
        created_at: row.col(p, "created_at")?,
        expires_at: row.col(p, "expires_at")?,
        consumed_at: row.col(p, "consumed_at")?,
    })
}

pub(crate) fn recorded_decision_at(row: &impl Cols) -> StoreResult<RecordedDecision> {
    let policies: String = row.col("", "policies")?;
    let context: Option<String> = row.col("", "context")?;
    let legacy_login_until = match context {
        Some(text) => {
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| StoreError::corrupt("context", e))?;
            v.get("legacy_login_until")
                .and_then(serde_json::Value::as_i64)
        }
        None => None,
    };
    Ok(RecordedDecision {
        id: row.col("", "id")?,
        at: row.col("", "at")?,
        entry: decode::opt("entry", row.col("", "entry")?, decode::entry)?,
        role: decode::opt("role", row.col("", "role")?, decode::role)?,
        action: row.col("", "action")?,
        path: row.col("", "path")?,
        allowed: row.col("", "allowed")?,
        policies: serde_json::from_str(&policies)
            .map_err(|e| StoreError::corrupt("policies", e))?,
        reason: row.col("", "reason")?,
        policy_version: row.col("", "policy_version")?,
        slice_hash: row.col("", "slice_hash")?,
        legacy_login_until,
    })
}

/// The record `at` reads from the row `sql` finds for `key` (its `$1`), if any.
pub(crate) async fn find<'e, D: Dialect, T>(
    exec: impl Executor<'e, Database = D>,
    sql: impl SqlSafeStr,
    key: &str,
    at: impl Fn(&D::Row) -> StoreResult<Option<T>>,
) -> StoreResult<Option<T>> {
    let row = sqlx::query(sql).arg(key).fetch_optional(exec).await?;
    one(row, at)
}

/// The record of `row`, if there is a row and it holds one.
pub(crate) fn one<R, T>(
    row: Option<R>,
    at: impl Fn(&R) -> StoreResult<Option<T>>,
) -> StoreResult<Option<T>> {
    row.as_ref().map(at).transpose().map(Option::flatten)
}

/// The records of `rows`, skipping rows whose record a LEFT JOIN did not find.
pub(crate) fn all<R, T>(
    rows: &[R],
    at: impl Fn(&R) -> StoreResult<Option<T>>,
) -> StoreResult<Vec<T>> {
    rows.iter().filter_map(|r| at(r).transpose()).collect()
}
