//! deck-service: decks, cards, the spaced-repetition study queue and reviews (SM-2)
//! over PostgreSQL, with a Redis cache-aside layer. `main.rs` only parses the command
//! line and calls in here.
//!
//! A request goes [`grpc`] (decode, call, answer) → [`service`] (the use case) →
//! [`cache::views`] and [`store`] (SQL), computing with [`domain`] (SM-2 and the
//! progress rules). docs/deck-service.md, "Where things are", has the map.

pub mod cache;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod seed;
pub mod service;
pub mod startup;
pub mod store;
