//! Cache-aside over PostgreSQL in Redis (ARCHITECTURE.md, "Read cache").
//!
//! * Read Redis; on a miss load from PostgreSQL and fill with the TTL ±10 % jitter.
//!   Values are protobuf bytes behind a two-byte header (format version, kind), so an
//!   entry of an older format is a miss, not a decoding error.
//! * No stale fill: before querying PostgreSQL the reader makes sure the key has a
//!   generation token ([`READ_SCRIPT`]), and the fill ([`FILL_SCRIPT`]) lands only if
//!   that token is still there and unchanged. Every invalidation deletes the value and
//!   the token; an evicted or lost token refuses the fill too.
//! * No stampede: concurrent misses of one key in this process share one load, which
//!   runs in a task of its own ([`flight`]), so callers that give up strand nothing.
//! * Unknown ids are cached briefly as "missing" entries (negative caching).
//! * Writes commit first, then invalidate (`store::outbox`). The keys are also written
//!   to `cache_outbox` in the write's transaction; a failed invalidation leaves the row
//!   for the background drainer, and until it is drained reads bypass Redis (which may
//!   still hold the stale entry; [`pending`]).
//! * Redis is optional: every call has its own deadline (`CACHE_REDIS_TIMEOUT_MS`)
//!   and goes through a circuit breaker; a failure means "read PostgreSQL".
//! * [`views`] says what is cached: each view's key, TTL, shape and freshness.
//! * In front of Redis, [`l1`] keeps recent entries in process memory for a second or
//!   two, trusted only while this process hears every write's invalidation (pushed over
//!   Redis pub/sub: [`Cache::invalidate`] publishes the keys once Redis deleted them).

mod flight;
pub mod keys;
mod l1;
mod metrics;
mod pending;
pub mod views;

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc, LazyLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use common::redis::{Connection, RedisPool};
use futures::future::BoxFuture;
use rand::Rng;
use redis::{Script, cluster_routing::Slot};

pub use common::breaker::BreakerState;
pub use keys::Keys;
pub use l1::{L1, L1Settings};
pub use metrics::{CacheMetrics, MetricsSnapshot, register as register_metrics};
pub use views::{Ttls, Views};

use crate::error::{Error, Result};
use common::breaker::{Breaker, BreakerSettings, CallError};
use flight::{FlightResult, Flights};
use metrics::inc;

/// Read the value and ensure a generation token (see the script's comments). Sent as
/// EVALSHA: the text travels only when Redis answers NOSCRIPT.
pub static READ_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("read.lua")));
/// Compare-and-set fill (see the script's comments); EVALSHA like [`READ_SCRIPT`].
pub static FILL_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("fill.lua")));

/// First byte of every cached value. Bump it when the encoding of any family changes.
const FORMAT_VERSION: u8 = 1;
const KIND_VALUE: u8 = b'V';
const KIND_MISSING: u8 = b'N';
/// How long a generation token lives after the last miss that read it. It only has
/// to outlast one load (a pool checkout and a statement: seconds); a slower load
/// merely loses its fill.
const TOKEN_TTL: Duration = Duration::from_secs(60);

/// Tuning of the cache layer (from the `CACHE_*` settings).
#[derive(Clone, Debug)]
pub struct CacheSettings {
    /// Deadline of one Redis call, waiting for a connection included.
    pub timeout: Duration,
    /// Consecutive failures that open the breaker.
    pub breaker_threshold: u32,
    /// How long the breaker stays open before a probe.
    pub breaker_cooldown: Duration,
    /// Lifetime of a "missing" entry.
    pub negative_ttl: Duration,
    /// Shared loads that may run at once; past it misses load unshared.
    pub max_inflight_loads: usize,
    /// The in-process tier; `None` turns it off.
    pub l1: Option<L1Settings>,
}

/// A test hook run between the PostgreSQL read and the fill, with the key being filled.
pub type BeforeFill = Arc<dyn Fn(String) -> BoxFuture<'static, ()> + Send + Sync>;

/// Hooks for tests; empty in production.
#[derive(Clone, Default)]
pub struct CacheHooks {
    pub before_fill: Option<BeforeFill>,
}

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
    flights: Flights,
    hooks: CacheHooks,
    l1: Option<Arc<L1>>,
    /// Where every invalidation is pushed to the replicas' L1.
    channel: String,
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

