//! The typed configuration of the gateway, built from the shared blocks.

use std::{net::SocketAddr, time::Duration};

use clap::Subcommand;
use common::balance::{ClientConfig, ServiceUrl};
use common::config::{
    Binary, HealthcheckArgs, ProcessConfig, Secret, TokenVerifyConfig, parse_millis,
};

use crate::client_ip::TrustedProxies;

/// Default HTTP port: the legacy back end's, so an existing front-end proxy needs no change.
pub const DEFAULT_HTTP_PORT: u16 = 8000;
/// Default port of the gateway's own grpc.health.v1 server.
pub const DEFAULT_GRPC_PORT: u16 = 50050;

/// Command line of the `gateway` binary.
pub type Cli = common::config::Cli<Command, Config>;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API and the health server (the default).
    Serve,
    /// Check a running gateway's grpc.health.v1 status; exit 0 only on SERVING.
    Healthcheck(HealthcheckArgs),
}

/// Settings of the gateway.
#[derive(Clone, Debug, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub process: ProcessConfig,
    /// Address the HTTP API binds; port 0 picks a free port.
    #[arg(long = "http-addr", env = "HTTP_ADDR", default_value = "0.0.0.0:8000")]
    pub http_addr: SocketAddr,
    /// session-service gRPC URL: `http://host:port`, or several separated by commas; calls
    /// are balanced over every address (DNS names re-resolved, see GRPC_RESOLVE_INTERVAL_MS).
    #[arg(
        long = "session-service-url",
        env = "SESSION_SERVICE_URL",
        default_value = "http://127.0.0.1:50051",
        value_parser = ServiceUrl::parse
    )]
    pub session_service_url: ServiceUrl,
    /// deck-service gRPC URL, in the same forms as SESSION_SERVICE_URL.
    #[arg(
        long = "deck-service-url",
        env = "DECK_SERVICE_URL",
        default_value = "http://127.0.0.1:50052",
        value_parser = ServiceUrl::parse
    )]
    pub deck_service_url: ServiceUrl,
    #[command(flatten)]
    pub grpc_client: ClientConfig,
    /// Longest time, in milliseconds, one HTTP request may take; the rest of it is sent to
    /// the services as `grpc-timeout`, and an overrun answers 504.
    #[arg(long = "request-timeout-ms", env = "REQUEST_TIMEOUT_MS", default_value = "10000", value_parser = parse_millis)]
    pub request_timeout: Duration,
    /// Comma-separated IPs or CIDRs of reverse proxies whose `X-Forwarded-For` is believed;
    /// from any other peer the header is ignored. Empty: trust nobody.
    #[arg(long = "trusted-proxies", env = "TRUSTED_PROXIES", default_value = "", value_parser = TrustedProxies::parse)]
    pub trusted_proxies: TrustedProxies,
    /// Comma-separated browser origins allowed by CORS (with credentials), e.g.
    /// `https://app.example.com`. Empty: no CORS headers at all.
    #[arg(long = "cors-allowed-origins", env = "CORS_ALLOWED_ORIGINS",
          default_value = "http://localhost:5173,http://localhost:3000", value_parser = parse_origins)]
    pub cors_allowed_origins: Origins,
    /// Calls per minute per client IP on register, login, google and refresh (also the burst).
    #[arg(long = "rate-limit-auth-per-minute", env = "RATE_LIMIT_AUTH_PER_MINUTE", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_limit_auth_per_minute: u32,
    /// Calls per minute per user and endpoint on every other authenticated route (also the burst).
    #[arg(long = "rate-limit-api-per-minute", env = "RATE_LIMIT_API_PER_MINUTE", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_limit_api_per_minute: u32,
    /// Within how long, in milliseconds (10-1000), a call admitted by one gateway counts
    /// on every other: each reconciles its local API limits with the rate-limit Redis twice
    /// per interval, so across replicas the API limit may be exceeded by what the others
    /// admit in one interval (docs/gateway.md, "Rate limits").
    #[arg(long = "rate-limit-sync-interval-ms", env = "RATE_LIMIT_SYNC_INTERVAL_MS",
          default_value = "100", value_parser = sync_interval)]
    pub rate_limit_sync_interval: Duration,
    /// Most (user, endpoint) API limit buckets kept in memory (the least recently used
    /// beyond it are dropped, and rebuilt from Redis at their next use); also bounds the
    /// buckets waiting for reconciliation.
    #[arg(long = "rate-limit-api-max-buckets", env = "RATE_LIMIT_API_MAX_BUCKETS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub rate_limit_api_max_buckets: u64,
    /// Redis of the rate-limit role: `redis://host:port/db`.
    #[arg(
        long = "rate-limit-redis-url",
        env = "RATE_LIMIT_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub rate_limit_redis_url: Secret<String>,
    #[command(flatten)]
    pub connections: ConnectionLimits,
    #[command(flatten)]
    pub revocation: common::revocation::RevocationConfig,
    #[command(flatten)]
    pub token: TokenVerifyConfig,
}

