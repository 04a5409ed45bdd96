//! PostgreSQL backend. Every write that narrows access also runs
//! `pg_notify('taxgate_invalidate', payload)` in its own transaction, so the notification leaves
//! exactly when the change is committed; a background task LISTENs on a dedicated connection and
//! forwards other instances' notifications to this instance's subscribers. After the listening
//! connection was lost it publishes `All`, because notifications sent meanwhile are gone.

mod audit_days;

use crate::bus::InvalidationBus;
use crate::error::StoreError;
use crate::model::Timestamp;
use crate::records::Invalidation;
use crate::sql_impl::{Dialect, SqlStore, Statements, Tx};
use crate::store_api::StoreResult;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::Postgres;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use tokio::sync::oneshot;

/// The notification channel shared by every instance.
pub const CHANNEL: &str = "taxgate_invalidate";

/// The PostgreSQL store. Cheap to clone; the listener task ends with the last clone.
#[derive(Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    events: InvalidationBus,
    /// Random per process: our own notifications come back through LISTEN and are skipped
    /// (they were already published locally at commit).
    instance: Arc<str>,
    _listener: Arc<ListenerGuard>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

struct ListenerGuard {
    _stop: oneshot::Sender<()>,
}

#[derive(Serialize, Deserialize)]
struct Payload {
    src: String,
    inv: Invalidation,
}

impl PgStore {
    /// Connect to `postgres://…` / `postgresql://…` and start the invalidation listener.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let opts: PgConnectOptions = url.parse().map_err(|e| StoreError::Invalid {
            what: "store url".into(),
            reason: format!(
                "`{}` is not a PostgreSQL URL: {e}",
                crate::sqlite::redact(url)
            ),
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts)
            .await?;
        Self::with_pool(pool).await
    }

    async fn with_pool(pool: PgPool) -> Result<Self, StoreError> {
        let events = InvalidationBus::new(1024);
        let instance: Arc<str> = crate::records::new_id()?.into();
        // Listen before returning, so no notification committed after connect() is missed.
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(CHANNEL).await?;
        let (stop_tx, stop_rx) = oneshot::channel();
        tokio::spawn(listen_loop(
            listener,
            events.clone(),
            instance.clone(),
            stop_rx,
        ));
        Ok(PgStore {
            pool,
            events,
            instance,
            _listener: Arc::new(ListenerGuard { _stop: stop_tx }),
        })
    }

    /// Close the pool (tests and shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn listen_loop(
    mut listener: PgListener,
    events: InvalidationBus,
    instance: Arc<str>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let next = tokio::select! {
            _ = &mut stop => return,
            next = listener.try_recv() => next,
        };
        match next {
            Ok(Some(n)) => match serde_json::from_str::<Payload>(n.payload()) {
                Ok(p) if *p.src == *instance => {}
                Ok(p) => {
                    events.send(p.inv);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring malformed invalidation notification");
                }
            },
            Ok(None) => {
                // The connection dropped and try_recv has already reconnected and re-LISTENed
                // (eager reconnect). Whatever was sent meanwhile is lost: drop every cache.
                tracing::warn!("invalidation listener lost its connection; reconnecting");
                events.send(Invalidation::All);
            }
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "invalidation listener failed; reconnecting");
                // Re-LISTEN (which reconnects) until it works, then drop every cache: anything
                // sent while we were away is lost.
                loop {
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    match listener.listen(CHANNEL).await {
                        Ok(()) => {
                            events.send(Invalidation::All);
                            break;
                        }
                        Err(sqlx::Error::PoolClosed) => return,
                        Err(e) => tracing::warn!(error = %e, "invalidation listener still down"),
                    }
                }
            }
        }
    }
}

impl Dialect for Postgres {
    const STAFF_AGG: &'static str = "string_agg";

    type Conn<'c> = &'c mut PgConnection;
    type Shared<'p> = &'p PgPool;

    fn conn(tx: &mut Tx<Postgres>) -> Self::Conn<'_> {
        &mut **tx
    }

    fn shared(pool: &PgPool) -> Self::Shared<'_> {
        pool
    }

    fn statements() -> &'static Statements {
        static STATEMENTS: LazyLock<Statements> =
            LazyLock::new(|| Statements::new(Postgres::STAFF_AGG));
        &STATEMENTS
    }

    async fn migrate(pool: &PgPool) -> StoreResult<()> {
        Ok(sqlx::migrate!("./migrations/postgres").run(pool).await?)
    }

    async fn prepare_audit_days(pool: &PgPool, now: Timestamp) -> StoreResult<()> {
        audit_days::prepare(pool, now).await
    }

    async fn drop_audit_days(pool: &PgPool, before: Timestamp) -> StoreResult<u64> {
        audit_days::drop_before(pool, before).await
    }
}

impl SqlStore for PgStore {
    type Db = Postgres;

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn bus(&self) -> &InvalidationBus {
        &self.events
    }

    async fn begin_write(&self) -> StoreResult<Tx<Postgres>> {
        Ok(self.pool.begin().await?)
    }

    /// A transaction-scoped advisory lock on `key` (released at commit or rollback).
    async fn lock_key(&self, tx: &mut Tx<Postgres>, key: &str) -> StoreResult<()> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(key)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    async fn notify(&self, tx: &mut Tx<Postgres>, inv: &[Invalidation]) -> StoreResult<()> {
        for i in inv {
            let payload = serde_json::to_string(&Payload {
                src: self.instance.to_string(),
                inv: i.clone(),
            })
            .map_err(|e| StoreError::Internal(format!("cannot encode invalidation: {e}")))?;
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(payload)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}
