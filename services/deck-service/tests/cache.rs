//! The cache-aside layer through gRPC on real Redis and PostgreSQL: hits without
//! queries, no stale fill, single flight, negative entries, slots, TTL caps, and a Redis
//! that is stopped, paused, or comes back after missing an invalidation.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

mod support;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use deck_service::cache::{BreakerState, CacheHooks};
use futures::FutureExt;
use proto::deck::v1 as pb;
use support::{Spawn, TestApp, auth, get_deck, initialize_all, list_cards, queue};
use test_support::{RedisServer, key_slot};
use time::macros::datetime;
use tokio::sync::oneshot;
use tonic::Code;
use uuid::Uuid;

/// Every cached read of `deck` for the app's user; panics on an error.
async fn read_all_views(
    app: &TestApp,
    deck: &str,
) -> (
    pb::Deck,
    pb::ListCardsResponse,
    pb::StudyQueue,
    pb::ListDeckProgressResponse,
) {
    let mut client = app.client.clone();
    let cached_queue = pb::GetStudyQueueRequest {
        include_new: Some(false),
        ..queue(Some(deck))
    };
    (
        client
            .get_deck(auth(&app.user, get_deck(deck)))
            .await
            .unwrap()
            .into_inner(),
        client
            .list_cards(auth(&app.user, list_cards(deck)))
            .await
            .unwrap()
            .into_inner(),
        client
            .get_study_queue(auth(&app.user, cached_queue))
            .await
            .unwrap()
            .into_inner(),
        client
            .list_deck_progress(auth(&app.user, pb::ListDeckProgressRequest::default()))
            .await
            .unwrap()
            .into_inner(),
    )
}

async fn started_deck(app: &TestApp, name: &str) -> (pb::Deck, Vec<pb::Card>) {
    let (deck, cards) = app.deck_with_cards(name, 3).await;
    app.client
        .clone()
        .initialize_study(auth(&app.user, initialize_all(&deck.id)))
        .await
        .unwrap();
    (deck, cards)
}

#[tokio::test]
async fn repeated_reads_are_served_from_redis_without_touching_postgres() {
    let app = TestApp::spawn().await;
    let (deck, _) = started_deck(&app, "Cached").await;
    let first = read_all_views(&app, &deck.id).await;
    let (queries, hits) = (app.queries(), app.metrics().hits);

    let second = read_all_views(&app, &deck.id).await;

    assert_eq!(
        app.queries(),
        queries,
        "no PostgreSQL statement for cached reads"
    );
    assert_eq!(
        app.metrics().hits,
        hits + 5,
        "deck (twice: GetDeck and the queue's deck check), cards, due cards, progress"
    );
    assert_eq!(first, second);
}

#[tokio::test]
async fn a_write_counts_every_statement_it_runs_begin_and_commit_included() {
    let app = TestApp::spawn().await;
    let (deck, _) = app.deck_with_cards("Counted", 1).await;
    let before = app.queries();

    rename(&app, &deck, "Renamed").await;
    let after_write = app.queries();
    deck_name(&app, &deck).await;

    // BEGIN, UPDATE decks, SELECT the users who started it, INSERT cache_outbox, COMMIT
    // (the outbox row's deletion after COMMIT is the process's, not the request's).
    assert_eq!(after_write - before, 5);
    assert_eq!(app.queries() - after_write, 1, "the miss that follows");
}

#[tokio::test]
async fn concurrent_writes_leave_no_outbox_row_once_their_invalidations_are_delivered() {
    // Arrange: the drainer only at start, so what deletes the rows is the writes' own
    // after-COMMIT work (one DELETE for all the rows delivered meanwhile).
    let app = TestApp::spawn_with(Spawn {
        outbox_interval_ms: 600_000,
        ..Default::default()
    })
    .await;
    let (deck, _) = app.deck_with_cards("Renamed often", 1).await;

    // Act: twenty renames at once.
    let names: Vec<String> = (0..20).map(|n| format!("Name {n}")).collect();
    futures::future::join_all(names.iter().map(|name| rename(&app, &deck, name))).await;

    // Assert: every row is deleted, and no invalidation was left to the outbox.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM cache_outbox")
            .fetch_one(&app.handles.pool)
            .await
            .unwrap();
        if rows == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{rows} outbox rows stay");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!app.handles.cache.invalidations_pending());
}

