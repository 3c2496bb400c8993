//! Decks: lists and search (from PostgreSQL), one deck (through the cache), and the
//! superuser's writes.

use proto::deck::v1 as pb;

use super::{DeckApp, messages};
use crate::{
    domain::{
        DeckId, Level, Page,
        requests::{DeckPatch, NewDeck},
    },
    error::{Error, Result},
};

impl DeckApp {
    pub async fn list_decks(
        &self,
        level: Option<Level>,
        page: Page,
    ) -> Result<pb::ListDecksResponse> {
        let (total, decks) = self
            .store
            .list_decks(level, page.limit(), page.offset())
            .await?;
        Ok(pb::ListDecksResponse {
            total: messages::count(total),
            page: page.page,
            page_size: page.page_size,
            decks: decks.iter().map(|row| messages::deck(row, None)).collect(),
        })
    }

    pub async fn search_decks(&self, query: String, page: Page) -> Result<pb::SearchDecksResponse> {
        let (total, decks) = self
            .store
            .search_decks(&query, page.limit(), page.offset())
            .await?;
        Ok(pb::SearchDecksResponse {
            total: messages::count(total),
            page: page.page,
            page_size: page.page_size,
            query,
            decks: decks.iter().map(|row| messages::deck(row, None)).collect(),
        })
    }

    /// An active deck with its card count (cached).
    pub async fn get_deck(&self, deck: DeckId) -> Result<pb::Deck> {
        self.require_deck(deck).await
    }

    pub async fn create_deck(&self, deck: NewDeck) -> Result<pb::Deck> {
        let row = self.store.create_deck(&deck, self.now()).await?;
        Ok(messages::deck(&row, None))
    }

    pub async fn update_deck(&self, deck: DeckId, patch: DeckPatch) -> Result<pb::Deck> {
        let row = self
            .store
            .update_deck(deck, patch, self.now())
            .await?
            .ok_or_else(|| Error::deck_not_found(deck))?;
        Ok(messages::deck(&row, None))
    }

    /// Soft delete; deleting twice is fine.
    pub async fn delete_deck(&self, deck: DeckId) -> Result<()> {
        if !self.store.delete_deck(deck, self.now()).await? {
            return Err(Error::deck_not_found(deck));
        }
        Ok(())
    }
}
