//! `/api/v1/auth`: register, login, refresh, logout, sessions and the profile
//! (session-service).

use axum::{
    Json,
    extract::{Path, State},
};
use common::status::reason;
use http::StatusCode;
use proto::session::v1 as pb;

use crate::{
    error::ApiError,
    extract::{ApiJson, Ctx, Validator, path_id},
    openapi::{Conflict, Invalid, NotFound, Unauthorized, Unavailable},
    state::SharedState,
    wire::auth::{
        Google, Login, LogoutAllResponse, LogoutResponse, Profile, ProfilePatch, Refresh, Register,
        RevokeSessionResponse, Session, SessionList, TokenResponse,
    },
};

const TAG: &str = "auth";

/// Create an account and a first session
#[utoipa::path(post, path = "/api/v1/auth/register", tag = TAG, request_body = Register,
    responses((status = 201, description = "Created", body = TokenResponse), Conflict, Invalid))]
pub async fn register(
    State(state): State<SharedState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<Register>,
) -> Result<(StatusCode, Json<TokenResponse>), ApiError> {
    let mut check = Validator::new();
    body.validate(&mut check);
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
    Ok((StatusCode::CREATED, Json(pair.into())))
}

/// Log in
#[utoipa::path(post, path = "/api/v1/auth/login", tag = TAG, request_body = Login,
    responses((status = 200, description = "OK", body = TokenResponse), Unauthorized, Invalid))]
pub async fn login(
    State(state): State<SharedState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<Login>,
) -> Result<Json<TokenResponse>, ApiError> {
    let mut check = Validator::new();
    body.validate(&mut check);
    check.finish()?;
    let request = pb::LoginRequest {
        email: body.email,
        password: body.password,
        client: Some(ctx.client_info()),
    };
    let pair = ctx.call(state.session().login(ctx.grpc(request))).await?;
    Ok(Json(pair.into()))
}

/// Google sign-in (not enabled: always 503)
#[utoipa::path(post, path = "/api/v1/auth/google", tag = TAG, request_body = Google,
    responses(Unavailable))]
pub async fn google() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "Google sign-in is not enabled",
    )
}

/// Rotate a refresh token
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = TAG, request_body = Refresh,
    responses((status = 200, description = "OK", body = TokenResponse), Unauthorized, Invalid,
        Unavailable))]
pub async fn refresh(
    State(state): State<SharedState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<Refresh>,
) -> Result<Json<TokenResponse>, ApiError> {
    let mut check = Validator::new();
    body.validate(&mut check);
    check.finish()?;
    let request = pb::RefreshRequest {
        refresh_token: body.refresh_token,
        client: Some(ctx.client_info()),
    };
    let pair = ctx
        .call(state.session().refresh(ctx.grpc(request)))
        .await
        .map_err(refresh_error)?;
    Ok(Json(pair.into()))
}

/// The refresh route's 401 names why, from session-service's `ErrorInfo.reason`.
pub fn refresh_error(error: ApiError) -> ApiError {
    let specific = [
        reason::TOKEN_EXPIRED,
        reason::TOKEN_INVALID,
        reason::SESSION_REVOKED,
        reason::REFRESH_TOKEN_REUSED,
    ];
    match error.reason {
        Some(code) if error.status == StatusCode::UNAUTHORIZED && specific.contains(&code) => {
            error.with_code(code)
        }
        _ => error,
    }
}

/// End the session of a refresh token
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = TAG, request_body = Refresh,
    responses((status = 200, description = "OK", body = LogoutResponse), Invalid))]
pub async fn logout(
    State(state): State<SharedState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<Refresh>,
) -> Result<Json<LogoutResponse>, ApiError> {
    let mut check = Validator::new();
    body.validate(&mut check);
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
    Ok(Json(LogoutResponse {
        success: true,
        message,
        token_revoked: response.token_revoked,
    }))
}

/// End every session of the caller
#[utoipa::path(post, path = "/api/v1/auth/logout-all", tag = TAG,
    responses((status = 200, description = "OK", body = LogoutAllResponse)))]
pub async fn logout_all(
    State(state): State<SharedState>,
    ctx: Ctx,
) -> Result<Json<LogoutAllResponse>, ApiError> {
    let response = ctx
        .call(
            state
                .session()
                .logout_all(ctx.grpc(pb::LogoutAllRequest {})),
        )
        .await?;
    let count = response.sessions_revoked;
    Ok(Json(LogoutAllResponse {
        success: true,
        message: format!("Logged out from {count} session(s)"),
        sessions_revoked: count,
    }))
}

