//! Cache-aside over PostgreSQL in Redis (ARCHITECTURE.md, "Read cache").
//!
//! * Read Redis; on a miss load from PostgreSQL and fill with the TTL ±10 % jitter.
//!   Values are protobuf bytes behind a two-byte header (format version, kind), so an
//!   entry of an older format is a miss, not a decoding error.
//! * No stale fill: the reader reads the key's generation counter before querying
//!   PostgreSQL, and the fill ([`FILL_SCRIPT`]) lands only if the counter is unchanged.
//!   Every invalidation ([`INVALIDATE_SCRIPT`]) deletes the value and bumps the counter.
//! * No stampede: concurrent misses of one key in this process share one load.
//! * Unknown ids are cached briefly as "missing" entries (negative caching).
//! * Writes commit first, then invalidate. The keys are also written to `cache_outbox`
//!   in the write's transaction; a failed invalidation leaves the row for the
//!   background drainer, and until it is drained reads bypass Redis (which may still
//!   hold the stale entry).
//! * Redis is optional: every call has its own deadline (`CACHE_REDIS_TIMEOUT_MS`)
//!   and goes through a circuit breaker; a failure means "read PostgreSQL".

mod breaker;
pub mod keys;
mod metrics;

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use common::redis::{Connection, RedisPool};
use futures::{
    FutureExt,
    future::{BoxFuture, Shared},
};
use rand::Rng;
use sqlx::PgPool;

pub use breaker::BreakerState;
pub use keys::Keys;
pub use metrics::{CacheMetrics, MetricsSnapshot, register as register_metrics};

use crate::error::{Error, Result};
use breaker::Breaker;
use metrics::inc;

/// Compare-and-set fill (see the script's comments).
pub const FILL_SCRIPT: &str = include_str!("fill.lua");
/// Delete + bump generation (see the script's comments).
pub const INVALIDATE_SCRIPT: &str = include_str!("invalidate.lua");

/// First byte of every cached value. Bump it when the encoding of any family changes.
const FORMAT_VERSION: u8 = 1;
const KIND_VALUE: u8 = b'V';
const KIND_MISSING: u8 = b'N';
/// How long a generation counter lives after its last bump.
const GENERATION_TTL: Duration = Duration::from_secs(3600);

/// Tuning of the cache layer (from the `CACHE_*` settings).
#[derive(Clone, Debug)]
pub struct CacheSettings {
    /// Deadline of one Redis call, checkout included.
    pub timeout: Duration,
    /// Consecutive failures that open the breaker.
    pub breaker_threshold: u32,
    /// How long the breaker stays open before a probe.
    pub breaker_cooldown: Duration,
    /// Lifetime of a "missing" entry.
    pub negative_ttl: Duration,
}

/// A test hook run between the PostgreSQL read and the fill, with the key being filled.
pub type BeforeFill = Arc<dyn Fn(String) -> BoxFuture<'static, ()> + Send + Sync>;

/// Hooks for tests; empty in production.
#[derive(Clone, Default)]
pub struct CacheHooks {
    pub before_fill: Option<BeforeFill>,
}

type FlightResult = std::result::Result<Option<Arc<Vec<u8>>>, Error>;
type Flight = Shared<BoxFuture<'static, FlightResult>>;

/// The cache; cheap to clone.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    redis: RedisPool,
    keys: Keys,
    settings: CacheSettings,
    breaker: Breaker,
    metrics: Arc<CacheMetrics>,
    flights: Mutex<HashMap<String, Flight>>,
    hooks: CacheHooks,
    /// Bumped whenever an invalidation is left to the outbox; reads bypass Redis
    /// until the drainer has emptied the outbox of everything up to this epoch.
    failed_epoch: AtomicU64,
    drained_epoch: AtomicU64,
}

enum Entry<T> {
    Value(T),
    Missing,
}

fn encode_entry(value: Option<&[u8]>) -> Vec<u8> {
    match value {
        Some(bytes) => {
            let mut out = Vec::with_capacity(bytes.len() + 2);
            out.extend_from_slice(&[FORMAT_VERSION, KIND_VALUE]);
            out.extend_from_slice(bytes);
            out
        }
        None => vec![FORMAT_VERSION, KIND_MISSING],
    }
}

