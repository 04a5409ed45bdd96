//! The `Store` implementation both SQL backends share, split by concern: [`sessions`],
//! [`accounts`] (persons, enterprises, lockout), [`grants`] (bindings, agency agreements),
//! [`challenges`] (challenges, SMS limits), [`audit`], [`import`]. Each concern is plain
//! generic code over a [`SqlStore`]; what differs between SQLite and PostgreSQL is the
//! [`Dialect`] of its database (`sqlite.rs`, `postgres.rs`) and the store's own write
//! transaction, locking and notification.

mod accounts;
mod audit;
mod challenges;
pub(crate) mod dialect;
mod grants;
mod import;
mod rows;
mod security;
mod sessions;

use std::future::Future;

use tokio::sync::broadcast;

use crate::bus::InvalidationBus;
use crate::ids::{IdNumber, Phone, TaxpayerId};
use crate::model::{
    AgencyAgreement, Binding, Enterprise, Person, Secret, Session, SessionSlice, Timestamp,
};
use crate::records::{
    AuditEvent, AuditPurge, AuditSlice, BindingUpdate, Challenge, ChallengePurpose, CheckOutcome,
    CheckReservation, ConfirmOutcome, FailureState, GuardKey, Invalidation, LockoutRule,
    NewBinding, PhoneAudit, PolicyUse, RecordedDecision, Side, SmsRequest, SmsReservation,
    SmsStats,
};
use crate::records::{SessionDevice, SessionListing};
use crate::seed::{ImportSummary, ValidSeed};
use crate::store_api::{SessionIdentity, Store, StoreResult};
pub(crate) use dialect::{Dialect, Statements, Tx};

/// A store on a SQL database: what the shared code needs of [`crate::SqliteStore`] and
/// [`crate::PgStore`] beyond their database's [`Dialect`].
pub(crate) trait SqlStore: Clone + Send + Sync + 'static {
    type Db: Dialect;

    fn pool(&self) -> &sqlx::Pool<Self::Db>;
    fn bus(&self) -> &InvalidationBus;

    /// A transaction for a write (SQLite takes the write lock at once).
    fn begin_write(&self) -> impl Future<Output = StoreResult<Tx<Self::Db>>> + Send;

    /// Serialise the writers of `key` until `tx` ends.
    fn lock_key(
        &self,
        tx: &mut Tx<Self::Db>,
        key: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Tell the other instances, committed with `tx`.
    fn notify(
        &self,
        tx: &mut Tx<Self::Db>,
        inv: &[Invalidation],
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Any connection of the pool, for statements outside a transaction.
    fn db(&self) -> <Self::Db as Dialect>::Shared<'_> {
        Self::Db::shared(self.pool())
    }

    /// Tell this instance's subscribers, after the commit.
    fn publish(&self, inv: Vec<Invalidation>) {
        for i in inv {
            // No receiver is not an error: nobody caches yet.
            self.bus().send(i);
        }
    }

    /// Commit `tx` with `inv`: the other instances are told in the same commit, this
    /// instance's subscribers once it has succeeded.
    fn commit_notifying(
        &self,
        mut tx: Tx<Self::Db>,
        inv: Vec<Invalidation>,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        async move {
            self.notify(&mut tx, &inv).await?;
            tx.commit().await?;
            self.publish(inv);
            Ok(())
        }
    }
}

/// Split `items` into chunks of a few fixed sizes (256, 64, 16, 4, 1, largest first), so a
/// multi-row `INSERT` has one of five shapes and each is prepared once per connection and then
/// reused from the statement cache, instead of parsing a new statement for every batch size.
pub(crate) fn fixed_chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = [256, 64, 16, 4, 1]
            .into_iter()
            .find(|&n| items.len() >= n)?;
        let (chunk, rest) = items.split_at(size);
        items = rest;
        Some(chunk)
    })
}

