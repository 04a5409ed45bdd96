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

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::de::{DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::StoreError;
use crate::ids::{IdNumber, Phone, TaxpayerId};
use crate::model::{PermissionGroup, Role, Secret, Timestamp};
use crate::password;
use crate::store_api::Store;

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
    pub path: String,
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
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    pub persons_created: u64,
    pub persons_updated: u64,
    pub enterprises_created: u64,
    pub enterprises_updated: u64,
    pub bindings_created: u64,
    pub bindings_updated: u64,
    pub agreements_created: u64,
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
    pub persons: Vec<SeedPerson>,
    pub enterprises: Vec<SeedEnterprise>,
    pub bindings: Vec<SeedBinding>,
    pub agreements: Vec<SeedAgreement>,
}

#[derive(Debug, Clone)]
pub struct SeedPerson {
    pub id_number: IdNumber,
    pub name: String,
    pub username: Option<String>,
    pub phone: Option<Phone>,
    /// Only for persons not yet in the store (an existing password is never replaced).
    pub password_hash: Option<Secret>,
    /// True for migrated users (no password in the seed).
    pub must_change_password: bool,
}

#[derive(Debug, Clone)]
pub struct SeedEnterprise {
    pub taxpayer_id: TaxpayerId,
    pub name: String,
    pub is_agency: bool,
    pub phone: Option<Phone>,
    /// Only for enterprises not yet in the store.
    pub legacy_password_hash: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct SeedBinding {
    pub person: IdNumber,
    pub enterprise: TaxpayerId,
    pub role: Role,
    pub permissions: Option<Vec<PermissionGroup>>,
    /// `None`: now for a new binding, unchanged for an existing one.
    pub valid_from: Option<Timestamp>,
    pub valid_until: Option<Timestamp>,
    pub enterprise_confirmed: bool,
    pub person_confirmed: bool,
}

#[derive(Debug, Clone)]
pub struct SeedAgreement {
    pub agency: TaxpayerId,
    pub client: TaxpayerId,
    /// Sorted, without duplicates.
    pub staff: Vec<IdNumber>,
    pub scope: Vec<PermissionGroup>,
    pub valid_from: Option<Timestamp>,
    pub valid_until: Option<Timestamp>,
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
    pub persons: usize,
    pub enterprises: usize,
    pub bindings: usize,
    pub agreements: usize,
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

// ---- reading the file ---------------------------------------------------------------------
//
// The file is read with serde into typed rows whose fields never fail to deserialise (see
// [`Field`]), row by row, so every bad field of every row is reported, in file order, with the
// message of CONTRACT section 4; then [`check_duplicates`] and [`check_against_store`] look
// across the rows that passed.

#[derive(Debug, Default)]
struct Parsed {
    persons: Vec<(usize, ParsedPerson)>,
    enterprises: Vec<(usize, ParsedEnterprise)>,
    bindings: Vec<(usize, SeedBinding)>,
    agreements: Vec<(usize, SeedAgreement)>,
}

#[derive(Debug)]
struct ParsedPerson {
    p: SeedPerson,
    password: Option<String>,
}

#[derive(Debug)]
struct ParsedEnterprise {
    e: SeedEnterprise,
    legacy_password: Option<String>,
}

fn err(errs: &mut Vec<RowError>, path: impl Into<String>, reason: impl Into<String>) {
    errs.push(RowError {
        path: path.into(),
        reason: reason.into(),
    });
}

/// One field as the file gave it. Deserialising it never fails, so a bad field neither hides
/// the row's other fields nor drops the other rows: the check reports it with its own message.
#[derive(Debug, Default)]
enum Field<T> {
    #[default]
    Absent,
    Null,
    Given(T),
    /// Present but not a `T`: the JSON as written, and why serde refused it.
    Invalid(Value, String),
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        if value.is_null() {
            return Ok(Field::Null);
        }
        Ok(match T::deserialize(&value) {
            Ok(t) => Field::Given(t),
            Err(e) => Field::Invalid(value, e.to_string()),
        })
    }
}

/// What the report says of a field that is present but not a `Self`.
trait Expected {
    fn refusal(given: &Value, why: &str) -> String;
}

/// An identifier's refusal: its rule when it is a string, its type otherwise.
fn not_valid(what: &str, given: &Value, why: &str) -> String {
    if given.is_string() {
        format!("not a valid {what}: {why}; correct it")
    } else {
        "expected a string".into()
    }
}

impl Expected for String {
    fn refusal(_: &Value, _: &str) -> String {
        "expected a string".into()
    }
}

impl Expected for bool {
    fn refusal(_: &Value, _: &str) -> String {
        "expected `true` or `false`".into()
    }
}

impl Expected for IdNumber {
    fn refusal(given: &Value, why: &str) -> String {
        not_valid("ID number (GB 11643)", given, why)
    }
}

impl Expected for TaxpayerId {
    fn refusal(given: &Value, why: &str) -> String {
        not_valid("taxpayer id (GB 32100 credit code)", given, why)
    }
}

impl Expected for Phone {
    fn refusal(given: &Value, why: &str) -> String {
        not_valid("mobile number", given, why)
    }
}

/// An RFC 3339 time of the file, as the Unix time it names.
#[derive(Debug)]
struct Rfc3339Time(Timestamp);

impl<'de> Deserialize<'de> for Rfc3339Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        OffsetDateTime::parse(&s, &Rfc3339)
            .map(|t| Rfc3339Time(t.unix_timestamp()))
            .map_err(serde::de::Error::custom)
    }
}