impl Binary for Config {
    const NAME: &'static str = "gateway";
    const ABOUT: &'static str = env!("CARGO_PKG_DESCRIPTION");
}

/// How long the HTTP listener waits for slow or silent clients, and how many it serves
/// at once (HTTP_API.md, "Connections"; enforced by [`common::http`]).
#[derive(Clone, Debug, clap::Args)]
pub struct ConnectionLimits {
    /// Longest time, in milliseconds, a client may take to send a request's complete
    /// headers, counted from accepting the connection or from the first byte of a later
    /// request on it; then the connection is closed.
    #[arg(long = "http-header-read-timeout-ms", env = "HTTP_HEADER_READ_TIMEOUT_MS",
          default_value = "10000", value_parser = positive_millis)]
    pub header_read_timeout: Duration,
    /// Longest time, in milliseconds, a request body may take to arrive after its headers;
    /// a body still incomplete then is answered 408 and the connection is closed.
    #[arg(long = "http-body-read-timeout-ms", env = "HTTP_BODY_READ_TIMEOUT_MS",
          default_value = "10000", value_parser = positive_millis)]
    pub body_read_timeout: Duration,
    /// How long, in milliseconds, a keep-alive connection may stay open with no request
    /// in progress before the gateway closes it.
    #[arg(long = "http-idle-timeout-ms", env = "HTTP_IDLE_TIMEOUT_MS",
          default_value = "60000", value_parser = positive_millis)]
    pub idle_timeout: Duration,
    /// Most client connections served at once; a connection beyond it waits in the
    /// listen backlog, unanswered, until another one closes.
    #[arg(long = "http-max-connections", env = "HTTP_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
}

impl ConnectionLimits {
    /// These limits as the HTTP server takes them.
    pub fn limits(&self) -> common::http::Limits {
        common::http::Limits {
            header_read_timeout: self.header_read_timeout,
            body_read_timeout: self.body_read_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
        }
    }
}

/// A duration of at least one millisecond (clap value parser): a zero timeout would
/// close every connection at once.
fn positive_millis(value: &str) -> Result<Duration, String> {
    match parse_millis(value)? {
        Duration::ZERO => Err("must be at least 1 millisecond".into()),
        duration => Ok(duration),
    }
}

/// The reconciliation interval: at least 10 ms (more often would cost Redis a call per
/// bucket per tick for little), at most 1 s (the bound across replicas grows with it).
fn sync_interval(value: &str) -> Result<Duration, String> {
    let interval = parse_millis(value)?;
    if (Duration::from_millis(10)..=Duration::from_secs(1)).contains(&interval) {
        Ok(interval)
    } else {
        Err("must be between 10 and 1000 milliseconds".into())
    }
}

/// Allowed CORS origins, each a valid header value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origins(pub Vec<http::HeaderValue>);

fn parse_origins(value: &str) -> Result<Origins, String> {
    let mut origins = Vec::new();
    for origin in value
        .split(',')
        .map(str::trim)
        .filter(|origin| !origin.is_empty())
    {
        if origin == "*" {
            return Err("'*' cannot be combined with credentials; list the origins".into());
        }
        if !(origin.starts_with("http://") || origin.starts_with("https://"))
            || origin.ends_with('/')
        {
            return Err(format!(
                "'{origin}' is not an origin like https://app.example.com"
            ));
        }
        origins.push(
            http::HeaderValue::from_str(origin)
                .map_err(|_| format!("'{origin}' is not a valid origin"))?,
        );
    }
    Ok(Origins(origins))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sync_interval_is_between_10_ms_and_1_s() {
        assert_eq!(sync_interval("100"), Ok(Duration::from_millis(100)));
        assert_eq!(sync_interval("10"), Ok(Duration::from_millis(10)));
        assert_eq!(sync_interval("1000"), Ok(Duration::from_secs(1)));
        assert!(sync_interval("9").is_err());
        assert!(sync_interval("1001").is_err());
        assert!(sync_interval("soon").is_err());
    }

    #[test]
    fn origins_are_a_comma_separated_list_without_wildcards() {
        assert_eq!(parse_origins("").unwrap().0.len(), 0);
        assert_eq!(
            parse_origins("https://a.example, http://localhost:5173")
                .unwrap()
                .0
                .len(),
            2
        );
        assert!(parse_origins("*").is_err());
        assert!(parse_origins("a.example").is_err());
        assert!(parse_origins("https://a.example/").is_err());
    }
}
