//! The login flows of CONTRACT section 3 (Login, Session): first factor, the policy decision on
//! the entry, challenges, the SMS and face second factors, sessions, password change, logout and
//! phone recovery.
//!
//! Rust establishes facts here (is the password right, is the code right, did the app say the
//! face passed); whether this person may log in through this entry for this enterprise is the
//! policies' decision (action `login`), taken at `/auth/login` and taken again when the second
//! factor completes, so a binding revoked in between is honoured.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use taxgate_store::{
    AuditEvent, Binding, Challenge, ChallengePurpose, CheckOutcome, CheckReservation, Enterprise,
    Entry, FaceStatus, Factor, FailureState, GuardKey, IdNumber, LockoutRule, Person, Phone,
    PhoneAudit, Role, Secret, Session, SessionSlice, SmsLimit, SmsLimits, SmsRequest,
    SmsReservation, Store, StoreError, TaxpayerId, Timestamp, account_key, password,
};
use tokio::sync::Semaphore;

use super::ratelimit::address_key;
use super::sms::{Purpose, SmsMessage, SmsSender};
use super::{face, password_rules, token};
use crate::api::{self, Json, json as json_response, no_content};
use crate::error::{ApiError, Code, Hints};
use crate::metrics::SMS_REFUSED;
use crate::pipeline::{presented_token, unix_now};
use crate::rescue::log_store_error;
use crate::server::Core;
use crate::session::{Lookup, ResolvedSession};
use taxgate_policy::{Decision, LoginAttempt, LoginCandidate, RequestFacts};
use taxgate_proxy::ConnInfo;
use taxgate_proxy::body::Body;

/// Beijing time: the SMS daily limit resets at local midnight.
const CHINA_OFFSET_SECS: i64 = 8 * 3600;

/// How long a reserved password check counts as under way: longer than any argon2 queue, short
/// enough that the reservations of an instance that died mid-check soon stop counting.
const PASSWORD_RESERVATION_SECS: i64 = 60;

/// How long a login waits for the checks under way on its account before it is refused.
const PASSWORD_QUEUE_WAIT: Duration = Duration::from_secs(10);

type ApiResult = Result<Response<Body>, ApiError>;

/// One first-factor attempt, for [`Auth::checked_password`]: whose failures it counts against,
/// the hash to verify against (none: a dummy of the same cost), and who it names in the audit.
struct PasswordAttempt<'a> {
    key: GuardKey,
    hash: Option<&'a Secret>,
    person: Option<IdNumber>,
    enterprise: Option<TaxpayerId>,
    entry: Option<Entry>,
}

fn store_err(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => Code::NotFound.into(),
        other => {
            log_store_error(&other);
            Code::StoreUnavailable.into()
        }
    }
}

pub struct Auth {
    core: Arc<Core>,
    sms: Arc<dyn SmsSender>,
    /// argon2 runs on the blocking pool, at most this many at once, so a login storm cannot take
    /// every core from the proxy.
    hashing: Semaphore,
}

impl Auth {
    pub fn new(core: Arc<Core>, sms: Arc<dyn SmsSender>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Auth {
            core,
            sms,
            hashing: Semaphore::new((cores / 2).max(1)),
        }
    }

    fn facts(&self, now: Timestamp) -> RequestFacts {
        RequestFacts {
            now,
            legacy_login_until: self.core.config.login.legacy_until_unix(),
        }
    }

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

