//! SQLite backend: one file (or memory), WAL, foreign keys on, a busy timeout, and write
//! transactions that take the write lock up front (`BEGIN IMMEDIATE`) so two writers queue on
//! the busy timeout instead of failing on a lock upgrade. Invalidations are an in-process
//! broadcast, and a row of `invalidations` written in the same transaction for the other
//! processes on the file (a `taxgate import` beside a running gateway), which every store polls
//! every [`POLL`].

use crate::bus::InvalidationBus;
use crate::error::StoreError;
use crate::records::Invalidation;
use crate::sql_impl::{Dialect, SqlStore, Statements, Tx};
use crate::store_api::StoreResult;
use std::path::Path;
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use sqlx::Sqlite;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};

/// How long a statement waits for another connection's write lock before `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a store looks for invalidations other processes wrote.
const POLL: Duration = Duration::from_millis(250);
/// Invalidation rows older than this are deleted (a process that was away longer than that
/// would have missed nothing it cares about: its caches' TTL is shorter).
const KEEP_SECS: i64 = 3600;

/// The SQLite store. Cheap to clone (a pool handle).
#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    events: InvalidationBus,
    /// Random per process: its own rows in `invalidations` are skipped by its poller.
    instance: std::sync::Arc<str>,
    _poller: std::sync::Arc<PollerGuard>,
}

/// Stops the poller when the last clone of the store goes.
struct PollerGuard {
    _stop: tokio::sync::oneshot::Sender<()>,
}

use crate::sql_impl::unix_now;

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Open `sqlite://path` (the file and its directory are created if missing) or
    /// `sqlite::memory:` (one connection, for tests).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let mut opts = SqliteConnectOptions::from_str(url).map_err(|e| StoreError::Invalid {
            what: "store url".into(),
            reason: format!("`{}` is not a SQLite URL: {e}", redact(url)),
        })?;
        if !memory {
            let file = opts.get_filename().to_path_buf();
            if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                create_dir(dir)?;
            }
            opts = opts
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                // Statement journals (a multi-row audit insert inside its transaction needs one)
                // stay in memory instead of spilling to a temporary file: a fifth of the SQLite
                // thread's time in the audit_write bench went to those writes.
                .pragma("temp_store", "memory")
                // Read pages straight from the OS page cache instead of copying them into each
                // connection's own 2 MiB cache: with a million bindings the cache-miss lookup
                // was 1.58x the thousand-binding figure through read(2), 1.02x mapped
                // (benches/README.md). The pages are the same page cache either way; mapped,
                // they count as the process's file-backed resident memory.
                .pragma("mmap_size", "1073741824");
        }
        opts = opts
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            // No ping before each use: a SQLite connection is a file handle on a local worker
            // thread, not a socket that can go stale, and the ping was a second round trip to
            // that thread for every query.
            .test_before_acquire(false)
            // An in-memory database exists per connection: keep exactly one.
            .max_connections(if memory { 1 } else { 8 })
            .min_connections(if memory { 1 } else { 0 })
            .idle_timeout(if memory {
                None
            } else {
                Some(Duration::from_secs(600))
            })
            .max_lifetime(if memory {
                None
            } else {
                Some(Duration::from_secs(3600))
            })
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        if !planner_is_stable(&pool).await? {
            tracing::warn!(
                "this SQLite was built without SQLITE_ENABLE_QPSG (the repository's \
                 .cargo/config.toml sets it through LIBSQLITE3_FLAGS; a LIBSQLITE3_FLAGS of your \
                 own replaces it, and a system SQLite needs it built in): once the database has \
                 been analysed, every session lookup is planned again on each execution"
            );
        }
        let events = InvalidationBus::new(1024);
        let instance: std::sync::Arc<str> = crate::records::new_id()?.into();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        if !memory {
            tokio::spawn(poll_loop(
                pool.clone(),
                events.clone(),
                instance.clone(),
                stopped,
            ));
        }
        Ok(SqliteStore {
            pool,
            events,
            instance,
            _poller: std::sync::Arc::new(PollerGuard { _stop: stop }),
        })
    }

    /// Close the pool (tests and shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Whether the linked SQLite keeps one plan per statement whatever values are bound (the query
/// planner stability guarantee, `SQLITE_ENABLE_QPSG`, set by the workspace's
/// `.cargo/config.toml`). Without it, on a database with `sqlite_stat4` samples (after
/// `ANALYZE` or `PRAGMA optimize`), binding a new value to a parameter compared with an indexed
/// column expires the statement, and the next step parses and plans it again.
async fn planner_is_stable(pool: &SqlitePool) -> StoreResult<bool> {
    compiled_with(pool, "ENABLE_QPSG").await
}

