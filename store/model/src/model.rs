//! Domain records as the rest of taxgate sees them. Identifiers are validated newtypes
//! (see `ids`); times are unix seconds (UTC) everywhere, so both backends store plain integers
//! and the policy engine compares integers.

use serde::{Deserialize, Serialize};

use crate::ids::{IdNumber, Phone, TaxpayerId};

/// Unix seconds, UTC.
pub type Timestamp = i64;

/// The login entry a session came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entry {
    Enterprise,
    Person,
    Agent,
    EnterpriseLegacy,
}

impl Entry {
    pub fn as_str(self) -> &'static str {
        match self {
            Entry::Enterprise => "enterprise",
            Entry::Person => "person",
            Entry::Agent => "agent",
            Entry::EnterpriseLegacy => "enterprise_legacy",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "enterprise" => Entry::Enterprise,
            "person" => Entry::Person,
            "agent" => Entry::Agent,
            "enterprise_legacy" => Entry::EnterpriseLegacy,
            _ => return None,
        })
    }
}

/// The second factor that completed a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Factor {
    Sms,
    Face,
}

impl Factor {
    pub fn as_str(self) -> &'static str {
        match self {
            Factor::Sms => "sms",
            Factor::Face => "face",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "sms" => Factor::Sms,
            "face" => Factor::Face,
            _ => return None,
        })
    }
}

/// 身份类型. The set of role names is part of the contract; what a role may do is decided by the
/// policies, never by Rust code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    LegalRepresentative,
    FinanceManager,
    Admin,
    TaxHandler,
    InvoiceClerk,
    TicketBuyer,
    Agent,
    LegacyEnterprise,
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::LegalRepresentative,
        Role::FinanceManager,
        Role::Admin,
        Role::TaxHandler,
        Role::InvoiceClerk,
        Role::TicketBuyer,
        Role::Agent,
        Role::LegacyEnterprise,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::LegalRepresentative => "legal_representative",
            Role::FinanceManager => "finance_manager",
            Role::Admin => "admin",
            Role::TaxHandler => "tax_handler",
            Role::InvoiceClerk => "invoice_clerk",
            Role::TicketBuyer => "ticket_buyer",
            Role::Agent => "agent",
            Role::LegacyEnterprise => "legacy_enterprise",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Downstream permission groups (业务权限). Personnel management is not one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PermissionGroup {
    Declare,
    Invoice,
    Query,
    TaxAffairs,
    PersonalTax,
}

impl PermissionGroup {
    pub const ALL: [PermissionGroup; 5] = [
        PermissionGroup::Declare,
        PermissionGroup::Invoice,
        PermissionGroup::Query,
        PermissionGroup::TaxAffairs,
        PermissionGroup::PersonalTax,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PermissionGroup::Declare => "declare",
            PermissionGroup::Invoice => "invoice",
            PermissionGroup::Query => "query",
            PermissionGroup::TaxAffairs => "tax_affairs",
            PermissionGroup::PersonalTax => "personal_tax",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        PermissionGroup::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

/// A natural person (自然人) with personal credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id_number: IdNumber,
    pub name: String,
    pub username: Option<String>,
    pub phone: Option<Phone>,
    /// argon2id PHC string. Never logged (see the manual `Debug` of [`Secret`]).
    pub password_hash: Secret,
    pub must_change_password: bool,
    pub failed_logins: i32,
    pub locked_until: Option<Timestamp>,
    /// Bumped on every write that narrows this person's access (password change, phone cleared);
    /// caches compare it.
    pub updated_at: Timestamp,
}

/// An enterprise (纳税人); `is_agency` marks a tax-service agency (涉税专业服务机构).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enterprise {
    pub taxpayer_id: TaxpayerId,
    pub name: String,
    pub is_agency: bool,
    /// The old enterprise password (argon2id PHC), for the legacy login while it lasts.
    pub legacy_password_hash: Option<Secret>,
    pub phone: Option<Phone>,
    pub failed_logins: i32,
    pub locked_until: Option<Timestamp>,
}

/// A person–enterprise binding (人员权限). Active only when both sides confirmed, not revoked, and
/// `valid_from <= now < valid_until` — which the policies check, not Rust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Opaque random id (hex), stable across backends.
    pub id: String,
    pub person: IdNumber,
    pub enterprise: TaxpayerId,
    pub role: Role,
    /// `None`: the role's default permission groups (decided by the policies).
    pub permissions: Option<Vec<PermissionGroup>>,
    pub valid_from: Timestamp,
    /// `None`: no end (长期).
    pub valid_until: Option<Timestamp>,
    pub enterprise_confirmed: bool,
    pub person_confirmed: bool,
    pub revoked_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Who made the last change: an ID number, `import`, or `system`.
    pub updated_by: String,
}

/// An agency agreement (代理协议) between an agency and a client enterprise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgencyAgreement {
    pub id: String,
    pub agency: TaxpayerId,
    pub client: TaxpayerId,
    pub staff: Vec<IdNumber>,
    pub scope: Vec<PermissionGroup>,
    pub valid_from: Timestamp,
    pub valid_until: Option<Timestamp>,
    pub client_confirmed: bool,
    pub revoked_at: Option<Timestamp>,
    pub updated_at: Timestamp,
}

/// A login session. Only the SHA-256 of the bearer token is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Public, random id (hex): used as the Cedar entity id and in audit records. Not a credential.
    pub id: String,
    /// hex(SHA-256(token)).
    pub token_hash: String,
    pub entry: Entry,
    pub person: Option<IdNumber>,
    /// The enterprise acted for (None in person entry and before an agent picks a client).
    pub enterprise: Option<TaxpayerId>,
    /// The agency (agent entry).
    pub agency: Option<TaxpayerId>,
    pub role: Option<Role>,
    /// The binding in use (enterprise entry) ...
    pub binding_id: Option<String>,
    /// ... or the agreement in use (agent entry acting for a client).
    pub agreement_id: Option<String>,
    pub factor: Factor,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    /// Absolute expiry.
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// Everything one decision about a session needs, loaded in one go on a cache miss
/// (never the whole population).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSlice {
    pub session: Session,
    pub person: Option<Person>,
    /// The enterprise acted for.
    pub enterprise: Option<Enterprise>,
    /// The agency (agent entry).
    pub agency: Option<Enterprise>,
    pub binding: Option<Binding>,
    pub agreement: Option<AgencyAgreement>,
}

/// A secret string (password hash, code hash) whose `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}
