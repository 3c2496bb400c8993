//! deck-service: decks, cards, the spaced-repetition study queue and reviews (SM-2)
//! over PostgreSQL, with a Redis cache-aside layer. `main.rs` only parses the command
//! line and calls in here.

pub mod cache;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod seed;
pub mod sm2;
pub mod startup;
pub mod store;
pub mod views;
