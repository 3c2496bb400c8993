//! L1: a small in-process cache in front of Redis, kept fresh by pushed invalidations
//! (ARCHITECTURE.md, "In-process state kept fresh by push").
//!
//! * Bounded in bytes (`CACHE_L1_MAX_BYTES`, moka with a weigher) and in time
//!   (`CACHE_L1_TTL_MS`, at most 2 s): the TTL is the hard bound on staleness should a
//!   push be lost in a way nothing noticed.
//! * Every write's invalidated keys are PUBLISHed on the cache role, one message per
//!   write, after Redis confirmed their deletion; every replica's subscription
//!   ([`common::pubsub`]) applies them here.
//! * Trusted only while subscribed: with no confirmed subscription L1 is bypassed
//!   (neither read nor filled). Every entry carries the subscription epoch it was
//!   filled under and is valid only under that same epoch, so a new subscription
//!   flushes L1 at once, logically (and the memory soon after).
//! * No resurrection: each key hashes to one of [`STRIPES`] generation counters, bumped
//!   by every invalidation of a key of the stripe. A reader takes the generation before
//!   it reads Redis or PostgreSQL; its fill carries it, and an entry is valid only while
//!   its stripe's generation has not moved. A value read before an invalidation can
//!   therefore never be served after it, whatever the order of the fill and the push.

