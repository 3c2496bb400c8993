//! Study queue, reviews and progress (deck-service; the dashboard also reads the
//! daily goal from session-service).

use axum::{
    Json,
    extract::{Path, State},
};
use proto::{deck::v1 as pb, session::v1 as session};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    convert,
    error::ApiError,
    extract::{ApiJson, Ctx, Params, Validator, path_id},
    routes::decks::uuid_list,
    state::AppState,
};

type JsonResult = Result<Json<Value>, ApiError>;

pub async fn queue_all(state: State<AppState>, ctx: Ctx, params: Params) -> JsonResult {
    queue(state, ctx, params, None).await
}

pub async fn queue_deck(
    state: State<AppState>,
    ctx: Ctx,
    Path(deck_id): Path<String>,
    params: Params,
) -> JsonResult {
    let deck_id = path_id("deck_id", &deck_id)?;
    queue(state, ctx, params, Some(deck_id)).await
}

async fn queue(
    State(state): State<AppState>,
    ctx: Ctx,
    mut params: Params,
    deck_id: Option<String>,
) -> JsonResult {
    let limit = params.int("limit", 20, 1, 100);
    let include_new = params.boolean("include_new", true);
    let new_cards_limit = params.int("new_cards_limit", 10, 0, 50);
    let include_early_practice = params.boolean("include_early_practice", false);
    let early_practice_limit = params.int("early_practice_limit", 10, 0, 50);
    params.finish()?;
    let request = pb::GetStudyQueueRequest {
        deck_id,
        limit: limit as u32,
        include_new: Some(include_new),
        new_cards_limit: Some(new_cards_limit as u32),
        include_early_practice,
        early_practice_limit: Some(early_practice_limit as u32),
    };
    let queue = ctx
        .call(state.deck().get_study_queue(ctx.grpc(request)))
        .await?;
    Ok(Json(convert::study_queue(queue)))
}

pub async fn stats(State(state): State<AppState>, ctx: Ctx, mut params: Params) -> JsonResult {
    let deck_id = params.optional_uuid("deck_id");
    params.finish()?;
    let stats = ctx
        .call(
            state
                .deck()
                .get_study_stats(ctx.grpc(pb::GetStudyStatsRequest { deck_id })),
        )
        .await?;
    Ok(Json(convert::study_stats(stats)))
}

#[derive(Debug, Deserialize)]
pub struct InitializeBody {
    deck_id: String,
    card_ids: Vec<String>,
}

pub async fn initialize(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<InitializeBody>,
) -> JsonResult {
    let mut check = Validator::new();
    let deck_id = check.uuid("deck_id", &body.deck_id);
    if body.card_ids.is_empty() || body.card_ids.len() > 100 {
        check.error("card_ids", "must hold between 1 and 100 ids");
    }
    let card_ids = uuid_list(&mut check, "card_ids", &body.card_ids);
    check.finish()?;
    let request = pb::InitializeStudyRequest {
        deck_id,
        card_ids,
        all_cards: false,
    };
    let response = ctx
        .call(state.deck().initialize_study(ctx.grpc(request)))
        .await?;
    Ok(Json(convert::initialize(response)))
}

pub async fn initialize_deck(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(deck_id): Path<String>,
) -> JsonResult {
    let deck_id = path_id("deck_id", &deck_id)?;
    let request = pb::InitializeStudyRequest {
        deck_id,
        card_ids: Vec::new(),
        all_cards: true,
    };
    let response = ctx
        .call(state.deck().initialize_study(ctx.grpc(request)))
        .await?;
    Ok(Json(convert::initialize(response)))
}

#[derive(Debug, Deserialize)]
pub struct ReviewBody {
    card_id: String,
    quality: i64,
    time_taken: i64,
}

impl ReviewBody {
    fn parse(self, check: &mut Validator, prefix: &str) -> pb::SubmitReviewRequest {
        let card_id = check.uuid(&format!("{prefix}card_id"), &self.card_id);
        check.range(&format!("{prefix}quality"), self.quality, 0, 5);
        check.range(
            &format!("{prefix}time_taken"),
            self.time_taken,
            0,
            i64::from(i32::MAX),
        );
        pb::SubmitReviewRequest {
            card_id,
            quality: self.quality.clamp(0, 5) as i32,
            time_taken: self.time_taken.clamp(0, i64::from(i32::MAX)) as i32,
        }
    }
}

