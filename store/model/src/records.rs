//! Records the store adds to the lead's domain model: login challenges, the SMS log, audit
//! events, binding changes and cross-instance cache invalidations.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{IdNumber, Phone, TaxpayerId};
use crate::model::{Entry, PermissionGroup, Role, Secret, Timestamp};

/// Which side of a binding confirms it (双向确认).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The enterprise (its administrators) confirms.
    Enterprise,
    /// The bound person confirms.
    Person,
}

/// A binding to create (the enterprise adds a person, or a person applies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBinding {
    /// The person to bind.
    pub person: IdNumber,
    /// The enterprise to bind them to.
    pub enterprise: TaxpayerId,
    /// The role they are to hold.
    pub role: Role,
    /// `None`: the role's defaults.
    pub permissions: Option<Vec<PermissionGroup>>,
    /// Start of validity.
    pub valid_from: Timestamp,
    /// `None`: no end (长期).
    pub valid_until: Option<Timestamp>,
    /// The enterprise side confirms already at creation.
    pub enterprise_confirmed: bool,
    /// The person confirms already at creation.
    pub person_confirmed: bool,
    /// Who asked: an ID number, `import` or `system`.
    pub by: String,
    /// The binding (id) of the identity that granted this one through personnel management: a
    /// pending grant dies with it. `None` for imports and applications.
    pub granted_by: Option<String>,
    /// The time of the request: the binding's creation and update time.
    pub now: Timestamp,
}

/// A change to a stored binding through personnel management (修改权限, 延长有效期), decided
/// on `expected`: the store applies it only while the binding is still exactly that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingUpdate {
    /// The binding as read when the change was decided.
    pub expected: crate::model::Binding,
    /// The permission groups after the change (`None`: the role's defaults).
    pub permissions: Option<Vec<PermissionGroup>>,
    /// The end of validity after the change (`None`: no end).
    pub valid_until: Option<Timestamp>,
    /// The change widens what the binding gives: the person confirms again (pending until then).
    pub reconfirm: bool,
    /// Who asked (an ID number, or `legacy`).
    pub by: String,
    /// The time of the request.
    pub now: Timestamp,
}

/// Result of `Store::confirm_binding` (taxgate-store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmOutcome {
    /// This side's confirmation was recorded; the binding as it is now.
    Confirmed(crate::model::Binding),
    /// This side had already confirmed (409 `already_confirmed`); nothing changed.
    AlreadyConfirmed(crate::model::Binding),
}

/// Consecutive password failures after recording one more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureState {
    /// Consecutive failures, this one included.
    pub failed_count: i32,
    /// Set when this failure reached the maximum (or an earlier lock still holds).
    pub locked_until: Option<Timestamp>,
}

/// How many codes were sent to a number since a time, and when the last one went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmsStats {
    /// Codes sent since the time asked about.
    pub count: i64,
    /// When the last of them was sent; `None`: none was.
    pub last_sent_at: Option<Timestamp>,
}

/// What a challenge (and an SMS) is for; the names are those of the SMS outbox (CONTRACT 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChallengePurpose {
    /// The second factor of a login.
    Login,
    /// Proving a new number before it is bound to the account.
    BindPhone,
    /// Recovering an account through its phone.
    RecoverPhone,
    /// A forgotten password (忘记密码, CONTRACT section 13): the factor passes, then the new
    /// password is set.
    ResetPassword,
    /// A fresh second factor for a live session (step-up, CONTRACT section 10).
    StepUp,
}

impl ChallengePurpose {
    /// The snake_case name stored and shown in the SMS outbox.
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengePurpose::Login => "login",
            ChallengePurpose::BindPhone => "bind_phone",
            ChallengePurpose::RecoverPhone => "recover_phone",
            ChallengePurpose::ResetPassword => "reset_password",
            ChallengePurpose::StepUp => "step_up",
        }
    }

    /// The purpose named by [`ChallengePurpose::as_str`]; `None` for any other string.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "login" => ChallengePurpose::Login,
            "bind_phone" => ChallengePurpose::BindPhone,
            "recover_phone" => ChallengePurpose::RecoverPhone,
            "reset_password" => ChallengePurpose::ResetPassword,
            "step_up" => ChallengePurpose::StepUp,
            _ => return None,
        })
    }
}

