//! Redis pub/sub: a subscription kept alive by a task of its own, and [`publish`].
//!
//! In-process state that other replicas change (an L1 cache, a revocation list) stays
//! correct only while this process hears every change. A [`Subscription`] owns one
//! dedicated pub/sub connection in a background task (no request ever holds it, so a
//! caller that goes away cannot break it), hands each message in order to a synchronous
//! handler, and publishes its state without awaiting:
//!
//! - [`Subscription::is_live`]: SUBSCRIBE is confirmed by the server and the
//!   connection answers its PINGs;
//! - [`Subscription::epoch`]: a `watch` of the *subscription epoch*, `Some(n)` while
//!   subscribed with `n` growing on every successful (re)subscription, `None` while not.
//!   The epoch is set after the server confirmed SUBSCRIBE and before any message of
//!   that connection reaches the handler, so a user that resets its state when it sees a
//!   new epoch (an L1 flush, a snapshot reload) misses nothing published after that.
//!
//! A paused or unreachable server does not close the socket, so the task PINGs the
//! connection every [`PING_EVERY`]; an answer missing after [`PING_TIMEOUT`] counts as a
//! dead connection. Within about a second of a failure the epoch turns `None`, and the
//! task reconnects with a backoff capped at [`MAX_BACKOFF`].
//!
//! **Redis Cluster.** Classic PUBLISH is broadcast over the cluster bus to every node, so
//! a classic SUBSCRIBE on any one node hears every message of the cluster. The task
//! subscribes on one seed node at a time and moves to the next seed when that node
//! fails. Sharded pub/sub (SSUBSCRIBE) would spread the load but needs one connection
//! per shard and a resubscription on every slot move; the messages here are few and
//! small, so one connection is the simpler, sufficient choice.
//!
//! **Metrics** (labelled by the subscription's static name): `pubsub_subscribed` (0/1),
//! `pubsub_messages_received_total`, `pubsub_resubscriptions_total`.

use std::{sync::Arc, time::Duration};

use futures::StreamExt as _;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};
use tokio::sync::watch;

use crate::{
    config::RedisConfig,
    metrics::Metrics,
    redis::{RedisError, RedisPool, cluster_seeds},
    shutdown::Shutdown,
};

/// How often an idle subscribed connection is checked with a PING.
pub const PING_EVERY: Duration = Duration::from_millis(300);
/// How long a PING may wait for its answer before the connection counts as dead. Longer
/// than a command's usual deadline: a false alarm costs a resubscription (and an L1 flush).
pub const PING_TIMEOUT: Duration = Duration::from_millis(600);
/// The longest wait between two connection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// Called by the subscription's task with `(channel, payload)` of each message, in the
/// order the server sent them. It runs on that task, so it must not block: it updates
/// in-memory state, or forwards to a bounded queue of its own.
pub type Handler = dyn Fn(&str, &[u8]) + Send + Sync;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubscriptionLabels {
    subscription: &'static str,
}

/// The pub/sub series of one process. Register them once per [`Metrics`] registry
/// (a second registration would repeat the families) and give a clone to every
/// [`Subscription`] of the process.
#[derive(Clone, Debug)]
pub struct PubsubMetrics {
    subscribed: Family<SubscriptionLabels, Gauge>,
    received: Family<SubscriptionLabels, Counter>,
    resubscriptions: Family<SubscriptionLabels, Counter>,
}

impl PubsubMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        let this = Self {
            subscribed: Family::default(),
            received: Family::default(),
            resubscriptions: Family::default(),
        };
        metrics.register(
            "pubsub_subscribed",
            "1 while the subscription is confirmed by Redis and its connection answers, else 0",
            this.subscribed.clone(),
        );
        metrics.register(
            "pubsub_messages_received",
            "Pub/sub messages handed to the subscription's handler",
            this.received.clone(),
        );
        metrics.register(
            "pubsub_resubscriptions",
            "Successful subscriptions after the first (each one follows a lost connection)",
            this.resubscriptions.clone(),
        );
        this
    }
}

/// What a subscription connects to and listens for.
#[derive(Clone, Debug)]
pub struct SubscriptionConfig {
    /// Static name, the `subscription` label of the metrics (e.g. `cache_invalidation`).
    pub name: &'static str,
    /// The role's URL, as [`RedisPool::new`] reads it (one node, or a cluster's seeds).
    pub url: String,
    /// The channels, usually under the role's key prefix so test runs stay apart.
    pub channels: Vec<String>,
    /// Bound on opening the connection and on the SUBSCRIBE confirmation.
    pub connect_timeout: Duration,
}

impl SubscriptionConfig {
    /// The config of `name` on `url`, with `redis`'s timeouts.
    pub fn new(name: &'static str, url: &str, redis: &RedisConfig, channels: Vec<String>) -> Self {
        Self {
            name,
            url: url.to_owned(),
            channels,
            connect_timeout: redis.redis_connect_timeout + redis.redis_response_timeout,
        }
    }
}

/// The subscription's URL does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid Redis URL for a subscription: {0}")]
pub struct SubscriptionSetupError(String);

