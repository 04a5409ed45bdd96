//! The store chosen by URL at start: `sqlite://…` / `sqlite::memory:` or
//! `postgres://…` / `postgresql://…`.

use std::future::Future;

use tokio::sync::broadcast;

use crate::error::StoreError;
use crate::ids::{IdNumber, Phone, TaxpayerId};
use crate::model::{
    AgencyAgreement, Binding, Enterprise, Person, Secret, Session, SessionSlice, Timestamp,
};
use crate::postgres::PgStore;
use crate::records::{
    AuditEvent, AuditPurge, AuditSlice, BindingUpdate, Challenge, ChallengePurpose, CheckOutcome,
    CheckReservation, ConfirmOutcome, FailureState, GuardKey, Invalidation, LockoutRule,
    NewBinding, PhoneAudit, PolicyUse, RecordedDecision, Side, SmsRequest, SmsReservation,
    SmsStats,
};
use crate::records::{SessionDevice, SessionListing};
use crate::seed::{ImportSummary, ValidSeed};
use crate::sqlite::SqliteStore;
use crate::store_api::{SessionIdentity, Store, StoreResult};

/// Either backend, behind the same [`Store`] trait.
#[derive(Clone, Debug)]
pub enum AnyStore {
    /// A `sqlite:` URL.
    Sqlite(SqliteStore),
    /// A `postgres://` URL.
    Postgres(PgStore),
}

impl AnyStore {
    /// Connect by URL scheme. Does not migrate: call [`Store::migrate`].
    pub async fn connect(url: &str) -> Result<AnyStore, StoreError> {
        let scheme = url.split(':').next().unwrap_or("");
        match scheme {
            "sqlite" => Ok(AnyStore::Sqlite(SqliteStore::connect(url).await?)),
            "postgres" | "postgresql" => Ok(AnyStore::Postgres(PgStore::connect(url).await?)),
            _ => Err(StoreError::Invalid {
                what: "store url".into(),
                reason: format!(
                    "unknown scheme `{scheme}`: use `sqlite://path`, `sqlite::memory:` or \
                     `postgres://user:pass@host/db`"
                ),
            }),
        }
    }

    /// `sqlite` or `postgres`, for logs and metrics.
    pub fn backend(&self) -> &'static str {
        match self {
            AnyStore::Sqlite(_) => "sqlite",
            AnyStore::Postgres(_) => "postgres",
        }
    }
}

macro_rules! delegate {
    ($( fn $name:ident(&self $(, $arg:ident : $ty:ty)*) -> $ret:ty; )*) => {
        $(
            fn $name(&self $(, $arg: $ty)*) -> impl Future<Output = StoreResult<$ret>> + Send {
                async move {
                    match self {
                        AnyStore::Sqlite(s) => s.$name($($arg),*).await,
                        AnyStore::Postgres(s) => s.$name($($arg),*).await,
                    }
                }
            }
        )*
    };
}

impl Store for AnyStore {
    fn subscribe_invalidations(&self) -> broadcast::Receiver<Invalidation> {
        match self {
            AnyStore::Sqlite(s) => s.subscribe_invalidations(),
            AnyStore::Postgres(s) => s.subscribe_invalidations(),
        }
    }

    fn on_invalidation(&self, hook: crate::bus::InvalidationHook) {
        match self {
            AnyStore::Sqlite(s) => s.on_invalidation(hook),
            AnyStore::Postgres(s) => s.on_invalidation(hook),
        }
    }

