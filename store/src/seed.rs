//! `taxgate import`: the seed file of CONTRACT section 4.
//!
//! The import is all or nothing. Every row is parsed and checked (against the file itself and
//! against the store) and every bad row is reported with its JSON path and what to do; if there
//! is any, nothing is written. Otherwise everything is upserted in one transaction:
//! persons by `id_number`, enterprises by `taxpayer_id`, bindings by person + enterprise + role
//! (among non-revoked bindings), agreements by agency + client (among non-revoked agreements).
//!
//! What a re-import does to existing records:
//! - Names, usernames, phones, the agency flag, permissions, validity and agreement staff/scope
//!   are set to what the file says (the file is authoritative for the rows it lists; absent
//!   `username`/`phone` clear them). Absent `valid_from` keeps the stored one.
//! - Passwords (and legacy enterprise passwords) are set only when the person/enterprise is
//!   created: a re-import never overwrites a password somebody may have changed since.
//! - Confirmations are only ever added, never withdrawn.
//! - Nothing is deleted or revoked.
//!
//! Re-importing the same file therefore leaves the same stored state (idempotent): unchanged
//! rows are not even rewritten.

mod checks;
mod file;

use std::fmt;

use serde::Serialize;

use crate::error::StoreError;
use crate::ids::{IdNumber, Phone, TaxpayerId};
use crate::model::{PermissionGroup, Role, Secret, Timestamp};
use crate::password;
use crate::store_api::Store;
use checks::{Existing, check_against_store};
pub use file::check_username;
use file::{Parsed, parse_seed};

/// The permission groups a binding or agreement may name (personal_tax is the person entry's
/// own business, never granted by an enterprise).
pub const ENTERPRISE_GROUPS: [PermissionGroup; 4] = [
    PermissionGroup::Declare,
    PermissionGroup::Invoice,
    PermissionGroup::Query,
    PermissionGroup::TaxAffairs,
];

/// One bad row: where (`persons[3].id_number`) and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// The field's path in the file, such as `persons[3].id_number`.
    pub path: String,
    /// What is wrong with it and what to do.
    pub reason: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Why an import changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file has bad rows (every one of them, in file order).
    #[error("{} bad row(s) in the seed; nothing was imported", .0.len())]
    Rows(Vec<RowError>),
    /// The store failed while checking or writing; the transaction was rolled back.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// Persons new to the store.
    pub persons_created: u64,
    /// Persons already in the store, updated.
    pub persons_updated: u64,
    /// Enterprises new to the store.
    pub enterprises_created: u64,
    /// Enterprises already in the store, updated.
    pub enterprises_updated: u64,
    /// Bindings new to the store.
    pub bindings_created: u64,
    /// Bindings already in the store, updated.
    pub bindings_updated: u64,
    /// Agency agreements new to the store.
    pub agreements_created: u64,
    /// Agency agreements already in the store, updated.
    pub agreements_updated: u64,
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "persons {} created, {} updated; enterprises {} created, {} updated; \
             bindings {} created, {} updated; agency agreements {} created, {} updated",
            self.persons_created,
            self.persons_updated,
            self.enterprises_created,
            self.enterprises_updated,
            self.bindings_created,
            self.bindings_updated,
            self.agreements_created,
            self.agreements_updated
        )
    }
}

/// A validated seed ready for [`Store::apply_seed`]: passwords already hashed.
#[derive(Debug, Clone, Default)]
pub struct ValidSeed {
    /// The persons to create or update.
    pub persons: Vec<SeedPerson>,
    /// The enterprises to create or update.
    pub enterprises: Vec<SeedEnterprise>,
    /// The bindings to create or update.
    pub bindings: Vec<SeedBinding>,
    /// The agency agreements to create or update.
    pub agreements: Vec<SeedAgreement>,
}

/// A person row of a validated seed.
#[derive(Debug, Clone)]
pub struct SeedPerson {
    /// The person's key.
    pub id_number: IdNumber,
    /// Full name.
    pub name: String,
    /// Optional login name.
    pub username: Option<String>,
    /// The phone SMS codes go to.
    pub phone: Option<Phone>,
    /// Only for persons not yet in the store (an existing password is never replaced).
    pub password_hash: Option<Secret>,
    /// True for migrated users (no password in the seed).
    pub must_change_password: bool,
}

/// An enterprise row of a validated seed.
#[derive(Debug, Clone)]
pub struct SeedEnterprise {
    /// The enterprise's key.
    pub taxpayer_id: TaxpayerId,
    /// Registered name.
    pub name: String,
    /// A tax-service agency.
    pub is_agency: bool,
    /// The phone of the legacy login's SMS codes.
    pub phone: Option<Phone>,
    /// Only for enterprises not yet in the store.
    pub legacy_password_hash: Option<Secret>,
}