impl Expected for Rfc3339Time {
    fn refusal(given: &Value, _: &str) -> String {
        match given {
            Value::String(s) => {
                format!("`{s}` is not an RFC 3339 time; write it like `2099-12-31T23:59:59+08:00`")
            }
            _ => "expected a string".into(),
        }
    }
}

impl<T: Expected> Field<T> {
    /// The value of a field that may be left out (`null` is the same as absent).
    fn optional(self, path: &str, key: &str, errs: &mut Vec<RowError>) -> Result<Option<T>, ()> {
        match self {
            Field::Absent | Field::Null => Ok(None),
            Field::Given(t) => Ok(Some(t)),
            Field::Invalid(given, why) => {
                err(errs, format!("{path}.{key}"), T::refusal(&given, &why));
                Err(())
            }
        }
    }

    fn required(self, path: &str, key: &str, errs: &mut Vec<RowError>) -> Result<T, ()> {
        match self {
            Field::Absent | Field::Null => {
                err(
                    errs,
                    format!("{path}.{key}"),
                    format!("`{key}` is required; add it"),
                );
                Err(())
            }
            given => given.optional(path, key, errs)?.ok_or(()),
        }
    }
}

/// The top level of the file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct SeedFile {
    persons: Field<Vec<Value>>,
    enterprises: Field<Vec<Value>>,
    bindings: Field<Vec<Value>>,
    agency_agreements: Field<Vec<Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PersonRow {
    id_number: Field<IdNumber>,
    name: Field<String>,
    username: Field<String>,
    phone: Field<Phone>,
    password: Field<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct EnterpriseRow {
    taxpayer_id: Field<TaxpayerId>,
    name: Field<String>,
    legacy_password: Field<String>,
    phone: Field<Phone>,
    agency: Field<bool>,
}

/// Roles and permission groups are read as strings (serde's enum forms would also take
/// `{"admin": null}`); their checks name the value as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct BindingRow {
    person: Field<IdNumber>,
    enterprise: Field<TaxpayerId>,
    role: Field<String>,
    permissions: Field<Vec<Value>>,
    valid_from: Field<Rfc3339Time>,
    valid_until: Field<Rfc3339Time>,
    enterprise_confirmed: Field<bool>,
    person_confirmed: Field<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct AgreementRow {
    agency: Field<TaxpayerId>,
    client: Field<TaxpayerId>,
    staff: Field<Vec<Field<IdNumber>>>,
    scope: Field<Vec<Value>>,
    valid_from: Field<Rfc3339Time>,
    valid_until: Field<Rfc3339Time>,
    client_confirmed: Field<bool>,
}

/// The field names serde's derive gives `R`, in declaration order: read by asking `R` to
/// deserialise from a deserializer that only notes the list it is handed.
fn field_names<R: DeserializeOwned>() -> &'static [&'static str] {
    struct Names<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Names<'_> {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom("field names noted"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }

    let mut names: &'static [&'static str] = &[];
    let _noted = R::deserialize(Names(&mut names));
    names
}