pub async fn review(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<ReviewBody>,
) -> JsonResult {
    let mut check = Validator::new();
    let request = body.parse(&mut check, "");
    check.finish()?;
    let result = ctx
        .call(state.deck().submit_review(ctx.grpc(request)))
        .await?;
    Ok(Json(convert::review_result(result)))
}

#[derive(Debug, Deserialize)]
pub struct BulkReviewBody {
    deck_id: String,
    session_id: String,
    reviews: Vec<ReviewBody>,
}

pub async fn review_bulk(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<BulkReviewBody>,
) -> JsonResult {
    let mut check = Validator::new();
    let deck_id = check.uuid("deck_id", &body.deck_id);
    check.length("session_id", &body.session_id, 1, 100);
    if body.reviews.is_empty() || body.reviews.len() > 100 {
        check.error("reviews", "must hold between 1 and 100 reviews");
    }
    let reviews: Vec<_> = body
        .reviews
        .into_iter()
        .enumerate()
        .map(|(index, review)| review.parse(&mut check, &format!("reviews[{index}].")))
        .collect();
    check.finish()?;
    let request = pb::SubmitReviewsRequest {
        deck_id,
        session_id: body.session_id,
        reviews,
    };
    let response = ctx
        .call(state.deck().submit_reviews(ctx.grpc(request)))
        .await?;
    Ok(Json(convert::bulk_reviews(response)))
}

pub async fn list_reviews(
    State(state): State<AppState>,
    ctx: Ctx,
    mut params: Params,
) -> JsonResult {
    let start_date = params.optional_date("start_date");
    let end_date = params.optional_date("end_date");
    let (page, page_size) = params.page(50, 100);
    if let (Some(start), Some(end)) = (&start_date, &end_date)
        && start > end
    {
        params
            .check
            .error("end_date", "must not be before start_date");
    }
    params.finish()?;
    let request = pb::ListReviewsRequest {
        start_date,
        end_date,
        page,
        page_size,
    };
    let response = ctx
        .call(state.deck().list_reviews(ctx.grpc(request)))
        .await?;
    Ok(Json(json!({
        "total": response.total,
        "page": response.page,
        "page_size": response.page_size,
        "reviews": response.reviews.into_iter().map(convert::review).collect::<Vec<_>>(),
    })))
}

pub async fn dashboard(State(state): State<AppState>, ctx: Ctx) -> JsonResult {
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
    Ok(Json(convert::dashboard(dashboard)))
}

pub async fn deck_progress_list(
    State(state): State<AppState>,
    ctx: Ctx,
    mut params: Params,
) -> JsonResult {
    let (page, page_size) = params.page(20, 100);
    params.finish()?;
    let request = pb::ListDeckProgressRequest { page, page_size };
    let response = ctx
        .call(state.deck().list_deck_progress(ctx.grpc(request)))
        .await?;
    Ok(Json(json!({
        "total": response.total,
        "page": response.page,
        "page_size": response.page_size,
        "decks": response.decks.into_iter().map(convert::deck_progress_summary).collect::<Vec<_>>(),
    })))
}

pub async fn deck_progress(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(deck_id): Path<String>,
) -> JsonResult {
    let deck_id = path_id("deck_id", &deck_id)?;
    let detail = ctx
        .call(
            state
                .deck()
                .get_deck_progress(ctx.grpc(pb::GetDeckProgressRequest { deck_id })),
        )
        .await?;
    Ok(Json(convert::deck_progress_detail(detail)))
}

pub async fn trends(State(state): State<AppState>, ctx: Ctx, mut params: Params) -> JsonResult {
    let period = params
        .choice("period", |value| match value {
            "week" | "month" | "year" => Ok(value.to_owned()),
            _ => Err("must be one of week, month, year".to_owned()),
        })
        .unwrap_or_else(|| "week".to_owned());
    let deck_id = params.optional_uuid("deck_id");
    params.finish()?;
    let trends = ctx
        .call(
            state
                .deck()
                .get_trends(ctx.grpc(pb::GetTrendsRequest { period, deck_id })),
        )
        .await?;
    Ok(Json(convert::trends(trends)))
}
