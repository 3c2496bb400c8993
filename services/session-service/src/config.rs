//! The typed configuration of session-service, built from the shared blocks.

use std::{path::PathBuf, time::Duration};

use clap::Subcommand;
use common::config::{
    Binary, HealthcheckArgs, PostgresConfig, ProcessConfig, Secret, existing_file,
};

/// Default gRPC port (ARCHITECTURE.md).
pub const DEFAULT_PORT: u16 = 50051;
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/learngreek_sessions";

/// Command line of the `session-service` binary.
pub type Cli = common::config::Cli<Command, Config>;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC server (the default).
    Serve,
    /// Check a running server's grpc.health.v1 status; exit 0 only on SERVING.
    Healthcheck(HealthcheckArgs),
    /// Make the existing user with this e-mail a superuser (admin bootstrap), ending their
    /// sessions. Uses DATABASE_URL and SESSION_REDIS_URL.
    MakeSuperuser(UserArgs),
    /// Take the superuser role from the user with this e-mail, ending their sessions and
    /// tokens at once. Uses DATABASE_URL and SESSION_REDIS_URL.
    RemoveSuperuser(UserArgs),
    /// Deactivate the user with this e-mail (no more logins or refreshes), ending their
    /// sessions and tokens at once. Uses DATABASE_URL and SESSION_REDIS_URL.
    DeactivateUser(UserArgs),
    /// Print a new Ed25519 signing key (PKCS#8 PEM) for JWT_PRIVATE_KEY_FILE.
    GenerateKey,
}

/// Arguments of the subcommands that change one user.
#[derive(Clone, Debug, clap::Args)]
pub struct UserArgs {
    /// E-mail address of the user (compared case-insensitively).
    pub email: String,
}

/// Settings of the server.
#[derive(Clone, Debug, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub process: ProcessConfig,
    #[command(flatten)]
    pub postgres: PostgresConfig,
    /// Redis of the sessions role (must never evict): `redis://host:port/db`.
    #[arg(
        long = "session-redis-url",
        env = "SESSION_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub session_redis_url: Secret<String>,
    #[command(flatten)]
    pub tokens: TokenConfig,
    /// Most password hashes computed at once (argon2id is CPU- and memory-heavy); default: the number of CPUs.
    #[arg(long = "password-hash-concurrency", env = "PASSWORD_HASH_CONCURRENCY",
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub password_hash_concurrency: Option<u32>,
    /// The nice value (0-19) of the hashing threads: how far below the request threads
    /// they run when the CPUs are short, so a login storm cannot starve other requests.
    #[arg(long = "password-hash-nice", env = "PASSWORD_HASH_NICE", default_value_t = 5,
          value_parser = clap::value_parser!(u8).range(0..=19))]
    pub password_hash_nice: u8,
    /// Most password hashes waiting for a hashing thread; a login or registration beyond
    /// them is answered RESOURCE_EXHAUSTED (HTTP 503) at once instead of queueing.
    #[arg(long = "password-hash-queue", env = "PASSWORD_HASH_QUEUE", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub password_hash_queue: u32,
    /// Most live sessions per user; a new login beyond them ends the least recently used one.
    #[arg(long = "max-sessions-per-user", env = "MAX_SESSIONS_PER_USER", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_sessions_per_user: u32,
    #[command(flatten)]
    pub login_throttle: LoginThrottleConfig,
}

impl Binary for Config {
    const NAME: &'static str = "session-service";
    const ABOUT: &'static str = env!("CARGO_PKG_DESCRIPTION");
}

impl Config {
    pub fn database_url(&self) -> &str {
        database_url(&self.postgres)
    }

    /// The password-hash concurrency, defaulting to the number of CPUs.
    pub fn password_hash_concurrency(&self) -> usize {
        self.password_hash_concurrency
            .map(|n| n as usize)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
    }
}

/// `DATABASE_URL`, or the development default.
pub fn database_url(postgres: &PostgresConfig) -> &str {
    postgres.url_or(DEFAULT_DATABASE_URL)
}

