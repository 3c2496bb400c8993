//! session-service: accounts, login, and refresh-token sessions kept in Redis, with
//! rotation, reuse detection, logout and logout-everywhere; publishes the public keys
//! that verify access tokens. `main.rs` only parses the command line and calls in here.
//!
//! - [`config`]: the command line and environment;
//! - [`domain`]: request values parsed into valid types;
//! - [`tokens`]: signing and verifying JWTs; [`password`]: argon2id / legacy bcrypt;
//! - [`store`]: PostgreSQL accounts and Redis sessions (Lua scripts);
//! - [`service`]: the use cases; [`grpc`]: the thin gRPC adapter; [`error`]: the status mapping;
//! - [`startup`]: wiring; [`admin`]: operator subcommands; [`metrics`]: the service's own series.

pub mod admin;
pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod metrics;
pub mod password;
pub mod service;
pub mod startup;
pub mod store;
pub mod tokens;
