//! Configuration blocks shared by the binaries.
//!
//! Every field reads an environment variable and a `--flag` of the same name, is
//! documented (the doc comment becomes `--help`) and has a typed parser. A binary
//! composes its own `Config` from these blocks with `#[command(flatten)]` and calls
//! [`parse`], so a bad value stops the process at start with one line naming the
//! variable and exit code [`EXIT_CONFIG`].

use std::{fmt, net::SocketAddr, path::PathBuf, process, time::Duration};

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum, error::ErrorKind};

/// Exit code for a bad configuration value (`EX_CONFIG` would be 78; the design
/// fixes 64, `EX_USAGE`, which is what operators' tooling expects).
pub const EXIT_CONFIG: i32 = 64;

/// The command line of every binary: one of its subcommands (`S`; none means `serve`), or
/// the server's settings (`C`), which also name the binary.
#[derive(Debug, Args)]
pub struct Cli<S: Subcommand, C: Binary> {
    #[command(subcommand)]
    pub command: Option<S>,
    #[command(flatten)]
    pub config: C,
}

/// What a binary's settings say about the binary itself, for `--help` and `--version`.
pub trait Binary: Args {
    /// The binary's name, e.g. `deck-service`.
    const NAME: &'static str;
    /// The first line of `--help`: the package's description.
    const ABOUT: &'static str;
}

impl<S: Subcommand, C: Binary> Cli<S, C> {
    /// Names the command after the binary, over what the derive set (it would take this
    /// type's doc comment for `about`). The version is the workspace's, which every binary
    /// shares.
    fn named(command: clap::Command) -> clap::Command {
        command
            .name(C::NAME)
            .version(env!("CARGO_PKG_VERSION"))
            .about(C::ABOUT)
            .long_about(None)
            .args_conflicts_with_subcommands(true)
    }
}

impl<S: Subcommand, C: Binary> CommandFactory for Cli<S, C> {
    fn command() -> clap::Command {
        Self::named(Self::augment_args(clap::Command::new(C::NAME)))
    }

    fn command_for_update() -> clap::Command {
        Self::named(Self::augment_args_for_update(clap::Command::new(C::NAME)))
    }
}

impl<S: Subcommand, C: Binary> Parser for Cli<S, C> {}

/// Parses the command line and environment into `T`, or exits.
///
/// `--help` and `--version` print and exit 0; anything else that fails prints one
/// line (`invalid configuration: …` naming the variable) and exits [`EXIT_CONFIG`].
pub fn parse<T: Parser>() -> T {
    match T::try_parse() {
        Ok(config) => config,
        Err(error)
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) =>
        {
            // Printing help can only fail on a closed stdout; exit 0 either way.
            let _ = error.print();
            process::exit(0);
        }
        Err(error) => {
            let rendered = error.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid configuration");
            let first = first.trim_start_matches("error: ");
            match env_name_of_error::<T>(&error) {
                Some(variable) => exit_config_error(format_args!("{variable}: {first}")),
                None => exit_config_error(first),
            }
        }
    }
}

/// The environment variable behind the argument an error is about, so the one line
/// printed names what an operator actually set.
fn env_name_of_error<T: Parser>(error: &clap::Error) -> Option<String> {
    let clap::error::ContextValue::String(invalid) =
        error.get(clap::error::ContextKind::InvalidArg)?
    else {
        return None;
    };
    let flag = invalid.split_whitespace().next()?.trim_start_matches("--");
    fn find(command: &clap::Command, flag: &str) -> Option<String> {
        command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(flag))
            .and_then(|arg| arg.get_env())
            .map(|env| env.to_string_lossy().into_owned())
            .or_else(|| command.get_subcommands().find_map(|sub| find(sub, flag)))
    }
    find(&T::command(), flag)
}

/// Prints `invalid configuration: {message}` and exits [`EXIT_CONFIG`]. For checks that
/// a parser cannot express (say, a key file that does not exist).
pub fn exit_config_error(message: impl fmt::Display) -> ! {
    eprintln!("invalid configuration: {message}");
    process::exit(EXIT_CONFIG)
}

/// A value that must never reach a log line: `Debug` and `Display` print `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

/// Parses a whole number of milliseconds (clap value parser).
pub fn parse_millis(value: &str) -> Result<Duration, String> {
    value
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| format!("'{value}' is not a whole number of milliseconds"))
}

/// Parses a whole number of seconds (clap value parser).
pub fn parse_seconds(value: &str) -> Result<Duration, String> {
    value
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| format!("'{value}' is not a whole number of seconds"))
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, for development.
    Pretty,
    /// One JSON object per line, for production log pipelines.
    Json,
}

/// Logging settings. The filter itself comes from `RUST_LOG` (default `info`).
#[derive(Clone, Debug, Args)]
pub struct LogConfig {
    /// Log format: `pretty` or `json`.
    #[arg(
        long = "log-format",
        env = "LOG_FORMAT",
        value_enum,
        default_value = "pretty"
    )]
    pub log_format: LogFormat,
}