/// Signing key, claims and lifetimes of the tokens this service issues.
#[derive(Clone, Debug, clap::Args)]
pub struct TokenConfig {
    /// File with the Ed25519 signing key (PKCS#8 PEM, e.g. from `openssl genpkey -algorithm ed25519`
    /// or `session-service generate-key`). This or JWT_PRIVATE_KEY is required.
    #[arg(long = "jwt-private-key-file", env = "JWT_PRIVATE_KEY_FILE", value_parser = existing_file)]
    pub jwt_private_key_file: Option<PathBuf>,
    /// The Ed25519 signing key itself (PKCS#8 PEM), instead of JWT_PRIVATE_KEY_FILE.
    #[arg(
        long = "jwt-private-key",
        env = "JWT_PRIVATE_KEY",
        hide_env_values = true
    )]
    pub jwt_private_key: Option<Secret<String>>,
    /// JWKS file (`{"keys": [...]}`) of older public keys still published by GetPublicKeys, so tokens
    /// signed before a key rotation keep verifying until they expire; read and checked at start.
    #[arg(long = "jwt-additional-public-keys-file", env = "JWT_ADDITIONAL_PUBLIC_KEYS_FILE",
          value_parser = common::jwks::published_keys)]
    pub jwt_additional_public_keys_file: Option<common::jwks::JwksFile>,
    /// The `iss` of every token.
    #[arg(long = "jwt-issuer", env = "JWT_ISSUER", default_value = common::auth::DEFAULT_ISSUER)]
    pub jwt_issuer: String,
    /// The `aud` of every token.
    #[arg(long = "jwt-audience", env = "JWT_AUDIENCE", default_value = common::auth::DEFAULT_AUDIENCE)]
    pub jwt_audience: String,
    /// Lifetime of an access token, in seconds.
    #[arg(long = "access-token-ttl-seconds", env = "ACCESS_TOKEN_TTL_SECONDS", default_value = "1800",
          value_parser = positive_seconds)]
    pub access_token_ttl: Duration,
    /// Lifetime of a session and its refresh token, in seconds; each refresh renews it (sliding).
    #[arg(long = "refresh-token-ttl-seconds", env = "REFRESH_TOKEN_TTL_SECONDS", default_value = "2592000",
          value_parser = positive_seconds)]
    pub refresh_token_ttl: Duration,
    /// How long, in seconds, a just-rotated refresh token still returns the pair it was rotated into.
    #[arg(long = "refresh-grace-seconds", env = "REFRESH_GRACE_SECONDS", default_value = "10",
          value_parser = common::config::parse_seconds)]
    pub refresh_grace: Duration,
    /// Most replays of a just-rotated refresh token answered inside the grace window.
    #[arg(
        long = "refresh-grace-max-replays",
        env = "REFRESH_GRACE_MAX_REPLAYS",
        default_value_t = 100
    )]
    pub refresh_grace_max_replays: u32,
}

/// The per-account login throttle (HTTP_API.md, "Rate limits"): failed logins of one
/// e-mail address, from any client address, are limited to
/// `LOGIN_THROTTLE_MAX_FAILURES` in any `LOGIN_THROTTLE_WINDOW_SECONDS`.
#[derive(Clone, Debug, clap::Args)]
pub struct LoginThrottleConfig {
    /// Most failed logins of one e-mail address in any window. The first half are free;
    /// each later one locks the address for twice as long as the one before, up to the whole
    /// window from this many on.
    #[arg(long = "login-throttle-max-failures", env = "LOGIN_THROTTLE_MAX_FAILURES", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub login_throttle_max_failures: u32,
    /// The throttle's window, in seconds: also the longest lock (and `Retry-After`), and how
    /// long after its last lock an address's failures are remembered.
    #[arg(long = "login-throttle-window-seconds", env = "LOGIN_THROTTLE_WINDOW_SECONDS",
          default_value = "900", value_parser = throttle_window)]
    pub login_throttle_window: Duration,
}

fn throttle_window(value: &str) -> Result<Duration, String> {
    match positive_seconds(value)? {
        window if window > Duration::from_secs(86_400) => {
            Err("must be at most 86400 (a day)".into())
        }
        window => Ok(window),
    }
}

fn positive_seconds(value: &str) -> Result<Duration, String> {
    match common::config::parse_seconds(value)? {
        duration if duration.is_zero() => Err("must be at least 1 second".into()),
        duration => Ok(duration),
    }
}