    async fn hash(&self, new_password: &str) -> Result<Secret, ApiError> {
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

    async fn audit(&self, event: AuditEvent) -> Result<(), ApiError> {
        self.core
            .audit
            .record(event)
            .await
            .map_err(|_| ApiError::from(Code::StoreUnavailable))
    }

    fn event(&self, now: Timestamp, action: &str, allowed: bool, client: IpAddr) -> AuditEvent {
        AuditEvent {
            client_addr: Some(client.to_string()),
            ..AuditEvent::new(self.core.audit.next_id(), now, action, allowed)
        }
    }

    /// A security event on a challenge (a code sent or refused, a wrong code, a face start or
    /// result): its person, entry, enterprise and the client it is bound to.
    async fn challenge_event(
        &self,
        c: &Challenge,
        now: Timestamp,
        action: &str,
        allowed: bool,
        reason: Option<&str>,
    ) -> Result<(), ApiError> {
        let mut ev = AuditEvent::new(self.core.audit.next_id(), now, action, allowed);
        ev.person = c.person.clone();
        ev.enterprise = c.enterprise.clone();
        ev.entry = c.entry;
        ev.client_addr = c.client_addr.clone();
        ev.reason = reason.map(str::to_string);
        ev.detail = Some(json!({ "purpose": c.purpose.as_str() }).to_string());
        self.audit(ev).await
    }

    fn denial(&self, decision: &Decision) -> ApiError {
        let reason = decision.reason.as_deref().unwrap_or("not_permitted");
        if reason == "not_permitted" {
            return Code::NotPermitted.into();
        }
        let (zh, en) = self.core.engine.message(reason);
        ApiError::denied(reason, &zh, &en)
    }

    // ---- first factor -------------------------------------------------------------------------

    /// `POST /auth/login`.
    pub async fn login(&self, body: Json, conn: ConnInfo) -> ApiResult {
        let entry = body.parse("entry", |s| Entry::parse(s).ok_or(()))?;
        if entry == Entry::EnterpriseLegacy {
            return self.login_legacy(body, conn).await;
        }
        let taxpayer_id = match entry {
            Entry::Enterprise | Entry::Agent => Some(body.parse("taxpayer_id", TaxpayerId::parse)?),
            _ => None,
        };
        let account = body.str("account", 64)?.trim().to_string();
        let pw = body.str("password", 128)?;
        let now = unix_now();
        let client = conn.remote.ip();
        let store = &self.core.store;
        let person = self
            .first_factor(&account, pw, Some(entry), client, now)
            .await?;

        // Facts for the policy: the enterprise (or agency) and the candidate identities.
        let enterprise = match &taxpayer_id {
            Some(t) => store.enterprise(t).await.map_err(store_err)?,
            None => None,
        };
        let (bindings, agreements) = match (&entry, &taxpayer_id) {
            (Entry::Enterprise, Some(t)) => (
                store
                    .bindings_between(&person.id_number, t)
                    .await
                    .map_err(store_err)?,
                Vec::new(),
            ),
            (Entry::Agent, Some(t)) => (
                Vec::new(),
                store
                    .agreements_of_staff(t, &person.id_number)
                    .await
                    .map_err(store_err)?,
            ),
            _ => (Vec::new(), Vec::new()),
        };
        let attempt = LoginAttempt {
            entry,
            person: Some(&person),
            enterprise: enterprise.as_ref(),
        };
        let candidates: Vec<LoginCandidate<'_>> = bindings
            .iter()
            .map(LoginCandidate::Binding)
            .chain(agreements.iter().map(LoginCandidate::Agreement))
            .collect();
        let decision = self
            .core
            .engine
            .decide_login(&attempt, &candidates, &self.facts(now));
        let mut ev = self.event(now, "login", decision.allowed, client);
        ev.person = Some(person.id_number.clone());
        ev.enterprise = taxpayer_id.clone();
        ev.entry = Some(entry);
        ev.policies = decision.policies.clone();
        ev.reason = decision.reason.clone();
        ev.policy_version = Some(decision.version.to_string());
        self.audit(ev).await?;
        if !decision.allowed {
            return Err(self.denial(&decision));
        }

        let (enterprise_id, agency_id) = match entry {
            Entry::Agent => (None, taxpayer_id),
            _ => (taxpayer_id, None),
        };
        let challenge_token = self
            .new_challenge(
                ChallengePurpose::Login,
                Some(entry),
                Some(&person.id_number),
                enterprise_id,
                agency_id,
                person.phone.clone(),
                now,
                client,
            )
            .await?;
        let mut factors = Vec::new();
        if person.phone.is_some() {
            factors.push("sms");
        }
        factors.push("face");
        let mut answer = json!({ "challenge": challenge_token, "factors": factors });
        if let Some(phone) = &person.phone {
            answer["phone_masked"] = Value::String(phone.masked());
        }
        Ok(json_response(StatusCode::OK, &answer))
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
    async fn first_factor(
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
            .map_err(store_err)?;
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
    async fn checked_password(
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
                Err(e) => return Err(store_err(e)),
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
            if let Err(e) = store
                .settle_password_check(key, CheckOutcome::Abandoned, now, &rule)
                .await
            {
                log_store_error(&e);
            }
            let answer = match budget {
                Err(e) => return Err(store_err(e)),
                _ => ApiError::hinted(
                    Code::RateLimited,
                    Hints {
                        retry_after_secs: Some((hour + 3_600 - now).max(1) as u64),
                        ..Hints::default()
                    },
                ),
            };
            return Err(refuse("rate_limited", answer).await);
        }
        // The reservation must outlive the check: a check still queued for argon2 when half
        // its reservation has passed gives up instead of running unreserved.
        let queue_limit = Duration::from_secs((PASSWORD_RESERVATION_SECS / 2) as u64);
        let Ok(verified) = tokio::time::timeout(queue_limit, self.verify(attempt.hash, pw)).await
        else {
            if let Err(e) = store
                .settle_password_check(key, CheckOutcome::Abandoned, now, &rule)
                .await
            {
                log_store_error(&e);
            }
            if let Err(e) = store.give_back_budget(&bucket, hour).await {
                log_store_error(&e);
            }
            return Err(ApiError::hinted(
                Code::RateLimited,
                Hints {
                    retry_after_secs: Some(5),
                    ..Hints::default()
                },
            ));
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
            .map_err(store_err)?;
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

    /// `POST /auth/login` with `entry = enterprise_legacy`: the old enterprise password, then an
    /// SMS to the enterprise's registered phone, while the policies allow it.
    async fn login_legacy(&self, body: Json, conn: ConnInfo) -> ApiResult {
        let taxpayer_id = body.parse("taxpayer_id", TaxpayerId::parse)?;
        let pw = body.str("password", 128)?;
        let now = unix_now();
        let client = conn.remote.ip();
        let store = &self.core.store;
        let enterprise = store.enterprise(&taxpayer_id).await.map_err(store_err)?;
        let hash = enterprise
            .as_ref()
            .and_then(|e| e.legacy_password_hash.clone());
        // An enterprise without a legacy password locks like an unknown account string.
        let key = match &hash {
            Some(_) => GuardKey::Enterprise(taxpayer_id.clone()),
            None => GuardKey::Account(format!("legacy:{}", taxpayer_id.as_str())),
        };
        let attempt = PasswordAttempt {
            key,
            hash: hash.as_ref(),
            person: None,
            enterprise: Some(taxpayer_id.clone()),
            entry: Some(Entry::EnterpriseLegacy),
        };
        self.checked_password(attempt, pw, client, now).await?;
        let enterprise = enterprise.ok_or(ApiError::from(Code::InvalidCredentials))?;
        let attempt = LoginAttempt {
            entry: Entry::EnterpriseLegacy,
            person: None,
            enterprise: Some(&enterprise),
        };
        let decision = self
            .core
            .engine
            .decide_login(&attempt, &[], &self.facts(now));
        let mut ev = self.event(now, "login", decision.allowed, client);
        ev.entry = Some(Entry::EnterpriseLegacy);
        ev.enterprise = Some(taxpayer_id.clone());
        ev.policies = decision.policies.clone();
        ev.reason = decision.reason.clone();
        ev.policy_version = Some(decision.version.to_string());
        self.audit(ev).await?;
        if !decision.allowed {
            return Err(self.denial(&decision));
        }
        let challenge_token = self
            .new_challenge(
                ChallengePurpose::Login,
                Some(Entry::EnterpriseLegacy),
                None,
                Some(taxpayer_id),
                None,
                enterprise.phone.clone(),
                now,
                client,
            )
            .await?;
        let mut answer = json!({ "challenge": challenge_token, "factors": ["sms"] });
        if let Some(phone) = &enterprise.phone {
            answer["phone_masked"] = Value::String(phone.masked());
        }
        Ok(json_response(StatusCode::OK, &answer))
    }

    #[allow(clippy::too_many_arguments)]
    async fn new_challenge(
        &self,
        purpose: ChallengePurpose,
        entry: Option<Entry>,
        person: Option<&IdNumber>,
        enterprise: Option<TaxpayerId>,
        agency: Option<TaxpayerId>,
        target_phone: Option<Phone>,
        now: Timestamp,
        client: IpAddr,
    ) -> Result<String, ApiError> {
        let challenge_token = token::new_token().map_err(|_| ApiError::from(Code::Internal))?;
        let challenge = Challenge {
            id_hash: token::hash(&challenge_token),
            purpose,
            entry,
            person: person.cloned(),
            enterprise,
            agency,
            target_phone,
            code_hash: None,
            code_expires_at: None,
            code_attempts: 0,
            face_nonce: None,
            face_status: None,
            face_expires_at: None,
            client_addr: Some(client.to_string()),
            created_at: now,
            expires_at: now + self.core.config.login.challenge_ttl_secs as i64,
            consumed_at: None,
        };
        self.core
            .store
            .create_challenge(&challenge)
            .await
            .map_err(store_err)?;
        Ok(challenge_token)
    }

    /// The live challenge a client presents: unknown, expired, used, or started from another
    /// address all read as `challenge_expired` (no oracle for guessing).
    async fn live_challenge(
        &self,
        body: &Json,
        conn: ConnInfo,
        now: Timestamp,
    ) -> Result<Challenge, ApiError> {
        let presented = body.str("challenge", 64)?;
        if !token::well_formed(presented) {
            return Err(Code::ChallengeExpired.into());
        }
        let c = self
            .core
            .store
            .challenge(&token::hash(presented))
            .await
            .map_err(store_err)?
            .ok_or(ApiError::from(Code::ChallengeExpired))?;
        let same_client = c.client_addr.as_deref() == Some(conn.remote.ip().to_string().as_str());
        if c.consumed_at.is_some()
            || c.expires_at <= now
            || !same_client
            || c.code_attempts >= self.core.config.login.sms_max_attempts as i32
        {
            return Err(Code::ChallengeExpired.into());
        }
        // A failed face (or the face of another person) ends the challenge for good.
        if c.face_status == Some(FaceStatus::Failed) {
            return Err(Code::FaceFailed.into());
        }
        Ok(c)
    }

    // ---- SMS ----------------------------------------------------------------------------------

    /// `POST /auth/sms/send`.
    pub async fn sms_send(&self, body: Json, conn: ConnInfo) -> ApiResult {
        let now = unix_now();
        let c = self.live_challenge(&body, conn, now).await?;
        match (c.purpose, c.face_status) {
            (ChallengePurpose::Login, _)
            | (ChallengePurpose::RecoverPhone, Some(FaceStatus::Passed)) => {}
            (ChallengePurpose::RecoverPhone, _) => return Err(Code::FaceRequired.into()),
            _ => return Err(Code::ChallengeExpired.into()),
        }
        self.send_code(&c, now).await?;
        Ok(json_response(
            StatusCode::OK,
            &json!({ "resend_after_secs": self.core.config.login.sms_resend_secs }),
        ))
    }

    /// Reserve the send under every SMS limit in the store (CONTRACT section 3, "Every code
    /// sent counts"), then send a fresh code and store its hash.
    async fn send_code(&self, c: &Challenge, now: Timestamp) -> Result<(), ApiError> {
        let login = &self.core.config.login;
        let phone = c
            .target_phone
            .as_ref()
            .ok_or(ApiError::from(Code::PhoneMissing))?;
        let day_start = (now + CHINA_OFFSET_SECS).div_euclid(86_400) * 86_400 - CHINA_OFFSET_SECS;
        let address = c
            .client_addr
            .as_deref()
            .and_then(|a| a.parse::<IpAddr>().ok())
            .map(address_key);
        let request = SmsRequest {
            phone,
            purpose: c.purpose,
            person: c.person.as_ref(),
            address: address.as_deref(),
            now,
            limits: SmsLimits {
                resend_secs: login.sms_resend_secs as i64,
                number_daily: i64::from(login.sms_daily_limit),
                person_daily: i64::from(login.sms_per_person_daily),
                address_hourly: i64::from(login.sms_per_address_hourly),
                global_per_minute: i64::from(login.sms_global_per_minute),
                day_start,
            },
        };
        match self
            .core
            .store
            .reserve_sms(&request)
            .await
            .map_err(store_err)?
        {
            SmsReservation::Granted => {}
            SmsReservation::Refused {
                limit,
                retry_after_secs,
            } => {
                SMS_REFUSED.inc(limit);
                let code = match limit {
                    SmsLimit::NumberDaily | SmsLimit::PersonDaily => Code::SmsDailyLimit,
                    SmsLimit::ResendInterval
                    | SmsLimit::AddressHourly
                    | SmsLimit::GlobalPerMinute => Code::SmsTooFrequent,
                };
                self.challenge_event(c, now, "sms_code_refused", false, Some(code.as_str()))
                    .await?;
                return Err(ApiError::hinted(
                    code,
                    Hints {
                        retry_after_secs: Some(retry_after_secs.max(1) as u64),
                        ..Hints::default()
                    },
                ));
            }
        }
        let code = token::new_sms_code().map_err(|_| ApiError::from(Code::Internal))?;
        self.core
            .store
            .set_challenge_code(
                &c.id_hash,
                &code_hash(&c.id_hash, &code),
                now + login.sms_code_ttl_secs as i64,
            )
            .await
            .map_err(store_err)?;
        let purpose = match c.purpose {
            ChallengePurpose::Login => Purpose::Login,
            ChallengePurpose::BindPhone => Purpose::BindPhone,
            ChallengePurpose::RecoverPhone => Purpose::RecoverPhone,
        };
        let message = SmsMessage {
            to: phone.as_str(),
            code: Some(&code),
            purpose,
            at: api::rfc3339(now),
        };
        // Recorded before the code leaves: a code sent is on record whatever happens next.
        self.challenge_event(c, now, "sms_code_sent", true, None)
            .await?;
        self.sms.send(&message).await.map_err(|e| {
            tracing::error!(error = %e, "sms delivery failed");
            ApiError::from(Code::SmsUnavailable)
        })
    }

    /// Check a code against the challenge. The attempt is reserved in the store first (one
    /// conditional UPDATE), so however many arrive at once no more than `sms_max_attempts` are
    /// compared; the last allowed wrong one voids the challenge.
    async fn check_code(&self, c: &Challenge, body: &Json, now: Timestamp) -> Result<(), ApiError> {
        let code = body.str("code", 16)?;
        let max = self.core.config.login.sms_max_attempts as i32;
        let Some(attempt) = self
            .core
            .store
            .reserve_code_attempt(&c.id_hash, now, max)
            .await
            .map_err(store_err)?
        else {
            return Err(Code::ChallengeExpired.into());
        };
        let right = match (&c.code_hash, c.code_expires_at) {
            (Some(expected), Some(until)) if until > now => {
                let given = code_hash(&c.id_hash, code.trim());
                bool::from(
                    given
                        .expose()
                        .as_bytes()
                        .ct_eq(expected.expose().as_bytes()),
                )
            }
            _ => false,
        };
        if right {
            return Ok(());
        }
        self.challenge_event(c, now, "sms_code_failed", false, Some("invalid_code"))
            .await?;
        if attempt >= max {
            Err(Code::ChallengeExpired.into())
        } else {
            Err(ApiError::hinted(
                Code::InvalidCode,
                Hints {
                    attempts_left: Some((max - attempt) as u32),
                    ..Hints::default()
                },
            ))
        }
    }

    /// `POST /auth/sms/verify`.
    pub async fn sms_verify(&self, body: Json, conn: ConnInfo) -> ApiResult {
        let now = unix_now();
        let c = self.live_challenge(&body, conn, now).await?;
        if c.purpose != ChallengePurpose::Login {
            return Err(Code::ChallengeExpired.into());
        }
        self.check_code(&c, &body, now).await?;
        self.complete_login(c, Factor::Sms, conn, now).await
    }

    // ---- face ---------------------------------------------------------------------------------

    /// `POST /auth/face/start`.
    pub async fn face_start(&self, body: Json, conn: ConnInfo) -> ApiResult {
        let now = unix_now();
        let c = self.live_challenge(&body, conn, now).await?;
        let scannable = matches!(
            c.purpose,
            ChallengePurpose::Login | ChallengePurpose::RecoverPhone
        );
        if !scannable || c.person.is_none() {
            // The legacy login has no person to scan.
            return Err(ApiError::field(Code::InvalidInput, "challenge"));
        }
        let nonce = token::new_token().map_err(|_| ApiError::from(Code::Internal))?;
        let ttl = self.core.config.face.ttl_secs;
        // The store refuses a new nonce once a face failed, so a failure recorded after our
        // read still ends the challenge (no second scan).
        match self
            .core
            .store
            .set_face_nonce(&c.id_hash, &nonce, now + ttl as i64)
            .await
        {
            Ok(()) => {}
            Err(StoreError::NotFound) => return Err(Code::FaceFailed.into()),
            Err(e) => return Err(store_err(e)),
        }
        self.challenge_event(&c, now, "face_started", true, None)
            .await?;
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "nonce": nonce,
                "qr": format!("taxgate-face://v1?nonce={nonce}"),
                "expires_in": ttl,
            }),
        ))
    }

