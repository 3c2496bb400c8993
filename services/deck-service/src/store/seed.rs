//! The SQL of the `seed` subcommand: idempotent inserts of the built-in decks.

use sqlx::PgPool;
use uuid::Uuid;

use super::{db::Db, outbox};
use crate::{
    cache::Keys,
    domain::{DeckId, Difficulty, Level},
    error::Result,
};

/// A deck to seed, with fixed ids.
#[derive(Clone, Debug)]
pub struct SeedDeck {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub level: Level,
    pub cards: Vec<SeedCard>,
}

#[derive(Clone, Debug)]
pub struct SeedCard {
    pub id: Uuid,
    pub front_text: String,
    pub back_text: String,
    pub example_sentence: String,
    pub pronunciation: String,
    pub difficulty: Difficulty,
    pub order_index: i32,
}

/// Inserts the decks and cards that are not there yet (`ON CONFLICT DO NOTHING`, so an
/// operator's later edits to seeded rows are kept), in one transaction. Returns how
/// many decks and cards were new.
pub async fn load(pg: &PgPool, keys: &Keys, decks: &[SeedDeck]) -> Result<(u64, u64)> {
    let mut tx = Db::new(pg.clone()).begin().await?;
    let (mut new_decks, mut new_cards) = (0, 0);
    for deck in decks {
        new_decks += sqlx::query(
            "INSERT INTO decks (id, name, description, level) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
        )
        .bind(deck.id)
        .bind(&deck.name)
        .bind(&deck.description)
        .bind(deck.level.as_str())
        .execute(tx.conn())
        .await?
        .rows_affected();
        let mut inserted = 0;
        for card in &deck.cards {
            inserted += sqlx::query(
                "INSERT INTO cards (id, deck_id, front_text, back_text, example_sentence, pronunciation, difficulty, \
                 order_index) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
            )
            .bind(card.id)
            .bind(deck.id)
            .bind(&card.front_text)
            .bind(&card.back_text)
            .bind(&card.example_sentence)
            .bind(&card.pronunciation)
            .bind(card.difficulty.as_str())
            .bind(card.order_index)
            .execute(tx.conn())
            .await?
            .rows_affected();
        }
        if inserted > 0 {
            // A running service may hold a "not found" or an older card list for this
            // deck; its outbox drainer deletes them.
            outbox::record(&mut tx, &keys.of_deck(DeckId(deck.id))).await?;
        }
        new_cards += inserted;
    }
    tx.commit().await?;
    Ok((new_decks, new_cards))
}
