//! Builds the gateway: the HTTP listener, the grpc.health.v1 server whose readiness
//! follows both services, and the shared shutdown. Both listeners are bound in
//! [`Application::build`], so tests pass port 0 and read the real ports back. The
//! process metrics (the gateway's HTTP series included) are served by the gRPC
//! skeleton on `METRICS_ADDR` only, never on the API port.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use axum::Router;
use common::{
    balance::BalancedChannel, grpc::GrpcApp, health::Dependency, redis::RedisPool,
    shutdown::Shutdown,
};
use proto::{
    deck::v1::deck_service_client::DeckServiceClient,
    session::v1::session_service_client::SessionServiceClient,
};
use tokio::{net::TcpListener, time::Instant};
use tonic::service::Routes;

use crate::{
    config::{Config, DEFAULT_GRPC_PORT},
    metrics::HttpMetrics,
    rate_limit::{
        RateLimiter,
        api::{ApiLimiter, Reconciler},
    },
    routes::health::CHECK_TIMEOUT,
    state::{AppState, ServiceHealth},
};

/// A built, bound, not yet serving gateway.
pub struct Application {
    grpc: GrpcApp,
    http: TcpListener,
    router: Router,
    connections: common::http::Limits,
    shutdown_timeout: Duration,
    /// Reconciles the API limits with Redis until the HTTP server has drained.
    reconciler: Reconciler,
}

impl Application {
    pub async fn build(config: Config, shutdown: Shutdown) -> anyhow::Result<Self> {
        let http = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("cannot bind HTTP_ADDR {}", config.http_addr))?;
        // Balanced over every address of each URL, and connected on first use, so the
        // gateway starts (and reports not ready) while a service is still down.
        let session_channel =
            BalancedChannel::new(&config.session_service_url, &config.grpc_client, &shutdown);
        let deck_channel =
            BalancedChannel::new(&config.deck_service_url, &config.grpc_client, &shutdown);
        let session_health = ServiceHealth::new(session_channel.clone());
        let deck_health = ServiceHealth::new(deck_channel.clone());

        let verifier = common::jwks::access_verifier(&config.token, || session_channel.clone());
        let static_jwks =
            (config.token.jwt_public_keys_file.as_ref()).map(|file| Arc::new(file.keys().to_vec()));
        let grpc = GrpcApp::bind(
            &config.process.grpc,
            ([0, 0, 0, 0], DEFAULT_GRPC_PORT).into(),
            &[],
            shutdown,
        )
        .await
        .context("cannot bind GRPC_ADDR")?
        .depends_on(Dependency::new("session-service", {
            let health = session_health.clone();
            move || health.clone().require_ready(CHECK_TIMEOUT)
        }))
        .depends_on(Dependency::new("deck-service", {
            let health = deck_health.clone();
            move || health.clone().require_ready(CHECK_TIMEOUT)
        }));

        // Revoked tokens are refused from the first request on: until the push channel
        // and its snapshot are in, each check asks the sessions Redis.
        common::revocation::enforce(
            &verifier,
            &config.revocation,
            &config.process.redis,
            grpc.metrics(),
            &common::pubsub::PubsubMetrics::register(grpc.metrics()),
            grpc.shutdown(),
        )
        .map_err(|error| anyhow::anyhow!(error))?;
        let metrics = HttpMetrics::register(grpc.metrics());
        let pool = RedisPool::new(config.rate_limit_redis_url.expose(), &config.process.redis)
            .context("RATE_LIMIT_REDIS_URL")?;
        pool.register_metrics(
            grpc.metrics(),
            "redis_rate_limit_reachable",
            "redis_rate_limit_calls_in_flight",
        );
        let api_limiter = ApiLimiter::new(
            pool.prefix(),
            config.rate_limit_api_per_minute,
            config.rate_limit_api_max_buckets,
            metrics.rate_limit_sync.clone(),
        );
        crate::metrics::register_api_limiter(grpc.metrics(), &api_limiter);
        let reconciler =
            api_limiter.spawn_reconciler(pool.clone(), config.rate_limit_sync_interval);
        let limiter = RateLimiter::new(
            pool,
            config.rate_limit_auth_per_minute,
            metrics.rate_limit_fail_open.clone(),
        );
        grpc.metrics().register_gauge_fn(
            "gateway_rate_limit_breaker_state",
            "Rate-limit Redis circuit breaker: 0 closed, 1 open (failing open), 2 half-open.",
            {
                let limiter = limiter.clone();
                move || limiter.breaker_state() as i64
            },
        );
        let state = Arc::new(AppState {
            session: SessionServiceClient::new(session_channel),
            deck: DeckServiceClient::new(deck_channel),
            session_health,
            deck_health,
            verifier,
            static_jwks,
            limiter,
            api_limiter,
            trusted_proxies: Arc::new(config.trusted_proxies.clone()),
            request_timeout: config.request_timeout,
            started: Instant::now(),
            metrics,
        });
        let router = crate::routes::router(state, &config.cors_allowed_origins);
        Ok(Self {
            grpc,
            http,
            router,
            connections: config.connections.limits(),
            shutdown_timeout: config.process.grpc.shutdown_timeout,
            reconciler,
        })
    }

    #[allow(
        clippy::expect_used,
        reason = "a listener bound at start has an address; getsockname cannot fail on it"
    )]
    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr()
    }

    /// Where `/metrics` is served (`METRICS_ADDR`).
    pub fn metrics_addr(&self) -> SocketAddr {
        self.grpc.metrics_addr()
    }

    /// Serves HTTP and gRPC health until the shutdown signal fires and both drain
    /// (each for at most `SHUTDOWN_TIMEOUT_MS`), then reports the API calls admitted
    /// since the last reconciliation (within as long again).
    pub async fn run(self) -> anyhow::Result<()> {
        let http = common::http::serve(
            self.http,
            self.router,
            self.connections,
            self.grpc.shutdown().clone(),
            self.shutdown_timeout,
        );
        let ((), grpc) = tokio::join!(http, self.grpc.run(Routes::default()));
        self.reconciler.stop(self.shutdown_timeout).await;
        grpc.context("gRPC health server")?;
        Ok(())
    }
}
