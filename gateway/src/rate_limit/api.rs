//! The per-user, per-endpoint limit of the API routes (HTTP_API.md, "Rate limits"),
//! enforced from state local to this gateway and reconciled with Redis in the background,
//! so an API call makes no Redis round trip.
//!
//! Each (user, endpoint) has a local GCRA bucket, the same algorithm, limit, burst and
//! headers as the exact check of the auth routes ([`super::RateLimiter::check`]). A
//! check is synchronous: one lock of the bucket, nothing awaited, so a client that goes
//! away cannot leave a bucket half-updated.
//!
//! # Reconciliation
//!
//! Calls admitted locally are counted on their bucket, and the bucket is put in a
//! bounded queue. Twice every `RATE_LIMIT_SYNC_INTERVAL_MS` one task
//! ([`ApiLimiter::spawn_reconciler`]; stopped after the HTTP server has drained, with a
//! last round) takes the queue and, in one script call per batch of keys (per cluster
//! slot on a Redis Cluster; the keys of one user share the hash tag `{<user_id>}`), adds
//! each bucket's count to the shared GCRA state in Redis (`sync.lua`) and gets back how
//! far the shared TAT is ahead. The bucket adopts the later of its own TAT and the shared
//! one, so the calls other gateways admitted use up this gateway's allowance too.
//!
//! # The bound
//!
//! A gateway admits a call on what it knows: its own calls, and the shared state as of
//! its last reconciliation of the key, which holds the other gateways' calls up to their
//! last reconciliation. It does not know yet the calls the others admitted in the last
//! two ticks (one for their report, one for its own pick-up), nor, on a key it holds no
//! bucket for (new, or idle and evicted), any of theirs until its first reconciliation of
//! that key, at most one tick (plus a round trip) after its first call on it. A tick is
//! half the interval, so both fit in one interval: the limit is exceeded by at most what
//! the other gateways admit in one interval. Every admitted call is counted in Redis, so calls
//! admitted beyond the limit leave the shared bucket in debt and every gateway refuses
//! until it has drained: over minutes the rate stays at the limit.
//!
//! # Redis down or slow
//!
//! Checks do not wait for Redis, so they go on as before, limited per gateway. A failed
//! batch is counted (`gateway_rate_limit_sync_failures_total`) and its counts are put back
//! to be sent with the next tick. The queue holds each bucket once and at most
//! `RATE_LIMIT_API_MAX_BUCKETS` of them; the count of a call that finds it full is dropped
//! (`gateway_rate_limit_sync_dropped_total`). A batch whose answer was lost after Redis ran
//! it is sent again, counting its calls twice: stricter, never looser.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::{redis::RedisPool, shutdown::Shutdown, sync::MutexExt};
use futures::StreamExt;
use moka::{policy::EvictionPolicy, sync::Cache};
use prometheus_client::metrics::counter::Counter;
use tokio::time::{Instant, MissedTickBehavior};

use super::{Decision, WINDOW};

/// Keys in one script call: bounds the call's size and how long it holds Redis.
const MAX_KEYS_PER_CALL: usize = 256;
/// The furthest ahead a shared TAT is taken to be. Real debt stays far below (a burst
/// on every replica at once puts a bucket a window ahead per replica); a key holding a
/// wild value must not make the clock arithmetic overflow.
const MAX_AHEAD: Duration = Duration::from_secs(3600);
/// Script calls of one reconciliation in flight at once (several slots on a cluster, or
/// more keys than [`MAX_KEYS_PER_CALL`]).
const CALLS_IN_FLIGHT: usize = 8;

/// How the reconciliation went, for `/metrics` (registered by [`crate::metrics`]).
#[derive(Clone, Debug, Default)]
pub struct SyncMetrics {
    /// Script calls that reported calls and brought back the shared state.
    pub batches: Counter,
    /// Script calls that failed (their counts are sent again with the next tick).
    pub failures: Counter,
    /// Admitted calls whose count was dropped because the queue was full.
    pub dropped: Counter,
}

