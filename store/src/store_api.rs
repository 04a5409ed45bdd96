//! The one storage trait. Methods are domain verbs; each backend owns its SQL.
//!
//! Methods that narrow access publish an [`Invalidation`] (after commit, to this instance's
//! subscribers; on PostgreSQL also through `pg_notify` in the same transaction, to every other
//! instance).

use std::future::Future;

use tokio::sync::broadcast;

use crate::error::StoreError;
use crate::ids::{IdNumber, Phone, TaxpayerId};
use crate::model::{
    AgencyAgreement, Binding, Enterprise, Person, Role, Secret, Session, SessionSlice, Timestamp,
};
use crate::records::{
    AuditEvent, AuditPurge, AuditSlice, BindingUpdate, Challenge, ChallengePurpose, CheckOutcome,
    CheckReservation, ConfirmOutcome, FailureState, GuardKey, Invalidation, LockoutRule,
    NewBinding, PhoneAudit, PolicyUse, RecordedDecision, Side, SmsRequest, SmsReservation,
    SmsStats,
};
use crate::records::{SessionDevice, SessionListing};
use crate::seed::{ImportSummary, ValidSeed};

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// The identity a session acts as (set at login and by `/account/switch`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionIdentity {
    /// The enterprise acted for.
    pub enterprise: Option<TaxpayerId>,
    /// The agency (agent entry).
    pub agency: Option<TaxpayerId>,
    /// The role taken up.
    pub role: Option<Role>,
    /// The binding in use (enterprise entry).
    pub binding_id: Option<String>,
    /// The agreement in use (agent entry acting for a client).
    pub agreement_id: Option<String>,
}

