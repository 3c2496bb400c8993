//! Builds the application: pools, migrations, token verifier, cache, health, and the
//! bound listener. [`Application::build`] binds its own listener so tests can pass
//! port 0 and read the real port back with [`Application::local_addr`].

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicU64},
};

use anyhow::Context;
use common::{
    auth::AccessVerifier,
    balance::BalancedChannel,
    grpc::GrpcApp,
    health::Dependency,
    pubsub::{PubsubMetrics, Subscription, SubscriptionConfig},
    redis::RedisPool,
    shutdown::Shutdown,
};
use proto::deck::v1::deck_service_server::DeckServiceServer;
use tonic::service::Routes;

use crate::{
    cache::{Cache, CacheHooks, CacheMetrics, CacheSettings, L1Settings, Ttls, Views},
    clock::{Clock, SystemClock},
    config::{Config, DEFAULT_PORT},
    grpc::DeckGrpc,
    service::DeckApp,
    store::Store,
};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// What tests (and only tests) change about the application.
#[derive(Clone)]
pub struct Options {
    pub clock: Arc<dyn Clock>,
    pub hooks: CacheHooks,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            hooks: CacheHooks::default(),
        }
    }
}

/// Read-only handles into a built application, for tests and metrics.
#[derive(Clone)]
pub struct Handles {
    /// Cache counters.
    pub cache_metrics: Arc<CacheMetrics>,
    /// PostgreSQL statements run on behalf of requests.
    pub db_queries: Arc<AtomicU64>,
    pub cache: Cache,
    pub pool: sqlx::PgPool,
}

/// A built, bound, not yet serving deck-service.
pub struct Application {
    app: GrpcApp,
    routes: Routes,
    handles: Handles,
}

/// The token verifier: a fixed key set from `JWT_PUBLIC_KEYS_FILE`, or session-service's
/// published keys (fetched on first use, refetched on an unknown `kid`, throttled).
pub fn token_verifier(config: &Config, shutdown: &Shutdown) -> AccessVerifier {
    common::jwks::access_verifier(&config.tokens, || {
        BalancedChannel::new(&config.session_service_url, &config.grpc_client, shutdown)
    })
}

impl Application {
    pub async fn build(config: Config, shutdown: Shutdown) -> anyhow::Result<Self> {
        Self::build_with(config, shutdown, Options::default()).await
    }

    /// Connects to PostgreSQL (waiting for it up to the start-up timeout), runs the
    /// migrations, builds the cache and binds the listener.
    pub async fn build_with(
        config: Config,
        shutdown: Shutdown,
        options: Options,
    ) -> anyhow::Result<Self> {
        let verifier = token_verifier(&config, &shutdown);
        let pg = common::postgres::pool(&config.postgres, config.database_url())?;
        common::postgres::migrate(&pg, &MIGRATOR, config.postgres.database_startup_timeout)
            .await
            .context("deck-service database")?;
        // The cache is optional for reads: readiness does not depend on it.
        let redis = RedisPool::new(config.cache_redis_url.expose(), &config.process.redis)
            .context("CACHE_REDIS_URL")?;
        let cache = Cache::new(
            redis.clone(),
            CacheSettings {
                timeout: config.cache.cache_redis_timeout,
                breaker_threshold: config.cache.cache_breaker_threshold,
                breaker_cooldown: config.cache.cache_breaker_cooldown,
                negative_ttl: config.cache.cache_negative_ttl,
                max_inflight_loads: config.cache.cache_max_inflight_loads as usize,
                l1: (config.cache.cache_l1_max_bytes > 0).then_some(L1Settings {
                    max_bytes: config.cache.cache_l1_max_bytes,
                    ttl: config.cache.cache_l1_ttl,
                }),
            },
            options.hooks,
        );
        let store = Store::new(pg.clone(), cache.clone());
        // Invalidations a previous process could not deliver go out before any read
        // trusts Redis; if Redis is down now, the drainer keeps trying.
        if let Err(error) = store.outbox().drain().await {
            tracing::warn!(%error, "cannot drain the cache outbox at start");
        }
        store
            .outbox()
            .spawn_drainer(config.cache.cache_outbox_interval, shutdown.clone());

        let ttls = Ttls {
            deck: config.cache.cache_deck_ttl,
            cards: config.cache.cache_cards_ttl,
            user_decks: config.cache.cache_user_decks_ttl,
            due_cards: config.cache.cache_due_cards_ttl,
        };
        let handles = Handles {
            cache_metrics: cache.metrics(),
            db_queries: store.query_counter(),
            cache: cache.clone(),
            pool: pg.clone(),
        };
        let db = store.db().clone();
        let views = Views::new(cache.clone(), ttls);
        let use_cases = DeckApp::new(store, views, options.clock);
        let api = DeckGrpc::new(use_cases, verifier.clone());

        let app = GrpcApp::bind(
            &config.process.grpc,
            ([0, 0, 0, 0], DEFAULT_PORT).into(),
            &[proto::DECK_SERVICE_NAME],
            shutdown.clone(),
        )
        .await
        .context("cannot bind GRPC_ADDR")?
        .depends_on(Dependency::postgres(pg.clone()));
        // Once per process: every subscription of deck-service shares these series.
        let pubsub_metrics = PubsubMetrics::register(app.metrics());
        // Revoked tokens are refused from the first request on: until the push channel
        // and its snapshot are in, each check asks the sessions Redis.
        common::revocation::enforce(
            &verifier,
            &config.revocation,
            &config.process.redis,
            app.metrics(),
            &pubsub_metrics,
            app.shutdown(),
        )
        .map_err(|error| anyhow::anyhow!(error))?;
        crate::cache::register_metrics(app.metrics(), &handles.cache_metrics);
        db.register_metrics(app.metrics());
        common::postgres::register_metrics(app.metrics(), &pg);
        redis.register_metrics(
            app.metrics(),
            "redis_cache_reachable",
            "redis_cache_calls_in_flight",
        );
        if let Some(l1) = cache.l1() {
            let pushed = cache.clone();
            let subscription = Subscription::spawn(
                SubscriptionConfig::new(
                    "cache_invalidation",
                    config.cache_redis_url.expose(),
                    &config.process.redis,
                    vec![cache.invalidation_channel().to_owned()],
                ),
                move |_, payload| pushed.apply_pushed_invalidation(payload),
                &pubsub_metrics,
                shutdown,
            )
            .context("CACHE_REDIS_URL")?;
            l1.attach(subscription);
            let l1 = l1.clone();
            app.metrics().register_gauge_fn(
                "deck_cache_l1_bytes",
                "Bytes held by the in-process L1 cache (keys, values, bookkeeping).",
                move || i64::try_from(l1.weighted_size()).unwrap_or(i64::MAX),
            );
        }
        let routes = Routes::new(DeckServiceServer::new(api));
        Ok(Self {
            app,
            routes,
            handles,
        })
    }

    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.app.local_addr()
    }

    /// Where `/metrics` is served.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.app.metrics_addr()
    }

    pub fn handles(&self) -> Handles {
        self.handles.clone()
    }

    /// Serves until the shutdown signal fires and in-flight calls drain.
    pub async fn run(self) -> anyhow::Result<()> {
        self.app.run(self.routes).await?;
        Ok(())
    }
}
