//! Requests once validated: what the use cases receive from `grpc::decode`, valid by
//! construction (lengths checked, ids parsed, limits bounded).

use time::Date;
use uuid::Uuid;

use super::{CardId, DeckId, Difficulty, Level, sm2::Quality};

pub const MAX_NAME: usize = 255;
pub const MAX_DESCRIPTION: usize = 2000;
pub const MAX_TEXT: usize = 1000;
pub const MAX_PRONUNCIATION: usize = 255;
/// Most cards of one bulk create, ids of one InitializeStudy, reviews of one bulk review.
pub const MAX_BATCH: usize = 100;

/// Fields of a new deck.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDeck {
    pub name: String,
    pub description: Option<String>,
    pub level: Level,
}

/// A partial deck update (None: unchanged; `Some(None)`: set to null).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeckPatch {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub level: Option<Level>,
    pub is_active: Option<bool>,
}

/// Fields of a new card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCard {
    pub front_text: String,
    pub back_text: String,
    pub example_sentence: Option<String>,
    pub pronunciation: Option<String>,
    pub difficulty: Difficulty,
    pub order_index: i32,
}

/// A partial card update.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CardPatch {
    pub deck_id: Option<DeckId>,
    pub front_text: Option<String>,
    pub back_text: Option<String>,
    pub example_sentence: Option<Option<String>>,
    pub pronunciation: Option<Option<String>>,
    pub difficulty: Option<Difficulty>,
    pub order_index: Option<i32>,
}

/// Which cards of a deck InitializeStudy starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CardSelection {
    All,
    /// Distinct and sorted.
    Only(Vec<Uuid>),
}

/// One review to apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewReview {
    pub card: CardId,
    pub quality: Quality,
    /// Seconds, 0 or more.
    pub time_taken: i32,
}

/// What GetStudyQueue asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueRequest {
    pub deck: Option<DeckId>,
    /// 1–100: the most cards in the queue.
    pub limit: usize,
    /// 0 when new cards are not wanted.
    pub new_limit: usize,
    /// 0 when early practice is not wanted.
    pub early_limit: usize,
}

impl QueueRequest {
    /// The queue's composition (HTTP_API.md, "StudyQueue"): after `due` due cards, room
    /// for this many new cards.
    pub fn new_room(&self, due: usize) -> usize {
        self.new_limit.min(self.limit.saturating_sub(due))
    }

    /// After `due` due and `new` new cards, room for this many early-practice cards.
    pub fn early_room(&self, due: usize, new: usize) -> usize {
        self.early_limit
            .min(self.limit.saturating_sub(due).saturating_sub(new))
    }
}

/// Inclusive UTC days of ListReviews; `end` is not before `start`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DayRange {
    pub start: Option<Date>,
    pub end: Option<Date>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_limit_bounds_due_new_and_early_cards_together() {
        let request = QueueRequest {
            deck: None,
            limit: 4,
            new_limit: 3,
            early_limit: 10,
        };

        assert_eq!(request.new_room(0), 3);
        assert_eq!(request.new_room(2), 2);
        assert_eq!(request.early_room(2, 2), 0);
        assert_eq!(request.early_room(1, 1), 2);
        assert_eq!(
            QueueRequest {
                new_limit: 0,
                ..request
            }
            .new_room(0),
            0
        );
    }
}
