//! Cache key builders (ARCHITECTURE.md, "Read cache"). The braces are Redis Cluster
//! hash tags: every key of one deck, and every key of one user, lands in one slot, and
//! so does each key's generation counter, so the Lua scripts touch a single slot.

use crate::domain::{DeckId, UserId};

/// Builds the keys of one deployment (its `REDIS_KEY_PREFIX` first).
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// One deck with its card count.
    pub fn deck(&self, deck: DeckId) -> String {
        format!("{}cache:deck:{{{}}}", self.prefix, deck)
    }

    /// The cards of a deck, in order.
    pub fn cards(&self, deck: DeckId) -> String {
        format!("{}cache:cards:{{{}}}", self.prefix, deck)
    }

    /// The user's started decks with progress.
    pub fn user_decks(&self, user: UserId) -> String {
        format!("{}cache:user:{{{}}}:decks", self.prefix, user)
    }

    /// The user's due SRS rows.
    pub fn due_cards(&self, user: UserId) -> String {
        format!("{}cache:due_cards:{{{}}}", self.prefix, user)
    }

    /// Every key of one deck.
    pub fn of_deck(&self, deck: DeckId) -> [String; 2] {
        [self.deck(deck), self.cards(deck)]
    }

    /// Every key of one user.
    pub fn of_user(&self, user: UserId) -> [String; 2] {
        [self.user_decks(user), self.due_cards(user)]
    }
}

/// The generation counter of `key`: bumped by every invalidation, compared by every
/// fill. The suffix comes after the hash tag, so it shares the key's slot.
pub fn generation_key(key: &str) -> String {
    format!("{key}:gen")
}

#[cfg(test)]
mod tests {
    use redis::cluster_routing::Slot;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn keys_follow_the_documented_families() {
        let keys = Keys::new("p:");
        let id = Uuid::nil();
        assert_eq!(keys.deck(DeckId(id)), format!("p:cache:deck:{{{id}}}"));
        assert_eq!(keys.cards(DeckId(id)), format!("p:cache:cards:{{{id}}}"));
        assert_eq!(
            keys.user_decks(UserId(id)),
            format!("p:cache:user:{{{id}}}:decks")
        );
        assert_eq!(
            keys.due_cards(UserId(id)),
            format!("p:cache:due_cards:{{{id}}}")
        );
        assert_eq!(generation_key("p:cache:deck:{x}"), "p:cache:deck:{x}:gen");
    }

    #[test]
    fn hash_tags_put_a_deck_and_a_user_each_in_one_slot() {
        let slot = |key: &str| Slot::for_key(key);
        let keys = Keys::new("p:");
        let (deck, user) = (DeckId(Uuid::new_v4()), UserId(Uuid::new_v4()));
        let [a, b] = keys.of_deck(deck);
        assert_eq!(slot(&a), slot(&b));
        assert_eq!(slot(&a), slot(&generation_key(&b)));
        let [c, d] = keys.of_user(user);
        assert_eq!(slot(&c), slot(&d));
        assert_eq!(slot(&c), slot(&generation_key(&d)));
    }
}