/// The limit in GCRA terms: the emission interval and the burst (= the limit).
#[derive(Clone, Copy, Debug)]
struct Rule {
    limit: u32,
    interval_us: u64,
}

impl Rule {
    fn per_minute(limit: u32) -> Self {
        Self {
            limit,
            interval_us: (WINDOW.as_micros() / u128::from(limit)).max(1) as u64,
        }
    }

    /// How far ahead of now the TAT may be after an admitted call.
    fn capacity_us(self) -> u64 {
        self.interval_us * u64::from(self.limit)
    }
}

/// One (user, endpoint): its Redis key and local state.
#[derive(Debug)]
struct Bucket {
    key: String,
    state: Mutex<BucketState>,
}

impl Bucket {
    fn lock(&self) -> MutexGuard<'_, BucketState> {
        self.state.lock_unpoisoned()
    }
}

#[derive(Debug)]
struct BucketState {
    /// Theoretical arrival time: the bucket is full again at `tat`, idle when it is past.
    tat: Instant,
    /// Calls admitted here and not yet reported to Redis.
    unsent: u32,
    /// When the first of the `unsent` calls was admitted.
    unsent_since: Instant,
    /// Whether the bucket is in the reconciliation queue.
    queued: bool,
}

impl BucketState {
    fn new(now: Instant) -> Self {
        Self {
            tat: now,
            unsent: 0,
            unsent_since: now,
            queued: false,
        }
    }

    /// GCRA, as `rate_limit.gcra.lua` computes it: admits a call if the TAT one interval
    /// later is at most the burst ahead of now; a refused call changes nothing.
    fn admit(&mut self, now: Instant, rule: Rule) -> Decision {
        let ahead = micros(self.tat.saturating_duration_since(now));
        let after = ahead + rule.interval_us;
        let capacity = rule.capacity_us();
        if after > capacity {
            return Decision {
                allowed: false,
                limit: rule.limit,
                remaining: 0,
                retry_after: Duration::from_micros(after - capacity),
                reset_after: Duration::from_micros(ahead),
            };
        }
        self.tat = now + Duration::from_micros(after);
        if self.unsent == 0 {
            self.unsent_since = now;
        }
        self.unsent = self.unsent.saturating_add(1);
        Decision {
            allowed: true,
            limit: rule.limit,
            remaining: u32::try_from((capacity - after) / rule.interval_us).unwrap_or(u32::MAX),
            retry_after: Duration::ZERO,
            reset_after: Duration::from_micros(after),
        }
    }

    /// Takes in the shared state, `shared_ahead_us` ahead of `now`. Calls admitted here
    /// since the report was taken are not in it yet, so they are added on top.
    fn adopt(&mut self, shared_ahead_us: u64, now: Instant, rule: Rule) {
        let unreported = u64::from(self.unsent) * rule.interval_us;
        let ahead = shared_ahead_us
            .saturating_add(unreported)
            .min(micros(MAX_AHEAD));
        self.tat = self.tat.max(now + Duration::from_micros(ahead));
    }

    /// Puts back the counts of a report that did not reach Redis.
    fn restore(&mut self, report: &Report) {
        self.unsent_since = if self.unsent == 0 {
            report.since
        } else {
            self.unsent_since.min(report.since)
        };
        self.unsent = self.unsent.saturating_add(report.calls);
    }
}

/// What one bucket reports in a reconciliation.
#[derive(Debug)]
struct Report {
    bucket: Arc<Bucket>,
    calls: u32,
    since: Instant,
}

/// The API limiter: local buckets and the queue of those with unreported calls; cheap to
/// clone (shared state).
#[derive(Clone)]
pub struct ApiLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    prefix: String,
    rule: Rule,
    /// Bounded by `RATE_LIMIT_API_MAX_BUCKETS`, least recently used evicted first: a new
    /// bucket is always kept (a frequency-based admission could refuse to keep it, and a
    /// bucket that is not kept would start full on every call). An evicted bucket's
    /// state is rebuilt from Redis at its first reconciliation.
    buckets: Cache<String, Arc<Bucket>>,
    /// Buckets with unreported calls, each once, at most `max_queued`.
    queue: Mutex<Vec<Arc<Bucket>>>,
    max_queued: usize,
    script: redis::Script,
    metrics: SyncMetrics,
    /// Buckets taken from the queue whose script call has not ended.
    sending: AtomicUsize,
    /// Whether the last reconciliation failed (logs the change only, not every tick).
    failing: AtomicBool,
}

