//! Counters and gauges of the cache layer, read by tests and exported on `/metrics`.

use std::sync::{
    Arc,
    atomic::{AtomicU8, AtomicU64, Ordering},
};

use common::breaker::BreakerState;

/// Monotonic counters (plus the breaker state gauge).
#[derive(Debug, Default)]
pub struct CacheMetrics {
    /// Reads answered from Redis (negative entries included).
    pub hits: AtomicU64,
    /// Reads that found nothing usable in Redis.
    pub misses: AtomicU64,
    /// Reads that skipped Redis (breaker open, or invalidations still pending).
    pub bypassed: AtomicU64,
    /// Reads answered from the in-process L1 (negative entries included).
    pub l1_hits: AtomicU64,
    /// Reads that found nothing usable in L1 (and went on to Redis).
    pub l1_misses: AtomicU64,
    /// Reads that skipped L1: not subscribed to the invalidations, or some pending.
    pub l1_bypassed: AtomicU64,
    /// Entries written after a PostgreSQL read.
    pub fills: AtomicU64,
    /// Fills refused because the key was invalidated after the read began.
    pub rejected_fills: AtomicU64,
    /// Redis calls that failed or timed out.
    pub errors: AtomicU64,
    /// Keys deleted by invalidations (post-commit or outbox).
    pub invalidations: AtomicU64,
    /// Post-commit invalidations that failed and were left to the outbox.
    pub deferred_invalidations: AtomicU64,
    /// Outbox rows drained by the background task.
    pub outbox_drained: AtomicU64,
    /// Shared loads running now in tasks of their own (a gauge: the single-flight map
    /// holds at most this many entries).
    pub inflight_loads: AtomicU64,
    /// Misses loaded unshared, in the caller, because `CACHE_MAX_INFLIGHT_LOADS`
    /// loads were already in flight.
    pub unshared_loads: AtomicU64,
    /// [`BreakerState`] as a number: 0 closed, 1 open, 2 half-open.
    pub breaker_state: Arc<AtomicU8>,
}

/// A point-in-time copy of [`CacheMetrics`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub hits: u64,
    pub misses: u64,
    pub bypassed: u64,
    pub l1_hits: u64,
    pub l1_misses: u64,
    pub l1_bypassed: u64,
    pub fills: u64,
    pub rejected_fills: u64,
    pub errors: u64,
    pub invalidations: u64,
    pub deferred_invalidations: u64,
    pub outbox_drained: u64,
    pub inflight_loads: u64,
    pub unshared_loads: u64,
    pub breaker_state: BreakerState,
}

impl CacheMetrics {
    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        MetricsSnapshot {
            hits: get(&self.hits),
            misses: get(&self.misses),
            bypassed: get(&self.bypassed),
            l1_hits: get(&self.l1_hits),
            l1_misses: get(&self.l1_misses),
            l1_bypassed: get(&self.l1_bypassed),
            fills: get(&self.fills),
            rejected_fills: get(&self.rejected_fills),
            errors: get(&self.errors),
            invalidations: get(&self.invalidations),
            deferred_invalidations: get(&self.deferred_invalidations),
            outbox_drained: get(&self.outbox_drained),
            inflight_loads: get(&self.inflight_loads),
            unshared_loads: get(&self.unshared_loads),
            breaker_state: BreakerState::from_u8(self.breaker_state.load(Ordering::Relaxed)),
        }
    }
}

pub(crate) fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Exports the counters (and the breaker state, 0 closed / 1 open / 2 half-open) on
/// the process's `/metrics`.
pub fn register(metrics: &common::metrics::Metrics, cache: &Arc<CacheMetrics>) {
    metrics.register_atomic_counters(cache, &[
        (
            "deck_cache_hits",
            "Reads answered from the Redis cache.",
            |c| &c.hits,
        ),
        (
            "deck_cache_misses",
            "Reads that found nothing usable in Redis.",
            |c| &c.misses,
        ),
        (
            "deck_cache_bypassed",
            "Reads that skipped Redis (breaker open or invalidations pending).",
            |c| &c.bypassed,
        ),
        (
            "deck_cache_l1_hits",
            "Reads answered from the in-process L1 cache.",
            |c| &c.l1_hits,
        ),
        (
            "deck_cache_l1_misses",
            "Reads that found nothing usable in L1.",
            |c| &c.l1_misses,
        ),
        (
            "deck_cache_l1_bypassed",
            "Reads that skipped L1 (invalidation push not subscribed, or invalidations pending).",
            |c| &c.l1_bypassed,
        ),
        (
            "deck_cache_fills",
            "Cache entries written after a PostgreSQL read.",
            |c| &c.fills,
        ),
        (
            "deck_cache_rejected_fills",
            "Fills refused because the key was invalidated meanwhile.",
            |c| &c.rejected_fills,
        ),
        (
            "deck_cache_errors",
            "Cache Redis calls that failed or timed out.",
            |c| &c.errors,
        ),
        (
            "deck_cache_invalidations",
            "Cache keys deleted by invalidations.",
            |c| &c.invalidations,
        ),
        (
            "deck_cache_deferred_invalidations",
            "Invalidations left to the outbox (Redis unavailable).",
            |c| &c.deferred_invalidations,
        ),
        (
            "deck_cache_outbox_drained",
            "Cache outbox rows drained by the background task.",
            |c| &c.outbox_drained,
        ),
        (
            "deck_cache_unshared_loads",
            "Misses loaded unshared because CACHE_MAX_INFLIGHT_LOADS loads were in flight.",
            |c| &c.unshared_loads,
        ),
    ]);
    let inflight = cache.clone();
    metrics.register_gauge_fn(
        "deck_cache_inflight_loads",
        "Shared cache loads running now (entries of the single-flight map).",
        move || i64::try_from(inflight.inflight_loads.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
    );
    let state = cache.breaker_state.clone();
    metrics.register_gauge_fn(
        "deck_cache_breaker_state",
        "Cache Redis circuit breaker: 0 closed, 1 open, 2 half-open.",
        move || i64::from(state.load(Ordering::Relaxed)),
    );
}