/// Storage for everything one gateway instance shares with the others.
pub trait Store: Send + Sync + Clone + 'static {
    /// Apply the embedded migrations of this backend (idempotent).
    fn migrate(&self) -> impl Future<Output = StoreResult<()>> + Send;

    /// One trivial round trip; `Unavailable` when the database cannot be reached (`/readyz`).
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;

    /// Invalidations published by this instance and (PostgreSQL) by every other instance.
    /// A lagging receiver should treat `RecvError::Lagged` as [`Invalidation::All`].
    fn subscribe_invalidations(&self) -> broadcast::Receiver<Invalidation>;

    /// Run `hook` for every invalidation, synchronously, before the write that caused it
    /// returns (and for other instances' invalidations as they arrive). This is how caches
    /// keep "applies on the very next request".
    fn on_invalidation(&self, hook: crate::bus::InvalidationHook);

    // ---- sessions -------------------------------------------------------------------------

    /// Store a new session. `Conflict` if the id or token hash exists.
    fn create_session(&self, session: &Session) -> impl Future<Output = StoreResult<()>> + Send;

    /// The session with this token hash and everything a decision needs (person, enterprise,
    /// agency, binding, agreement with staff), in one indexed query. Revoked and expired sessions
    /// are returned as they are: the caller compares `revoked_at` / `expires_at` with now.
    fn session_slice(
        &self,
        token_hash: &str,
    ) -> impl Future<Output = StoreResult<Option<SessionSlice>>> + Send;

    /// [`Store::session_slice`] by the session's public id (not a credential): for a question
    /// about a session named in a signed assertion (AuthZEN), read afresh.
    fn session_slice_by_id(
        &self,
        id: &str,
    ) -> impl Future<Output = StoreResult<Option<SessionSlice>>> + Send;

    /// Record activity (idle timeout). Does nothing for an unknown or revoked session.
    fn touch_session(
        &self,
        id: &str,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Record the activity of many sessions in one write transaction: `(session id, time)`
    /// each, as [`Store::touch_session`] would one by one.
    fn touch_sessions(
        &self,
        touches: &[(String, Timestamp)],
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Revoke one session (logout). Returns false if it was unknown or already revoked.
    /// Publishes `Session{id}`.
    fn revoke_session(
        &self,
        id: &str,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Revoke every live session of a person but `except` (the session that asked, after a
    /// password change); returns how many. Publishes `Session{id}` for each
    /// and `Person{id_number}`.
    fn revoke_person_sessions(
        &self,
        person: &IdNumber,
        except: Option<&str>,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Rewrite the identity of a live session (identity switch). `NotFound` for an unknown or
    /// revoked session. Publishes `Session{id}`.
    fn set_session_identity(
        &self,
        id: &str,
        identity: &SessionIdentity,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Store a new session with the device it logged in from (CONTRACT section 11). `Conflict`
    /// if the id or token hash exists. [`Store::create_session`] is this with no device.
    fn create_session_on(
        &self,
        session: &Session,
        device: &SessionDevice,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// A second factor of a live session completed at `at` (a step-up): `factor_at` (and
    /// `face_at` when `face`) become `at`. False for an unknown or revoked session. Publishes
    /// `Session{id}`.
    fn set_session_factor(
        &self,
        id: &str,
        at: Timestamp,
        face: bool,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// The person's sessions that are neither revoked nor past their absolute expiry (the idle
    /// timeout is the caller's), newest first, with their devices.
    fn person_sessions(
        &self,
        person: &IdNumber,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Vec<SessionListing>>> + Send;

    /// The same for the sessions acting for `enterprise`, with their persons' names.
    fn enterprise_sessions(
        &self,
        enterprise: &TaxpayerId,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Vec<SessionListing>>> + Send;

    /// A login of `person` from this device (user-agent family and client network) at `now`:
    /// remembered, and whether it was already seen within `window_secs` before.
    fn note_login_device(
        &self,
        person: &IdNumber,
        ua_family: &str,
        client_net: &str,
        now: Timestamp,
        window_secs: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Store a step-up challenge that only session `session_id` may complete.
    fn create_step_up_challenge(
        &self,
        challenge: &Challenge,
        session_id: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The session a step-up challenge belongs to (`None`: another purpose, or unknown).
    fn challenge_session(
        &self,
        id_hash: &str,
    ) -> impl Future<Output = StoreResult<Option<String>>> + Send;

    /// Delete sessions whose absolute expiry has passed; returns how many.
    fn delete_expired_sessions(
        &self,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<u64>> + Send;

    // ---- persons --------------------------------------------------------------------------

    /// The person an account name designates: an ID number, a mobile number or a username
    /// (the import guarantees a username never parses as either of the others).
    fn person_by_account(
        &self,
        account: &str,
    ) -> impl Future<Output = StoreResult<Option<Person>>> + Send;

    /// The person with this ID number, if any.
    fn person(&self, id: &IdNumber) -> impl Future<Output = StoreResult<Option<Person>>> + Send;

    /// Atomically count one more consecutive password failure; the count reaching
    /// `max_failures` locks the account until `now + lockout_secs`, and the lock voids the
    /// person's open challenges in the same transaction. A failure after an expired lock starts
    /// counting again from 1. `NotFound` for an unknown person. (A check that was reserved with
    /// [`Store::reserve_password_check`] is settled with [`Store::settle_password_check`].)
    fn record_person_failure(
        &self,
        id: &IdNumber,
        now: Timestamp,
        max_failures: i32,
        lockout_secs: i64,
    ) -> impl Future<Output = StoreResult<FailureState>> + Send;

    /// Clear the failure count and any lock (after a successful first factor).
    fn reset_person_failures(&self, id: &IdNumber) -> impl Future<Output = StoreResult<()>> + Send;

    /// Store a new password hash and the must-change flag; in the same transaction every open
    /// challenge of the person dies (it was begun with the old password). Publishes
    /// `Person{id_number}`.
    fn set_password(
        &self,
        id: &IdNumber,
        phc: &Secret,
        must_change: bool,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// 一号一人: in one transaction, clear `phone` from whoever holds it and give it to `id`.
    /// Returns the previous holder (if another person). Concurrent transfers of one number end
    /// with exactly one holder. Publishes `Person` for the previous holder and for `id`. The
    /// `audit` events are written in the same transaction.
    fn transfer_phone(
        &self,
        id: &IdNumber,
        phone: &Phone,
        now: Timestamp,
        audit: &PhoneAudit,
    ) -> impl Future<Output = StoreResult<Option<IdNumber>>> + Send;

    // ---- enterprises ----------------------------------------------------------------------

    /// The enterprise with this taxpayer id, if any.
    fn enterprise(
        &self,
        id: &TaxpayerId,
    ) -> impl Future<Output = StoreResult<Option<Enterprise>>> + Send;

    /// Like [`Store::record_person_failure`], for the legacy enterprise password.
    fn record_enterprise_failure(
        &self,
        id: &TaxpayerId,
        now: Timestamp,
        max_failures: i32,
        lockout_secs: i64,
    ) -> impl Future<Output = StoreResult<FailureState>> + Send;

    /// Like [`Store::reset_person_failures`], for the legacy enterprise password.
    fn reset_enterprise_failures(
        &self,
        id: &TaxpayerId,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    // ---- bindings -------------------------------------------------------------------------

    /// The binding with this id, revoked or not, if any.
    fn binding(&self, id: &str) -> impl Future<Output = StoreResult<Option<Binding>>> + Send;

    /// Every binding of a person, revoked ones included, newest first.
    fn bindings_of_person(
        &self,
        person: &IdNumber,
    ) -> impl Future<Output = StoreResult<Vec<Binding>>> + Send;

    /// Every binding of an enterprise, revoked ones included, newest first.
    fn bindings_of_enterprise(
        &self,
        enterprise: &TaxpayerId,
    ) -> impl Future<Output = StoreResult<Vec<Binding>>> + Send;

    /// The bindings between one person and one enterprise (any role), revoked ones included.
    fn bindings_between(
        &self,
        person: &IdNumber,
        enterprise: &TaxpayerId,
    ) -> impl Future<Output = StoreResult<Vec<Binding>>> + Send;

    /// Create a binding. `Conflict` when a non-revoked binding with the same person, enterprise
    /// and role exists; `NotFound` when the person or the enterprise does not exist.
    fn create_binding(&self, new: NewBinding) -> impl Future<Output = StoreResult<Binding>> + Send;

    /// Record one side's confirmation in one transaction. `NotFound` for an unknown or revoked
    /// binding, and for a pending grant whose granter's binding (`NewBinding::granted_by`) is no
    /// longer live (revoked or outside its validity): that grant is revoked in the same
    /// transaction. Publishes `Binding{id}`.
    fn confirm_binding(
        &self,
        id: &str,
        side: Side,
        by: &str,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<ConfirmOutcome>> + Send;

    /// Revoke (withdraw or unbind) a binding; returns it as revoked. The pending grants its
    /// holder made (not yet confirmed by their person) are revoked in the same transaction,
    /// keeping `updated_by`. `NotFound` for an unknown or already revoked binding. Publishes
    /// `Binding{id}` for each.
    fn revoke_binding(
        &self,
        id: &str,
        by: &str,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Binding>> + Send;

    /// Apply a personnel change (permissions, validity) to a live binding in one transaction,
    /// only while the binding is as `update.expected` says (else `Conflict`, and nothing
    /// changes); a widening clears the person's confirmation. `NotFound` for an unknown or
    /// revoked binding. Returns the binding as it is now. Publishes `Binding{id}`.
    fn update_binding(
        &self,
        update: &BindingUpdate,
    ) -> impl Future<Output = StoreResult<Binding>> + Send;

    // ---- agency agreements ----------------------------------------------------------------

    /// The agency agreement with this id, revoked or not, if any.
    fn agreement(
        &self,
        id: &str,
    ) -> impl Future<Output = StoreResult<Option<AgencyAgreement>>> + Send;

    /// The non-revoked agreements of `agency` naming `person` as staff: the agent's clients.
    fn agreements_of_staff(
        &self,
        agency: &TaxpayerId,
        person: &IdNumber,
    ) -> impl Future<Output = StoreResult<Vec<AgencyAgreement>>> + Send;

    /// The non-revoked agreement between an agency and a client, if any.
    fn agreement_between(
        &self,
        agency: &TaxpayerId,
        client: &TaxpayerId,
    ) -> impl Future<Output = StoreResult<Option<AgencyAgreement>>> + Send;

    /// The agencies whose non-revoked agreement with `client` names `person` as staff, sorted
    /// (separation of duties: such a person holds no role in the client).
    fn staff_agencies(
        &self,
        person: &IdNumber,
        client: &TaxpayerId,
    ) -> impl Future<Output = StoreResult<Vec<TaxpayerId>>> + Send;

    /// Revoke an agreement. `NotFound` if unknown or already revoked. Publishes `Agreement{id}`.
    fn revoke_agreement(
        &self,
        id: &str,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    // ---- login challenges -----------------------------------------------------------------

    /// Store a new challenge (after a passed first factor).
    fn create_challenge(
        &self,
        challenge: &Challenge,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The challenge with this token hash, used or expired ones included, if any.
    fn challenge(
        &self,
        id_hash: &str,
    ) -> impl Future<Output = StoreResult<Option<Challenge>>> + Send;

    /// Atomically count one more wrong code; returns the new count. `NotFound` if unknown.
    fn record_code_attempt(&self, id_hash: &str) -> impl Future<Output = StoreResult<i32>> + Send;

    /// Reserve one code comparison on a live challenge in one conditional UPDATE: the attempt
    /// counts before the code is looked at. Returns the attempts including this one, or `None`
    /// when `max_attempts` were already made or the challenge is unknown, used or expired.
    fn reserve_code_attempt(
        &self,
        id_hash: &str,
        now: Timestamp,
        max_attempts: i32,
    ) -> impl Future<Output = StoreResult<Option<i32>>> + Send;

    /// Store the hash of a freshly sent code and its expiry. Earlier wrong attempts still count
    /// (the limit is per challenge, not per code). `NotFound` if unknown.
    fn set_challenge_code(
        &self,
        id_hash: &str,
        code_hash: &Secret,
        code_expires_at: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Attach a face-verification nonce (status `pending`) valid until `expires_at` (a new
    /// nonce replaces an earlier one). `NotFound` if unknown, or once a face result of this
    /// challenge failed (a failed face ends the challenge).
    fn set_face_nonce(
        &self,
        id_hash: &str,
        nonce: &str,
        expires_at: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The challenge holding this face nonce, if any.
    fn challenge_by_nonce(
        &self,
        nonce: &str,
    ) -> impl Future<Output = StoreResult<Option<Challenge>>> + Send;

    /// Record the face result for a pending nonce, once: returns false when the nonce is unknown,
    /// already used, or its challenge consumed (404 `unknown_nonce`).
    fn set_face_result(
        &self,
        nonce: &str,
        passed: bool,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Record that the challenge's SMS code was right without using the challenge up (a
    /// password reset's factor, CONTRACT section 13); false for a used or expired one.
    fn mark_challenge_verified(
        &self,
        id_hash: &str,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// When [`Store::mark_challenge_verified`] recorded the challenge's code as right; `None`:
    /// never (or no such challenge).
    fn challenge_verified_at(
        &self,
        id_hash: &str,
    ) -> impl Future<Output = StoreResult<Option<Timestamp>>> + Send;

    /// Single use: true for exactly one caller, while the challenge is unexpired and unconsumed
    /// (a conditional UPDATE, so instances racing cannot both succeed).
    fn consume_challenge(
        &self,
        id_hash: &str,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Delete challenges that expired before `before`; returns how many.
    fn delete_expired_challenges(
        &self,
        before: Timestamp,
    ) -> impl Future<Output = StoreResult<u64>> + Send;

    // ---- SMS log --------------------------------------------------------------------------

    /// Forget codes sent before `before` (the limits only look at the last day), and budget
    /// windows and unknown-account guards last used before it; returns how many SMS log rows
    /// went.
    fn prune_sms_log(&self, before: Timestamp) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Log one code sent to `phone`, without checking any limit ([`Store::reserve_sms`]
    /// checks and logs in one step).
    fn record_sms_sent(
        &self,
        phone: &Phone,
        purpose: ChallengePurpose,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Codes sent to `phone` at or after `since`, and the time of the last one ever.
    fn sms_stats(
        &self,
        phone: &Phone,
        since: Timestamp,
    ) -> impl Future<Output = StoreResult<SmsStats>> + Send;

    /// Reserve one SMS send under every limit of `request` (per number: resend interval and
    /// daily count; per person per day; per address per hour; global per minute) in one
    /// transaction that serialises sends to the number, and record it in the SMS log. Nothing
    /// is counted when a limit refuses.
    fn reserve_sms(
        &self,
        request: &SmsRequest<'_>,
    ) -> impl Future<Output = StoreResult<SmsReservation>> + Send;

    // ---- limits ---------------------------------------------------------------------------

    /// Reserve one password check for `key` before it runs, in one conditional UPDATE: refused
    /// while locked, or while the failures so far plus the checks under way reach
    /// `rule.max_failures`. So however many requests arrive at once, on however many instances,
    /// no more checks run than failures are allowed. An unknown [`GuardKey::Account`] is
    /// created; `NotFound` for an unknown person or enterprise.
    fn reserve_password_check(
        &self,
        key: &GuardKey,
        now: Timestamp,
        rule: &LockoutRule,
    ) -> impl Future<Output = StoreResult<CheckReservation>> + Send;

    /// Settle a reserved check: release the reservation and count the outcome. A failure that
    /// locks voids the person's (or the legacy enterprise's) open challenges in the same
    /// transaction. Returns the failures and the lock after this outcome.
    fn settle_password_check(
        &self,
        key: &GuardKey,
        outcome: CheckOutcome,
        now: Timestamp,
        rule: &LockoutRule,
    ) -> impl Future<Output = StoreResult<FailureState>> + Send;

    /// Take one unit of a fixed-window budget in one conditional upsert: the window of `bucket`
    /// starting at `window_start` holds at most `limit`. Returns the units taken in the window
    /// including this one, or `None` (nothing taken) when it is full.
    fn take_budget(
        &self,
        bucket: &str,
        window_start: Timestamp,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Option<i64>>> + Send;

    /// Give back a unit taken with [`Store::take_budget`] in the same window.
    fn give_back_budget(
        &self,
        bucket: &str,
        window_start: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    // ---- audit ----------------------------------------------------------------------------

    /// Append a batch in one transaction (multi-row inserts). All or nothing.
    fn append_audit(&self, events: &[AuditEvent]) -> impl Future<Output = StoreResult<()>> + Send;

    /// Append events recovered from a crashed instance's audit journal: like
    /// [`Store::append_audit`], except that ids the store already has are skipped (the
    /// journal may hold events written before the crash).
    fn append_recovered_audit(
        &self,
        events: &[AuditEvent],
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Number of stored audit events.
    fn count_audit(&self) -> impl Future<Output = StoreResult<i64>> + Send;

    /// Append a batch like [`Store::append_audit`] and, in the same transaction, entity slices
    /// with the time they were seen. A new hash is stored with that time as its first and last
    /// use; a stored one keeps its content and first use, and its last use moves up to the
    /// time given, so writers (on any instance) need not coordinate. Retention relies on the
    /// last use: a writer reports a slice again whenever one of its events is at least
    /// [`crate::AUDIT_SLICE_REFRESH_SECS`] (of decision time) later than the time it last
    /// reported for it (see [`Store::purge_audit`]).
    fn append_audit_with_slices(
        &self,
        slices: &[(AuditSlice, Timestamp)],
        events: &[AuditEvent],
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Downstream decisions (the events that carry a `request_id`) at or after `since`, newest
    /// first, at most `limit` of them.
    fn recorded_decisions(
        &self,
        since: Timestamp,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<RecordedDecision>>> + Send;

    /// The stored slices among `hashes`, as (hash, JSON); unknown hashes are left out.
    fn audit_slices(
        &self,
        hashes: &[String],
    ) -> impl Future<Output = StoreResult<Vec<(String, String)>>> + Send;

    /// Downstream decisions at or after `since`, counted per combination of determining
    /// policies and outcome.
    fn policy_use(
        &self,
        since: Timestamp,
    ) -> impl Future<Output = StoreResult<Vec<PolicyUse>>> + Send;

    /// Retention: delete audit events older than `before`, and the slices last used more than
    /// [`crate::AUDIT_SLICE_SLACK_SECS`] before `before` (so no remaining event can refer to
    /// them, given writers refresh a slice's last use as documented above).
    fn purge_audit(
        &self,
        before: Timestamp,
    ) -> impl Future<Output = StoreResult<AuditPurge>> + Send;

    /// Audit storage upkeep, run by each housekeeping pass (and at [`Store::migrate`]):
    /// PostgreSQL makes the day partitions of the coming days (see the migration
    /// `0010_audit_partitions.sql`); SQLite has nothing to do.
    fn audit_upkeep(&self, now: Timestamp) -> impl Future<Output = StoreResult<()>> + Send;

    // ---- import ---------------------------------------------------------------------------

    /// Upsert a validated seed in one transaction (see [`crate::seed`]). Publishes `All`.
    /// Use [`crate::seed::import_seed`], which validates first.
    fn apply_seed(
        &self,
        seed: &ValidSeed,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<ImportSummary>> + Send;
}