fn decode_entry<T: prost::Message + Default>(bytes: &[u8]) -> Option<Entry<T>> {
    match bytes {
        [FORMAT_VERSION, KIND_MISSING] => Some(Entry::Missing),
        [FORMAT_VERSION, KIND_VALUE, payload @ ..] => T::decode(payload).ok().map(Entry::Value),
        _ => None,
    }
}

/// `base` ± 10 %, at least one millisecond.
pub fn jitter(base: Duration) -> Duration {
    let factor = rand::thread_rng().gen_range(0.9..=1.1);
    base.mul_f64(factor).max(Duration::from_millis(1))
}

impl Cache {
    pub fn new(redis: RedisPool, settings: CacheSettings, hooks: CacheHooks) -> Self {
        let metrics = Arc::new(CacheMetrics::default());
        let breaker = Breaker::new(
            settings.breaker_threshold,
            settings.breaker_cooldown,
            metrics.breaker_state.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                keys: Keys::new(redis.prefix()),
                redis,
                settings,
                breaker,
                metrics,
                flights: Mutex::new(HashMap::new()),
                hooks,
                // Start "pending": rows left by a crashed writer are drained before
                // the first read trusts Redis.
                failed_epoch: AtomicU64::new(1),
                drained_epoch: AtomicU64::new(0),
            }),
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    pub fn metrics(&self) -> Arc<CacheMetrics> {
        self.inner.metrics.clone()
    }

    /// Whether some invalidation is still waiting in the outbox (reads bypass Redis).
    pub fn invalidations_pending(&self) -> bool {
        self.inner.failed_epoch.load(Ordering::Acquire)
            > self.inner.drained_epoch.load(Ordering::Acquire)
    }

    /// One Redis call under the breaker and the per-call deadline. `None` means
    /// "Redis unavailable": skipped by the breaker, failed, or too slow.
    async fn call<T, F, Fut>(&self, operation: F) -> Option<T>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = std::result::Result<T, redis::RedisError>>,
    {
        self.call_with(self.inner.settings.timeout, operation).await
    }

