//! Invalidations still owed: while one waits in the outbox, reads bypass Redis.
//!
//! A write whose invalidation Redis did not confirm leaves its outbox row for the
//! drainer (`store::outbox`) and bumps the failed epoch here. Until the drainer has
//! emptied the outbox of everything up to that epoch, Redis may still hold the stale
//! entry, so [`Cache::get_or_load`] reads PostgreSQL and does not fill.

use std::sync::atomic::Ordering;

use super::{Cache, metrics::inc};

impl Cache {
    /// Whether some invalidation is still waiting in the outbox (reads bypass Redis).
    pub fn invalidations_pending(&self) -> bool {
        self.inner.failed_epoch.load(Ordering::Acquire)
            > self.inner.drained_epoch.load(Ordering::Acquire)
    }

    /// The invalidation of `keys` keys could not be delivered and waits in the outbox.
    pub fn invalidation_deferred(&self, keys: usize) {
        self.inner.failed_epoch.fetch_add(1, Ordering::AcqRel);
        inc(&self.inner.metrics.deferred_invalidations);
        tracing::warn!(
            keys,
            "cache invalidation deferred to the outbox (Redis unavailable)"
        );
    }

    /// Taken before a drain pass reads the outbox: the epoch the pass can settle.
    pub fn outbox_epoch(&self) -> u64 {
        self.inner.failed_epoch.load(Ordering::Acquire)
    }

    /// A drain pass that started at `epoch` found the outbox empty: every invalidation
    /// deferred up to then is delivered.
    pub fn outbox_drained(&self, epoch: u64) {
        self.inner.drained_epoch.fetch_max(epoch, Ordering::AcqRel);
    }

    /// `rows` outbox rows were delivered by the drainer.
    pub fn count_outbox_drained(&self, rows: u64) {
        self.inner
            .metrics
            .outbox_drained
            .fetch_add(rows, Ordering::Relaxed);
    }
}