/// State of the face verification of a challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaceStatus {
    /// Started; the callback has not reported yet.
    Pending,
    /// The callback reported a match.
    Passed,
    /// The callback reported no match.
    Failed,
}

impl FaceStatus {
    /// The snake_case name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            FaceStatus::Pending => "pending",
            FaceStatus::Passed => "passed",
            FaceStatus::Failed => "failed",
        }
    }

    /// The status named by [`FaceStatus::as_str`]; `None` for any other string.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => FaceStatus::Pending,
            "passed" => FaceStatus::Passed,
            "failed" => FaceStatus::Failed,
            _ => return None,
        })
    }
}

/// A login (or phone binding / recovery) challenge between the first and the second factor.
/// Only the SHA-256 of the challenge token is stored; the SMS code is stored hashed.
#[derive(Clone, PartialEq, Eq)]
pub struct Challenge {
    /// hex(SHA-256(challenge token)): the key.
    pub id_hash: String,
    /// What the challenge is for.
    pub purpose: ChallengePurpose,
    /// The login entry (login challenges).
    pub entry: Option<Entry>,
    /// The person who passed the first factor (none for the legacy enterprise login).
    pub person: Option<IdNumber>,
    /// The enterprise logged in for (enterprise and legacy entries).
    pub enterprise: Option<TaxpayerId>,
    /// The agency (agent entry).
    pub agency: Option<TaxpayerId>,
    /// Where the SMS code goes (the person's phone, the enterprise's phone, or the new number).
    pub target_phone: Option<Phone>,
    /// The SMS code sent, hashed; `None` until one is sent.
    pub code_hash: Option<Secret>,
    /// The code is usable until then.
    pub code_expires_at: Option<Timestamp>,
    /// Wrong codes entered so far.
    pub code_attempts: i32,
    /// The nonce the face callback must carry: a bearer capability, never logged.
    pub face_nonce: Option<String>,
    /// Where the face verification stands; `None` until one is started.
    pub face_status: Option<FaceStatus>,
    /// The face nonce is usable until then (`[face] ttl_secs` after `/auth/face/start`).
    pub face_expires_at: Option<Timestamp>,
    /// The address of the client that started the challenge.
    pub client_addr: Option<String>,
    /// When the first factor passed.
    pub created_at: Timestamp,
    /// The challenge as a whole is usable until then.
    pub expires_at: Timestamp,
    /// When the challenge was used up (or voided); `None`: still open.
    pub consumed_at: Option<Timestamp>,
}

impl fmt::Debug for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The nonce is a bearer capability for the face callback: never printed.
        f.debug_struct("Challenge")
            .field("id_hash", &short(&self.id_hash))
            .field("purpose", &self.purpose)
            .field("entry", &self.entry)
            .field("person", &self.person)
            .field("enterprise", &self.enterprise)
            .field("agency", &self.agency)
            .field("target_phone", &self.target_phone)
            .field("code_hash", &self.code_hash)
            .field("code_expires_at", &self.code_expires_at)
            .field("code_attempts", &self.code_attempts)
            .field("face_nonce", &self.face_nonce.as_ref().map(|_| "***"))
            .field("face_status", &self.face_status)
            .field("face_expires_at", &self.face_expires_at)
            .field("client_addr", &self.client_addr)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("consumed_at", &self.consumed_at)
            .finish()
    }
}

fn short(hash: &str) -> String {
    format!("{}…", hash.get(..8).unwrap_or(""))
}