impl std::fmt::Debug for ApiLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiLimiter")
            .field("per_minute", &self.inner.rule.limit)
            .field("max_buckets", &self.inner.max_queued)
            .finish_non_exhaustive()
    }
}

impl ApiLimiter {
    /// `per_minute` calls per user and endpoint (also the burst); at most `max_buckets`
    /// kept; keys under `prefix`.
    pub fn new(prefix: &str, per_minute: u32, max_buckets: u64, metrics: SyncMetrics) -> Self {
        let buckets = Cache::builder()
            .max_capacity(max_buckets)
            .eviction_policy(EvictionPolicy::lru())
            // An idle bucket is full again after one window; only debt would outlive it,
            // and Redis keeps that.
            .time_to_idle(WINDOW)
            .build();
        Self {
            inner: Arc::new(Inner {
                prefix: prefix.to_owned(),
                rule: Rule::per_minute(per_minute),
                buckets,
                queue: Mutex::new(Vec::new()),
                max_queued: usize::try_from(max_buckets).unwrap_or(usize::MAX),
                script: redis::Script::new(include_str!("sync.lua")),
                metrics,
                sending: AtomicUsize::new(0),
                failing: AtomicBool::new(false),
            }),
        }
    }

    /// `{prefix}rate:api:{<user_id>}:<METHOD route>`, e.g. `...:GET /decks/{id}`: the hash
    /// tag keeps one user's keys on one cluster slot.
    pub fn key(&self, user_id: uuid::Uuid, endpoint: &str) -> String {
        format!("{}rate:api:{{{user_id}}}:{endpoint}", self.inner.prefix)
    }

    /// Checks and counts one call of `user_id` on `endpoint`, from local state only.
    pub fn check(&self, user_id: uuid::Uuid, endpoint: &str) -> Decision {
        let inner = &*self.inner;
        let now = Instant::now();
        let key = self.key(user_id, endpoint);
        let bucket = inner.buckets.get_with(key.clone(), || {
            Arc::new(Bucket {
                key,
                state: Mutex::new(BucketState::new(now)),
            })
        });
        let mut state = bucket.lock();
        let decision = state.admit(now, inner.rule);
        if decision.allowed && !state.queued {
            self.enqueue(&bucket, &mut state);
        }
        decision
    }

    /// Queues `bucket` (whose lock is `state`) for the next reconciliation, or drops its
    /// unreported count if the queue is full. Lock order: bucket, then queue.
    fn enqueue(&self, bucket: &Arc<Bucket>, state: &mut BucketState) {
        let mut queue = self.inner.queue.lock_unpoisoned();
        if queue.len() < self.inner.max_queued {
            queue.push(bucket.clone());
            state.queued = true;
        } else {
            self.inner.metrics.dropped.inc_by(u64::from(state.unsent));
            state.unsent = 0;
        }
    }

    /// Buckets held now (for `/metrics`).
    pub fn buckets(&self) -> u64 {
        // Inserts and evictions are applied lazily; apply them so the count is current.
        self.inner.buckets.run_pending_tasks();
        self.inner.buckets.entry_count()
    }

    /// Buckets with calls not yet reported to Redis: queued, or in a script call now
    /// (for `/metrics`).
    pub fn unreported(&self) -> usize {
        let queue = self.inner.queue.lock_unpoisoned();
        queue.len() + self.inner.sending.load(Ordering::Relaxed)
    }

