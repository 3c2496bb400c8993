//! Cards: a deck's cards (through the cache, filtered and paged in memory), search, one
//! card, and the superuser's writes.

use proto::deck::v1 as pb;

use super::{DeckApp, messages};
use crate::{
    domain::{
        CardId, DeckId, Difficulty, Page,
        requests::{CardPatch, NewCard},
    },
    error::{Error, Result},
};

impl DeckApp {
    /// The cards of an active deck (of `difficulty`), in order.
    pub async fn list_cards(
        &self,
        deck: DeckId,
        difficulty: Option<Difficulty>,
        page: Page,
    ) -> Result<pb::ListCardsResponse> {
        let store = self.store.clone();
        let cards = self
            .views
            .cards(deck, move || async move {
                Ok(store
                    .cards_of_active_deck(deck)
                    .await?
                    .map(|rows| rows.iter().map(messages::card).collect()))
            })
            .await?
            .ok_or_else(|| Error::deck_not_found(deck))?
            .cards;
        let matching: Vec<pb::Card> = match difficulty {
            Some(difficulty) => cards
                .into_iter()
                .filter(|card| card.difficulty == difficulty.to_proto())
                .collect(),
            None => cards,
        };
        Ok(pb::ListCardsResponse {
            total: matching.len() as u64,
            page: page.page,
            page_size: page.page_size,
            deck_id: deck.to_string(),
            cards: page.slice(&matching),
        })
    }

    /// Cards of active decks matching `query`; NOT_FOUND when `deck` is not active.
    pub async fn search_cards(
        &self,
        query: String,
        deck: Option<DeckId>,
        page: Page,
    ) -> Result<pb::SearchCardsResponse> {
        if let Some(deck) = deck {
            self.require_deck(deck).await?;
        }
        let (total, cards) = self
            .store
            .search_cards(&query, deck, page.limit(), page.offset())
            .await?;
        Ok(pb::SearchCardsResponse {
            total: messages::count(total),
            page: page.page,
            page_size: page.page_size,
            query,
            deck_id: deck.map(|d| d.to_string()),
            cards: cards.iter().map(messages::card).collect(),
        })
    }

    pub async fn get_card(&self, card: CardId) -> Result<pb::Card> {
        let row = self
            .store
            .card(card)
            .await?
            .ok_or_else(|| Error::card_not_found(card))?;
        Ok(messages::card(&row))
    }

    pub async fn create_card(&self, deck: DeckId, card: NewCard) -> Result<pb::Card> {
        let created = self
            .store
            .create_cards(deck, vec![card], self.now())
            .await?
            .ok_or_else(|| Error::deck_not_found(deck))?;
        let row = created
            .first()
            .ok_or_else(|| Error::internal(anyhow::anyhow!("insert returned no card")))?;
        Ok(messages::card(row))
    }

    /// All or nothing.
    pub async fn create_cards(
        &self,
        deck: DeckId,
        cards: Vec<NewCard>,
    ) -> Result<pb::CreateCardsResponse> {
        let created = self
            .store
            .create_cards(deck, cards, self.now())
            .await?
            .ok_or_else(|| Error::deck_not_found(deck))?;
        Ok(pb::CreateCardsResponse {
            deck_id: deck.to_string(),
            created_count: created.len() as u32,
            cards: created.iter().map(messages::card).collect(),
        })
    }

    pub async fn update_card(&self, card: CardId, patch: CardPatch) -> Result<pb::Card> {
        let row = self.store.update_card(card, patch, self.now()).await?;
        Ok(messages::card(&row))
    }

    pub async fn delete_card(&self, card: CardId) -> Result<()> {
        if !self.store.delete_card(card).await? {
            return Err(Error::card_not_found(card));
        }
        Ok(())
    }
}
