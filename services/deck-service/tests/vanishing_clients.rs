//! Clients that give up mid-call, through gRPC on real PostgreSQL and Redis: reads cut a
//! few milliseconds after sending must leave no PostgreSQL connection in use, no Redis
//! call in flight and no extra Redis connection open (the process keeps its one shared
//! connection per node), no load parked in the single-flight map, and the process as able
//! to answer as before; a write whose client hangs up after COMMIT must still invalidate
//! what it made stale.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

mod support;

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use futures::StreamExt;
use proto::deck::v1 as pb;
use rand::Rng;
use support::{PoolsInUse, Spawn, TestApp, auth, get_deck};
use test_support::{
    RedisServer,
    redis_monitor::{connections_to, redis_nodes},
};
use tonic::Code;
use uuid::Uuid;

const CUTS: usize = 1500;
const CUT_CONNECTIONS: usize = 8;

/// A small PostgreSQL pool, so that a single stranded connection shows. Every miss
/// may load shared (in a task of its own, which is what this test is about): with
/// nothing but the 3 connections to slow them, cut calls start loads faster than they
/// finish, and past the default bound of 256 a miss would load in its caller, whom the
/// cut takes away with it (by design; `tests/cache.rs` covers that path).
fn small_pools() -> Spawn {
    Spawn {
        settings: vec![
            ("DATABASE_MAX_CONNECTIONS", "3".into()),
            ("CACHE_MAX_INFLIGHT_LOADS", CUTS.to_string()),
        ],
        ..Default::default()
    }
}

