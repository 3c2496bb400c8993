//! Single flight: concurrent misses of one key in this process share one load.
//!
//! The shared load runs in a task of its own (STYLE.md rule 17). Its callers only
//! await a handle on it, so a caller that gives up (a client that hangs up mid-call)
//! drops its handle and nothing else: the load still finishes, fills the cache under
//! the usual no-stale-fill rule, returns its connections to their pools, and leaves
//! the map. A load parked inside a map with nobody polling it, holding a pooled
//! connection forever, cannot happen.
//!
//! The number of detached loads is bounded (`CACHE_MAX_INFLIGHT_LOADS`). Past the
//! bound a miss loads in its caller's own future, unshared: still bounded by the
//! PostgreSQL pool, and dropped with its caller, so a flood of distinct misses can
//! neither grow the map nor queue unbounded work behind the callers' backs.

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use common::sync::MutexExt;
use futures::{
    FutureExt,
    future::{BoxFuture, Shared},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use super::metrics::{CacheMetrics, inc};
use crate::error::Error;

/// What a load yields: the encoded value, `None` for an unknown id.
pub type FlightResult = Result<Option<Arc<Vec<u8>>>, Error>;

/// One detached load, as its waiters see it.
struct Flight {
    /// Tells this flight from a later one of the same key (see [`Flights::forget`]).
    id: u64,
    result: Shared<BoxFuture<'static, FlightResult>>,
}

struct State {
    map: Mutex<HashMap<String, Flight>>,
    /// One permit per detached load: the bound of the map and of the tasks.
    slots: Arc<Semaphore>,
    next_id: AtomicU64,
    metrics: Arc<CacheMetrics>,
}

/// The in-flight loads of one process; cheap to clone.
#[derive(Clone)]
pub struct Flights {
    state: Arc<State>,
}

/// What a miss does: wait for a detached load, or load by itself.
enum Next<Fut> {
    Join(Shared<BoxFuture<'static, FlightResult>>),
    Unshared(Fut),
}

/// Held by a detached load until it ends, however it ends (a panic included): takes
/// the flight out of the map, unless a newer one of the key replaced it, and frees
/// its slot.
struct Landing {
    state: Arc<State>,
    key: String,
    id: u64,
    _slot: OwnedSemaphorePermit,
}

impl Drop for Landing {
    fn drop(&mut self) {
        let mut map = self.state.map.lock_unpoisoned();
        if map
            .get(&self.key)
            .is_some_and(|flight| flight.id == self.id)
        {
            map.remove(&self.key);
        }
        self.state
            .metrics
            .inflight_loads
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Flights {
    /// At most `limit` detached loads at a time.
    pub fn new(limit: usize, metrics: Arc<CacheMetrics>) -> Self {
        Self {
            state: Arc::new(State {
                map: Mutex::new(HashMap::new()),
                slots: Arc::new(Semaphore::new(limit.max(1))),
                next_id: AtomicU64::new(0),
                metrics,
            }),
        }
    }

    /// Joins the flight of `key`, or starts `load()` as a new one in a task of its
    /// own; past the bound, runs `load()` in the caller, unshared.
    ///
    /// `load` should include the fill: the flight leaves the map only when `load`
    /// ends, so a reader that missed just before the fill either joins this flight
    /// or finds the entry.
    pub async fn run<L, Fut>(&self, key: String, load: L) -> FlightResult
    where
        L: FnOnce() -> Fut,
        Fut: Future<Output = FlightResult> + Send + 'static,
    {
        let next = {
            let mut map = self.state.map.lock_unpoisoned();
            match map.get(&key) {
                Some(flight) => Next::Join(flight.result.clone()),
                None => match self.state.slots.clone().try_acquire_owned() {
                    Ok(slot) => Next::Join(self.start(&mut map, key, slot, load())),
                    Err(_) => Next::Unshared(load()),
                },
            }
        };
        match next {
            Next::Join(flight) => flight.await,
            Next::Unshared(work) => {
                inc(&self.state.metrics.unshared_loads);
                work.await
            }
        }
    }

    /// Spawns `work` as the flight of `key` and enters it in `map`.
    fn start<Fut>(
        &self,
        map: &mut HashMap<String, Flight>,
        key: String,
        slot: OwnedSemaphorePermit,
        work: Fut,
    ) -> Shared<BoxFuture<'static, FlightResult>>
    where
        Fut: Future<Output = FlightResult> + Send + 'static,
    {
        let id = self.state.next_id.fetch_add(1, Ordering::Relaxed);
        self.state
            .metrics
            .inflight_loads
            .fetch_add(1, Ordering::Relaxed);
        let landing = Landing {
            state: self.state.clone(),
            key: key.clone(),
            id,
            _slot: slot,
        };
        let task = tokio::spawn(
            async move {
                let result = work.await;
                drop(landing);
                result
            }
            .in_current_span(),
        );
        let result = async move {
            task.await.unwrap_or_else(|error| {
                Err(Error::internal(anyhow::anyhow!("cache load task: {error}")))
            })
        }
        .boxed()
        .shared();
        map.insert(
            key,
            Flight {
                id,
                result: result.clone(),
            },
        );
        result
    }

    /// Stops new readers of `keys` from joining the loads now in flight: a write to
    /// them has committed, and those loads may have read PostgreSQL before it. The
    /// loads themselves go on (their waiters started before the write), and their
    /// fills are refused by the generation check.
    pub fn forget<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        let mut map = self.state.map.lock_unpoisoned();
        for key in keys {
            map.remove(key);
        }
    }
}
