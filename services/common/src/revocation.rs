//! Revoked sessions and users, known in memory by every process that verifies access
//! tokens (ARCHITECTURE.md, "In-process state kept fresh by push"; HTTP_API.md, "Ended
//! sessions end their access tokens").
//!
//! session-service records every revocation in the sessions Redis and publishes it there
//! ([`Publisher`]):
//! - a session ended (logout, `DELETE /auth/sessions/{id}`, reuse detection, the session
//!   cap): [`Revoked::Session`], its `sid`;
//! - every session of a user ended (logout-all, deactivation, a change of the superuser
//!   flag): [`Revoked::User`], "this user's tokens issued before `before`".
//!
//! The record lives in one sorted set ([`snapshot_key`]) scored by the unix second its
//! entry may be forgotten: when the longest access token issued before the revocation has
//! expired (`until`). So a snapshot is always there, and its size is bounded by the
//! revocations of one access-token lifetime. The same JSON is the set's member and the
//! message on [`channel`].
//!
//! The gateway and deck-service hold a [`Revocations`]: the revoked set in memory, fed by
//! the messages of a `common::pubsub` subscription on the sessions role and by the
//! snapshot, loaded whenever that subscription is (re)confirmed. Each verified access
//! token is checked against it ([`Revocations::check`], called by
//! [`AccessVerifier::verify`](crate::auth::AccessVerifier::verify), cached tokens too):
//! a lookup in process memory, no round trip. While the subscription is down, or its
//! snapshot not loaded yet, messages may have been missed: each request then asks Redis
//! whether the token's session still exists, under [`RevocationConfig`]'s tight deadline;
//! if Redis cannot answer, [`Fallback`] decides.

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use clap::Args;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

use crate::{
    auth::{AuthError, Caller, LEEWAY_SECONDS},
    clock::{Clock, SystemClock},
    config::{RedisConfig, Secret, parse_millis},
    metrics::Metrics,
    pubsub::{PubsubMetrics, Subscription, SubscriptionConfig, SubscriptionSetupError},
    redis::{RedisError, RedisPool},
    shutdown::Shutdown,
    sync::RwLockExt,
};

/// Name of the pub/sub subscription (the `subscription` label of `pubsub_*` series).
pub const SUBSCRIPTION: &str = "revocations";
/// Pause between attempts to load the snapshot while Redis refuses.
const SNAPSHOT_RETRY: Duration = Duration::from_millis(200);
/// How often entries past their `until` are swept from memory.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// `{prefix}revocations`: the pub/sub channel of revocations.
pub fn channel(prefix: &str) -> String {
    format!("{prefix}revocations")
}

/// `{prefix}revocations:{revocations}`: the sorted set of recent revocations (hash-tagged
/// on its own: one key, one slot in a Redis Cluster).
pub fn snapshot_key(prefix: &str) -> String {
    format!("{prefix}revocations:{{revocations}}")
}

/// `{prefix}session:refresh:{<user_id>}:<session_id>`: the hash of a live session,
/// written by session-service; it exists exactly while the session lives.
pub fn session_key(prefix: &str, user_id: Uuid, session_id: Uuid) -> String {
    format!("{prefix}session:refresh:{{{user_id}}}:{session_id}")
}

/// What a revocation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Revoked {
    /// One session: every access token with this `sid`.
    Session { sid: Uuid },
    /// Every session of a user: their access tokens whose `iat` is before `before`
    /// (unix seconds).
    User { user_id: Uuid, before: u64 },
}

impl Revoked {
    /// The `kind` label of the revocation metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Session { .. } => "session",
            Self::User { .. } => "user",
        }
    }
}

/// One revocation as stored in the snapshot and published.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    #[serde(flatten)]
    pub revoked: Revoked,
    /// Unix seconds after which no access token it refuses can still be live.
    pub until: u64,
    /// Unix milliseconds (system clock) of publication, for the push-lag histogram.
    pub at_ms: u64,
}

