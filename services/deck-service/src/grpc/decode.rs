//! Requests → domain values, once, at the edge. Every field is checked and every
//! violation reported, each under its full path as the client sent it
//! (`cards[1].back_text`, `reviews[0].quality`); the proto field names are the JSON names
//! of the HTTP API, so the gateway passes the paths through. Fields are checked in the
//! order they are listed here: the first violation is also the status message.

use proto::deck::v1 as pb;
use uuid::Uuid;

use crate::{
    domain::{
        CardId, DeckId, Difficulty, Level, Page, bounded, optional_text, parse_date,
        progress::Period,
        requests::{
            CardPatch, CardSelection, DayRange, DeckPatch, MAX_BATCH, MAX_DESCRIPTION, MAX_NAME,
            MAX_PRONUNCIATION, MAX_TEXT, NewCard, NewDeck, NewReview, QueueRequest,
        },
        search_query,
        sm2::Quality,
        text,
    },
    error::{Checked, Result, Violation},
};

type Fields<T> = std::result::Result<T, Vec<Violation>>;

fn deck_id(field: &str, value: &str) -> std::result::Result<DeckId, Violation> {
    DeckId::parse(field, value)
}

fn optional_deck_id(value: Option<&str>) -> std::result::Result<Option<DeckId>, Violation> {
    value.map(|id| DeckId::parse("deck_id", id)).transpose()
}

fn order_index(field: &str, value: u32) -> std::result::Result<i32, Violation> {
    i32::try_from(value)
        .map_err(|_| Violation::new(field, format!("must be between 0 and {}", i32::MAX)))
}

fn time_taken(field: &str, value: i32) -> std::result::Result<i32, Violation> {
    if value < 0 {
        return Err(Violation::new(field, "must be 0 or more seconds"));
    }
    Ok(value)
}

/// `field` must not be both set and cleared.
fn not_set_and_cleared(
    field: &str,
    clear: bool,
    value: Option<&str>,
) -> std::result::Result<(), Violation> {
    if clear && value.is_some() {
        return Err(Violation::new(field, "cannot be set and cleared at once"));
    }
    Ok(())
}

/// A clearable text: `Some(None)` clears it, `Some(Some(_))` sets it, `None` keeps it.
fn clearable(
    field: &str,
    clear: bool,
    value: Option<&str>,
    max: usize,
) -> std::result::Result<Option<Option<String>>, Violation> {
    if clear {
        return Ok(Some(None));
    }
    value
        .map(|value| optional_text(field, Some(value), max))
        .transpose()
}

/// The path of field `name` of the item at `path` (`cards[1]` → `cards[1].back_text`);
/// the bare name for an empty path.
fn at(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// A batch of 1–[`MAX_BATCH`] items under `field`.
fn batch<'a, T, I>(
    field: &str,
    items: &'a [I],
    what: &str,
    item: impl Fn(String, &'a I) -> Fields<T>,
) -> Fields<Vec<T>> {
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(vec![Violation::new(
            field,
            format!("must contain 1–{MAX_BATCH} {what}"),
        )]);
    }
    items
        .iter()
        .enumerate()
        .map(|(i, value)| item(format!("{field}[{i}]"), value))
        .collect::<Vec<_>>()
        .checked()
}

pub fn list_decks(request: &pb::ListDecksRequest) -> Result<(Option<Level>, Page)> {
    Ok((
        Page::parse(request.page, request.page_size, 20, 100),
        Level::from_proto("level", request.level),
    )
        .checked()
        .map(|(page, level)| (level, page))?)
}

pub fn search_decks(request: &pb::SearchDecksRequest) -> Result<(String, Page)> {
    Ok((
        search_query(&request.query),
        Page::parse(request.page, request.page_size, 20, 50),
    )
        .checked()?)
}

pub fn get_deck(request: &pb::GetDeckRequest) -> Result<DeckId> {
    Ok(deck_id("deck_id", &request.deck_id)?)
}

pub fn delete_deck(request: &pb::DeleteDeckRequest) -> Result<DeckId> {
    Ok(deck_id("deck_id", &request.deck_id)?)
}

pub fn create_deck(request: &pb::CreateDeckRequest) -> Result<NewDeck> {
    let (name, description, level) = (
        text("name", &request.name, 1, MAX_NAME),
        optional_text(
            "description",
            request.description.as_deref(),
            MAX_DESCRIPTION,
        ),
        Level::from_proto("level", request.level).and_then(|level| {
            level.ok_or_else(|| Violation::new("level", "is required (A1, A2, B1, B2, C1 or C2)"))
        }),
    )
        .checked()?;
    Ok(NewDeck {
        name,
        description,
        level,
    })
}