/// The system clock, in epoch seconds (0 before 1970).
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl<S: SqlStore> Store for S {
    async fn migrate(&self) -> StoreResult<()> {
        S::Db::migrate(self.pool()).await?;
        S::Db::prepare_audit_days(self.pool(), unix_now()).await?;
        // Usernames that differ only in case log in by their exact spelling only.
        let clashes = accounts::username_clashes(self).await?;
        if clashes > 0 {
            tracing::warn!(
                clashes,
                "usernames differ only in case (SELECT * FROM username_clashes): each logs in \
                 by its exact spelling only until one is renamed"
            );
        }
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(self.db()).await?;
        Ok(())
    }

    fn subscribe_invalidations(&self) -> broadcast::Receiver<Invalidation> {
        self.bus().subscribe()
    }

    fn on_invalidation(&self, hook: crate::bus::InvalidationHook) {
        self.bus().add_hook(hook)
    }

    // ---- sessions ----------------------------------------------------------------------------

    async fn create_session(&self, session: &Session) -> StoreResult<()> {
        sessions::create(self, session, &SessionDevice::default()).await
    }

    async fn create_session_on(
        &self,
        session: &Session,
        device: &SessionDevice,
    ) -> StoreResult<()> {
        sessions::create(self, session, device).await
    }

    async fn set_session_factor(&self, id: &str, at: Timestamp, face: bool) -> StoreResult<bool> {
        security::set_factor(self, id, at, face).await
    }

    async fn person_sessions(
        &self,
        person: &IdNumber,
        now: Timestamp,
    ) -> StoreResult<Vec<SessionListing>> {
        security::of_person(self, person, now).await
    }

    async fn enterprise_sessions(
        &self,
        enterprise: &TaxpayerId,
        now: Timestamp,
    ) -> StoreResult<Vec<SessionListing>> {
        security::of_enterprise(self, enterprise, now).await
    }

    async fn note_login_device(
        &self,
        person: &IdNumber,
        ua_family: &str,
        client_net: &str,
        now: Timestamp,
        window_secs: i64,
    ) -> StoreResult<bool> {
        security::note_device(self, person, ua_family, client_net, now, window_secs).await
    }

    async fn create_step_up_challenge(
        &self,
        challenge: &Challenge,
        session_id: &str,
    ) -> StoreResult<()> {
        security::create_step_up_challenge(self, challenge, session_id).await
    }

    async fn challenge_session(&self, id_hash: &str) -> StoreResult<Option<String>> {
        security::challenge_session(self, id_hash).await
    }

    async fn session_slice(&self, token_hash: &str) -> StoreResult<Option<SessionSlice>> {
        sessions::slice(self, token_hash).await
    }

    async fn session_slice_by_id(&self, id: &str) -> StoreResult<Option<SessionSlice>> {
        sessions::slice_by_id(self, id).await
    }

    async fn touch_session(&self, id: &str, now: Timestamp) -> StoreResult<()> {
        sessions::touch(self, id, now).await
    }

    async fn touch_sessions(&self, touches: &[(String, Timestamp)]) -> StoreResult<()> {
        sessions::touch_many(self, touches).await
    }

    async fn revoke_session(&self, id: &str, now: Timestamp) -> StoreResult<bool> {
        sessions::revoke(self, id, now).await
    }

    async fn revoke_person_sessions(
        &self,
        person: &IdNumber,
        except: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<u64> {
        sessions::revoke_of_person(self, person, except, now).await
    }

    async fn set_session_identity(&self, id: &str, identity: &SessionIdentity) -> StoreResult<()> {
        sessions::set_identity(self, id, identity).await
    }

    async fn delete_expired_sessions(&self, now: Timestamp) -> StoreResult<u64> {
        sessions::delete_expired(self, now).await
    }

    // ---- persons and enterprises -------------------------------------------------------------

    async fn person_by_account(&self, account: &str) -> StoreResult<Option<Person>> {
        accounts::person_by_account(self, account).await
    }

    async fn person(&self, id: &IdNumber) -> StoreResult<Option<Person>> {
        accounts::person(self, id).await
    }

    async fn record_person_failure(
        &self,
        id: &IdNumber,
        now: Timestamp,
        max_failures: i32,
        lockout_secs: i64,
    ) -> StoreResult<FailureState> {
        let key = GuardKey::Person(id.clone());
        accounts::record_failure(self, key, now, max_failures, lockout_secs).await
    }

    async fn reset_person_failures(&self, id: &IdNumber) -> StoreResult<()> {
        accounts::reset_failures(self, &GuardKey::Person(id.clone())).await
    }

    async fn set_password(
        &self,
        id: &IdNumber,
        phc: &Secret,
        must_change: bool,
        now: Timestamp,
    ) -> StoreResult<()> {
        accounts::set_password(self, id, phc, must_change, now).await
    }

    async fn transfer_phone(
        &self,
        id: &IdNumber,
        phone: &Phone,
        now: Timestamp,
        audit: &PhoneAudit,
    ) -> StoreResult<Option<IdNumber>> {
        // A concurrent transfer of the same number can make the final UPDATE hit the unique index
        // (PostgreSQL, read committed); running again then clears the winner, so the last
        // transfer wins and there is always exactly one holder.
        accounts::retry_conflicts(|| accounts::transfer_phone(self, id, phone, now, audit)).await
    }

    async fn enterprise(&self, id: &TaxpayerId) -> StoreResult<Option<Enterprise>> {
        accounts::enterprise(self, id).await
    }

    async fn record_enterprise_failure(
        &self,
        id: &TaxpayerId,
        now: Timestamp,
        max_failures: i32,
        lockout_secs: i64,
    ) -> StoreResult<FailureState> {
        let key = GuardKey::Enterprise(id.clone());
        accounts::record_failure(self, key, now, max_failures, lockout_secs).await
    }

    async fn reset_enterprise_failures(&self, id: &TaxpayerId) -> StoreResult<()> {
        accounts::reset_failures(self, &GuardKey::Enterprise(id.clone())).await
    }

    async fn reserve_password_check(
        &self,
        key: &GuardKey,
        now: Timestamp,
        rule: &LockoutRule,
    ) -> StoreResult<CheckReservation> {
        accounts::reserve_password_check(self, key, now, rule).await
    }

    async fn settle_password_check(
        &self,
        key: &GuardKey,
        outcome: CheckOutcome,
        now: Timestamp,
        rule: &LockoutRule,
    ) -> StoreResult<FailureState> {
        accounts::settle_password_check(self, key, outcome, now, rule).await
    }

    // ---- bindings and agency agreements ------------------------------------------------------

    async fn binding(&self, id: &str) -> StoreResult<Option<Binding>> {
        grants::binding(self.db(), id).await
    }

    async fn bindings_of_person(&self, person: &IdNumber) -> StoreResult<Vec<Binding>> {
        grants::bindings_where(self, "b.person = $1", &[person.as_str()]).await
    }

    async fn bindings_of_enterprise(&self, enterprise: &TaxpayerId) -> StoreResult<Vec<Binding>> {
        grants::bindings_where(self, "b.enterprise = $1", &[enterprise.as_str()]).await
    }

    async fn bindings_between(
        &self,
        person: &IdNumber,
        enterprise: &TaxpayerId,
    ) -> StoreResult<Vec<Binding>> {
        let keys = [person.as_str(), enterprise.as_str()];
        grants::bindings_where(self, "b.person = $1 AND b.enterprise = $2", &keys).await
    }

    async fn create_binding(&self, new: NewBinding) -> StoreResult<Binding> {
        grants::create_binding(self, new).await
    }

    async fn confirm_binding(
        &self,
        id: &str,
        side: Side,
        by: &str,
        now: Timestamp,
    ) -> StoreResult<ConfirmOutcome> {
        grants::confirm_binding(self, id, side, by, now).await
    }

    async fn revoke_binding(&self, id: &str, by: &str, now: Timestamp) -> StoreResult<Binding> {
        grants::revoke_binding(self, id, by, now).await
    }

    async fn update_binding(&self, update: &BindingUpdate) -> StoreResult<Binding> {
        grants::update_binding(self, update).await
    }

    async fn agreement(&self, id: &str) -> StoreResult<Option<AgencyAgreement>> {
        grants::agreement(self, id).await
    }

    async fn agreements_of_staff(
        &self,
        agency: &TaxpayerId,
        person: &IdNumber,
    ) -> StoreResult<Vec<AgencyAgreement>> {
        grants::agreements_of_staff(self, agency, person).await
    }

    async fn agreement_between(
        &self,
        agency: &TaxpayerId,
        client: &TaxpayerId,
    ) -> StoreResult<Option<AgencyAgreement>> {
        grants::agreement_between(self, agency, client).await
    }

    async fn staff_agencies(
        &self,
        person: &IdNumber,
        client: &TaxpayerId,
    ) -> StoreResult<Vec<TaxpayerId>> {
        grants::staff_agencies(self, person, client).await
    }

    async fn revoke_agreement(&self, id: &str, now: Timestamp) -> StoreResult<()> {
        grants::revoke_agreement(self, id, now).await
    }

    // ---- challenges and SMS limits -----------------------------------------------------------

    async fn create_challenge(&self, challenge: &Challenge) -> StoreResult<()> {
        challenges::create(self, challenge).await
    }

    async fn challenge(&self, id_hash: &str) -> StoreResult<Option<Challenge>> {
        challenges::by(self, "WHERE c.id_hash = $1", id_hash).await
    }

    async fn record_code_attempt(&self, id_hash: &str) -> StoreResult<i32> {
        challenges::record_code_attempt(self, id_hash).await
    }

    async fn reserve_code_attempt(
        &self,
        id_hash: &str,
        now: Timestamp,
        max_attempts: i32,
    ) -> StoreResult<Option<i32>> {
        challenges::reserve_code_attempt(self, id_hash, now, max_attempts).await
    }

    async fn set_challenge_code(
        &self,
        id_hash: &str,
        code_hash: &Secret,
        code_expires_at: Timestamp,
    ) -> StoreResult<()> {
        let code = challenges::Pending::Code(code_hash);
        challenges::set_pending(self, id_hash, code, code_expires_at).await
    }

    async fn set_face_nonce(
        &self,
        id_hash: &str,
        nonce: &str,
        expires_at: Timestamp,
    ) -> StoreResult<()> {
        let nonce = challenges::Pending::FaceNonce(nonce);
        challenges::set_pending(self, id_hash, nonce, expires_at).await
    }

    async fn challenge_by_nonce(&self, nonce: &str) -> StoreResult<Option<Challenge>> {
        challenges::by(self, "WHERE c.face_nonce = $1", nonce).await
    }

    async fn set_face_result(&self, nonce: &str, passed: bool) -> StoreResult<bool> {
        challenges::set_face_result(self, nonce, passed).await
    }

    async fn mark_challenge_verified(&self, id_hash: &str, now: Timestamp) -> StoreResult<bool> {
        challenges::mark_verified(self, id_hash, now).await
    }

    async fn challenge_verified_at(&self, id_hash: &str) -> StoreResult<Option<Timestamp>> {
        challenges::verified_at(self, id_hash).await
    }

    async fn consume_challenge(&self, id_hash: &str, now: Timestamp) -> StoreResult<bool> {
        challenges::consume(self, id_hash, now).await
    }

    async fn delete_expired_challenges(&self, before: Timestamp) -> StoreResult<u64> {
        challenges::delete_expired(self, before).await
    }

    async fn reserve_sms(&self, request: &SmsRequest<'_>) -> StoreResult<SmsReservation> {
        challenges::reserve_sms(self, request).await
    }

    async fn take_budget(
        &self,
        bucket: &str,
        window_start: Timestamp,
        limit: i64,
    ) -> StoreResult<Option<i64>> {
        challenges::take_budget_in(self.db(), bucket, window_start, limit).await
    }

    async fn give_back_budget(&self, bucket: &str, window_start: Timestamp) -> StoreResult<()> {
        challenges::give_back_budget(self, bucket, window_start).await
    }

    async fn prune_sms_log(&self, before: Timestamp) -> StoreResult<u64> {
        challenges::prune_sms_log(self, before).await
    }

    async fn record_sms_sent(
        &self,
        phone: &Phone,
        purpose: ChallengePurpose,
        now: Timestamp,
    ) -> StoreResult<()> {
        challenges::record_sms_sent(self, phone, purpose, now).await
    }

    async fn sms_stats(&self, phone: &Phone, since: Timestamp) -> StoreResult<SmsStats> {
        challenges::sms_stats(self, phone, since).await
    }

    // ---- audit -------------------------------------------------------------------------------

    async fn append_audit(&self, events: &[AuditEvent]) -> StoreResult<()> {
        audit::append_with_slices(self, &[], events).await
    }

    async fn append_recovered_audit(&self, events: &[AuditEvent]) -> StoreResult<()> {
        audit::append_recovered(self, events).await
    }

    async fn count_audit(&self) -> StoreResult<i64> {
        audit::count(self).await
    }

    async fn append_audit_with_slices(
        &self,
        slices: &[(AuditSlice, Timestamp)],
        events: &[AuditEvent],
    ) -> StoreResult<()> {
        audit::append_with_slices(self, slices, events).await
    }

    async fn recorded_decisions(
        &self,
        since: Timestamp,
        limit: i64,
    ) -> StoreResult<Vec<RecordedDecision>> {
        audit::recorded_decisions(self, since, limit).await
    }

    async fn audit_slices(&self, hashes: &[String]) -> StoreResult<Vec<(String, String)>> {
        audit::slices(self, hashes).await
    }

    async fn policy_use(&self, since: Timestamp) -> StoreResult<Vec<PolicyUse>> {
        audit::policy_use(self, since).await
    }

    async fn purge_audit(&self, before: Timestamp) -> StoreResult<AuditPurge> {
        audit::purge(self, before).await
    }

    async fn audit_upkeep(&self, now: Timestamp) -> StoreResult<()> {
        S::Db::prepare_audit_days(self.pool(), now).await
    }

    // ---- import ------------------------------------------------------------------------------

    async fn apply_seed(&self, seed: &ValidSeed, now: Timestamp) -> StoreResult<ImportSummary> {
        import::apply_seed(self, seed, now).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fixed_chunks_cover_everything_in_five_shapes() {
        for n in [0usize, 1, 3, 4, 5, 63, 64, 300, 513, 1000] {
            let items: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = super::fixed_chunks(&items).collect();
            assert_eq!(chunks.concat(), items, "{n}");
            assert!(
                chunks
                    .iter()
                    .all(|c| [256, 64, 16, 4, 1].contains(&c.len()))
            );
        }
    }
}
