//! Session resolution on the hot path: token -> SHA-256 -> moka -> (miss) one store query. The
//! cache keeps each session's record and slice facts; the Cedar entities (and the last decision
//! per action) stay built for the most recently used sessions only ([`Sessions::entities`]).
//!
//! Caches never extend access (DESIGN principle 5):
//! - every narrowing write publishes an [`Invalidation`] (this instance at once, others through
//!   PostgreSQL LISTEN/NOTIFY), and the matching entries are dropped before the next request;
//! - a load that raced with an invalidation is used for its one request but not cached (the
//!   `epoch` check), so a stale slice can never be put back after the invalidation;
//! - a cache hit is also checked against the invalidations numbered since it was loaded (the
//!   [`InvalidationLog`]): moka's `invalidate_entries_if` alone does not guarantee that the next
//!   `get` misses (its predicates are retired by a housekeeping pass that may not have seen an
//!   entry written just before them), which let one request in ~50 000 use the identity a
//!   switch had just replaced (soak, 2026-11-27);
//! - an entry is checked against the store's row at least every `cache_ttl_secs` (the backstop
//!   behind the invalidations): a row that changed in any way but the activity time replaces
//!   it, one that did not keeps it, with its remembered decisions and built entities;
//! - validity periods and expiry are compared with `now` on every request, by the policies.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use taxgate_store::{
    AnyStore, AuditSlice, Invalidation, Session, SessionSlice, Store, StoreError, Timestamp,
};

use crate::authn::token;
use taxgate_policy::{AuthzError, Decision, EntitySlice, RequestFacts, SliceFacts};

/// How often (at most) a session's activity is written to the store.
const TOUCH_INTERVAL_SECS: i64 = 60;

/// How many recent invalidations a cache hit can be checked against; a hit loaded before the
/// oldest one kept is reloaded.
const INVALIDATION_LOG_LEN: usize = 4096;

/// Forwarded identity: the person's ID number (absent in the legacy enterprise login).
pub static HEADER_PERSON: HeaderName = HeaderName::from_static("x-taxgate-person");
/// Forwarded identity: the taxpayer id of the enterprise acted for, if any.
pub static HEADER_ENTERPRISE: HeaderName = HeaderName::from_static("x-taxgate-enterprise");
/// Forwarded identity: the role in that enterprise, if any.
pub static HEADER_ROLE: HeaderName = HeaderName::from_static("x-taxgate-role");
/// Forwarded identity: the login entry of the session; always present.
pub static HEADER_ENTRY: HeaderName = HeaderName::from_static("x-taxgate-entry");
/// Forwarded identity: the tax-service agency an agent acts through, if any.
pub static HEADER_AGENCY: HeaderName = HeaderName::from_static("x-taxgate-agency");
/// Forwarded with the identity: the id of the audit record of the decision that let the request
/// through.
pub static HEADER_DECISION: HeaderName = HeaderName::from_static("x-taxgate-decision");

/// A live session as the cache keeps it: the session record and the few facts its entity slice
/// is built from. Kept small on purpose (issue 8: 100 thousand cached sessions within 200 MiB):
/// the Cedar entities of a session take about 10 KiB, so they live in a separate, bounded cache
/// of the most recently used sessions ([`Sessions::entities`]); the identity headers are made
/// per request from the record.
pub struct ResolvedSession {
    /// The session record.
    pub session: Session,
    facts: SliceFacts,
    /// Unique per resolution: the key of this session's entities in the hot cache. A session
    /// reloaded after an invalidation gets a new one, so entities of the old state are never
    /// used for it.
    generation: u64,
    last_seen: AtomicI64,
    touched: AtomicI64,
    /// When the store last had exactly this record and these facts (the load, then each
    /// backstop check, [`Sessions::resolve`]).
    verified_at: AtomicI64,
    /// Seconds after `verified_at` at which the next check is due: between half the backstop
    /// and the whole of it, drawn per check, so that sessions loaded together (after a restart)
    /// do not all come due in the same second.
    check_in: AtomicI64,
    /// Every invalidation up to this epoch is known not to concern this entry.
    checked_epoch: AtomicU64,
    /// The hash of this session's entity slice in audit form, once a build has made it
    /// (`None` inside: it could not be serialised). The slice itself is not kept here: at 1.2
    /// KiB a session it would be most of a cached session's memory.
    slice_hash: std::sync::OnceLock<Option<Arc<str>>>,
    /// The decision time at which an audit event of this session last carried the whole slice
    /// or refreshed it (see [`ResolvedSession::audit_slice`]).
    slice_sent: AtomicI64,
    /// The decision time at which an audit event of this session last carried the whole slice.
    slice_whole: AtomicI64,
    /// The last decisions made on this session, with the time they hold for.
    memo: Mutex<Vec<Memo>>,
}

static GENERATION: AtomicU64 = AtomicU64::new(0);

impl ResolvedSession {
    /// `epoch`: the invalidation epoch read before `slice` was loaded.
    pub(crate) fn new(slice: SessionSlice, epoch: u64) -> Self {
        let (session, facts) = SliceFacts::split(slice);
        let last_seen = session.last_seen_at;
        ResolvedSession {
            session,
            facts,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            last_seen: AtomicI64::new(last_seen),
            touched: AtomicI64::new(last_seen),
            verified_at: AtomicI64::new(i64::MIN),
            check_in: AtomicI64::new(0),
            checked_epoch: AtomicU64::new(epoch),
            slice_hash: std::sync::OnceLock::new(),
            slice_sent: AtomicI64::new(i64::MIN),
            slice_whole: AtomicI64::new(i64::MIN),
            memo: Mutex::new(Vec::new()),
        }
    }