#[tokio::test]
async fn a_review_is_one_postgresql_round_trip_and_a_batch_one_per_review() {
    // Arrange: a started deck whose deck entry is cached (the batch checks the deck).
    let app = TestApp::spawn().await;
    let (deck, cards) = started_deck(&app, "Reviewed").await;
    let mut client = app.client.clone();
    client
        .get_deck(auth(&app.user, get_deck(&deck.id)))
        .await
        .unwrap();
    let review = |card: &pb::Card, quality| pb::SubmitReviewRequest {
        card_id: card.id.clone(),
        quality,
        time_taken: 5,
    };
    let before = app.queries();

    // Act: one review, then a batch of three.
    client
        .submit_review(auth(&app.user, review(&cards[0], 4)))
        .await
        .unwrap();
    let after_one = app.queries();
    let batch = client
        .submit_reviews(auth(
            &app.user,
            pb::SubmitReviewsRequest {
                deck_id: deck.id.clone(),
                session_id: "counted".into(),
                reviews: cards.iter().map(|card| review(card, 5)).collect(),
            },
        ))
        .await
        .unwrap()
        .into_inner();

    // Assert: one statement per review (SRS row, log, counters and outbox row in one;
    // no BEGIN or COMMIT), and the batch's deck check came from the cache.
    assert_eq!(after_one - before, 1, "one review, one statement");
    assert_eq!(batch.successful, 3);
    assert_eq!(
        app.queries() - after_one,
        3,
        "a batch of three reviews, three statements"
    );
}

#[tokio::test]
async fn cache_counters_and_breaker_state_are_exported_on_metrics() {
    let app = TestApp::spawn().await;
    let (deck, _) = app.deck_with_cards("Metrics", 1).await;
    let mut client = app.client.clone();
    client
        .get_deck(auth(&app.user, get_deck(&deck.id)))
        .await
        .unwrap();
    client
        .get_deck(auth(&app.user, get_deck(&deck.id)))
        .await
        .unwrap();

    let body = app.scrape_metrics().await.0;

    let value = |name: &str| {
        body.lines()
            .find(|line| line.starts_with(name) && !line.starts_with('#'))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{body}"))
    };
    assert!(value("deck_cache_hits") >= 1.0);
    assert!(value("deck_cache_fills") >= 1.0);
    assert_eq!(value("deck_cache_breaker_state"), 0.0);
    assert!(value("deck_db_queries") >= 1.0);
}

/// A before-fill hook that parks the next fill of one chosen key until released.
#[derive(Clone, Default)]
struct FillGate {
    parked: Arc<Mutex<Option<Parked>>>,
}

/// The key to park, "it is parked", "let it go".
type Parked = (String, oneshot::Sender<()>, oneshot::Receiver<()>);

impl FillGate {
    fn hooks(&self) -> CacheHooks {
        let gate = self.clone();
        CacheHooks {
            before_fill: Some(Arc::new(move |key: String| {
                let gate = gate.clone();
                async move {
                    let parked = {
                        let mut parked = gate.parked.lock().unwrap();
                        if parked.as_ref().is_some_and(|(target, _, _)| *target == key) {
                            parked.take()
                        } else {
                            None
                        }
                    };
                    if let Some((_, reached, release)) = parked {
                        reached.send(()).unwrap();
                        release.await.unwrap();
                    }
                }
                .boxed()
            })),
        }
    }

    /// Parks the next fill of `key`: returns "it has read PostgreSQL and is parked"
    /// and "let it go".
    fn park(&self, key: String) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        *self.parked.lock().unwrap() = Some((key, reached_tx, release_rx));
        (reached_rx, release_tx)
    }
}

