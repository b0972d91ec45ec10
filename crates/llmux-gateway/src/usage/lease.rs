//! Instance liveness and the recovery of interrupted requests.
//!
//! Every gateway instance with a store holds a lease row (`gw_instances`) under a random
//! instance id, renewed every third of `server.instance_lease` (default 30 s) and removed on a
//! graceful shutdown. A process that dies stops renewing; once its lease has lapsed, any
//! gateway on the same store (the restarted process, which has a new id, or another replica)
//! turns the dead instance's journal rows into `interrupted` usage records billed at their
//! reserved estimate ([`crate::store::Store::recover_interrupted`]). Recovery runs at start
//! and then with every renewal; the store's transaction makes each row recovered once.
//!
//! This covers the database's journal (`server.usage_journal = "database"`, and the entries
//! the file journal could not take). The local file journal ([`crate::usage::journal`]) is
//! recorded by the next gateway started on its directory; the lease runs either way, so rows
//! left under an earlier configuration are still recovered.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::store::{Store, StoreError};

/// The renewal task of one instance's lease.
pub struct InstanceLease {
    store: Arc<dyn Store>,
    instance: Arc<str>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for InstanceLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceLease")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Recovers the journal rows of dead instances; logs what it did.
async fn recover(store: &dyn Store) -> Result<usize, StoreError> {
    let recs = store.recover_interrupted(now_ms()).await?;
    if !recs.is_empty() {
        let tokens: u64 = recs.iter().map(|r| r.billed_tokens()).sum();
        tracing::warn!(
            requests = recs.len(),
            tokens,
            "recorded requests left in flight by a gateway that died as interrupted, billed at their reserved estimate"
        );
    }
    Ok(recs.len())
}

impl InstanceLease {
    /// Takes the lease for `instance` (awaited, so journal rows are never written without
    /// one), recovers what dead instances left, and starts renewing every `lease / 3`.
    pub async fn start(
        store: Arc<dyn Store>,
        instance: Arc<str>,
        lease: Duration,
    ) -> Result<InstanceLease, StoreError> {
        let lease = lease.max(Duration::from_millis(300));
        let started = now_ms();
        store
            .renew_lease(&instance, started, started.saturating_add(ms(lease)))
            .await?;
        recover(store.as_ref()).await?;
        let task = {
            let (store, instance) = (store.clone(), instance.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(lease / 3);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let until = now_ms().saturating_add(ms(lease));
                    if let Err(e) = store.renew_lease(&instance, started, until).await {
                        tracing::warn!(error = %e, "renewing this gateway's lease failed; if it lapses, other gateways record its requests in flight as interrupted");
                    }
                    if let Err(e) = recover(store.as_ref()).await {
                        tracing::warn!(error = %e, "recovering interrupted requests failed; retrying at the next renewal");
                    }
                }
            })
        };
        Ok(InstanceLease {
            store,
            instance,
            task,
        })
    }

    /// The instance id.
    pub fn instance(&self) -> &Arc<str> {
        &self.instance
    }

    /// Stops renewing and removes the lease (call it after the recorder drained).
    pub async fn release(self) {
        self.task.abort();
        if let Err(e) = self.store.release_lease(&self.instance).await {
            tracing::warn!(error = %e, "removing this gateway's lease failed; it lapses on its own");
        }
    }
}
