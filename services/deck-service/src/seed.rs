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
    domain::{Difficulty, Level},
    startup::MIGRATOR,
    store::seed::{self, SeedCard},
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

/// The rows to insert for `deck` (levels and difficulties checked by [`parse`]).
fn to_rows(deck: &SeedDeck) -> seed::SeedDeck {
    seed::SeedDeck {
        id: deck.id,
        name: deck.name.clone(),
        description: deck.description.clone(),
        level: Level::from_db(&deck.level),
        cards: deck
            .cards
            .iter()
            .enumerate()
            .map(
                |(index, [front, back, example, pronunciation, difficulty])| SeedCard {
                    id: card_id(deck.id, index),
                    front_text: front.clone(),
                    back_text: back.clone(),
                    example_sentence: example.clone(),
                    pronunciation: pronunciation.clone(),
                    difficulty: Difficulty::from_db(difficulty),
                    order_index: index as i32,
                },
            )
            .collect(),
    }
}

/// Loads the seed decks; returns after printing how many rows were new.
pub async fn run(config: &Config) -> anyhow::Result<()> {
    let decks = parse()?;
    let pg = common::postgres::pool(&config.postgres, config.database_url())?;
    common::postgres::migrate(&pg, &MIGRATOR, config.postgres.database_startup_timeout)
        .await
        .context("deck-service database")?;
    let keys = Keys::new(&config.process.redis.redis_key_prefix);
    let rows: Vec<seed::SeedDeck> = decks.iter().map(to_rows).collect();
    let (new_decks, new_cards) = seed::load(&pg, &keys, &rows).await?;
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
