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
    #[expect(
        clippy::indexing_slicing,
        reason = "`sum % 11` is below 11, the length of C"
    )]
    let check = C[(sum % 11) as usize];
    format!("{body}{check}")
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
        factor_at: now,
        face_at: 0,
    })
}

/// What a live session of a [population](SqliteStore::bulk_population) acts as, and so which
/// routes its requests go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopulationKind {
    /// 企业业务: enterprise entry, through one of the enterprise's bindings.
    Enterprise,
    /// 代理业务: agent entry, acting for a client through an agency agreement.
    Agent,
    /// 自然人业务: person entry, acting for oneself.
    Person,
}

impl PopulationKind {
    /// One letter for the token file (`e`, `a`, `p`).
    pub fn letter(self) -> char {
        match self {
            PopulationKind::Enterprise => 'e',
            PopulationKind::Agent => 'a',
            PopulationKind::Person => 'p',
        }
    }
}

/// Sessions per block of a population: each block of ten live sessions has two enterprises,
/// eight persons, seven bindings and one agency agreement of its own.
pub const POPULATION_BLOCK: u64 = 10;
/// Client enterprises per agency: agency `b / 50` acts for the first enterprise of block `b`.
const CLIENTS_PER_AGENCY: u64 = 50;
/// Agencies' taxpayer ids are `nth_taxpayer_id(AGENCY_BASE + a)`, above every enterprise's.
const AGENCY_BASE: u64 = 10_000_000_000_000;
/// Agents' ID numbers are `nth_id_number(AGENT_PERSON_BASE + b)`, above every staff member's
/// (8 persons a block: 1 million sessions use persons below 800 000).
const AGENT_PERSON_BASE: u64 = 5_000_000;
const DAY: i64 = 86_400;