/// A binding row of a validated seed.
#[derive(Debug, Clone)]
pub struct SeedBinding {
    /// The person bound.
    pub person: IdNumber,
    /// The enterprise they are bound to.
    pub enterprise: TaxpayerId,
    /// Their role there.
    pub role: Role,
    /// `None`: the role's default permission groups.
    pub permissions: Option<Vec<PermissionGroup>>,
    /// `None`: now for a new binding, unchanged for an existing one.
    pub valid_from: Option<Timestamp>,
    /// `None`: no end.
    pub valid_until: Option<Timestamp>,
    /// The enterprise side has confirmed.
    pub enterprise_confirmed: bool,
    /// The person has confirmed.
    pub person_confirmed: bool,
}

/// An agency agreement row of a validated seed.
#[derive(Debug, Clone)]
pub struct SeedAgreement {
    /// The agency acting.
    pub agency: TaxpayerId,
    /// The enterprise acted for.
    pub client: TaxpayerId,
    /// Sorted, without duplicates.
    pub staff: Vec<IdNumber>,
    /// The permission groups covered.
    pub scope: Vec<PermissionGroup>,
    /// Start of validity.
    pub valid_from: Option<Timestamp>,
    /// `None`: no end.
    pub valid_until: Option<Timestamp>,
    /// The client has confirmed.
    pub client_confirmed: bool,
}

/// Validate `json` (checking references and conflicts against `store` too), hash the passwords
/// of new accounts off the async runtime, and upsert everything in one transaction.
pub async fn import_seed<S: Store>(
    store: &S,
    json: &str,
    now: Timestamp,
) -> Result<ImportSummary, ImportError> {
    let mut errs = Vec::new();
    let parsed = parse_seed(json, &mut errs);
    let existing = check_against_store(store, &parsed, &mut errs).await?;
    if !errs.is_empty() {
        return Err(ImportError::Rows(errs));
    }
    let valid = hash_new_accounts(parsed, &existing).await?;
    Ok(store.apply_seed(&valid, now).await?)
}

/// What the seed file alone shows, before the store is asked: the rows that passed and every
/// bad row in file order. [`import_seed`] does this first; it is public for tools that check a
/// file offline and for the fuzz target (`fuzz/`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedFileCheck {
    /// Person rows that passed.
    pub persons: usize,
    /// Enterprise rows that passed.
    pub enterprises: usize,
    /// Binding rows that passed.
    pub bindings: usize,
    /// Agency agreement rows that passed.
    pub agreements: usize,
    /// Every bad row, in file order.
    pub errors: Vec<RowError>,
}

/// Check `json` as a seed file without a store (no references to existing records are checked,
/// no password is hashed).
pub fn check_seed_file(json: &str) -> SeedFileCheck {
    let mut errors = Vec::new();
    let parsed = parse_seed(json, &mut errors);
    SeedFileCheck {
        persons: parsed.persons.len(),
        enterprises: parsed.enterprises.len(),
        bindings: parsed.bindings.len(),
        agreements: parsed.agreements.len(),
        errors,
    }
}

// ---- hashing --------------------------------------------------------------------------------

async fn hash_new_accounts(p: Parsed, existing: &Existing) -> Result<ValidSeed, ImportError> {
    // (is_person, index, plaintext) for every account created by this import.
    let mut jobs: Vec<(bool, usize, String)> = Vec::new();
    for (k, (_, pp)) in p.persons.iter().enumerate() {
        if !existing.persons.contains(&pp.p.id_number) {
            let pw = pp
                .password
                .clone()
                .unwrap_or_else(|| pp.p.id_number.last_six().to_string());
            jobs.push((true, k, pw));
        }
    }
    for (k, (_, e)) in p.enterprises.iter().enumerate() {
        if let (false, Some(pw)) = (
            existing.enterprises.contains(&e.e.taxpayer_id),
            &e.legacy_password,
        ) {
            jobs.push((false, k, pw.clone()));
        }
    }
    let hashed = hash_parallel(jobs).await?;
    let mut seed = ValidSeed {
        persons: p.persons.into_iter().map(|(_, x)| x.p).collect(),
        enterprises: p.enterprises.into_iter().map(|(_, x)| x.e).collect(),
        bindings: p.bindings.into_iter().map(|(_, x)| x).collect(),
        agreements: p.agreements.into_iter().map(|(_, x)| x).collect(),
    };
    for (is_person, k, h) in hashed {
        if is_person {
            if let Some(x) = seed.persons.get_mut(k) {
                x.password_hash = Some(h);
            }
        } else if let Some(x) = seed.enterprises.get_mut(k) {
            x.legacy_password_hash = Some(h);
        }
    }
    Ok(seed)
}