    /// `POST /auth/face/callback`, from the mobile-app backend (CONTRACT section 6).
    pub async fn face_callback(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        budget: face::CallbackBudget<'_>,
    ) -> ApiResult {
        let now = unix_now();
        let client = conn.remote.ip();
        let (parts, raw) = match api::read_body(req, 4096).await {
            Ok(read) => read,
            // An unreadable body is not signed: it counts like any other request.
            Err(_) if !budget.unsigned.allow(client, now) => return Err(Code::RateLimited.into()),
            Err(e) => return Err(e),
        };
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let signed = face::verify(
            self.core.config.face.callback_secret.expose().as_bytes(),
            header("x-taxgate-timestamp"),
            header("x-taxgate-signature"),
            &raw,
            now,
        );
        let budget = if signed.is_ok() {
            budget.signed
        } else {
            budget.unsigned
        };
        if !budget.allow(client, now) {
            return Err(Code::RateLimited.into());
        }
        signed.map_err(|_| ApiError::from(Code::BadSignature))?;
        let v: Value =
            serde_json::from_slice(&raw).map_err(|_| ApiError::from(Code::InvalidInput))?;
        let body = Json(v);
        let nonce = body.str("nonce", 64)?;
        let id_number = body.parse("id_number", IdNumber::parse)?;
        let passed = match body.str("result", 8)? {
            "pass" => true,
            "fail" => false,
            _ => return Err(ApiError::field(Code::InvalidInput, "result")),
        };
        let store = &self.core.store;
        let c = store
            .challenge_by_nonce(nonce)
            .await
            .map_err(store_err)?
            .ok_or(ApiError::from(Code::UnknownNonce))?;
        let live = c.consumed_at.is_none()
            && c.expires_at > now
            && c.face_status == Some(FaceStatus::Pending)
            && c.face_expires_at.is_some_and(|t| t > now);
        if !live {
            return Err(Code::UnknownNonce.into());
        }
        if c.person.as_ref() != Some(&id_number) {
            let _ = store
                .set_face_result(nonce, false)
                .await
                .map_err(store_err)?;
            let mut ev = self.event(now, "face_callback", false, conn.remote.ip());
            ev.person = c.person.clone();
            ev.reason = Some("identity_mismatch".into());
            self.audit(ev).await?;
            return Err(Code::IdentityMismatch.into());
        }
        if !store
            .set_face_result(nonce, passed)
            .await
            .map_err(store_err)?
        {
            return Err(Code::UnknownNonce.into());
        }
        let reason = (!passed).then_some("face_failed");
        self.challenge_event(&c, now, "face_result", passed, reason)
            .await?;
        Ok(no_content())
    }

