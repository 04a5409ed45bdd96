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
    /// A person logging in to act for an enterprise they are bound to.
    Enterprise,
    /// A person logging in for their own affairs (自然人).
    Person,
    /// Staff of a tax-service agency logging in to act for the agency's clients.
    Agent,
    /// The old enterprise login (taxpayer id and enterprise password), kept until its sunset.
    EnterpriseLegacy,
}

impl Entry {
    /// The snake_case name used in the contract, the database and the policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Entry::Enterprise => "enterprise",
            Entry::Person => "person",
            Entry::Agent => "agent",
            Entry::EnterpriseLegacy => "enterprise_legacy",
        }
    }

    /// The entry named by [`Entry::as_str`]; `None` for any other string.
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
    /// A code sent by SMS to the account's phone.
    Sms,
    /// A face check, reported by a signed callback.
    Face,
}

impl Factor {
    /// The snake_case name used in the contract, the database and the policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Factor::Sms => "sms",
            Factor::Face => "face",
        }
    }

    /// The factor named by [`Factor::as_str`]; `None` for any other string.
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
    /// 法定代表人.
    LegalRepresentative,
    /// 财务负责人.
    FinanceManager,
    /// 管理员.
    Admin,
    /// 办税员.
    TaxHandler,
    /// 开票员.
    InvoiceClerk,
    /// 购票员.
    TicketBuyer,
    /// Staff of an agency acting for a client under an agreement (代理).
    Agent,
    /// The session of the old enterprise-password login.
    LegacyEnterprise,
}

impl Role {
    /// Every role, in declaration order.
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

    /// The snake_case name used in the contract, the database and the policies.
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

    /// The role named by [`Role::as_str`]; `None` for any other string.
    pub fn parse(s: &str) -> Option<Self> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Downstream permission groups (业务权限). Personnel management is not one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PermissionGroup {
    /// 申报: filing returns.
    Declare,
    /// 发票: invoices.
    Invoice,
    /// 查询: looking things up.
    Query,
    /// 涉税事项: other tax affairs.
    TaxAffairs,
    /// 个人所得税: individual income tax.
    PersonalTax,
}

impl PermissionGroup {
    /// Every permission group, in declaration order.
    pub const ALL: [PermissionGroup; 5] = [
        PermissionGroup::Declare,
        PermissionGroup::Invoice,
        PermissionGroup::Query,
        PermissionGroup::TaxAffairs,
        PermissionGroup::PersonalTax,
    ];

    /// The snake_case name used in the contract, the database and the policies.
    pub fn as_str(self) -> &'static str {
        match self {
            PermissionGroup::Declare => "declare",
            PermissionGroup::Invoice => "invoice",
            PermissionGroup::Query => "query",
            PermissionGroup::TaxAffairs => "tax_affairs",
            PermissionGroup::PersonalTax => "personal_tax",
        }
    }

    /// The group named by [`PermissionGroup::as_str`]; `None` for any other string.
    pub fn parse(s: &str) -> Option<Self> {
        PermissionGroup::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

/// A natural person (自然人) with personal credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The person's key everywhere.
    pub id_number: IdNumber,
    /// Full name.
    pub name: String,
    /// An optional login name besides the ID number.
    pub username: Option<String>,
    /// The phone SMS codes go to; `None`: no SMS factor.
    pub phone: Option<Phone>,
    /// argon2id PHC string. Never logged (see the manual `Debug` of [`Secret`]).
    pub password_hash: Secret,
    /// The password must be changed before anything else (e.g. the initial password of a
    /// migrated user).
    pub must_change_password: bool,
    /// Consecutive failed password checks.
    pub failed_logins: i32,
    /// Password logins are refused until then.
    pub locked_until: Option<Timestamp>,
    /// Bumped on every write that narrows this person's access (password change, phone cleared);
    /// caches compare it.
    pub updated_at: Timestamp,
}

/// An enterprise (纳税人); `is_agency` marks a tax-service agency (涉税专业服务机构).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enterprise {
    /// The enterprise's key everywhere.
    pub taxpayer_id: TaxpayerId,
    /// Registered name.
    pub name: String,
    /// A tax-service agency, whose staff may act for its clients under agreements.
    pub is_agency: bool,
    /// The old enterprise password (argon2id PHC), for the legacy login while it lasts.
    pub legacy_password_hash: Option<Secret>,
    /// The phone SMS codes of the legacy login go to.
    pub phone: Option<Phone>,
    /// Consecutive failed legacy password checks.
    pub failed_logins: i32,
    /// Legacy logins are refused until then.
    pub locked_until: Option<Timestamp>,
}

