//! `common::pubsub` against real Redis servers: messages in order after the epoch is
//! set, a new epoch after every lost connection (killed, paused, node gone), shutdown.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{
    config::RedisConfig,
    metrics::Metrics,
    pubsub::{PubsubMetrics, Subscription, SubscriptionConfig, publish},
    redis::RedisPool,
    shutdown::Shutdown,
};
use test_support::RedisServer;
use tokio::sync::watch;

type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

fn redis_config(prefix: &str) -> RedisConfig {
    RedisConfig {
        redis_connect_timeout: Duration::from_secs(2),
        redis_response_timeout: Duration::from_secs(2),
        redis_key_prefix: prefix.to_owned(),
    }
}

struct Subscribed {
    subscription: Subscription,
    received: Received,
    metrics: Metrics,
    channel: String,
    shutdown: Shutdown,
}

/// A subscription on `url` to one channel of a fresh prefix, recording every message.
fn subscribe(url: &str) -> Subscribed {
    test_support::init();
    let prefix = test_support::key_prefix();
    let channel = format!("{prefix}events");
    let received: Received = Arc::default();
    let metrics = Metrics::new();
    let shutdown = Shutdown::new();
    let sink = received.clone();
    let subscription = Subscription::spawn(
        SubscriptionConfig::new("test", url, &redis_config(&prefix), vec![channel.clone()]),
        move |channel, payload| {
            sink.lock()
                .unwrap()
                .push((channel.to_owned(), payload.to_vec()))
        },
        &PubsubMetrics::register(&metrics),
        shutdown.clone(),
    )
    .expect("subscription URL parses");
    Subscribed {
        subscription,
        received,
        metrics,
        channel,
        shutdown,
    }
}

/// Waits (generously) until the epoch satisfies `want`, and returns it.
async fn wait_epoch(
    epoch: &mut watch::Receiver<Option<u64>>,
    what: &str,
    want: impl FnMut(&Option<u64>) -> bool,
) -> Option<u64> {
    *tokio::time::timeout(Duration::from_secs(15), epoch.wait_for(want))
        .await
        .unwrap_or_else(|_| panic!("epoch never became {what}"))
        .expect("subscription task alive")
}

/// Waits until `count` messages arrived and returns their payloads.
async fn wait_messages(received: &Received, count: usize) -> Vec<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let payloads: Vec<Vec<u8>> = received
            .lock()
            .unwrap()
            .iter()
            .map(|(_, payload)| payload.clone())
            .collect();
        if payloads.len() >= count {
            return payloads;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {count} messages arrived",
            payloads.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn series(metrics: &Metrics, name: &str) -> Option<f64> {
    let needle = format!("{name}{{subscription=\"test\"}} ");
    metrics
        .render_prometheus_text()
        .lines()
        .find_map(|line| line.strip_prefix(&needle)?.trim().parse().ok())
}

async fn kill_pubsub_clients(port: u16) {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let killed: u64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "pubsub"])
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(killed >= 1, "no pub/sub connection to kill");
}

#[tokio::test]
async fn messages_published_once_subscribed_reach_the_handler_in_order() {
    // Arrange (the shared test Redis: a single node, or the cluster in the cluster pass)
    let url = test_support::redis_url();
    let subscribed = subscribe(&url);
    let mut epoch = subscribed.subscription.epoch();
    assert_eq!(
        wait_epoch(&mut epoch, "Some(1)", Option::is_some).await,
        Some(1)
    );
    assert!(subscribed.subscription.is_live());
    let pool = RedisPool::new(&url, &redis_config("")).unwrap();

    // Act
    for i in 0..200_u32 {
        publish(&pool, &subscribed.channel, &i.to_be_bytes())
            .await
            .unwrap();
    }

    // Assert
    let payloads = wait_messages(&subscribed.received, 200).await;
    let expected: Vec<Vec<u8>> = (0..200_u32).map(|i| i.to_be_bytes().to_vec()).collect();
    assert_eq!(payloads, expected);
    assert!(
        subscribed
            .received
            .lock()
            .unwrap()
            .iter()
            .all(|(channel, _)| *channel == subscribed.channel)
    );
    assert_eq!(series(&subscribed.metrics, "pubsub_subscribed"), Some(1.0));
    assert_eq!(
        series(&subscribed.metrics, "pubsub_messages_received_total"),
        Some(200.0)
    );
}

