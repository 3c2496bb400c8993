//! `/api/v1/decks` and `/api/v1/cards` (deck-service).

use proto::deck::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{Breach, Choice, Difficulty, Level, Timestamp, page::Page};
use crate::extract::{Params, Validator, nullable};

/// The largest `order_index` (it travels as a proto `uint32`, stored as an `int4`).
const MAX_ORDER_INDEX: i64 = i32::MAX as i64;

// ------------------------------------------------------------------ queries

/// `GET /decks`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListDecksQuery {
    #[param(required = false, minimum = 1, default = 1)]
    pub page: u32,
    #[param(required = false, minimum = 1, maximum = 100, default = 20)]
    pub page_size: u32,
    #[param(inline)]
    pub level: Option<Level>,
}

impl ListDecksQuery {
    pub fn parse(params: &mut Params) -> Self {
        let (page, page_size) = params.page(20, 100);
        Self {
            page,
            page_size,
            level: params.choice("level"),
        }
    }

    pub fn into_proto(self) -> pb::ListDecksRequest {
        pb::ListDecksRequest {
            page: self.page,
            page_size: self.page_size,
            level: self.level.map_or(0, |level| level.to_proto() as i32),
        }
    }
}

/// `GET /decks/search`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchDecksQuery {
    #[param(min_length = 1, max_length = 100)]
    pub q: String,
    #[param(required = false, minimum = 1, default = 1)]
    pub page: u32,
    #[param(required = false, minimum = 1, maximum = 50, default = 20)]
    pub page_size: u32,
}

impl SearchDecksQuery {
    pub fn parse(params: &mut Params) -> Self {
        let q = params.text("q", 1, 100);
        let (page, page_size) = params.page(20, 50);
        Self { q, page, page_size }
    }

    pub fn into_proto(self) -> pb::SearchDecksRequest {
        pb::SearchDecksRequest {
            query: self.q,
            page: self.page,
            page_size: self.page_size,
        }
    }
}

/// `GET /cards`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListCardsQuery {
    #[param(format = Uuid)]
    pub deck_id: String,
    #[param(inline)]
    pub difficulty: Option<Difficulty>,
    #[param(required = false, minimum = 1, default = 1)]
    pub page: u32,
    #[param(required = false, minimum = 1, maximum = 100, default = 50)]
    pub page_size: u32,
}

impl ListCardsQuery {
    pub fn parse(params: &mut Params) -> Self {
        let deck_id = params.required_uuid("deck_id");
        let difficulty = params.choice("difficulty");
        let (page, page_size) = params.page(50, 100);
        Self {
            deck_id,
            difficulty,
            page,
            page_size,
        }
    }

    pub fn into_proto(self) -> pb::ListCardsRequest {
        pb::ListCardsRequest {
            deck_id: self.deck_id,
            difficulty: self.difficulty.map_or(0, |d| d.to_proto() as i32),
            page: self.page,
            page_size: self.page_size,
        }
    }
}

/// `GET /cards/search`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchCardsQuery {
    #[param(min_length = 1, max_length = 100)]
    pub q: String,
    #[param(format = Uuid)]
    pub deck_id: Option<String>,
    #[param(required = false, minimum = 1, default = 1)]
    pub page: u32,
    #[param(required = false, minimum = 1, maximum = 50, default = 20)]
    pub page_size: u32,
}

impl SearchCardsQuery {
    pub fn parse(params: &mut Params) -> Self {
        let q = params.text("q", 1, 100);
        let deck_id = params.optional_uuid("deck_id");
        let (page, page_size) = params.page(20, 50);
        Self {
            q,
            deck_id,
            page,
            page_size,
        }
    }

    pub fn into_proto(self) -> pb::SearchCardsRequest {
        pb::SearchCardsRequest {
            query: self.q,
            deck_id: self.deck_id,
            page: self.page,
            page_size: self.page_size,
        }
    }
}

// ------------------------------------------------------------------ request bodies

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = DeckCreate)]
pub struct NewDeck {
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
    pub description: Option<String>,
    #[schema(value_type = Level)]
    pub level: Choice<Level>,
}

