//! The password: checking it (reserved in the store before argon2 runs, so lockout holds across
//! instances and bursts), finding the person an account string names, and `POST /auth/password`
//! (the change a first login with an initial password must make).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use http::Request;
use hyper::body::Incoming;
use serde_json::json;
use taxgate_store::{
    CheckOutcome, CheckReservation, Entry, FailureState, GuardKey, IdNumber, LockoutRule, Person,
    Phone, Secret, Store, TaxpayerId, Timestamp, account_key, password,
};

use super::{ApiResult, Auth, retry_after, session_person};
use crate::api::{self, no_content};
use crate::authn::password_rules;
use crate::authn::ratelimit::address_key;
use crate::error::{ApiError, Code, Hints};
use crate::pipeline::unix_now;
use crate::rescue::log_store_error;
use taxgate_proxy::ConnInfo;

/// How long a reserved password check counts as under way: longer than any argon2 queue, short
/// enough that the reservations of an instance that died mid-check soon stop counting.
const PASSWORD_RESERVATION_SECS: i64 = 60;

/// How long a login waits for the checks under way on its account before it is refused.
const PASSWORD_QUEUE_WAIT: Duration = Duration::from_secs(10);

/// One first-factor attempt, for [`Auth::checked_password`]: whose failures it counts against,
/// the hash to verify against (none: a dummy of the same cost), and who it names in the audit.
pub(super) struct PasswordAttempt<'a> {
    pub(super) key: GuardKey,
    pub(super) hash: Option<&'a Secret>,
    pub(super) person: Option<IdNumber>,
    pub(super) enterprise: Option<TaxpayerId>,
    pub(super) entry: Option<Entry>,
}

impl Auth {
    /// Verify a password against a PHC hash off the async workers; an absent hash is checked
    /// against a dummy so unknown accounts cost the same time as wrong passwords.
    async fn verify(&self, phc: Option<&Secret>, candidate: &str) -> bool {
        let phc = phc.cloned();
        let candidate = candidate.to_string();
        let Ok(_permit) = self.hashing.acquire().await else {
            return false;
        };
        tokio::task::spawn_blocking(move || match phc {
            Some(phc) => password::verify_password(&phc, &candidate),
            None => {
                let _ = password::verify_password(password::dummy_hash(), &candidate);
                false
            }
        })
        .await
        .unwrap_or(false)
    }

