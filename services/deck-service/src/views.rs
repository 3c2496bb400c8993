//! Row → protobuf conversions, the cached value messages, and the progress arithmetic.

use proto::deck::v1 as pb;
use time::Date;

use crate::{
    domain::{Difficulty, Level, format_date, status_from_db, status_to_proto, timestamp},
    store::{CardRow, DeckRow, ProgressRow, QueueRow},
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

pub fn deck(row: &DeckRow, card_count: Option<i64>) -> pb::Deck {
    pb::Deck {
        id: row.id.to_string(),
        name: row.name.clone(),
        description: row.description.clone(),
        level: Level::from_db(&row.level).to_proto(),
        is_active: row.is_active,
        created_at: Some(timestamp(row.created_at)),
        updated_at: Some(timestamp(row.updated_at)),
        card_count: card_count.map(|count| count.max(0) as u64),
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
        card_id: row.card_id.to_string(),
        front_text: row.front_text.clone(),
        back_text: row.back_text.clone(),
        example_sentence: row.example_sentence.clone(),
        pronunciation: row.pronunciation.clone(),
        difficulty: Difficulty::from_db(&row.difficulty).to_proto(),
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

/// `part / whole` as a percentage with one decimal; 0 when `whole` is 0.
pub fn percentage(part: f64, whole: f64) -> f64 {
    if whole <= 0.0 {
        0.0
    } else {
        round_to(part / whole * 100.0, 1)
    }
}

pub fn round_to(value: f64, decimals: i32) -> f64 {
    let factor = 10f64.powi(decimals);
    (value * factor).round() / factor
}

/// Minutes to review `due` cards, at about 30 seconds a card.
pub fn estimated_review_minutes(due: i64) -> u32 {
    ((due.max(0) as u64).div_ceil(2)).min(u64::from(u32::MAX)) as u32
}

pub fn progress_summary(row: &ProgressRow) -> pb::DeckProgressSummary {
    let total = row.total_cards as f64;
    pb::DeckProgressSummary {
        deck_id: row.deck_id.to_string(),
        deck_name: row.deck_name.clone(),
        deck_level: Level::from_db(&row.deck_level).to_proto(),
        total_cards: row.total_cards.max(0) as u64,
        cards_studied: row.cards_studied.max(0) as u64,
        cards_mastered: row.cards_mastered.max(0) as u64,
        cards_due: row.cards_due.max(0) as u64,
        mastery_percentage: percentage(f64::from(row.cards_mastered), total),
        completion_percentage: percentage(f64::from(row.cards_studied), total),
        last_studied_at: row.last_studied_at.map(timestamp),
        average_easiness_factor: round_to(
            row.average_easiness_factor
                .unwrap_or(crate::sm2::INITIAL_EASINESS),
            2,
        ),
        estimated_review_time_minutes: estimated_review_minutes(row.cards_due),
        deck_type: "vocabulary".into(),
    }
}

/// Consecutive days with a review, counted back from `today` (0 without a review today).
/// `days` are distinct and newest first.
pub fn current_streak(days: &[Date], today: Date) -> u32 {
    let mut expected = today;
    let mut streak = 0;
    for &day in days {
        if day > expected {
            continue;
        }
        if day != expected {
            break;
        }
        streak += 1;
        match expected.previous_day() {
            Some(previous) => expected = previous,
            None => break,
        }
    }
    streak
}

/// The longest run of consecutive days in `days` (distinct, newest first).
pub fn longest_streak(days: &[Date]) -> u32 {
    let (mut longest, mut run) = (0, 0);
    let mut previous: Option<Date> = None;
    for &day in days {
        run = match previous {
            Some(later) if later.previous_day() == Some(day) => run + 1,
            _ => 1,
        };
        longest = longest.max(run);
        previous = Some(day);
    }
    longest
}

/// "improving" / "declining" / "stable": second half's average quality above / below
/// / within 0.3 of the first half's. Halves without reviews make it "stable".
pub fn quality_trend(first: (f64, i64), second: (f64, i64)) -> &'static str {
    let (first_sum, first_count) = first;
    let (second_sum, second_count) = second;
    if first_count == 0 || second_count == 0 {
        return "stable";
    }
    let (a, b) = (
        first_sum / first_count as f64,
        second_sum / second_count as f64,
    );
    if b > a + 0.3 {
        "improving"
    } else if b < a - 0.3 {
        "declining"
    } else {
        "stable"
    }
}

pub fn date_string(day: Date) -> String {
    format_date(day)
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    #[test]
    fn streaks_count_consecutive_days_back_from_today() {
        let today = date!(2026 - 11 - 26);
        let days = [
            date!(2026 - 11 - 26),
            date!(2026 - 11 - 25),
            date!(2026 - 11 - 23),
            date!(2026 - 11 - 22),
            date!(2026 - 11 - 21),
        ];
        assert_eq!(current_streak(&days, today), 2);
        assert_eq!(longest_streak(&days), 3);
        assert_eq!(current_streak(&days[1..], today), 0);
        assert_eq!(current_streak(&[], today), 0);
    }

    #[test]
    fn quality_trend_uses_a_threshold_of_point_three() {
        assert_eq!(quality_trend((6.0, 2), (8.0, 2)), "improving");
        assert_eq!(quality_trend((8.0, 2), (6.0, 2)), "declining");
        assert_eq!(quality_trend((6.0, 2), (6.5, 2)), "stable");
        assert_eq!(quality_trend((0.0, 0), (6.5, 2)), "stable");
    }

    #[test]
    fn percentages_round_to_one_decimal_and_survive_zero() {
        assert_eq!(percentage(1.0, 3.0), 33.3);
        assert_eq!(percentage(1.0, 0.0), 0.0);
        assert_eq!(estimated_review_minutes(3), 2);
    }
}