impl Revocation {
    /// `revoked` at `now` (unix seconds, the issuer's clock), kept for `access_ttl`:
    /// the longest an access token issued until now can live, plus the leeway.
    pub fn new(revoked: Revoked, now: u64, access_ttl: Duration) -> Self {
        Self {
            revoked,
            until: now + access_ttl.as_secs() + LEEWAY_SECONDS,
            at_ms: SystemClock.unix_millis(),
        }
    }
}

/// session-service's side: records each revocation in the snapshot and publishes it.
#[derive(Clone)]
pub struct Publisher {
    redis: RedisPool,
    access_ttl: Duration,
    published: Family<KindLabels, Counter>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("access_ttl", &self.access_ttl)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Publishes on the sessions role `redis`; entries are kept for `access_ttl` (the
    /// access-token lifetime) plus the leeway.
    pub fn new(redis: RedisPool, access_ttl: Duration) -> Self {
        Self {
            redis,
            access_ttl,
            published: kind_family(),
        }
    }

    /// Exports `revocations_published_total{kind}`.
    pub fn register(&self, metrics: &Metrics) {
        metrics.register(
            "revocations_published",
            "Revocations recorded in the snapshot and published, by kind",
            self.published.clone(),
        );
    }

    /// Records `revoked` at `now` (unix seconds, the issuer's clock) in the snapshot
    /// (dropping entries past their `until`) and publishes it, in one round trip
    /// (`lua/revocation.lua`). Classic PUBLISH, from a script too, reaches the
    /// subscribers of every node of a Redis Cluster through the cluster bus.
    pub async fn publish(&self, revoked: Revoked, now: u64) -> Result<(), RedisError> {
        static SCRIPT: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(include_str!("lua/revocation.lua")));
        let revocation = Revocation::new(revoked, now, self.access_ttl);
        #[allow(
            clippy::expect_used,
            reason = "UUIDs and integers, no map keys: serializing to JSON cannot fail"
        )]
        let payload = serde_json::to_string(&revocation).expect("a revocation serializes");
        let mut invocation = SCRIPT.prepare_invoke();
        invocation
            .key(snapshot_key(self.redis.prefix()))
            .arg(payload)
            .arg(revocation.until)
            .arg(now)
            .arg(channel(self.redis.prefix()));
        self.redis
            .run(|mut connection| async move { invocation.invoke_async::<()>(&mut connection).await })
            .await?;
        self.published
            .get_or_create(&KindLabels {
                kind: revoked.kind(),
            })
            .inc();
        Ok(())
    }
}

/// What to do with a token when the revoked set may be incomplete and Redis cannot say
/// whether its session lives (`REVOCATION_FALLBACK`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Fallback {
    /// Accept it until its `exp` (counted and logged): availability first.
    Accept,
    /// Refuse it with 503: revocation first.
    Refuse,
}

/// How the gateway and deck-service learn of revocations.
#[derive(Clone, Debug, Args)]
pub struct RevocationConfig {
    /// Redis of the sessions role, where session-service records and publishes revocations:
    /// `redis://host:port/db`, or a Redis Cluster (comma-separated seeds).
    #[arg(
        long = "session-redis-url",
        env = "SESSION_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub session_redis_url: Secret<String>,
    /// While the push channel is down and Redis cannot say whether a token's session lives:
    /// `accept` the token until its `exp` (counted and logged), or `refuse` it (503).
    #[arg(
        long = "revocation-fallback",
        env = "REVOCATION_FALLBACK",
        value_enum,
        default_value = "accept"
    )]
    pub revocation_fallback: Fallback,
    /// Deadline, in milliseconds, of the per-request session lookup made while the push
    /// channel is down.
    #[arg(long = "revocation-check-timeout-ms", env = "REVOCATION_CHECK_TIMEOUT_MS",
          default_value = "100", value_parser = parse_millis)]
    pub revocation_check_timeout: Duration,
}

/// The revoked sessions and users whose tokens may still be live.
#[derive(Debug, Default)]
struct RevokedSet {
    /// `sid` → `until`.
    sessions: HashMap<Uuid, u64>,
    /// user id → (`before`, `until`); a later revocation of the same user widens both.
    users: HashMap<Uuid, (u64, u64)>,
}