pub fn update_deck(request: &pb::UpdateDeckRequest) -> Result<(DeckId, DeckPatch)> {
    let (deck, (), name, description, level) = (
        deck_id("deck_id", &request.deck_id),
        not_set_and_cleared(
            "description",
            request.clear_description,
            request.description.as_deref(),
        ),
        request
            .name
            .as_deref()
            .map(|name| text("name", name, 1, MAX_NAME))
            .transpose(),
        clearable(
            "description",
            request.clear_description,
            request.description.as_deref(),
            MAX_DESCRIPTION,
        ),
        Level::from_proto("level", request.level),
    )
        .checked()?;
    Ok((
        deck,
        DeckPatch {
            name,
            description,
            level,
            is_active: request.is_active,
        },
    ))
}

pub fn list_cards(request: &pb::ListCardsRequest) -> Result<(DeckId, Option<Difficulty>, Page)> {
    Ok((
        deck_id("deck_id", &request.deck_id),
        Difficulty::from_proto("difficulty", request.difficulty),
        Page::parse(request.page, request.page_size, 50, 100),
    )
        .checked()?)
}

pub fn search_cards(request: &pb::SearchCardsRequest) -> Result<(String, Option<DeckId>, Page)> {
    Ok((
        search_query(&request.query),
        optional_deck_id(request.deck_id.as_deref()),
        Page::parse(request.page, request.page_size, 20, 50),
    )
        .checked()?)
}

pub fn get_card(request: &pb::GetCardRequest) -> Result<CardId> {
    Ok(CardId::parse("card_id", &request.card_id)?)
}

pub fn delete_card(request: &pb::DeleteCardRequest) -> Result<CardId> {
    Ok(CardId::parse("card_id", &request.card_id)?)
}

/// The card at `path` (`cards[1]`): its fields are `path.front_text`, …; with an empty
/// path the bare names (CreateCard's card fields are the top of the HTTP body).
fn new_card(path: &str, card: &pb::NewCard) -> Fields<NewCard> {
    let field = |name: &str| at(path, name);
    let (front_text, back_text, example_sentence, pronunciation, difficulty, order_index) = (
        text(&field("front_text"), &card.front_text, 1, MAX_TEXT),
        text(&field("back_text"), &card.back_text, 1, MAX_TEXT),
        optional_text(
            &field("example_sentence"),
            card.example_sentence.as_deref(),
            MAX_TEXT,
        ),
        optional_text(
            &field("pronunciation"),
            card.pronunciation.as_deref(),
            MAX_PRONUNCIATION,
        ),
        Difficulty::from_proto(&field("difficulty"), card.difficulty).and_then(|difficulty| {
            difficulty.ok_or_else(|| {
                Violation::new(field("difficulty"), "is required (easy, medium or hard)")
            })
        }),
        order_index(&field("order_index"), card.order_index),
    )
        .checked()?;
    Ok(NewCard {
        front_text,
        back_text,
        example_sentence,
        pronunciation,
        difficulty,
        order_index,
    })
}

pub fn create_card(request: &pb::CreateCardRequest) -> Result<(DeckId, NewCard)> {
    Ok((
        deck_id("deck_id", &request.deck_id),
        match &request.card {
            Some(card) => new_card("", card),
            None => Err(vec![Violation::new("card", "is required")]),
        },
    )
        .checked()?)
}

pub fn create_cards(request: &pb::CreateCardsRequest) -> Result<(DeckId, Vec<NewCard>)> {
    Ok((
        deck_id("deck_id", &request.deck_id),
        batch("cards", &request.cards, "cards", |path, card| {
            new_card(&path, card)
        }),
    )
        .checked()?)
}

