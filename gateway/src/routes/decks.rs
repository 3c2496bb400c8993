//! `/api/v1/decks` and `/api/v1/cards` (deck-service). Writes need the superuser role,
//! checked here before the call (deck-service checks it again).

use axum::{
    Json,
    extract::{Path, State},
    response::{IntoResponse, Response},
};
use http::StatusCode;
use proto::deck::v1 as pb;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    convert::{self, parse_difficulty, parse_level},
    error::ApiError,
    extract::{ApiJson, Ctx, Params, Validator, nullable, parse_uuid, path_id},
    middleware::empty,
    state::AppState,
};

type JsonResult = Result<Json<Value>, ApiError>;

// ------------------------------------------------------------------ decks

pub async fn list_decks(State(state): State<AppState>, ctx: Ctx, mut params: Params) -> JsonResult {
    let (page, page_size) = params.page(20, 100);
    let level = params.choice("level", parse_level);
    params.finish()?;
    let request = pb::ListDecksRequest {
        page,
        page_size,
        level: level.map_or(0, |level| level as i32),
    };
    let response = ctx.call(state.deck().list_decks(ctx.grpc(request))).await?;
    Ok(Json(json!({
        "total": response.total,
        "page": response.page,
        "page_size": response.page_size,
        "decks": response.decks.into_iter().map(|deck| convert::deck(deck, false)).collect::<Vec<_>>(),
    })))
}

pub async fn search_decks(
    State(state): State<AppState>,
    ctx: Ctx,
    mut params: Params,
) -> JsonResult {
    let query = params.text("q", 1, 100);
    let (page, page_size) = params.page(20, 50);
    params.finish()?;
    let request = pb::SearchDecksRequest {
        query,
        page,
        page_size,
    };
    let response = ctx
        .call(state.deck().search_decks(ctx.grpc(request)))
        .await?;
    Ok(Json(json!({
        "total": response.total,
        "page": response.page,
        "page_size": response.page_size,
        "query": response.query,
        "decks": response.decks.into_iter().map(|deck| convert::deck(deck, false)).collect::<Vec<_>>(),
    })))
}