/// The caller's live sessions
#[utoipa::path(get, path = "/api/v1/auth/sessions", tag = TAG,
    responses((status = 200, description = "OK", body = SessionList)))]
pub async fn list_sessions(
    State(state): State<SharedState>,
    ctx: Ctx,
) -> Result<Json<SessionList>, ApiError> {
    let response = ctx
        .call(
            state
                .session()
                .list_sessions(ctx.grpc(pb::ListSessionsRequest {})),
        )
        .await?;
    let sessions = response
        .sessions
        .into_iter()
        .map(Session::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(SessionList {
        total: sessions.len(),
        sessions,
    }))
}

/// Revoke one of the caller's sessions
#[utoipa::path(delete, path = "/api/v1/auth/sessions/{session_id}", tag = TAG,
    params(("session_id" = String, Path, format = Uuid)),
    responses((status = 200, description = "OK", body = RevokeSessionResponse), NotFound,
        Invalid))]
pub async fn revoke_session(
    State(state): State<SharedState>,
    ctx: Ctx,
    Path(session_id): Path<String>,
) -> Result<Json<RevokeSessionResponse>, ApiError> {
    let session_id = path_id("session_id", &session_id)?;
    let response = ctx
        .call(
            state
                .session()
                .revoke_session(ctx.grpc(pb::RevokeSessionRequest { session_id })),
        )
        .await?;
    Ok(Json(RevokeSessionResponse {
        success: true,
        message: "Session revoked successfully",
        token_revoked: response.token_revoked,
    }))
}

/// The caller's profile
#[utoipa::path(get, path = "/api/v1/auth/me", tag = TAG,
    responses((status = 200, description = "OK", body = Profile), NotFound))]
pub async fn me(State(state): State<SharedState>, ctx: Ctx) -> Result<Json<Profile>, ApiError> {
    let profile = ctx
        .call(
            state
                .session()
                .get_profile(ctx.grpc(pb::GetProfileRequest {})),
        )
        .await?;
    Ok(Json(profile.try_into()?))
}

/// Update the caller's profile and settings
#[utoipa::path(patch, path = "/api/v1/auth/me", tag = TAG, request_body = ProfilePatch,
    responses((status = 200, description = "OK", body = Profile), Invalid))]
pub async fn update_me(
    State(state): State<SharedState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<ProfilePatch>,
) -> Result<Json<Profile>, ApiError> {
    let mut check = Validator::new();
    body.validate(&mut check);
    check.finish()?;
    let profile = ctx
        .call(state.session().update_profile(ctx.grpc(body.into_proto())))
        .await?;
    Ok(Json(profile.try_into()?))
}

#[cfg(test)]
mod tests {
    use common::status::{SESSION_DOMAIN, refusal};
    use tonic::Code;

    use super::*;
    use crate::error::tests::unauthenticated;

    #[test]
    fn refresh_401s_get_their_code_from_the_error_info_reason() {
        for reason in [
            reason::TOKEN_EXPIRED,
            reason::TOKEN_INVALID,
            reason::SESSION_REVOKED,
            reason::REFRESH_TOKEN_REUSED,
        ] {
            let error = refresh_error(ApiError::from(unauthenticated(reason)));

            assert_eq!(error.code, reason);
            assert_eq!(error.status, StatusCode::UNAUTHORIZED);
        }
    }

    #[test]
    fn a_refresh_401_without_a_known_reason_stays_unauthorized_whatever_its_message() {
        for status in [
            tonic::Status::unauthenticated("token expired"),
            tonic::Status::unauthenticated("user deactivated"),
            unauthenticated("SOMETHING_ELSE"),
        ] {
            let error = refresh_error(ApiError::from(status));

            assert_eq!(error.code, "UNAUTHORIZED");
        }
    }

    #[test]
    fn other_refresh_failures_keep_their_code() {
        let unavailable = refresh_error(ApiError::from(tonic::Status::unavailable(
            "session store down",
        )));
        // A reason on a non-401 does not turn it into a token code.
        let conflict = refresh_error(ApiError::from(refusal(
            Code::AlreadyExists,
            "x",
            SESSION_DOMAIN,
            reason::TOKEN_EXPIRED,
            None,
        )));

        assert_eq!(unavailable.code, "SERVICE_UNAVAILABLE");
        assert_eq!(conflict.code, "CONFLICT");
    }
}
