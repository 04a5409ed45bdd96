//! Reloading the policy set when its directory changes.
//!
//! A `notify` watcher feeds a thread that debounces events (a save often writes several times)
//! and calls [`PolicyEngine::reload`]. The directory is re-checked every second, so deleting and
//! recreating it (a deploy that swaps the directory, a `git checkout`) re-arms the watch and
//! reloads; while it is missing, the last good set stays active.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};

use super::{AuthzError, PolicyEngine};

/// Quiet time after the last change before reloading.
pub const DEBOUNCE: Duration = Duration::from_millis(300);
/// Reload at the latest this long after the first change of a burst.
const MAX_DELAY: Duration = Duration::from_secs(2);
/// How often the directory's identity is re-checked.
const POLL: Duration = Duration::from_secs(1);

enum Msg {
    Changed,
    Stop,
}

/// Stops watching when dropped.
pub struct PolicyWatcher {
    stop: Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for PolicyWatcher {
    fn drop(&mut self) {
        let _ = self.stop.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The identity of a directory, to notice that it was replaced. The inode alone is not enough:
/// a directory deleted and recreated at once often gets its inode back, and the kernel dropped
/// the watch with the old one. The change time tells them apart (it also moves when entries are
/// added or removed, which only costs a harmless re-watch before a reload that is due anyway).
fn identity(dir: &Path) -> Option<(u64, i64, i64)> {
    let meta = std::fs::metadata(dir).ok()?;
    if !meta.is_dir() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((meta.ino(), meta.ctime(), meta.ctime_nsec()))
    }
    #[cfg(not(unix))]
    {
        meta.created()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| (0, d.as_secs() as i64, i64::from(d.subsec_nanos())))
    }
}

/// Starts watching the engine's directory; changes reload the engine.
pub fn watch(engine: Arc<PolicyEngine>) -> Result<PolicyWatcher, AuthzError> {
    let dir: PathBuf = engine.dir().to_path_buf();
    let (tx, rx) = mpsc::channel::<Msg>();
    let events = tx.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(event) = res
            && !event.kind.is_access()
        {
            let _ = events.send(Msg::Changed);
        }
    })
    .map_err(|e| AuthzError::Watch {
        dir: dir.display().to_string(),
        message: e.to_string(),
    })?;

    let mut watched = identity(&dir);
    if watched.is_some() {
        watcher
            .watch(&dir, RecursiveMode::Recursive)
            .map_err(|e| AuthzError::Watch {
                dir: dir.display().to_string(),
                message: e.to_string(),
            })?;
    }

    let thread = std::thread::Builder::new()
        .name("policy-watch".to_string())
        .spawn(move || {
            // (first change of the burst, last change)
            let mut pending: Option<(Instant, Instant)> = None;
            let mut next_poll = Instant::now() + POLL;
            loop {
                let now = Instant::now();
                if now >= next_poll {
                    next_poll = now + POLL;
                    let current = identity(&dir);
                    if current != watched {
                        let _ = watcher.unwatch(&dir);
                        if current.is_some() {
                            if let Err(e) = watcher.watch(&dir, RecursiveMode::Recursive) {
                                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the policy directory yet");
                            }
                        } else {
                            tracing::warn!(dir = %dir.display(), "policy directory is gone; keeping the last good set");
                        }
                        watched = current;
                        pending.get_or_insert((now, now));
                    }
                }
                let wait = match pending {
                    Some((first, last)) => (last + DEBOUNCE)
                        .min(first + MAX_DELAY)
                        .saturating_duration_since(now),
                    None => POLL,
                }
                .min(next_poll.saturating_duration_since(now));
                match rx.recv_timeout(wait) {
                    Ok(Msg::Changed) => {
                        let now = Instant::now();
                        pending = Some(match pending {
                            Some((first, _)) => (first, now),
                            None => (now, now),
                        });
                    }
                    Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                    Err(RecvTimeoutError::Timeout) => {}
                }
                if let Some((first, last)) = pending {
                    let now = Instant::now();
                    if now >= last + DEBOUNCE || now >= first + MAX_DELAY {
                        pending = None;
                        // Errors are recorded by the engine (status, counters, log).
                        let _ = engine.reload();
                    }
                }
            }
        })
        .map_err(|e| AuthzError::Watch {
            dir: "policy-watch thread".to_string(),
            message: e.to_string(),
        })?;
    Ok(PolicyWatcher {
        stop: tx,
        thread: Some(thread),
    })
}
