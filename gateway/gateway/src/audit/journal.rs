//! The audit journal: every event is appended to a local file before the request it records
//! goes on (forwarded, or answered), and shipped to the store behind it by the batch writer.
//!
//! What it guarantees: a decision whose request reached an upstream is in the journal's file,
//! written with `write(2)` (so in the kernel's page cache) before the request left. A crash of
//! the process (`kill -9`, a panic, the OOM killer) loses nothing: the next start of any
//! instance on the same directory ships what the store does not hold yet. A power loss or a
//! kernel crash can lose what the kernel had not written back yet: by default up to the
//! kernel's dirty-page expiry (`vm.dirty_expire_centisecs`, 30 s on most systems) of events
//! not yet written to the store, which the store writer normally does within tens of
//! milliseconds. No `fsync` per request: it would cost a disk flush per request.
//!
//! Layout: files `<instance>-<n>.journal` of JSON lines, one event a line. Each instance
//! holds an exclusive lock on every file it still has to ship (`flock`, released by the kernel
//! when the process dies), writes the newest one, starts a new one every
//! [`SEGMENT_BYTES`] or [`SEGMENT_SECS`], and deletes a file once all its events are in the
//! store. At start, every file nobody holds a lock on is an orphan of a dead process: its
//! events are inserted (idempotently: the store ignores ids it has) and the file deleted.
//!
//! Cost per event: one JSON serialisation and one `write(2)` of its line into the page cache,
//! under a mutex (a few µs; measured in `benches/benches/journal.rs`). A journal thread with
//! group commit was tried first: the same throughput, but two thread wake-ups (~47 µs) on
//! every request's path.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use taxgate_store::{AnyStore, AuditEvent, Store};

/// A journal file is closed (and a new one begun) past this size...
const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// ...or this age, so shipped files are deleted soon and the directory stays small.
const SEGMENT_SECS: u64 = 10;

/// The journal could not take the event: the request must not go on.
#[derive(Debug)]
pub struct NotJournaled;

/// The files this instance has still to ship: events written and not yet in the store, and
/// whether the file is closed (no more events go to it).
struct Segment {
    file: File,
    path: PathBuf,
    pending: usize,
    closed: bool,
}

struct Shared {
    segments: Mutex<HashMap<u64, Segment>>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Segment>> {
        self.segments.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writer side, shared by every [`crate::audit::Audit`] clone.
#[derive(Clone)]
pub struct Journal {
    writer: Arc<Mutex<SegmentWriter>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").finish_non_exhaustive()
    }
}

impl Journal {
    /// Open the journal of instance `instance` in `dir` (created, mode 0700).
    pub fn open(dir: &Path, instance: &str) -> std::io::Result<Journal> {
        create_dir(dir)?;
        let shared = Arc::new(Shared {
            segments: Mutex::new(HashMap::new()),
        });
        let mut writer = SegmentWriter {
            dir: dir.to_path_buf(),
            instance: instance.to_string(),
            shared: shared.clone(),
            current: None,
            next: 0,
        };
        writer.rotate()?;
        Ok(Journal {
            writer: Arc::new(Mutex::new(writer)),
            shared,
        })
    }

    /// Append `event`; returns once it is in the file, with the segment it went to.
    pub async fn append(&self, event: &AuditEvent) -> Result<u64, NotJournaled> {
        let mut line = serde_json::to_vec(event).map_err(|_| NotJournaled)?;
        line.push(b'\n');
        self.writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write(&line)
    }

    /// The store now holds these events (one segment number each): files whose events are
    /// all shipped and that take no more are deleted.
    pub fn shipped(&self, segments: impl IntoIterator<Item = u64>) {
        let mut counts: HashMap<u64, usize> = HashMap::new();
        for s in segments {
            *counts.entry(s).or_default() += 1;
        }
        let mut map = self.shared.lock();
        for (s, n) in counts {
            if let Some(seg) = map.get_mut(&s) {
                seg.pending = seg.pending.saturating_sub(n);
            }
        }
        remove_done(&mut map);
    }

    /// Everything was shipped and no more events come: delete what is done.
    pub fn close(&self) {
        let mut map = self.shared.lock();
        for seg in map.values_mut() {
            seg.closed = true;
        }
        remove_done(&mut map);
    }

    /// Events written and not yet shipped (for tests and the shutdown log).
    pub fn pending(&self) -> usize {
        self.shared.lock().values().map(|s| s.pending).sum()
    }
}

/// Delete every closed segment with nothing left to ship.
fn remove_done(map: &mut HashMap<u64, Segment>) {
    let done: Vec<u64> = map
        .iter()
        .filter(|(_, s)| s.closed && s.pending == 0)
        .map(|(n, _)| *n)
        .collect();
    for n in done {
        if let Some(seg) = map.remove(&n) {
            if let Err(e) = std::fs::remove_file(&seg.path) {
                tracing::warn!(error = %e, file = %seg.path.display(), "cannot delete a shipped journal file");
            }
            drop(seg.file);
        }
    }
}

struct SegmentWriter {
    dir: PathBuf,
    instance: String,
    shared: Arc<Shared>,
    /// The segment being written: its number, file (a second handle: the map keeps the
    /// locked one), size and start.
    current: Option<(u64, File, u64, Instant)>,
    next: u64,
}

impl SegmentWriter {
    fn rotate(&mut self) -> std::io::Result<()> {
        let n = self.next;
        self.next += 1;
        // Created under a name recovery ignores, locked, then renamed: another instance's
        // recovery can never take (and delete) a file this one is about to write.
        let path = self.dir.join(format!("{}-{n:08}.journal", self.instance));
        let fresh = self
            .dir
            .join(format!("{}-{n:08}.journal.new", self.instance));
        let file = open_new(&fresh)?;
        file.try_lock()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        std::fs::rename(&fresh, &path)?;
        let writing = file.try_clone()?;
        let mut map = self.shared.lock();
        if let Some((old, ..)) = self.current.take()
            && let Some(seg) = map.get_mut(&old)
        {
            seg.closed = true;
        }
        map.insert(
            n,
            Segment {
                file,
                path,
                pending: 0,
                closed: false,
            },
        );
        remove_done(&mut map);
        drop(map);
        self.current = Some((n, writing, 0, Instant::now()));
        Ok(())
    }