impl NewDeck {
    pub fn parse(self, check: &mut Validator) -> pb::CreateDeckRequest {
        check.length("name", &self.name, 1, 255);
        let level = check.choice("level", &self.level);
        pb::CreateDeckRequest {
            name: self.name,
            description: self.description,
            level: level.map_or(0, |level| level.to_proto() as i32),
        }
    }
}

/// `PATCH /decks/{id}`: any of the fields; `description: null` clears it.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = DeckUpdate)]
pub struct DeckPatch {
    #[schema(min_length = 1, max_length = 255)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[schema(value_type = Level)]
    pub level: Option<Choice<Level>>,
    pub is_active: Option<bool>,
}

impl DeckPatch {
    pub fn parse(self, check: &mut Validator, deck_id: String) -> pb::UpdateDeckRequest {
        if let Some(name) = &self.name {
            check.length("name", name, 1, 255);
        }
        let level = self
            .level
            .as_ref()
            .and_then(|level| check.choice("level", level));
        pb::UpdateDeckRequest {
            deck_id,
            name: self.name,
            clear_description: matches!(self.description, Some(None)),
            description: self.description.flatten(),
            level: level.map_or(0, |level| level.to_proto() as i32),
            is_active: self.is_active,
        }
    }
}

/// A new card; inside a bulk body it has no `deck_id`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewCard {
    #[schema(min_length = 1, max_length = 1000)]
    pub front_text: String,
    #[schema(min_length = 1, max_length = 1000)]
    pub back_text: String,
    pub example_sentence: Option<String>,
    #[schema(max_length = 255)]
    pub pronunciation: Option<String>,
    #[schema(value_type = Difficulty)]
    pub difficulty: Choice<Difficulty>,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2147483647, default = 0)]
    pub order_index: i64,
}

impl NewCard {
    /// Validates one card; `prefix` names it inside a bulk body (`cards[3].`).
    fn parse(self, check: &mut Validator, prefix: &str) -> pb::NewCard {
        check.length(&format!("{prefix}front_text"), &self.front_text, 1, 1000);
        check.length(&format!("{prefix}back_text"), &self.back_text, 1, 1000);
        if let Some(pronunciation) = &self.pronunciation {
            check.length(&format!("{prefix}pronunciation"), pronunciation, 0, 255);
        }
        check.range(
            &format!("{prefix}order_index"),
            self.order_index,
            0,
            MAX_ORDER_INDEX,
        );
        let difficulty = check.choice(&format!("{prefix}difficulty"), &self.difficulty);
        pb::NewCard {
            front_text: self.front_text,
            back_text: self.back_text,
            example_sentence: self.example_sentence,
            pronunciation: self.pronunciation,
            difficulty: difficulty.map_or(0, |d| d.to_proto() as i32),
            order_index: self.order_index.clamp(0, MAX_ORDER_INDEX) as u32,
        }
    }
}

/// `POST /cards`: a card and its deck.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = CardCreate)]
pub struct NewDeckCard {
    #[schema(format = Uuid)]
    pub deck_id: String,
    #[serde(flatten)]
    pub card: NewCard,
}

impl NewDeckCard {
    pub fn parse(self, check: &mut Validator) -> pb::CreateCardRequest {
        let deck_id = check.uuid("deck_id", &self.deck_id);
        let card = self.card.parse(check, "");
        pb::CreateCardRequest {
            deck_id,
            card: Some(card),
        }
    }
}

/// `POST /cards/bulk`: 1-100 cards of one deck, all or nothing.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = CardBulkCreate)]
pub struct BulkCards {
    #[schema(format = Uuid)]
    pub deck_id: String,
    #[schema(min_items = 1, max_items = 100)]
    pub cards: Vec<NewCard>,
}