/// Polls `/metrics` until the pools are back at `baseline` with no load in flight;
/// returns the last reading and how long it took.
async fn settle(app: &TestApp, baseline: PoolsInUse, within: Duration) -> (PoolsInUse, Duration) {
    let started = Instant::now();
    loop {
        let now = app.pools_in_use().await;
        let settled = now.postgres <= baseline.postgres
            && now.redis <= baseline.redis
            && now.inflight_loads == Some(0.0);
        if settled || started.elapsed() > within {
            return (now, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The median time of a miss nobody cuts, on a warm process.
async fn uncut_miss(client: &support::Client, token: &str) -> Duration {
    let mut times = Vec::new();
    for _ in 0..7 {
        let started = Instant::now();
        let answer = client
            .clone()
            .get_deck(auth(token, get_deck(&Uuid::new_v4().to_string())))
            .await;
        assert_eq!(answer.unwrap_err().code(), Code::NotFound);
        times.push(started.elapsed());
    }
    times.sort();
    times[3]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misses_cut_short_by_vanishing_clients_leave_no_connection_in_use() {
    // Arrange: a warm process (pools opened, token verified once) with a tiny pool.
    // Revocations are followed on a Redis of their own, so every connection this process
    // has to the cache Redis is the cache's.
    let sessions = RedisServer::start();
    let app = TestApp::spawn_with(Spawn {
        session_redis_url: sessions.url(),
        ..small_pools()
    })
    .await;
    let (deck, _) = app.deck_with_cards("Warm", 1).await;
    app.client
        .clone()
        .get_deck(auth(&app.user, get_deck(&deck.id)))
        .await
        .unwrap();
    // This process talks to the cache Redis only through the app (one connection per node).
    let redis_nodes = redis_nodes(&app.redis_url).await;
    let redis_connections = connections_to(&redis_nodes);
    assert_eq!(
        redis_connections,
        redis_nodes.len(),
        "one shared connection per Redis node ({redis_nodes:?})"
    );
    // A quiet process holds no connection (between the outbox drainer's passes).
    let quiet = PoolsInUse {
        postgres: 0.0,
        redis: 0.0,
        inflight_loads: Some(0.0),
    };
    let (baseline, _) = settle(&app, quiet, Duration::from_secs(10)).await;
    assert_eq!(baseline, quiet, "the warm process is quiet before the cuts");

    // Act: 1,500 reads of unknown decks, each dropped 0.5–4 ms after it was sent, so
    // the server sees the stream reset while its load waits on Redis or PostgreSQL.
    // Spread over connections of their own: hyper answers a burst of resets on one
    // connection with GOAWAY ("too_many_resets"), which is not what this test is about.
    let mut clients = Vec::new();
    for _ in 0..CUT_CONNECTIONS {
        clients.push(app.new_client().await);
    }
    // 0.5–4 ms spans a miss on a single Redis (about 1.5 ms uncut); a Redis Cluster
    // answers slower, so there the window stretches to two uncut misses, or every call
    // would be cut before it reached the cache.
    let latest_cut = Duration::from_millis(4).max(2 * uncut_miss(&clients[0], &app.user).await);
    let before = app.metrics();
    let cut_short = AtomicUsize::new(0);
    futures::stream::iter(0..CUTS)
        .for_each_concurrent(CUT_CONNECTIONS, |i| {
            let mut client = clients[i % CUT_CONNECTIONS].clone();
            let (token, cut_short) = (app.user.clone(), &cut_short);
            let cut = rand::thread_rng().gen_range(Duration::from_micros(500)..=latest_cut);
            async move {
                let call = client.get_deck(auth(&token, get_deck(&Uuid::new_v4().to_string())));
                if tokio::time::timeout(cut, call).await.is_err() {
                    cut_short.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .await;
    let (after, took) = settle(&app, baseline, Duration::from_secs(10)).await;
    let cache = app.metrics();
    let (loads, fills) = (cache.misses - before.misses, cache.fills - before.fills);
    eprintln!(
        "{} of {CUTS} calls cut short (0.5 ms to {latest_cut:?}), {loads} loads started; \
         pools in use: baseline {baseline:?}, after the cuts {after:?} (settled in \
         {took:?})",
        cut_short.into_inner(),
    );

    // Assert: nothing stranded, every load whose caller left still landed, and fresh
    // misses answer.
    assert!(loads > 0, "some cut calls reached the cache: {cache:?}");
    assert_eq!(fills, loads, "every load filled: {cache:?}");
    assert_eq!(
        after.postgres, baseline.postgres,
        "PostgreSQL connections in use"
    );
    assert_eq!(after.redis, baseline.redis, "Redis calls in flight");
    assert_eq!(
        connections_to(&redis_nodes),
        redis_connections,
        "Redis connections of the process"
    );
    assert_eq!(after.inflight_loads, Some(0.0), "loads left in flight");
    let misses = (0..64).map(|_| {
        let mut client = app.client.clone();
        let token = app.user.clone();
        async move {
            client
                .get_deck(auth(&token, get_deck(&Uuid::new_v4().to_string())))
                .await
        }
    });
    let answers = tokio::time::timeout(Duration::from_secs(10), futures::future::join_all(misses))
        .await
        .expect("64 fresh misses answer within 10 s");
    for answer in answers {
        assert_eq!(answer.unwrap_err().code(), Code::NotFound);
    }
}

#[tokio::test]
async fn a_write_whose_caller_hangs_up_after_commit_still_invalidates_its_keys() {
    // Arrange: a cached deck, a Redis that will freeze, and a drainer too slow to
    // help within the test, so only the write's own invalidation can clean up.
    // Redis's answers may take 5 s, so the invalidation is still waiting on the frozen
    // Redis when its client hangs up (at the 250 ms default it would give up first).
    let redis = RedisServer::start();
    let app = TestApp::spawn_with(Spawn {
        redis_url: redis.url(),
        outbox_interval_ms: 600_000,
        settings: vec![("REDIS_RESPONSE_TIMEOUT_MS", "5000".into())],
        ..Default::default()
    })
    .await;
    let (deck, _) = app.deck_with_cards("Before", 1).await;
    let read_name = || {
        let mut client = app.client.clone();
        let (token, id) = (app.user.clone(), deck.id.clone());
        async move {
            client
                .get_deck(auth(&token, get_deck(&id)))
                .await
                .unwrap()
                .into_inner()
                .name
        }
    };
    read_name().await;
    assert_eq!(read_name().await, "Before");
    assert!(app.metrics().hits > 0, "the deck is cached");

    // Act: with Redis frozen the rename commits and then waits on its invalidation;
    // the client hangs up there; then Redis comes back.
    redis.pause();
    let mut client = app.client.clone();
    let (admin, id) = (app.admin.clone(), deck.id.clone());
    let write = tokio::spawn(async move {
        client
            .update_deck(auth(
                &admin,
                pb::UpdateDeckRequest {
                    deck_id: id,
                    name: Some("After".into()),
                    ..Default::default()
                },
            ))
            .await
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (name,): (String,) = sqlx::query_as("SELECT name FROM decks WHERE id = $1::uuid")
            .bind(&deck.id)
            .fetch_one(&app.handles.pool)
            .await
            .unwrap();
        if name == "After" {
            break;
        }
        assert!(Instant::now() < deadline, "the rename did not commit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    write.abort();
    assert!(write.await.unwrap_err().is_cancelled());
    // Long enough for the stream reset to reach the server and drop the handler.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = app.metrics();
    redis.resume();

    // Assert: the invalidation still went out (or was handed to the outbox, which
    // makes reads bypass Redis), and the next read shows the rename.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = app.metrics();
        if now.invalidations > before.invalidations
            || now.deferred_invalidations > before.deferred_invalidations
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the abandoned write never invalidated: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(read_name().await, "After");
}
