//! Health, key set and OpenAPI document: no auth, no rate limit. (Metrics are on the
//! metrics port only.)

use std::{sync::LazyLock, time::Duration};

use axum::{
    Json,
    body::Bytes,
    extract::State,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, StatusCode, header};
use tokio::time::Instant;

use crate::{
    error::ApiError,
    extract::Ctx,
    state::SharedState,
    wire::{
        Timestamp,
        health::{
            Alive, Check, CheckStatus, Health, HealthChecks, Jwk, Jwks, Live, Overall, Readiness,
            Ready, ReadyChecks,
        },
    },
};

const TAG: &str = "health";

/// Longest wait for one dependency's answer in a health check.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness
#[utoipa::path(get, path = "/health/live", tag = TAG,
    responses((status = 200, description = "OK", body = Live)))]
pub async fn live() -> Json<Live> {
    Json(Live {
        status: Alive::Alive,
        timestamp: Timestamp::now(),
    })
}

/// Outcome of one dependency check.
struct Outcome {
    ok: bool,
    latency_ms: u64,
}

impl Outcome {
    fn check(&self) -> Check {
        Check {
            status: if self.ok {
                CheckStatus::Healthy
            } else {
                CheckStatus::Unhealthy
            },
            latency_ms: self.latency_ms,
            message: (!self.ok).then_some("unavailable"),
        }
    }
}

async fn check<F: std::future::Future<Output = Result<(), String>>>(check: F) -> Outcome {
    let started = Instant::now();
    // Redis's check has no deadline of its own.
    let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
    };
    let latency_ms = started.elapsed().as_millis() as u64;
    if let Err(error) = &outcome {
        tracing::warn!(%error, "health check failed");
    }
    Outcome {
        ok: outcome.is_ok(),
        latency_ms,
    }
}

/// Readiness: both services serving
#[utoipa::path(get, path = "/health/ready", tag = TAG,
    responses((status = 200, description = "ready", body = Ready),
        (status = 503, description = "not ready", body = Ready)))]
pub async fn ready(State(state): State<SharedState>) -> Response {
    let (session, deck) = tokio::join!(
        check(state.session_health.clone().require_ready(CHECK_TIMEOUT)),
        check(state.deck_health.clone().require_ready(CHECK_TIMEOUT))
    );
    let ready = session.ok && deck.ok;
    let body = Ready {
        status: if ready {
            Readiness::Ready
        } else {
            Readiness::NotReady
        },
        timestamp: Timestamp::now(),
        checks: ReadyChecks {
            session_service: session.ok,
            deck_service: deck.ok,
        },
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Health of the gateway and its dependencies
#[utoipa::path(get, path = "/health", tag = TAG,
    responses((status = 200, description = "healthy or degraded", body = Health),
        (status = 503, description = "unhealthy", body = Health)))]
pub async fn health(State(state): State<SharedState>) -> Response {
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
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, Overall::Unhealthy),
        (true, false) => (StatusCode::OK, Overall::Degraded),
        (true, true) => (StatusCode::OK, Overall::Healthy),
    };
    let body = Health {
        status: overall,
        version: env!("CARGO_PKG_VERSION"),
        timestamp: Timestamp::now(),
        uptime_seconds: state.started.elapsed().as_secs(),
        checks: HealthChecks {
            session_service: session.check(),
            deck_service: deck.check(),
            rate_limit_redis: redis.check(),
        },
    };
    (status, Json(body)).into_response()
}

/// Public keys that verify access tokens
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = TAG,
    responses((status = 200, description = "OK", body = Jwks,
        headers(("Cache-Control" = String, description = "public, max-age=300")))))]
pub async fn jwks(State(state): State<SharedState>, ctx: Ctx) -> Result<Response, ApiError> {
    let keys = match &state.static_jwks {
        Some(keys) => keys.iter().cloned().map(Jwk::from).collect(),
        None => {
            let request = ctx.grpc(proto::session::v1::GetPublicKeysRequest {});
            let keys = ctx.call(state.session().get_public_keys(request)).await?;
            keys.keys
                .into_iter()
                .map(|key| Jwk::from(common::auth::PublicJwk::from(key)))
                .collect()
        }
    };
    let mut response = Json(Jwks { keys }).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(response)
}

/// The document, generated once: it depends on the code only.
#[allow(
    clippy::expect_used,
    reason = "the OpenAPI types serialize to JSON (string keys only); a test serves the document"
)]
pub static DOCUMENT: LazyLock<Bytes> = LazyLock::new(|| {
    let document = crate::routes::document();
    Bytes::from(serde_json::to_vec(&document).expect("an OpenAPI document serializes"))
});

/// This document
#[utoipa::path(get, path = "/openapi.json", tag = TAG,
    responses((status = 200, description = "The OpenAPI 3.1 document of this API",
        content_type = "application/json", body = Object)))]
pub async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        DOCUMENT.clone(),
    )
        .into_response()
}