impl BulkCards {
    pub fn parse(self, check: &mut Validator) -> pb::CreateCardsRequest {
        let deck_id = check.uuid("deck_id", &self.deck_id);
        if self.cards.is_empty() || self.cards.len() > 100 {
            check.error("cards", "must hold between 1 and 100 cards");
        }
        let cards = self
            .cards
            .into_iter()
            .enumerate()
            .map(|(index, card)| card.parse(check, &format!("cards[{index}].")))
            .collect();
        pb::CreateCardsRequest { deck_id, cards }
    }
}

/// `PATCH /cards/{id}`: any card field but `id`; `null` clears the optional texts.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = CardUpdate)]
pub struct CardPatch {
    #[schema(format = Uuid)]
    pub deck_id: Option<String>,
    #[schema(min_length = 1, max_length = 1000)]
    pub front_text: Option<String>,
    #[schema(min_length = 1, max_length = 1000)]
    pub back_text: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub example_sentence: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 255)]
    pub pronunciation: Option<Option<String>>,
    #[schema(value_type = Difficulty)]
    pub difficulty: Option<Choice<Difficulty>>,
    #[schema(minimum = 0, maximum = 2147483647)]
    pub order_index: Option<i64>,
}

impl CardPatch {
    pub fn parse(self, check: &mut Validator, card_id: String) -> pb::UpdateCardRequest {
        let deck_id = self
            .deck_id
            .as_deref()
            .map(|deck_id| check.uuid("deck_id", deck_id));
        if let Some(front) = &self.front_text {
            check.length("front_text", front, 1, 1000);
        }
        if let Some(back) = &self.back_text {
            check.length("back_text", back, 1, 1000);
        }
        if let Some(Some(pronunciation)) = &self.pronunciation {
            check.length("pronunciation", pronunciation, 0, 255);
        }
        if let Some(order_index) = self.order_index {
            check.range("order_index", order_index, 0, MAX_ORDER_INDEX);
        }
        let difficulty = self
            .difficulty
            .as_ref()
            .and_then(|difficulty| check.choice("difficulty", difficulty));
        pb::UpdateCardRequest {
            card_id,
            deck_id,
            front_text: self.front_text,
            back_text: self.back_text,
            clear_example_sentence: matches!(self.example_sentence, Some(None)),
            example_sentence: self.example_sentence.flatten(),
            clear_pronunciation: matches!(self.pronunciation, Some(None)),
            pronunciation: self.pronunciation.flatten(),
            difficulty: difficulty.map_or(0, |d| d.to_proto() as i32),
            order_index: self
                .order_index
                .map(|index| index.clamp(0, MAX_ORDER_INDEX) as u32),
        }
    }
}

// ------------------------------------------------------------------ responses

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Deck {
    #[schema(format = Uuid)]
    pub id: String,
    pub name: String,
    #[schema(required = true)]
    pub description: Option<String>,
    pub level: Level,
    pub is_active: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl TryFrom<pb::Deck> for Deck {
    type Error = Breach;

    fn try_from(deck: pb::Deck) -> Result<Self, Breach> {
        Ok(Self {
            id: deck.id,
            name: deck.name,
            description: deck.description,
            level: Level::of(deck.level, "deck.level")?,
            is_active: deck.is_active,
            created_at: Timestamp::required(deck.created_at.as_ref(), "deck.created_at")?,
            updated_at: Timestamp::required(deck.updated_at.as_ref(), "deck.updated_at")?,
        })
    }
}

/// A deck with its card count (`GET /decks/{id}`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeckDetail {
    #[schema(format = Uuid)]
    pub id: String,
    pub name: String,
    #[schema(required = true)]
    pub description: Option<String>,
    pub level: Level,
    pub is_active: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub card_count: u64,
}

impl TryFrom<pb::Deck> for DeckDetail {
    type Error = Breach;

    fn try_from(mut deck: pb::Deck) -> Result<Self, Breach> {
        let card_count = deck.card_count.take().unwrap_or(0);
        let Deck {
            id,
            name,
            description,
            level,
            is_active,
            created_at,
            updated_at,
        } = Deck::try_from(deck)?;
        Ok(Self {
            id,
            name,
            description,
            level,
            is_active,
            created_at,
            updated_at,
            card_count,
        })
    }
}