/// One authorization decision or security event, as stored for audit.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Random id; also sent upstream as `x-taxgate-decision`.
    pub id: String,
    /// When it was decided or happened.
    pub at: Timestamp,
    /// The id of the request it belongs to.
    pub request_id: Option<String>,
    /// The session concerned.
    pub session_id: Option<String>,
    /// The person concerned.
    pub person: Option<IdNumber>,
    /// The enterprise concerned.
    pub enterprise: Option<TaxpayerId>,
    /// The session's role.
    pub role: Option<Role>,
    /// The session's login entry.
    pub entry: Option<Entry>,
    /// The Cedar action (`declare`, `login`, …) or a security event name.
    pub action: String,
    /// The request path (downstream decisions).
    pub path: Option<String>,
    /// Whether it was allowed (or the event succeeded).
    pub allowed: bool,
    /// Ids of the determining policies.
    pub policies: Vec<String>,
    /// The `@reason` code of a denial.
    pub reason: Option<String>,
    /// The version of the policy set that decided.
    pub policy_version: Option<String>,
    /// The client's address.
    pub client_addr: Option<String>,
    /// Free JSON text for replay data; `None` stores nothing.
    pub detail: Option<String>,
    /// Downstream decisions: the entity slice the decision saw, so it can be re-decided
    /// (`taxgate policy replay`). Only its hash is stored with the event; the slice itself goes
    /// to `audit_slices` once (see `Store::append_audit_with_slices` (taxgate-store)).
    #[serde(skip)]
    pub slice: Option<AuditSlice>,
    /// Downstream decisions: the context value `legacy_login_until` the decision saw (`now` is
    /// `at`).
    pub legacy_login_until: Option<Timestamp>,
}

/// The Cedar entity slice of a decision as JSON, with its content hash. Built with a session's
/// entities and shared by the events of that session (`Arc` clones).
#[derive(Clone, PartialEq, Eq)]
pub struct AuditSlice {
    /// Hex of a SHA-256 over `json` (truncated); the key of `audit_slices`.
    pub hash: std::sync::Arc<str>,
    /// The entities as Cedar JSON; `None`: the event names the slice by hash only (an earlier
    /// event of the same session carried it whole).
    pub json: Option<std::sync::Arc<str>>,
    /// With `json` `None`: this event also moves the stored slice's last use up to its time
    /// (a session's events do so at least every `AUDIT_SLICE_REFRESH_SECS / 2` of decision
    /// time), so retention keeps a slice as long as decisions name it. Never creates a row.
    pub refresh: bool,
}

impl fmt::Debug for AuditSlice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The slice names persons: only the hash goes to logs.
        f.debug_struct("AuditSlice")
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

/// A recorded downstream decision with what is needed to decide it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedDecision {
    /// The audit event's id.
    pub id: String,
    /// Time of the decision; also the `now` of its context.
    pub at: Timestamp,
    /// The session's login entry.
    pub entry: Option<Entry>,
    /// The session's role.
    pub role: Option<Role>,
    /// The Cedar action decided.
    pub action: String,
    /// The request path.
    pub path: Option<String>,
    /// The recorded outcome.
    pub allowed: bool,
    /// Ids of the determining policies then.
    pub policies: Vec<String>,
    /// The `@reason` code of a denial.
    pub reason: Option<String>,
    /// The version of the policy set that decided.
    pub policy_version: Option<String>,
    /// `None` for decisions recorded before slices were kept: not replayable.
    pub slice_hash: Option<String>,
    /// The context value `legacy_login_until` the decision saw.
    pub legacy_login_until: Option<Timestamp>,
}

/// How often a combination of determining policies decided, for coverage reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyUse {
    /// The determining policies of a decision (empty: no permit applied).
    pub policies: Vec<String>,
    /// The outcome of those decisions.
    pub allowed: bool,
    /// How many decisions had this combination and outcome.
    pub decisions: i64,
}

/// How far, in decision time, an event may be from the last reported use of its entity slice
/// before the writer reports the slice again (its `last_seen`; see
/// `Store::append_audit_with_slices` (taxgate-store)).
pub const AUDIT_SLICE_REFRESH_SECS: i64 = 600;

/// How long before a retention cutoff a slice must have been last used to be deleted: the
/// refresh interval plus an hour of margin (for instances still on code from before
/// migration 0004, which do not report uses, during a rolling upgrade, and for the half
/// refresh interval between a session's refreshing events, `AuditSlice::refresh`).
pub const AUDIT_SLICE_SLACK_SECS: i64 = AUDIT_SLICE_REFRESH_SECS + 3_600;

/// Rows deleted by `Store::purge_audit` (taxgate-store).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuditPurge {
    /// Audit events deleted.
    pub events: u64,
    /// Entity slices (`audit_slices` rows) deleted.
    pub slices: u64,
}

