//! Reading the seed file: serde into typed rows whose fields never fail to deserialise (see
//! [`Field`]), row by row, so every bad field of every row is reported, in file order, with the
//! message of CONTRACT section 4. What passes is checked across rows in `checks.rs`.

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, Visitor};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::checks::check_duplicates;
use super::{ENTERPRISE_GROUPS, RowError, SeedAgreement, SeedBinding, SeedEnterprise, SeedPerson};
use crate::ids::{IdNumber, Phone, TaxpayerId};
use crate::model::{PermissionGroup, Role, Timestamp};

#[derive(Debug, Default)]
pub(super) struct Parsed {
    pub(super) persons: Vec<(usize, ParsedPerson)>,
    pub(super) enterprises: Vec<(usize, ParsedEnterprise)>,
    pub(super) bindings: Vec<(usize, SeedBinding)>,
    pub(super) agreements: Vec<(usize, SeedAgreement)>,
}

#[derive(Debug)]
pub(super) struct ParsedPerson {
    pub(super) p: SeedPerson,
    pub(super) password: Option<String>,
}

#[derive(Debug)]
pub(super) struct ParsedEnterprise {
    pub(super) e: SeedEnterprise,
    pub(super) legacy_password: Option<String>,
}

pub(super) fn err(errs: &mut Vec<RowError>, path: impl Into<String>, reason: impl Into<String>) {
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
pub(super) fn parse_seed(json: &str, errs: &mut Vec<RowError>) -> Parsed {
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
