//! The typed configuration of deck-service, built from the shared blocks.

use std::time::Duration;

use clap::Subcommand;
use common::config::{
    Binary, HealthcheckArgs, PostgresConfig, ProcessConfig, Secret, TokenVerifyConfig,
    parse_millis, parse_seconds,
};

/// Default gRPC port (ARCHITECTURE.md).
pub const DEFAULT_PORT: u16 = 50052;
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/learngreek_decks";

/// Command line of the `deck-service` binary.
pub type Cli = common::config::Cli<Command, Config>;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC server (the default).
    Serve,
    /// Check a running server's grpc.health.v1 status; exit 0 only on SERVING.
    Healthcheck(HealthcheckArgs),
    /// Load the built-in Greek decks (idempotent: loading twice changes nothing), then exit.
    Seed,
}

/// Settings of the server.
#[derive(Clone, Debug, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub process: ProcessConfig,
    #[command(flatten)]
    pub postgres: PostgresConfig,
    /// Redis of the cache role (may evict; optional for reads): `redis://host:port/db`.
    #[arg(
        long = "cache-redis-url",
        env = "CACHE_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub cache_redis_url: Secret<String>,
    #[command(flatten)]
    pub revocation: common::revocation::RevocationConfig,
    #[command(flatten)]
    pub cache: CacheConfig,
    /// session-service gRPC URL, for the public keys that verify access tokens
    /// (unused when JWT_PUBLIC_KEYS_FILE is set): `http://host:port`, or several separated
    /// by commas; calls are balanced over every address (DNS names re-resolved).
    #[arg(
        long = "session-service-url",
        env = "SESSION_SERVICE_URL",
        default_value = "http://127.0.0.1:50051",
        value_parser = common::balance::ServiceUrl::parse
    )]
    pub session_service_url: common::balance::ServiceUrl,
    #[command(flatten)]
    pub grpc_client: common::balance::ClientConfig,
    #[command(flatten)]
    pub tokens: TokenVerifyConfig,
}

impl Binary for Config {
    const NAME: &'static str = "deck-service";
    const ABOUT: &'static str = env!("CARGO_PKG_DESCRIPTION");
}

/// Behaviour of the read cache.
#[derive(Clone, Debug, clap::Args)]
pub struct CacheConfig {
    /// Deadline, in milliseconds, of one cache Redis call (checkout included); past it
    /// the read goes to PostgreSQL.
    #[arg(long = "cache-redis-timeout-ms", env = "CACHE_REDIS_TIMEOUT_MS", default_value = "50",
          value_parser = parse_millis)]
    pub cache_redis_timeout: Duration,
    /// Consecutive cache Redis failures that open the circuit breaker.
    #[arg(long = "cache-breaker-threshold", env = "CACHE_BREAKER_THRESHOLD", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub cache_breaker_threshold: u32,
    /// How long, in milliseconds, the open breaker skips Redis before one probe call.
    #[arg(long = "cache-breaker-cooldown-ms", env = "CACHE_BREAKER_COOLDOWN_MS", default_value = "1000",
          value_parser = parse_millis)]
    pub cache_breaker_cooldown: Duration,
    /// Lifetime, in milliseconds, of a cached "not found" for an unknown deck id.
    #[arg(long = "cache-negative-ttl-ms", env = "CACHE_NEGATIVE_TTL_MS", default_value = "5000",
          value_parser = parse_millis)]
    pub cache_negative_ttl: Duration,
    /// Base TTL, in seconds, of `cache:deck:{…}` (±10 % jitter).
    #[arg(long = "cache-deck-ttl", env = "CACHE_DECK_TTL", default_value = "600", value_parser = parse_seconds)]
    pub cache_deck_ttl: Duration,
    /// Base TTL, in seconds, of `cache:cards:{…}`.
    #[arg(long = "cache-cards-ttl", env = "CACHE_CARDS_TTL", default_value = "300", value_parser = parse_seconds)]
    pub cache_cards_ttl: Duration,
    /// Base TTL, in seconds, of `cache:user:{…}:decks`.
    #[arg(long = "cache-user-decks-ttl", env = "CACHE_USER_DECKS_TTL", default_value = "60",
          value_parser = parse_seconds)]
    pub cache_user_decks_ttl: Duration,
    /// Base TTL, in seconds, of `cache:due_cards:{…}` (also never past the next UTC midnight).
    #[arg(long = "cache-due-cards-ttl", env = "CACHE_DUE_CARDS_TTL", default_value = "300",
          value_parser = parse_seconds)]
    pub cache_due_cards_ttl: Duration,
    /// Cache misses that may load at once as shared loads, each in a task of its own
    /// (the bound of the single-flight map); past it a miss loads unshared in its
    /// caller, still bounded by the PostgreSQL pool.
    #[arg(long = "cache-max-inflight-loads", env = "CACHE_MAX_INFLIGHT_LOADS", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub cache_max_inflight_loads: u32,
    /// How often, in milliseconds, the background task drains the cache-invalidation outbox.
    #[arg(long = "cache-outbox-interval-ms", env = "CACHE_OUTBOX_INTERVAL_MS", default_value = "500",
          value_parser = parse_millis)]
    pub cache_outbox_interval: Duration,
    /// Lifetime, in milliseconds, of an entry of the in-process L1 cache (1 to 2000): the
    /// hard bound on its staleness, should an invalidation push go missing unnoticed.
    #[arg(long = "cache-l1-ttl-ms", env = "CACHE_L1_TTL_MS", default_value = "1000",
          value_parser = parse_l1_ttl)]
    pub cache_l1_ttl: Duration,
    /// Bytes the in-process L1 cache may hold (keys, values and bookkeeping); 0 turns L1 off.
    #[arg(long = "cache-l1-max-bytes", env = "CACHE_L1_MAX_BYTES", default_value_t = 64 << 20,
          value_parser = clap::value_parser!(u64).range(0..=(16_u64 << 30)))]
    pub cache_l1_max_bytes: u64,
}

/// The L1 TTL: milliseconds, at least 1 and at most 2000 (ARCHITECTURE.md: ≤ 2 s).
fn parse_l1_ttl(value: &str) -> Result<Duration, String> {
    let ttl = parse_millis(value)?;
    if ttl.is_zero() || ttl > Duration::from_secs(2) {
        return Err("must be between 1 and 2000 milliseconds".into());
    }
    Ok(ttl)
}

impl Config {
    pub fn database_url(&self) -> &str {
        self.postgres.url_or(DEFAULT_DATABASE_URL)
    }
}
