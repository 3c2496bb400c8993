//! Plumbing shared by every Learn Greek Easy binary, and no business rules.
//!
//! - [`auth`]: token claims, the one token validation (pinned algorithm, issuer,
//!   audience, type, time claims against a [`clock::Clock`]) and the local verifier (keys
//!   published by session-service, fetched at start and on an unknown `kid` by one
//!   shared task).
//! - [`clock`]: where "now" comes from (the system clock, or a clock tests move) and the
//!   unix-time conversions.
//! - [`config`]: typed configuration blocks (each setting an env var and a `--flag`),
//!   among them [`config::ProcessConfig`], the settings every process has; the one
//!   command line shape of every binary ([`config::Cli`]); and [`config::parse`], which
//!   exits 64 with one line naming a bad value.
//! - [`telemetry`]: `tracing` setup, pretty or JSON.
//! - [`postgres`] and [`redis`]: a PostgreSQL pool and multiplexed Redis connections,
//!   with explicit connect / response / acquire timeouts.
//! - [`pubsub`]: Redis pub/sub subscriptions owned by a background task, with a
//!   subscription epoch that tells users when they may trust pushed state.
//! - [`health`]: the grpc.health.v1 names every process serves and the background
//!   readiness probe that keeps them in step with the process's dependencies.
//! - [`grpc`]: [`grpc::serve_grpc`], the one function that assembles every gRPC server
//!   (health, reflection, tracing, request ids, graceful shutdown), and the
//!   `healthcheck` client used by container healthchecks.
//! - [`balance`]: the client side of every gRPC call: a channel that spreads calls over
//!   every address of a service URL (a comma list or DNS names, re-resolved) and retries
//!   idempotent reads once on another endpoint.
//! - [`metrics`]: the Prometheus registry of a process, `/metrics`, per-RPC series
//!   with bounded labels, and the counters a component keeps as atomics.
//! - [`http`]: hardened HTTP serving (header, body and idle deadlines, a connection
//!   cap, a bounded drain): the gateway's API port and every `/metrics` port.
//! - [`breaker`]: the one circuit breaker, in front of every optional Redis.
//! - [`jwks`]: JWKS files (`JWT_PUBLIC_KEYS_FILE` and the like), checked at start, and
//!   the verifier of a process that only checks tokens.
//! - [`status`]: the structured half of gRPC errors (`google.rpc` BadRequest, ErrorInfo,
//!   RetryInfo): built by the services, read by the gateway; never parsed from messages.
//! - [`revocation`]: revoked sessions and users, pushed by session-service, held in
//!   memory and checked against every verified access token.
//! - [`shutdown`]: SIGTERM / Ctrl-C as a signal every server and task can wait on.
//! - [`sync`]: std locks taken whether poisoned or not (the state they guard stays valid).

pub mod auth;
pub mod balance;
pub mod breaker;
pub mod clock;
pub mod config;
pub mod grpc;
pub mod health;
pub mod http;
pub mod jwks;
pub mod metrics;
pub mod postgres;
pub mod pubsub;
pub mod redis;
pub mod revocation;
pub mod shutdown;
pub mod status;
pub mod sync;
pub mod telemetry;
