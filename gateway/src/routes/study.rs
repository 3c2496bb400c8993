//! Study queue, reviews and progress (deck-service; the dashboard also reads the
//! daily goal from session-service).

use axum::{
    Json,
    extract::{Path, State},
};
use proto::{deck::v1 as pb, session::v1 as session};

use crate::{
    error::ApiError,
    extract::{ApiJson, Ctx, Params, Validator, path_id},
    openapi::{Invalid, NotFound},
    state::SharedState,
    wire::page::Page,
    wire::study::{
        BulkReviewResults, BulkReviews, Dashboard, DeckProgressDetail, DeckProgressList,
        DeckProgressQuery, Initialize, Initialized, ListReviewsQuery, NewReview, ReviewList,
        ReviewResult, StatsQuery, StudyQueue, StudyQueueQuery, StudyStats, Trends, TrendsQuery,
    },
};

const STUDY: &str = "study";
const REVIEWS: &str = "reviews";
const PROGRESS: &str = "progress";

/// Study queue over all decks
#[utoipa::path(get, path = "/api/v1/study/queue", tag = STUDY, params(StudyQueueQuery),
    responses((status = 200, description = "OK", body = StudyQueue), Invalid))]
pub async fn queue_all(
    state: State<SharedState>,
    ctx: Ctx,
    params: Params,
) -> Result<Json<StudyQueue>, ApiError> {
    queue(state, ctx, params, None).await
}

/// Study queue of one deck
#[utoipa::path(get, path = "/api/v1/study/queue/{deck_id}", tag = STUDY,
    params(("deck_id" = String, Path, format = Uuid), StudyQueueQuery),
    responses((status = 200, description = "OK", body = StudyQueue), NotFound, Invalid))]
pub async fn queue_deck(
    state: State<SharedState>,
    ctx: Ctx,
    Path(deck_id): Path<String>,
    params: Params,
) -> Result<Json<StudyQueue>, ApiError> {
    let deck_id = path_id("deck_id", &deck_id)?;
    queue(state, ctx, params, Some(deck_id)).await
}

async fn queue(
    State(state): State<SharedState>,
    ctx: Ctx,
    mut params: Params,
    deck_id: Option<String>,
) -> Result<Json<StudyQueue>, ApiError> {
    let query = StudyQueueQuery::parse(&mut params);
    params.finish()?;
    let queue = ctx
        .call(
            state
                .deck()
                .get_study_queue(ctx.grpc(query.into_proto(deck_id))),
        )
        .await?;
    Ok(Json(queue.try_into()?))
}

/// Study statistics
#[utoipa::path(get, path = "/api/v1/study/stats", tag = STUDY, params(StatsQuery),
    responses((status = 200, description = "OK", body = StudyStats), Invalid))]
pub async fn stats(
    State(state): State<SharedState>,
    ctx: Ctx,
    mut params: Params,
) -> Result<Json<StudyStats>, ApiError> {
    let StatsQuery { deck_id } = StatsQuery::parse(&mut params);
    params.finish()?;
    let stats = ctx
        .call(
            state
                .deck()
                .get_study_stats(ctx.grpc(pb::GetStudyStatsRequest { deck_id })),
        )
        .await?;
    Ok(Json(stats.into()))
}

/// Initialise study of given cards
#[utoipa::path(post, path = "/api/v1/study/initialize", tag = STUDY, request_body = Initialize,
    responses((status = 200, description = "OK", body = Initialized), NotFound, Invalid))]
pub async fn initialize(
    State(state): State<SharedState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<Initialize>,
) -> Result<Json<Initialized>, ApiError> {
    let mut check = Validator::new();
    let request = body.parse(&mut check);
    check.finish()?;
    let response = ctx
        .call(state.deck().initialize_study(ctx.grpc(request)))
        .await?;
    Ok(Json(response.into()))
}

/// Initialise study of every card of a deck
#[utoipa::path(post, path = "/api/v1/study/initialize/{deck_id}", tag = STUDY,
    params(("deck_id" = String, Path, format = Uuid)),
    responses((status = 200, description = "OK", body = Initialized), NotFound, Invalid))]
pub async fn initialize_deck(
    State(state): State<SharedState>,
    ctx: Ctx,
    Path(deck_id): Path<String>,
) -> Result<Json<Initialized>, ApiError> {
    let deck_id = path_id("deck_id", &deck_id)?;
    let request = pb::InitializeStudyRequest {
        deck_id,
        card_ids: Vec::new(),
        all_cards: true,
    };
    let response = ctx
        .call(state.deck().initialize_study(ctx.grpc(request)))
        .await?;
    Ok(Json(response.into()))
}

/// Submit one review (SM-2)
#[utoipa::path(post, path = "/api/v1/reviews", tag = REVIEWS, request_body = NewReview,
    responses((status = 200, description = "OK", body = ReviewResult), NotFound, Invalid))]
