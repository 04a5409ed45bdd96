//! Audit: every decision (allow and deny) and security event becomes an [`AuditEvent`],
//! appended to the local [`journal`] (so a crash of the process cannot lose it), then queued
//! and written to the store in batches by one background task.
//!
//! A full queue never loses events silently. The choice is back-pressure with a bound: a request
//! whose event cannot be queued within [`ENQUEUE_WAIT`] is refused (503 `store_unavailable`) and
//! counted, because forwarding a tax request whose decision cannot be recorded would be worse
//! than refusing it; the queue only fills when the store cannot keep up or is down, which is
//! when requests fail closed anyway. Batches that fail to write are retried, never dropped,
//! while the process lives; on shutdown the queue is drained.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use taxgate_store::{AUDIT_SLICE_REFRESH_SECS, AnyStore, AuditEvent, AuditSlice, Store};
use tokio::sync::mpsc;

use crate::health::StoreHealth;
use crate::metrics::Counter;

pub mod journal;
use journal::Journal;

/// How long a request waits for room in a full queue before it is refused.
pub const ENQUEUE_WAIT: Duration = Duration::from_secs(1);
/// Events written per store round trip, at most.
const BATCH: usize = 512;
/// After the first event of a batch, how long the writer lets more arrive before writing. Each
/// write is one transaction, whose commit rewrites the table's and indexes' last pages whatever
/// the batch size; writing every event as it came (batches of 1–10 under load) cost the SQLite
/// thread a quarter of the gateway's CPU at 8,500 requests/s. Requests never wait for this:
/// they only wait for room in the queue.
const LINGER: Duration = Duration::from_millis(10);

/// Events the writer has committed to the store.
pub static AUDIT_WRITTEN: Counter = Counter::new(
    "taxgate_audit_events_written_total",
    "Audit events written to the store.",
);
/// Requests refused with [`QueueFull`] because the queue stayed full.
pub static AUDIT_REFUSED: Counter = Counter::new(
    "taxgate_audit_queue_full_total",
    "Requests refused because the audit queue stayed full (nothing was forwarded for them).",
);
/// Batch writes that failed; the writer retries each until it succeeds.
pub static AUDIT_WRITE_FAILURES: Counter = Counter::new(
    "taxgate_audit_write_failures_total",
    "Failed audit batch writes (retried until they succeed).",
);

/// The event could not be recorded (the journal failed, or the queue stayed full): the request
/// it belongs to must not go on.
#[derive(Debug)]
pub struct QueueFull;

/// An event on its way to the store, with the journal segment that holds it.
type Queued = (AuditEvent, Option<u64>);

/// The sending side of the audit log: records events (journaled first, when a journal is
/// configured) and hands them to the writer task. Clones share the queue, the journal and the id
/// sequence.
#[derive(Clone)]
pub struct Audit {
    tx: mpsc::Sender<Queued>,
    journal: Option<Journal>,
    /// Prefix unique to this process, so ids are unique across instances without a syscall
    /// per request.
    prefix: Arc<str>,
    counter: Arc<AtomicU64>,
}

impl Audit {
    /// Start the writer task. With `journal_dir`, every event is journaled there before
    /// [`Audit::record`] returns (see [`journal`]); `None` only for tests and benches of the
    /// writer itself.
    pub fn start(
        store: AnyStore,
        capacity: usize,
        health: StoreHealth,
        journal_dir: Option<&std::path::Path>,
    ) -> std::io::Result<(Audit, AuditWriter)> {
        let prefix = crate::authn::token::new_id()
            .ok()
            .and_then(|id| id.get(..12).map(str::to_string))
            .unwrap_or_else(|| format!("{:012x}", std::process::id()));
        let journal = journal_dir
            .map(|dir| Journal::open(dir, &prefix))
            .transpose()?;
        let (tx, rx) = mpsc::channel(capacity);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let handle = tokio::spawn(writer(store, rx, stopped, health, journal.clone()));
        Ok((
            Audit {
                tx,
                journal,
                prefix: prefix.into(),
                counter: Arc::new(AtomicU64::new(0)),
            },
            AuditWriter { stop, handle },
        ))
    }