/// `obj` (at `path`; "" for the top level) as an `R`. Every key `R` does not have is reported
/// and left out, the row kept: `deny_unknown_fields` alone would stop at the first and lose the
/// row, and with it the reports of its other fields.
fn read<R: DeserializeOwned>(
    mut obj: Map<String, Value>,
    path: &str,
    errs: &mut Vec<RowError>,
) -> Option<R> {
    let known = field_names::<R>();
    obj.retain(|k, _| {
        let ok = known.contains(&k.as_str());
        if !ok {
            unknown_key(k, path, known, errs);
        }
        ok
    });
    match R::deserialize(Value::Object(obj)) {
        Ok(row) => Some(row),
        // Not reached: every field takes any JSON, and only known keys are left.
        Err(e) => {
            err(
                errs,
                if path.is_empty() { "$" } else { path },
                e.to_string(),
            );
            None
        }
    }
}

fn unknown_key(k: &str, path: &str, known: &[&str], errs: &mut Vec<RowError>) {
    // A key that is not a plain name (empty, spaces, dots...) is quoted, so the path always
    // shows where it is (fuzzing found `{"": …}` reported at the empty path).
    let plain = !k.is_empty() && k.chars().all(|c| c.is_alphanumeric() || c == '_');
    let p = match (plain, path.is_empty()) {
        (true, true) => k.to_string(),
        (true, false) => format!("{path}.{k}"),
        (false, _) => format!("{path}[{}]", Value::String(k.to_string())),
    };
    err(
        errs,
        p,
        format!(
            "unknown field `{k}`; remove it or use one of: {}",
            known.join(", ")
        ),
    );
}

/// Parse and check everything that needs only the file. Bad rows go to `errs` and are left out.
fn parse_seed(json: &str, errs: &mut Vec<RowError>) -> Parsed {
    let mut out = Parsed::default();
    let root: Value = match serde_json::from_str(json) {
        Ok(v) => v,
        Err(e) => {
            err(
                errs,
                "$",
                format!("not valid JSON ({e}); fix the syntax at that line and column"),
            );
            return out;
        }
    };
    let Value::Object(root) = root else {
        err(
            errs,
            "$",
            "expected an object with `persons`, `enterprises`, `bindings` and `agency_agreements`",
        );
        return out;
    };
    let Some(file) = read::<SeedFile>(root, "", errs) else {
        return out;
    };
    out.persons = rows(file.persons, "persons", errs, PersonRow::check);
    out.enterprises = rows(file.enterprises, "enterprises", errs, EnterpriseRow::check);
    out.bindings = rows(file.bindings, "bindings", errs, BindingRow::check);
    out.agreements = rows(
        file.agency_agreements,
        "agency_agreements",
        errs,
        AgreementRow::check,
    );
    check_duplicates(&out, errs);
    out
}

/// The rows of table `key` that pass `check`, with their index in the file.
fn rows<R: DeserializeOwned, T>(
    table: Field<Vec<Value>>,
    key: &str,
    errs: &mut Vec<RowError>,
    check: fn(R, &str, &mut Vec<RowError>) -> Option<T>,
) -> Vec<(usize, T)> {
    let list = match table {
        Field::Absent => return Vec::new(),
        Field::Given(list) => list,
        Field::Null | Field::Invalid(..) => {
            err(errs, key, "expected an array of objects");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, row) in list.into_iter().enumerate() {
        let path = format!("{key}[{i}]");
        let Value::Object(obj) = row else {
            err(errs, path, "expected an object");
            continue;
        };
        if let Some(row) = read::<R>(obj, &path, errs)
            && let Some(t) = check(row, &path, errs)
        {
            out.push((i, t));
        }
    }
    out
}

fn name(field: Field<String>, path: &str, errs: &mut Vec<RowError>) -> Result<String, ()> {
    let n = field.required(path, "name", errs)?;
    let n = n.trim().to_string();
    if n.is_empty() || n.chars().count() > 200 {
        err(
            errs,
            format!("{path}.name"),
            "must be 1 to 200 characters; give the registered name",
        );
        return Err(());
    }
    Ok(n)
}

fn secret(
    field: Field<String>,
    path: &str,
    key: &str,
    errs: &mut Vec<RowError>,
) -> Result<Option<String>, ()> {
    let s = field.optional(path, key, errs)?;
    if s.as_deref() == Some("") {
        err(
            errs,
            format!("{path}.{key}"),
            "is empty; give a password or leave the field out",
        );
        return Err(());
    }
    Ok(s)
}

/// Usernames must never be mistaken for the other two kinds of account name at login.
pub fn check_username(u: &str) -> Result<(), String> {
    let n = u.chars().count();
    if !(3..=32).contains(&n) {
        return Err(format!("must be 3 to 32 characters, got {n}"));
    }
    if let Some(c) = u
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "character `{c}` is not allowed; use letters, digits, `_`, `.` and `-`"
        ));
    }
    if IdNumber::parse(u).is_ok() || Phone::parse(u).is_ok() {
        return Err("reads as an ID number or a mobile number; choose another username".into());
    }
    Ok(())
}