    /// `POST /auth/face/complete`.
    pub async fn face_complete(&self, body: Json, conn: ConnInfo) -> ApiResult {
        let now = unix_now();
        let c = self.live_challenge(&body, conn, now).await?;
        match c.face_status {
            Some(FaceStatus::Passed) if c.purpose == ChallengePurpose::RecoverPhone => {
                self.recover_code(&c, &body, now).await
            }
            Some(FaceStatus::Passed) => self.complete_login(c, Factor::Face, conn, now).await,
            Some(FaceStatus::Failed) => Err(Code::FaceFailed.into()),
            Some(FaceStatus::Pending) if c.face_expires_at.is_some_and(|t| t <= now) => {
                Err(Code::ChallengeExpired.into())
            }
            _ => Err(Code::FacePending.into()),
        }
    }

    // ---- sessions -----------------------------------------------------------------------------

    /// Turn a challenge whose second factor passed into a session (single use), after asking the
    /// policies once more which identity it may take.
    async fn complete_login(
        &self,
        c: Challenge,
        factor: Factor,
        conn: ConnInfo,
        now: Timestamp,
    ) -> ApiResult {
        let store = &self.core.store;
        if !store
            .consume_challenge(&c.id_hash, now)
            .await
            .map_err(store_err)?
        {
            return Err(Code::ChallengeExpired.into());
        }
        let entry = c.entry.ok_or(ApiError::from(Code::ChallengeExpired))?;
        let person = match &c.person {
            Some(id) => Some(
                store
                    .person(id)
                    .await
                    .map_err(store_err)?
                    .ok_or(ApiError::from(Code::ChallengeExpired))?,
            ),
            None => None,
        };
        let org_id = c.enterprise.as_ref().or(c.agency.as_ref());
        let org = match org_id {
            Some(t) => store.enterprise(t).await.map_err(store_err)?,
            None => None,
        };
        let facts = self.facts(now);
        let attempt = LoginAttempt {
            entry,
            person: person.as_ref(),
            enterprise: org.as_ref(),
        };
        // The identity: the first candidate the policies allow (bindings for the enterprise
        // entry); agents start at the agency and pick a client by switching.
        let mut binding: Option<Binding> = None;
        let decision = match (entry, &person, &c.enterprise) {
            (Entry::Enterprise, Some(p), Some(t)) => {
                let bindings = store
                    .bindings_between(&p.id_number, t)
                    .await
                    .map_err(store_err)?;
                let mut allowed = None;
                for b in &bindings {
                    let d = self.core.engine.decide_login(
                        &attempt,
                        &[LoginCandidate::Binding(b)],
                        &facts,
                    );
                    if d.allowed {
                        binding = Some(b.clone());
                        allowed = Some(d);
                        break;
                    }
                }
                match allowed {
                    Some(d) => d,
                    None => {
                        let all: Vec<_> = bindings.iter().map(LoginCandidate::Binding).collect();
                        self.core.engine.decide_login(&attempt, &all, &facts)
                    }
                }
            }
            (Entry::Agent, Some(p), _) => {
                let agreements = match &c.agency {
                    Some(a) => store
                        .agreements_of_staff(a, &p.id_number)
                        .await
                        .map_err(store_err)?,
                    None => Vec::new(),
                };
                let all: Vec<_> = agreements.iter().map(LoginCandidate::Agreement).collect();
                self.core.engine.decide_login(&attempt, &all, &facts)
            }
            _ => self.core.engine.decide_login(&attempt, &[], &facts),
        };
        if !decision.allowed {
            return Err(self.denial(&decision));
        }
        let role = match entry {
            Entry::Enterprise => binding.as_ref().map(|b| b.role),
            Entry::Agent => Some(Role::Agent),
            Entry::EnterpriseLegacy => Some(Role::LegacyEnterprise),
            Entry::Person => None,
        };
        let session_token = token::new_token().map_err(|_| ApiError::from(Code::Internal))?;
        let session = Session {
            id: token::new_id().map_err(|_| ApiError::from(Code::Internal))?,
            token_hash: token::hash(&session_token),
            entry,
            person: c.person.clone(),
            enterprise: c.enterprise.clone(),
            agency: c.agency.clone(),
            role,
            binding_id: binding.as_ref().map(|b| b.id.clone()),
            agreement_id: None,
            factor,
            created_at: now,
            last_seen_at: now,
            expires_at: now + self.core.config.session.absolute_timeout_secs as i64,
            revoked_at: None,
        };
        store.create_session(&session).await.map_err(store_err)?;
        let mut ev = self.event(now, "session_created", true, conn.remote.ip());
        ev.session_id = Some(session.id.clone());
        ev.person = session.person.clone();
        ev.enterprise = session.enterprise.clone().or(session.agency.clone());
        ev.role = session.role;
        ev.entry = Some(entry);
        ev.detail = Some(json!({ "factor": factor.as_str() }).to_string());
        self.audit(ev).await?;
        let slice = SessionSlice {
            session,
            person,
            enterprise: if entry == Entry::Agent {
                None
            } else {
                org.clone()
            },
            agency: if entry == Entry::Agent { org } else { None },
            binding,
            agreement: None,
        };
        let mut resp = json_response(StatusCode::OK, &session_view(&slice));
        let cfg = &self.core.config.session;
        if let Some(cookie) = api::session_cookie(
            &cfg.cookie_name,
            &session_token,
            cfg.cookie_secure,
            cfg.absolute_timeout_secs,
        ) {
            resp.headers_mut().insert(header::SET_COOKIE, cookie);
        }
        Ok(resp)
    }