    /// A new decision/audit id (also sent upstream as `x-taxgate-decision`).
    pub fn next_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}{:012x}", self.prefix, n)
    }

    /// Journal an event and queue it for the store, waiting up to [`ENQUEUE_WAIT`] for room.
    /// Once this returned `Ok`, a crash of the process no longer loses the event. Room in the
    /// queue is taken first, so an event that is refused was never journaled either.
    pub async fn record(&self, event: AuditEvent) -> Result<(), QueueFull> {
        let permit = match self.tx.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Full(())) => {
                match tokio::time::timeout(ENQUEUE_WAIT, self.tx.reserve()).await {
                    Ok(Ok(permit)) => permit,
                    _ => {
                        AUDIT_REFUSED.inc();
                        tracing::error!("audit queue full: refusing the request");
                        return Err(QueueFull);
                    }
                }
            }
            Err(mpsc::error::TrySendError::Closed(())) => {
                AUDIT_REFUSED.inc();
                return Err(QueueFull);
            }
        };
        let segment = match &self.journal {
            Some(j) => match j.append(&event).await {
                Ok(n) => Some(n),
                Err(_) => {
                    AUDIT_REFUSED.inc();
                    return Err(QueueFull);
                }
            },
            None => None,
        };
        permit.send((event, segment));
        Ok(())
    }

    /// Events waiting in the queue for the writer.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// The writer task; [`AuditWriter::finish`] stops it after writing everything queued.
pub struct AuditWriter {
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<()>,
}

impl AuditWriter {
    /// Close the queue (later events are refused), write what it holds, and wait up to `within`.
    pub async fn finish(self, within: Duration) -> bool {
        let _ = self.stop.send(());
        tokio::time::timeout(within, self.handle).await.is_ok()
    }
}

/// The entity slices this writer has reported whole to the store, each with the decision time
/// it reported (the slice's `last_seen` as stored). A whole slice is reported again once a
/// decision [`AUDIT_SLICE_REFRESH_SECS`] later than that uses it. Events that name their slice
/// by hash only are reported only when flagged `refresh` (the store then moves the stored
/// slice's last use up, creating nothing); a session flags one at least every
/// `SLICE_RESEND_SECS` (half the refresh interval) of its decisions, after the first event of
/// the cached session carried it whole (see `ResolvedSession::audit_slice`). So every written
/// decision's slice has a stored last use less than one and a half refresh intervals before
/// the decision's own time, however long events waited in the queue or for the store;
/// retention keeps slices for the refresh interval plus an hour beyond that (see
/// `Store::purge_audit`). Bounded: an evicted or expired hash is only reported again sooner.
fn written_slices() -> moka::sync::Cache<Arc<str>, i64> {
    moka::sync::Cache::builder()
        .max_capacity(100_000)
        .time_to_live(Duration::from_secs(AUDIT_SLICE_REFRESH_SECS.unsigned_abs()))
        .build()
}

/// The slices of `batch` to report: those not reported yet, or last reported for a decision
/// at least the refresh interval before one of this batch, each once with the latest time an
/// event of the batch used it.
fn new_slices(
    batch: &[AuditEvent],
    written: &moka::sync::Cache<Arc<str>, i64>,
) -> Vec<(AuditSlice, i64)> {
    let mut out: Vec<(AuditSlice, i64)> = Vec::new();
    for e in batch {
        let Some(s) = &e.slice else { continue };
        if let Some((o, seen)) = out.iter_mut().find(|(o, _)| o.hash == s.hash) {
            *seen = (*seen).max(e.at);
            if o.json.is_none() && s.json.is_some() {
                *o = s.clone();
            }
        } else if s.json.is_some()
            && written
                .get(&s.hash)
                .is_none_or(|reported| e.at >= reported + AUDIT_SLICE_REFRESH_SECS)
        {
            out.push((s.clone(), e.at));
        } else if s.json.is_none() && s.refresh {
            // The session paces these (one per `SLICE_RESEND_SECS` of its decisions): always
            // written, however many sessions this writer has seen.
            out.push((s.clone(), e.at));
        }
    }
    out
}

async fn writer(
    store: AnyStore,
    mut rx: mpsc::Receiver<Queued>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    health: StoreHealth,
    journal: Option<Journal>,
) {
    let written = written_slices();
    let mut queued: Vec<Queued> = Vec::with_capacity(BATCH);
    let mut batch: Vec<AuditEvent> = Vec::with_capacity(BATCH);
    let mut segments: Vec<u64> = Vec::with_capacity(BATCH);
    let mut stopping = false;
    loop {
        if stopping {
            if rx.recv_many(&mut queued, BATCH).await == 0 {
                break;
            }
        } else {
            tokio::select! {
                n = rx.recv_many(&mut queued, BATCH) => if n == 0 { break },
                _ = &mut stop => {
                    // No new events from here on; what is buffered is still written.
                    rx.close();
                    stopping = true;
                    continue;
                }
            }
        }
        if !stopping && queued.len() < BATCH {
            tokio::time::sleep(LINGER).await;
            while queued.len() < BATCH {
                match rx.try_recv() {
                    Ok(e) => queued.push(e),
                    Err(_) => break,
                }
            }
        }
        for (event, segment) in queued.drain(..) {
            batch.push(event);
            segments.extend(segment);
        }
        let slices = new_slices(&batch, &written);
        write_batch(&store, &slices, &batch, &health).await;
        if let Some(j) = &journal {
            j.shipped(segments.drain(..));
        }
        // Only once the write succeeded (write_batch retries until it does).
        for (s, seen) in slices {
            written.insert(s.hash, seen);
        }
        batch.clear();
    }
    if let Some(j) = &journal {
        j.close();
    }
}