    /// One line into the current file (a new one when it is full or old).
    fn write(&mut self, line: &[u8]) -> Result<u64, NotJournaled> {
        let full = self.current.as_ref().is_none_or(|(_, _, size, started)| {
            *size >= SEGMENT_BYTES || started.elapsed() >= Duration::from_secs(SEGMENT_SECS)
        });
        if full && let Err(e) = self.rotate() {
            tracing::error!(error = %e, dir = %self.dir.display(), "cannot start a new audit journal file");
        }
        let written = match &mut self.current {
            Some((n, file, size, _)) => match file.write_all(line) {
                Ok(()) => {
                    *size += line.len() as u64;
                    Ok(*n)
                }
                Err(e) => Err(e),
            },
            None => Err(std::io::Error::other("no journal file")),
        };
        match written {
            Ok(n) => {
                if let Some(seg) = self.shared.lock().get_mut(&n) {
                    seg.pending += 1;
                }
                Ok(n)
            }
            Err(e) => {
                // Fail closed: this request does not go on. A partly written line is skipped
                // by the recovery (it does not parse). The file takes no more events; it goes
                // once what it holds is shipped.
                tracing::error!(error = %e, "audit journal write failed: refusing");
                if let Some((n, ..)) = self.current.take() {
                    let mut map = self.shared.lock();
                    if let Some(seg) = map.get_mut(&n) {
                        seg.closed = true;
                    }
                    remove_done(&mut map);
                }
                Err(NotJournaled)
            }
        }
    }
}

fn create_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

fn open_new(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.append(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

/// Ship the journal files in `dir` that no live process holds (orphans of a crash) to the
/// store, then delete them. Returns how many events were read (ids the store already had are
/// ignored by it). Lines that do not parse (a write cut by the crash) are skipped and counted
/// in the log.
pub async fn recover(dir: &Path, store: &AnyStore) -> Result<usize, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(format!("cannot read `{}`: {e}", dir.display())),
    };
    let mut recovered = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "journal") {
            continue;
        }
        let Ok(mut file) = OpenOptions::new().read(true).write(true).open(&path) else {
            continue;
        };
        if file.try_lock().is_err() {
            continue; // a live instance's
        }
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut text)
            .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        let mut events = Vec::new();
        let mut torn = 0;
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice::<AuditEvent>(line) {
                Ok(e) => events.push(e),
                Err(_) => torn += 1,
            }
        }
        for chunk in events.chunks(512) {
            store
                .append_recovered_audit(chunk)
                .await
                .map_err(|e| format!("cannot ship `{}` to the store: {e}", path.display()))?;
        }
        recovered += events.len();
        tracing::warn!(
            file = %path.display(),
            events = events.len(),
            unreadable_lines = torn,
            "shipped an audit journal left by a process that ended without shipping it"
        );
        // Gone already: another instance starting beside this one shipped it too (the store
        // ignores ids it has).
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot delete `{}`: {e}", path.display())),
        }
    }
    Ok(recovered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_are_in_the_file_before_append_returns_and_shipped_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), "inst").unwrap();
        let e = AuditEvent::new("ev1".to_string(), 1, "declare", true);
        let seg = j.append(&e).await.unwrap();
        let file = dir.path().join(format!("inst-{seg:08}.journal"));
        let text = std::fs::read_to_string(&file).unwrap();
        let back: AuditEvent = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(back.id, "ev1");
        assert_eq!(j.pending(), 1);
        // A second handle cannot lock it: the live instance holds it.
        let other = File::open(&file).unwrap();
        assert!(other.try_lock().is_err());
        j.shipped([seg]);
        assert_eq!(j.pending(), 0);
        // Still the current file: kept until it is closed.
        assert!(file.exists());
    }

    #[tokio::test]
    async fn recovery_ships_orphans_skips_torn_lines_and_leaves_live_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = AnyStore::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        // A live instance's file: locked, so never touched.
        let live = Journal::open(dir.path(), "live").unwrap();
        live.append(&AuditEvent::new("live1".to_string(), 1, "declare", true))
            .await
            .unwrap();
        // An orphan: two events, one of them already in the store, and a line cut short.
        let orphan = dir.path().join("dead-00000000.journal");
        let mut text = String::new();
        for id in ["dead1", "dead2"] {
            let e = AuditEvent::new(id.to_string(), 2, "query", true);
            text.push_str(&serde_json::to_string(&e).unwrap());
            text.push('\n');
        }
        text.push_str("{\"id\":\"dead3\",\"at\"");
        std::fs::write(&orphan, text).unwrap();
        store
            .append_audit(&[AuditEvent::new("dead1".to_string(), 2, "query", true)])
            .await
            .unwrap();
        assert_eq!(recover(dir.path(), &store).await.unwrap(), 2);
        assert!(!orphan.exists(), "a shipped orphan is deleted");
        assert_eq!(store.count_audit().await.unwrap(), 2, "dead1 once, dead2");
        let live_files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(live_files.len(), 1, "the live instance's file stays");
        assert_eq!(live.pending(), 1);
    }
}
