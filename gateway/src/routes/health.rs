//! Health, key set and OpenAPI document: no auth, no rate limit. (Metrics are on the
//! metrics port only.)

use std::time::Duration;

use axum::{
    Json,
    extract::State,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::{convert, error::ApiError, extract::Ctx, state::AppState};

/// The OpenAPI 3.1 document of this API (hand-maintained; a test checks that it lists
/// exactly the routes the router serves).
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Longest wait for one dependency's answer in a health check.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn live() -> Json<Value> {
    Json(json!({"status": "alive", "timestamp": convert::now()}))
}

/// Outcome of one dependency check.
struct Check {
    ok: bool,
    latency_ms: u64,
    message: Option<String>,
}

async fn check<F: std::future::Future<Output = Result<(), String>>>(check: F) -> Check {
    let started = Instant::now();
    // Redis's check has no deadline of its own.
    let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
    };
    let latency_ms = started.elapsed().as_millis() as u64;
    match outcome {
        Ok(()) => Check {
            ok: true,
            latency_ms,
            message: None,
        },
        Err(error) => {
            tracing::warn!(%error, "health check failed");
            Check {
                ok: false,
                latency_ms,
                message: Some("unavailable".to_owned()),
            }
        }
    }
}

pub async fn ready(State(state): State<AppState>) -> Response {
    let (session, deck) = tokio::join!(
        check(state.session_health.clone().require_ready(CHECK_TIMEOUT)),
        check(state.deck_health.clone().require_ready(CHECK_TIMEOUT))
    );
    let ready = session.ok && deck.ok;
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "timestamp": convert::now(),
        "checks": {"session_service": session.ok, "deck_service": deck.ok},
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

pub async fn health(State(state): State<AppState>) -> Response {
    let limiter = state.limiter.clone();
    let (session, deck, redis) = tokio::join!(
        check(state.session_health.clone().require_ready(CHECK_TIMEOUT)),
        check(state.deck_health.clone().require_ready(CHECK_TIMEOUT)),
        check(async move {
            limiter
                .pool()
                .ping()
                .await
                .map_err(|error| error.to_string())
        }),
    );
    // Both services are needed to answer anything; the limiter fails open, so a down
    // Redis only degrades.
    let (status, overall) = match (session.ok && deck.ok, redis.ok) {
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "unhealthy"),
        (true, false) => (StatusCode::OK, "degraded"),
        (true, true) => (StatusCode::OK, "healthy"),
    };
    let render = |check: &Check| {
        json!({
            "status": if check.ok { "healthy" } else { "unhealthy" },
            "latency_ms": check.latency_ms,
            "message": check.message,
        })
    };
    let body = json!({
        "status": overall,
        "version": env!("CARGO_PKG_VERSION"),
        "timestamp": convert::now(),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "checks": {
            "session_service": render(&session),
            "deck_service": render(&deck),
            "rate_limit_redis": render(&redis),
        },
    });
    (status, Json(body)).into_response()
}

pub async fn jwks(State(state): State<AppState>, ctx: Ctx) -> Result<Response, ApiError> {
    let keys = match &state.static_jwks {
        Some(keys) => keys.as_ref().clone(),
        None => {
            let request = ctx.grpc(proto::session::v1::GetPublicKeysRequest {});
            let keys = ctx.call(state.session().get_public_keys(request)).await?;
            keys.keys
                .into_iter()
                .map(common::auth::PublicJwk::from)
                .collect()
        }
    };
    let mut response = Json(json!({"keys": keys})).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(response)
}

pub async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}