/// A list of permission groups an enterprise can grant: sorted, without duplicates. Absent
/// is `None` unless `required`.
fn groups(
    field: Field<Vec<Value>>,
    path: &str,
    key: &str,
    required: bool,
    errs: &mut Vec<RowError>,
) -> Result<Option<Vec<PermissionGroup>>, ()> {
    let list = match field {
        Field::Absent | Field::Null if required => {
            err(
                errs,
                format!("{path}.{key}"),
                format!("`{key}` is required; add it"),
            );
            return Err(());
        }
        Field::Absent | Field::Null => return Ok(None),
        Field::Given(list) => list,
        Field::Invalid(..) => {
            err(
                errs,
                format!("{path}.{key}"),
                "expected an array of permission groups",
            );
            return Err(());
        }
    };
    let allowed: Vec<&str> = ENTERPRISE_GROUPS.iter().map(|g| g.as_str()).collect();
    let mut out = Vec::new();
    let mut ok = true;
    for (j, v) in list.iter().enumerate() {
        let g = v
            .as_str()
            .and_then(PermissionGroup::parse)
            .filter(|g| ENTERPRISE_GROUPS.contains(g));
        match g {
            Some(g) => out.push(g),
            None => {
                ok = false;
                err(
                    errs,
                    format!("{path}.{key}[{j}]"),
                    format!(
                        "{v} is not a permission group an enterprise can grant; use one of: {}",
                        allowed.join(", ")
                    ),
                );
            }
        }
    }
    if !ok {
        return Err(());
    }
    if required && out.is_empty() {
        err(
            errs,
            format!("{path}.{key}"),
            "is empty; name at least one permission group",
        );
        return Err(());
    }
    out.sort();
    out.dedup();
    Ok(Some(out))
}

/// `valid_from` and `valid_until`, the first before the second when both are given.
fn validity(
    from: Field<Rfc3339Time>,
    until: Field<Rfc3339Time>,
    path: &str,
    errs: &mut Vec<RowError>,
) -> Result<(Option<Timestamp>, Option<Timestamp>), ()> {
    let from = from.optional(path, "valid_from", errs);
    let until = until.optional(path, "valid_until", errs);
    let (from, until) = (from?.map(|t| t.0), until?.map(|t| t.0));
    if let (Some(f), Some(u)) = (from, until)
        && f >= u
    {
        err(
            errs,
            format!("{path}.valid_until"),
            "must be later than `valid_from`; fix one of the two",
        );
        return Err(());
    }
    Ok((from, until))
}

impl PersonRow {
    fn check(self, path: &str, errs: &mut Vec<RowError>) -> Option<ParsedPerson> {
        let id = self.id_number.required(path, "id_number", errs);
        let name = name(self.name, path, errs);
        let username = match self.username.optional(path, "username", errs) {
            Ok(Some(u)) => match check_username(&u) {
                Ok(()) => Ok(Some(u)),
                Err(reason) => {
                    err(errs, format!("{path}.username"), reason);
                    Err(())
                }
            },
            other => other,
        };
        let phone = self.phone.optional(path, "phone", errs);
        let password = secret(self.password, path, "password", errs);
        let (id, name, username, phone, password) = (
            id.ok()?,
            name.ok()?,
            username.ok()?,
            phone.ok()?,
            password.ok()?,
        );
        Some(ParsedPerson {
            p: SeedPerson {
                must_change_password: password.is_none(),
                id_number: id,
                name,
                username,
                phone,
                password_hash: None,
            },
            password,
        })
    }
}