    pub(super) async fn hash(&self, new_password: &str) -> Result<Secret, ApiError> {
        let pw = new_password.to_string();
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|_| ApiError::from(Code::Internal))?;
        tokio::task::spawn_blocking(move || password::hash_password(&pw))
            .await
            .map_err(|_| ApiError::from(Code::Internal))?
            .map_err(|e| {
                tracing::error!(error = %e, "password hashing failed");
                ApiError::from(Code::Internal)
            })
    }

    fn lockout_rule(&self) -> LockoutRule {
        let login = &self.core.config.login;
        LockoutRule {
            max_failures: login.max_password_failures as i32,
            lockout_secs: login.lockout_secs as i64,
            reservation_secs: PASSWORD_RESERVATION_SECS,
        }
    }

    /// The person whose password `pw` is, for an account string (ID number, phone or username),
    /// through [`Auth::checked_password`]: a known and an unknown account take the same steps,
    /// in the same time, with the same answers (CONTRACT section 3, "Failed passwords and
    /// unknown accounts").
    pub(super) async fn first_factor(
        &self,
        account: &str,
        pw: &str,
        entry: Option<Entry>,
        client: IpAddr,
        now: Timestamp,
    ) -> Result<Person, ApiError> {
        let person = self
            .core
            .store
            .person_by_account(account)
            .await
            .map_err(|e| self.store_err(e))?;
        let attempt = PasswordAttempt {
            key: match &person {
                Some(p) => GuardKey::Person(p.id_number.clone()),
                None => GuardKey::Account(account_key(account)),
            },
            hash: person.as_ref().map(|p| &p.password_hash),
            person: person.as_ref().map(|p| p.id_number.clone()),
            enterprise: None,
            entry,
        };
        self.checked_password(attempt, pw, client, now).await?;
        person.ok_or(ApiError::from(Code::InvalidCredentials))
    }

    /// Reserve a password check in the store before argon2 runs, verify, settle. Refused
    /// without looking at the password while the account (or unknown account string) is locked
    /// or as many checks as failures are left are under way (423), or when the client address
    /// has used its hourly budget of failed checks (429). Ok when the password matched.
    pub(super) async fn checked_password(
        &self,
        attempt: PasswordAttempt<'_>,
        pw: &str,
        client: IpAddr,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        let store = &self.core.store;
        let login = &self.core.config.login;
        let rule = self.lockout_rule();
        let key = &attempt.key;
        let refuse = async |reason: &str, answer: ApiError| -> ApiError {
            let mut ev = self.event(now, "login", false, client);
            ev.person = attempt.person.clone();
            ev.enterprise = attempt.enterprise.clone();
            ev.entry = attempt.entry;
            ev.reason = Some(reason.into());
            match self.audit(ev).await {
                Ok(()) => answer,
                Err(e) => e,
            }
        };
        // While the checks under way could still all fail and lock, a newcomer waits for them
        // to settle instead of being checked too: then it is refused by their lock, or admitted
        // after their success. So a burst of right passwords is served in turns, and a burst of
        // wrong ones is checked no more often than the limit.
        let give_up = Instant::now() + PASSWORD_QUEUE_WAIT;
        let mut pause = Duration::from_millis(4);
        let mut now = now;
        loop {
            match store.reserve_password_check(key, now, &rule).await {
                Ok(CheckReservation::Admitted) => break,
                Ok(CheckReservation::Refused { locked_until: None })
                    if Instant::now() < give_up =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(40));
                    now = unix_now();
                }
                Ok(CheckReservation::Refused { locked_until }) => {
                    return Err(refuse("account_locked", self.locked(locked_until, now)).await);
                }
                Err(e) => return Err(self.store_err(e)),
            }
        }
        // Failed checks per client address, across accounts: a unit is taken before the check
        // and given back when the password was right.
        let hour = now.div_euclid(3_600) * 3_600;
        let bucket = format!("login_fail:{}", address_key(client));
        let budget = store
            .take_budget(
                &bucket,
                hour,
                i64::from(login.max_failures_per_address_hourly),
            )
            .await;
        if !matches!(budget, Ok(Some(_))) {
            self.abandon_check(key, now, &rule).await;
            let answer = match budget {
                Err(e) => return Err(self.store_err(e)),
                _ => retry_after(Code::RateLimited, hour + 3_600 - now),
            };
            return Err(refuse("rate_limited", answer).await);
        }
        // The reservation must outlive the check: a check still queued for argon2 when half
        // its reservation has passed gives up instead of running unreserved.
        let queue_limit = Duration::from_secs((PASSWORD_RESERVATION_SECS / 2) as u64);
        let Ok(verified) = tokio::time::timeout(queue_limit, self.verify(attempt.hash, pw)).await
        else {
            self.abandon_check(key, now, &rule).await;
            if let Err(e) = store.give_back_budget(&bucket, hour).await {
                log_store_error(&e);
            }
            return Err(retry_after(Code::RateLimited, 5));
        };
        let ok = verified && attempt.hash.is_some();
        let outcome = if ok {
            CheckOutcome::Succeeded
        } else {
            CheckOutcome::Failed
        };
        let state = store
            .settle_password_check(key, outcome, now, &rule)
            .await
            .map_err(|e| self.store_err(e))?;
        if ok && let Err(e) = store.give_back_budget(&bucket, hour).await {
            log_store_error(&e);
        }
        if state.locked_until.is_some_and(|t| t > now) {
            // Also a right password whose check raced with the failures that locked.
            return Err(refuse("account_locked", self.locked(state.locked_until, now)).await);
        }
        if !ok {
            let answer = self.wrong_password(state);
            return Err(refuse("invalid_credentials", answer).await);
        }
        Ok(())
    }

    /// Settle a reserved check whose password was never compared: it stops counting as under
    /// way and counts neither as a failure nor as a success. A store error here is only logged:
    /// the reservation lapses by itself after `PASSWORD_RESERVATION_SECS`.
    async fn abandon_check(&self, key: &GuardKey, now: Timestamp, rule: &LockoutRule) {
        if let Err(e) = self
            .core
            .store
            .settle_password_check(key, CheckOutcome::Abandoned, now, rule)
            .await
        {
            log_store_error(&e);
        }
    }

    /// 423 `account_locked` with `locked_for_secs`: the lock's remaining time, or a full lockout
    /// when the refusal came from checks still under way (they may yet lock).
    fn locked(&self, locked_until: Option<Timestamp>, now: Timestamp) -> ApiError {
        let secs = locked_until.map_or(self.core.config.login.lockout_secs as i64, |t| t - now);
        ApiError::hinted(
            Code::AccountLocked,
            Hints {
                locked_for_secs: Some(secs.max(1) as u64),
                ..Hints::default()
            },
        )
    }

    /// 401 `invalid_credentials` with `attempts_left`, the same for known and unknown accounts.
    fn wrong_password(&self, state: FailureState) -> ApiError {
        let max = self.core.config.login.max_password_failures as i32;
        ApiError::hinted(
            Code::InvalidCredentials,
            Hints {
                attempts_left: Some((max - state.failed_count).max(0) as u32),
                ..Hints::default()
            },
        )
    }

    /// `POST /auth/password`.
    pub async fn change_password(&self, req: Request<Incoming>, conn: ConnInfo) -> ApiResult {
        let s = self.session_for(&req, "change_password", conn).await?;
        let (_, body) = api::read_json(req).await?;
        let old = body.str("old_password", 128)?;
        let new = body.str("new_password", 128)?;
        let person_id = session_person(&s)?;
        let now = unix_now();
        // Read the current hash from the store, not the cache: it may have changed since.
        let current = self
            .core
            .store
            .person(person_id)
            .await
            .map_err(|e| self.store_err(e))?
            .ok_or(ApiError::from(Code::LoginRequired))?;
        // Checked like a login's password: reserved before argon2 (issue 21 point 1).
        let attempt = PasswordAttempt {
            key: GuardKey::Person(current.id_number.clone()),
            hash: Some(&current.password_hash),
            person: Some(current.id_number.clone()),
            enterprise: None,
            entry: Some(s.session.entry),
        };
        self.checked_password(attempt, old, conn.remote.ip(), now)
            .await?;
        let personal = password_rules::Personal {
            id_number: Some(current.id_number.as_str()),
            phone: current.phone.as_ref().map(Phone::as_str),
            username: current.username.as_deref(),
        };
        let verdict = if new == old {
            Err(password_rules::Weakness::SameAsOld)
        } else {
            password_rules::check(new, &personal)
        };
        if let Err(weakness) = verdict {
            let (zh, en) = weakness.messages();
            return Err(ApiError::explained(Code::WeakPassword, zh, en).into());
        }
        let phc = self.hash(new).await?;
        self.core
            .store
            .set_password(&current.id_number, &phc, false, now)
            .await
            .map_err(|e| self.store_err(e))?;
        // Whoever else was logged in as this person (perhaps with the old password) is out.
        let others = self
            .core
            .store
            .revoke_person_sessions(&current.id_number, Some(s.id()), now)
            .await
            .map_err(|e| self.store_err(e))?;
        let mut ev = self.event(now, "password_changed", true, conn.remote.ip());
        ev.detail = Some(json!({ "other_sessions_revoked": others }).to_string());
        ev.session_id = Some(s.id().to_string());
        ev.person = Some(current.id_number.clone());
        self.audit(ev).await?;
        Ok(no_content())
    }
}
