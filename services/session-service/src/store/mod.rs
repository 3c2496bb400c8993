//! Storage: accounts in PostgreSQL ([`users`]), and sessions ([`sessions`]) and the
//! per-account login throttle ([`login_throttle`]) in the sessions Redis.

pub mod login_throttle;
pub mod sessions;
pub mod users;