    /// The live session a request presents and the policy decision for `action` on it.
    pub async fn session_for(
        &self,
        req: &Request<Incoming>,
        action: &str,
        conn: ConnInfo,
    ) -> Result<Arc<ResolvedSession>, ApiError> {
        let now = unix_now();
        let token_str = presented_token(req.headers(), &self.core.config.session.cookie_name)?
            .ok_or(ApiError::from(Code::LoginRequired))?;
        let session = match self.core.sessions.resolve(token_str, now).await {
            Ok(Lookup::Live(s)) => s,
            Ok(Lookup::Missing) => return Err(Code::LoginRequired.into()),
            Ok(Lookup::Expired) => return Err(Code::SessionExpired.into()),
            Err(e) => return Err(store_err(e)),
        };
        let entities = self.core.sessions.entities(&session).map_err(|e| {
            tracing::error!(error = %e, "cannot build the entity slice of a session");
            ApiError::from(Code::Internal)
        })?;
        let decision = self
            .core
            .engine
            .decide(&entities.entities, action, &self.facts(now));
        // Every decision is one audit record, allowed or not (a read of a firm's personnel
        // list shows full ID numbers: who looked must be on record).
        let s = &session.session;
        let mut ev = self.event(now, action, decision.allowed, conn.remote.ip());
        ev.session_id = Some(s.id.clone());
        ev.person = s.person.clone();
        ev.enterprise = s.enterprise.clone();
        ev.role = s.role;
        ev.entry = Some(s.entry);
        ev.path = Some(req.uri().path().to_string());
        ev.policies = decision.policies.clone();
        ev.reason = decision.reason.clone();
        ev.policy_version = Some(decision.version.to_string());
        self.audit(ev).await?;
        if !decision.allowed {
            return Err(self.denial(&decision));
        }
        Ok(session)
    }

