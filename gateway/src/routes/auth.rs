//! `/api/v1/auth`: register, login, refresh, logout, sessions and the profile
//! (session-service).

use axum::{
    Json,
    extract::{Path, State},
    response::{IntoResponse, Response},
};
use http::StatusCode;
use proto::session::v1 as pb;
use serde::Deserialize;
use serde_json::json;

use crate::{
    convert,
    error::ApiError,
    extract::{ApiJson, Ctx, Validator, nullable, path_id},
    state::AppState,
};

#[derive(Debug, Deserialize)]
pub struct RegisterBody {
    email: String,
    password: String,
    full_name: String,
}

/// A plausible e-mail address; session-service decides the rest (and uniqueness).
fn check_email(check: &mut Validator, email: &str) {
    let plausible = email.len() <= 255
        && !email.chars().any(char::is_whitespace)
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
    if !plausible {
        check.error("email", "must be a valid e-mail address");
    }
}

pub async fn register(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<Response, ApiError> {
    let mut check = Validator::new();
    check_email(&mut check, &body.email);
    check.length("password", &body.password, 8, 100);
    if !(body.password.chars().any(char::is_alphabetic)
        && body.password.chars().any(|c| c.is_ascii_digit()))
    {
        check.error("password", "must contain at least one letter and one digit");
    }
    check.length("full_name", &body.full_name, 1, 255);
    check.finish()?;
    let request = pb::RegisterRequest {
        email: body.email,
        password: body.password,
        full_name: body.full_name,
        client: Some(ctx.client_info()),
    };
    let pair = ctx
        .call(state.session().register(ctx.grpc(request)))
        .await?;
    Ok((StatusCode::CREATED, Json(convert::token_pair(pair))).into_response())
}

#[derive(Debug, Deserialize)]
pub struct LoginBody {
    email: String,
    password: String,
}

pub async fn login(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut check = Validator::new();
    check.length("email", &body.email, 1, 255);
    check.length("password", &body.password, 1, 1000);
    check.finish()?;
    let request = pb::LoginRequest {
        email: body.email,
        password: body.password,
        client: Some(ctx.client_info()),
    };
    let pair = ctx.call(state.session().login(ctx.grpc(request))).await?;
    Ok(Json(convert::token_pair(pair)))
}

/// Google sign-in is not configured in this deployment: always 503.
pub async fn google() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "Google sign-in is not enabled",
    )
}

#[derive(Debug, Deserialize)]
pub struct RefreshBody {
    refresh_token: String,
}

pub async fn refresh(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut check = Validator::new();
    check.length("refresh_token", &body.refresh_token, 1, 8192);
    check.finish()?;
    let request = pb::RefreshRequest {
        refresh_token: body.refresh_token,
        client: Some(ctx.client_info()),
    };
    let pair = ctx
        .call(state.session().refresh(ctx.grpc(request)))
        .await
        .map_err(refresh_error)?;
    Ok(Json(convert::token_pair(pair)))
}

/// The refresh route's 401 names why, from session-service's message prefix.
pub fn refresh_error(error: ApiError) -> ApiError {
    if error.status != StatusCode::UNAUTHORIZED {
        return error;
    }
    let detail = error.detail.to_ascii_lowercase();
    let code = [
        ("token expired", "TOKEN_EXPIRED"),
        ("token invalid", "TOKEN_INVALID"),
        ("session revoked", "SESSION_REVOKED"),
        ("refresh token reused", "REFRESH_TOKEN_REUSED"),
    ]
    .into_iter()
    .find_map(|(prefix, code)| detail.starts_with(prefix).then_some(code));
    match code {
        Some(code) => error.with_code(code),
        None => error,
    }
}

pub async fn logout(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut check = Validator::new();
    check.length("refresh_token", &body.refresh_token, 1, 8192);
    check.finish()?;
    let request = pb::LogoutRequest {
        refresh_token: body.refresh_token,
    };
    let response = ctx.call(state.session().logout(ctx.grpc(request))).await?;
    let message = if response.token_revoked {
        "Logged out successfully"
    } else {
        "Logged out; no active session matched the refresh token"
    };
    Ok(Json(
        json!({"success": true, "message": message, "token_revoked": response.token_revoked}),
    ))
}

