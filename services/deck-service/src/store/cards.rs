//! Cards: a deck's cards, search, one card, and the superuser's writes (a card that
//! moves or goes takes its per-user counters with it).

use time::OffsetDateTime;
use uuid::Uuid;

use super::{Store, db::Tx, like_pattern};
use crate::{
    domain::{
        CardId, DeckId, Difficulty,
        requests::{CardPatch, NewCard},
    },
    error::{Error, Result},
};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct CardRow {
    pub id: Uuid,
    pub deck_id: Uuid,
    pub front_text: String,
    pub back_text: String,
    pub example_sentence: Option<String>,
    pub pronunciation: Option<String>,
    pub difficulty: String,
    pub order_index: i32,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// The columns of a [`CardRow`], of the `cards` table named `c` (so the study queue's
/// joins select the same list).
pub(super) const CARD_COLUMNS: &str = "c.id, c.deck_id, c.front_text, c.back_text, c.example_sentence, \
                                       c.pronunciation, c.difficulty, c.order_index, c.created_at, c.updated_at";

impl Store {
    /// Every card of an active deck in order; `None` when the deck is missing or inactive.
    pub async fn cards_of_active_deck(&self, deck: DeckId) -> Result<Option<Vec<CardRow>>> {
        let active: Option<(bool,)> = sqlx::query_as("SELECT is_active FROM decks WHERE id = $1")
            .bind(deck.0)
            .fetch_optional(self.db.pool())
            .await?;
        if !matches!(active, Some((true,))) {
            return Ok(None);
        }
        let cards = sqlx::query_as(&format!(
            "SELECT {CARD_COLUMNS} FROM cards c WHERE deck_id = $1 ORDER BY order_index, id"
        ))
        .bind(deck.0)
        .fetch_all(self.db.pool())
        .await?;
        Ok(Some(cards))
    }

    /// Cards of active decks (of `deck`) whose front, back or example contains `query`.
    pub async fn search_cards(
        &self,
        query: &str,
        deck: Option<DeckId>,
        limit: i64,
        offset: i64,
    ) -> Result<(i64, Vec<CardRow>)> {
        let pattern = like_pattern(query);
        let filter = "($2::uuid IS NULL OR deck_id = $2) AND (front_text ILIKE $1 ESCAPE '\\' \
                      OR back_text ILIKE $1 ESCAPE '\\' OR example_sentence ILIKE $1 ESCAPE '\\') \
                      AND deck_id IN (SELECT id FROM decks WHERE is_active)";
        let (total,): (i64,) =
            sqlx::query_as(&format!("SELECT count(*) FROM cards WHERE {filter}"))
                .bind(&pattern)
                .bind(deck.map(|d| d.0))
                .fetch_one(self.db.pool())
                .await?;
        let cards = sqlx::query_as(&format!(
            "SELECT {CARD_COLUMNS} FROM cards c WHERE {filter} ORDER BY deck_id, order_index, id LIMIT $3 OFFSET $4"
        ))
        .bind(&pattern)
        .bind(deck.map(|d| d.0))
        .bind(limit)
        .bind(offset)
        .fetch_all(self.db.pool())
        .await?;
        Ok((total, cards))
    }

    /// A card of an active deck: a soft-deleted deck takes its cards with it.
    pub async fn card(&self, card: CardId) -> Result<Option<CardRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {CARD_COLUMNS} FROM cards c WHERE id = $1 \
             AND deck_id IN (SELECT id FROM decks WHERE is_active)"
        ))
        .bind(card.0)
        .fetch_optional(self.db.pool())
        .await?)
    }

    /// Creates `cards` in `deck`, all or nothing; `None` when the deck does not exist.
    pub async fn create_cards(
        &self,
        deck: DeckId,
        cards: Vec<NewCard>,
        now: OffsetDateTime,
    ) -> Result<Option<Vec<CardRow>>> {
        let mut tx = self.db.begin().await?;
        if !lock_deck(&mut tx, deck.0).await? {
            return Ok(None);
        }
        let mut created = Vec::with_capacity(cards.len());
        for card in cards {
            let row: CardRow = sqlx::query_as(&format!(
                "INSERT INTO cards AS c (id, deck_id, front_text, back_text, example_sentence, pronunciation, \
                 difficulty, order_index, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING {CARD_COLUMNS}"
            ))
            .bind(Uuid::new_v4())
            .bind(deck.0)
            .bind(&card.front_text)
            .bind(&card.back_text)
            .bind(&card.example_sentence)
            .bind(&card.pronunciation)
            .bind(card.difficulty.as_str())
            .bind(card.order_index)
            .bind(now)
            .fetch_one(tx.conn())
            .await?;
            created.push(row);
        }
        let keys = self.outbox.content_keys(&mut tx, &[deck.0]).await?;
        self.outbox.commit(tx, keys).await?;
        Ok(Some(created))
    }

    /// `Err(NotFound)` names what is missing: the card, or the deck it should move to.
    pub async fn update_card(
        &self,
        card: CardId,
        patch: CardPatch,
        now: OffsetDateTime,
    ) -> Result<CardRow> {
        let mut tx = self.db.begin().await?;
        let Some(old_deck) = lock_card(&mut tx, card.0).await? else {
            return Err(Error::card_not_found(card));
        };
        if let Some(new_deck) = patch.deck_id
            && !lock_deck(&mut tx, new_deck.0).await?
        {
            return Err(Error::deck_not_found(new_deck));
        }
        let row: CardRow = sqlx::query_as(&format!(
            "UPDATE cards c SET \
               deck_id = COALESCE($2, deck_id), \
               front_text = COALESCE($3, front_text), \
               back_text = COALESCE($4, back_text), \
               example_sentence = CASE WHEN $5 THEN $6 ELSE example_sentence END, \
               pronunciation = CASE WHEN $7 THEN $8 ELSE pronunciation END, \
               difficulty = COALESCE($9, difficulty), \
               order_index = COALESCE($10, order_index), \
               updated_at = $11 \
             WHERE id = $1 RETURNING {CARD_COLUMNS}"
        ))
        .bind(card.0)
        .bind(patch.deck_id.map(|d| d.0))
        .bind(patch.front_text)
        .bind(patch.back_text)
        .bind(patch.example_sentence.is_some())
        .bind(patch.example_sentence.flatten())
        .bind(patch.pronunciation.is_some())
        .bind(patch.pronunciation.flatten())
        .bind(patch.difficulty.map(Difficulty::as_str))
        .bind(patch.order_index)
        .bind(now)
        .fetch_one(tx.conn())
        .await?;
        let mut decks = vec![old_deck];
        if row.deck_id != old_deck {
            decks.push(row.deck_id);
            move_srs(&mut tx, card.0, old_deck, row.deck_id, now).await?;
        }
        let keys = self.outbox.content_keys(&mut tx, &decks).await?;
        self.outbox.commit(tx, keys).await?;
        Ok(row)
    }

    /// `false` when the card does not exist.
    pub async fn delete_card(&self, card: CardId) -> Result<bool> {
        let mut tx = self.db.begin().await?;
        let Some(deck) = lock_card(&mut tx, card.0).await? else {
            return Ok(false);
        };
        // Take the card out of every user's per-deck counters before its SRS rows go.
        uncount_card(&mut tx, card.0, deck).await?;
        sqlx::query("DELETE FROM cards WHERE id = $1")
            .bind(card.0)
            .execute(tx.conn())
            .await?;
        let keys = self.outbox.content_keys(&mut tx, &[deck]).await?;
        self.outbox.commit(tx, keys).await?;
        Ok(true)
    }
}