pub fn update_card(request: &pb::UpdateCardRequest) -> Result<(CardId, CardPatch)> {
    let conflicts = (
        not_set_and_cleared(
            "example_sentence",
            request.clear_example_sentence,
            request.example_sentence.as_deref(),
        ),
        not_set_and_cleared(
            "pronunciation",
            request.clear_pronunciation,
            request.pronunciation.as_deref(),
        ),
    )
        .checked();
    let patch = (
        optional_deck_id(request.deck_id.as_deref()),
        request
            .front_text
            .as_deref()
            .map(|value| text("front_text", value, 1, MAX_TEXT))
            .transpose(),
        request
            .back_text
            .as_deref()
            .map(|value| text("back_text", value, 1, MAX_TEXT))
            .transpose(),
        clearable(
            "example_sentence",
            request.clear_example_sentence,
            request.example_sentence.as_deref(),
            MAX_TEXT,
        ),
        clearable(
            "pronunciation",
            request.clear_pronunciation,
            request.pronunciation.as_deref(),
            MAX_PRONUNCIATION,
        ),
        Difficulty::from_proto("difficulty", request.difficulty),
        request
            .order_index
            .map(|value| order_index("order_index", value))
            .transpose(),
    )
        .checked()
        .map(
            |(
                deck_id,
                front_text,
                back_text,
                example_sentence,
                pronunciation,
                difficulty,
                order_index,
            )| {
                CardPatch {
                    deck_id,
                    front_text,
                    back_text,
                    example_sentence,
                    pronunciation,
                    difficulty,
                    order_index,
                }
            },
        );
    let (card, _, patch) =
        (CardId::parse("card_id", &request.card_id), conflicts, patch).checked()?;
    Ok((card, patch))
}

pub fn study_queue(request: &pb::GetStudyQueueRequest) -> Result<QueueRequest> {
    let (limit, new_limit, early_limit, deck) = (
        bounded("limit", request.limit, 20, 1, 100),
        bounded(
            "new_cards_limit",
            request.new_cards_limit.unwrap_or(10),
            10,
            0,
            50,
        ),
        bounded(
            "early_practice_limit",
            request.early_practice_limit.unwrap_or(10),
            10,
            0,
            50,
        ),
        optional_deck_id(request.deck_id.as_deref()),
    )
        .checked()?;
    Ok(QueueRequest {
        deck,
        limit: limit as usize,
        new_limit: if request.include_new.unwrap_or(true) {
            new_limit as usize
        } else {
            0
        },
        early_limit: if request.include_early_practice {
            early_limit as usize
        } else {
            0
        },
    })
}

pub fn study_stats(request: &pb::GetStudyStatsRequest) -> Result<Option<DeckId>> {
    Ok(optional_deck_id(request.deck_id.as_deref())?)
}

fn card_selection(all_cards: bool, card_ids: &[String]) -> Fields<CardSelection> {
    if all_cards {
        if !card_ids.is_empty() {
            return Err(vec![Violation::new(
                "card_ids",
                "must be empty when all_cards is set",
            )]);
        }
        return Ok(CardSelection::All);
    }
    let mut ids: Vec<Uuid> = batch("card_ids", card_ids, "ids", |path, id| {
        CardId::parse(&path, id)
            .map(|card| card.0)
            .map_err(|v| vec![v])
    })?;
    ids.sort();
    ids.dedup();
    Ok(CardSelection::Only(ids))
}

pub fn initialize_study(request: &pb::InitializeStudyRequest) -> Result<(DeckId, CardSelection)> {
    Ok((
        deck_id("deck_id", &request.deck_id),
        card_selection(request.all_cards, &request.card_ids),
    )
        .checked()?)
}

/// A review of `path`; its fields are `path.card_id`, … (bare names for an empty path).
fn review(path: &str, card_id: &str, quality: i32, seconds: i32) -> Fields<NewReview> {
    let field = |name: &str| at(path, name);
    let (card, quality, time_taken) = (
        CardId::parse(&field("card_id"), card_id),
        Quality::parse(&field("quality"), quality),
        time_taken(&field("time_taken"), seconds),
    )
        .checked()?;
    Ok(NewReview {
        card,
        quality,
        time_taken,
    })
}

pub fn submit_review(request: &pb::SubmitReviewRequest) -> Result<NewReview> {
    Ok(review(
        "",
        &request.card_id,
        request.quality,
        request.time_taken,
    )?)
}

pub fn submit_reviews(
    request: &pb::SubmitReviewsRequest,
) -> Result<(DeckId, String, Vec<NewReview>)> {
    Ok((
        deck_id("deck_id", &request.deck_id),
        text("session_id", &request.session_id, 1, 100),
        batch("reviews", &request.reviews, "reviews", |path, item| {
            review(&path, &item.card_id, item.quality, item.time_taken)
        }),
    )
        .checked()?)
}

pub fn list_reviews(request: &pb::ListReviewsRequest) -> Result<(DayRange, Page)> {
    let days = (
        request
            .start_date
            .as_deref()
            .map(|day| parse_date("start_date", day))
            .transpose(),
        request
            .end_date
            .as_deref()
            .map(|day| parse_date("end_date", day))
            .transpose(),
    )
        .checked()
        .and_then(|(start, end)| match (start, end) {
            (Some(start), Some(end)) if end < start => Err(vec![Violation::new(
                "end_date",
                "must not be before start_date",
            )]),
            _ => Ok(DayRange { start, end }),
        });
    Ok((days, Page::parse(request.page, request.page_size, 50, 100)).checked()?)
}