    /// `GET /auth/session`.
    pub async fn session(&self, req: Request<Incoming>, conn: ConnInfo) -> ApiResult {
        let s = self.session_for(&req, "view_session", conn).await?;
        // Names come from the store: the session cache keeps no more than decisions need.
        let store = &self.core.store;
        let sess = &s.session;
        let person = match &sess.person {
            Some(id) => store.person(id).await.map_err(store_err)?,
            None => None,
        };
        let enterprise = match &sess.enterprise {
            Some(id) => store.enterprise(id).await.map_err(store_err)?,
            None => None,
        };
        Ok(json_response(
            StatusCode::OK,
            &session_view_of(sess, person.as_ref(), enterprise.as_ref()),
        ))
    }

    /// `POST /auth/logout`: the session is revoked in the store, which invalidates it on every
    /// instance.
    pub async fn logout(&self, req: Request<Incoming>, conn: ConnInfo) -> ApiResult {
        let s = self.session_for(&req, "logout", conn).await?;
        let now = unix_now();
        self.core
            .store
            .revoke_session(s.id(), now)
            .await
            .map_err(store_err)?;
        let mut ev = self.event(now, "logout", true, conn.remote.ip());
        ev.session_id = Some(s.id().to_string());
        ev.person = s.session.person.clone();
        self.audit(ev).await?;
        let mut resp = no_content();
        let cfg = &self.core.config.session;
        if let Some(cookie) = api::session_cookie(&cfg.cookie_name, "", cfg.cookie_secure, 0) {
            resp.headers_mut().insert(header::SET_COOKIE, cookie);
        }
        Ok(resp)
    }

