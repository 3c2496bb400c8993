//! The `seed` subcommand: loads the built-in Greek decks from `seed/decks.json`.
//!
//! Idempotent: decks and cards have fixed ids and are inserted with
//! `ON CONFLICT DO NOTHING`, so a second run changes nothing (and an operator's later
//! edits to seeded rows are kept).

use anyhow::Context;
use serde::Deserialize;
use uuid::Uuid;

use crate::{
    cache::Keys,
    config::Config,
    domain::{DeckId, Difficulty, Level},
    startup::MIGRATOR,
};

const DATA: &str = include_str!("../seed/decks.json");

#[derive(Debug, Deserialize)]
struct SeedFile {
    decks: Vec<SeedDeck>,
}

#[derive(Debug, Deserialize)]
struct SeedDeck {
    id: Uuid,
    name: String,
    description: String,
    level: String,
    /// `[front (Greek), back (English), example sentence (Greek), pronunciation, difficulty]`.
    cards: Vec<[String; 5]>,
}

/// A card's fixed id: the deck's id with the card's position mixed into its last bits.
fn card_id(deck: Uuid, index: usize) -> Uuid {
    Uuid::from_u128(deck.as_u128() ^ (index as u128 + 1))
}

fn parse() -> anyhow::Result<Vec<SeedDeck>> {
    let file: SeedFile = serde_json::from_str(DATA).context("seed/decks.json")?;
    for deck in &file.decks {
        anyhow::ensure!(
            Level::ALL.iter().any(|l| l.as_str() == deck.level),
            "deck {}: bad level",
            deck.name
        );
        for card in &deck.cards {
            anyhow::ensure!(
                Difficulty::parse_str(&card[4]).is_some(),
                "card {}: bad difficulty",
                card[0]
            );
        }
    }
    Ok(file.decks)
}

/// Loads the seed decks; returns after printing how many rows were new.
pub async fn run(config: &Config) -> anyhow::Result<()> {
    let decks = parse()?;
    let pg = common::postgres::pool(&config.postgres, config.database_url())?;
    common::postgres::migrate(&pg, &MIGRATOR, config.postgres.database_startup_timeout)
        .await
        .context("deck-service database")?;
    let keys = Keys::new(&config.redis.redis_key_prefix);
    let (mut new_decks, mut new_cards) = (0, 0);
    let mut tx = pg.begin().await?;
    for deck in &decks {
        new_decks += sqlx::query(
            "INSERT INTO decks (id, name, description, level) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
        )
        .bind(deck.id)
        .bind(&deck.name)
        .bind(&deck.description)
        .bind(&deck.level)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let mut inserted = 0;
        for (index, [front, back, example, pronunciation, difficulty]) in
            deck.cards.iter().enumerate()
        {
            inserted += sqlx::query(
                "INSERT INTO cards (id, deck_id, front_text, back_text, example_sentence, pronunciation, difficulty, \
                 order_index) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
            )
            .bind(card_id(deck.id, index))
            .bind(deck.id)
            .bind(front)
            .bind(back)
            .bind(example)
            .bind(pronunciation)
            .bind(difficulty)
            .bind(index as i32)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        if inserted > 0 {
            // A running service may hold a "not found" or an older card list for this
            // deck; its outbox drainer deletes them.
            sqlx::query("INSERT INTO cache_outbox (keys) VALUES ($1)")
                .bind(keys.of_deck(DeckId(deck.id)).to_vec())
                .execute(&mut *tx)
                .await?;
        }
        new_cards += inserted;
    }
    tx.commit().await?;
    println!(
        "seed: {new_decks} new deck(s), {new_cards} new card(s) ({} decks in the seed)",
        decks.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_has_an_a1_deck_of_at_least_100_words_and_a_second_deck() {
        let decks = parse().unwrap();
        assert!(decks.len() >= 2);
        assert!(
            decks[0].level == "A1" && decks[0].cards.len() >= 100,
            "{}",
            decks[0].cards.len()
        );
        for deck in &decks {
            for card in &deck.cards {
                assert!(
                    card.iter().all(|field| !field.trim().is_empty()),
                    "{card:?}"
                );
                let greek = |c: char| {
                    ('\u{0370}'..='\u{03FF}').contains(&c) || ('\u{1F00}'..='\u{1FFF}').contains(&c)
                };
                assert!(
                    !card[3].chars().any(greek),
                    "pronunciation in Latin letters: {card:?}"
                );
                assert!(card[0].chars().any(greek), "Greek front: {card:?}");
            }
        }
    }

    #[test]
    fn seed_card_ids_are_unique() {
        let decks = parse().unwrap();
        let mut ids: Vec<Uuid> = decks
            .iter()
            .flat_map(|d| (0..d.cards.len()).map(move |i| card_id(d.id, i)))
            .collect();
        ids.extend(decks.iter().map(|d| d.id));
        let count = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), count);
    }
}
