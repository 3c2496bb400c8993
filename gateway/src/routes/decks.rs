//! `/api/v1/decks` and `/api/v1/cards` (deck-service). Writes need the superuser role,
//! checked here before the call (deck-service checks it again).

use axum::{
    Json,
    extract::{Path, State},
};
use http::StatusCode;
use proto::deck::v1 as pb;

use crate::{
    error::ApiError,
    extract::{ApiJson, Ctx, Params, Validator, path_id},
    openapi::{Forbidden, Invalid, NotFound},
    state::SharedState,
    wire::decks::{
        BulkCards, Card, CardList, CardPatch, CardSearch, CreatedCards, Deck, DeckDetail, DeckList,
        DeckPatch, DeckSearch, ListCardsQuery, ListDecksQuery, NewDeck, NewDeckCard,
        SearchCardsQuery, SearchDecksQuery,
    },
    wire::page::Page,
};

const DECKS: &str = "decks";
const CARDS: &str = "cards";

// ------------------------------------------------------------------ decks

/// Active decks, newest first
#[utoipa::path(get, path = "/api/v1/decks", tag = DECKS, params(ListDecksQuery),
    responses((status = 200, description = "OK", body = DeckList), Invalid))]
pub async fn list_decks(
    State(state): State<SharedState>,
    ctx: Ctx,
    mut params: Params,
) -> Result<Json<DeckList>, ApiError> {
    let query = ListDecksQuery::parse(&mut params);
    params.finish()?;
    let response = ctx
        .call(state.deck().list_decks(ctx.grpc(query.into_proto())))
        .await?;
    Ok(Json(Page::of(response)?))
}

/// Search active decks by name or description
#[utoipa::path(get, path = "/api/v1/decks/search", tag = DECKS, params(SearchDecksQuery),
    responses((status = 200, description = "OK", body = DeckSearch), Invalid))]
pub async fn search_decks(
    State(state): State<SharedState>,
    ctx: Ctx,
    mut params: Params,
) -> Result<Json<DeckSearch>, ApiError> {
    let query = SearchDecksQuery::parse(&mut params);
    params.finish()?;
    let response = ctx
        .call(state.deck().search_decks(ctx.grpc(query.into_proto())))
        .await?;
    Ok(Json(Page::of(response)?))
}

/// One active deck with its card count
#[utoipa::path(get, path = "/api/v1/decks/{id}", tag = DECKS,
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, description = "OK", body = DeckDetail), NotFound, Invalid))]
pub async fn get_deck(
    State(state): State<SharedState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<DeckDetail>, ApiError> {
    let deck_id = path_id("id", &id)?;
    let deck = ctx
        .call(
            state
                .deck()
                .get_deck(ctx.grpc(pb::GetDeckRequest { deck_id })),
        )
        .await?;
    Ok(Json(deck.try_into()?))
}

/// Create a deck (superuser)
#[utoipa::path(post, path = "/api/v1/decks", tag = DECKS, request_body = NewDeck,
    responses((status = 201, description = "Created", body = Deck), Forbidden, Invalid))]
pub async fn create_deck(
    State(state): State<SharedState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<NewDeck>,
) -> Result<(StatusCode, Json<Deck>), ApiError> {
    ctx.require_superuser()?;
    let mut check = Validator::new();
    let request = body.parse(&mut check);
    check.finish()?;
    let deck = ctx
        .call(state.deck().create_deck(ctx.grpc(request)))
        .await?;
    Ok((StatusCode::CREATED, Json(deck.try_into()?)))
}

/// Update a deck (superuser)
#[utoipa::path(patch, path = "/api/v1/decks/{id}", tag = DECKS,
    params(("id" = String, Path, format = Uuid)), request_body = DeckPatch,
    responses((status = 200, description = "OK", body = Deck), Forbidden, NotFound, Invalid))]
pub async fn update_deck(
    State(state): State<SharedState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DeckPatch>,
) -> Result<Json<Deck>, ApiError> {
    ctx.require_superuser()?;
    let deck_id = path_id("id", &id)?;
    let mut check = Validator::new();
    let request = body.parse(&mut check, deck_id);
    check.finish()?;
    let deck = ctx
        .call(state.deck().update_deck(ctx.grpc(request)))
        .await?;
    Ok(Json(deck.try_into()?))
}

/// Soft-delete a deck (superuser)
#[utoipa::path(delete, path = "/api/v1/decks/{id}", tag = DECKS,
    params(("id" = String, Path, format = Uuid)),
    responses((status = 204, description = "Deleted"), Forbidden, NotFound, Invalid))]