pub async fn logout_all(
    State(state): State<AppState>,
    ctx: Ctx,
) -> Result<Json<serde_json::Value>, ApiError> {
    let response = ctx
        .call(
            state
                .session()
                .logout_all(ctx.grpc(pb::LogoutAllRequest {})),
        )
        .await?;
    let count = response.sessions_revoked;
    Ok(Json(json!({
        "success": true,
        "message": format!("Logged out from {count} session(s)"),
        "sessions_revoked": count,
    })))
}

pub async fn list_sessions(
    State(state): State<AppState>,
    ctx: Ctx,
) -> Result<Json<serde_json::Value>, ApiError> {
    let response = ctx
        .call(
            state
                .session()
                .list_sessions(ctx.grpc(pb::ListSessionsRequest {})),
        )
        .await?;
    let sessions: Vec<_> = response
        .sessions
        .into_iter()
        .map(convert::session)
        .collect();
    Ok(Json(json!({"total": sessions.len(), "sessions": sessions})))
}

pub async fn revoke_session(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(session_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let session_id = path_id("session_id", &session_id)?;
    let response = ctx
        .call(
            state
                .session()
                .revoke_session(ctx.grpc(pb::RevokeSessionRequest { session_id })),
        )
        .await?;
    Ok(Json(json!({
        "success": true,
        "message": "Session revoked successfully",
        "token_revoked": response.token_revoked,
    })))
}

pub async fn me(
    State(state): State<AppState>,
    ctx: Ctx,
) -> Result<Json<serde_json::Value>, ApiError> {
    let profile = ctx
        .call(
            state
                .session()
                .get_profile(ctx.grpc(pb::GetProfileRequest {})),
        )
        .await?;
    Ok(Json(convert::profile(profile)))
}

#[derive(Debug, Deserialize)]
pub struct ProfilePatch {
    full_name: Option<String>,
    daily_goal: Option<i64>,
    email_notifications: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    preferred_language: Option<Option<String>>,
}

pub async fn update_me(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<ProfilePatch>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut check = Validator::new();
    if let Some(name) = &body.full_name {
        check.length("full_name", name, 1, 255);
    }
    if let Some(goal) = body.daily_goal {
        check.range("daily_goal", goal, 1, 200);
    }
    if let Some(Some(language)) = &body.preferred_language
        && !matches!(language.as_str(), "en" | "el")
    {
        check.error("preferred_language", "must be \"en\" or \"el\"");
    }
    check.finish()?;
    let request = pb::UpdateProfileRequest {
        full_name: body.full_name,
        daily_goal: body.daily_goal.map(|goal| goal as u32),
        email_notifications: body.email_notifications,
        clear_preferred_language: matches!(body.preferred_language, Some(None)),
        preferred_language: body.preferred_language.flatten(),
    };
    let profile = ctx
        .call(state.session().update_profile(ctx.grpc(request)))
        .await?;
    Ok(Json(convert::profile(profile)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_401s_get_a_code_from_the_service_message_prefix() {
        for (message, code) in [
            ("token expired", "TOKEN_EXPIRED"),
            ("token invalid: bad signature", "TOKEN_INVALID"),
            ("session revoked", "SESSION_REVOKED"),
            (
                "refresh token reused; session revoked",
                "REFRESH_TOKEN_REUSED",
            ),
            ("user deactivated", "UNAUTHORIZED"),
        ] {
            let error = refresh_error(ApiError::from(tonic::Status::unauthenticated(message)));

            assert_eq!(error.code, code, "{message}");
            assert_eq!(error.status, StatusCode::UNAUTHORIZED);
        }
    }

    #[test]
    fn other_refresh_failures_keep_their_code() {
        let error = refresh_error(ApiError::from(tonic::Status::unavailable(
            "session store down",
        )));

        assert_eq!(error.code, "SERVICE_UNAVAILABLE");
    }
}
