//! PostgreSQL access: every query of deck-service, with runtime-checked `query_as`
//! (no database at build time), split by resource. Each statement goes through
//! [`db::Db`], which counts it; each write records the cache keys it makes stale through
//! [`outbox::Outbox`] in its own transaction, and invalidates them after COMMIT.

pub mod cards;
pub mod db;
pub mod decks;
pub mod outbox;
pub mod progress;
pub mod seed;
pub mod study;

use std::sync::{Arc, atomic::AtomicU64};

use sqlx::PgPool;

use crate::{cache::Cache, domain::UserId};
use db::Db;
use outbox::{Outbox, PendingInvalidation};

/// The database side of deck-service; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Db,
    outbox: Outbox,
}

impl Store {
    pub fn new(pool: PgPool, cache: Cache) -> Self {
        let db = Db::new(pool);
        Self {
            outbox: Outbox::new(db.clone(), cache),
            db,
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Statements run so far on behalf of requests.
    pub fn query_counter(&self) -> Arc<AtomicU64> {
        self.db.statements()
    }

    /// The invalidation owed by reviews (and study initialisation) of `user`.
    pub fn user_invalidation(&self, user: UserId) -> PendingInvalidation {
        self.outbox.owe(self.outbox.user_keys(user))
    }
}

/// `%…%` for ILIKE with the wildcards of `query` escaped.
fn like_pattern(query: &str) -> String {
    let mut pattern = String::with_capacity(query.len() + 2);
    pattern.push('%');
    for c in query.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
        assert_eq!(like_pattern("γεια"), "%γεια%");
    }
}