impl AuditEvent {
    /// An event with its id, time, action and outcome, and every other field empty.
    pub fn new(id: String, at: Timestamp, action: &str, allowed: bool) -> AuditEvent {
        AuditEvent {
            id,
            at,
            request_id: None,
            session_id: None,
            person: None,
            enterprise: None,
            role: None,
            entry: None,
            action: action.to_string(),
            path: None,
            allowed,
            policies: Vec::new(),
            reason: None,
            policy_version: None,
            client_addr: None,
            detail: None,
            slice: None,
            legacy_login_until: None,
        }
    }
}

impl fmt::Debug for AuditEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditEvent")
            .field("id", &self.id)
            .field("at", &self.at)
            .field("session_id", &self.session_id)
            .field("person", &self.person)
            .field("enterprise", &self.enterprise)
            .field("action", &self.action)
            .field("allowed", &self.allowed)
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

/// A cache entry another instance (or this one) must drop, because access was narrowed.
/// Serialized as the payload of `pg_notify('taxgate_invalidate', …)`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Invalidation {
    /// One session (revoked or changed).
    Session {
        /// The session's public id.
        id: String,
    },
    /// Every entry that involves this person.
    Person {
        /// The person.
        id_number: IdNumber,
    },
    /// Every entry that involves this binding.
    Binding {
        /// The binding's id.
        id: String,
    },
    /// Every entry that involves this enterprise.
    Enterprise {
        /// The enterprise.
        taxpayer_id: TaxpayerId,
    },
    /// Every entry that involves this agency agreement.
    Agreement {
        /// The agreement's id.
        id: String,
    },
    /// Drop everything: sent after a bulk change (import) and after the listener reconnected
    /// (notifications may have been missed).
    All,
}

impl fmt::Debug for Invalidation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalidation::Session { id } => write!(f, "Session({id})"),
            Invalidation::Person { id_number } => write!(f, "Person({id_number:?})"),
            Invalidation::Binding { id } => write!(f, "Binding({id})"),
            Invalidation::Enterprise { taxpayer_id } => write!(f, "Enterprise({taxpayer_id:?})"),
            Invalidation::Agreement { id } => write!(f, "Agreement({id})"),
            Invalidation::All => f.write_str("All"),
        }
    }
}

/// The audit events of a phone transfer (`Store::transfer_phone` (taxgate-store)), written in the
/// transfer's own transaction, so a crash leaves the transfer and its record, or neither.
#[derive(Debug, Clone, Default)]
pub struct PhoneAudit {
    /// Written on every transfer.
    pub bound: Option<AuditEvent>,
    /// Written when the number was taken from another person, with `person` set to them.
    pub cleared: Option<AuditEvent>,
}

// ---- limits that hold under concurrency (issues 15 and 21) -----------------------------------

/// Whose password failures a check counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GuardKey {
    /// A known person: the failures live on the person, whichever account string named them.
    Person(IdNumber),
    /// A legacy enterprise account with a password.
    Enterprise(TaxpayerId),
    /// An account string that names nobody, normalised by [`account_key`]: it locks like a real
    /// account, so the lockout tells nobody whether an account exists.
    Account(String),
}

/// The account string as the login reads it: an ID number (check character upper-cased), a
/// mobile number (without `+86`, `0086`, spaces or dashes) or a username (case-insensitive).
pub fn account_key(account: &str) -> String {
    if let Ok(id) = IdNumber::parse(account) {
        format!("id:{}", id.as_str())
    } else if let Ok(phone) = Phone::parse(account) {
        format!("phone:{}", phone.as_str())
    } else {
        format!("user:{}", account.trim().to_lowercase())
    }
}

/// The lockout rule of `[login]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutRule {
    /// Consecutive failures that lock (`max_password_failures`).
    pub max_failures: i32,
    /// How long a lock lasts (`lockout_secs`).
    pub lockout_secs: i64,
    /// How long a reserved check counts as under way: a reservation left behind by an instance
    /// that died mid-check is forgotten after this.
    pub reservation_secs: i64,
}