    async fn call_with<T, F, Fut>(&self, deadline: Duration, operation: F) -> Option<T>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = std::result::Result<T, redis::RedisError>>,
    {
        if !self.inner.breaker.allow() {
            return None;
        }
        match tokio::time::timeout(deadline, self.inner.redis.run(operation)).await {
            Ok(Ok(value)) => {
                self.inner.breaker.success();
                Some(value)
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, "cache Redis call failed");
                inc(&self.inner.metrics.errors);
                self.inner.breaker.failure();
                None
            }
            Err(_) => {
                tracing::debug!(?deadline, "cache Redis call timed out");
                inc(&self.inner.metrics.errors);
                self.inner.breaker.failure();
                None
            }
        }
    }

    /// Reads `key`, or loads it with `load` (`Ok(None)`: the id is unknown) and fills.
    ///
    /// `ttl` is the entry's lifetime before jitter; `cap` bounds it after jitter (the
    /// due-cards family must not live past midnight). `fresh` rejects a cached value
    /// that is no longer valid (say, computed for another day): it counts as a miss.
    pub async fn get_or_load<T, F, L, Fut>(
        &self,
        key: String,
        ttl: Duration,
        cap: Option<Duration>,
        fresh: F,
        load: L,
    ) -> Result<Option<T>>
    where
        T: prost::Message + Default + Send + 'static,
        F: Fn(&T) -> bool + Clone + Send + Sync + 'static,
        L: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<T>>> + Send + 'static,
    {
        let metrics = &self.inner.metrics;
        if self.invalidations_pending() {
            inc(&metrics.bypassed);
        } else {
            let cached = {
                let key = key.clone();
                self.call(|mut connection| async move {
                    redis::cmd("GET")
                        .arg(&key)
                        .query_async::<Option<Vec<u8>>>(&mut connection)
                        .await
                })
                .await
            };
            match cached {
                None => inc(&metrics.bypassed),
                Some(bytes) => match bytes.as_deref().and_then(decode_entry::<T>) {
                    Some(Entry::Value(value)) if fresh(&value) => {
                        inc(&metrics.hits);
                        return Ok(Some(value));
                    }
                    Some(Entry::Missing) => {
                        inc(&metrics.hits);
                        return Ok(None);
                    }
                    _ => inc(&metrics.misses),
                },
            }
        }

        let bytes = self.single_flight(key, ttl, cap, fresh, load).await?;
        Ok(match bytes {
            Some(bytes) => Some(T::decode(bytes.as_slice()).map_err(Error::internal)?),
            None => None,
        })
    }

    /// Joins the in-flight load of `key`, or starts one.
    async fn single_flight<T, F, L, Fut>(
        &self,
        key: String,
        ttl: Duration,
        cap: Option<Duration>,
        fresh: F,
        load: L,
    ) -> FlightResult
    where
        T: prost::Message + Default + Send + 'static,
        F: Fn(&T) -> bool + Clone + Send + Sync + 'static,
        L: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<T>>> + Send + 'static,
    {
        let flight = {
            let mut flights = self.inner.flights.lock().expect("flights lock");
            if let Some(flight) = flights.get(&key) {
                flight.clone()
            } else {
                let cache = self.clone();
                let flight_key = key.clone();
                let flight = async move {
                    let result = cache
                        .load_and_fill(flight_key.clone(), ttl, cap, fresh, load)
                        .await;
                    // Leave the map only once the fill has landed, so a reader that
                    // missed just before it either joins this flight or hits the entry.
                    cache
                        .inner
                        .flights
                        .lock()
                        .expect("flights lock")
                        .remove(&flight_key);
                    result
                }
                .boxed()
                .shared();
                flights.insert(key, flight.clone());
                flight
            }
        };
        flight.await
    }

    async fn load_and_fill<T, F, L, Fut>(
        &self,
        key: String,
        ttl: Duration,
        cap: Option<Duration>,
        fresh: F,
        load: L,
    ) -> FlightResult
    where
        T: prost::Message + Default + Send + 'static,
        F: Fn(&T) -> bool + Clone + Send + Sync + 'static,
        L: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<T>>> + Send + 'static,
    {
        let generation_key = keys::generation_key(&key);
        // Look again (a previous flight may have filled it since our GET) and read the
        // generation this load will be compared against.
        let mut generation = None;
        if !self.invalidations_pending() {
            let read = {
                let (key, generation_key) = (key.clone(), generation_key.clone());
                self.call(|mut connection| async move {
                    redis::cmd("MGET")
                        .arg(&key)
                        .arg(&generation_key)
                        .query_async::<(Option<Vec<u8>>, Option<String>)>(&mut connection)
                        .await
                })
                .await
            };
            if let Some((value, seen)) = read {
                match value.as_deref().and_then(decode_entry::<T>) {
                    Some(Entry::Value(value)) if fresh(&value) => {
                        return Ok(Some(Arc::new(value.encode_to_vec())));
                    }
                    Some(Entry::Missing) => return Ok(None),
                    _ => generation = Some(seen.unwrap_or_else(|| "0".to_owned())),
                }
            }
        }

        let loaded = load().await?;
        let encoded = loaded.as_ref().map(|value| value.encode_to_vec());

        if let Some(hook) = &self.inner.hooks.before_fill {
            hook(key.clone()).await;
        }
        // Only fill with a generation read before the load, and not while an
        // invalidation is waiting in the outbox.
        if let Some(generation) = generation.filter(|_| !self.invalidations_pending()) {
            let ttl = match &encoded {
                Some(_) => {
                    let ttl = jitter(ttl);
                    cap.map_or(ttl, |cap| ttl.min(cap))
                }
                None => jitter(self.inner.settings.negative_ttl),
            };
            let value = encode_entry(encoded.as_deref());
            let ttl_ms = ttl.as_millis().max(1) as u64;
            let filled = self
                .call(|mut connection| async move {
                    redis::cmd("EVAL")
                        .arg(FILL_SCRIPT)
                        .arg(2)
                        .arg(&key)
                        .arg(&generation_key)
                        .arg(&generation)
                        .arg(value)
                        .arg(ttl_ms)
                        .query_async::<i64>(&mut connection)
                        .await
                })
                .await;
            match filled {
                Some(1) => inc(&self.inner.metrics.fills),
                Some(_) => inc(&self.inner.metrics.rejected_fills),
                None => {}
            }
        }
        Ok(encoded.map(Arc::new))
    }

    /// Deletes `keys` and bumps their generations: one pipeline on a single node, one
    /// pipeline per hash slot on a cluster. `false` when Redis did not confirm every key.
    pub async fn invalidate(&self, keys: &[String]) -> bool {
        if keys.is_empty() {
            return true;
        }
        let mut groups: Vec<Vec<&String>> = if self.inner.redis.is_cluster() {
            let mut by_slot: HashMap<u16, Vec<&String>> = HashMap::new();
            for key in keys {
                by_slot.entry(keys::slot(key)).or_default().push(key);
            }
            by_slot.into_values().collect()
        } else {
            vec![keys.iter().collect()]
        };
        groups.retain(|group| !group.is_empty());
        let pipelines: Vec<(redis::Pipeline, usize)> = groups
            .iter()
            .map(|group| {
                let mut pipe = redis::pipe();
                for key in group {
                    pipe.cmd("EVAL")
                        .arg(INVALIDATE_SCRIPT)
                        .arg(2)
                        .arg(key.as_str())
                        .arg(keys::generation_key(key))
                        .arg(GENERATION_TTL.as_millis() as u64);
                }
                (pipe, group.len())
            })
            .collect();
        // Writes may wait longer than reads: a missed invalidation costs every reader
        // the cache until the outbox is drained.
        let deadline = (self.inner.settings.timeout * 10).max(Duration::from_millis(250));
        let done = self
            .call_with(deadline, |mut connection| async move {
                for (pipe, expected) in pipelines {
                    let results = pipe.query_async::<Vec<i64>>(&mut connection).await?;
                    if results.len() != expected {
                        return Err(redis::RedisError::from((
                            redis::ErrorKind::UnexpectedReturnType,
                            "short pipeline reply",
                        )));
                    }
                }
                Ok(())
            })
            .await
            .is_some();
        if done {
            self.inner
                .metrics
                .invalidations
                .fetch_add(keys.len() as u64, Ordering::Relaxed);
        }
        done
    }

    /// After writes committed with outbox rows `outbox_ids` (holding `keys`):
    /// invalidate now, and delete the rows if that worked; otherwise leave them to the drainer.
    pub async fn after_commit(&self, pg: &PgPool, outbox_ids: &[i64], keys: &[String]) {
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

    /// Breaker state now.
    pub fn breaker_state(&self) -> BreakerState {
        self.inner.breaker.state()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_carry_a_version_and_a_kind() {
        let deck = proto::deck::v1::Deck {
            name: "Α1".into(),
            ..Default::default()
        };
        let bytes = encode_entry(Some(&prost::Message::encode_to_vec(&deck)));
        assert_eq!(&bytes[..2], &[FORMAT_VERSION, KIND_VALUE]);
        assert!(
            matches!(decode_entry::<proto::deck::v1::Deck>(&bytes), Some(Entry::Value(d)) if d == deck)
        );
        assert!(matches!(
            decode_entry::<proto::deck::v1::Deck>(&encode_entry(None)),
            Some(Entry::Missing)
        ));
        // Another format version is a miss, not an error.
        assert!(decode_entry::<proto::deck::v1::Deck>(&[FORMAT_VERSION + 1, KIND_VALUE]).is_none());
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..1000 {
            let ttl = jitter(Duration::from_secs(600));
            assert!(
                ttl >= Duration::from_secs(540) && ttl <= Duration::from_secs(660),
                "{ttl:?}"
            );
        }
    }
}