pub async fn get_deck(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> JsonResult {
    let deck_id = path_id("id", &id)?;
    let deck = ctx
        .call(
            state
                .deck()
                .get_deck(ctx.grpc(pb::GetDeckRequest { deck_id })),
        )
        .await?;
    Ok(Json(convert::deck(deck, true)))
}

#[derive(Debug, Deserialize)]
pub struct NewDeck {
    name: String,
    description: Option<String>,
    level: String,
}

pub async fn create_deck(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<NewDeck>,
) -> Result<Response, ApiError> {
    ctx.require_superuser()?;
    let mut check = Validator::new();
    check.length("name", &body.name, 1, 255);
    let level = parse_level(&body.level)
        .map_err(|message| check.error("level", message))
        .ok();
    check.finish()?;
    let request = pb::CreateDeckRequest {
        name: body.name,
        description: body.description,
        level: level.map_or(0, |level| level as i32),
    };
    let deck = ctx
        .call(state.deck().create_deck(ctx.grpc(request)))
        .await?;
    Ok((StatusCode::CREATED, Json(convert::deck(deck, false))).into_response())
}

#[derive(Debug, Deserialize)]
pub struct DeckPatch {
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    description: Option<Option<String>>,
    level: Option<String>,
    is_active: Option<bool>,
}

pub async fn update_deck(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DeckPatch>,
) -> JsonResult {
    ctx.require_superuser()?;
    let deck_id = path_id("id", &id)?;
    let mut check = Validator::new();
    if let Some(name) = &body.name {
        check.length("name", name, 1, 255);
    }
    let level = match &body.level {
        Some(level) => parse_level(level)
            .map_err(|message| check.error("level", message))
            .ok(),
        None => None,
    };
    check.finish()?;
    let request = pb::UpdateDeckRequest {
        deck_id,
        name: body.name,
        clear_description: matches!(body.description, Some(None)),
        description: body.description.flatten(),
        level: level.map_or(0, |level| level as i32),
        is_active: body.is_active,
    };
    let deck = ctx
        .call(state.deck().update_deck(ctx.grpc(request)))
        .await?;
    Ok(Json(convert::deck(deck, false)))
}

pub async fn delete_deck(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    ctx.require_superuser()?;
    let deck_id = path_id("id", &id)?;
    ctx.call(
        state
            .deck()
            .delete_deck(ctx.grpc(pb::DeleteDeckRequest { deck_id })),
    )
    .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

// ------------------------------------------------------------------ cards

pub async fn list_cards(State(state): State<AppState>, ctx: Ctx, mut params: Params) -> JsonResult {
    let deck_id = params.required_uuid("deck_id");
    let difficulty = params.choice("difficulty", parse_difficulty);
    let (page, page_size) = params.page(50, 100);
    params.finish()?;
    let request = pb::ListCardsRequest {
        deck_id,
        difficulty: difficulty.map_or(0, |d| d as i32),
        page,
        page_size,
    };
    let response = ctx.call(state.deck().list_cards(ctx.grpc(request))).await?;
    Ok(Json(json!({
        "total": response.total,
        "page": response.page,
        "page_size": response.page_size,
        "deck_id": response.deck_id,
        "cards": response.cards.into_iter().map(convert::card).collect::<Vec<_>>(),
    })))
}

pub async fn search_cards(
    State(state): State<AppState>,
    ctx: Ctx,
    mut params: Params,
) -> JsonResult {
    let query = params.text("q", 1, 100);
    let deck_id = params.optional_uuid("deck_id");
    let (page, page_size) = params.page(20, 50);
    params.finish()?;
    let request = pb::SearchCardsRequest {
        query,
        deck_id,
        page,
        page_size,
    };
    let response = ctx
        .call(state.deck().search_cards(ctx.grpc(request)))
        .await?;
    Ok(Json(json!({
        "total": response.total,
        "page": response.page,
        "page_size": response.page_size,
        "query": response.query,
        "deck_id": response.deck_id,
        "cards": response.cards.into_iter().map(convert::card).collect::<Vec<_>>(),
    })))
}

pub async fn get_card(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> JsonResult {
    let card_id = path_id("id", &id)?;
    let card = ctx
        .call(
            state
                .deck()
                .get_card(ctx.grpc(pb::GetCardRequest { card_id })),
        )
        .await?;
    Ok(Json(convert::card(card)))
}

#[derive(Debug, Deserialize)]
pub struct NewCard {
    front_text: String,
    back_text: String,
    example_sentence: Option<String>,
    pronunciation: Option<String>,
    difficulty: String,
    #[serde(default)]
    order_index: i64,
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
            i64::from(i32::MAX),
        );
        let difficulty = parse_difficulty(&self.difficulty)
            .map_err(|message| check.error(&format!("{prefix}difficulty"), message))
            .ok();
        pb::NewCard {
            front_text: self.front_text,
            back_text: self.back_text,
            example_sentence: self.example_sentence,
            pronunciation: self.pronunciation,
            difficulty: difficulty.map_or(0, |d| d as i32),
            order_index: self.order_index.clamp(0, i64::from(i32::MAX)) as u32,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct NewCardBody {
    deck_id: String,
    #[serde(flatten)]
    card: NewCard,
}

pub async fn create_card(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<NewCardBody>,
) -> Result<Response, ApiError> {
    ctx.require_superuser()?;
    let mut check = Validator::new();
    let deck_id = check.uuid("deck_id", &body.deck_id);
    let card = body.card.parse(&mut check, "");
    check.finish()?;
    let request = pb::CreateCardRequest {
        deck_id,
        card: Some(card),
    };
    let card = ctx
        .call(state.deck().create_card(ctx.grpc(request)))
        .await?;
    Ok((StatusCode::CREATED, Json(convert::card(card))).into_response())
}

#[derive(Debug, Deserialize)]
pub struct BulkCards {
    deck_id: String,
    cards: Vec<NewCard>,
}

pub async fn create_cards(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<BulkCards>,
) -> Result<Response, ApiError> {
    ctx.require_superuser()?;
    let mut check = Validator::new();
    let deck_id = check.uuid("deck_id", &body.deck_id);
    if body.cards.is_empty() || body.cards.len() > 100 {
        check.error("cards", "must hold between 1 and 100 cards");
    }
    let cards: Vec<_> = body
        .cards
        .into_iter()
        .enumerate()
        .map(|(index, card)| card.parse(&mut check, &format!("cards[{index}].")))
        .collect();
    check.finish()?;
    let response = ctx
        .call(
            state
                .deck()
                .create_cards(ctx.grpc(pb::CreateCardsRequest { deck_id, cards })),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "deck_id": response.deck_id,
            "created_count": response.created_count,
            "cards": response.cards.into_iter().map(convert::card).collect::<Vec<_>>(),
        })),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub struct CardPatch {
    deck_id: Option<String>,
    front_text: Option<String>,
    back_text: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    example_sentence: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pronunciation: Option<Option<String>>,
    difficulty: Option<String>,
    order_index: Option<i64>,
}

pub async fn update_card(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CardPatch>,
) -> JsonResult {
    ctx.require_superuser()?;
    let card_id = path_id("id", &id)?;
    let mut check = Validator::new();
    let deck_id = body
        .deck_id
        .as_deref()
        .map(|deck_id| check.uuid("deck_id", deck_id));
    if let Some(front) = &body.front_text {
        check.length("front_text", front, 1, 1000);
    }
    if let Some(back) = &body.back_text {
        check.length("back_text", back, 1, 1000);
    }
    if let Some(Some(pronunciation)) = &body.pronunciation {
        check.length("pronunciation", pronunciation, 0, 255);
    }
    if let Some(order_index) = body.order_index {
        check.range("order_index", order_index, 0, i64::from(i32::MAX));
    }
    let difficulty = match &body.difficulty {
        Some(difficulty) => parse_difficulty(difficulty)
            .map_err(|message| check.error("difficulty", message))
            .ok(),
        None => None,
    };
    check.finish()?;
    let request = pb::UpdateCardRequest {
        card_id,
        deck_id,
        front_text: body.front_text,
        back_text: body.back_text,
        clear_example_sentence: matches!(body.example_sentence, Some(None)),
        example_sentence: body.example_sentence.flatten(),
        clear_pronunciation: matches!(body.pronunciation, Some(None)),
        pronunciation: body.pronunciation.flatten(),
        difficulty: difficulty.map_or(0, |d| d as i32),
        order_index: body.order_index.map(|index| index as u32),
    };
    let card = ctx
        .call(state.deck().update_card(ctx.grpc(request)))
        .await?;
    Ok(Json(convert::card(card)))
}

pub async fn delete_card(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    ctx.require_superuser()?;
    let card_id = path_id("id", &id)?;
    ctx.call(
        state
            .deck()
            .delete_card(ctx.grpc(pb::DeleteCardRequest { card_id })),
    )
    .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// The ids of a list, canonical; a malformed one is an error naming its index (`card_ids[2]`).
pub fn uuid_list(check: &mut Validator, field: &str, ids: &[String]) -> Vec<String> {
    ids.iter()
        .enumerate()
        .map(|(index, id)| match parse_uuid(id) {
            Some(id) => id,
            None => {
                check.error(&format!("{field}[{index}]"), "must be a valid UUID");
                String::new()
            }
        })
        .collect()
}
