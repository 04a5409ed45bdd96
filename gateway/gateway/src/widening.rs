//! The reload gate of `[policies] gate_on_widening`: the store's recorded decisions replayed
//! against a candidate policy set ([`taxgate_policy::replay`]), which is refused on any
//! deny→allow flip.

use std::collections::{HashMap, HashSet};

use taxgate_policy::ActiveSet;
use taxgate_policy::replay::replay;
use taxgate_store::{AnyStore, RecordedDecision, Store, StoreError, Timestamp};

/// The most recent `limit` downstream decisions since `since`, with the slices they refer to.
pub async fn load(
    store: &AnyStore,
    since: Timestamp,
    limit: i64,
) -> Result<(Vec<RecordedDecision>, HashMap<String, String>), StoreError> {
    let records = store.recorded_decisions(since, limit).await?;
    let hashes: Vec<String> = records
        .iter()
        .filter_map(|r| r.slice_hash.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let slices = store.audit_slices(&hashes).await?.into_iter().collect();
    Ok((records, slices))
}

/// The reload gate of `[policies] gate_on_widening`: replays the last window of decisions
/// against a new set and refuses it on any deny→allow flip. It runs on reload (a watcher thread
/// or a blocking task), never on the request path; the store is read on a scoped thread that
/// blocks on the gateway's runtime, so it works from any thread.
pub struct WideningGate {
    store: AnyStore,
    runtime: tokio::runtime::Handle,
    window_secs: i64,
    limit: i64,
}

impl WideningGate {
    /// A gate that replays the `limit` most recent downstream decisions of the last
    /// `window_hours`, read from `store` through `runtime` (the gateway's runtime).
    pub fn new(
        store: AnyStore,
        runtime: tokio::runtime::Handle,
        window_hours: u32,
        limit: u32,
    ) -> Self {
        WideningGate {
            store,
            runtime,
            window_secs: i64::from(window_hours) * 3600,
            limit: i64::from(limit),
        }
    }

    fn now() -> Timestamp {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as Timestamp)
            .unwrap_or(0)
    }
}

impl taxgate_policy::ReloadGate for WideningGate {
    fn check(&self, candidate: &ActiveSet) -> Result<String, String> {
        let since = Self::now() - self.window_secs;
        let loaded = std::thread::scope(|s| {
            s.spawn(|| self.runtime.block_on(load(&self.store, since, self.limit)))
                .join()
        });
        let (records, slices) = match loaded {
            Ok(Ok(x)) => x,
            // Fail closed: a set that cannot be checked is not activated.
            Ok(Err(e)) => return Err(format!("cannot read the recorded decisions: {e}")),
            Err(_) => return Err("the replay failed".to_string()),
        };
        let report = replay(candidate, &records, &slices);
        if report.widens() {
            Err(format!(
                "refused by the widening gate: {}",
                report.summary()
            ))
        } else {
            Ok(report.summary())
        }
    }
}