impl RevokedSet {
    fn insert(&mut self, revocation: &Revocation) {
        match revocation.revoked {
            Revoked::Session { sid } => {
                let until = self.sessions.entry(sid).or_default();
                *until = (*until).max(revocation.until);
            }
            Revoked::User { user_id, before } => {
                let (known_before, until) = self.users.entry(user_id).or_default();
                *known_before = (*known_before).max(before);
                *until = (*until).max(revocation.until);
            }
        }
    }

    fn refuses(&self, caller: &Caller) -> bool {
        self.sessions.contains_key(&caller.session_id)
            || self
                .users
                .get(&caller.user_id)
                .is_some_and(|(before, _)| caller.issued_at < *before)
    }

    /// Forgets the entries whose tokens have all expired by `now`.
    fn sweep(&mut self, now: u64) {
        self.sessions.retain(|_, until| *until >= now);
        self.users.retain(|_, (_, until)| *until >= now);
    }

    fn len(&self) -> usize {
        self.sessions.len() + self.users.len()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// Every `kind` label value: their series exist from the start at 0, so alerts and
/// dashboards see a rate from the first revocation on.
const KINDS: [&str; 2] = ["session", "user"];

/// Every `outcome` label value of the fallback checks, created at 0 likewise.
const OUTCOMES: [&str; 3] = ["checked", "accepted_unverified", "refused_unverified"];

fn kind_family() -> Family<KindLabels, Counter> {
    let family = Family::default();
    for kind in KINDS {
        let _ = family.get_or_create(&KindLabels { kind });
    }
    family
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// The revocation series of a verifying process (names fixed by the ops contract).
#[derive(Clone)]
struct RevocationMetrics {
    applied: Family<KindLabels, Counter>,
    lag: Histogram,
    live: Gauge,
    fallback: Family<OutcomeLabels, Counter>,
}

impl RevocationMetrics {
    fn new() -> Self {
        Self {
            applied: kind_family(),
            lag: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.001, 2.0, 14,
            )),
            live: Gauge::default(),
            fallback: {
                let family = Family::default();
                for outcome in OUTCOMES {
                    let _ = family.get_or_create(&OutcomeLabels { outcome });
                }
                family
            },
        }
    }

    fn register(&self, metrics: &Metrics) {
        metrics.register(
            "revocations_applied",
            "Revocations applied to the in-memory revoked set, pushed or from a snapshot, by kind",
            self.applied.clone(),
        );
        metrics.register(
            "revocation_push_lag_seconds",
            "Time from a revocation's publication to its application here",
            self.lag.clone(),
        );
        metrics.register(
            "revocation_push_live",
            "1 while the revoked set is complete (subscribed and snapshot loaded), else 0",
            self.live.clone(),
        );
        metrics.register(
            "revocation_fallback_checks",
            "Per-request revocation checks made while the push channel was down, by outcome",
            self.fallback.clone(),
        );
    }

    fn fallback(&self, outcome: &'static str) {
        self.fallback
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
}

/// The revoked set of one process and the checks made against it; cheap to clone.
#[derive(Clone)]
pub struct Revocations {
    inner: Arc<Inner>,
}

/// What the subscription's handler updates: the set, and what it needs for that.
struct Known {
    set: RwLock<RevokedSet>,
    clock: Arc<dyn Clock>,
    metrics: RevocationMetrics,
}

impl Known {
    fn new(clock: Arc<dyn Clock>, metrics: &Metrics) -> Arc<Self> {
        let revocation_metrics = RevocationMetrics::new();
        revocation_metrics.register(metrics);
        Arc::new(Self {
            set: RwLock::new(RevokedSet::default()),
            clock,
            metrics: revocation_metrics,
        })
    }

    /// Applies one pushed message (the payload of a message on [`channel`]). A payload
    /// that is not a revocation is logged and dropped.
    fn apply_message(&self, payload: &[u8]) {
        match serde_json::from_slice::<Revocation>(payload) {
            Ok(revocation) => {
                let lag_ms = SystemClock.unix_millis().saturating_sub(revocation.at_ms);
                self.metrics.lag.observe(lag_ms as f64 / 1000.0);
                self.apply(&revocation);
            }
            Err(error) => tracing::warn!(%error, "a revocation message that is not one; dropped"),
        }
    }

    fn apply(&self, revocation: &Revocation) {
        if revocation.until < self.clock.unix_seconds() {
            return;
        }
        self.set.write_unpoisoned().insert(revocation);
        self.metrics
            .applied
            .get_or_create(&KindLabels {
                kind: revocation.revoked.kind(),
            })
            .inc();
    }
}

struct Inner {
    known: Arc<Known>,
    redis: RedisPool,
    fallback: Fallback,
    check_timeout: Duration,
    /// Keeps the push subscription running (its task stops when this is dropped).
    _subscription: Option<Subscription>,
    /// The subscription epoch of the push channel (`Some` while subscribed).
    epoch: watch::Receiver<Option<u64>>,
    /// 1 + the epoch whose snapshot is loaded; 0 for none. The set is complete while
    /// this names the current epoch.
    trusted_epoch: AtomicU64,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations")
            .field("fallback", &self.inner.fallback)
            .field("entries", &self.inner.known.set.read_unpoisoned().len())
            .finish_non_exhaustive()
    }
}

impl Revocations {
    /// The revoked set of a process: subscribes to [`channel`] on the sessions role
    /// (`redis`, built from `config`'s URL) with `redis_config`'s timeouts; `clock` is the
    /// token verifier's. Until [`Revocations::follow`] has loaded a snapshot, every check
    /// asks Redis.
    pub fn subscribe(
        redis: RedisPool,
        config: &RevocationConfig,
        redis_config: &RedisConfig,
        clock: Arc<dyn Clock>,
        metrics: &Metrics,
        pubsub_metrics: &PubsubMetrics,
        shutdown: &Shutdown,
    ) -> Result<Self, SubscriptionSetupError> {
        let known = Known::new(clock, metrics);
        let subscription = Subscription::spawn(
            SubscriptionConfig::new(
                SUBSCRIPTION,
                config.session_redis_url.expose(),
                redis_config,
                vec![channel(redis.prefix())],
            ),
            {
                let known = Arc::clone(&known);
                move |_channel: &str, payload: &[u8]| known.apply_message(payload)
            },
            pubsub_metrics,
            shutdown.clone(),
        )?;
        let epoch = subscription.epoch();
        Ok(Self::build(known, redis, config, epoch, Some(subscription)))
    }

