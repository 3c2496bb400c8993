//! Storage: accounts in PostgreSQL ([`users`]) and sessions in the sessions Redis ([`sessions`]).

pub mod sessions;
pub mod users;
