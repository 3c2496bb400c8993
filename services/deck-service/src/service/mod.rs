//! The use cases of deck-service, independent of gRPC, one file per resource:
//! [`decks`], [`cards`], [`study`] (queue, initialisation, reviews) and [`progress`]
//! (dashboard, deck progress, trends). Each takes validated domain values
//! (`grpc::decode` made them), reads through the cached views or the store, computes
//! with the domain's rules, and answers with the protobuf messages of [`messages`].

pub mod cards;
pub mod decks;
pub mod messages;
pub mod progress;
pub mod study;

use std::sync::Arc;

use proto::deck::v1 as pb;
use time::{Date, OffsetDateTime};

use crate::{
    cache::Views,
    clock::Clock,
    domain::DeckId,
    error::{Error, Result},
    store::Store,
};

/// Everything the use cases need; cheap to clone.
#[derive(Clone)]
pub struct DeckApp {
    store: Store,
    views: Views,
    clock: Arc<dyn Clock>,
}

impl DeckApp {
    pub fn new(store: Store, views: Views, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            views,
            clock,
        }
    }

    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    fn today(&self) -> Date {
        self.clock.today()
    }

    /// An active deck with its card count, through the cache; `None` when unknown or
    /// inactive.
    async fn deck_view(&self, deck: DeckId) -> Result<Option<pb::Deck>> {
        let store = self.store.clone();
        self.views
            .deck(deck, move || async move {
                Ok(store
                    .active_deck_with_count(deck)
                    .await?
                    .map(|(row, count)| messages::deck(&row, Some(count))))
            })
            .await
    }

    /// An active deck or NOT_FOUND.
    async fn require_deck(&self, deck: DeckId) -> Result<pb::Deck> {
        self.deck_view(deck)
            .await?
            .ok_or_else(|| Error::deck_not_found(deck))
    }
}