/// (person offset in the block, enterprise offset, role, explicit permissions, validity in days
/// from `now`; None: open-ended).
type BlockBinding = (u64, u64, crate::Role, Option<&'static str>, Option<i64>);

/// The binding of slot `s` (0..=6) of a block (see [`BlockBinding`]). Every enterprise has its legal representative; the first also a finance manager, a tax handler
/// and an invoice clerk, the second a tax handler with explicit permissions and an invoice
/// clerk.
const BLOCK_BINDINGS: [BlockBinding; 7] = [
    (0, 0, crate::Role::LegalRepresentative, None, None),
    (1, 0, crate::Role::TaxHandler, None, Some(365)),
    (2, 0, crate::Role::InvoiceClerk, None, Some(365)),
    (4, 1, crate::Role::LegalRepresentative, None, None),
    (
        5,
        1,
        crate::Role::TaxHandler,
        Some(r#"["declare","query"]"#),
        Some(180),
    ),
    (3, 0, crate::Role::FinanceManager, None, None),
    (6, 1, crate::Role::InvoiceClerk, None, Some(365)),
];

/// What live session `i` of a population is (see [`population_session`]): in every block of
/// ten, seven enterprise-entry sessions (legal representatives, finance manager, tax handlers,
/// invoice clerks), one agent acting for a client and two person-entry sessions.
pub fn population_kind(i: u64) -> PopulationKind {
    match i % POPULATION_BLOCK {
        0..=6 => PopulationKind::Enterprise,
        7 => PopulationKind::Agent,
        _ => PopulationKind::Person,
    }
}

/// Live session `i` of a population made by `bulk_population`, as the login (and, for an
/// agent, the switch to a client) leaves it: logged in within the last five minutes before
/// `now`, last seen at its login, 8 hours of absolute lifetime.
pub fn population_session(
    i: u64,
    id: String,
    token_hash: String,
    now: Timestamp,
) -> Result<crate::Session, crate::IdError> {
    let b = i / POPULATION_BLOCK;
    let slot = i % POPULATION_BLOCK;
    let person = |offset: u64| crate::IdNumber::parse(&nth_id_number(8 * b + offset));
    let enterprise = |offset: u64| crate::TaxpayerId::parse(&nth_taxpayer_id(2 * b + offset));
    let created = now - (i % 300) as i64;
    let mut s = crate::Session {
        id,
        token_hash,
        entry: crate::Entry::Enterprise,
        person: None,
        enterprise: None,
        agency: None,
        role: None,
        binding_id: None,
        agreement_id: None,
        factor: if i.is_multiple_of(3) {
            crate::Factor::Face
        } else {
            crate::Factor::Sms
        },
        created_at: created,
        last_seen_at: created,
        expires_at: created + 28_800,
        revoked_at: None,
        factor_at: created,
        face_at: 0,
    };
    match BLOCK_BINDINGS.get(slot as usize) {
        // Slots 0..=6: the block's bindings.
        Some(&(p, e, role, _, _)) => {
            s.person = Some(person(p)?);
            s.enterprise = Some(enterprise(e)?);
            s.role = Some(role);
            s.binding_id = Some(format!("b{:016}", POPULATION_BLOCK * b + slot));
        }
        None if slot == 7 => {
            s.entry = crate::Entry::Agent;
            s.person = Some(crate::IdNumber::parse(&nth_id_number(
                AGENT_PERSON_BASE + b,
            ))?);
            s.enterprise = Some(enterprise(0)?);
            s.agency = Some(crate::TaxpayerId::parse(&nth_taxpayer_id(
                AGENCY_BASE + b / CLIENTS_PER_AGENCY,
            ))?);
            s.role = Some(crate::Role::Agent);
            s.agreement_id = Some(format!("g{b:016}"));
        }
        // The legal representative filing personal tax, and a person with no binding.
        None => {
            s.entry = crate::Entry::Person;
            s.person = Some(person(if slot == 8 { 0 } else { 7 })?);
        }
    }
    Ok(s)
}

macro_rules! bulk_population {
    ($store:ty, $db:ty, [$($begin:tt)+], $analyze:expr, $audit_sql:expr) => {
impl $store {
    /// A population of `token_hashes.len()` live sessions as real logins would leave them
    /// (see [`population_session`]), with the persons, enterprises, agencies, bindings and
    /// agreements they act through, in one transaction on an empty (migrated) store. Session
    /// `i` gets `token_hashes[i]` (hex SHA-256 of its token) and a random id.
    pub async fn bulk_population(
        &self,
        token_hashes: &[String],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let n = token_hashes.len() as u64;
        let blocks = n.div_ceil(POPULATION_BLOCK);
        let agencies = blocks.div_ceil(CLIENTS_PER_AGENCY);
        let mut tx = self.pool.$($begin)+.await?;
        let ids: Vec<u64> = (0..blocks).collect();
        for chunk in ids.chunks(200) {
            let mut q = QueryBuilder::<$db>::new(
                "INSERT INTO persons (id_number, name, password_hash, must_change_password, \
                 failed_logins, created_at, updated_at) ",
            );
            // Eight persons a block and the block's agent.
            let persons: Vec<u64> = chunk
                .iter()
                .flat_map(|b| (0..8).map(move |o| 8 * b + o).chain([AGENT_PERSON_BASE + b]))
                .collect();
            q.push_values(&persons, |mut r, i| {
                r.push_bind(nth_id_number(*i))
                    .push_bind(format!("person {i}"))
                    .push_bind("!")
                    .push_bind(false)
                    .push_bind(0)
                    .push_bind(now - 400 * DAY)
                    .push_bind(now - 400 * DAY);
            });
            q.build().execute(&mut *tx).await?;
            let mut q = QueryBuilder::<$db>::new(
                "INSERT INTO enterprises (taxpayer_id, name, is_agency, failed_logins, \
                 created_at, updated_at) ",
            );
            let firms: Vec<u64> = chunk.iter().flat_map(|b| [2 * b, 2 * b + 1]).collect();
            q.push_values(&firms, |mut r, i| {
                r.push_bind(nth_taxpayer_id(*i))
                    .push_bind(format!("enterprise {i}"))
                    .push_bind(false)
                    .push_bind(0)
                    .push_bind(now - 400 * DAY)
                    .push_bind(now - 400 * DAY);
            });
            q.build().execute(&mut *tx).await?;
            let mut q = QueryBuilder::<$db>::new(
                "INSERT INTO bindings (id, person, enterprise, role, permissions, valid_from, \
                 valid_until, enterprise_confirmed, person_confirmed, created_at, updated_at, \
                 updated_by) ",
            );
            let slots: Vec<(u64, u64, BlockBinding)> = chunk
                .iter()
                .flat_map(|b| {
                    BLOCK_BINDINGS
                        .iter()
                        .zip(0u64..)
                        .map(move |(binding, s)| (*b, s, *binding))
                })
                .collect();
            q.push_values(&slots, |mut r, (b, s, binding)| {
                let (p, e, role, permissions, days) = *binding;
                r.push_bind(format!("b{:016}", POPULATION_BLOCK * b + s))
                    .push_bind(nth_id_number(8 * b + p))
                    .push_bind(nth_taxpayer_id(2 * b + e))
                    .push_bind(role.as_str())
                    .push_bind(permissions)
                    .push_bind(now - 30 * DAY)
                    .push_bind(days.map(|d| now + d * DAY))
                    .push_bind(true)
                    .push_bind(true)
                    .push_bind(now - 30 * DAY)
                    .push_bind(now - 30 * DAY)
                    .push_bind("bench");
            });
            q.build().execute(&mut *tx).await?;
        }
        let agency_ids: Vec<u64> = (0..agencies).collect();
        for chunk in agency_ids.chunks(2000) {
            let mut q = QueryBuilder::<$db>::new(
                "INSERT INTO enterprises (taxpayer_id, name, is_agency, failed_logins, \
                 created_at, updated_at) ",
            );
            q.push_values(chunk, |mut r, a| {
                r.push_bind(nth_taxpayer_id(AGENCY_BASE + a))
                    .push_bind(format!("agency {a}"))
                    .push_bind(true)
                    .push_bind(0)
                    .push_bind(now - 400 * DAY)
                    .push_bind(now - 400 * DAY);
            });
            q.build().execute(&mut *tx).await?;
        }
        for chunk in ids.chunks(2000) {
            let mut q = QueryBuilder::<$db>::new(
                "INSERT INTO agency_agreements (id, agency, client, scope, valid_from, \
                 valid_until, client_confirmed, created_at, updated_at) ",
            );
            q.push_values(chunk, |mut r, b| {
                r.push_bind(format!("g{b:016}"))
                    .push_bind(nth_taxpayer_id(AGENCY_BASE + b / CLIENTS_PER_AGENCY))
                    .push_bind(nth_taxpayer_id(2 * b))
                    .push_bind(r#"["declare","query","tax_affairs"]"#)
                    .push_bind(now - 90 * DAY)
                    .push_bind(now + 365 * DAY)
                    .push_bind(true)
                    .push_bind(now - 90 * DAY)
                    .push_bind(now - 90 * DAY);
            });
            q.build().execute(&mut *tx).await?;
            let mut q =
                QueryBuilder::<$db>::new("INSERT INTO agreement_staff (agreement_id, person) ");
            q.push_values(chunk, |mut r, b| {
                r.push_bind(format!("g{b:016}"))
                    .push_bind(nth_id_number(AGENT_PERSON_BASE + b));
            });
            q.build().execute(&mut *tx).await?;
        }
        let mut sessions = Vec::with_capacity(1000);
        for (start, chunk) in (0u64..).step_by(1000).zip(token_hashes.chunks(1000)) {
            sessions.clear();
            for (i, hash) in (start..).zip(chunk) {
                let mut bytes = [0u8; 16];
                getrandom::fill(&mut bytes)
                    .map_err(|e| StoreError::Internal(format!("session id: {e}")))?;
                sessions.push(
                    population_session(i, hex::encode(bytes), hash.clone(), now)
                        .map_err(|e| StoreError::Internal(format!("session {i}: {e}")))?,
                );
            }
            Self::insert_sessions(&mut tx, &sessions).await?;
        }
        tx.commit().await?;
        sqlx::query($analyze).execute(&self.pool).await?;
        Ok(())
    }

    /// Grow `audit_events` by `rows` decisions spread over the 30 days before `now`, as an
    /// earlier run of gateways would have left them (ids of a few past processes, ~100
    /// decisions per historical session, one in twenty denied), generated inside the
    /// database in transactions of 500 000 rows. The person and enterprise columns have the
    /// identifiers' shape but not their check digits: history is only written and purged on
    /// the request path, never parsed.
    pub async fn bulk_audit(&self, rows: u64, now: Timestamp) -> Result<(), StoreError> {
        const CHUNK: u64 = 500_000;
        let span = 30 * DAY;
        let rows_i = i64::try_from(rows).map_err(|e| StoreError::Internal(e.to_string()))?;
        let mut from = 0i64;
        while from < rows_i {
            let to = (from + CHUNK as i64).min(rows_i);
            let mut tx = self.pool.$($begin)+.await?;
            sqlx::query($audit_sql)
                .bind(from)
                .bind(to)
                .bind(now - span)
                .bind(span)
                .bind(rows_i.max(1))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            from = to;
        }
        sqlx::query("ANALYZE audit_events").execute(&self.pool).await?;
        Ok(())
    }
}
    };
}

/// `audit_events` rows `$1..$2` of a history starting at `$3`, spanning `$4` seconds over `$5`
/// rows. Row `x` belongs to historical session `x / 100`; its values mirror the gateway's
/// (`Audit::next_id` ids, a 64-character policy version, a slice hash per session).
const SQLITE_AUDIT_SQL: &str = "WITH RECURSIVE c(x) AS (SELECT $1 UNION ALL SELECT x + 1 FROM c \
     WHERE x + 1 < $2) \
     INSERT INTO audit_events (id, at, request_id, session_id, person, enterprise, role, entry, \
     action, path, allowed, policies, reason, policy_version, client_addr, detail, slice_hash, \
     context) \
     SELECT printf('%012x%012x', 10485760 + x / 1000000, x), $3 + x * $4 / $5, \
     printf('%012x%012x', 10485760 + x / 1000000, x), \
     printf('%08x%08x%016x', (x / 100) * 2654435761 % 4294967296, \
            ((x / 100) * 40503 + 12345) % 4294967296, x / 100), \
     printf('110105%011dX', (x / 100) % 800000), printf('E%014d', (x / 100) % 200000), \
     CASE x % 4 WHEN 0 THEN 'legal_representative' WHEN 1 THEN 'tax_handler' \
          WHEN 2 THEN 'invoice_clerk' ELSE 'finance_manager' END, 'enterprise', \
     CASE x % 10 WHEN 0 THEN 'declare' WHEN 1 THEN 'invoice' ELSE 'query' END, \
     CASE x % 10 WHEN 0 THEN '/api/declare/x' WHEN 1 THEN '/api/invoice/x' ELSE '/api/query/x' END, \
     x % 20 <> 0, \
     CASE WHEN x % 20 = 0 THEN '[]' ELSE '[\"role_defaults.tax_handler\"]' END, \
     CASE WHEN x % 20 = 0 THEN 'not_permitted' END, \
     '5f0c3e1b9a7d2c4e6f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6', '127.0.0.1', NULL, \
     printf('%016x%016x%016x%016x', x / 100, x / 100, x / 100, x / 100), NULL FROM c";

/// [`SQLITE_AUDIT_SQL`] for PostgreSQL.
const POSTGRES_AUDIT_SQL: &str = "INSERT INTO audit_events (id, at, request_id, session_id, \
     person, enterprise, role, entry, action, path, allowed, policies, reason, policy_version, \
     client_addr, detail, slice_hash, context) \
     SELECT lpad(to_hex(10485760 + x / 1000000), 12, '0') || lpad(to_hex(x), 12, '0'), \
     $3 + x * $4 / $5, \
     lpad(to_hex(10485760 + x / 1000000), 12, '0') || lpad(to_hex(x), 12, '0'), \
     lpad(to_hex((x / 100) * 2654435761 % 4294967296), 8, '0') \
       || lpad(to_hex(((x / 100) * 40503 + 12345) % 4294967296), 8, '0') \
       || lpad(to_hex(x / 100), 16, '0'), \
     '110105' || lpad(((x / 100) % 800000)::text, 11, '0') || 'X', \
     'E' || lpad(((x / 100) % 200000)::text, 14, '0'), \
     CASE x % 4 WHEN 0 THEN 'legal_representative' WHEN 1 THEN 'tax_handler' \
          WHEN 2 THEN 'invoice_clerk' ELSE 'finance_manager' END, 'enterprise', \
     CASE x % 10 WHEN 0 THEN 'declare' WHEN 1 THEN 'invoice' ELSE 'query' END, \
     CASE x % 10 WHEN 0 THEN '/api/declare/x' WHEN 1 THEN '/api/invoice/x' ELSE '/api/query/x' END, \
     x % 20 <> 0, \
     CASE WHEN x % 20 = 0 THEN '[]' ELSE '[\"role_defaults.tax_handler\"]' END, \
     CASE WHEN x % 20 = 0 THEN 'not_permitted' END, \
     '5f0c3e1b9a7d2c4e6f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6', '127.0.0.1', NULL, \
     repeat(lpad(to_hex(x / 100), 16, '0'), 4), NULL \
     FROM generate_series($1::bigint, $2::bigint - 1) AS x";

bulk_population!(
    SqliteStore,
    sqlx::Sqlite,
    [begin_with("BEGIN IMMEDIATE")],
    "ANALYZE",
    SQLITE_AUDIT_SQL
);
bulk_population!(
    PgStore,
    sqlx::Postgres,
    [begin()],
    "ANALYZE persons, enterprises, bindings, agency_agreements, agreement_staff, sessions",
    POSTGRES_AUDIT_SQL
);

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
        Self::insert_sessions(&mut tx, sessions).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Insert sessions inside `tx`, 1 000 rows a statement.
    async fn insert_sessions(
        tx: &mut sqlx::Transaction<'static, $db>,
        sessions: &[crate::Session],
    ) -> Result<(), StoreError> {
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
            q.build().execute(&mut **tx).await?;
        }
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

    /// [`SqliteStore::bulk_population`] or [`PgStore::bulk_population`], by backend.
    pub async fn bulk_population(
        &self,
        token_hashes: &[String],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.bulk_population(token_hashes, now).await,
            AnyStore::Postgres(s) => s.bulk_population(token_hashes, now).await,
        }
    }

    /// [`SqliteStore::bulk_audit`] or [`PgStore::bulk_audit`], by backend.
    pub async fn bulk_audit(&self, rows: u64, now: Timestamp) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.bulk_audit(rows, now).await,
            AnyStore::Postgres(s) => s.bulk_audit(rows, now).await,
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
    use crate::{AnyStore, Entry, Store};

    /// Every session of a small population resolves to the identity its kind says, with the
    /// binding or agreement it acts through; the audit history has the rows asked for.
    #[tokio::test]
    async fn a_population_resolves_as_logins_leave_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = AnyStore::connect(&format!("sqlite://{}/p.db", dir.path().display()))
            .await
            .expect("sqlite");
        store.migrate().await.expect("migrate");
        let now = 1_750_000_000;
        let hashes: Vec<String> = (0..25).map(|i| format!("{i:064x}")).collect();
        store
            .bulk_population(&hashes, now)
            .await
            .expect("population");
        store.bulk_audit(1_234, now).await.expect("audit");
        assert_eq!(store.count_audit().await.expect("count"), 1_234);
        for (i, hash) in (0u64..).zip(&hashes) {
            let slice = store
                .session_slice(hash)
                .await
                .expect("lookup")
                .expect("session exists");
            let s = &slice.session;
            assert!(s.last_seen_at <= now && now - s.last_seen_at < 300, "{i}");
            match super::population_kind(i) {
                super::PopulationKind::Enterprise => {
                    assert_eq!(s.entry, Entry::Enterprise);
                    let b = slice.binding.expect("binding");
                    assert_eq!(Some(&b.enterprise), s.enterprise.as_ref());
                    assert_eq!(s.role, Some(b.role));
                }
                super::PopulationKind::Agent => {
                    assert_eq!(s.entry, Entry::Agent);
                    let g = slice.agreement.expect("agreement");
                    assert!(g.staff.iter().any(|p| Some(p) == s.person.as_ref()));
                    assert_eq!(Some(&g.client), s.enterprise.as_ref());
                    assert!(slice.agency.expect("agency").is_agency);
                }
                super::PopulationKind::Person => {
                    assert_eq!(s.entry, Entry::Person);
                    assert!(slice.person.is_some() && s.enterprise.is_none());
                }
            }
        }
    }

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
