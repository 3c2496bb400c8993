//! The in-process L1 cache with push invalidation, on real deck-service processes
//! sharing one PostgreSQL database and one Redis (a single node, or the Redis Cluster
//! in the cluster pass of `make test`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

use std::{collections::HashMap, time::Duration};

use proto::deck::v1::{self as pb, deck_service_client::DeckServiceClient};
use test_support::{RedisServer, ServiceConfig, ServiceProcess, TestTokens, http::HttpClient};
use tonic::{Request, transport::Channel};
use uuid::Uuid;

/// What the replicas of one test share.
struct Deployment {
    database_url: String,
    redis_url: String,
    prefix: String,
    admin: String,
    user: String,
}

struct Replica {
    _process: ServiceProcess,
    client: DeckServiceClient<Channel>,
    metrics_addr: String,
}

impl Deployment {
    async fn new(redis_url: String) -> Self {
        test_support::init();
        let tokens = TestTokens::new();
        Self {
            database_url: test_support::fresh_database().await,
            redis_url,
            prefix: test_support::key_prefix(),
            admin: tokens.access_token(Uuid::new_v4(), true),
            user: tokens.access_token(Uuid::new_v4(), false),
        }
    }

    /// A deck-service process with the L1 TTL at its longest (2 s), so a test can tell
    /// a pushed invalidation from an expiry.
    async fn replica(&self, redis_url: &str, extra: &[(&'static str, String)]) -> Replica {
        let process = ServiceConfig::deck_service(&self.database_url, redis_url, &self.prefix)
            .set("CACHE_L1_TTL_MS", 2000)
            // Generous for a loaded machine: a timed-out read would bypass, not test, L1.
            .set("CACHE_REDIS_TIMEOUT_MS", 1000)
            .set("CACHE_OUTBOX_INTERVAL_MS", 100)
            // Revocations followed on the shared test Redis, never on a cache Redis a
            // test stops (nor a system Redis on the default port).
            .set("SESSION_REDIS_URL", test_support::redis_url())
            .set_all(extra.iter().cloned())
            .spawn()
            .await;
        let channel = test_support::grpc_channel(&process.grpc_addr).await;
        let replica = Replica {
            metrics_addr: process.metrics_addr().to_owned(),
            client: DeckServiceClient::new(channel),
            _process: process,
        };
        replica.wait_subscribed().await;
        replica
    }

    async fn create_deck(&self, via: &Replica, name: &str) -> pb::Deck {
        via.client
            .clone()
            .create_deck(auth(
                &self.admin,
                pb::CreateDeckRequest {
                    name: name.into(),
                    description: None,
                    level: pb::Level::A1 as i32,
                },
            ))
            .await
            .expect("create deck")
            .into_inner()
    }

    async fn add_cards(&self, via: &Replica, deck: &str, count: usize, text_len: usize) {
        let cards = (0..count)
            .map(|i| pb::NewCard {
                front_text: format!("card {i} {}", "α".repeat(text_len)),
                back_text: format!("back {i} {}", "β".repeat(text_len)),
                example_sentence: None,
                pronunciation: None,
                difficulty: pb::Difficulty::Easy as i32,
                order_index: i as u32,
            })
            .collect();
        via.client
            .clone()
            .create_cards(auth(
                &self.admin,
                pb::CreateCardsRequest {
                    deck_id: deck.to_owned(),
                    cards,
                },
            ))
            .await
            .expect("create cards");
    }

    async fn rename(&self, via: &Replica, deck: &str, name: &str) {
        via.client
            .clone()
            .update_deck(auth(
                &self.admin,
                pb::UpdateDeckRequest {
                    deck_id: deck.to_owned(),
                    name: Some(name.to_owned()),
                    ..Default::default()
                },
            ))
            .await
            .expect("rename deck");
    }

    async fn deck_name(&self, via: &Replica, deck: &str) -> String {
        via.client
            .clone()
            .get_deck(auth(
                &self.user,
                pb::GetDeckRequest {
                    deck_id: deck.to_owned(),
                },
            ))
            .await
            .expect("get deck")
            .into_inner()
            .name
    }

    async fn card_count(&self, via: &Replica, deck: &str) -> usize {
        via.client
            .clone()
            .list_cards(auth(
                &self.user,
                pb::ListCardsRequest {
                    deck_id: deck.to_owned(),
                    page_size: 100,
                    ..Default::default()
                },
            ))
            .await
            .expect("list cards")
            .into_inner()
            .cards
            .len()
    }
}

impl Replica {
    /// The series `name` (labels spelled out) on the replica's `/metrics`.
    async fn metric(&self, name: &str) -> f64 {
        HttpClient::new(self.metrics_addr.clone())
            .scrape()
            .await
            .value(name)
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
    }

    async fn wait_metric(&self, name: &str, what: &str, want: impl Fn(f64) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let value = self.metric(name).await;
            if want(value) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} is {value}, never {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for both subscriptions: cache invalidations, and revocations with their
    /// snapshot loaded. The test tokens name no real session, so until the snapshot is
    /// in, the per-request session lookup would refuse them.
    async fn wait_subscribed(&self) {
        self.wait_metric(SUBSCRIBED, "1", |v| v == 1.0).await;
        self.wait_metric(REVOCATIONS_LIVE, "1", |v| v == 1.0).await;
    }
}

const SUBSCRIBED: &str = "pubsub_subscribed{subscription=\"cache_invalidation\"}";
const RECEIVED: &str = "pubsub_messages_received_total{subscription=\"cache_invalidation\"}";
const RESUBSCRIPTIONS: &str = "pubsub_resubscriptions_total{subscription=\"cache_invalidation\"}";
const REVOCATIONS_LIVE: &str = "revocation_push_live";
const L1_HITS: &str = "deck_cache_l1_hits_total";
const L1_BYPASSED: &str = "deck_cache_l1_bypassed_total";

fn auth<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// Reads through `reader` until its L1 answers (a hit counted), so the next read of the
/// same views is an L1 hit.
async fn warm(deployment: &Deployment, reader: &Replica, deck: &str) {
    let before = reader.metric(L1_HITS).await;
    for _ in 0..3 {
        deployment.deck_name(reader, deck).await;
        deployment.card_count(reader, deck).await;
    }
    assert!(
        reader.metric(L1_HITS).await >= before + 2.0,
        "the reader's L1 was not used"
    );
}

#[tokio::test]
async fn a_write_through_one_replica_is_never_read_old_through_another_once_pushed() {
    // Arrange: two replicas; the reader's L1 holds the deck and its cards.
    let deployment = Deployment::new(test_support::redis_url()).await;
    let writer = deployment.replica(&deployment.redis_url, &[]).await;
    let reader = deployment.replica(&deployment.redis_url, &[]).await;
    let deck = deployment.create_deck(&writer, "Before").await;
    deployment.add_cards(&writer, &deck.id, 2, 10).await;
    warm(&deployment, &reader, &deck.id).await;
    let received = reader.metric(RECEIVED).await;

    // Act: two writes through the writer (each has answered when its call returns).
    deployment.rename(&writer, &deck.id, "After").await;
    deployment.add_cards(&writer, &deck.id, 1, 10).await;

    // Assert: once the reader has the two pushes (its L1 TTL is 2 s: an entry still held
    // would be served), every read through it is new, and stays new.
    reader
        .wait_metric(RECEIVED, "two more", |v| v >= received + 2.0)
        .await;
    for _ in 0..20 {
        assert_eq!(deployment.deck_name(&reader, &deck.id).await, "After");
        assert_eq!(deployment.card_count(&reader, &deck.id).await, 3);
    }
    assert!(
        reader.metric(L1_HITS).await > 0.0,
        "the new values are served from L1 again"
    );
}

/// A Redis user of its own for one replica, so a test can cut that replica's
/// subscription (and keep it cut) without touching anyone else's.
struct RedisUser {
    name: String,
    nodes: Vec<String>,
}

impl RedisUser {
    /// `url` may be a comma-separated list of cluster seeds: the user is made on each.
    async fn create(url: &str) -> Self {
        let user = Self {
            name: format!("l1_{}", &Uuid::new_v4().simple().to_string()[..12]),
            nodes: url.split(',').map(|seed| seed.trim().to_owned()).collect(),
        };
        user.acl(&["on", ">secret", "~*", "&*", "+@all"]).await;
        user
    }

    /// The URL of the same nodes, authenticating as this user.
    fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|node| node.replacen("redis://", &format!("redis://{}:secret@", self.name), 1))
            .collect::<Vec<_>>()
            .join(",")
    }

    async fn command(&self, args: &[&str]) {
        for node in &self.nodes {
            let client = redis::Client::open(node.as_str()).unwrap();
            let mut connection = client.get_multiplexed_async_connection().await.unwrap();
            redis::cmd(args[0])
                .arg(&args[1..])
                .query_async::<redis::Value>(&mut connection)
                .await
                .unwrap_or_else(|e| panic!("{args:?} on {node}: {e}"));
        }
    }

    async fn acl(&self, rules: &[&str]) {
        let mut args = vec!["ACL", "SETUSER", &self.name];
        args.extend_from_slice(rules);
        self.command(&args).await;
    }

    /// Kills the user's pub/sub connections and forbids new subscriptions.
    async fn cut(&self) {
        self.acl(&["resetchannels"]).await;
        self.command(&["CLIENT", "KILL", "USER", &self.name, "TYPE", "pubsub"])
            .await;
    }

    async fn restore(&self) {
        self.acl(&["&*"]).await;
    }

    async fn delete(&self) {
        self.command(&["ACL", "DELUSER", &self.name]).await;
    }
}

#[tokio::test]
async fn a_replica_whose_subscription_is_cut_bypasses_l1_then_flushes_it_on_resubscribing() {
    // Arrange: the reader's L1 holds the deck.
    let deployment = Deployment::new(test_support::redis_url()).await;
    let user = RedisUser::create(&deployment.redis_url).await;
    let writer = deployment.replica(&deployment.redis_url, &[]).await;
    let reader = deployment.replica(&user.url(), &[]).await;
    let deck = deployment.create_deck(&writer, "Before cut").await;
    deployment.add_cards(&writer, &deck.id, 1, 10).await;
    warm(&deployment, &reader, &deck.id).await;

    // Act 1: cut the reader's subscription; a write meanwhile is pushed to nobody there.
    user.cut().await;
    reader.wait_metric(SUBSCRIBED, "0", |v| v == 0.0).await;
    deployment.rename(&writer, &deck.id, "During cut").await;

    // Assert 1: the reader bypasses L1, so the write is visible at once.
    let bypassed = reader.metric(L1_BYPASSED).await;
    assert_eq!(deployment.deck_name(&reader, &deck.id).await, "During cut");
    assert!(reader.metric(L1_BYPASSED).await > bypassed);

    // Act 2: a second write the reader misses, then let it resubscribe.
    deployment.rename(&writer, &deck.id, "Missed").await;
    let resubscriptions = reader.metric(RESUBSCRIPTIONS).await;
    user.restore().await;
    reader
        .wait_metric(RESUBSCRIPTIONS, "one more", |v| v > resubscriptions)
        .await;
    reader.wait_subscribed().await;

    // Assert 2: nothing from before the cut is served (flushed), and L1 is used again.
    let hits = reader.metric(L1_HITS).await;
    for _ in 0..5 {
        assert_eq!(deployment.deck_name(&reader, &deck.id).await, "Missed");
    }
    assert!(
        reader.metric(L1_HITS).await >= hits + 3.0,
        "L1 is used again"
    );
    user.delete().await;
}

#[tokio::test]
async fn l1_stays_under_its_byte_bound_with_many_large_card_lists() {
    // Arrange: L1 of 256 KiB; 24 decks of 40 cards of ~2 KB each (~80 KB per list).
    const BOUND: f64 = (256 << 10) as f64;
    let deployment = Deployment::new(test_support::redis_url()).await;
    let replica = deployment
        .replica(
            &deployment.redis_url,
            &[("CACHE_L1_MAX_BYTES", (256 << 10).to_string())],
        )
        .await;
    let mut decks = Vec::new();
    for i in 0..24 {
        let deck = deployment.create_deck(&replica, &format!("Big {i}")).await;
        deployment.add_cards(&replica, &deck.id, 40, 450).await;
        decks.push(deck.id);
    }

    // Act: every list read twice (about 2 MB offered to L1).
    for _ in 0..2 {
        for deck in &decks {
            assert_eq!(deployment.card_count(&replica, deck).await, 40);
        }
    }

    // Assert
    let bytes = replica.metric("deck_cache_l1_bytes").await;
    assert!(bytes > 0.0, "L1 holds something");
    assert!(
        bytes <= BOUND,
        "L1 holds {bytes} bytes, over its bound {BOUND}"
    );
}

/// Calls of every Redis command since start, by name (`INFO commandstats`).
async fn command_calls(port: u16) -> HashMap<String, u64> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut connection)
        .await
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn a_warm_l1_hit_sends_no_command_to_redis() {
    // Arrange: a Redis of this test's own, so every command on it is this replica's
    // (or this test's INFO); the subscription's keep-alive PINGs are left out.
    let redis = RedisServer::start();
    let deployment = Deployment::new(redis.url()).await;
    let replica = deployment.replica(&redis.url(), &[]).await;
    let deck = deployment.create_deck(&replica, "Warm").await;
    deployment.add_cards(&replica, &deck.id, 3, 10).await;
    warm(&deployment, &replica, &deck.id).await;
    // The outbox drainer may invalidate the new cards' keys once more after their writes
    // answered (every 100 ms here): warm again after it has passed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    warm(&deployment, &replica, &deck.id).await;
    let before = command_calls(redis.port()).await;
    let hits = replica.metric(L1_HITS).await;

    // Act
    for _ in 0..10 {
        deployment.deck_name(&replica, &deck.id).await;
        deployment.card_count(&replica, &deck.id).await;
    }

    // Assert
    let after = command_calls(redis.port()).await;
    let sent: Vec<(String, u64)> = after
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "ping" | "info"))
        .filter_map(|(name, calls)| {
            let delta = calls - before.get(name).copied().unwrap_or(0);
            (delta > 0).then(|| (name.clone(), delta))
        })
        .collect();
    assert_eq!(sent, vec![], "Redis commands during 20 warm reads");
    assert_eq!(replica.metric(L1_HITS).await, hits + 20.0);
}