pub async fn review(
    State(state): State<SharedState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<NewReview>,
) -> Result<Json<ReviewResult>, ApiError> {
    let mut check = Validator::new();
    let request = body.parse(&mut check, "");
    check.finish()?;
    let result = ctx
        .call(state.deck().submit_review(ctx.grpc(request)))
        .await?;
    Ok(Json(result.try_into()?))
}

/// Submit 1-100 reviews
#[utoipa::path(post, path = "/api/v1/reviews/bulk", tag = REVIEWS, request_body = BulkReviews,
    responses((status = 200, description = "OK", body = BulkReviewResults), Invalid))]
pub async fn review_bulk(
    State(state): State<SharedState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<BulkReviews>,
) -> Result<Json<BulkReviewResults>, ApiError> {
    let mut check = Validator::new();
    let request = body.parse(&mut check);
    check.finish()?;
    let response = ctx
        .call(state.deck().submit_reviews(ctx.grpc(request)))
        .await?;
    Ok(Json(response.try_into()?))
}

/// The caller's review history, newest first
#[utoipa::path(get, path = "/api/v1/reviews", tag = REVIEWS, params(ListReviewsQuery),
    responses((status = 200, description = "OK", body = ReviewList), Invalid))]
pub async fn list_reviews(
    State(state): State<SharedState>,
    ctx: Ctx,
    mut params: Params,
) -> Result<Json<ReviewList>, ApiError> {
    let query = ListReviewsQuery::parse(&mut params);
    params.finish()?;
    let response = ctx
        .call(state.deck().list_reviews(ctx.grpc(query.into_proto())))
        .await?;
    Ok(Json(Page::of(response)?))
}

/// Dashboard
#[utoipa::path(get, path = "/api/v1/progress/dashboard", tag = PROGRESS,
    responses((status = 200, description = "OK", body = Dashboard)))]
pub async fn dashboard(
    State(state): State<SharedState>,
    ctx: Ctx,
) -> Result<Json<Dashboard>, ApiError> {
    // The daily goal lives with the profile in session-service.
    let profile = ctx
        .call(
            state
                .session()
                .get_profile(ctx.grpc(session::GetProfileRequest {})),
        )
        .await?;
    let daily_goal = profile
        .settings
        .map(|settings| settings.daily_goal)
        .filter(|goal| *goal > 0);
    let dashboard = ctx
        .call(
            state
                .deck()
                .get_dashboard(ctx.grpc(pb::GetDashboardRequest { daily_goal })),
        )
        .await?;
    Ok(Json(dashboard.into()))
}

/// Progress of the decks the caller has started
#[utoipa::path(get, path = "/api/v1/progress/decks", tag = PROGRESS, params(DeckProgressQuery),
    responses((status = 200, description = "OK", body = DeckProgressList), Invalid))]
pub async fn deck_progress_list(
    State(state): State<SharedState>,
    ctx: Ctx,
    mut params: Params,
) -> Result<Json<DeckProgressList>, ApiError> {
    let DeckProgressQuery { page, page_size } = DeckProgressQuery::parse(&mut params);
    params.finish()?;
    let request = pb::ListDeckProgressRequest { page, page_size };
    let response = ctx
        .call(state.deck().list_deck_progress(ctx.grpc(request)))
        .await?;
    Ok(Json(Page::of(response)?))
}

/// Progress of one started deck
#[utoipa::path(get, path = "/api/v1/progress/decks/{deck_id}", tag = PROGRESS,
    params(("deck_id" = String, Path, format = Uuid)),
    responses((status = 200, description = "OK", body = DeckProgressDetail), NotFound,
        Invalid))]
pub async fn deck_progress(
    State(state): State<SharedState>,
    ctx: Ctx,
    Path(deck_id): Path<String>,
) -> Result<Json<DeckProgressDetail>, ApiError> {
    let deck_id = path_id("deck_id", &deck_id)?;
    let detail = ctx
        .call(
            state
                .deck()
                .get_deck_progress(ctx.grpc(pb::GetDeckProgressRequest { deck_id })),
        )
        .await?;
    Ok(Json(detail.try_into()?))
}

/// Daily statistics over a period
#[utoipa::path(get, path = "/api/v1/progress/trends", tag = PROGRESS, params(TrendsQuery),
    responses((status = 200, description = "OK", body = Trends), Invalid))]
pub async fn trends(
    State(state): State<SharedState>,
    ctx: Ctx,
    mut params: Params,
) -> Result<Json<Trends>, ApiError> {
    let query = TrendsQuery::parse(&mut params);
    params.finish()?;
    let trends = ctx
        .call(state.deck().get_trends(ctx.grpc(query.into_proto())))
        .await?;
    Ok(Json(trends.try_into()?))
}