/// Whether the linked SQLite was compiled with `option` (as `PRAGMA compile_options` names it,
/// without the `SQLITE_` prefix).
async fn compiled_with(pool: &SqlitePool, option: &str) -> StoreResult<bool> {
    let options: Vec<String> = sqlx::query_scalar("PRAGMA compile_options")
        .fetch_all(pool)
        .await?;
    Ok(options.iter().any(|o| o == option))
}

/// Forward other processes' invalidations to this one's bus. Starts from the rows written
/// since this store was opened; a table that does not exist yet (migrations pending) is
/// looked for again on the next tick.
async fn poll_loop(
    pool: SqlitePool,
    events: InvalidationBus,
    instance: std::sync::Arc<str>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let opened = unix_now();
    let mut last: Option<i64> = None;
    let mut pruned = opened;
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(POLL) => {}
        }
        let rows: Result<Vec<(i64, String, String)>, sqlx::Error> = match last {
            Some(seq) => {
                sqlx::query_as(
                    "SELECT seq, src, payload FROM invalidations WHERE seq > $1 ORDER BY seq",
                )
                .bind(seq)
                .fetch_all(&pool)
                .await
            }
            // The first look: what was written since this store opened, up to the newest row
            // now; every later row has a higher `seq` and comes with the next poll.
            None => {
                let newest: Result<i64, sqlx::Error> =
                    sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM invalidations")
                        .fetch_one(&pool)
                        .await;
                match newest {
                    Ok(newest) => {
                        last = Some(newest);
                        sqlx::query_as(
                            "SELECT seq, src, payload FROM invalidations \
                             WHERE at >= $1 AND seq <= $2 ORDER BY seq",
                        )
                        .bind(opened)
                        .bind(newest)
                        .fetch_all(&pool)
                        .await
                    }
                    Err(e) => Err(e),
                }
            }
        };
        let rows = match rows {
            Ok(rows) => rows,
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => {
                tracing::debug!(error = %e, "invalidation poll failed; trying again");
                continue;
            }
        };
        for (seq, src, payload) in rows {
            last = Some(last.map_or(seq, |l| l.max(seq)));
            if *src == *instance {
                continue;
            }
            match serde_json::from_str::<Invalidation>(&payload) {
                Ok(inv) => events.send(inv),
                Err(e) => tracing::warn!(error = %e, "ignoring a malformed invalidation row"),
            }
        }
        let now = unix_now();
        if now - pruned > 300 {
            pruned = now;
            let _ = sqlx::query("DELETE FROM invalidations WHERE at < $1")
                .bind(now - KEEP_SECS)
                .execute(&pool)
                .await;
        }
    }
}

fn create_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        StoreError::Unavailable(format!("cannot create directory `{}`: {e}", dir.display()))
    })
}

/// URLs may carry a password: never echo it.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

impl Dialect for Sqlite {
    const STAFF_AGG: &'static str = "group_concat";

    type Conn<'c> = &'c mut SqliteConnection;
    type Shared<'p> = &'p SqlitePool;

    fn conn(tx: &mut Tx<Sqlite>) -> Self::Conn<'_> {
        &mut **tx
    }

    fn shared(pool: &SqlitePool) -> Self::Shared<'_> {
        pool
    }

    fn statements() -> &'static Statements {
        static STATEMENTS: LazyLock<Statements> =
            LazyLock::new(|| Statements::new(Sqlite::STAFF_AGG));
        &STATEMENTS
    }

    async fn migrate(pool: &SqlitePool) -> StoreResult<()> {
        Ok(sqlx::migrate!("./migrations/sqlite").run(pool).await?)
    }

    /// One table: retention deletes by the `at` index.
    async fn prepare_audit_days(_: &SqlitePool, _: crate::model::Timestamp) -> StoreResult<()> {
        Ok(())
    }

    async fn drop_audit_days(_: &SqlitePool, _: crate::model::Timestamp) -> StoreResult<u64> {
        Ok(0)
    }
}

impl SqlStore for SqliteStore {
    type Db = Sqlite;

    fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn bus(&self) -> &InvalidationBus {
        &self.events
    }

    async fn begin_write(&self) -> StoreResult<Tx<Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// `BEGIN IMMEDIATE` already serialises every writer.
    async fn lock_key(&self, _tx: &mut Tx<Sqlite>, _key: &str) -> StoreResult<()> {
        Ok(())
    }