pub async fn delete_deck(
    State(state): State<SharedState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    ctx.require_superuser()?;
    let deck_id = path_id("id", &id)?;
    ctx.call(
        state
            .deck()
            .delete_deck(ctx.grpc(pb::DeleteDeckRequest { deck_id })),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ cards

/// Cards of an active deck in order
#[utoipa::path(get, path = "/api/v1/cards", tag = CARDS, params(ListCardsQuery),
    responses((status = 200, description = "OK", body = CardList), NotFound, Invalid))]
pub async fn list_cards(
    State(state): State<SharedState>,
    ctx: Ctx,
    mut params: Params,
) -> Result<Json<CardList>, ApiError> {
    let query = ListCardsQuery::parse(&mut params);
    params.finish()?;
    let response = ctx
        .call(state.deck().list_cards(ctx.grpc(query.into_proto())))
        .await?;
    Ok(Json(Page::of(response)?))
}

/// Search cards by front, back or example
#[utoipa::path(get, path = "/api/v1/cards/search", tag = CARDS, params(SearchCardsQuery),
    responses((status = 200, description = "OK", body = CardSearch), NotFound, Invalid))]
pub async fn search_cards(
    State(state): State<SharedState>,
    ctx: Ctx,
    mut params: Params,
) -> Result<Json<CardSearch>, ApiError> {
    let query = SearchCardsQuery::parse(&mut params);
    params.finish()?;
    let response = ctx
        .call(state.deck().search_cards(ctx.grpc(query.into_proto())))
        .await?;
    Ok(Json(Page::of(response)?))
}

/// One card
#[utoipa::path(get, path = "/api/v1/cards/{id}", tag = CARDS,
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, description = "OK", body = Card), NotFound, Invalid))]
pub async fn get_card(
    State(state): State<SharedState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Card>, ApiError> {
    let card_id = path_id("id", &id)?;
    let card = ctx
        .call(
            state
                .deck()
                .get_card(ctx.grpc(pb::GetCardRequest { card_id })),
        )
        .await?;
    Ok(Json(card.try_into()?))
}

/// Create a card (superuser)
#[utoipa::path(post, path = "/api/v1/cards", tag = CARDS, request_body = NewDeckCard,
    responses((status = 201, description = "Created", body = Card), Forbidden, NotFound,
        Invalid))]
pub async fn create_card(
    State(state): State<SharedState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<NewDeckCard>,
) -> Result<(StatusCode, Json<Card>), ApiError> {
    ctx.require_superuser()?;
    let mut check = Validator::new();
    let request = body.parse(&mut check);
    check.finish()?;
    let card = ctx
        .call(state.deck().create_card(ctx.grpc(request)))
        .await?;
    Ok((StatusCode::CREATED, Json(card.try_into()?)))
}

/// Create 1-100 cards, all or nothing (superuser)
#[utoipa::path(post, path = "/api/v1/cards/bulk", tag = CARDS, request_body = BulkCards,
    responses((status = 201, description = "Created", body = CreatedCards), Forbidden,
        NotFound, Invalid))]
pub async fn create_cards(
    State(state): State<SharedState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<BulkCards>,
) -> Result<(StatusCode, Json<CreatedCards>), ApiError> {
    ctx.require_superuser()?;
    let mut check = Validator::new();
    let request = body.parse(&mut check);
    check.finish()?;
    let response = ctx
        .call(state.deck().create_cards(ctx.grpc(request)))
        .await?;
    Ok((StatusCode::CREATED, Json(response.try_into()?)))
}

/// Update a card (superuser)
#[utoipa::path(patch, path = "/api/v1/cards/{id}", tag = CARDS,
    params(("id" = String, Path, format = Uuid)), request_body = CardPatch,
    responses((status = 200, description = "OK", body = Card), Forbidden, NotFound, Invalid))]
pub async fn update_card(
    State(state): State<SharedState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CardPatch>,
) -> Result<Json<Card>, ApiError> {
    ctx.require_superuser()?;
    let card_id = path_id("id", &id)?;
    let mut check = Validator::new();
    let request = body.parse(&mut check, card_id);
    check.finish()?;
    let card = ctx
        .call(state.deck().update_card(ctx.grpc(request)))
        .await?;
    Ok(Json(card.try_into()?))
}

/// Delete a card (superuser)
#[utoipa::path(delete, path = "/api/v1/cards/{id}", tag = CARDS,
    params(("id" = String, Path, format = Uuid)),
    responses((status = 204, description = "Deleted"), Forbidden, NotFound, Invalid))]
pub async fn delete_card(
    State(state): State<SharedState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    ctx.require_superuser()?;
    let card_id = path_id("id", &id)?;
    ctx.call(
        state
            .deck()
            .delete_card(ctx.grpc(pb::DeleteCardRequest { card_id })),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
