//! The cached views (docs/deck-service.md, "Cache"): for each, its key, its TTL, the
//! shape it is stored in (protobuf) and when a stored value is still fresh. How a view
//! is loaded on a miss is the caller's (the use cases pass the store query).

use std::{future::Future, time::Duration};

use proto::deck::v1 as pb;
use time::OffsetDateTime;

use super::Cache;
use crate::{
    clock::seconds_to_next_midnight,
    domain::{DeckId, UserId, format_date},
    error::Result,
};

/// Value of `cache:cards:{deck}`: every card of the deck, in order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CachedCards {
    #[prost(message, repeated, tag = "1")]
    pub cards: Vec<pb::Card>,
}

/// One due SRS row with its card, for `cache:due_cards:{user}`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DueCard {
    #[prost(string, tag = "1")]
    pub deck_id: String,
    #[prost(message, optional, tag = "2")]
    pub card: Option<pb::StudyQueueCard>,
}

/// Value of `cache:due_cards:{user}`. `as_of` is the UTC day it was computed for: "due"
/// changes at midnight, so an entry of another day is not used (besides its TTL never
/// reaching past midnight, this also holds when tests move the clock).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CachedDueCards {
    #[prost(string, tag = "1")]
    pub as_of: String,
    #[prost(message, repeated, tag = "2")]
    pub cards: Vec<DueCard>,
}

/// Value of `cache:user:{user}:decks`: the started decks with progress, for day `as_of`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CachedDeckProgress {
    #[prost(string, tag = "1")]
    pub as_of: String,
    #[prost(message, repeated, tag = "2")]
    pub decks: Vec<pb::DeckProgressSummary>,
}

/// Base TTLs of the cache families.
#[derive(Clone, Copy, Debug)]
pub struct Ttls {
    pub deck: Duration,
    pub cards: Duration,
    pub user_decks: Duration,
    pub due_cards: Duration,
}

/// The four views over one [`Cache`]; cheap to clone.
#[derive(Clone)]
pub struct Views {
    cache: Cache,
    ttls: Ttls,
}

impl Views {
    pub fn new(cache: Cache, ttls: Ttls) -> Self {
        Self { cache, ttls }
    }

    /// An active deck with its card count (`cache:deck:{id}`); `None` for an unknown or
    /// inactive deck (cached briefly as "missing").
    pub async fn deck<L, Fut>(&self, deck: DeckId, load: L) -> Result<Option<pb::Deck>>
    where
        L: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<pb::Deck>>> + Send + 'static,
    {
        self.cache
            .get_or_load(
                self.cache.keys().deck(deck),
                self.ttls.deck,
                None,
                |_: &pb::Deck| true,
                load,
            )
            .await
    }

    /// The cards of an active deck (`cache:cards:{id}`); `None` as for [`deck`](Self::deck).
    pub async fn cards<L, Fut>(&self, deck: DeckId, load: L) -> Result<Option<CachedCards>>
    where
        L: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<Vec<pb::Card>>>> + Send + 'static,
    {
        self.cache
            .get_or_load(
                self.cache.keys().cards(deck),
                self.ttls.cards,
                None,
                |_: &CachedCards| true,
                move || async move { Ok(load().await?.map(|cards| CachedCards { cards })) },
            )
            .await
    }

    /// The user's due cards on the day of `now` (`cache:due_cards:{user}`); the TTL
    /// never reaches past the next UTC midnight.
    pub async fn due_cards<L, Fut>(
        &self,
        user: UserId,
        now: OffsetDateTime,
        load: L,
    ) -> Result<CachedDueCards>
    where
        L: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<DueCard>>> + Send + 'static,
    {
        let (today, fresh_day) = (format_date(now.date()), format_date(now.date()));
        let loaded = self
            .cache
            .get_or_load(
                self.cache.keys().due_cards(user),
                self.ttls.due_cards,
                Some(until_midnight(now)),
                move |value: &CachedDueCards| value.as_of == fresh_day,
                move || async move {
                    Ok(Some(CachedDueCards {
                        as_of: today,
                        cards: load().await?,
                    }))
                },
            )
            .await?;
        Ok(loaded.unwrap_or_default())
    }

    /// The user's started decks with progress on the day of `now`
    /// (`cache:user:{user}:decks`); the TTL never reaches past the next UTC midnight.
    pub async fn user_decks<L, Fut>(
        &self,
        user: UserId,
        now: OffsetDateTime,
        load: L,
    ) -> Result<CachedDeckProgress>
    where
        L: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<pb::DeckProgressSummary>>> + Send + 'static,
    {
        let (today, fresh_day) = (format_date(now.date()), format_date(now.date()));
        let loaded = self
            .cache
            .get_or_load(
                self.cache.keys().user_decks(user),
                self.ttls.user_decks,
                Some(until_midnight(now)),
                move |value: &CachedDeckProgress| value.as_of == fresh_day,
                move || async move {
                    Ok(Some(CachedDeckProgress {
                        as_of: today,
                        decks: load().await?,
                    }))
                },
            )
            .await?;
        Ok(loaded.unwrap_or_default())
    }
}

/// The longest a per-day view may live when computed at `now`.
fn until_midnight(now: OffsetDateTime) -> Duration {
    Duration::from_secs(seconds_to_next_midnight(now))
}
