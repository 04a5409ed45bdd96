//! Whether the store is reachable, known on the request path at the cost of one atomic load.
//!
//! While the store is down, revocations cannot reach this instance (nor other instances' NOTIFY),
//! and decisions cannot be audited, so every routed request is refused with 503
//! `store_unavailable` even when the session is cached: fail closed. A background ping every
//! second notices the outage and the recovery; any store error seen elsewhere marks it down at
//! once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use taxgate_store::{AnyStore, Store};

const PING_EVERY: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// The store's reachability as this instance last saw it. Clones share it.
#[derive(Clone)]
pub struct StoreHealth(Arc<AtomicBool>);

impl StoreHealth {
    /// Up, until a store call or a ping fails.
    pub fn new() -> Self {
        StoreHealth(Arc::new(AtomicBool::new(true)))
    }

    /// Whether the store answered the last call or ping; routed requests are refused while it is
    /// false.
    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// A store call failed: refuse until a ping succeeds again.
    pub fn mark_down(&self) {
        if self.0.swap(false, Ordering::Relaxed) {
            tracing::error!("store unreachable: refusing routed requests until it answers");
        }
    }

    fn mark_up(&self) {
        if !self.0.swap(true, Ordering::Relaxed) {
            tracing::info!("store reachable again: serving");
        }
    }

    /// Ping the store every second for as long as the process runs.
    pub fn watch(&self, store: AnyStore) -> tokio::task::JoinHandle<()> {
        let health = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PING_EVERY);
            loop {
                tick.tick().await;
                match tokio::time::timeout(PING_TIMEOUT, store.ping()).await {
                    Ok(Ok(())) => health.mark_up(),
                    _ => health.mark_down(),
                }
            }
        })
    }
}

impl Default for StoreHealth {
    fn default() -> Self {
        Self::new()
    }
}