/// A person–enterprise binding (人员权限). Active only when both sides confirmed, not revoked, and
/// `valid_from <= now < valid_until` — which the policies check, not Rust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Opaque random id (hex), stable across backends.
    pub id: String,
    /// The person bound.
    pub person: IdNumber,
    /// The enterprise they are bound to.
    pub enterprise: TaxpayerId,
    /// The role the person holds in the enterprise.
    pub role: Role,
    /// `None`: the role's default permission groups (decided by the policies).
    pub permissions: Option<Vec<PermissionGroup>>,
    /// Start of validity.
    pub valid_from: Timestamp,
    /// `None`: no end (长期).
    pub valid_until: Option<Timestamp>,
    /// The enterprise side confirmed the binding.
    pub enterprise_confirmed: bool,
    /// The person confirmed the binding.
    pub person_confirmed: bool,
    /// When the binding was revoked; `None`: not revoked.
    pub revoked_at: Option<Timestamp>,
    /// When the binding was made.
    pub created_at: Timestamp,
    /// When the binding last changed.
    pub updated_at: Timestamp,
    /// Who made the last change: an ID number, `import`, or `system`.
    pub updated_by: String,
}

/// An agency agreement (代理协议) between an agency and a client enterprise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgencyAgreement {
    /// Opaque random id (hex), stable across backends.
    pub id: String,
    /// The agency acting.
    pub agency: TaxpayerId,
    /// The enterprise acted for.
    pub client: TaxpayerId,
    /// The agency's staff the agreement names; only they may act under it.
    pub staff: Vec<IdNumber>,
    /// The permission groups the agreement covers (服务类别).
    pub scope: Vec<PermissionGroup>,
    /// Start of validity.
    pub valid_from: Timestamp,
    /// `None`: no end.
    pub valid_until: Option<Timestamp>,
    /// The client confirmed the agreement.
    pub client_confirmed: bool,
    /// When the agreement was revoked; `None`: not revoked.
    pub revoked_at: Option<Timestamp>,
    /// When the agreement last changed.
    pub updated_at: Timestamp,
}

/// A login session. Only the SHA-256 of the bearer token is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Public, random id (hex): used as the Cedar entity id and in audit records. Not a credential.
    pub id: String,
    /// hex(SHA-256(token)).
    pub token_hash: String,
    /// The login entry the session came through.
    pub entry: Entry,
    /// The person logged in (`None` in the legacy enterprise login).
    pub person: Option<IdNumber>,
    /// The enterprise acted for (None in person entry and before an agent picks a client).
    pub enterprise: Option<TaxpayerId>,
    /// The agency (agent entry).
    pub agency: Option<TaxpayerId>,
    /// The role taken up; `None` until one is.
    pub role: Option<Role>,
    /// The binding in use (enterprise entry) ...
    pub binding_id: Option<String>,
    /// ... or the agreement in use (agent entry acting for a client).
    pub agreement_id: Option<String>,
    /// The second factor that completed the login.
    pub factor: Factor,
    /// When the login completed.
    pub created_at: Timestamp,
    /// The last recorded activity, for the idle timeout.
    pub last_seen_at: Timestamp,
    /// Absolute expiry.
    pub expires_at: Timestamp,
    /// When the session was ended (logout, revocation); `None`: still open.
    pub revoked_at: Option<Timestamp>,
    /// When its latest second factor completed: the login's, then each step-up's (CONTRACT
    /// section 10).
    pub factor_at: Timestamp,
    /// When its latest face verification passed; 0 when none.
    pub face_at: Timestamp,
}

/// Everything one decision about a session needs, loaded in one go on a cache miss
/// (never the whole population).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSlice {
    /// The session itself.
    pub session: Session,
    /// The session's person, if it has one.
    pub person: Option<Person>,
    /// The enterprise acted for.
    pub enterprise: Option<Enterprise>,
    /// The agency (agent entry).
    pub agency: Option<Enterprise>,
    /// The binding in use (enterprise entry).
    pub binding: Option<Binding>,
    /// The agreement in use (agent entry acting for a client).
    pub agreement: Option<AgencyAgreement>,
}

/// A secret string (password hash, code hash) whose `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    /// The secret value itself, for the one place that needs it (hash verification, storage).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}
