//! Invalidation after COMMIT, and the outbox that makes it reliable.
//!
//! A write records the keys it makes stale in `cache_outbox`, in its own transaction.
//! After COMMIT it invalidates them; if Redis does not confirm, the row stays, the
//! process bumps its failed epoch and bypasses Redis for reads until the background
//! drainer has emptied the outbox of everything up to that epoch.

use std::{sync::atomic::Ordering, time::Duration};

use sqlx::PgPool;
use tokio::task::JoinHandle;

use super::{Cache, metrics::inc};
use crate::error::Result;

/// The invalidation a write owes once its transaction commits.
///
/// [`record`](Self::record) the outbox row before COMMIT, [`run`](Self::run) after it.
/// The invalidation runs in a task of its own, so a caller that goes away after COMMIT
/// (a client hanging up) cannot leave the entries stale in Redis while this process
/// still trusts it. Dropped with a row recorded but not run (the caller went away
/// during COMMIT, or COMMIT failed with an unknown outcome), it hands the same work to
/// a task: for a write that did not commit that costs a refill, never a stale read.
#[must_use = "run it after COMMIT"]
pub struct PendingInvalidation {
    cache: Cache,
    pg: PgPool,
    keys: Vec<String>,
    outbox_ids: Vec<i64>,
}

impl PendingInvalidation {
    /// Owes the invalidation of `keys`, once some outbox row holding them is recorded.
    pub fn new(cache: &Cache, pg: &PgPool, keys: Vec<String>) -> Self {
        Self {
            cache: cache.clone(),
            pg: pg.clone(),
            keys,
            outbox_ids: Vec::new(),
        }
    }

    /// The keys owed.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// The `cache_outbox` row (holding these keys) of a transaction about to commit.
    pub fn record(&mut self, outbox_id: i64) {
        self.outbox_ids.push(outbox_id);
    }

    /// Invalidates the keys of the recorded rows (nothing when none was recorded) and
    /// waits for it; the work goes on if this future is dropped.
    pub async fn run(mut self) {
        if let Some(task) = self.spawn()
            && let Err(error) = task.await
        {
            tracing::error!(%error, "cache invalidation task failed");
        }
    }

    fn spawn(&mut self) -> Option<JoinHandle<()>> {
        if self.outbox_ids.is_empty() {
            return None;
        }
        let outbox_ids = std::mem::take(&mut self.outbox_ids);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // Only when the process is going down: the rows stay for the drainer of
            // the next start, which runs before any read trusts Redis.
            tracing::warn!("no runtime for a cache invalidation; left to the outbox");
            return None;
        };
        let (cache, pg, keys) = (self.cache.clone(), self.pg.clone(), self.keys.clone());
        Some(runtime.spawn(async move {
            cache.after_commit(&pg, &outbox_ids, &keys).await;
        }))
    }
}

impl Drop for PendingInvalidation {
    fn drop(&mut self) {
        self.spawn();
    }
}

impl Cache {
    /// Whether some invalidation is still waiting in the outbox (reads bypass Redis).
    pub fn invalidations_pending(&self) -> bool {
        self.inner.failed_epoch.load(Ordering::Acquire)
            > self.inner.drained_epoch.load(Ordering::Acquire)
    }

    /// After writes committed with outbox rows `outbox_ids` (holding `keys`):
    /// invalidate now, and delete the rows if that worked; otherwise leave them to the drainer.
    async fn after_commit(&self, pg: &PgPool, outbox_ids: &[i64], keys: &[String]) {
        if self.invalidate(keys).await {
            let deleted = sqlx::query("DELETE FROM cache_outbox WHERE id = ANY($1)")
                .bind(outbox_ids)
                .execute(pg)
                .await;
            if let Err(error) = deleted {
                // Harmless: the drainer deletes the keys again and then the row.
                tracing::warn!(%error, "cannot delete a drained cache outbox row");
            }
        } else {
            self.inner.failed_epoch.fetch_add(1, Ordering::AcqRel);
            inc(&self.inner.metrics.deferred_invalidations);
            tracing::warn!(
                keys = keys.len(),
                "cache invalidation deferred to the outbox (Redis unavailable)"
            );
        }
    }

    /// Drains the outbox once: invalidates every row's keys and deletes the rows.
    /// Returns whether the outbox was empty at the end.
    pub async fn drain_outbox(&self, pg: &PgPool) -> Result<bool> {
        let epoch = self.inner.failed_epoch.load(Ordering::Acquire);
        loop {
            let rows: Vec<(i64, Vec<String>)> =
                sqlx::query_as("SELECT id, keys FROM cache_outbox ORDER BY id LIMIT 200")
                    .fetch_all(pg)
                    .await?;
            if rows.is_empty() {
                self.inner.drained_epoch.fetch_max(epoch, Ordering::AcqRel);
                return Ok(true);
            }
            let mut keys: Vec<String> = rows
                .iter()
                .flat_map(|(_, keys)| keys.iter().cloned())
                .collect();
            keys.sort();
            keys.dedup();
            if !self.invalidate(&keys).await {
                return Ok(false);
            }
            let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
            sqlx::query("DELETE FROM cache_outbox WHERE id = ANY($1)")
                .bind(&ids)
                .execute(pg)
                .await?;
            self.inner
                .metrics
                .outbox_drained
                .fetch_add(ids.len() as u64, Ordering::Relaxed);
        }
    }

    /// Drains the outbox every `interval` until `shutdown`.
    pub fn spawn_drainer(
        &self,
        pg: PgPool,
        interval: Duration,
        shutdown: common::shutdown::Shutdown,
    ) {
        let cache = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = shutdown.wait() => return,
                }
                if let Err(error) = cache.drain_outbox(&pg).await {
                    tracing::warn!(%error, "cannot drain the cache outbox");
                }
            }
        });
    }
}
