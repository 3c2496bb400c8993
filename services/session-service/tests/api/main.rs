//! session-service through real gRPC, on a fresh PostgreSQL database and a Redis key
//! prefix of each test's own (one test binary, so it links once).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

mod accounts;
mod helpers;
mod load_shedding;
mod login_throttle;
mod rejected_tokens;
mod revocations;
mod rotation;
mod round_trips;
mod session_cap;
mod sessions;