/// Locks deck `deck` against a concurrent delete until `tx` ends; `false` when it does
/// not exist.
async fn lock_deck(tx: &mut Tx, deck: Uuid) -> Result<bool> {
    let exists: Option<(Uuid,)> = sqlx::query_as("SELECT id FROM decks WHERE id = $1 FOR SHARE")
        .bind(deck)
        .fetch_optional(tx.conn())
        .await?;
    Ok(exists.is_some())
}

/// Locks card `card` for a write until `tx` ends: its deck, or `None` when it does not
/// exist.
async fn lock_card(tx: &mut Tx, card: Uuid) -> Result<Option<Uuid>> {
    let deck: Option<(Uuid,)> =
        sqlx::query_as("SELECT deck_id FROM cards WHERE id = $1 FOR UPDATE")
            .bind(card)
            .fetch_optional(tx.conn())
            .await?;
    Ok(deck.map(|(deck,)| deck))
}

/// Takes `card` out of the `deck_progress` counters of deck `from` for every user who
/// studied it.
async fn uncount_card(tx: &mut Tx, card: Uuid, from: Uuid) -> Result<()> {
    sqlx::query(
        "UPDATE deck_progress p SET \
           cards_studied = GREATEST(0, p.cards_studied - (s.last_reviewed_at IS NOT NULL)::int), \
           cards_mastered = GREATEST(0, p.cards_mastered - (s.status = 'mastered')::int) \
         FROM card_srs s WHERE s.card_id = $1 AND p.user_id = s.user_id AND p.deck_id = $2",
    )
    .bind(card)
    .bind(from)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// A card moved decks: its SRS rows follow it, and the per-deck counters move with them.
async fn move_srs(
    tx: &mut Tx,
    card: Uuid,
    from: Uuid,
    to: Uuid,
    now: OffsetDateTime,
) -> Result<()> {
    uncount_card(tx, card, from).await?;
    sqlx::query(
        "INSERT INTO deck_progress (user_id, deck_id, cards_studied, cards_mastered, created_at) \
         SELECT s.user_id, $2, (s.last_reviewed_at IS NOT NULL)::int, (s.status = 'mastered')::int, $3 \
         FROM card_srs s WHERE s.card_id = $1 \
         ON CONFLICT (user_id, deck_id) DO UPDATE SET \
           cards_studied = deck_progress.cards_studied + EXCLUDED.cards_studied, \
           cards_mastered = deck_progress.cards_mastered + EXCLUDED.cards_mastered",
    )
    .bind(card)
    .bind(to)
    .bind(now)
    .execute(tx.conn())
    .await?;
    sqlx::query("UPDATE card_srs SET deck_id = $2 WHERE card_id = $1")
        .bind(card)
        .bind(to)
        .execute(tx.conn())
        .await?;
    Ok(())
}
