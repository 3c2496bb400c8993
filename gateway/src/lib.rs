//! gateway: the HTTP/JSON API of HTTP_API.md over the session and deck services'
//! gRPC APIs. `main.rs` only parses the command line and calls in here.
//!
//! - [`routes`]: the router, one module per resource, and the open routes (health,
//!   JWKS, OpenAPI);
//! - [`extract`]: parsing at the edge (JSON, query, path ids) into typed values, and
//!   [`extract::Ctx`], which builds each gRPC request (token, request id, deadline);
//! - [`middleware`]: request ids and problem rendering, authentication, rate limits;
//! - [`error`]: the one status → HTTP table and the RFC 9457 problem body;
//! - [`rate_limit`]: GCRA, exact in Redis for the auth routes (fail-open), local and
//!   reconciled in the background for the others; [`client_ip`]: trusted proxies;
//! - [`wire`]: the HTTP contract as types (every request and response body, every query),
//!   built from and into the proto messages; [`openapi`]: the OpenAPI document generated
//!   from them and the router; [`metrics`]: the gateway's Prometheus series;
//! - [`caching`]: ETags and 304s, `Cache-Control`, `Vary` (compression is tower-http's).

pub mod caching;
pub mod client_ip;
pub mod config;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod rate_limit;
pub mod routes;
pub mod startup;
pub mod state;
pub mod wire;
