//! The store's one error type. `sqlx::Error` is converted here and never leaves the crate.

use std::borrow::Cow;

/// What went wrong in the store, in terms the gateway can map to a response.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is too busy (connection, I/O, pool timeout, lock
    /// timeout). The gateway answers 503 `store_unavailable` and fails closed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness rule would be broken (e.g. an identical active binding already exists).
    #[error("conflict: {what}")]
    Conflict {
        /// Which rule.
        what: Cow<'static, str>,
    },
    /// The record does not exist (or no longer exists in a state the operation applies to).
    #[error("not found")]
    NotFound,
    /// The request cannot be stored as given.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was given.
        what: Cow<'static, str>,
        /// Why it cannot be stored.
        reason: String,
    },
    /// A bug or a corrupt row: details are logged, never shown to clients.
    #[error("internal store error: {0}")]
    Internal(String),
}

impl StoreError {
    pub(crate) fn conflict(what: impl Into<Cow<'static, str>>) -> Self {
        StoreError::Conflict { what: what.into() }
    }

    pub(crate) fn corrupt(column: &str, detail: impl std::fmt::Display) -> Self {
        StoreError::Internal(format!("corrupt value in column `{column}`: {detail}"))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match e {
            E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => {
                StoreError::Unavailable(e.to_string())
            }
            E::RowNotFound => StoreError::NotFound,
            E::Database(db) => {
                if db.is_unique_violation() {
                    let what = db.constraint().unwrap_or("unique constraint").to_string();
                    return StoreError::conflict(what);
                }
                if db.is_foreign_key_violation() {
                    return StoreError::NotFound;
                }
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                // PostgreSQL deadlock / serialization failure: the caller may retry.
                if code == "40P01" || code == "40001" {
                    return StoreError::conflict("concurrent update; try again");
                }
                if is_unavailable_code(&code) {
                    StoreError::Unavailable(db.message().to_string())
                } else {
                    StoreError::Internal(format!("database error {code}: {}", db.message()))
                }
            }
            other => StoreError::Internal(other.to_string()),
        }
    }
}

/// SQLite BUSY/LOCKED (primary and extended codes) and PostgreSQL classes 08 (connection),
/// 53 (insufficient resources), 57P (operator intervention, e.g. shutdown).
fn is_unavailable_code(code: &str) -> bool {
    let sqlite_busy = code
        .parse::<i32>()
        .map(|c| matches!(c & 0xff, 5 | 6))
        .unwrap_or(false);
    sqlite_busy || code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::Execute(inner) => StoreError::from(inner),
            other => StoreError::Internal(format!("migration failed: {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_codes() {
        assert!(is_unavailable_code("5"));
        assert!(is_unavailable_code("517"));
        assert!(is_unavailable_code("08006"));
        assert!(is_unavailable_code("57P01"));
        assert!(!is_unavailable_code("23505"));
        assert!(!is_unavailable_code("1"));
    }

    #[test]
    fn pool_timeout_is_unavailable() {
        assert!(matches!(
            StoreError::from(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
    }
}