/// Fills L1 (when this read has a ticket) with an entry Redis answered.
fn fill_l1(l1: Option<(Arc<L1>, l1::Ticket)>, key: String, bytes: Option<Vec<u8>>) {
    if let (Some((l1, ticket)), Some(bytes)) = (l1, bytes) {
        l1.fill(key, Arc::new(bytes), ticket);
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
            "cache Redis",
            BreakerSettings {
                threshold: settings.breaker_threshold,
                cooldown: settings.breaker_cooldown,
            },
            metrics.breaker_state.clone(),
        );
        let flights = Flights::new(settings.max_inflight_loads, metrics.clone());
        let l1 = settings.l1.map(|l1| Arc::new(L1::new(l1, metrics.clone())));
        Self {
            inner: Arc::new(Inner {
                keys: Keys::new(redis.prefix()),
                channel: l1::channel(redis.prefix()),
                l1,
                redis,
                settings,
                breaker,
                flights,
                metrics,
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

    /// The in-process tier, when it is on.
    pub fn l1(&self) -> Option<&Arc<L1>> {
        self.inner.l1.as_ref()
    }

    /// The pub/sub channel of this deployment's invalidations.
    pub fn invalidation_channel(&self) -> &str {
        &self.inner.channel
    }

    /// Applies an invalidation pushed by a replica (or echoed to this one): new readers
    /// of the keys stop joining loads in flight (they may have read PostgreSQL before
    /// the write), then L1 drops the keys. Runs on the subscription's task; no I/O.
    pub fn apply_pushed_invalidation(&self, payload: &[u8]) {
        let keys = l1::decode_message(payload);
        self.inner.flights.forget(keys.iter().copied());
        if let Some(l1) = &self.inner.l1 {
            l1.invalidate(keys);
        }
    }

    /// One Redis call under the breaker and the per-call deadline. `None` means
    /// "Redis unavailable": skipped by the breaker, failed, or too slow.
    async fn call<T, F, Fut>(&self, operation: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce(Connection) -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<T, redis::RedisError>> + Send + 'static,
    {
        self.call_with(self.inner.settings.timeout, operation).await
    }

    /// The call runs to its verdict in a task of its own even if our caller goes away,
    /// so a hanging Redis opens the breaker however early callers give up.
    async fn call_with<T, F, Fut>(&self, deadline: Duration, operation: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce(Connection) -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<T, redis::RedisError>> + Send + 'static,
    {
        let redis = self.inner.redis.clone();
        let work = async move { redis.run(operation).await };
        match self.inner.breaker.call(deadline, work).await {
            Ok(value) => Some(value),
            Err(CallError::Open) => None,
            Err(error) => {
                tracing::debug!(%error, "cache Redis call failed");
                inc(&self.inner.metrics.errors);
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
        let l1 = self.l1_ticket(&key);
        if let Some((l1, ticket)) = &l1 {
            let cached = l1.get(&key, *ticket);
            match cached.as_deref().and_then(|bytes| decode_entry::<T>(bytes)) {
                Some(Entry::Value(value)) if fresh(&value) => {
                    inc(&metrics.l1_hits);
                    return Ok(Some(value));
                }
                Some(Entry::Missing) => {
                    inc(&metrics.l1_hits);
                    return Ok(None);
                }
                _ => inc(&metrics.l1_misses),
            }
        }
        if self.invalidations_pending() {
            inc(&metrics.bypassed);
        } else {
            let cached = {
                let key = key.clone();
                self.call(move |mut connection| async move {
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
                        fill_l1(l1, key, bytes);
                        return Ok(Some(value));
                    }
                    Some(Entry::Missing) => {
                        inc(&metrics.hits);
                        fill_l1(l1, key, bytes);
                        return Ok(None);
                    }
                    _ => inc(&metrics.misses),
                },
            }
        }

        let l1_key = l1.as_ref().map(|_| key.clone());
        let bytes = self.single_flight(key, ttl, cap, fresh, load).await?;
        if let (Some(key), Some((l1, ticket))) = (l1_key, l1) {
            l1.fill(
                key,
                Arc::new(encode_entry(bytes.as_deref().map(Vec::as_slice))),
                ticket,
            );
        }
        Ok(match bytes {
            Some(bytes) => Some(T::decode(bytes.as_slice()).map_err(Error::internal)?),
            None => None,
        })
    }

    /// L1 with the ticket of `key`'s read, when L1 may be used now: it is on, no
    /// invalidation waits in the outbox, and the subscription is confirmed.
    fn l1_ticket(&self, key: &str) -> Option<(Arc<L1>, l1::Ticket)> {
        let l1 = self.inner.l1.as_ref()?;
        if self.invalidations_pending() {
            inc(&self.inner.metrics.l1_bypassed);
            return None;
        }
        Some((l1.clone(), l1.ticket(key)?))
    }

    /// Joins the in-flight load of `key`, or starts one (see [`flight`]).
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
        let cache = self.clone();
        self.inner
            .flights
            .run(key.clone(), move || async move {
                cache.load_and_fill(key, ttl, cap, fresh, load).await
            })
            .await
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
        // Look again (a previous flight may have filled it since our GET) and make sure
        // a generation token exists: the one this load's fill is compared against.
        let mut token = None;
        if !self.invalidations_pending() {
            let read = {
                let (key, generation_key) = (key.clone(), generation_key.clone());
                let fresh_token = rand::thread_rng().gen_range(1_u64 << 32..1_u64 << 62);
                self.call(move |mut connection| async move {
                    READ_SCRIPT
                        .key(&key)
                        .key(&generation_key)
                        .arg(fresh_token)
                        .arg(TOKEN_TTL.as_millis() as u64)
                        .invoke_async::<(Option<Vec<u8>>, String)>(&mut connection)
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
                    _ => token = Some(seen),
                }
            }
        }

        let loaded = load().await?;
        let encoded = loaded.as_ref().map(|value| value.encode_to_vec());

        if let Some(hook) = &self.inner.hooks.before_fill {
            hook(key.clone()).await;
        }
        // Only fill with a token ensured before the load, and not while an
        // invalidation is waiting in the outbox.
        if let Some(token) = token.filter(|_| !self.invalidations_pending()) {
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
                .call(move |mut connection| async move {
                    FILL_SCRIPT
                        .key(&key)
                        .key(&generation_key)
                        .arg(&token)
                        .arg(value)
                        .arg(ttl_ms)
                        .invoke_async::<i64>(&mut connection)
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

    /// Deletes `keys` and their generation tokens: one pipeline on a single node, one
    /// pipeline per hash slot on a cluster. `false` when Redis did not confirm every key.
    /// Readers of this process stop joining loads of `keys` that are in flight now.
    pub async fn invalidate(&self, keys: &[String]) -> bool {
        if keys.is_empty() {
            return true;
        }
        self.inner.flights.forget(keys.iter().map(String::as_str));
        // This process stops serving the old values at once; the other replicas when
        // the message below reaches them.
        if let Some(l1) = &self.inner.l1 {
            l1.invalidate(keys.iter().map(String::as_str));
        }
        let mut groups: Vec<Vec<&String>> = if self.inner.redis.is_cluster() {
            let mut by_slot: HashMap<Slot, Vec<&String>> = HashMap::new();
            for key in keys {
                by_slot.entry(Slot::for_key(key)).or_default().push(key);
            }
            by_slot.into_values().collect()
        } else {
            vec![keys.iter().collect()]
        };
        groups.retain(|group| !group.is_empty());
        let mut pipelines: Vec<(redis::Pipeline, usize)> = groups
            .iter()
            .map(|group| {
                let mut pipe = redis::pipe();
                for key in group {
                    // One slot (the hash tag), so one DEL serves both on a cluster too.
                    pipe.cmd("DEL")
                        .arg(key.as_str())
                        .arg(keys::generation_key(key));
                }
                (pipe, group.len())
            })
            .collect();
        // After the deletions (a replica told of them must find them done), one message
        // with every key of the write. On a single node it rides in the pipeline (no
        // extra round trip); a cluster routes a pipeline by its keys, and PUBLISH names a
        // channel, so there it goes alone (any node broadcasts it to the others).
        let mut publish = redis::cmd("PUBLISH");
        publish
            .arg(&self.inner.channel)
            .arg(l1::encode_message(keys));
        let publish = match pipelines.last_mut() {
            Some((pipe, expected)) if !self.inner.redis.is_cluster() => {
                pipe.add_command(publish);
                *expected += 1;
                None
            }
            _ => Some(publish),
        };
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
                if let Some(publish) = publish {
                    publish.query_async::<i64>(&mut connection).await?;
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