    /// The session's public id (the Cedar entity id, in audit records); not a credential.
    pub fn id(&self) -> &str {
        &self.session.id
    }

    /// The facts beside the record (binding or agreement in use, flags).
    pub fn facts(&self) -> &SliceFacts {
        &self.facts
    }

    /// The identity headers of CONTRACT section 3 (all but `x-taxgate-decision`), with room for
    /// the decision id and the assertion.
    pub fn identity_headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let s = &self.session;
        let mut out = Vec::with_capacity(7);
        let mut push = |name: &HeaderName, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                out.push((name.clone(), v));
            }
        };
        if let Some(p) = &s.person {
            push(&HEADER_PERSON, p.as_str());
        }
        if let Some(e) = &s.enterprise {
            push(&HEADER_ENTERPRISE, e.as_str());
        }
        if let Some(a) = &s.agency {
            push(&HEADER_AGENCY, a.as_str());
        }
        if let Some(r) = s.role {
            out.push((HEADER_ROLE.clone(), HeaderValue::from_static(r.as_str())));
        }
        out.push((
            HEADER_ENTRY.clone(),
            HeaderValue::from_static(s.entry.as_str()),
        ));
        out
    }

    /// Whether `slice`, read from the store now, says exactly what this entry was built from,
    /// apart from the activity time (which this and other instances move on every use): then a
    /// fresh load would build the same entities and make the same decisions.
    fn describes(&self, slice: &SessionSlice) -> bool {
        let (mut session, facts) = SliceFacts::split(slice.clone());
        session.last_seen_at = self.session.last_seen_at;
        session == self.session && facts == self.facts
    }

    fn matches(&self, inv: &Invalidation) -> bool {
        let s = &self.session;
        match inv {
            Invalidation::Session { id } => s.id == *id,
            Invalidation::Person { id_number } => s.person.as_ref() == Some(id_number),
            Invalidation::Binding { id } => s.binding_id.as_deref() == Some(id),
            Invalidation::Enterprise { taxpayer_id } => {
                s.enterprise.as_ref() == Some(taxpayer_id) || s.agency.as_ref() == Some(taxpayer_id)
            }
            Invalidation::Agreement { id } => s.agreement_id.as_deref() == Some(id),
            Invalidation::All => true,
        }
    }
}

/// What a decision on a session needs beyond the cached record: its Cedar entities, and the
/// same as JSON with a hash for the audit log (decision replay). Built on demand (only when no
/// remembered decision answers) and kept for the most recently used sessions only.
pub struct Prepared {
    /// The Cedar entities decisions on this session are made over.
    pub entities: EntitySlice,
    /// `None` when the slice could not be serialized: its decisions are recorded as not
    /// replayable.
    pub replay: Option<AuditSlice>,
}

/// Actions whose last decision a [`ResolvedSession`] keeps.
const MEMO_ACTIONS: usize = 8;

/// A decision and the span of time it holds for.
struct Memo {
    action: Box<str>,
    legacy_login_until: Option<Timestamp>,
    version: Arc<str>,
    /// The decision was made at `from` and is the decision at every second in `from..until`.
    from: Timestamp,
    until: Timestamp,
    decision: Arc<Decision>,
}

impl ResolvedSession {
    /// The decision last made for `action` on this session, if it answers for these inputs:
    /// the same policy set (`version` is a hash of its content), the same legacy-login
    /// deadline, and a time within the span the policies' clock gave it
    /// ([`taxgate_policy::ActiveSet::decide_until`]: until the next binding, agreement or
    /// factor-age boundary). A decision is a pure function of the session's slice (fixed for
    /// this resolution: an invalidation makes a new one), the action, the set and those facts,
    /// so this is exactly the decision that would be made afresh. Only the gate asks
    /// ([`crate::gate`]), and only the gate decides.
    pub fn remembered(
        &self,
        action: &str,
        facts: &RequestFacts,
        version: &Arc<str>,
    ) -> Option<Arc<Decision>> {
        let memo = self
            .memo
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        memo.iter()
            .find(|m| &*m.action == action)
            .filter(|m| {
                m.legacy_login_until == facts.legacy_login_until
                    && (m.from..m.until).contains(&facts.now)
                    && (Arc::ptr_eq(&m.version, version) || m.version == *version)
            })
            .map(|m| m.decision.clone())
    }

    /// Keep `decision`, made for `action` with `facts` and holding until `until`, for
    /// [`ResolvedSession::remembered`] (at most [`MEMO_ACTIONS`] actions; the oldest slot is
    /// reused).
    pub fn remember(
        &self,
        action: &str,
        facts: &RequestFacts,
        until: Timestamp,
        decision: &Arc<Decision>,
    ) {
        let mut memo = self
            .memo
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = Memo {
            action: action.into(),
            legacy_login_until: facts.legacy_login_until,
            version: decision.version.clone(),
            from: facts.now,
            until,
            decision: Arc::clone(decision),
        };
        match memo.iter().position(|m| &*m.action == action) {
            Some(i) => {
                if let Some(slot) = memo.get_mut(i) {
                    *slot = entry;
                }
            }
            None if memo.len() < MEMO_ACTIONS => memo.push(entry),
            None => {
                if let Some(slot) = memo.first_mut() {
                    *slot = entry;
                }
            }
        }
    }