    /// Reconciles with the Redis of `pool` twice every `interval`, in a task of its own: no
    /// request waits for it, and none can cancel it. Runs until [`Reconciler::stop`].
    ///
    /// Twice, so that a call another gateway admits is known here within one `interval`:
    /// half of it until that gateway reports the call, half until this one picks it up.
    pub fn spawn_reconciler(&self, pool: RedisPool, interval: Duration) -> Reconciler {
        let limiter = self.clone();
        let stop = Shutdown::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval / 2);
            // A slow Redis delays the next tick rather than causing a burst of them.
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => limiter.reconcile(&pool).await,
                    () = stopped.wait() => break,
                }
            }
            // The calls of the last interval still count on the other gateways.
            limiter.reconcile(&pool).await;
        });
        Reconciler { stop, task }
    }

    /// Sends every queued count to Redis and adopts the shared state that comes back.
    async fn reconcile(&self, pool: &RedisPool) {
        let queued = {
            let mut queue = self.inner.queue.lock_unpoisoned();
            // Counted as sending before they leave the queue, so `unreported` never
            // reads 0 while they are on their way.
            self.inner.sending.fetch_add(queue.len(), Ordering::Relaxed);
            std::mem::take(&mut *queue)
        };
        if queued.is_empty() {
            return;
        }
        let reports = queued.into_iter().filter_map(|bucket| {
            let mut state = bucket.lock();
            state.queued = false;
            let calls = std::mem::take(&mut state.unsent);
            let since = state.unsent_since;
            drop(state);
            if calls == 0 {
                // Its count was dropped (the queue was full when a report failed).
                self.inner.sending.fetch_sub(1, Ordering::Relaxed);
                return None;
            }
            Some(Report {
                bucket,
                calls,
                since,
            })
        });
        // One script call touches one slot: group by slot on a cluster.
        let groups: Vec<Vec<Report>> = if pool.is_cluster() {
            let mut by_slot: HashMap<redis::cluster_routing::Slot, Vec<Report>> = HashMap::new();
            for report in reports {
                let slot = redis::cluster_routing::Slot::for_key(&report.bucket.key);
                by_slot.entry(slot).or_default().push(report);
            }
            by_slot.into_values().collect()
        } else {
            vec![reports.collect()]
        };
        let mut batches = Vec::new();
        for mut group in groups {
            while group.len() > MAX_KEYS_PER_CALL {
                let rest = group.split_off(MAX_KEYS_PER_CALL);
                batches.push(std::mem::replace(&mut group, rest));
            }
            if !group.is_empty() {
                batches.push(group);
            }
        }
        futures::stream::iter(batches)
            .map(|batch| self.send(pool, batch))
            .buffer_unordered(CALLS_IN_FLIGHT)
            .collect::<()>()
            .await;
    }

    /// One script call for `batch` (keys of one slot).
    async fn send(&self, pool: &RedisPool, batch: Vec<Report>) {
        let inner = &*self.inner;
        let mut invocation = inner.script.prepare_invoke();
        invocation.arg(inner.rule.interval_us);
        let now = Instant::now();
        for report in &batch {
            invocation
                .key(&report.bucket.key)
                .arg(report.calls)
                .arg(micros(now.saturating_duration_since(report.since)));
        }
        let outcome = pool
            .run(|mut connection| async move {
                invocation.invoke_async::<Vec<i64>>(&mut connection).await
            })
            .await;
        match outcome {
            Ok(aheads) if aheads.len() == batch.len() => {
                inner.metrics.batches.inc();
                let now = Instant::now();
                for (report, ahead) in batch.iter().zip(aheads) {
                    let ahead = u64::try_from(ahead).unwrap_or(0);
                    report.bucket.lock().adopt(ahead, now, inner.rule);
                }
                if inner.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("rate-limit reconciliation with Redis resumed");
                }
            }
            outcome => {
                let failure = match outcome {
                    Ok(aheads) => format!(
                        "the script returned {} values for {} keys",
                        aheads.len(),
                        batch.len()
                    ),
                    Err(error) => error.to_string(),
                };
                self.put_back(&batch, &failure);
            }
        }
        inner.sending.fetch_sub(batch.len(), Ordering::Relaxed);
    }

    /// Counts a failed script call and queues its counts again for the next tick.
    fn put_back(&self, batch: &[Report], failure: &str) {
        self.inner.metrics.failures.inc();
        if !self.inner.failing.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = %failure,
                "rate-limit reconciliation with Redis failed; API limits apply per gateway until it resumes"
            );
        }
        for report in batch {
            let mut state = report.bucket.lock();
            state.restore(report);
            if !state.queued {
                self.enqueue(&report.bucket, &mut state);
            }
        }
    }
}