/// `GET /decks`.
pub type DeckList = Page<DeckItems>;

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DeckList)]
pub struct DeckItems {
    pub decks: Vec<Deck>,
}

impl TryFrom<pb::ListDecksResponse> for DeckItems {
    type Error = Breach;

    fn try_from(response: pb::ListDecksResponse) -> Result<Self, Breach> {
        Ok(Self {
            decks: all(response.decks)?,
        })
    }
}

/// `GET /decks/search`.
pub type DeckSearch = Page<DeckSearchItems>;

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DeckSearch)]
pub struct DeckSearchItems {
    pub query: String,
    pub decks: Vec<Deck>,
}

impl TryFrom<pb::SearchDecksResponse> for DeckSearchItems {
    type Error = Breach;

    fn try_from(response: pb::SearchDecksResponse) -> Result<Self, Breach> {
        Ok(Self {
            query: response.query,
            decks: all(response.decks)?,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Card {
    #[schema(format = Uuid)]
    pub id: String,
    #[schema(format = Uuid)]
    pub deck_id: String,
    pub front_text: String,
    pub back_text: String,
    #[schema(required = true)]
    pub example_sentence: Option<String>,
    #[schema(required = true)]
    pub pronunciation: Option<String>,
    pub difficulty: Difficulty,
    pub order_index: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl TryFrom<pb::Card> for Card {
    type Error = Breach;

    fn try_from(card: pb::Card) -> Result<Self, Breach> {
        Ok(Self {
            id: card.id,
            deck_id: card.deck_id,
            front_text: card.front_text,
            back_text: card.back_text,
            example_sentence: card.example_sentence,
            pronunciation: card.pronunciation,
            difficulty: Difficulty::of(card.difficulty, "card.difficulty")?,
            order_index: card.order_index,
            created_at: Timestamp::required(card.created_at.as_ref(), "card.created_at")?,
            updated_at: Timestamp::required(card.updated_at.as_ref(), "card.updated_at")?,
        })
    }
}

/// `GET /cards`.
pub type CardList = Page<CardItems>;

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CardList)]
pub struct CardItems {
    #[schema(format = Uuid)]
    pub deck_id: String,
    pub cards: Vec<Card>,
}

impl TryFrom<pb::ListCardsResponse> for CardItems {
    type Error = Breach;

    fn try_from(response: pb::ListCardsResponse) -> Result<Self, Breach> {
        Ok(Self {
            deck_id: response.deck_id,
            cards: all(response.cards)?,
        })
    }
}

/// `GET /cards/search`.
pub type CardSearch = Page<CardSearchItems>;

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CardSearch)]
pub struct CardSearchItems {
    pub query: String,
    #[schema(required = true, format = Uuid)]
    pub deck_id: Option<String>,
    pub cards: Vec<Card>,
}

impl TryFrom<pb::SearchCardsResponse> for CardSearchItems {
    type Error = Breach;

    fn try_from(response: pb::SearchCardsResponse) -> Result<Self, Breach> {
        Ok(Self {
            query: response.query,
            deck_id: response.deck_id,
            cards: all(response.cards)?,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CardBulkResponse)]
pub struct CreatedCards {
    #[schema(format = Uuid)]
    pub deck_id: String,
    pub created_count: u32,
    pub cards: Vec<Card>,
}

impl TryFrom<pb::CreateCardsResponse> for CreatedCards {
    type Error = Breach;

    fn try_from(response: pb::CreateCardsResponse) -> Result<Self, Breach> {
        Ok(Self {
            deck_id: response.deck_id,
            created_count: response.created_count,
            cards: all(response.cards)?,
        })
    }
}

/// Every item of a list converted, or the first breach.
pub(crate) fn all<P, T: TryFrom<P, Error = Breach>>(items: Vec<P>) -> Result<Vec<T>, Breach> {
    items.into_iter().map(T::try_from).collect()
}
