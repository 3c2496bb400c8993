//! The cache-invalidation outbox: the one place that knows which cache keys a write
//! makes stale, records them in the write's own transaction, and invalidates them after
//! COMMIT (ARCHITECTURE.md, "Read cache").
//!
//! A write records its stale keys in `cache_outbox` inside its transaction. After COMMIT
//! it invalidates them and hands the row to the [`Deleter`]; if Redis does not confirm, the
//! row stays, the cache bypasses Redis for reads ([`Cache::invalidation_deferred`]) and the
//! background drainer delivers it later.

use std::time::Duration;

use sqlx::PgPool;
use tokio::{sync::mpsc, task::JoinHandle};
use uuid::Uuid;

use super::db::{Db, Tx};
use crate::{
    cache::{Cache, Keys},
    domain::{DeckId, UserId},
    error::Result,
};

/// Delivered rows waiting for the [`Deleter`]; beyond it a row is left to the drainer.
const DELETES_QUEUED: usize = 4096;

/// Most rows one `DELETE` takes.
const DELETES_PER_STATEMENT: usize = 1024;

/// Writes outbox rows and owes their invalidations; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    db: Db,
    cache: Cache,
    deleter: Deleter,
}

impl Outbox {
    /// Starts the outbox's [`Deleter`]: needs a Tokio runtime.
    pub fn new(db: Db, cache: Cache) -> Self {
        let deleter = Deleter::spawn(db.uncounted().clone());
        Self { db, cache, deleter }
    }

    fn keys(&self) -> &Keys {
        self.cache.keys()
    }

    /// The keys of one deck (its card count and its cards).
    pub fn deck_keys(&self, deck: DeckId) -> Vec<String> {
        self.keys().of_deck(deck).to_vec()
    }

    /// The keys of one user (started decks with progress, due cards).
    pub fn user_keys(&self, user: UserId) -> Vec<String> {
        self.keys().of_user(user).to_vec()
    }

    /// The keys a change to the content of `decks` makes stale: the decks' own keys,
    /// and the progress and due cards of every user who started one of them.
    pub async fn content_keys(&self, tx: &mut Tx, decks: &[Uuid]) -> Result<Vec<String>> {
        let users: Vec<(Uuid,)> =
            sqlx::query_as("SELECT DISTINCT user_id FROM deck_progress WHERE deck_id = ANY($1)")
                .bind(decks)
                .fetch_all(tx.conn())
                .await?;
        let keys = self.keys();
        let mut out: Vec<String> = decks
            .iter()
            .flat_map(|deck| keys.of_deck(DeckId(*deck)))
            .collect();
        out.extend(users.iter().flat_map(|(user,)| keys.of_user(UserId(*user))));
        Ok(out)
    }

    /// The invalidation of `keys`, owed once a transaction records it (see
    /// [`commit_owing`](Self::commit_owing)).
    pub fn owe(&self, keys: Vec<String>) -> PendingInvalidation {
        PendingInvalidation {
            cache: self.cache.clone(),
            deleter: self.deleter.clone(),
            keys,
            outbox_ids: Vec::new(),
        }
    }

    /// Records `keys` in the outbox, commits, then invalidates them.
    pub async fn commit(&self, tx: Tx, keys: Vec<String>) -> Result<()> {
        let mut owed = self.owe(keys);
        self.commit_owing(tx, &mut owed).await?;
        owed.run().await;
        Ok(())
    }

    /// Adds `owed`'s keys to the outbox and commits. From here on the invalidation is
    /// owed even if this future is dropped (see [`PendingInvalidation`]).
    pub async fn commit_owing(&self, mut tx: Tx, owed: &mut PendingInvalidation) -> Result<()> {
        let id = record(&mut tx, owed.keys()).await?;
        owed.record(id);
        tx.commit().await?;
        Ok(())
    }

    /// Drains the outbox once: invalidates every row's keys and deletes the rows.
    /// Returns whether the outbox was empty at the end.
    pub async fn drain(&self) -> Result<bool> {
        let pg = self.db.uncounted();
        let epoch = self.cache.outbox_epoch();
        loop {
            let rows: Vec<(i64, Vec<String>)> =
                sqlx::query_as("SELECT id, keys FROM cache_outbox ORDER BY id LIMIT 200")
                    .fetch_all(pg)
                    .await?;
            if rows.is_empty() {
                self.cache.outbox_drained(epoch);
                return Ok(true);
            }
            let mut keys: Vec<String> = rows
                .iter()
                .flat_map(|(_, keys)| keys.iter().cloned())
                .collect();
            keys.sort();
            keys.dedup();
            if !self.cache.invalidate(&keys).await {
                return Ok(false);
            }
            let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
            delete(pg, &ids).await?;
            self.cache.count_outbox_drained(ids.len() as u64);
        }
    }