use std::{
    hash::BuildHasher,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use common::pubsub::Subscription;

use super::metrics::{CacheMetrics, inc};

/// Generation counters shared by the keys: more stripes, fewer entries an unrelated
/// invalidation costs (an invalidation makes 1/STRIPES of L1 miss once).
const STRIPES: usize = 4096;
/// Bookkeeping bytes counted per entry beside its key and value (moka's node, the Arc).
const ENTRY_OVERHEAD: usize = 96;

/// Size and lifetime of L1 (`CACHE_L1_MAX_BYTES`, `CACHE_L1_TTL_MS`).
#[derive(Clone, Copy, Debug)]
pub struct L1Settings {
    pub max_bytes: u64,
    pub ttl: Duration,
}

/// One cached value: the same bytes Redis holds (format, kind, protobuf), and when it
/// is valid.
struct Entry {
    bytes: Arc<Vec<u8>>,
    epoch: u64,
    generation: u64,
}

/// What a reader took before reading the tiers below, to fill L1 with afterwards.
#[derive(Clone, Copy, Debug)]
pub struct Ticket {
    epoch: u64,
    generation: u64,
}

pub struct L1 {
    entries: moka::sync::Cache<String, Arc<Entry>>,
    generations: Box<[AtomicU64]>,
    hasher: std::collections::hash_map::RandomState,
    /// Set once at start, after the subscription (whose handler calls back here) exists.
    subscription: OnceLock<Subscription>,
    metrics: Arc<CacheMetrics>,
}

impl L1 {
    pub fn new(settings: L1Settings, metrics: Arc<CacheMetrics>) -> Self {
        let entries = moka::sync::Cache::builder()
            .max_capacity(settings.max_bytes)
            .weigher(|key: &String, entry: &Arc<Entry>| {
                u32::try_from(key.len() + entry.bytes.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            .time_to_live(settings.ttl)
            .build();
        Self {
            entries,
            generations: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            hasher: Default::default(),
            subscription: OnceLock::new(),
            metrics,
        }
    }

    /// Hands L1 the subscription that feeds it; until then L1 is bypassed. On every
    /// new epoch the entries of older ones (already invalid) are dropped to free memory.
    pub fn attach(self: &Arc<Self>, subscription: Subscription) {
        let mut epochs = subscription.epoch();
        if self.subscription.set(subscription).is_err() {
            tracing::error!("L1 already has a subscription; the second one is dropped");
            return;
        }
        let l1 = Arc::downgrade(self);
        tokio::spawn(async move {
            // Ends when the subscription's task does (shutdown) or L1 is gone.
            while epochs.changed().await.is_ok() {
                let Some(l1) = l1.upgrade() else { return };
                if epochs.borrow_and_update().is_some() {
                    l1.flush();
                }
            }
        });
    }

    fn stripe(&self, key: &str) -> &AtomicU64 {
        &self.generations[(self.hasher.hash_one(key) as usize) % STRIPES]
    }

    /// The current subscription epoch, `None` when L1 must not be trusted.
    fn epoch(&self) -> Option<u64> {
        self.subscription.get()?.current_epoch()
    }

    /// Before reading the lower tiers: the ticket a later fill needs, or `None` when L1 is
    /// bypassed (not subscribed; counted).
    pub fn ticket(&self, key: &str) -> Option<Ticket> {
        match self.epoch() {
            Some(epoch) => Some(Ticket {
                epoch,
                generation: self.stripe(key).load(Ordering::Acquire),
            }),
            None => {
                inc(&self.metrics.l1_bypassed);
                None
            }
        }
    }

    /// The entry of `key` if it is still valid under `ticket` (taken just before).
    pub fn get(&self, key: &str, ticket: Ticket) -> Option<Arc<Vec<u8>>> {
        self.entries
            .get(key)
            .filter(|entry| entry.epoch == ticket.epoch && entry.generation == ticket.generation)
            .map(|entry| entry.bytes.clone())
    }

    /// Fills `key` with what the lower tiers answered, unless an invalidation of its
    /// stripe or a resubscription happened since `ticket` was taken.
    pub fn fill(&self, key: String, bytes: Arc<Vec<u8>>, ticket: Ticket) {
        if !self.still_valid(&key, ticket) {
            return;
        }
        self.entries.insert(
            key.clone(),
            Arc::new(Entry {
                bytes,
                epoch: ticket.epoch,
                generation: ticket.generation,
            }),
        );
        // An invalidation between the check and the insert would leave an entry that no
        // read accepts (its generation is old); remove it now rather than at its TTL.
        if !self.still_valid(&key, ticket) {
            self.entries.invalidate(&key);
        }
    }

    fn still_valid(&self, key: &str, ticket: Ticket) -> bool {
        self.epoch() == Some(ticket.epoch)
            && self.stripe(key).load(Ordering::Acquire) == ticket.generation
    }

    /// Applies an invalidation of `keys` (pushed by any replica, this one included).
    /// The generation moves first, so from this moment no read accepts the old entry.
    pub fn invalidate<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        for key in keys {
            self.stripe(key).fetch_add(1, Ordering::AcqRel);
            self.entries.invalidate(key);
        }
    }

    /// Drops every entry (after a resubscription: they are already invalid by epoch).
    pub fn flush(&self) {
        self.entries.invalidate_all();
    }

    /// Bytes held now (the weigher's sum, with pending evictions applied).
    pub fn weighted_size(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
    }
}

/// The channel of the pushed invalidations of one deployment.
pub fn channel(prefix: &str) -> String {
    format!("{prefix}cache:invalidations")
}

/// One message per write: the keys, one per line (keys have no whitespace).
pub fn encode_message(keys: &[String]) -> Vec<u8> {
    keys.join("\n").into_bytes()
}

/// The keys of a message; a malformed one (not UTF-8) yields none and is logged.
pub fn decode_message(payload: &[u8]) -> Vec<&str> {
    match std::str::from_utf8(payload) {
        Ok(text) => text.split('\n').filter(|key| !key.is_empty()).collect(),
        Err(_) => {
            tracing::warn!("an invalidation message is not UTF-8; ignored");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_the_keys_of_one_write() {
        let keys = vec![
            "p:cache:deck:{a}".to_owned(),
            "p:cache:cards:{a}".to_owned(),
        ];
        assert_eq!(decode_message(&encode_message(&keys)), keys);
        assert!(decode_message(b"").is_empty());
        assert!(decode_message(&[0xff, 0xfe]).is_empty());
    }
}