/// The running reconciliation task.
#[derive(Debug)]
pub struct Reconciler {
    stop: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

impl Reconciler {
    /// Stops the task after one last reconciliation, waiting for it at most `timeout`.
    /// Called once no more requests are served, so no admitted call is left unreported.
    pub async fn stop(self, timeout: Duration) {
        self.stop.trigger();
        if tokio::time::timeout(timeout, self.task).await.is_err() {
            tracing::warn!(
                ?timeout,
                "the last rate-limit reconciliation did not finish in time"
            );
        }
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_minute: u32, max_buckets: u64) -> ApiLimiter {
        ApiLimiter::new("test:", per_minute, max_buckets, SyncMetrics::default())
    }

    #[test]
    fn a_bucket_admits_the_burst_then_refuses_with_the_time_to_the_next_call() {
        let rule = Rule::per_minute(10);
        let now = Instant::now();
        let mut state = BucketState::new(now);

        let decisions: Vec<Decision> = (0..11).map(|_| state.admit(now, rule)).collect();

        let remaining: Vec<u32> = decisions[..10].iter().map(|d| d.remaining).collect();
        assert_eq!(remaining, (0..10).rev().collect::<Vec<_>>());
        assert!(decisions[..10].iter().all(|d| d.allowed));
        let refused = decisions[10];
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_secs(6));
        assert_eq!(refused.reset_after, Duration::from_secs(60));
        assert_eq!(state.unsent, 10, "refused calls are not counted");
        let later = state.admit(now + Duration::from_secs(6), rule);
        assert!(later.allowed, "one call per 6 s drains back");
    }

    #[test]
    fn adopting_the_shared_state_uses_up_the_local_allowance() {
        let rule = Rule::per_minute(10);
        let now = Instant::now();
        let mut state = BucketState::new(now);
        assert!(state.admit(now, rule).allowed);
        state.unsent = 0;

        // Redis says nine calls are ahead (made on other gateways and this one).
        state.adopt(9 * rule.interval_us, now, rule);

        assert!(state.admit(now, rule).allowed);
        assert!(!state.admit(now, rule).allowed);
    }

    #[test]
    fn the_shared_state_never_forgets_local_calls_it_has_not_seen() {
        let rule = Rule::per_minute(10);
        let now = Instant::now();
        let mut state = BucketState::new(now);
        for _ in 0..3 {
            assert!(state.admit(now, rule).allowed);
        }

        // A report taken before these three calls comes back with two calls ahead.
        state.adopt(2 * rule.interval_us, now, rule);

        assert_eq!(
            state.admit(now, rule).remaining,
            4,
            "2 shared + 3 local + this one"
        );
    }

    #[test]
    fn a_wild_shared_value_is_capped_rather_than_overflowing_the_clock() {
        let rule = Rule::per_minute(10);
        let now = Instant::now();
        let mut state = BucketState::new(now);

        state.adopt(u64::MAX, now, rule);

        let refused = state.admit(now, rule);
        assert!(!refused.allowed);
        assert_eq!(refused.reset_after, MAX_AHEAD);
    }

    #[test]
    fn the_map_of_buckets_is_bounded() {
        let limiter = limiter(10, 50);

        for _ in 0..500 {
            limiter.check(uuid::Uuid::new_v4(), "GET /decks");
        }

        assert!(limiter.buckets() <= 50, "{}", limiter.buckets());
        assert!(limiter.unreported() <= 50, "{}", limiter.unreported());
    }
}