/// argon2 is ~10 ms a hash: spread the work over the blocking pool, one chunk per core.
async fn hash_parallel(
    jobs: Vec<(bool, usize, String)>,
) -> Result<Vec<(bool, usize, Secret)>, ImportError> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = jobs.len().div_ceil(cores);
    let mut tasks = Vec::new();
    let mut jobs = jobs;
    while !jobs.is_empty() {
        let rest = jobs.split_off(chunk.min(jobs.len()));
        let mine = std::mem::replace(&mut jobs, rest);
        tasks.push(tokio::task::spawn_blocking(move || {
            mine.into_iter()
                .map(|(p, k, pw)| password::hash_password(&pw).map(|h| (p, k, h)))
                .collect::<Result<Vec<_>, _>>()
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        let part = t
            .await
            .map_err(|e| StoreError::Internal(format!("hashing task failed: {e}")))?
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        out.extend(part);
    }
    Ok(out)
}

#[cfg(test)]
#[expect(clippy::indexing_slicing, reason = "tests fail loudly")]
mod tests {
    #[test]
    fn odd_unknown_keys_are_quoted_in_the_path() {
        // Found by the `seed` fuzz target: an empty key was reported at the empty path.
        let check = super::check_seed_file(
            r#"{"": 1, "a b": 2, "persons": [{"id_number": "x", "name": "n", "": 3}]}"#,
        );
        let paths: Vec<&str> = check.errors.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&r#"[""]"#), "{paths:?}");
        assert!(paths.contains(&r#"["a b"]"#), "{paths:?}");
        assert!(paths.contains(&r#"persons[0][""]"#), "{paths:?}");
        assert!(check.errors.iter().all(|e| !e.path.is_empty()));
    }

    use super::*;

    fn parse(json: &str) -> (Parsed, Vec<RowError>) {
        let mut errs = Vec::new();
        let p = parse_seed(json, &mut errs);
        (p, errs)
    }

    fn paths(errs: &[RowError]) -> Vec<&str> {
        errs.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn contract_example_parses() {
        let (p, errs) = parse(
            r#"{"persons":[{"id_number":"140105199001011238","name":"王芳","username":"wangfang",
                "phone":"13800138000","password":"Chang3-Me!now"}],
               "enterprises":[{"taxpayer_id":"91140100MA0K123488","name":"太原示例科技有限公司",
                "legacy_password":"Old-Ent-Pass1","phone":"13900139000","agency":false}],
               "bindings":[{"person":"140105199001011238","enterprise":"91140100MA0K123488",
                "role":"legal_representative","permissions":["declare","invoice","query","tax_affairs"],
                "valid_from":"2023-01-01T00:00:00+08:00","valid_until":"2099-12-31T23:59:59+08:00",
                "enterprise_confirmed":true,"person_confirmed":true}]}"#,
        );
        assert_eq!(errs, vec![]);
        assert_eq!(p.persons.len(), 1);
        assert!(!p.persons[0].1.p.must_change_password);
        assert_eq!(p.bindings[0].1.valid_from, Some(1_672_502_400));
    }

    #[test]
    fn every_bad_field_is_reported_with_its_path() {
        let (_, errs) = parse(
            r#"{"persons":[
                {"id_number":"140105199001011237","name":"a"},
                {"id_number":"11010519491231002X","name":"","username":"13800138000","phone":"12345"},
                {"id_number":"11010519491231002X","name":"b","colour":"red"}],
               "bindings":[{"person":"140105199001011238","enterprise":"91140100MA0K123488",
                "role":"boss","permissions":["personal_tax"],
                "valid_from":"2024-01-01T00:00:00Z","valid_until":"2023-01-01T00:00:00Z"}]}"#,
        );
        assert_eq!(
            paths(&errs),
            vec![
                "persons[0].id_number",
                "persons[1].name",
                "persons[1].username",
                "persons[1].phone",
                "persons[2].colour",
                "bindings[0].role",
                "bindings[0].permissions[0]",
                "bindings[0].valid_until",
            ]
        );
        assert!(
            errs[0].reason.contains("check character"),
            "{}",
            errs[0].reason
        );
    }

    #[test]
    fn duplicates_inside_the_file() {
        let (_, errs) = parse(
            r#"{"persons":[
                {"id_number":"140105199001011238","name":"a","phone":"13800138000","username":"abc"},
                {"id_number":"11010519491231002X","name":"b","phone":"+86 138 0013 8000","username":"abc"}]}"#,
        );
        assert_eq!(
            paths(&errs),
            vec!["persons[1].phone", "persons[1].username"]
        );
        assert!(errs[0].reason.contains("persons[0]"));
    }

    #[test]
    fn usernames() {
        assert!(check_username("wang.fang_1").is_ok());
        assert!(check_username("ab").is_err());
        assert!(check_username("王芳芳").is_err());
        assert!(check_username("140105199001011238").is_err());
        assert!(check_username("13800138000").is_err());
        assert!(check_username(&"a".repeat(33)).is_err());
    }

    #[test]
    fn not_json_and_not_object() {
        assert_eq!(paths(&parse("{").1), vec!["$"]);
        assert_eq!(paths(&parse("[]").1), vec!["$"]);
        assert_eq!(paths(&parse(r#"{"persons":{}}"#).1), vec!["persons"]);
    }
}