impl EnterpriseRow {
    fn check(self, path: &str, errs: &mut Vec<RowError>) -> Option<ParsedEnterprise> {
        let id = self.taxpayer_id.required(path, "taxpayer_id", errs);
        let name = name(self.name, path, errs);
        let phone = self.phone.optional(path, "phone", errs);
        let legacy = secret(self.legacy_password, path, "legacy_password", errs);
        let agency = self.agency.optional(path, "agency", errs);
        let (id, name, phone, legacy, agency) = (
            id.ok()?,
            name.ok()?,
            phone.ok()?,
            legacy.ok()?,
            agency.ok()?,
        );
        Some(ParsedEnterprise {
            e: SeedEnterprise {
                taxpayer_id: id,
                name,
                is_agency: agency.unwrap_or(false),
                phone,
                legacy_password_hash: None,
            },
            legacy_password: legacy,
        })
    }
}

impl BindingRow {
    fn check(self, path: &str, errs: &mut Vec<RowError>) -> Option<SeedBinding> {
        let person = self.person.required(path, "person", errs);
        let enterprise = self.enterprise.required(path, "enterprise", errs);
        let role = self.role.required(path, "role", errs).and_then(|r| {
            match Role::parse(&r).filter(|r| !matches!(r, Role::Agent | Role::LegacyEnterprise)) {
                Some(r) => Ok(r),
                None => {
                    err(
                        errs,
                        format!("{path}.role"),
                        format!(
                            "`{r}` is not a binding role; use one of: legal_representative, \
                             finance_manager, admin, tax_handler, invoice_clerk, ticket_buyer \
                             (agents are given through agency_agreements)"
                        ),
                    );
                    Err(())
                }
            }
        });
        let permissions = groups(self.permissions, path, "permissions", false, errs);
        let valid = validity(self.valid_from, self.valid_until, path, errs);
        let ec = self
            .enterprise_confirmed
            .optional(path, "enterprise_confirmed", errs);
        let pc = self
            .person_confirmed
            .optional(path, "person_confirmed", errs);
        let (person, enterprise, role, permissions, (valid_from, valid_until), ec, pc) = (
            person.ok()?,
            enterprise.ok()?,
            role.ok()?,
            permissions.ok()?,
            valid.ok()?,
            ec.ok()?,
            pc.ok()?,
        );
        Some(SeedBinding {
            person,
            enterprise,
            role,
            permissions,
            valid_from,
            valid_until,
            enterprise_confirmed: ec.unwrap_or(false),
            person_confirmed: pc.unwrap_or(false),
        })
    }
}

impl AgreementRow {
    fn check(self, path: &str, errs: &mut Vec<RowError>) -> Option<SeedAgreement> {
        let agency = self.agency.required(path, "agency", errs);
        let client = self.client.required(path, "client", errs);
        if let (Ok(a), Ok(c)) = (&agency, &client)
            && a == c
        {
            err(
                errs,
                format!("{path}.client"),
                "is the agency itself; an agreement needs a different client enterprise",
            );
        }
        let staff = staff(self.staff, path, errs);
        let scope = groups(self.scope, path, "scope", true, errs).and_then(|s| s.ok_or(()));
        let valid = validity(self.valid_from, self.valid_until, path, errs);
        let cc = self
            .client_confirmed
            .optional(path, "client_confirmed", errs);
        let (agency, client, staff, scope, (valid_from, valid_until), cc) = (
            agency.ok()?,
            client.ok()?,
            staff.ok()?,
            scope.ok()?,
            valid.ok()?,
            cc.ok()?,
        );
        if agency == client {
            return None;
        }
        Some(SeedAgreement {
            agency,
            client,
            staff,
            scope,
            valid_from,
            valid_until,
            client_confirmed: cc.unwrap_or(false),
        })
    }
}