    /// `POST /auth/password`.
    pub async fn change_password(&self, req: Request<Incoming>, conn: ConnInfo) -> ApiResult {
        let s = self.session_for(&req, "change_password", conn).await?;
        let (_, body) = api::read_json(req).await?;
        let old = body.str("old_password", 128)?;
        let new = body.str("new_password", 128)?;
        let person_id = s
            .session
            .person
            .as_ref()
            .ok_or(ApiError::from(Code::NotPermitted))?;
        let now = unix_now();
        // Read the current hash from the store, not the cache: it may have changed since.
        let current = self
            .core
            .store
            .person(person_id)
            .await
            .map_err(store_err)?
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
            return Err(ApiError::explained(Code::WeakPassword, zh, en));
        }
        let phc = self.hash(new).await?;
        self.core
            .store
            .set_password(&current.id_number, &phc, false, now)
            .await
            .map_err(store_err)?;
        // Whoever else was logged in as this person (perhaps with the old password) is out.
        let others = self
            .core
            .store
            .revoke_person_sessions(&current.id_number, Some(s.id()), now)
            .await
            .map_err(store_err)?;
        let mut ev = self.event(now, "password_changed", true, conn.remote.ip());
        ev.detail = Some(json!({ "other_sessions_revoked": others }).to_string());
        ev.session_id = Some(s.id().to_string());
        ev.person = Some(current.id_number.clone());
        self.audit(ev).await?;
        Ok(no_content())
    }

    // ---- phone recovery (找回手机号码) -----------------------------------------------------------

    /// `POST /auth/phone/recover`: credentials, then a challenge whose only factor is the face
    /// scan. Nothing is sent yet: a password alone (or a migrated user's initial one) must not
    /// move the second factor to a number of the caller's choosing.
    pub async fn phone_recover(&self, body: Json, conn: ConnInfo) -> ApiResult {
        let account = body.str("account", 64)?.trim().to_string();
        let pw = body.str("password", 128)?;
        let phone = body.parse("phone", Phone::parse)?;
        let now = unix_now();
        let client = conn.remote.ip();
        // The reserved first factor of `/auth/login` (issue 21 point 1).
        let person = self
            .first_factor(&account, pw, Some(Entry::Person), client, now)
            .await?;
        let challenge_token = self
            .new_challenge(
                ChallengePurpose::RecoverPhone,
                Some(Entry::Person),
                Some(&person.id_number),
                None,
                None,
                Some(phone),
                now,
                client,
            )
            .await?;
        let mut ev = self.event(now, "phone_recovery_started", true, client);
        ev.person = Some(person.id_number.clone());
        self.audit(ev).await?;
        Ok(json_response(
            StatusCode::OK,
            &json!({ "challenge": challenge_token, "factors": ["face"] }),
        ))
    }

    /// `/auth/face/complete` on a recovery challenge whose face passed: the code goes to the
    /// new number (purpose `recover_phone`); the challenge stays open for
    /// `/auth/phone/recover/verify`.
    async fn recover_code(&self, c: &Challenge, body: &Json, now: Timestamp) -> ApiResult {
        self.send_code(c, now).await?;
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "challenge": body.str("challenge", 64)?,
                "resend_after_secs": self.core.config.login.sms_resend_secs,
            }),
        ))
    }

    /// `POST /auth/phone/recover/verify` (and `/account/phone/verify`): the number moves to the
    /// person in one transaction and is cleared from its previous holder (一号一人); the
    /// person's previous number and the previous holder are told. A recovery also ends every
    /// session of the person, on every instance: whoever used the old factor is out.
    pub async fn phone_verify(
        &self,
        body: Json,
        conn: ConnInfo,
        purpose: ChallengePurpose,
    ) -> ApiResult {
        let now = unix_now();
        let c = self.live_challenge(&body, conn, now).await?;
        if c.purpose != purpose {
            return Err(Code::ChallengeExpired.into());
        }
        if purpose == ChallengePurpose::RecoverPhone && c.face_status != Some(FaceStatus::Passed) {
            return Err(Code::FaceRequired.into());
        }
        self.check_code(&c, &body, now).await?;
        if !self
            .core
            .store
            .consume_challenge(&c.id_hash, now)
            .await
            .map_err(store_err)?
        {
            return Err(Code::ChallengeExpired.into());
        }
        let (Some(person), Some(phone)) = (&c.person, &c.target_phone) else {
            return Err(Code::ChallengeExpired.into());
        };
        let store = &self.core.store;
        // Sessions first: a store failure between the two steps then leaves everyone logged
        // out and the number where it was, never the number moved and the old sessions alive.
        let revoked = if purpose == ChallengePurpose::RecoverPhone {
            store
                .revoke_person_sessions(person, None, now)
                .await
                .map_err(store_err)?
        } else {
            0
        };
        let before = store
            .person(person)
            .await
            .map_err(store_err)?
            .and_then(|p| p.phone);
        let mut bound = self.event(now, "phone_bound", true, conn.remote.ip());
        bound.person = Some(person.clone());
        bound.detail =
            Some(json!({ "phone": phone.masked(), "via": purpose.as_str() }).to_string());
        let mut cleared = self.event(now, "phone_cleared", true, conn.remote.ip());
        cleared.detail =
            Some(json!({ "phone": phone.masked(), "taken_by_verification": true }).to_string());
        let audit = PhoneAudit {
            bound: Some(bound),
            cleared: Some(cleared),
        };
        // The events are written in the transfer's transaction, not through the audit queue:
        // a crash right after the transfer must not lose who took whose number.
        let previous_holder = store
            .transfer_phone(person, phone, now, &audit)
            .await
            .map_err(store_err)?;
        // The person's old number hears that it no longer receives this account's codes, and
        // the number's old holder that the number left their account.
        if let Some(old) = before.as_ref().filter(|old| *old != phone) {
            self.notice(old, Purpose::PhoneChanged, now).await;
        }
        if previous_holder.is_some() {
            self.notice(phone, Purpose::PhoneChanged, now).await;
        }
        if purpose == ChallengePurpose::RecoverPhone {
            let mut ev = self.event(now, "phone_recovered", true, conn.remote.ip());
            ev.person = Some(person.clone());
            ev.detail = Some(json!({ "sessions_revoked": revoked }).to_string());
            self.audit(ev).await?;
        }
        Ok(no_content())
    }

    /// Send a notice (no code). The change it reports has happened: a failed delivery is
    /// logged, not turned into an error for the request that made the change.
    async fn notice(&self, to: &Phone, purpose: Purpose, now: Timestamp) {
        let message = SmsMessage {
            to: to.as_str(),
            code: None,
            purpose,
            at: api::rfc3339(now),
        };
        if let Err(e) = self.sms.send(&message).await {
            tracing::error!(error = %e, to = %to.masked(), purpose = purpose.as_str(), "sms notice failed");
        }
    }

    /// `POST /account/phone`: a code to the new number of the session's person.
    pub async fn phone_bind_start(
        &self,
        session: &ResolvedSession,
        body: Json,
        conn: ConnInfo,
    ) -> ApiResult {
        let phone = body.parse("phone", Phone::parse)?;
        let person = session
            .session
            .person
            .as_ref()
            .ok_or(ApiError::from(Code::NotPermitted))?;
        let now = unix_now();
        let challenge_token = self
            .new_challenge(
                ChallengePurpose::BindPhone,
                Some(session.session.entry),
                Some(person),
                None,
                None,
                Some(phone),
                now,
                conn.remote.ip(),
            )
            .await?;
        let c = self
            .core
            .store
            .challenge(&token::hash(&challenge_token))
            .await
            .map_err(store_err)?
            .ok_or(ApiError::from(Code::Internal))?;
        self.send_code(&c, now).await?;
        Ok(json_response(
            StatusCode::OK,
            &json!({ "challenge": challenge_token }),
        ))
    }
}

