//! Builds the application: pools, migrations, keys, health, and the bound listener.
//! [`Application::build`] binds its own listener so tests can pass port 0 and read
//! the real port back with [`Application::local_addr`].

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use common::{
    clock::{Clock, SystemClock},
    grpc::GrpcApp,
    health::Dependency,
    redis::RedisPool,
    revocation::Publisher,
    shutdown::Shutdown,
};
use tonic::service::Routes;

use crate::{
    config::{Config, DEFAULT_PORT},
    grpc::SessionGrpc,
    metrics::SessionMetrics,
    password::Hasher,
    service::{Lifetimes, SessionApp},
    store::{
        login_throttle::{LockSchedule, LoginThrottle},
        sessions::{self, Sessions},
    },
    tokens::TokenKeys,
};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// What tests (and only tests) change about the application.
#[derive(Clone)]
pub struct Options {
    /// "Now" for tokens, sessions, grace windows and the login throttle.
    pub clock: Arc<dyn Clock>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
        }
    }
}

/// A built, bound, not yet serving session-service.
pub struct Application {
    app: GrpcApp,
    routes: Routes,
}

impl Application {
    /// Loads the signing key, then builds as [`Application::build_with_keys`].
    pub async fn build(
        config: Config,
        options: Options,
        shutdown: Shutdown,
    ) -> anyhow::Result<Self> {
        let keys = TokenKeys::from_config(&config.tokens)?;
        Self::build_with_keys(config, keys, options, shutdown).await
    }

    /// Connects to PostgreSQL (waiting for it up to the start-up timeout), runs the
    /// migrations, builds the Redis pool and binds the listener.
    pub async fn build_with_keys(
        config: Config,
        keys: TokenKeys,
        options: Options,
        shutdown: Shutdown,
    ) -> anyhow::Result<Self> {
        let pg = common::postgres::pool(&config.postgres, config.database_url())?;
        common::postgres::migrate(&pg, &MIGRATOR, config.postgres.database_startup_timeout)
            .await
            .context("session-service database")?;
        let redis = RedisPool::new(config.session_redis_url.expose(), &config.process.redis)
            .context("SESSION_REDIS_URL")?;
        let hasher = Hasher::new(
            config.password_hash_concurrency(),
            config.password_hash_queue as usize,
            config.password_hash_nice,
        );
        // The dummy hash answers logins of unknown e-mails; make it before the first one.
        hasher.warm_up().await.context("password hasher warm-up")?;

        let tokens = &config.tokens;
        let store = session_store(&config, redis.clone());
        let throttle = &config.login_throttle;
        let login_throttle = LoginThrottle::new(
            redis.clone(),
            LockSchedule::new(
                throttle.login_throttle_max_failures,
                throttle.login_throttle_window,
            ),
        );
        let revocations = Publisher::new(redis.clone(), tokens.access_token_ttl);
        let session_app = SessionApp {
            pg: pg.clone(),
            sessions: store,
            login_throttle,
            verifier: keys.verifier(Arc::clone(&options.clock)),
            keys: Arc::new(keys),
            clock: options.clock,
            hasher,
            metrics: Arc::new(SessionMetrics::default()),
            lifetimes: Lifetimes {
                access: tokens.access_token_ttl,
                refresh: tokens.refresh_token_ttl,
            },
            revocations,
        };

        let app = GrpcApp::bind(
            &config.process.grpc,
            ([0, 0, 0, 0], DEFAULT_PORT).into(),
            &[proto::SESSION_SERVICE_NAME],
            shutdown,
        )
        .await
        .context("cannot bind GRPC_ADDR")?
        .depends_on(Dependency::postgres(pg.clone()))
        .depends_on(Dependency::redis("sessions redis", redis.clone()));

        session_app.metrics.register(app.metrics());
        session_app.revocations.register(app.metrics());
        SessionMetrics::register_hasher(session_app.hasher.counts(), app.metrics());
        common::postgres::register_metrics(app.metrics(), &pg);
        redis.register_metrics(
            app.metrics(),
            "redis_sessions_reachable",
            "redis_sessions_calls_in_flight",
        );
        let routes = Routes::new(SessionGrpc::new(session_app).into_server());
        Ok(Self { app, routes })
    }

    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.app.local_addr()
    }

    /// Where `/metrics` is served.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.app.metrics_addr()
    }

    /// Serves until the shutdown signal fires and in-flight calls drain.
    pub async fn run(self) -> anyhow::Result<()> {
        self.app.run(self.routes).await?;
        Ok(())
    }
}

/// The session store the settings describe, on the sessions role `redis`: the server's,
/// and the operator commands' ([`crate::admin`]).
pub(crate) fn session_store(config: &Config, redis: RedisPool) -> Sessions {
    let tokens = &config.tokens;
    Sessions::new(
        redis,
        sessions::Lifetimes {
            session_ms: tokens.refresh_token_ttl.as_millis() as u64,
            grace_ms: tokens.refresh_grace.as_millis() as u64,
            grace_max_replays: tokens.refresh_grace_max_replays,
        },
        config.max_sessions_per_user,
    )
}