async fn write_batch(
    store: &AnyStore,
    slices: &[(AuditSlice, i64)],
    batch: &[AuditEvent],
    health: &StoreHealth,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match store.append_audit_with_slices(slices, batch).await {
            Ok(()) => {
                AUDIT_WRITTEN.add(batch.len() as u64);
                return;
            }
            Err(e) => {
                AUDIT_WRITE_FAILURES.inc();
                health.mark_down();
                tracing::error!(error = %e, events = batch.len(), "audit write failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(at: i64, slice: Option<&AuditSlice>) -> AuditEvent {
        AuditEvent {
            slice: slice.cloned(),
            ..AuditEvent::new(format!("e{at}"), at, "declare", true)
        }
    }

    fn slice(hash: &str) -> AuditSlice {
        AuditSlice {
            hash: hash.into(),
            json: Some("{}".into()),
            refresh: false,
        }
    }

    /// Each slice a batch uses is reported once, with its latest use in the batch, unless
    /// every use is within the refresh interval of the decision time it was last reported
    /// for.
    #[test]
    fn a_batch_reports_each_unreported_slice_once_with_its_latest_use() {
        let (a, b, c) = (slice("a"), slice("b"), slice("c"));
        let d = slice("d");
        let written = written_slices();
        // c was reported for a decision at 40, d for one a refresh interval before 45.
        written.insert(c.hash.clone(), 40);
        written.insert(d.hash.clone(), 45 - AUDIT_SLICE_REFRESH_SECS);
        let batch = [
            event(10, Some(&a)),
            event(30, Some(&b)),
            event(25, Some(&a)),
            event(5, Some(&a)),
            event(40 + AUDIT_SLICE_REFRESH_SECS - 1, Some(&c)),
            event(44, Some(&d)),
            event(50, None),
            event(45, Some(&d)),
            event(41, Some(&d)),
        ];
        let reported: Vec<(String, i64)> = new_slices(&batch, &written)
            .into_iter()
            .map(|(s, at)| (s.hash.to_string(), at))
            .collect();
        assert_eq!(
            reported,
            [
                ("a".to_string(), 25),
                ("b".to_string(), 30),
                ("d".to_string(), 45)
            ],
            "c is within the refresh interval of its report; d's decision at 45 is not"
        );
    }

    /// An event naming its slice by hash only never reports it (there is nothing to store),
    /// but a later use in the same batch still counts for the slice reported with it.
    #[test]
    fn a_slice_named_by_hash_only_is_reported_by_an_event_that_carries_it() {
        let whole = slice("e");
        let named = AuditSlice {
            json: None,
            ..whole.clone()
        };
        let written = written_slices();
        let batch = [
            event(10, Some(&named)),
            event(20, Some(&whole)),
            event(30, Some(&named)),
        ];
        let reported: Vec<(String, i64, bool)> = new_slices(&batch, &written)
            .into_iter()
            .map(|(s, at)| (s.hash.to_string(), at, s.json.is_some()))
            .collect();
        assert_eq!(reported, [("e".to_string(), 30, true)]);
        assert!(new_slices(&[event(40, Some(&named))], &written).is_empty());
    }

    /// A refreshing event names its slice for the store to move its last use up: reported
    /// (hash only) whatever the writer remembers, and a whole copy in the same batch wins.
    #[test]
    fn a_refreshing_event_is_reported_by_hash_and_a_whole_copy_wins() {
        let whole = slice("r");
        let refresh = AuditSlice {
            json: None,
            refresh: true,
            ..whole.clone()
        };
        let written = written_slices();
        written.insert(whole.hash.clone(), 1_000);
        let reported: Vec<(String, i64, bool, bool)> =
            new_slices(&[event(1_001, Some(&refresh))], &written)
                .into_iter()
                .map(|(s, at)| (s.hash.to_string(), at, s.json.is_some(), s.refresh))
                .collect();
        assert_eq!(reported, [("r".to_string(), 1_001, false, true)]);
        let batch = [event(2_000, Some(&refresh)), event(1_990, Some(&whole))];
        let reported: Vec<(String, i64, bool)> = new_slices(&batch, &written_slices())
            .into_iter()
            .map(|(s, at)| (s.hash.to_string(), at, s.json.is_some()))
            .collect();
        assert_eq!(reported, [("r".to_string(), 2_000, true)]);
    }
}
