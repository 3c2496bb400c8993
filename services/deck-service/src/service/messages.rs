//! Rows and domain results → the protobuf messages the use cases answer with. The same
//! messages are what the cache stores (`cache::views`), so a cache hit is answered as it
//! is, without a conversion.

use proto::deck::v1 as pb;
use uuid::Uuid;

use crate::{
    domain::{
        Difficulty, Level, format_date,
        progress::{estimated_review_minutes, percentage, round_to},
        sm2::{INITIAL_EASINESS, Quality, Reviewed},
        status_from_db, status_to_proto, timestamp,
    },
    store::{
        cards::CardRow,
        decks::DeckRow,
        progress::{ProgressRow, StatusCounts},
        study::{QueueRow, ReviewRow},
    },
};

/// Counts never negative on the wire.
pub fn count(value: i64) -> u64 {
    value.max(0) as u64
}

pub fn deck(row: &DeckRow, card_count: Option<i64>) -> pb::Deck {
    pb::Deck {
        id: row.id.to_string(),
        name: row.name.clone(),
        description: row.description.clone(),
        level: Level::from_db(&row.level).to_proto(),
        is_active: row.is_active,
        created_at: Some(timestamp(row.created_at)),
        updated_at: Some(timestamp(row.updated_at)),
        card_count: card_count.map(count),
    }
}

pub fn card(row: &CardRow) -> pb::Card {
    pb::Card {
        id: row.id.to_string(),
        deck_id: row.deck_id.to_string(),
        front_text: row.front_text.clone(),
        back_text: row.back_text.clone(),
        example_sentence: row.example_sentence.clone(),
        pronunciation: row.pronunciation.clone(),
        difficulty: Difficulty::from_db(&row.difficulty).to_proto(),
        order_index: row.order_index.max(0) as u32,
        created_at: Some(timestamp(row.created_at)),
        updated_at: Some(timestamp(row.updated_at)),
    }
}

pub fn queue_card(row: &QueueRow, is_early_practice: bool) -> pb::StudyQueueCard {
    let is_new = row.status.is_none();
    pb::StudyQueueCard {
        card_id: row.card.id.to_string(),
        front_text: row.card.front_text.clone(),
        back_text: row.card.back_text.clone(),
        example_sentence: row.card.example_sentence.clone(),
        pronunciation: row.card.pronunciation.clone(),
        difficulty: Difficulty::from_db(&row.card.difficulty).to_proto(),
        status: row
            .status
            .as_deref()
            .map_or(pb::CardStatus::New as i32, |s| {
                status_to_proto(status_from_db(s))
            }),
        is_new,
        is_early_practice,
        due_date: row.next_review_date.map(format_date),
        easiness_factor: row.easiness_factor,
        interval: row.interval_days.map(|days| days.max(0) as u32),
    }
}

pub fn progress_summary(row: &ProgressRow) -> pb::DeckProgressSummary {
    let total = row.total_cards as f64;
    pb::DeckProgressSummary {
        deck_id: row.deck_id.to_string(),
        deck_name: row.deck_name.clone(),
        deck_level: Level::from_db(&row.deck_level).to_proto(),
        total_cards: count(row.total_cards),
        cards_studied: count(i64::from(row.cards_studied)),
        cards_mastered: count(i64::from(row.cards_mastered)),
        cards_due: count(row.cards_due),
        mastery_percentage: percentage(f64::from(row.cards_mastered), total),
        completion_percentage: percentage(f64::from(row.cards_studied), total),
        last_studied_at: row.last_studied_at.map(timestamp),
        average_easiness_factor: round_to(
            row.average_easiness_factor.unwrap_or(INITIAL_EASINESS),
            2,
        ),
        estimated_review_time_minutes: estimated_review_minutes(row.cards_due),
        deck_type: "vocabulary".into(),
    }
}

pub fn status_counts(counts: &StatusCounts) -> pb::StatusCounts {
    pb::StatusCounts {
        new: count(counts.new),
        learning: count(counts.learning),
        review: count(counts.review),
        mastered: count(counts.mastered),
        due: count(counts.due),
    }
}

pub fn review_result(card: Uuid, quality: Quality, reviewed: &Reviewed) -> pb::ReviewResult {
    let next = &reviewed.next;
    pb::ReviewResult {
        success: true,
        card_id: card.to_string(),
        quality: i32::from(quality.get()),
        previous_status: status_to_proto(reviewed.previous),
        new_status: status_to_proto(next.status),
        easiness_factor: next.easiness_factor,
        interval: next.interval.max(0) as u32,
        repetitions: next.repetitions.max(0) as u32,
        next_review_date: format_date(next.next_review_date),
        message: reviewed.message.map(str::to_owned),
    }
}

pub fn review(row: &ReviewRow) -> pb::Review {
    pb::Review {
        id: row.id.to_string(),
        user_id: row.user_id.to_string(),
        card_id: row.card_id.to_string(),
        quality: i32::from(row.quality),
        time_taken: row.time_taken,
        reviewed_at: Some(timestamp(row.reviewed_at)),
    }
}