/// An agreement's staff: a non-empty list of ID numbers, sorted, without duplicates.
fn staff(
    field: Field<Vec<Field<IdNumber>>>,
    path: &str,
    errs: &mut Vec<RowError>,
) -> Result<Vec<IdNumber>, ()> {
    let list = match field {
        Field::Given(list) if !list.is_empty() => list,
        _ => {
            err(
                errs,
                format!("{path}.staff"),
                "needs a non-empty array of the staff members' ID numbers",
            );
            return Err(());
        }
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (j, member) in list.into_iter().enumerate() {
        let sp = format!("{path}.staff[{j}]");
        match member {
            Field::Given(id) => out.push(id),
            Field::Invalid(Value::String(_), why) => {
                ok = false;
                err(
                    errs,
                    sp,
                    format!("not a valid ID number (GB 11643): {why}; correct it"),
                );
            }
            _ => {
                ok = false;
                err(errs, sp, "expected an ID number string");
            }
        }
    }
    out.sort();
    out.dedup();
    if ok { Ok(out) } else { Err(()) }
}

/// Uniqueness inside the file: one row per key, one holder per phone and username.
fn check_duplicates(p: &Parsed, errs: &mut Vec<RowError>) {
    let mut ids = HashMap::new();
    let mut phones = HashMap::new();
    let mut usernames = HashMap::new();
    for (i, pp) in &p.persons {
        if let Some(first) = ids.insert(pp.p.id_number.clone(), *i) {
            err(
                errs,
                format!("persons[{i}].id_number"),
                format!("repeats persons[{first}]; merge the two rows"),
            );
        }
        if let Some(ph) = &pp.p.phone
            && let Some(first) = phones.insert(ph.clone(), *i)
        {
            err(
                errs,
                format!("persons[{i}].phone"),
                format!(
                    "is also the phone of persons[{first}]; one number belongs to one person \
                         (一号一人): keep it on one of them"
                ),
            );
        }
        if let Some(u) = &pp.p.username
            && let Some(first) = usernames.insert(u.clone(), *i)
        {
            err(
                errs,
                format!("persons[{i}].username"),
                format!("is also the username of persons[{first}]; choose another"),
            );
        }
    }
    let mut tids = HashMap::new();
    for (i, e) in &p.enterprises {
        if let Some(first) = tids.insert(e.e.taxpayer_id.clone(), *i) {
            err(
                errs,
                format!("enterprises[{i}].taxpayer_id"),
                format!("repeats enterprises[{first}]; merge the two rows"),
            );
        }
    }
    let mut keys = HashMap::new();
    for (i, b) in &p.bindings {
        if let Some(first) = keys.insert((b.person.clone(), b.enterprise.clone(), b.role), *i) {
            err(
                errs,
                format!("bindings[{i}]"),
                format!("repeats the person, enterprise and role of bindings[{first}]; merge them"),
            );
        }
    }
    let mut pairs = HashMap::new();
    for (i, a) in &p.agreements {
        if let Some(first) = pairs.insert((a.agency.clone(), a.client.clone()), *i) {
            err(
                errs,
                format!("agency_agreements[{i}]"),
                format!("repeats the agency and client of agency_agreements[{first}]; merge them"),
            );
        }
    }
}

// ---- checks against the store ---------------------------------------------------------------

/// Which seeded accounts already exist (their passwords are left alone).
#[derive(Debug, Default)]
struct Existing {
    persons: HashSet<IdNumber>,
    enterprises: HashSet<TaxpayerId>,
}

async fn check_against_store<S: Store>(
    store: &S,
    p: &Parsed,
    errs: &mut Vec<RowError>,
) -> Result<Existing, StoreError> {
    let mut existing = Existing::default();
    let seeded_persons: HashSet<&IdNumber> =
        p.persons.iter().map(|(_, x)| &x.p.id_number).collect();
    let seeded_agency: HashMap<&TaxpayerId, bool> = p
        .enterprises
        .iter()
        .map(|(_, x)| (&x.e.taxpayer_id, x.e.is_agency))
        .collect();

    for (i, pp) in &p.persons {
        if store.person(&pp.p.id_number).await?.is_some() {
            existing.persons.insert(pp.p.id_number.clone());
        }
        if let Some(ph) = &pp.p.phone
            && let Some(holder) = store.person_by_account(ph.as_str()).await?
            && holder.id_number != pp.p.id_number
            && !seeded_persons.contains(&holder.id_number)
        {
            err(
                errs,
                format!("persons[{i}].phone"),
                format!(
                    "is held by another person ({}) who is not in this seed; one number \
                             belongs to one person (一号一人): drop it here, or add that person to \
                             the seed with another number",
                    holder.id_number.masked()
                ),
            );
        }
        if let Some(u) = &pp.p.username
            && let Some(holder) = store.person_by_account(u).await?
            && holder.id_number != pp.p.id_number
            && !seeded_persons.contains(&holder.id_number)
        {
            err(
                errs,
                format!("persons[{i}].username"),
                "is taken by a person who is not in this seed; choose another",
            );
        }
    }
    let mut agency_in_store: HashMap<TaxpayerId, Option<bool>> = HashMap::new();
    for (_, e) in &p.enterprises {
        if store.enterprise(&e.e.taxpayer_id).await?.is_some() {
            existing.enterprises.insert(e.e.taxpayer_id.clone());
        }
    }
    // Is this enterprise known, and is it an agency? The seed's word wins (it is upserted).
    let mut enterprise_kind = async |tid: &TaxpayerId| -> Result<Option<bool>, StoreError> {
        if let Some(a) = seeded_agency.get(tid) {
            return Ok(Some(*a));
        }
        if let Some(k) = agency_in_store.get(tid) {
            return Ok(*k);
        }
        let k = store.enterprise(tid).await?.map(|e| e.is_agency);
        agency_in_store.insert(tid.clone(), k);
        Ok(k)
    };
    let mut person_in_store: HashMap<IdNumber, bool> = HashMap::new();
    let mut person_known = async |id: &IdNumber| -> Result<bool, StoreError> {
        if seeded_persons.contains(id) {
            return Ok(true);
        }
        if let Some(k) = person_in_store.get(id) {
            return Ok(*k);
        }
        let k = store.person(id).await?.is_some();
        person_in_store.insert(id.clone(), k);
        Ok(k)
    };

    for (i, b) in &p.bindings {
        if !person_known(&b.person).await? {
            err(
                errs,
                format!("bindings[{i}].person"),
                "no such person in the seed or the store; add the person to `persons` first",
            );
        }
        if enterprise_kind(&b.enterprise).await?.is_none() {
            err(
                errs,
                format!("bindings[{i}].enterprise"),
                "no such enterprise in the seed or the store; add it to `enterprises` first",
            );
        }
        // Separation of duties against agreements already stored (the seed's own agreements
        // are checked below, with the staff lists this import will leave).
        for agency in store.staff_agencies(&b.person, &b.enterprise).await? {
            let restated = p
                .agreements
                .iter()
                .any(|(_, a)| a.agency == agency && a.client == b.enterprise);
            if !restated {
                err(
                    errs,
                    format!("bindings[{i}].person"),
                    format!(
                        "is staff of the agency `{}`'s agreement with this enterprise; an agent \
                         may not hold a role in a client: drop this binding or take them off \
                         that agreement's `staff` first",
                        agency.as_str()
                    ),
                );
            }
        }
    }
    let seeded_links: HashSet<(&IdNumber, &TaxpayerId)> = p
        .bindings
        .iter()
        .map(|(_, b)| (&b.person, &b.enterprise))
        .collect();
    for (i, a) in &p.agreements {
        match enterprise_kind(&a.agency).await? {
            None => err(
                errs,
                format!("agency_agreements[{i}].agency"),
                "no such enterprise in the seed or the store; add it to `enterprises` first",
            ),
            Some(false) => err(
                errs,
                format!("agency_agreements[{i}].agency"),
                "is not an agency; set `\"agency\": true` on that enterprise or name the agency",
            ),
            Some(true) => {}
        }
        if enterprise_kind(&a.client).await?.is_none() {
            err(
                errs,
                format!("agency_agreements[{i}].client"),
                "no such enterprise in the seed or the store; add it to `enterprises` first",
            );
        }
        for (j, s) in a.staff.iter().enumerate() {
            let sp = format!("agency_agreements[{i}].staff[{j}]");
            if !person_known(s).await? {
                err(
                    errs,
                    sp,
                    "no such person in the seed or the store; add the person to `persons` first",
                );
                continue;
            }
            let bound_in_seed = seeded_links.contains(&(s, &a.client));
            let bound_in_store = !bound_in_seed
                && store
                    .bindings_between(s, &a.client)
                    .await?
                    .iter()
                    .any(|b| b.revoked_at.is_none());
            if bound_in_seed || bound_in_store {
                err(
                    errs,
                    sp,
                    "holds a role in the client enterprise; an agent may not act for a firm in \
                     which they hold a role: remove them from `staff` or end that binding first",
                );
            }
        }
    }
    // Staff paths index the sorted, deduplicated list; report them in file order where we can.
    Ok(existing)
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