/// Answer of `Store::reserve_password_check` (taxgate-store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckReservation {
    /// This check may run; settle it with `Store::settle_password_check` (taxgate-store).
    Admitted,
    /// Locked (until `locked_until`), or as many checks as failures are left are already under
    /// way (`locked_until` is `None`): the password is not looked at.
    Refused {
        /// The lock's end, if a lock refused.
        locked_until: Option<Timestamp>,
    },
}

/// How a reserved password check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    /// Wrong password: counts as a failure (and may lock).
    Failed,
    /// Right password: the failures are cleared (unless a lock came meanwhile).
    Succeeded,
    /// The check did not run (another limit refused the request): the reservation is released.
    Abandoned,
}

/// The SMS limits of `[login]` for one send, with the windows they count in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmsLimits {
    /// Minimum seconds between two codes to one number (`sms_resend_secs`).
    pub resend_secs: i64,
    /// Codes per number per local day (`sms_daily_limit`).
    pub number_daily: i64,
    /// Codes per person per local day (`sms_per_person_daily`).
    pub person_daily: i64,
    /// Codes per client address per hour (`sms_per_address_hourly`).
    pub address_hourly: i64,
    /// Codes per minute, all numbers together (`sms_global_per_minute`).
    pub global_per_minute: i64,
    /// Start of the local day (Beijing midnight) that `now` falls in.
    pub day_start: Timestamp,
}

/// One code about to be sent, for `Store::reserve_sms` (taxgate-store).
#[derive(Debug, Clone, Copy)]
pub struct SmsRequest<'a> {
    /// The number the code goes to.
    pub phone: &'a Phone,
    /// What the code is for.
    pub purpose: ChallengePurpose,
    /// The person the code is for (none for the legacy enterprise login).
    pub person: Option<&'a IdNumber>,
    /// The client address, normalised as the rate limits read it.
    pub address: Option<&'a str>,
    /// The time of the send.
    pub now: Timestamp,
    /// The limits to hold it to.
    pub limits: SmsLimits,
}

/// Which SMS limit refused a send; the names are the `limit` label of
/// `taxgate_sms_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SmsLimit {
    /// [`SmsLimits::resend_secs`].
    ResendInterval,
    /// [`SmsLimits::number_daily`].
    NumberDaily,
    /// [`SmsLimits::person_daily`].
    PersonDaily,
    /// [`SmsLimits::address_hourly`].
    AddressHourly,
    /// [`SmsLimits::global_per_minute`].
    GlobalPerMinute,
}

impl SmsLimit {
    /// Every limit (the label values of the metric).
    pub const ALL: [SmsLimit; 5] = [
        SmsLimit::ResendInterval,
        SmsLimit::NumberDaily,
        SmsLimit::PersonDaily,
        SmsLimit::AddressHourly,
        SmsLimit::GlobalPerMinute,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            SmsLimit::ResendInterval => "resend_interval",
            SmsLimit::NumberDaily => "number_daily",
            SmsLimit::PersonDaily => "person_daily",
            SmsLimit::AddressHourly => "address_hourly",
            SmsLimit::GlobalPerMinute => "global_per_minute",
        }
    }
}

/// Answer of `Store::reserve_sms` (taxgate-store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsReservation {
    /// The send is recorded in the SMS log; send the code.
    Granted,
    /// Nothing was recorded; the first limit that refused and when asking again may succeed.
    Refused {
        /// The limit that refused.
        limit: SmsLimit,
        /// Seconds until a send may succeed.
        retry_after_secs: i64,
    },
}

/// The device a session logged in from (CONTRACT section 11), recorded at login. Never the full
/// client address: its network only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionDevice {
    /// The `User-Agent` as the client sent it, truncated.
    pub user_agent: String,
    /// Its family (browser and platform, e.g. `Chrome/Windows`): with the network, what counts
    /// as one device for the new-device notice.
    pub ua_family: String,
    /// The client's network: `203.0.113.*` (IPv4 /24) or `2001:db8:1:2::*` (IPv6 /64).
    pub client_net: String,
}

/// A live session as the session lists show it (安全中心): the record, its device, and the name
/// of its person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionListing {
    /// The session.
    pub session: crate::model::Session,
    /// The device it logged in from.
    pub device: SessionDevice,
    /// The name of the session's person (`None` for a legacy enterprise session).
    pub person_name: Option<String>,
}