fn deck_key(app: &TestApp, deck: &pb::Deck) -> String {
    app.keys()
        .deck(deck_service::domain::DeckId(deck.id.parse().unwrap()))
}

/// Deletes `key`'s generation key, as an eviction under `maxmemory` (or the expiry of
/// a key nobody wrote to for long) would.
async fn evict_generation(app: &TestApp, key: &str) {
    let generation_key = format!("{key}:gen");
    app.redis()
        .run(|mut c| async move {
            redis::cmd("DEL")
                .arg(&generation_key)
                .query_async::<i64>(&mut c)
                .await
        })
        .await
        .unwrap();
}

/// GetDeck in a task of its own.
fn spawn_get_deck(
    app: &TestApp,
    deck: &pb::Deck,
) -> tokio::task::JoinHandle<Result<tonic::Response<pb::Deck>, tonic::Status>> {
    let mut client = app.client.clone();
    let (token, id) = (app.user.clone(), deck.id.clone());
    tokio::spawn(async move { client.get_deck(auth(&token, get_deck(&id))).await })
}

async fn rename(app: &TestApp, deck: &pb::Deck, name: &str) {
    app.client
        .clone()
        .update_deck(auth(
            &app.admin,
            pb::UpdateDeckRequest {
                deck_id: deck.id.clone(),
                name: Some(name.into()),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
}

async fn deck_name(app: &TestApp, deck: &pb::Deck) -> String {
    app.client
        .clone()
        .get_deck(auth(&app.user, get_deck(&deck.id)))
        .await
        .unwrap()
        .into_inner()
        .name
}

#[tokio::test]
async fn a_fill_that_read_postgres_before_a_write_does_not_land_after_it() {
    let gate = FillGate::default();
    let app = TestApp::spawn_with(Spawn {
        hooks: gate.hooks(),
        ..Default::default()
    })
    .await;
    let (deck, _) = app.deck_with_cards("Old name", 1).await;
    let (reached_rx, release_tx) = gate.park(deck_key(&app, &deck));

    // Act: the reader reads PostgreSQL ("Old name") and parks before its fill; a write
    // commits and invalidates; then the fill is let go.
    let reader = spawn_get_deck(&app, &deck);
    reached_rx.await.unwrap();
    rename(&app, &deck, "New name").await;
    release_tx.send(()).unwrap();
    let read_before_write = reader.await.unwrap().unwrap().into_inner();

    // Assert: the old value was refused; the next read shows the write.
    assert_eq!(read_before_write.name, "Old name");
    assert_eq!(app.metrics().rejected_fills, 1);
    assert_eq!(deck_name(&app, &deck).await, "New name");
    assert_eq!(deck_name(&app, &deck).await, "New name");
}

#[tokio::test]
async fn an_l1_fill_from_a_load_that_read_postgres_before_a_write_is_never_served_after_it() {
    // Arrange: L1 on, and subscribed (else it is bypassed and this would test nothing).
    // The drainer only at start: a pass of it between the write's invalidation and the
    // deletion of its outbox row would invalidate the keys once more (harmless, a
    // refill) and cost the hits this test counts.
    let gate = FillGate::default();
    let app = TestApp::spawn_with(Spawn {
        hooks: gate.hooks(),
        l1: true,
        outbox_interval_ms: 600_000,
        ..Default::default()
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while app
        .metric("pubsub_subscribed{subscription=\"cache_invalidation\"}")
        .await
        != Some(1.0)
    {
        assert!(
            Instant::now() < deadline,
            "the L1 subscription never came up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (deck, _) = app.deck_with_cards("Old name", 1).await;
    let (reached_rx, release_tx) = gate.park(deck_key(&app, &deck));

    // Act: the reader reads PostgreSQL ("Old name") and parks before its fills (Redis,
    // then L1); a write commits and invalidates; then the fills are let go.
    let reader = spawn_get_deck(&app, &deck);
    reached_rx.await.unwrap();
    rename(&app, &deck, "New name").await;
    release_tx.send(()).unwrap();
    let read_before_write = reader.await.unwrap().unwrap().into_inner();

    // Assert: neither tier kept the old value, and L1 serves the new one. The write's
    // own pushed invalidation may reach this replica after the first read filled L1
    // (the write answers once Redis confirmed, not once the push came back): that costs
    // one more miss, so of four reads at least two are L1 hits.
    assert_eq!(read_before_write.name, "Old name");
    let l1_hits = app.metrics().l1_hits;
    for _ in 0..4 {
        assert_eq!(deck_name(&app, &deck).await, "New name");
    }
    assert!(app.metrics().l1_hits >= l1_hits + 2, "L1 was not used");
}

#[tokio::test]
async fn a_fill_is_refused_when_its_generation_token_was_evicted_after_an_invalidation() {
    let gate = FillGate::default();
    let app = TestApp::spawn_with(Spawn {
        hooks: gate.hooks(),
        ..Default::default()
    })
    .await;
    let (deck, _) = app.deck_with_cards("Old name", 1).await;
    let key = deck_key(&app, &deck);
    let (reached_rx, release_tx) = gate.park(key.clone());

    // Act: with no generation key to start with, the reader reads PostgreSQL and
    // parks; a write invalidates; then the generation key is evicted before the fill.
    evict_generation(&app, &key).await;
    let reader = spawn_get_deck(&app, &deck);
    reached_rx.await.unwrap();
    rename(&app, &deck, "New name").await;
    evict_generation(&app, &key).await;
    release_tx.send(()).unwrap();
    reader.await.unwrap().unwrap();

    // Assert: no record of the invalidation is not "nothing happened": refused.
    assert_eq!(app.metrics().rejected_fills, 1);
    assert!(!app.exists(&key).await, "the stale value did not land");
    assert_eq!(deck_name(&app, &deck).await, "New name");
    assert_eq!(deck_name(&app, &deck).await, "New name");
}

#[tokio::test]
async fn a_fill_is_refused_when_redis_restarted_empty_between_the_read_and_the_fill() {
    let gate = FillGate::default();
    let mut redis = RedisServer::start();
    let app = TestApp::spawn_with(Spawn {
        redis_url: redis.url(),
        hooks: gate.hooks(),
        ..Default::default()
    })
    .await;
    let (deck, _) = app.deck_with_cards("Old name", 1).await;
    let key = deck_key(&app, &deck);
    let (reached_rx, release_tx) = gate.park(key.clone());

    // Act: with no generation key to start with, the reader reads PostgreSQL and
    // parks; a write invalidates (Redis confirms); then Redis restarts without its
    // data (no persistence, as the cache role runs) before the fill goes.
    evict_generation(&app, &key).await;
    let reader = spawn_get_deck(&app, &deck);
    reached_rx.await.unwrap();
    rename(&app, &deck, "New name").await;
    assert!(!app.handles.cache.invalidations_pending());
    redis.stop();
    redis.restart();
    release_tx.send(()).unwrap();
    reader.await.unwrap().unwrap();

    // Assert: the fill reached Redis and was refused; no stale value was cached.
    assert_eq!(app.metrics().rejected_fills, 1, "{:?}", app.metrics());
    assert!(!app.exists(&key).await, "the stale value did not land");
    assert_eq!(deck_name(&app, &deck).await, "New name");
    assert_eq!(deck_name(&app, &deck).await, "New name");
}

#[tokio::test]
async fn a_read_after_a_delete_does_not_join_a_load_that_began_before_it() {
    let gate = FillGate::default();
    let app = TestApp::spawn_with(Spawn {
        hooks: gate.hooks(),
        ..Default::default()
    })
    .await;
    let (deck, _) = app.deck_with_cards("Short-lived", 1).await;
    let (reached_rx, release_tx) = gate.park(deck_key(&app, &deck));

    // Act: a load of the active deck is in flight (parked before its fill) when an
    // admin deletes the deck; then another reader of this process asks for it.
    let early_reader = spawn_get_deck(&app, &deck);
    reached_rx.await.unwrap();
    app.client
        .clone()
        .delete_deck(auth(
            &app.admin,
            pb::DeleteDeckRequest {
                deck_id: deck.id.clone(),
            },
        ))
        .await
        .unwrap();
    let mut client = app.client.clone();
    let after_delete = tokio::time::timeout(
        Duration::from_secs(10),
        client.get_deck(auth(&app.user, get_deck(&deck.id))),
    )
    .await
    .expect("the read after the delete waited for the load parked before it");
    release_tx.send(()).unwrap();
    let before_delete = early_reader.await.unwrap();

    // Assert: the later reader loaded afresh; the early one's stale fill was refused.
    assert_eq!(after_delete.unwrap_err().code(), Code::NotFound);
    assert_eq!(before_delete.unwrap().into_inner().name, "Short-lived");
    assert_eq!(app.metrics().rejected_fills, 1);
    let again = app
        .client
        .clone()
        .get_deck(auth(&app.user, get_deck(&deck.id)))
        .await;
    assert_eq!(again.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn a_hundred_concurrent_misses_of_one_key_run_one_database_query() {
    let app = TestApp::spawn().await;
    let (deck, _) = app.deck_with_cards("Stampede", 2).await;
    let queries = app.queries();

    let calls = (0..100).map(|_| {
        let mut client = app.client.clone();
        let (token, id) = (app.user.clone(), deck.id.clone());
        tokio::spawn(async move { client.get_deck(auth(&token, get_deck(&id))).await })
    });
    let results = futures::future::join_all(calls).await;

    assert!(
        results
            .into_iter()
            .all(|r| r.unwrap().unwrap().into_inner().card_count == Some(2))
    );
    assert_eq!(app.queries() - queries, 1);
}

#[tokio::test]
async fn past_the_inflight_bound_a_miss_loads_unshared_and_still_answers() {
    // Arrange: room for one shared load, taken by a load parked before its fill.
    let gate = FillGate::default();
    let app = TestApp::spawn_with(Spawn {
        hooks: gate.hooks(),
        settings: vec![("CACHE_MAX_INFLIGHT_LOADS", "1".into())],
        ..Default::default()
    })
    .await;
    let (parked, _) = app.deck_with_cards("Parked", 1).await;
    let (other, _) = app.deck_with_cards("Other", 2).await;
    let (reached_rx, release_tx) = gate.park(deck_key(&app, &parked));
    let parked_reader = spawn_get_deck(&app, &parked);
    reached_rx.await.unwrap();
    assert_eq!(app.metric("deck_cache_inflight_loads").await, Some(1.0));

    // Act: a miss of another key.
    let mut client = app.client.clone();
    let answered = tokio::time::timeout(
        Duration::from_secs(10),
        client.get_deck(auth(&app.user, get_deck(&other.id))),
    )
    .await
    .expect("a miss past the bound does not wait for a slot");

    // Assert: it loaded by itself, and the map never grew past its bound.
    assert_eq!(answered.unwrap().into_inner().card_count, Some(2));
    assert_eq!(app.metrics().unshared_loads, 1);
    assert_eq!(app.metrics().inflight_loads, 1);
    release_tx.send(()).unwrap();
    parked_reader.await.unwrap().unwrap();
    assert_eq!(app.metrics().inflight_loads, 0);
}

#[tokio::test]
async fn unknown_deck_ids_are_cached_briefly_as_missing() {
    let app = TestApp::spawn().await;
    let unknown = Uuid::new_v4().to_string();
    let mut client = app.client.clone();
    let first = client
        .get_deck(auth(&app.user, get_deck(&unknown)))
        .await
        .unwrap_err();
    let queries = app.queries();

    let second = client
        .get_deck(auth(&app.user, get_deck(&unknown)))
        .await
        .unwrap_err();

    assert_eq!(
        (first.code(), second.code()),
        (Code::NotFound, Code::NotFound)
    );
    assert_eq!(app.queries(), queries);
    let key = app
        .keys()
        .deck(deck_service::domain::DeckId(unknown.parse().unwrap()));
    let ttl = app.pttl(&key).await;
    assert!(ttl > 0 && ttl <= 5_500, "negative TTL {ttl}");
}

#[tokio::test]
async fn keys_of_one_user_share_a_slot_and_keys_of_one_deck_share_a_slot() {
    let app = TestApp::spawn().await;
    let (deck, _) = started_deck(&app, "Slots").await;
    read_all_views(&app, &deck.id).await;
    let keys = app.keys();
    let deck_id = deck_service::domain::DeckId(deck.id.parse().unwrap());
    let user_id = deck_service::domain::UserId(app.user_id);

    let [deck_key, cards_key] = keys.of_deck(deck_id);
    let [decks_key, due_key] = keys.of_user(user_id);

    for key in [&deck_key, &cards_key, &decks_key, &due_key] {
        assert!(app.exists(key).await, "{key} was filled");
    }
    assert_eq!(
        deck_key,
        format!("{}cache:deck:{{{}}}", app.prefix, deck.id)
    );
    assert_eq!(
        due_key,
        format!("{}cache:due_cards:{{{}}}", app.prefix, app.user_id)
    );
    assert_eq!(key_slot(&deck_key), key_slot(&cards_key));
    assert_eq!(key_slot(&decks_key), key_slot(&due_key));
    assert_eq!(key_slot(&deck_key), key_slot(&format!("{deck_key}:gen")));
}

#[tokio::test]
async fn due_cards_never_outlive_the_next_utc_midnight_and_ttls_carry_jitter() {
    let app = TestApp::spawn_with(Spawn {
        now: datetime!(2030-01-10 23:59:50 UTC),
        ..Default::default()
    })
    .await;
    let (deck, _) = started_deck(&app, "Midnight").await;
    read_all_views(&app, &deck.id).await;

    let due_ttl = app
        .pttl(
            &app.keys()
                .due_cards(deck_service::domain::UserId(app.user_id)),
        )
        .await;
    let deck_ttl = app
        .pttl(
            &app.keys()
                .deck(deck_service::domain::DeckId(deck.id.parse().unwrap())),
        )
        .await;

    assert!(
        due_ttl > 0 && due_ttl <= 10_000,
        "due cards TTL {due_ttl} ms reaches past midnight"
    );
    assert!(
        (540_000..=660_000).contains(&deck_ttl),
        "deck TTL {deck_ttl} ms is 600 s ± 10 %"
    );
}

#[tokio::test]
async fn with_redis_stopped_every_read_still_succeeds_from_postgres() {
    let mut redis = RedisServer::start();
    let app = TestApp::spawn_with(Spawn {
        redis_url: redis.url(),
        cache_timeout_ms: 50,
        ..Default::default()
    })
    .await;
    let (deck, cards) = started_deck(&app, "No Redis").await;
    read_all_views(&app, &deck.id).await;

    redis.stop();
    let mut client = app.client.clone();
    let (read_deck, read_cards, read_queue, progress) = read_all_views(&app, &deck.id).await;
    let review = client
        .submit_review(auth(&app.user, support::review(&cards[0].id, 5)))
        .await;
    let after_write = read_all_views(&app, &deck.id).await;
    let dashboard = client
        .get_dashboard(auth(&app.user, pb::GetDashboardRequest::default()))
        .await;

    assert_eq!(read_deck.card_count, Some(3));
    assert_eq!(read_cards.total, 3);
    assert_eq!(read_queue.total_due, 3);
    assert_eq!(progress.total, 1);
    assert!(review.is_ok());
    assert_eq!(
        after_write.2.total_due, 2,
        "the review shows although its invalidation could not be sent"
    );
    assert!(dashboard.is_ok());
    assert!(app.metrics().errors > 0);
}

#[tokio::test]
async fn with_redis_paused_reads_answer_within_the_deadline() {
    let redis = RedisServer::start();
    let app = TestApp::spawn_with(Spawn {
        redis_url: redis.url(),
        cache_timeout_ms: 50,
        ..Default::default()
    })
    .await;
    let (deck, _) = started_deck(&app, "Frozen").await;
    read_all_views(&app, &deck.id).await;

    redis.pause();
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        read_all_views(&app, &deck.id).await;
        slowest = slowest.max(started.elapsed());
    }
    redis.resume();

    // Four reads per round; each costs at most a few 50 ms Redis deadlines before the
    // breaker opens, instead of hanging on the frozen server.
    assert!(
        slowest < Duration::from_millis(1500),
        "slowest round {slowest:?}"
    );
    assert_eq!(app.metrics().breaker_state, BreakerState::Open);
}

#[tokio::test]
async fn a_write_while_redis_is_unreachable_leaves_no_stale_entry_when_it_returns() {
    let redis = RedisServer::start();
    let app = TestApp::spawn_with(Spawn {
        redis_url: redis.url(),
        cache_timeout_ms: 50,
        ..Default::default()
    })
    .await;
    let (deck, _) = app.deck_with_cards("Before outage", 1).await;
    let mut client = app.client.clone();
    // Cached twice, so the entry surely sits in Redis.
    client
        .get_deck(auth(&app.user, get_deck(&deck.id)))
        .await
        .unwrap();
    client
        .get_deck(auth(&app.user, get_deck(&deck.id)))
        .await
        .unwrap();

    // Paused, not stopped: the stale entry stays in Redis's memory.
    redis.pause();
    client
        .update_deck(auth(
            &app.admin,
            pb::UpdateDeckRequest {
                deck_id: deck.id.clone(),
                name: Some("After outage".into()),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    redis.resume();

    let right_after = client
        .get_deck(auth(&app.user, get_deck(&deck.id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(right_after.name, "After outage");
    // The drainer deletes the stale entry once Redis answers; then the cache serves again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.metrics().outbox_drained == 0 || app.handles.cache.invalidations_pending() {
        assert!(
            Instant::now() < deadline,
            "outbox not drained: {:?}",
            app.metrics()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..3 {
        let read = client
            .get_deck(auth(&app.user, get_deck(&deck.id)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(read.name, "After outage");
    }
    assert!(app.metrics().hits > 0);
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM cache_outbox")
        .fetch_one(&app.handles.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn a_write_while_redis_is_stopped_leaves_no_stale_entry_after_it_restarts_with_its_data() {
    // Append-only file on: the stale entry survives the restart, as on a real server.
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let app = TestApp::spawn_with(Spawn {
        redis_url: redis.url(),
        cache_timeout_ms: 50,
        ..Default::default()
    })
    .await;
    let (deck, _) = app.deck_with_cards("Before restart", 2).await;
    let mut client = app.client.clone();
    client
        .list_cards(auth(&app.user, list_cards(&deck.id)))
        .await
        .unwrap();
    client
        .list_cards(auth(&app.user, list_cards(&deck.id)))
        .await
        .unwrap();
    let cards_key = app
        .keys()
        .cards(deck_service::domain::DeckId(deck.id.parse().unwrap()));
    assert!(
        app.exists(&cards_key).await,
        "not cached: {:?}",
        app.metrics()
    );

    redis.stop();
    let added = client
        .create_card(auth(
            &app.admin,
            pb::CreateCardRequest {
                deck_id: deck.id.clone(),
                card: Some(pb::NewCard {
                    front_text: "νέα κάρτα".into(),
                    back_text: "new card".into(),
                    difficulty: pb::Difficulty::Easy as i32,
                    order_index: 5,
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    redis.restart();

    for _ in 0..5 {
        let cards = client
            .list_cards(auth(&app.user, list_cards(&deck.id)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(cards.total, 3);
        assert!(cards.cards.iter().any(|card| card.id == added.id));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.handles.cache.invalidations_pending() {
        assert!(
            Instant::now() < deadline,
            "outbox not drained: {:?}",
            app.metrics()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cached = client
        .list_cards(auth(&app.user, list_cards(&deck.id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cached.total, 3);
}