    /// For the other processes on this file: a row each, committed with the write.
    async fn notify(&self, tx: &mut Tx<Sqlite>, inv: &[Invalidation]) -> StoreResult<()> {
        let now = unix_now();
        for i in inv {
            let payload = serde_json::to_string(i)
                .map_err(|e| StoreError::Internal(format!("cannot encode invalidation: {e}")))?;
            sqlx::query("INSERT INTO invalidations (src, at, payload) VALUES ($1, $2, $3)")
                .bind(&*self.instance)
                .bind(now)
                .bind(payload)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store as _;

    /// The settings the audit writer's and the lookups' figures depend on hold on every
    /// connection of a file database.
    #[tokio::test]
    async fn file_connections_use_wal_memory_statement_journals_and_mmap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let store = SqliteStore::connect(&url).await.expect("connect");
        // Hold several connections at once, so the checks do not all reuse one.
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut conn = store.pool.acquire().await.expect("acquire");
            let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&mut *conn)
                .await
                .expect("journal_mode");
            let temp_store: i64 = sqlx::query_scalar("PRAGMA temp_store")
                .fetch_one(&mut *conn)
                .await
                .expect("temp_store");
            let mmap: i64 = sqlx::query_scalar("PRAGMA mmap_size")
                .fetch_one(&mut *conn)
                .await
                .expect("mmap_size");
            assert_eq!(journal, "wal");
            assert_eq!(temp_store, 2, "temp_store = MEMORY");
            assert_eq!(mmap, 1 << 30);
            held.push(conn);
        }
    }

    /// The bundled SQLite is built with STAT4 and with the planner stability guarantee (the
    /// workspace's `.cargo/config.toml`), so an analysed database does not re-prepare the
    /// session lookup on every execution.
    #[tokio::test]
    async fn the_planner_keeps_one_plan_whatever_is_bound() {
        let store = SqliteStore::connect("sqlite::memory:")
            .await
            .expect("connect");
        assert!(
            compiled_with(&store.pool, "ENABLE_STAT4")
                .await
                .expect("options")
        );
        assert!(planner_is_stable(&store.pool).await.expect("options"));
    }

    /// Migration 0004 gives existing slices the time of their newest decision as their last
    /// use (and a slice no decision uses its first use), so retention after an upgrade keeps
    /// exactly what the old rule kept.
    #[tokio::test]
    async fn upgrade_sets_each_slices_last_use_from_its_decisions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let store = SqliteStore::connect(&url).await.expect("connect");
        sqlx::migrate!("./migrations/sqlite")
            .run_to(3, &store.pool)
            .await
            .expect("migrate to 0003");
        for (hash, first) in [("h1", 100), ("h2", 200)] {
            sqlx::query("INSERT INTO audit_slices (hash, slice, first_seen) VALUES ($1, '{}', $2)")
                .bind(hash)
                .bind(first)
                .execute(&store.pool)
                .await
                .expect("slice");
        }
        for (id, at) in [("e1", 150), ("e2", 900), ("e3", 400)] {
            sqlx::query(
                "INSERT INTO audit_events (id, at, action, allowed, policies, slice_hash) \
                 VALUES ($1, $2, 'declare', 1, '[]', 'h1')",
            )
            .bind(id)
            .bind(at)
            .execute(&store.pool)
            .await
            .expect("event");
        }
        store.migrate().await.expect("migrate to the latest");
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT hash, last_seen FROM audit_slices ORDER BY hash")
                .fetch_all(&store.pool)
                .await
                .expect("slices");
        assert_eq!(rows, [("h1".to_string(), 900), ("h2".to_string(), 200)]);
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_events' \
             AND sql IS NOT NULL ORDER BY name",
        )
        .fetch_all(&store.pool)
        .await
        .expect("indexes");
        assert_eq!(indexes, ["audit_events_at"]);

        // A slice inserted by an instance still on the code before 0004 has no last use (0):
        // retention goes by its first use instead of deleting it at once.
        sqlx::query(
            "INSERT INTO audit_slices (hash, slice, first_seen) VALUES ('old', '{}', 5000)",
        )
        .execute(&store.pool)
        .await
        .expect("old-style slice");
        let slack = crate::AUDIT_SLICE_SLACK_SECS;
        let purged = store.purge_audit(5_000 + slack).await.expect("purge");
        assert_eq!((purged.events, purged.slices), (3, 2), "e1-e3, h1 and h2");
        let purged = store.purge_audit(5_001 + slack).await.expect("purge");
        assert_eq!(
            (purged.events, purged.slices),
            (0, 1),
            "the old-style slice"
        );
    }
}