/// PostgreSQL connection pool settings.
#[derive(Clone, Debug, Args)]
pub struct PostgresConfig {
    /// PostgreSQL URL, e.g. `postgres://user:password@host:5432/database`.
    #[arg(long = "database-url", env = "DATABASE_URL")]
    pub database_url: Option<Secret<String>>,
    /// Most connections the pool opens.
    #[arg(long = "database-max-connections", env = "DATABASE_MAX_CONNECTIONS", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_max_connections: u32,
    /// Longest wait, in milliseconds, to get a connection (opening one included).
    #[arg(long = "database-acquire-timeout-ms", env = "DATABASE_ACQUIRE_TIMEOUT_MS",
          default_value = "2000", value_parser = parse_millis)]
    pub database_acquire_timeout: Duration,
    /// Server-side limit, in milliseconds, on any one statement.
    #[arg(long = "database-statement-timeout-ms", env = "DATABASE_STATEMENT_TIMEOUT_MS",
          default_value = "5000", value_parser = parse_millis)]
    pub database_statement_timeout: Duration,
    /// How long, in seconds, start-up waits for PostgreSQL before giving up.
    #[arg(long = "database-startup-timeout", env = "DATABASE_STARTUP_TIMEOUT",
          default_value = "30", value_parser = parse_seconds)]
    pub database_startup_timeout: Duration,
}

impl PostgresConfig {
    /// `DATABASE_URL`, or the binary's development default.
    pub fn url_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.database_url
            .as_ref()
            .map_or(default, |url| url.expose())
    }
}

/// Timeouts and namespace shared by every Redis role a binary uses.
///
/// Each role is one multiplexed connection shared by every task (or one per node of a
/// cluster), so there is no pool to size: the former `REDIS_POOL_SIZE` and
/// `REDIS_POOL_WAIT_TIMEOUT_MS` are gone (an environment that still sets them is ignored).
/// One call waits at most the connect timeout plus the response timeout in all.
#[derive(Clone, Debug, Args)]
pub struct RedisConfig {
    /// Longest wait, in milliseconds, to open a Redis connection (each attempt of a reconnection).
    #[arg(long = "redis-connect-timeout-ms", env = "REDIS_CONNECT_TIMEOUT_MS",
          default_value = "500", value_parser = parse_millis)]
    pub redis_connect_timeout: Duration,
    /// Longest wait, in milliseconds, for one Redis command's answer.
    #[arg(long = "redis-response-timeout-ms", env = "REDIS_RESPONSE_TIMEOUT_MS",
          default_value = "250", value_parser = parse_millis)]
    pub redis_response_timeout: Duration,
    /// Prefix put before every key (no braces), so several deployments or test runs can share one Redis.
    #[arg(long = "redis-key-prefix", env = "REDIS_KEY_PREFIX", default_value = "",
          value_parser = parse_key_prefix)]
    pub redis_key_prefix: String,
}

fn parse_key_prefix(value: &str) -> Result<String, String> {
    if value.len() > 64 || value.contains(['{', '}']) || value.chars().any(char::is_whitespace) {
        return Err("must be at most 64 characters, without braces or spaces".into());
    }
    Ok(value.to_owned())
}

/// Where a gRPC server listens and how it behaves around start and stop.
#[derive(Clone, Debug, Args)]
pub struct GrpcServerConfig {
    /// Address the gRPC server binds, e.g. `0.0.0.0:50051`; port 0 picks a free port.
    #[arg(long = "grpc-addr", env = "GRPC_ADDR")]
    pub grpc_addr: Option<SocketAddr>,
    /// Address of the Prometheus `/metrics` endpoint; defaults to the gRPC host with
    /// the gRPC port + 1000 (e.g. 51051 for 50051), or a free port when GRPC_ADDR's is 0.
    #[arg(long = "metrics-addr", env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// How often, in milliseconds, readiness re-checks the dependencies.
    #[arg(long = "readiness-interval-ms", env = "READINESS_INTERVAL_MS",
          default_value = "1000", value_parser = parse_millis)]
    pub readiness_interval: Duration,
    /// Longest time, in milliseconds, graceful shutdown waits for in-flight calls.
    #[arg(long = "shutdown-timeout-ms", env = "SHUTDOWN_TIMEOUT_MS",
          default_value = "15000", value_parser = parse_millis)]
    pub shutdown_timeout: Duration,
}

/// The settings every process has, whatever else it does: its gRPC (health) server and
/// metrics endpoint, its Redis timeouts and key prefix, its log format.
#[derive(Clone, Debug, Args)]
pub struct ProcessConfig {
    #[command(flatten)]
    pub grpc: GrpcServerConfig,
    #[command(flatten)]
    pub redis: RedisConfig,
    #[command(flatten)]
    pub log: LogConfig,
}

/// Arguments of the `healthcheck` subcommand every binary has.
#[derive(Clone, Debug, Args)]
pub struct HealthcheckArgs {
    /// Address of the gRPC server to check; defaults to the binary's own port on 127.0.0.1.
    #[arg(long)]
    pub addr: Option<String>,
    /// Health service name to check.
    #[arg(long, default_value = "readiness")]
    pub service: String,
}

/// A file path that must exist (clap value parser).
pub fn existing_file(value: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(value);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("'{value}' is not a readable file"))
    }
}

/// How a process verifies access tokens (gateway, deck-service).
#[derive(Clone, Debug, Args)]
pub struct TokenVerifyConfig {
    /// The `iss` every token must carry.
    #[arg(long = "jwt-issuer", env = "JWT_ISSUER", default_value = crate::auth::DEFAULT_ISSUER)]
    pub jwt_issuer: String,
    /// The `aud` every token must carry.
    #[arg(long = "jwt-audience", env = "JWT_AUDIENCE", default_value = crate::auth::DEFAULT_AUDIENCE)]
    pub jwt_audience: String,
    /// A JWKS file (`{"keys": [...]}`, EdDSA or ES256 signature keys) to verify with
    /// instead of asking session-service; read and checked at start.
    #[arg(long = "jwt-public-keys-file", env = "JWT_PUBLIC_KEYS_FILE",
          value_parser = crate::jwks::verification_keys)]
    pub jwt_public_keys_file: Option<crate::jwks::JwksFile>,
}
