//! Bulk fixtures for benches (feature `fixtures`): fill a SQLite or PostgreSQL store with many persons,
//! enterprises and bindings in one transaction, bypassing the import (no password hashing).

use sqlx::QueryBuilder;

use crate::any::AnyStore;
use crate::error::StoreError;
use crate::model::Timestamp;
use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;

/// The i-th generated (valid) ID number: region 110105, a birth date, a sequence number.
pub fn nth_id_number(i: u64) -> String {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const C: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];
    let day = i / 1000;
    let (y, m, d) = (1950 + day / 336, 1 + (day / 28) % 12, 1 + day % 28);
    let body = format!("110105{y:04}{m:02}{d:02}{:03}", i % 1000);
    let sum: u32 = body
        .chars()
        .zip(W)
        .map(|(c, w)| c.to_digit(10).unwrap_or(0) * w)
        .sum();
    format!("{body}{}", C[(sum % 11) as usize])
}

/// The i-th generated enterprise: a legacy 15-character taxpayer id.
pub fn nth_taxpayer_id(i: u64) -> String {
    format!("E{i:014}")
}

/// A live 8-hour enterprise-entry session created at `now`, acting through generated binding
/// `k` of a store filled by `bulk_populate(persons, …)`: that binding's person and enterprise.
pub fn binding_session(
    id: String,
    token_hash: String,
    k: u64,
    persons: u64,
    now: Timestamp,
) -> Result<crate::Session, crate::IdError> {
    let p = k / 10;
    let persons = persons.max(1);
    Ok(crate::Session {
        id,
        token_hash,
        entry: crate::Entry::Enterprise,
        person: Some(crate::IdNumber::parse(&nth_id_number(p % persons))?),
        enterprise: Some(crate::TaxpayerId::parse(&nth_taxpayer_id(
            (p + k % 10) % persons,
        ))?),
        agency: None,
        role: Some(crate::Role::TaxHandler),
        binding_id: Some(format!("b{k:016}")),
        agreement_id: None,
        factor: crate::Factor::Sms,
        created_at: now,
        last_seen_at: now,
        expires_at: now + 28_800,
        revoked_at: None,
    })
}

macro_rules! bulk_populate {
    ($store:ty, $db:ty, [$($begin:tt)+], $analyze:expr) => {
impl $store {
    /// Insert `persons` persons, as many enterprises, and `bindings` bindings (person `k / 10`
    /// to enterprise `(k / 10 + k % 10) % persons`, so every person has up to ten).
    pub async fn bulk_populate(
        &self,
        persons: u64,
        bindings: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.$($begin)+.await?;
        let ids: Vec<u64> = (0..persons).collect();
        for chunk in ids.chunks(2000) {
            let mut q = QueryBuilder::<$db>::new(
                "INSERT INTO persons (id_number, name, password_hash, must_change_password, \
                 failed_logins, created_at, updated_at) ",
            );
            q.push_values(chunk, |mut b, i| {
                b.push_bind(nth_id_number(*i))
                    .push_bind(format!("person {i}"))
                    .push_bind("!")
                    .push_bind(false)
                    .push_bind(0)
                    .push_bind(now)
                    .push_bind(now);
            });
            q.build().execute(&mut *tx).await?;
            let mut q = QueryBuilder::<$db>::new(
                "INSERT INTO enterprises (taxpayer_id, name, is_agency, failed_logins, \
                 created_at, updated_at) ",
            );
            q.push_values(chunk, |mut b, i| {
                b.push_bind(nth_taxpayer_id(*i))
                    .push_bind(format!("enterprise {i}"))
                    .push_bind(false)
                    .push_bind(0)
                    .push_bind(now)
                    .push_bind(now);
            });
            q.build().execute(&mut *tx).await?;
        }
        let ks: Vec<u64> = (0..bindings).collect();
        for chunk in ks.chunks(2000) {
            let mut q = QueryBuilder::<$db>::new(
                "INSERT INTO bindings (id, person, enterprise, role, permissions, valid_from, \
                 valid_until, enterprise_confirmed, person_confirmed, created_at, updated_at, \
                 updated_by) ",
            );
            q.push_values(chunk, |mut b, k| {
                let p = k / 10;
                b.push_bind(format!("b{k:016}"))
                    .push_bind(nth_id_number(p % persons.max(1)))
                    .push_bind(nth_taxpayer_id((p + k % 10) % persons.max(1)))
                    .push_bind("tax_handler")
                    .push_bind(r#"["declare","query"]"#)
                    .push_bind(now)
                    .push_bind(None::<i64>)
                    .push_bind(true)
                    .push_bind(true)
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind("bench");
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        sqlx::query($analyze).execute(&self.pool).await?;
        Ok(())
    }

    /// Insert many sessions in one transaction (their persons must exist).
    pub async fn bulk_sessions(&self, sessions: &[crate::Session]) -> Result<(), StoreError> {
        let mut tx = self.pool.$($begin)+.await?;
        for chunk in sessions.chunks(1000) {
            let mut q = QueryBuilder::<$db>::new(
                "INSERT INTO sessions (id, token_hash, entry, person, enterprise, agency, role, \
                 binding_id, agreement_id, factor, created_at, last_seen_at, expires_at, \
                 revoked_at) ",
            );
            q.push_values(chunk, |mut b, s| {
                b.push_bind(s.id.clone())
                    .push_bind(s.token_hash.clone())
                    .push_bind(s.entry.as_str())
                    .push_bind(s.person.as_ref().map(|p| p.as_str().to_string()))
                    .push_bind(s.enterprise.as_ref().map(|e| e.as_str().to_string()))
                    .push_bind(s.agency.as_ref().map(|a| a.as_str().to_string()))
                    .push_bind(s.role.map(|r| r.as_str()))
                    .push_bind(s.binding_id.clone())
                    .push_bind(s.agreement_id.clone())
                    .push_bind(s.factor.as_str())
                    .push_bind(s.created_at)
                    .push_bind(s.last_seen_at)
                    .push_bind(s.expires_at)
                    .push_bind(s.revoked_at);
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
    };
}

bulk_populate!(
    SqliteStore,
    sqlx::Sqlite,
    [begin_with("BEGIN IMMEDIATE")],
    "ANALYZE"
);
bulk_populate!(
    PgStore,
    sqlx::Postgres,
    [begin()],
    "ANALYZE persons, enterprises, bindings"
);

impl AnyStore {
    /// [`SqliteStore::bulk_populate`] or [`PgStore::bulk_populate`], by backend.
    pub async fn bulk_populate(
        &self,
        persons: u64,
        bindings: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.bulk_populate(persons, bindings, now).await,
            AnyStore::Postgres(s) => s.bulk_populate(persons, bindings, now).await,
        }
    }

    /// [`SqliteStore::bulk_sessions`] or [`PgStore::bulk_sessions`], by backend.
    pub async fn bulk_sessions(&self, sessions: &[crate::Session]) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.bulk_sessions(sessions).await,
            AnyStore::Postgres(s) => s.bulk_sessions(sessions).await,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_identifiers_are_valid() {
        for i in [0, 1, 999, 1000, 123_456, 999_999] {
            assert!(
                crate::IdNumber::parse(&super::nth_id_number(i)).is_ok(),
                "{i}"
            );
            assert!(crate::TaxpayerId::parse(&super::nth_taxpayer_id(i)).is_ok());
        }
    }
}