    /// Drains the outbox every `interval` until `shutdown`.
    pub fn spawn_drainer(&self, interval: Duration, shutdown: common::shutdown::Shutdown) {
        let outbox = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = shutdown.wait() => return,
                }
                if let Err(error) = outbox.drain().await {
                    tracing::warn!(%error, "cannot drain the cache outbox");
                }
            }
        });
    }
}

/// Inserts the outbox row of `keys` in `tx`; its id.
pub async fn record(tx: &mut Tx, keys: &[String]) -> Result<i64> {
    let (id,): (i64,) = sqlx::query_as("INSERT INTO cache_outbox (keys) VALUES ($1) RETURNING id")
        .bind(keys)
        .fetch_one(tx.conn())
        .await?;
    Ok(id)
}

async fn delete(pg: &PgPool, ids: &[i64]) -> Result<()> {
    sqlx::query("DELETE FROM cache_outbox WHERE id = ANY($1)")
        .bind(ids)
        .execute(pg)
        .await?;
    Ok(())
}

/// Deletes the rows of delivered invalidations, all those delivered meanwhile in one
/// statement (a group commit): under load a write costs PostgreSQL a fraction of a
/// `DELETE` and its commit rather than one each; alone, a row is deleted at once.
///
/// One task does it, fed by a bounded queue, so no caller waits for it or can cancel
/// it. A row it does not delete (the queue full, a failed statement, the process going
/// down) is harmless: the drainer invalidates its keys once more, then deletes it.
#[derive(Clone)]
struct Deleter {
    queue: mpsc::Sender<i64>,
}

impl Deleter {
    fn spawn(pg: PgPool) -> Self {
        let (queue, mut delivered) = mpsc::channel(DELETES_QUEUED);
        tokio::spawn(async move {
            let mut ids = Vec::with_capacity(DELETES_PER_STATEMENT);
            // Ends when the last sender (outbox or owed invalidation) is gone.
            while delivered.recv_many(&mut ids, DELETES_PER_STATEMENT).await > 0 {
                if let Err(error) = delete(&pg, &ids).await {
                    tracing::warn!(%error, "cannot delete delivered cache outbox rows");
                }
                ids.clear();
            }
        });
        Self { queue }
    }

    /// Queues `ids` for deletion; those that do not fit stay for the drainer.
    fn delete(&self, ids: &[i64]) {
        for &id in ids {
            if self.queue.try_send(id).is_err() {
                return;
            }
        }
    }
}

/// The invalidation a write owes once its transaction commits.
///
/// Its row is recorded before COMMIT ([`Outbox::commit_owing`]), and [`run`](Self::run)
/// after it. The invalidation runs in a task of its own, so a caller that goes away
/// after COMMIT (a client hanging up) cannot leave the entries stale in Redis while this
/// process still trusts it. Dropped with a row recorded but not run (the caller went
/// away during COMMIT, or COMMIT failed with an unknown outcome), it hands the same work
/// to a task: for a write that did not commit that costs a refill, never a stale read.
#[must_use = "run it after COMMIT"]
pub struct PendingInvalidation {
    cache: Cache,
    deleter: Deleter,
    keys: Vec<String>,
    outbox_ids: Vec<i64>,
}

impl PendingInvalidation {
    /// The keys owed.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// The `cache_outbox` row (holding these keys) of a transaction about to commit, or
    /// of a statement that committed it.
    pub(super) fn record(&mut self, outbox_id: i64) {
        self.outbox_ids.push(outbox_id);
    }

    /// Takes over what `other` owes (its rows, and its keys when they differ), so that
    /// one invalidation covers both.
    pub fn absorb(&mut self, mut other: PendingInvalidation) {
        for key in std::mem::take(&mut other.keys) {
            if !self.keys.contains(&key) {
                self.keys.push(key);
            }
        }
        self.outbox_ids.append(&mut other.outbox_ids);
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
        let (cache, deleter, keys) = (self.cache.clone(), self.deleter.clone(), self.keys.clone());
        Some(runtime.spawn(async move {
            after_commit(&cache, &deleter, &outbox_ids, &keys).await;
        }))
    }
}

impl Drop for PendingInvalidation {
    fn drop(&mut self) {
        self.spawn();
    }
}

/// After writes committed with outbox rows `outbox_ids` (holding `keys`): invalidate
/// now, and delete the rows if that worked; otherwise leave them to the drainer.
async fn after_commit(cache: &Cache, deleter: &Deleter, outbox_ids: &[i64], keys: &[String]) {
    if cache.invalidate(keys).await {
        deleter.delete(outbox_ids);
    } else {
        cache.invalidation_deferred(keys.len());
    }
}
