//! Turning stored strings back into validated values. A failure here means a corrupt row
//! (`StoreError::Internal`), never user error: everything was validated on the way in.

use crate::error::StoreError;
use crate::ids::{IdNumber, Phone, TaxpayerId};
use crate::model::{Entry, Factor, PermissionGroup, Role};
use crate::records::{ChallengePurpose, FaceStatus};

pub(crate) fn id_number(col: &str, s: &str) -> Result<IdNumber, StoreError> {
    IdNumber::parse(s).map_err(|e| StoreError::corrupt(col, e))
}

pub(crate) fn taxpayer_id(col: &str, s: &str) -> Result<TaxpayerId, StoreError> {
    TaxpayerId::parse(s).map_err(|e| StoreError::corrupt(col, e))
}

pub(crate) fn phone(col: &str, s: &str) -> Result<Phone, StoreError> {
    Phone::parse(s).map_err(|e| StoreError::corrupt(col, e))
}

pub(crate) fn opt<T>(
    col: &str,
    s: Option<String>,
    f: fn(&str, &str) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    s.map(|v| f(col, &v)).transpose()
}

pub(crate) fn role(col: &str, s: &str) -> Result<Role, StoreError> {
    Role::parse(s).ok_or_else(|| StoreError::corrupt(col, format!("unknown role `{s}`")))
}

pub(crate) fn entry(col: &str, s: &str) -> Result<Entry, StoreError> {
    Entry::parse(s).ok_or_else(|| StoreError::corrupt(col, format!("unknown entry `{s}`")))
}

pub(crate) fn factor(col: &str, s: &str) -> Result<Factor, StoreError> {
    Factor::parse(s).ok_or_else(|| StoreError::corrupt(col, format!("unknown factor `{s}`")))
}

pub(crate) fn purpose(col: &str, s: &str) -> Result<ChallengePurpose, StoreError> {
    ChallengePurpose::parse(s)
        .ok_or_else(|| StoreError::corrupt(col, format!("unknown purpose `{s}`")))
}

pub(crate) fn face_status(col: &str, s: &str) -> Result<FaceStatus, StoreError> {
    FaceStatus::parse(s).ok_or_else(|| StoreError::corrupt(col, format!("unknown status `{s}`")))
}

/// Permission groups are stored as a JSON array of names.
pub(crate) fn groups(col: &str, s: &str) -> Result<Vec<PermissionGroup>, StoreError> {
    let names: Vec<String> = serde_json::from_str(s).map_err(|e| StoreError::corrupt(col, e))?;
    names
        .iter()
        .map(|n| {
            PermissionGroup::parse(n)
                .ok_or_else(|| StoreError::corrupt(col, format!("unknown group `{n}`")))
        })
        .collect()
}

pub(crate) fn groups_json(groups: &[PermissionGroup]) -> String {
    let names: Vec<&str> = groups.iter().map(|g| g.as_str()).collect();
    serde_json::Value::from(names).to_string()
}

/// Staff aggregated as `a,b,c` by the backend (order unspecified): sorted here.
pub(crate) fn staff(col: &str, s: Option<String>) -> Result<Vec<IdNumber>, StoreError> {
    let mut out = Vec::new();
    for part in s
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|p| !p.is_empty())
    {
        out.push(id_number(col, part)?);
    }
    out.sort();
    Ok(out)
}

/// `alias.c AS alias_c, …` so one decoder reads a record whether it came alone or joined.
pub(crate) fn cols(alias: &str, names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{alias}.{n} AS {alias}_{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) const SESSION_COLS: &[&str] = &[
    "id",
    "token_hash",
    "entry",
    "person",
    "enterprise",
    "agency",
    "role",
    "binding_id",
    "agreement_id",
    "factor",
    "created_at",
    "last_seen_at",
    "expires_at",
    "revoked_at",
    "factor_at",
    "face_at",
];
pub(crate) const PERSON_COLS: &[&str] = &[
    "id_number",
    "name",
    "username",
    "phone",
    "password_hash",
    "must_change_password",
    "failed_logins",
    "locked_until",
    "updated_at",
];
pub(crate) const ENTERPRISE_COLS: &[&str] = &[
    "taxpayer_id",
    "name",
    "is_agency",
    "legacy_password_hash",
    "phone",
    "failed_logins",
    "locked_until",
];
pub(crate) const BINDING_COLS: &[&str] = &[
    "id",
    "person",
    "enterprise",
    "role",
    "permissions",
    "valid_from",
    "valid_until",
    "enterprise_confirmed",
    "person_confirmed",
    "revoked_at",
    "created_at",
    "updated_at",
    "updated_by",
];
pub(crate) const AGREEMENT_COLS: &[&str] = &[
    "id",
    "agency",
    "client",
    "scope",
    "valid_from",
    "valid_until",
    "client_confirmed",
    "revoked_at",
    "updated_at",
];
pub(crate) const CHALLENGE_COLS: &[&str] = &[
    "id_hash",
    "purpose",
    "entry",
    "person",
    "enterprise",
    "agency",
    "target_phone",
    "code_hash",
    "code_expires_at",
    "code_attempts",
    "face_nonce",
    "face_status",
    "face_expires_at",
    "client_addr",
    "created_at",
    "expires_at",
    "consumed_at",
];