#[tokio::test]
async fn a_killed_connection_is_resubscribed_under_a_new_epoch() {
    // Arrange
    let redis = RedisServer::start();
    let subscribed = subscribe(&redis.url());
    let mut epoch = subscribed.subscription.epoch();
    wait_epoch(&mut epoch, "Some(1)", |e| *e == Some(1)).await;

    // Act
    kill_pubsub_clients(redis.port()).await;

    // Assert: a higher epoch, then messages flow again on the new connection.
    let second = wait_epoch(&mut epoch, "Some(2)", |e| e.is_some_and(|n| n >= 2)).await;
    assert_eq!(second, Some(2));
    let pool = RedisPool::new(&redis.url(), &redis_config("")).unwrap();
    publish(&pool, &subscribed.channel, b"after").await.unwrap();
    assert_eq!(
        wait_messages(&subscribed.received, 1).await,
        vec![b"after".to_vec()]
    );
    assert_eq!(
        series(&subscribed.metrics, "pubsub_resubscriptions_total"),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_paused_server_is_noticed_without_the_socket_closing() {
    // Arrange
    let redis = RedisServer::start();
    let subscribed = subscribe(&redis.url());
    let mut epoch = subscribed.subscription.epoch();
    wait_epoch(&mut epoch, "Some(1)", |e| *e == Some(1)).await;

    // Act: SIGSTOP keeps the connection open, but nothing answers the PINGs.
    redis.pause();

    // Assert (the PINGs notice within about a second; the bound is generous for a loaded
    // machine), then the subscription comes back once the server does.
    wait_epoch(&mut epoch, "None", Option::is_none).await;
    assert!(!subscribed.subscription.is_live());
    assert_eq!(series(&subscribed.metrics, "pubsub_subscribed"), Some(0.0));
    redis.resume();
    wait_epoch(&mut epoch, "Some(2)", |e| e.is_some_and(|n| n >= 2)).await;
    assert!(subscribed.subscription.is_live());
}

#[tokio::test]
async fn when_its_node_is_gone_the_subscription_moves_to_the_next_seed() {
    // Arrange: two seeds (as a cluster URL lists them); the first one serves first.
    let mut first = RedisServer::start();
    let second = RedisServer::start();
    let url = format!("{},{}", first.url(), second.url());
    let subscribed = subscribe(&url);
    let mut epoch = subscribed.subscription.epoch();
    wait_epoch(&mut epoch, "Some(1)", |e| *e == Some(1)).await;

    // Act
    first.kill();

    // Assert: subscribed on the second node, which delivers its messages.
    wait_epoch(&mut epoch, "Some(2)", |e| e.is_some_and(|n| n >= 2)).await;
    let pool = RedisPool::new(&second.url(), &redis_config("")).unwrap();
    publish(&pool, &subscribed.channel, b"on the second node")
        .await
        .unwrap();
    assert_eq!(
        wait_messages(&subscribed.received, 1).await,
        vec![b"on the second node".to_vec()]
    );
}

#[tokio::test]
async fn shutdown_ends_the_subscription_and_its_connection() {
    // Arrange
    let redis = RedisServer::start();
    let subscribed = subscribe(&redis.url());
    let mut epoch = subscribed.subscription.epoch();
    wait_epoch(&mut epoch, "Some(1)", |e| *e == Some(1)).await;

    // Act
    subscribed.shutdown.trigger();

    // Assert: not live, and the server sees no subscriber any more.
    let ended = tokio::time::timeout(Duration::from_secs(10), epoch.changed()).await;
    assert!(ended.is_ok(), "the epoch did not change after shutdown");
    assert!(!subscribed.subscription.is_live());
    assert_eq!(series(&subscribed.metrics, "pubsub_subscribed"), Some(0.0));
    let pool = RedisPool::new(&redis.url(), &redis_config("")).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while publish(&pool, &subscribed.channel, b"x").await.unwrap() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the connection is still subscribed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