/// SHA-256 of the code bound to its challenge, so equal codes of two challenges differ.
fn code_hash(challenge_hash: &str, code: &str) -> Secret {
    Secret(token::hash(&format!("{challenge_hash}:{code}")))
}

/// The session view of CONTRACT section 3.
pub fn session_view(slice: &SessionSlice) -> Value {
    session_view_of(
        &slice.session,
        slice.person.as_ref(),
        slice.enterprise.as_ref(),
    )
}

/// [`session_view`] from the session record and the person and enterprise read beside it.
pub fn session_view_of(
    s: &Session,
    person: Option<&Person>,
    enterprise: Option<&Enterprise>,
) -> Value {
    let name = person
        .map(|p| p.name.clone())
        .or_else(|| enterprise.map(|e| e.name.clone()));
    json!({
        "person": s.person.as_ref().map(IdNumber::as_str),
        "name": name,
        "entry": s.entry.as_str(),
        "enterprise": s.enterprise.as_ref().map(TaxpayerId::as_str),
        "enterprise_name": enterprise.map(|e: &Enterprise| e.name.clone()),
        "role": s.role.map(Role::as_str),
        "agency": s.agency.as_ref().map(TaxpayerId::as_str),
        "must_change_password": person.is_some_and(|p: &Person| p.must_change_password),
        "mfa": s.factor.as_str(),
        "expires_at": api::rfc3339(s.expires_at),
    })
}