    /// The slice an audit event of this session at `now` carries: the whole slice from
    /// `prepared` when a decision built or fetched it, else only its hash, flagged to refresh
    /// the stored slice's last use when no event of this entry did for [`SLICE_RESEND_SECS`].
    /// `None` asks the caller for the built slice (then call again with it): no event of this
    /// entry has carried it whole yet. So the slice is stored once, by the first event of the
    /// entry, and the audit writer moves its last use up at least every `SLICE_RESEND_SECS` of
    /// the session's decisions, which retention's margin covers.
    pub fn audit_slice(
        &self,
        prepared: Option<&Prepared>,
        now: Timestamp,
    ) -> Option<Option<AuditSlice>> {
        if let Some(p) = prepared {
            self.slice_sent.fetch_max(now, Ordering::Relaxed);
            self.slice_whole.fetch_max(now, Ordering::Relaxed);
            return Some(p.replay.clone());
        }
        let hash = self.slice_hash.get()?;
        let Some(hash) = hash else {
            // Not serialisable: not replayable, nothing to send.
            return Some(None);
        };
        // Never carried whole by this entry, or not for an hour: whole again, so that a slice
        // row lost after all (a restore, a failover that lost a commit) comes back.
        let whole = self.slice_whole.load(Ordering::Relaxed);
        if whole == i64::MIN || !(0..SLICE_WHOLE_SECS).contains(&now.saturating_sub(whole)) {
            return None;
        }
        let sent = self.slice_sent.load(Ordering::Relaxed);
        let refresh = now.saturating_sub(sent) >= SLICE_RESEND_SECS;
        if refresh {
            self.slice_sent.fetch_max(now, Ordering::Relaxed);
        }
        Some(Some(AuditSlice {
            hash: hash.clone(),
            json: None,
            refresh,
        }))
    }
}

/// How long (decision time) audit events of a session may name its slice by hash only before
/// one of them refreshes its last use.
pub const SLICE_RESEND_SECS: i64 = taxgate_store::AUDIT_SLICE_REFRESH_SECS / 2;

/// How often (decision time) a cached session's events carry its slice whole again.
pub const SLICE_WHOLE_SECS: i64 = 3_600;

/// Build a session's [`Prepared`] (what [`Sessions::entities`] caches).
pub fn prepare(s: &ResolvedSession) -> Result<Prepared, AuthzError> {
    SLICES_BUILT.inc();
    let entities = EntitySlice::for_session(&s.session, &s.facts)?;
    let replay = match entities.replay_json() {
        Ok((hash, json)) => Some(AuditSlice {
            hash: hash.into(),
            json: Some(json.into()),
            refresh: false,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "cannot record the entity slice; decisions of this session will not be replayable");
            None
        }
    };
    let _ = s
        .slice_hash
        .set(replay.as_ref().map(|r| Arc::clone(&r.hash)));
    Ok(Prepared { entities, replay })
}

/// The outcome of presenting a token.
pub enum Lookup {
    /// A live session; this presentation counts as its activity.
    Live(Arc<ResolvedSession>),
    /// Unknown, malformed or revoked (logged out): `login_required`.
    Missing,
    /// Past the idle or absolute timeout: `session_expired`.
    Expired,
}

/// The latest invalidations, numbered by epoch (1, 2, ...), oldest first.
#[derive(Default)]
struct InvalidationLog {
    entries: VecDeque<(u64, Invalidation)>,
}

impl InvalidationLog {
    /// Record `inv` as epoch `epoch` (one more than the last), forgetting the oldest if full.
    fn push(&mut self, epoch: u64, inv: Invalidation) {
        if self.entries.len() >= INVALIDATION_LOG_LEN {
            self.entries.pop_front();
        }
        self.entries.push_back((epoch, inv));
    }

    /// Whether an entry that knows every invalidation up to `checked` is still good: `Ok(newest
    /// epoch checked)` when none of the later ones `concerns` it, `Err(())` when one does or
    /// when the log no longer reaches back to `checked + 1` (fail safe: reload).
    fn check_since(
        &self,
        checked: u64,
        concerns: impl Fn(&Invalidation) -> bool,
    ) -> Result<u64, ()> {
        let Some(&(oldest, _)) = self.entries.front() else {
            return Err(());
        };
        if oldest > checked.saturating_add(1) {
            return Err(());
        }
        let mut newest = checked;
        for (epoch, inv) in self.entries.iter().filter(|(e, _)| *e > checked) {
            if concerns(inv) {
                return Err(());
            }
            newest = *epoch;
        }
        Ok(newest)
    }
}

/// The cache key: SHA-256 of the token (its hex form is what the store looks up).
type Key = [u8; 32];

/// The session cache in front of the store: resolves tokens, keeps the Cedar entities of the
/// most recently used sessions, and never serves an entry that a later invalidation concerns.
pub struct Sessions {
    store: AnyStore,
    cache: moka::future::Cache<Key, Arc<ResolvedSession>>,
    /// The Cedar entities of the most recently used sessions, by [`ResolvedSession`]
    /// generation; `None`: built for every decision.
    entities: Option<moka::sync::Cache<u64, Arc<Prepared>>>,
    /// Bumped on every invalidation; a load that saw another epoch is not cached.
    epoch: AtomicU64,
    /// The invalidations behind `epoch`; bumped and appended under this one lock.
    log: Mutex<InvalidationLog>,
    idle_timeout: i64,
    /// [`ResolvedSession::verified_at`] older than this is checked against the store.
    backstop: i64,
    /// Spread the checks over the second half of the backstop (off in tests that count them).
    jitter: bool,
    /// Activity not yet written: session id -> latest time. Written in one transaction a
    /// second ([`Sessions::write_activity`]) instead of one spawned `UPDATE` per session.
    activity: Mutex<std::collections::HashMap<String, Timestamp>>,
}