pub fn dashboard(request: &pb::GetDashboardRequest) -> Result<u32> {
    Ok(bounded(
        "daily_goal",
        request.daily_goal.unwrap_or(20),
        20,
        1,
        200,
    )?)
}

pub fn list_deck_progress(request: &pb::ListDeckProgressRequest) -> Result<Page> {
    Ok(Page::parse(request.page, request.page_size, 20, 100)?)
}

pub fn deck_progress(request: &pb::GetDeckProgressRequest) -> Result<DeckId> {
    Ok(deck_id("deck_id", &request.deck_id)?)
}

pub fn trends(request: &pb::GetTrendsRequest) -> Result<(Period, Option<DeckId>)> {
    Ok((
        Period::parse("period", &request.period),
        optional_deck_id(request.deck_id.as_deref()),
    )
        .checked()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn fields(error: Error) -> Vec<String> {
        match error {
            Error::InvalidArgument(violations) => violations
                .into_iter()
                .map(|violation| violation.field)
                .collect(),
            other => panic!("not a validation error: {other:?}"),
        }
    }

    fn card(front: &str, back: &str) -> pb::NewCard {
        pb::NewCard {
            front_text: front.into(),
            back_text: back.into(),
            difficulty: pb::Difficulty::Easy as i32,
            ..Default::default()
        }
    }

    #[test]
    fn a_bulk_create_reports_every_bad_field_of_every_item_with_its_index() {
        let request = pb::CreateCardsRequest {
            deck_id: "not-a-uuid".into(),
            cards: vec![card("a", "b"), card("c", ""), card("", "")],
        };

        let error = create_cards(&request).unwrap_err();

        assert_eq!(
            fields(error),
            [
                "deck_id",
                "cards[1].back_text",
                "cards[2].front_text",
                "cards[2].back_text"
            ]
        );
    }

    #[test]
    fn a_single_card_names_its_fields_without_a_prefix() {
        let request = pb::CreateCardRequest {
            deck_id: Uuid::nil().to_string(),
            card: Some(pb::NewCard {
                pronunciation: Some("p".repeat(256)),
                ..card("a", "b")
            }),
        };

        assert_eq!(
            fields(create_card(&request).unwrap_err()),
            ["pronunciation"]
        );
    }

    #[test]
    fn bulk_reviews_name_each_item_and_bad_batches_name_the_list() {
        let review = |card_id: &str, quality| pb::SubmitReviewRequest {
            card_id: card_id.into(),
            quality,
            time_taken: 1,
        };
        let request = pb::SubmitReviewsRequest {
            deck_id: Uuid::nil().to_string(),
            session_id: "s".into(),
            reviews: vec![review(&Uuid::nil().to_string(), 9), review("x", -1)],
        };
        let empty = pb::SubmitReviewsRequest {
            reviews: Vec::new(),
            ..request.clone()
        };

        assert_eq!(
            fields(submit_reviews(&request).unwrap_err()),
            [
                "reviews[0].quality",
                "reviews[1].card_id",
                "reviews[1].quality"
            ]
        );
        assert_eq!(fields(submit_reviews(&empty).unwrap_err()), ["reviews"]);
    }

    #[test]
    fn an_update_that_sets_and_clears_a_field_is_refused_before_the_other_fields() {
        let request = pb::UpdateCardRequest {
            card_id: Uuid::nil().to_string(),
            pronunciation: Some("p".into()),
            clear_pronunciation: true,
            front_text: Some(String::new()),
            ..Default::default()
        };

        assert_eq!(
            fields(update_card(&request).unwrap_err()),
            ["pronunciation", "front_text"]
        );
    }

    #[test]
    fn a_queue_without_new_or_early_cards_has_no_room_for_them() {
        let request = pb::GetStudyQueueRequest {
            include_new: Some(false),
            ..Default::default()
        };

        let queue = study_queue(&request).unwrap();

        assert_eq!(
            (queue.limit, queue.new_limit, queue.early_limit),
            (20, 0, 0)
        );
    }

    #[test]
    fn a_backwards_day_range_is_refused_on_the_end_date() {
        let request = pb::ListReviewsRequest {
            start_date: Some("2030-01-02".into()),
            end_date: Some("2030-01-01".into()),
            ..Default::default()
        };

        assert_eq!(fields(list_reviews(&request).unwrap_err()), ["end_date"]);
    }
}