    delegate! {
        fn migrate(&self) -> ();
        fn ping(&self) -> ();
        fn create_session(&self, session: &Session) -> ();
        fn session_slice(&self, token_hash: &str) -> Option<SessionSlice>;
        fn session_slice_by_id(&self, id: &str) -> Option<SessionSlice>;
        fn touch_session(&self, id: &str, now: Timestamp) -> ();
        fn touch_sessions(&self, touches: &[(String, Timestamp)]) -> ();
        fn revoke_session(&self, id: &str, now: Timestamp) -> bool;
        fn revoke_person_sessions(&self, person: &IdNumber, except: Option<&str>, now: Timestamp) -> u64;
        fn set_session_identity(&self, id: &str, identity: &SessionIdentity) -> ();
        fn delete_expired_sessions(&self, now: Timestamp) -> u64;
        fn create_session_on(&self, session: &Session, device: &SessionDevice) -> ();
        fn set_session_factor(&self, id: &str, at: Timestamp, face: bool) -> bool;
        fn person_sessions(&self, person: &IdNumber, now: Timestamp) -> Vec<SessionListing>;
        fn enterprise_sessions(&self, enterprise: &TaxpayerId, now: Timestamp) -> Vec<SessionListing>;
        fn note_login_device(&self, person: &IdNumber, ua_family: &str, client_net: &str, now: Timestamp, window_secs: i64) -> bool;
        fn create_step_up_challenge(&self, challenge: &Challenge, session_id: &str) -> ();
        fn challenge_session(&self, id_hash: &str) -> Option<String>;
        fn person_by_account(&self, account: &str) -> Option<Person>;
        fn person(&self, id: &IdNumber) -> Option<Person>;
        fn record_person_failure(&self, id: &IdNumber, now: Timestamp, max_failures: i32, lockout_secs: i64) -> FailureState;
        fn reset_person_failures(&self, id: &IdNumber) -> ();
        fn set_password(&self, id: &IdNumber, phc: &Secret, must_change: bool, now: Timestamp) -> ();
        fn transfer_phone(&self, id: &IdNumber, phone: &Phone, now: Timestamp, audit: &PhoneAudit) -> Option<IdNumber>;
        fn enterprise(&self, id: &TaxpayerId) -> Option<Enterprise>;
        fn record_enterprise_failure(&self, id: &TaxpayerId, now: Timestamp, max_failures: i32, lockout_secs: i64) -> FailureState;
        fn reset_enterprise_failures(&self, id: &TaxpayerId) -> ();
        fn binding(&self, id: &str) -> Option<Binding>;
        fn bindings_of_person(&self, person: &IdNumber) -> Vec<Binding>;
        fn bindings_of_enterprise(&self, enterprise: &TaxpayerId) -> Vec<Binding>;
        fn bindings_between(&self, person: &IdNumber, enterprise: &TaxpayerId) -> Vec<Binding>;
        fn create_binding(&self, new: NewBinding) -> Binding;
        fn confirm_binding(&self, id: &str, side: Side, by: &str, now: Timestamp) -> ConfirmOutcome;
        fn revoke_binding(&self, id: &str, by: &str, now: Timestamp) -> Binding;
        fn update_binding(&self, update: &BindingUpdate) -> Binding;
        fn agreement(&self, id: &str) -> Option<AgencyAgreement>;
        fn agreements_of_staff(&self, agency: &TaxpayerId, person: &IdNumber) -> Vec<AgencyAgreement>;
        fn agreement_between(&self, agency: &TaxpayerId, client: &TaxpayerId) -> Option<AgencyAgreement>;
        fn staff_agencies(&self, person: &IdNumber, client: &TaxpayerId) -> Vec<TaxpayerId>;
        fn revoke_agreement(&self, id: &str, now: Timestamp) -> ();
        fn create_challenge(&self, challenge: &Challenge) -> ();
        fn challenge(&self, id_hash: &str) -> Option<Challenge>;
        fn record_code_attempt(&self, id_hash: &str) -> i32;
        fn reserve_code_attempt(&self, id_hash: &str, now: Timestamp, max_attempts: i32) -> Option<i32>;
        fn reserve_sms(&self, request: &SmsRequest<'_>) -> SmsReservation;
        fn reserve_password_check(&self, key: &GuardKey, now: Timestamp, rule: &LockoutRule) -> CheckReservation;
        fn settle_password_check(&self, key: &GuardKey, outcome: CheckOutcome, now: Timestamp, rule: &LockoutRule) -> FailureState;
        fn take_budget(&self, bucket: &str, window_start: Timestamp, limit: i64) -> Option<i64>;
        fn give_back_budget(&self, bucket: &str, window_start: Timestamp) -> ();
        fn set_challenge_code(&self, id_hash: &str, code_hash: &Secret, code_expires_at: Timestamp) -> ();
        fn set_face_nonce(&self, id_hash: &str, nonce: &str, expires_at: Timestamp) -> ();
        fn challenge_by_nonce(&self, nonce: &str) -> Option<Challenge>;
        fn set_face_result(&self, nonce: &str, passed: bool) -> bool;
        fn consume_challenge(&self, id_hash: &str, now: Timestamp) -> bool;
        fn mark_challenge_verified(&self, id_hash: &str, now: Timestamp) -> bool;
        fn challenge_verified_at(&self, id_hash: &str) -> Option<Timestamp>;
        fn delete_expired_challenges(&self, before: Timestamp) -> u64;
        fn prune_sms_log(&self, before: Timestamp) -> u64;
        fn record_sms_sent(&self, phone: &Phone, purpose: ChallengePurpose, now: Timestamp) -> ();
        fn sms_stats(&self, phone: &Phone, since: Timestamp) -> SmsStats;
        fn append_audit(&self, events: &[AuditEvent]) -> ();
        fn append_recovered_audit(&self, events: &[AuditEvent]) -> ();
        fn count_audit(&self) -> i64;
        fn append_audit_with_slices(&self, slices: &[(AuditSlice, Timestamp)], events: &[AuditEvent]) -> ();
        fn recorded_decisions(&self, since: Timestamp, limit: i64) -> Vec<RecordedDecision>;
        fn audit_slices(&self, hashes: &[String]) -> Vec<(String, String)>;
        fn policy_use(&self, since: Timestamp) -> Vec<PolicyUse>;
        fn purge_audit(&self, before: Timestamp) -> AuditPurge;
        fn audit_upkeep(&self, now: Timestamp) -> ();
        fn apply_seed(&self, seed: &ValidSeed, now: Timestamp) -> ImportSummary;
    }
}
