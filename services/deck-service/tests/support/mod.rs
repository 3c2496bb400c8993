//! An in-process deck-service on port 0 for the service tests: real PostgreSQL (a fresh
//! database), real Redis (a random key prefix), a clock the test moves, and handles
//! on the cache counters and the query counter.

#![allow(dead_code)]

use std::sync::{Arc, atomic::Ordering};

use common::shutdown::Shutdown;
use deck_service::{
    cache::{CacheHooks, MetricsSnapshot},
    clock::ManualClock,
    config::Cli,
    startup::{Application, Handles, Options},
};
use proto::deck::v1::{self as pb, deck_service_client::DeckServiceClient};
use test_support::{
    InProcess, ServiceConfig, TestTokens,
    http::{HttpClient, Metrics},
};
use time::OffsetDateTime;
use tonic::{Request, transport::Channel};
use uuid::Uuid;

pub type Client = DeckServiceClient<Channel>;

/// How to build one test app.
pub struct Spawn {
    pub redis_url: String,
    pub hooks: CacheHooks,
    pub now: OffsetDateTime,
    /// `CACHE_REDIS_TIMEOUT_MS`. Generous by default: on a loaded test machine the
    /// production 50 ms can pass while the process waits for a CPU, which would turn
    /// a test of cache hits into one of the fallback. Tests of a slow or dead Redis
    /// set the production value.
    pub cache_timeout_ms: u64,
    /// `CACHE_OUTBOX_INTERVAL_MS`: short by default, so tests see the drainer soon.
    pub outbox_interval_ms: u64,
    /// The in-process L1 tier. Off by default: these tests observe the Redis tier
    /// (its hits, fills and keys); `tests/l1.rs` tests L1 on real processes.
    pub l1: bool,
    /// `SESSION_REDIS_URL`, where revocations are followed: the shared test Redis, which
    /// stays up while a test stops or pauses its cache Redis.
    pub session_redis_url: String,
    /// More settings, by env var name (`("CACHE_MAX_INFLIGHT_LOADS", "1")`), applied last.
    pub settings: Vec<(&'static str, String)>,
}

impl Default for Spawn {
    fn default() -> Self {
        Self {
            redis_url: test_support::redis_url(),
            hooks: CacheHooks::default(),
            now: OffsetDateTime::now_utc(),
            cache_timeout_ms: 1000,
            outbox_interval_ms: 100,
            l1: false,
            session_redis_url: test_support::redis_url(),
            settings: Vec::new(),
        }
    }
}

pub struct TestApp {
    pub client: Client,
    pub addr: std::net::SocketAddr,
    pub metrics_addr: std::net::SocketAddr,
    pub handles: Handles,
    pub clock: ManualClock,
    pub prefix: String,
    pub redis_url: String,
    pub admin: String,
    pub user_id: Uuid,
    pub user: String,
    tokens: TestTokens,
    /// Shuts the service down when the test drops the app.
    _running: InProcess,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Spawn::default()).await
    }

    pub async fn spawn_with(spawn: Spawn) -> Self {
        test_support::init();
        let tokens = TestTokens::new();
        let prefix = test_support::key_prefix();
        let database_url = test_support::fresh_database().await;
        let config = ServiceConfig::deck_service(&database_url, &spawn.redis_url, &prefix)
            .set("SESSION_REDIS_URL", &spawn.session_redis_url)
            .set("CACHE_REDIS_TIMEOUT_MS", spawn.cache_timeout_ms)
            .set("CACHE_OUTBOX_INTERVAL_MS", spawn.outbox_interval_ms);
        let config = if spawn.l1 {
            config
        } else {
            config.set("CACHE_L1_MAX_BYTES", 0)
        };
        let cli: Cli = config.set_all(spawn.settings).parse();
        let clock = ManualClock::new(spawn.now);
        let shutdown = Shutdown::new();
        let app = Application::build_with(
            cli.config,
            shutdown.clone(),
            Options {
                clock: Arc::new(clock.clone()),
                hooks: spawn.hooks,
            },
        )
        .await
        .expect("deck-service builds");
        let addr = app.local_addr();
        let handles = app.handles();
        let metrics_addr = app.metrics_addr();
        let running = InProcess::start(shutdown, app.run());
        let channel = test_support::grpc_channel(&addr.to_string()).await;
        let user_id = Uuid::new_v4();
        let app = Self {
            client: DeckServiceClient::new(channel),
            addr,
            metrics_addr,
            handles,
            clock,
            prefix,
            redis_url: spawn.redis_url,
            admin: tokens.access_token(Uuid::new_v4(), true),
            user: tokens.access_token(user_id, false),
            user_id,
            tokens,
            _running: running,
        };
        test_support::app::wait_for_revocations(&metrics_addr.to_string()).await;
        app
    }

    /// A client on a connection of its own.
    pub async fn new_client(&self) -> Client {
        DeckServiceClient::new(test_support::grpc_channel(&self.addr.to_string()).await)
    }

    /// A token of another, new, normal user.
    pub fn other_user(&self) -> (Uuid, String) {
        let id = Uuid::new_v4();
        (id, self.tokens.access_token(id, false))
    }

    pub fn queries(&self) -> u64 {
        self.handles.db_queries.load(Ordering::SeqCst)
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        self.handles.cache_metrics.snapshot()
    }

    /// Creates a deck with `cards` cards (fronts `card 0`, `card 1`, …, order_index = i).
    pub async fn deck_with_cards(&self, name: &str, cards: usize) -> (pb::Deck, Vec<pb::Card>) {
        let mut client = self.client.clone();
        let deck = client
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
            .into_inner();
        if cards == 0 {
            return (deck, Vec::new());
        }
        let new_cards = (0..cards)
            .map(|i| pb::NewCard {
                front_text: format!("card {i}"),
                back_text: format!("back {i}"),
                example_sentence: None,
                pronunciation: None,
                difficulty: pb::Difficulty::Easy as i32,
                order_index: i as u32,
            })
            .collect();
        let created = client
            .create_cards(auth(
                &self.admin,
                pb::CreateCardsRequest {
                    deck_id: deck.id.clone(),
                    cards: new_cards,
                },
            ))
            .await
            .expect("create cards")
            .into_inner();
        (deck, created.cards)
    }

    /// A Redis client of its own on this test's Redis (single node or cluster alike).
    pub fn redis(&self) -> common::redis::RedisPool {
        let config = common::config::RedisConfig {
            redis_connect_timeout: std::time::Duration::from_secs(2),
            redis_response_timeout: std::time::Duration::from_secs(2),
            redis_key_prefix: self.prefix.clone(),
        };
        common::redis::RedisPool::new(&self.redis_url, &config).unwrap()
    }

    /// Whether `key` exists in Redis.
    pub async fn exists(&self, key: &str) -> bool {
        let key = key.to_owned();
        self.redis()
            .run(|mut c| async move {
                redis::cmd("EXISTS")
                    .arg(&key)
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await
            .unwrap()
            == 1
    }

    /// Milliseconds to live of `key`.
    pub async fn pttl(&self, key: &str) -> i64 {
        let key = key.to_owned();
        self.redis()
            .run(|mut c| async move {
                redis::cmd("PTTL")
                    .arg(&key)
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await
            .unwrap()
    }

    /// `GET /metrics`.
    pub async fn scrape_metrics(&self) -> Metrics {
        HttpClient::new(self.metrics_addr.to_string())
            .scrape()
            .await
    }

    /// The value of the unlabelled series `name` on `/metrics`, if exported.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        self.scrape_metrics().await.value(name)
    }

    /// PostgreSQL connections in use right now (open minus idle), cache Redis calls in
    /// flight, and the cache's in-flight loads, as `/metrics` shows them.
    pub async fn pools_in_use(&self) -> PoolsInUse {
        let metrics = self.scrape_metrics().await;
        let value = |name: &str| {
            metrics
                .value(name)
                .unwrap_or_else(|| panic!("{name} missing from /metrics"))
        };
        PoolsInUse {
            postgres: value("db_pool_connections") - value("db_pool_idle_connections"),
            redis: value("redis_cache_calls_in_flight"),
            inflight_loads: metrics.value("deck_cache_inflight_loads"),
        }
    }

    pub fn keys(&self) -> deck_service::cache::Keys {
        deck_service::cache::Keys::new(&self.prefix)
    }
}

/// Pool usage read from `/metrics` (see [`TestApp::pools_in_use`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PoolsInUse {
    pub postgres: f64,
    /// Redis calls in flight (one multiplexed connection: nothing to check out).
    pub redis: f64,
    pub inflight_loads: Option<f64>,
}

/// `message` with `authorization: Bearer <token>`.
pub fn auth<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

pub fn get_deck(id: &str) -> pb::GetDeckRequest {
    pb::GetDeckRequest {
        deck_id: id.to_owned(),
    }
}

pub fn list_cards(id: &str) -> pb::ListCardsRequest {
    pb::ListCardsRequest {
        deck_id: id.to_owned(),
        ..Default::default()
    }
}

pub fn queue(deck: Option<&str>) -> pb::GetStudyQueueRequest {
    pb::GetStudyQueueRequest {
        deck_id: deck.map(str::to_owned),
        ..Default::default()
    }
}

pub fn review(card: &str, quality: i32) -> pb::SubmitReviewRequest {
    pb::SubmitReviewRequest {
        card_id: card.to_owned(),
        quality,
        time_taken: 5,
    }
}

pub fn initialize_all(deck: &str) -> pb::InitializeStudyRequest {
    pb::InitializeStudyRequest {
        deck_id: deck.to_owned(),
        card_ids: Vec::new(),
        all_cards: true,
    }
}