    /// A revoked set fed by nothing but the snapshot, trusted while `epoch` says so:
    /// for tests of the checks themselves.
    pub fn with_epoch(
        redis: RedisPool,
        config: &RevocationConfig,
        clock: Arc<dyn Clock>,
        epoch: watch::Receiver<Option<u64>>,
        metrics: &Metrics,
    ) -> Self {
        Self::build(Known::new(clock, metrics), redis, config, epoch, None)
    }

    fn build(
        known: Arc<Known>,
        redis: RedisPool,
        config: &RevocationConfig,
        epoch: watch::Receiver<Option<u64>>,
        subscription: Option<Subscription>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                known,
                redis,
                fallback: config.revocation_fallback,
                check_timeout: config.revocation_check_timeout,
                _subscription: subscription,
                epoch,
                trusted_epoch: AtomicU64::new(0),
            }),
        }
    }

    /// Whether every revocation is known here: subscribed, and the snapshot of this
    /// subscription loaded.
    pub fn is_live(&self) -> bool {
        let current = self.inner.epoch.borrow().map_or(0, |epoch| epoch + 1);
        current != 0 && self.inner.trusted_epoch.load(Ordering::Acquire) == current
    }

    /// Whether `caller`'s token is refused: [`AuthError::Revoked`] if its session or user
    /// is known revoked. While the set may be incomplete, asks Redis whether the session
    /// still exists; when Redis cannot answer in time, `REVOCATION_FALLBACK` decides
    /// (accept, or [`AuthError::RevocationUnknown`]).
    pub async fn check(&self, caller: &Caller) -> Result<(), AuthError> {
        let refused = self.inner.known.set.read_unpoisoned().refuses(caller);
        if refused {
            return Err(AuthError::Revoked);
        }
        if self.is_live() {
            return Ok(());
        }
        self.check_in_redis(caller).await
    }

    async fn check_in_redis(&self, caller: &Caller) -> Result<(), AuthError> {
        let key = session_key(self.inner.redis.prefix(), caller.user_id, caller.session_id);
        let lookup = self.inner.redis.run(|mut connection| async move {
            redis::cmd("EXISTS")
                .arg(key)
                .query_async::<i64>(&mut connection)
                .await
        });
        let metrics = &self.inner.known.metrics;
        match tokio::time::timeout(self.inner.check_timeout, lookup).await {
            Ok(Ok(exists)) => {
                metrics.fallback("checked");
                if exists == 1 {
                    Ok(())
                } else {
                    Err(AuthError::Revoked)
                }
            }
            failed => {
                let error = match failed {
                    Ok(Err(error)) => error.to_string(),
                    _ => format!("no answer within {:?}", self.inner.check_timeout),
                };
                match self.inner.fallback {
                    Fallback::Accept => {
                        metrics.fallback("accepted_unverified");
                        tracing::warn!(%error, user_id = %caller.user_id,
                            "cannot check a token for revocation; accepted (REVOCATION_FALLBACK=accept)");
                        Ok(())
                    }
                    Fallback::Refuse => {
                        metrics.fallback("refused_unverified");
                        tracing::warn!(%error, user_id = %caller.user_id,
                            "cannot check a token for revocation; refused (REVOCATION_FALLBACK=refuse)");
                        Err(AuthError::RevocationUnknown)
                    }
                }
            }
        }
    }

    /// Loads every recorded revocation still in force.
    async fn load_snapshot(&self) -> Result<usize, RedisError> {
        let key = snapshot_key(self.inner.redis.prefix());
        let now = self.inner.known.clock.unix_seconds();
        let members: Vec<String> = self
            .inner
            .redis
            .run(|mut connection| async move {
                redis::cmd("ZRANGEBYSCORE")
                    .arg(key)
                    .arg(now)
                    .arg("+inf")
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        let mut loaded = 0;
        for member in &members {
            match serde_json::from_str::<Revocation>(member) {
                Ok(revocation) => {
                    self.inner.known.apply(&revocation);
                    loaded += 1;
                }
                Err(error) => tracing::warn!(%error, "a snapshot entry that is no revocation"),
            }
        }
        Ok(loaded)
    }

    /// Spawns the task that keeps the set complete: on every new subscription epoch it
    /// loads the snapshot (retrying until it succeeds or the epoch changes) and only then
    /// trusts the set; every few seconds it forgets expired entries. Messages published
    /// after the subscription was confirmed are pushed, those before are in the snapshot:
    /// none is missed. Ends with `shutdown`.
    pub fn follow(&self, shutdown: Shutdown) {
        let this = self.clone();
        let mut epoch = self.inner.epoch.clone();
        tokio::spawn(async move {
            let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                let current = *epoch.borrow_and_update();
                this.inner.known.metrics.live.set(i64::from(this.is_live()));
                if let Some(subscribed) = current
                    && this.inner.trusted_epoch.load(Ordering::Acquire) != subscribed + 1
                {
                    this.reload_for(subscribed, &epoch, &shutdown).await;
                    continue;
                }
                tokio::select! {
                    _ = shutdown.wait() => return,
                    changed = epoch.changed() => {
                        if changed.is_err() {
                            // The subscription is gone: nothing will be pushed any more.
                            this.inner.trusted_epoch.store(0, Ordering::Release);
                            this.inner.known.metrics.live.set(0);
                            return;
                        }
                    }
                    _ = sweep.tick() => {
                        let now = this.inner.known.clock.unix_seconds();
                        this.inner.known.set.write_unpoisoned().sweep(now);
                    }
                }
            }
        });
    }

    /// Loads the snapshot for subscription `subscribed` and then trusts the set, unless
    /// the epoch moves on (or shutdown) first.
    async fn reload_for(
        &self,
        subscribed: u64,
        epoch: &watch::Receiver<Option<u64>>,
        shutdown: &Shutdown,
    ) {
        while *epoch.borrow() == Some(subscribed) && !shutdown.is_triggered() {
            match self.load_snapshot().await {
                Ok(loaded) => {
                    if *epoch.borrow() == Some(subscribed) {
                        self.inner
                            .trusted_epoch
                            .store(subscribed + 1, Ordering::Release);
                        tracing::info!(loaded, "revocation snapshot loaded; in-memory checks on");
                    }
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot load the revocation snapshot; retrying");
                    tokio::time::sleep(SNAPSHOT_RETRY).await;
                }
            }
        }
    }
}

