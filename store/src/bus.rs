//! Where invalidations go: hooks run synchronously, before the write that caused them returns
//! (so this instance's caches never serve a narrowed identity again, not even to the very next
//! request), then a broadcast for anyone who listens. Invalidations from other instances (the
//! PostgreSQL LISTEN task) go through the same bus.

use std::sync::{Arc, RwLock};

use tokio::sync::broadcast;

use crate::records::Invalidation;

/// A synchronous reaction to an invalidation (e.g. dropping cache entries). Must be quick and
/// must not block.
pub type InvalidationHook = Arc<dyn Fn(&Invalidation) + Send + Sync>;

/// Carries invalidations to this instance's hooks and subscribers; clones share the bus.
#[derive(Clone)]
pub struct InvalidationBus {
    tx: broadcast::Sender<Invalidation>,
    hooks: Arc<RwLock<Vec<InvalidationHook>>>,
}

impl InvalidationBus {
    /// A bus without hooks whose broadcast keeps up to `capacity` invalidations for a slow
    /// subscriber (who then lags).
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        InvalidationBus {
            tx,
            hooks: Arc::new(RwLock::new(Vec::new())),
        }
    }

    /// Run every hook, then broadcast. No receiver is not an error.
    pub fn send(&self, inv: Invalidation) {
        {
            let hooks = self
                .hooks
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for hook in hooks.iter() {
                hook(&inv);
            }
        }
        let _ = self.tx.send(inv);
    }

    /// Receive every invalidation sent from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Invalidation> {
        self.tx.subscribe()
    }

    /// Run `hook` on every invalidation sent from now on, before it is broadcast.
    pub fn add_hook(&self, hook: InvalidationHook) {
        self.hooks
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(hook);
    }
}
