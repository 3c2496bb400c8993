//! Round trips to the cache Redis, counted on the server (MONITOR, every node of a
//! cluster): a hit is one command, a miss three (GET, the read script, the fill
//! script), and the scripts travel as EVALSHA, their text only once after Redis lost it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

mod support;

use std::time::{Duration, Instant};

use support::{Spawn, TestApp, auth, get_deck};
use test_support::{RedisMonitor, RedisServer, command_names};
use tonic::Code;
use uuid::Uuid;

/// Waits until the app's first (background) connection to Redis has answered, so the
/// counts below see no start-up traffic.
async fn wait_until_connected(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.metric("redis_cache_reachable").await != Some(1.0) {
        assert!(Instant::now() < deadline, "the cache Redis never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A read of a deck nobody created: a miss, loaded and filled as "missing".
async fn read_unknown_deck(app: &TestApp) {
    let answer = app
        .client
        .clone()
        .get_deck(auth(&app.user, get_deck(&Uuid::new_v4().to_string())))
        .await;
    assert_eq!(answer.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn a_cache_hit_is_one_redis_command_and_a_miss_is_three() {
    // Arrange: a deck, and scripts Redis already knows (a miss of another id loads them).
    let app = TestApp::spawn().await;
    let (deck, _) = app.deck_with_cards("Counted", 1).await;
    wait_until_connected(&app).await;
    read_unknown_deck(&app).await;
    let mut monitor = RedisMonitor::start(&app.redis_url).await;
    let read = || {
        let mut client = app.client.clone();
        let request = auth(&app.user, get_deck(&deck.id));
        async move {
            client
                .get_deck(request)
                .await
                .expect("GetDeck")
                .into_inner()
        }
    };

    // Act: the first read misses and fills; the second hits.
    let first = read().await;
    let miss = monitor.commands_of(&app.prefix).await;
    let second = read().await;
    let hit = monitor.commands_of(&app.prefix).await;

    // Assert
    assert_eq!(first, second);
    assert_eq!(
        command_names(&miss),
        ["GET", "EVALSHA", "EVALSHA"],
        "a miss: GET, the read script, the fill script: {miss:#?}"
    );
    assert_eq!(
        command_names(&hit),
        ["GET"],
        "a hit is one round trip: {hit:#?}"
    );
}

#[tokio::test]
async fn a_redis_that_lost_its_scripts_is_sent_each_script_once_and_evalsha_after() {
    // Arrange: a Redis of this test's own, started empty (no script loaded).
    let redis = RedisServer::start();
    let app = TestApp::spawn_with(Spawn {
        redis_url: redis.url(),
        ..Default::default()
    })
    .await;
    wait_until_connected(&app).await;
    let mut monitor = RedisMonitor::start(&redis.url()).await;

    // Act: two misses.
    read_unknown_deck(&app).await;
    let first = monitor.commands_of(&app.prefix).await;
    read_unknown_deck(&app).await;
    let second = monitor.commands_of(&app.prefix).await;

    // Assert: each script is loaded on its first NOSCRIPT, never sent with EVAL.
    assert_eq!(
        command_names(&first),
        [
            "GET", "EVALSHA", "SCRIPT", "EVALSHA", "EVALSHA", "SCRIPT", "EVALSHA"
        ],
        "{first:#?}"
    );
    assert!(
        first
            .iter()
            .filter(|command| command.name == "SCRIPT")
            .all(|command| command.args[0].eq_ignore_ascii_case("load")),
        "{first:#?}"
    );
    assert_eq!(
        command_names(&second),
        ["GET", "EVALSHA", "EVALSHA"],
        "{second:#?}"
    );
}