/// A live subscription. Dropping it stops its task and closes its connection.
#[derive(Debug)]
pub struct Subscription {
    epoch: watch::Receiver<Option<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Subscription {
    /// Starts the task; it connects in the background, so Redis may be down at start.
    /// The task ends when `shutdown` fires or the handle is dropped.
    pub fn spawn(
        config: SubscriptionConfig,
        handler: impl Fn(&str, &[u8]) + Send + Sync + 'static,
        metrics: &PubsubMetrics,
        shutdown: Shutdown,
    ) -> Result<Self, SubscriptionSetupError> {
        let seeds = cluster_seeds(&config.url).unwrap_or_else(|| vec![config.url.clone()]);
        let clients = seeds
            .iter()
            .map(|seed| redis::Client::open(seed.as_str()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SubscriptionSetupError(e.to_string()))?;
        let (sender, epoch) = watch::channel(None);
        let labels = SubscriptionLabels {
            subscription: config.name,
        };
        metrics.subscribed.get_or_create(&labels).set(0);
        let worker = Worker {
            clients,
            channels: config.channels,
            connect_timeout: config.connect_timeout,
            handler: Arc::new(handler),
            epoch: sender,
            subscribed: metrics.subscribed.get_or_create(&labels).clone(),
            received: metrics.received.get_or_create(&labels).clone(),
            resubscriptions: metrics.resubscriptions.get_or_create(&labels).clone(),
            name: config.name,
        };
        let task = tokio::spawn(async move {
            tokio::select! {
                () = worker.run() => {}
                () = shutdown.wait() => {}
            }
        });
        Ok(Self { epoch, task })
    }

    /// Whether the subscription is confirmed and its connection answers right now.
    pub fn is_live(&self) -> bool {
        self.epoch.borrow().is_some()
    }

    /// The current epoch: `Some(n)` while subscribed (see the module docs), `None` while not.
    pub fn current_epoch(&self) -> Option<u64> {
        *self.epoch.borrow()
    }

    /// A receiver of the epoch, to react to each (re)subscription or loss.
    pub fn epoch(&self) -> watch::Receiver<Option<u64>> {
        self.epoch.clone()
    }
}

/// Publishes `payload` on `channel`; returns how many subscribers received it (with a
/// cluster: the subscribers connected to the node that took the PUBLISH).
pub async fn publish(pool: &RedisPool, channel: &str, payload: &[u8]) -> Result<u64, RedisError> {
    pool.run(|mut connection| async move {
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async::<u64>(&mut connection)
            .await
    })
    .await
}

/// The state of the subscription's task.
struct Worker {
    clients: Vec<redis::Client>,
    channels: Vec<String>,
    connect_timeout: Duration,
    handler: Arc<Handler>,
    epoch: watch::Sender<Option<u64>>,
    subscribed: Gauge,
    received: Counter,
    resubscriptions: Counter,
    name: &'static str,
}

impl Drop for Worker {
    // Runs however the task ends (shutdown, abort), so nobody trusts a dead subscription.
    fn drop(&mut self) {
        self.epoch.send_replace(None);
        self.subscribed.set(0);
    }
}

impl Worker {
    async fn run(&self) {
        let mut next_epoch = 1_u64;
        let mut backoff = FIRST_BACKOFF;
        let mut node = 0_usize;
        loop {
            let client = &self.clients[node % self.clients.len()];
            match self.subscribe(client).await {
                Ok(pubsub) => {
                    if next_epoch > 1 {
                        self.resubscriptions.inc();
                    }
                    self.epoch.send_replace(Some(next_epoch));
                    self.subscribed.set(1);
                    tracing::info!(subscription = self.name, epoch = next_epoch, "subscribed");
                    next_epoch += 1;
                    backoff = FIRST_BACKOFF;
                    let why = self.listen(pubsub).await;
                    self.epoch.send_replace(None);
                    self.subscribed.set(0);
                    tracing::warn!(
                        subscription = self.name,
                        why,
                        "subscription lost; resubscribing"
                    );
                }
                Err(error) => {
                    tracing::warn!(subscription = self.name, %error, "cannot subscribe; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            // A cluster node that failed is left for the next seed; a single node is retried.
            node += 1;
        }
    }

    /// Opens a pub/sub connection and subscribes, both within the connect timeout.
    async fn subscribe(&self, client: &redis::Client) -> Result<redis::aio::PubSub, String> {
        let work = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&self.channels).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(self.connect_timeout, work).await {
            Ok(Ok(pubsub)) => Ok(pubsub),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.connect_timeout)),
        }
    }

    /// Hands messages to the handler until the connection closes or stops answering PINGs.
    async fn listen(&self, pubsub: redis::aio::PubSub) -> &'static str {
        let (mut sink, mut messages) = pubsub.split();
        // The PINGs share the connection with the messages but not the loop: a message
        // arriving while a PING waits is handled at once.
        let pings = async move {
            loop {
                tokio::time::sleep(PING_EVERY).await;
                match tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) => return "PING failed",
                    Err(_) => return "PING unanswered",
                }
            }
        };
        tokio::pin!(pings);
        loop {
            tokio::select! {
                why = &mut pings => return why,
                message = messages.next() => match message {
                    Some(message) => {
                        (self.handler)(message.get_channel_name(), message.get_payload_bytes());
                        // Counted once handled: a test that sees the count may rely on it.
                        self.received.inc();
                    }
                    None => return "connection closed",
                },
            }
        }
    }
}