/// Sessions read from the store into the cache (misses, and entries whose row changed).
pub static SESSIONS_LOADED: crate::metrics::Counter = crate::metrics::Counter::new(
    "taxgate_session_loads_total",
    "Sessions read from the store and built into the session cache (cache misses, and entries whose stored row changed).",
);

/// Cached sessions checked against the store by the backstop and kept.
pub static SESSIONS_REVALIDATED: crate::metrics::Counter = crate::metrics::Counter::new(
    "taxgate_session_revalidations_total",
    "Cached sessions checked against the store after session.cache_ttl_secs and kept, their row unchanged.",
);

/// Session entity slices built: on every load into the cache (a miss, a changed row), and
/// when a decision no remembered one answered, or an audit event's hourly whole slice, found
/// the entry's entities no longer in the hot entity cache.
pub static SLICES_BUILT: crate::metrics::Counter = crate::metrics::Counter::new(
    "taxgate_session_slices_built_total",
    "Session entity slices built (on each load into the session cache, and when a decision or an audit event needed them and the hot entity cache no longer held them).",
);

/// How often the pending session activity is written to the store.
pub const ACTIVITY_FLUSH: Duration = Duration::from_secs(1);

impl Sessions {
    /// `capacity` sessions cached, the entities of `entity_capacity` of them (0: none); a cached
    /// session is checked against the store at least every `ttl` and dropped after
    /// `idle_timeout_secs` without use.
    pub fn new(
        store: AnyStore,
        capacity: u64,
        entity_capacity: u64,
        ttl: Duration,
        idle_timeout_secs: u64,
    ) -> Arc<Self> {
        // moka refuses idle times beyond about a thousand years; a year is as good as forever.
        let idle = Duration::from_secs(idle_timeout_secs.min(365 * 86_400));
        // No time to live: the backstop re-checks an entry against its row instead of dropping
        // it, so its memo survives. A session unused for the idle timeout has expired anyway.
        let cache = moka::future::Cache::builder()
            .max_capacity(capacity)
            .time_to_idle(idle)
            .support_invalidation_closures()
            .build();
        let entities = (entity_capacity > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(entity_capacity)
                .time_to_live(ttl)
                .build()
        });
        Arc::new(Sessions {
            store,
            cache,
            entities,
            epoch: AtomicU64::new(0),
            log: Mutex::new(InvalidationLog::default()),
            idle_timeout: i64::try_from(idle_timeout_secs).unwrap_or(i64::MAX),
            backstop: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
            jitter: true,
            activity: Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// Write the pending session activity every [`ACTIVITY_FLUSH`], for as long as the task
    /// runs (the server keeps it, and writes what is left at shutdown).
    pub fn start_activity_writer(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ACTIVITY_FLUSH);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(sessions) = weak.upgrade() else {
                    return;
                };
                sessions.write_activity().await;
            }
        })
    }

    /// Write the activity recorded since the last write, in one store transaction. A failed
    /// write is logged and its entries kept for the next one (unless newer ones replaced them).
    pub async fn write_activity(&self) {
        let pending: Vec<(String, Timestamp)> = {
            let mut map = self
                .activity
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            map.drain().collect()
        };
        if pending.is_empty() {
            return;
        }
        if let Err(e) = self.store.touch_sessions(&pending).await {
            tracing::warn!(error = %e, sessions = pending.len(), "cannot record session activity");
            let mut map = self
                .activity
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (id, at) in pending {
                let slot = map.entry(id).or_insert(at);
                *slot = (*slot).max(at);
            }
        }
    }

    /// Resolve a client-presented token at time `now`.
    pub async fn resolve(&self, token_str: &str, now: Timestamp) -> Result<Lookup, StoreError> {
        if !token::well_formed(token_str) {
            return Ok(Lookup::Missing);
        }
        let key: Key = Sha256::digest(token_str.as_bytes()).into();
        if let Some(hit) = self.cache.get(&key).await {
            if !self.still_current(&hit) {
                self.cache.invalidate(&key).await;
            } else {
                match self.check(&hit, now) {
                    // Idle by this instance's view: another instance may have seen activity
                    // since, so only the store can say; fall through to a fresh load.
                    Lookup::Expired if hit.session.expires_at > now => {}
                    // A clock that went back (an age below zero) counts as due, so a clock
                    // step never stretches the backstop.
                    Lookup::Live(_)
                        if (0..hit.check_in.load(Ordering::Relaxed)).contains(
                            &now.saturating_sub(hit.verified_at.load(Ordering::Relaxed)),
                        ) =>
                    {
                        self.touch(&hit, now);
                        return Ok(Lookup::Live(hit));
                    }
                    // Due for the backstop: the store's row decides whether it stays.
                    Lookup::Live(_) => {
                        if let Some(outcome) = self.recheck(key, hit, now).await? {
                            return Ok(outcome);
                        }
                    }
                    other => {
                        self.cache.invalidate(&key).await;
                        return Ok(other);
                    }
                }
            }
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let slice = self.store.session_slice(&hex::encode(key)).await?;
        self.load(key, slice, epoch, now).await
    }

    /// The backstop for a live `hit`: re-read its row and keep it when the row still says
    /// what it was built from, or replace it. `None`: an invalidation raced with the read, so
    /// the caller loads it afresh.
    async fn recheck(
        &self,
        key: Key,
        hit: Arc<ResolvedSession>,
        now: Timestamp,
    ) -> Result<Option<Lookup>, StoreError> {
        let epoch = self.epoch.load(Ordering::Acquire);
        match self.store.session_slice(&hex::encode(key)).await? {
            Some(slice) if hit.describes(&slice) => {
                SESSIONS_REVALIDATED.inc();
                self.verified(&hit, now);
                // Another instance may have seen it used since.
                hit.last_seen
                    .fetch_max(slice.session.last_seen_at, Ordering::Relaxed);
                // An invalidation that raced with the read is seen here, as on any hit.
                if self.still_current(&hit) {
                    self.touch(&hit, now);
                    return Ok(Some(Lookup::Live(hit)));
                }
                self.cache.invalidate(&key).await;
                Ok(None)
            }
            // Changed behind the invalidations' back (or gone): a new entry.
            other => {
                self.cache.invalidate(&key).await;
                self.load(key, other, epoch, now).await.map(Some)
            }
        }
    }

    /// A cache entry made from `slice`, read from the store after invalidation epoch `epoch`
    /// was current: cached when it is live and no invalidation came in between.
    async fn load(
        &self,
        key: Key,
        slice: Option<SessionSlice>,
        epoch: u64,
        now: Timestamp,
    ) -> Result<Lookup, StoreError> {
        let Some(slice) = slice else {
            return Ok(Lookup::Missing);
        };
        SESSIONS_LOADED.inc();
        let resolved = Arc::new(ResolvedSession::new(slice, epoch));
        self.verified(&resolved, now);
        // A slice the policy engine cannot represent is refused, never guessed at; building it
        // now also fills the hot entity cache for the decision that follows.
        if let Err(e) = self.entities(&resolved) {
            tracing::error!(error = %e, "cannot build the entity slice of a session");
            return Err(StoreError::Internal(format!("entity slice: {e}")));
        }
        let outcome = self.check(&resolved, now);
        if let Lookup::Live(_) = outcome {
            if self.epoch.load(Ordering::Acquire) == epoch {
                self.cache.insert(key, resolved.clone()).await;
            }
            self.touch(&resolved, now);
        }
        Ok(outcome)
    }

    /// Record that the store had exactly `s` at `now`, and when to check it next.
    fn verified(&self, s: &ResolvedSession, now: Timestamp) {
        let check_in = if self.jitter && self.backstop >= 2 {
            // splitmix64 of the entry and the time: cheap, and different per entry and check.
            let mut z = s
                .generation
                .wrapping_mul(0xD1B5_4A32_D192_ED03)
                .wrapping_add(now.cast_unsigned())
                .wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let half = self.backstop / 2;
            self.backstop - i64::try_from(z % (half.cast_unsigned() + 1)).unwrap_or(0)
        } else {
            self.backstop
        };
        s.check_in.store(check_in, Ordering::Relaxed);
        s.verified_at.store(now, Ordering::Relaxed);
    }

    /// The session with public id `id` as the store has it now (never from the cache), checked
    /// live at `now` like [`Sessions::resolve`]. For questions about a session named in a signed
    /// assertion (AuthZEN): a revocation on any instance is seen at once. Not counted as
    /// activity: the client did not present its token.
    pub async fn resolve_id(&self, id: &str, now: Timestamp) -> Result<Lookup, StoreError> {
        let Some(slice) = self.store.session_slice_by_id(id).await? else {
            return Ok(Lookup::Missing);
        };
        let resolved = Arc::new(ResolvedSession::new(
            slice,
            self.epoch.load(Ordering::Acquire),
        ));
        Ok(self.check(&resolved, now))
    }

    /// The Cedar entities (and their audit form) of a resolved session: from the hot cache, or
    /// built (and cached).
    pub fn entities(&self, s: &ResolvedSession) -> Result<Arc<Prepared>, AuthzError> {
        match &self.entities {
            // Concurrent misses of one session build it once.
            Some(hot) => hot
                .try_get_with(s.generation, || prepare(s).map(Arc::new))
                .map_err(|e| AuthzError::Slice(e.to_string())),
            None => prepare(s).map(Arc::new),
        }
    }

    /// Whether no invalidation since `hit` was loaded (or last checked) concerns it.
    fn still_current(&self, hit: &ResolvedSession) -> bool {
        let checked = hit.checked_epoch.load(Ordering::Acquire);
        if checked == self.epoch.load(Ordering::Acquire) {
            return true;
        }
        let log = self
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match log.check_since(checked, |inv| hit.matches(inv)) {
            Ok(newest) => {
                hit.checked_epoch.fetch_max(newest, Ordering::AcqRel);
                true
            }
            Err(()) => false,
        }
    }

    fn check(&self, s: &Arc<ResolvedSession>, now: Timestamp) -> Lookup {
        let session = &s.session;
        if session.revoked_at.is_some() {
            return Lookup::Missing;
        }
        if session.expires_at <= now {
            return Lookup::Expired;
        }
        let last_seen = s.last_seen.load(Ordering::Relaxed);
        if now.saturating_sub(last_seen) >= self.idle_timeout {
            return Lookup::Expired;
        }
        Lookup::Live(s.clone())
    }

    /// Record activity: in memory on every request, in the store at most once a minute.
    fn touch(&self, s: &Arc<ResolvedSession>, now: Timestamp) {
        s.last_seen.fetch_max(now, Ordering::Relaxed);
        let touched = s.touched.load(Ordering::Relaxed);
        if now - touched >= TOUCH_INTERVAL_SECS
            && s.touched
                .compare_exchange(touched, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let mut map = self
                .activity
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let slot = map.entry(s.id().to_string()).or_insert(now);
            *slot = (*slot).max(now);
        }
    }

    /// Drop every cached session the invalidation concerns. Effective for the very next lookup.
    pub fn invalidate(&self, inv: &Invalidation) {
        {
            let mut log = self
                .log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
            log.push(epoch, inv.clone());
        }
        // moka's own invalidation frees the memory; `still_current` is what makes it exact.
        if matches!(inv, Invalidation::All) {
            self.cache.invalidate_all();
            if let Some(hot) = &self.entities {
                hot.invalidate_all();
            }
            return;
        }
        let inv = inv.clone();
        if let Err(e) = self
            .cache
            .invalidate_entries_if(move |_, v| v.matches(&inv))
        {
            // Cannot happen with support_invalidation_closures(); fail safe regardless.
            tracing::error!(error = %e, "targeted invalidation failed; dropping the whole cache");
            self.cache.invalidate_all();
        }
    }

    /// Apply the store's invalidations (this instance's writes, before they return, and on
    /// PostgreSQL every other instance's as they arrive). The hook holds only a weak reference,
    /// so the store does not keep the cache alive.
    pub fn follow_invalidations(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        self.store
            .on_invalidation(Arc::new(move |inv: &Invalidation| {
                if let Some(sessions) = weak.upgrade() {
                    sessions.invalidate(inv);
                }
            }));
    }

    /// Sessions in the cache (moka's count, which may lag recent inserts and evictions).
    pub fn cached(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Sessions whose Cedar entities are in the hot cache.
    pub fn entities_cached(&self) -> u64 {
        self.entities.as_ref().map_or(0, |c| c.entry_count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::decide_session;
    use taxgate_policy::PolicyEngine;
    use taxgate_policy::cases::{BindingFacts, SessionFacts, Time, session_slice};
    use taxgate_policy::testing::copy_policies;
    use taxgate_store::model::Role;

    const UNTIL: i64 = 1_800_000_000;

    fn handler_until(until: i64) -> ResolvedSession {
        let facts = SessionFacts::confirmed_enterprise(
            Role::TaxHandler,
            BindingFacts {
                valid_until: Some(Time::Seconds(until)),
                ..BindingFacts::default()
            },
        );
        ResolvedSession::new(session_slice(&facts).unwrap(), 0)
    }

    /// The decision on `session`, counting in `built` how often its slice had to be built
    /// (each build is a fresh decision).
    fn decide(
        engine: &PolicyEngine,
        session: &ResolvedSession,
        action: &str,
        facts: &RequestFacts,
        built: &std::cell::Cell<u32>,
    ) -> Arc<Decision> {
        decide_session(engine, session, action, facts, || {
            built.set(built.get() + 1);
            prepare(session).map(Arc::new)
        })
        .unwrap()
        .0
    }

    /// The memo answers only within the span the policies' clock gives a decision: up to the
    /// binding's end, not at it; another action and a reloaded set decide afresh.
    #[test]
    fn remembered_decisions_never_outlive_their_inputs() {
        let dir = copy_policies();
        let engine = PolicyEngine::load(dir.path()).unwrap();
        let session = handler_until(UNTIL);
        let prepared = prepare(&session).unwrap();
        let built = std::cell::Cell::new(0);
        let long_before = RequestFacts::at(UNTIL - 3_600);
        let before = RequestFacts::at(UNTIL - 1);
        let first = decide(&engine, &session, "declare", &long_before, &built);
        assert!(first.allowed);
        assert_eq!(built.get(), 1);
        // An hour later, a second before the binding ends: the same decision, not made again.
        assert_eq!(decide(&engine, &session, "declare", &before, &built), first);
        assert_eq!(
            built.get(),
            1,
            "the clock lets the decision stand until UNTIL"
        );
        // Earlier than it was made: decided afresh (the span starts at the decision).
        decide(
            &engine,
            &session,
            "declare",
            &RequestFacts::at(UNTIL - 7_200),
            &built,
        );
        assert_eq!(built.get(), 2);
        // The binding ends at UNTIL: that second is decided again and refused.
        let at_end = decide(
            &engine,
            &session,
            "declare",
            &RequestFacts::at(UNTIL),
            &built,
        );
        assert_eq!(built.get(), 3);
        assert!(!at_end.allowed);
        assert_eq!(at_end.reason.as_deref(), Some("binding_expired"));
        // Another action is its own entry.
        assert!(decide(&engine, &session, "declare", &before, &built).allowed);
        assert!(!decide(&engine, &session, "personal_tax", &before, &built).allowed);
        // Another legacy deadline is another input.
        let n = built.get();
        let legacy = RequestFacts {
            legacy_login_until: Some(UNTIL - 10),
            ..before
        };
        decide(&engine, &session, "declare", &legacy, &built);
        assert_eq!(built.get(), n + 1);
        // A reload that forbids declaring is seen at once, for the very same inputs.
        std::fs::write(
            dir.path().join("zz_no_declare.cedar"),
            "@id(\"test.no_declare\")\n@reason(\"not_permitted\")\n\
             forbid (principal, action == Action::\"declare\", resource);\n",
        )
        .unwrap();
        engine.reload().unwrap();
        let after = decide(&engine, &session, "declare", &before, &built);
        assert!(!after.allowed);
        assert_ne!(after.version, first.version);
        assert_eq!(
            *after,
            engine.decide(&prepared.entities, "declare", &before)
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 12, ..Default::default() })]

        /// Issue 17: whatever the order of requests (actions, seconds crossing the binding's
        /// end back and forth, the legacy deadline, a reload in between), the memo's answer is
        /// the uncached decision's.
        #[test]
        fn the_memo_answers_as_the_uncached_decision(
            steps in proptest::collection::vec(
                (
                    proptest::sample::select(vec!["declare", "invoice", "query", "view_session", "personal_tax"]),
                    -2i64..3,
                    proptest::option::of(proptest::sample::select(vec![UNTIL - 5, UNTIL + 5])),
                    proptest::bool::weighted(0.05),
                ),
                1..24,
            ),
        ) {
            let dir = copy_policies();
            let engine = PolicyEngine::load(dir.path()).unwrap();
            let session = handler_until(UNTIL);
            let prepared = prepare(&session).unwrap();
            let built = std::cell::Cell::new(0);
            let mut forbidding = false;
            for (action, offset, legacy, reload) in steps {
                if reload {
                    forbidding = !forbidding;
                    let path = dir.path().join("zz_no_declare.cedar");
                    if forbidding {
                        std::fs::write(&path, "@id(\"test.no_declare\")\n@reason(\"not_permitted\")\nforbid (principal, action == Action::\"declare\", resource);\n").unwrap();
                    } else {
                        std::fs::remove_file(&path).unwrap();
                    }
                    engine.reload().unwrap();
                }
                let facts = RequestFacts { now: UNTIL + offset, legacy_login_until: legacy };
                let memo = decide(&engine, &session, action, &facts, &built);
                let fresh = engine.decide(&prepared.entities, action, &facts);
                proptest::prop_assert_eq!(&*memo, &fresh, "{} at {:?}", action, facts);
            }
        }
    }

    /// The first event of an entry carries the whole slice; later ones name it by hash, one
    /// of them at least every [`SLICE_RESEND_SECS`] of the session's decisions flagged to
    /// refresh its stored last use.
    #[test]
    fn events_name_the_slice_by_hash_and_refresh_it_every_resend_interval() {
        let session = handler_until(UNTIL);
        assert!(
            session.audit_slice(None, 100).is_none(),
            "never built: the caller must build it"
        );
        let prepared = prepare(&session).unwrap();
        assert!(
            session.audit_slice(None, 100).is_none(),
            "built but never carried whole: still the caller's to send"
        );
        let whole = session.audit_slice(Some(&prepared), 100).unwrap().unwrap();
        assert!(whole.json.is_some() && !whole.refresh);
        let named = session
            .audit_slice(None, 100 + SLICE_RESEND_SECS - 1)
            .unwrap()
            .unwrap();
        assert_eq!(named.hash, whole.hash);
        assert!(named.json.is_none() && !named.refresh);
        let due = session
            .audit_slice(None, 100 + SLICE_RESEND_SECS)
            .unwrap()
            .unwrap();
        assert!(due.json.is_none() && due.refresh, "due to refresh");
        let after = session
            .audit_slice(None, 100 + SLICE_RESEND_SECS + 1)
            .unwrap()
            .unwrap();
        assert!(!after.refresh, "the refresh restarts the interval");
        assert!(
            session
                .audit_slice(None, 100 + 2 * SLICE_RESEND_SECS)
                .unwrap()
                .unwrap()
                .refresh
        );
        // An hour after the last whole copy: whole again (a lost row comes back), and a clock
        // that went back before it counts as due too.
        assert!(
            session
                .audit_slice(None, 100 + SLICE_WHOLE_SECS - 1)
                .is_some()
        );
        assert!(session.audit_slice(None, 100 + SLICE_WHOLE_SECS).is_none());
        assert!(session.audit_slice(None, 99).is_none());
        assert!(
            session
                .audit_slice(Some(&prepared), 100 + SLICE_WHOLE_SECS)
                .is_some()
        );
        assert!(
            !session
                .audit_slice(None, 100 + SLICE_WHOLE_SECS + 1)
                .unwrap()
                .unwrap()
                .refresh
        );
        // The same slice built again has the same hash.
        let again = prepare(&session).unwrap();
        assert_eq!(again.replay.as_ref().unwrap().hash, whole.hash);
    }

    fn live(lookup: Lookup) -> Arc<ResolvedSession> {
        let Lookup::Live(s) = lookup else {
            unreachable_in_test("the session is not live")
        };
        s
    }

    #[expect(clippy::panic, reason = "a test fails loudly")]
    fn unreachable_in_test(what: &str) -> ! {
        panic!("{what}")
    }

    /// The backstop (`cache_ttl_secs`) checks a cached session against its row instead of
    /// dropping it: an unchanged row (activity aside) keeps the entry, memo and all; a row that
    /// changed without an invalidation reaching this cache (another writer, a lost NOTIFY) is
    /// seen within one backstop interval, and a revocation too.
    #[tokio::test]
    async fn the_backstop_keeps_an_unchanged_session_and_reloads_a_changed_one() {
        const NOW: i64 = 1_750_000_000;
        const TTL: i64 = 300;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let ours = AnyStore::connect(&url).await.unwrap();
        ours.migrate().await.unwrap();
        ours.bulk_populate(10, 100, NOW - 86_400).await.unwrap();
        let tok = "a".repeat(43);
        let record =
            taxgate_store::fixtures::binding_session("s0".into(), token::hash(&tok), 0, 10, NOW)
                .unwrap();
        ours.create_session(&record).await.unwrap();
        // Another handle on the same database: its writes notify its own hooks, not ours.
        let theirs = AnyStore::connect(&url).await.unwrap();
        let mut sessions = Sessions::new(ours.clone(), 100, 16, Duration::from_secs(300), 1_800);
        Arc::get_mut(&mut sessions).unwrap().jitter = false;
        sessions.follow_invalidations();

        let first = live(sessions.resolve(&tok, NOW + 61).await.unwrap());
        // The first use is past the touch interval: the activity goes to the row.
        sessions.write_activity().await;
        let row = ours
            .session_slice(&token::hash(&tok))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.session.last_seen_at, NOW + 61);
        // A clock that went back is due for the check (the row is unchanged: the same entry,
        // checked at the earlier time), so a clock step never stretches the backstop.
        let back = live(sessions.resolve(&tok, NOW + 60).await.unwrap());
        assert!(Arc::ptr_eq(&first, &back));
        assert_eq!(first.verified_at.load(Ordering::Relaxed), NOW + 60);
        const B: i64 = NOW + 60;
        let within = live(sessions.resolve(&tok, B + TTL - 1).await.unwrap());
        assert!(Arc::ptr_eq(&first, &within));
        // Due for the backstop; only the activity time moved: the same entry.
        let kept = live(sessions.resolve(&tok, B + TTL).await.unwrap());
        assert!(
            Arc::ptr_eq(&first, &kept),
            "an unchanged row keeps the entry"
        );

        // The binding is shortened behind this cache's back.
        let binding = theirs
            .binding(first.session.binding_id.as_deref().unwrap())
            .await
            .unwrap()
            .unwrap();
        let shortened = theirs
            .update_binding(&taxgate_store::BindingUpdate {
                valid_until: Some(NOW + 5_000),
                permissions: binding.permissions.clone(),
                expected: binding,
                reconfirm: false,
                by: "test".into(),
                now: NOW + 400,
            })
            .await
            .unwrap();
        assert_eq!(shortened.valid_until, Some(NOW + 5_000));
        // Not seen before the backstop is due again (the bound it gives) ...
        let stale = live(sessions.resolve(&tok, B + 2 * TTL - 1).await.unwrap());
        assert!(Arc::ptr_eq(&first, &stale));
        // ... and seen when it is: a new entry with the new binding.
        let fresh = live(sessions.resolve(&tok, B + 2 * TTL).await.unwrap());
        assert!(
            !Arc::ptr_eq(&first, &fresh),
            "a changed row replaces the entry"
        );
        assert_eq!(
            fresh.facts().binding.as_ref().unwrap().valid_until,
            Some(NOW + 5_000)
        );
        let again = live(sessions.resolve(&tok, B + 2 * TTL + 1).await.unwrap());
        assert!(Arc::ptr_eq(&fresh, &again), "the new entry is cached");

        // Revoked behind its back: refused once the backstop is due.
        assert!(theirs.revoke_session("s0", NOW + 700).await.unwrap());
        let t = B + 3 * TTL;
        assert!(matches!(
            sessions.resolve(&tok, t).await.unwrap(),
            Lookup::Missing
        ));
        assert!(matches!(
            sessions.resolve(&tok, t + 1).await.unwrap(),
            Lookup::Missing
        ));
    }

    /// Checks are spread over the second half of the backstop, never beyond it.
    #[tokio::test]
    async fn backstop_checks_are_spread_within_the_backstop() {
        let store = AnyStore::connect("sqlite::memory:").await.unwrap();
        let sessions = Sessions::new(store, 10, 0, Duration::from_secs(300), 1_800);
        let mut seen = std::collections::BTreeSet::new();
        for now in 0..2_000 {
            let s = handler_until(UNTIL);
            sessions.verified(&s, UNTIL - now);
            let check_in = s.check_in.load(Ordering::Relaxed);
            assert!((150..=300).contains(&check_in), "{check_in}");
            assert_eq!(s.verified_at.load(Ordering::Relaxed), UNTIL - now);
            seen.insert(check_in);
        }
        assert!(
            seen.len() > 100,
            "spread: {} distinct intervals",
            seen.len()
        );
    }

    fn session(id: &str) -> Invalidation {
        Invalidation::Session { id: id.into() }
    }

    #[test]
    fn a_hit_is_stale_once_a_later_invalidation_concerns_it() {
        let mut log = InvalidationLog::default();
        log.push(1, session("a"));
        log.push(2, session("b"));
        log.push(3, session("c"));
        let is = |id: &'static str| move |inv: &Invalidation| *inv == session(id);
        // Loaded after epoch 1: only 2 and 3 count.
        assert_eq!(log.check_since(1, is("a")), Ok(3));
        assert_eq!(log.check_since(1, is("b")), Err(()));
        assert_eq!(log.check_since(0, is("a")), Err(()));
        assert_eq!(log.check_since(3, is("c")), Ok(3), "nothing after 3");
        assert_eq!(
            log.check_since(2, |_| true),
            Err(()),
            "`All` concerns everyone"
        );
    }

    #[test]
    fn a_hit_older_than_the_log_is_reloaded() {
        let mut log = InvalidationLog::default();
        assert_eq!(
            log.check_since(0, |_| false),
            Err(()),
            "epoch moved, log empty"
        );
        for e in 1..=(INVALIDATION_LOG_LEN as u64 + 10) {
            log.push(e, session("x"));
        }
        assert_eq!(log.entries.len(), INVALIDATION_LOG_LEN);
        assert_eq!(
            log.check_since(5, |_| false),
            Err(()),
            "epochs 6..=10 forgotten"
        );
        assert_eq!(
            log.check_since(10, |_| false),
            Ok(INVALIDATION_LOG_LEN as u64 + 10)
        );
    }
}