/// Makes `verifier` refuse revoked tokens: builds the sessions-role pool of `config`,
/// subscribes to the revocation channel there, and keeps the revoked set in step with
/// it ([`Revocations::follow`]). `pubsub_metrics` is the process's one registration of
/// the pub/sub series. Must be called within a Tokio runtime.
pub fn enforce(
    verifier: &crate::auth::AccessVerifier,
    config: &RevocationConfig,
    redis_config: &RedisConfig,
    metrics: &Metrics,
    pubsub_metrics: &PubsubMetrics,
    shutdown: &Shutdown,
) -> Result<Revocations, String> {
    let pool = RedisPool::new(config.session_redis_url.expose(), redis_config)
        .map_err(|error| format!("SESSION_REDIS_URL: {error}"))?;
    let revocations = Revocations::subscribe(
        pool,
        config,
        redis_config,
        verifier.validation().clock(),
        metrics,
        pubsub_metrics,
        shutdown,
    )
    .map_err(|error| format!("SESSION_REDIS_URL: {error}"))?;
    verifier.check_revocations(revocations.clone());
    revocations.follow(shutdown.clone());
    Ok(revocations)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(user_id: Uuid, session_id: Uuid, issued_at: u64) -> Caller {
        Caller {
            user_id,
            session_id,
            is_superuser: false,
            issued_at,
            expires_at: issued_at + 1800,
        }
    }

    #[test]
    fn a_revoked_session_refuses_only_its_own_tokens() {
        let (user, sid, other_sid) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut set = RevokedSet::default();
        set.insert(&Revocation {
            revoked: Revoked::Session { sid },
            until: 2000,
            at_ms: 0,
        });

        assert!(set.refuses(&caller(user, sid, 100)));
        assert!(!set.refuses(&caller(user, other_sid, 100)));
    }

    #[test]
    fn a_revoked_user_refuses_tokens_issued_before_the_revocation_only() {
        let (user, other_user, sid) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut set = RevokedSet::default();
        set.insert(&Revocation {
            revoked: Revoked::User {
                user_id: user,
                before: 1000,
            },
            until: 3000,
            at_ms: 0,
        });

        assert!(set.refuses(&caller(user, sid, 999)));
        assert!(!set.refuses(&caller(user, sid, 1000)));
        assert!(!set.refuses(&caller(other_user, sid, 999)));
    }

    #[test]
    fn entries_are_forgotten_once_their_tokens_have_expired() {
        let mut set = RevokedSet::default();
        set.insert(&Revocation {
            revoked: Revoked::Session {
                sid: Uuid::new_v4(),
            },
            until: 2000,
            at_ms: 0,
        });
        set.insert(&Revocation {
            revoked: Revoked::User {
                user_id: Uuid::new_v4(),
                before: 100,
            },
            until: 3000,
            at_ms: 0,
        });

        set.sweep(2500);
        assert_eq!(set.len(), 1);
        set.sweep(3001);
        assert_eq!(set.len(), 0);
    }

    #[test]
    fn the_message_is_the_documented_json() {
        let sid = Uuid::nil();
        let revocation = Revocation {
            revoked: Revoked::Session { sid },
            until: 5,
            at_ms: 7,
        };

        let json = serde_json::to_string(&revocation).unwrap();

        assert_eq!(
            json,
            r#"{"kind":"session","sid":"00000000-0000-0000-0000-000000000000","until":5,"at_ms":7}"#
        );
        assert_eq!(
            serde_json::from_str::<Revocation>(&json).unwrap(),
            revocation
        );
    }
}
