//! The layers every request passes: request id and problem rendering (outermost),
//! authentication, and the two rate limits.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, MatchedPath, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use common::{
    auth::{AuthError, Caller, bearer_token},
    http::BodyTimedOut,
};
use http::{HeaderValue, StatusCode, Version, header};
use tokio::time::Instant;
use tonic::metadata::{Ascii, MetadataValue};
use tracing::Instrument;

use crate::{
    error::{ApiError, Unrendered, problem_response},
    metrics::{MethodLabel, RouteLabel},
    rate_limit::Decision,
    state::{AppState, SharedState},
};

/// Name of the request id header, in and out (and the gRPC metadata key).
pub const REQUEST_ID: &str = common::grpc::REQUEST_ID_HEADER;
/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The `code` of the 408 a request whose body stalled gets.
pub const REQUEST_TIMEOUT_CODE: &str = "REQUEST_TIMEOUT";

/// The id of this request, as returned in `X-Request-ID` and sent to the services.
/// Checked once, when the request arrives, and kept in its gRPC form: each service call
/// takes a reference-counted copy instead of parsing the text again.
#[derive(Clone, Debug)]
pub struct RequestId(MetadataValue<Ascii>);

impl RequestId {
    /// The client's id when it is [`valid_request_id`], a new UUID otherwise.
    #[allow(
        clippy::expect_used,
        reason = "a hyphenated UUID is visible ASCII: always a valid metadata value"
    )]
    pub fn of(client: Option<&HeaderValue>) -> Self {
        let kept = client
            .and_then(|value| value.to_str().ok())
            .filter(|value| valid_request_id(value))
            .and_then(|value| MetadataValue::try_from(value).ok());
        Self(kept.unwrap_or_else(|| {
            MetadataValue::try_from(uuid::Uuid::new_v4().hyphenated().to_string())
                .expect("a UUID is a valid metadata value")
        }))
    }

    pub fn as_str(&self) -> &str {
        // Visible ASCII by construction, so this never falls back.
        self.0.to_str().unwrap_or_default()
    }

    /// The id as gRPC metadata (a reference count, not a copy).
    pub fn metadata(&self) -> MetadataValue<Ascii> {
        self.0.clone()
    }
}

/// When this request must be answered by.
#[derive(Clone, Copy, Debug)]
pub struct Deadline(pub Instant);

/// The client's IP (see `client_ip`).
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub IpAddr);

/// A verified caller and the token it presented, as the `authorization` metadata every
/// service call forwards (built once per request; each call takes a reference count).
#[derive(Clone, Debug)]
pub struct Auth {
    pub caller: Caller,
    pub authorization: MetadataValue<Ascii>,
}

impl Auth {
    /// `Bearer <token>`, marked sensitive so HTTP/2 never indexes it in its header
    /// tables. `None` for a token that cannot be metadata (the verifier accepted only
    /// what a JWT can be, so this does not happen).
    pub fn new(caller: Caller, token: &str) -> Option<Self> {
        let mut authorization = MetadataValue::try_from(format!("Bearer {token}")).ok()?;
        authorization.set_sensitive(true);
        Some(Self {
            caller,
            authorization,
        })
    }
}

/// A client's id is kept when it is 1–128 characters of `[A-Za-z0-9._-]`; anything
/// else could smuggle text into logs, so it is replaced.
pub fn valid_request_id(value: &str) -> bool {
    (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Outermost layer but the representation ones: picks the request id, the deadline and
/// the client IP, runs the request in a span carrying the id, answers 408 when the body
/// missed its deadline ([`BodyTimedOut`]), renders every error as a problem body with
/// that id, counts the request, and sets `X-Request-ID` on the response.
pub async fn request_context(
    State(state): State<SharedState>,
    mut request: Request,
    next: Next,
) -> Response {
    let request_id = RequestId::of(request.headers().get(REQUEST_ID));
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |info| info.0.ip());
    let client_ip = state.trusted_proxies.client_ip(peer, request.headers());
    request.extensions_mut().insert(request_id.clone());
    request
        .extensions_mut()
        .insert(Deadline(Instant::now() + state.request_timeout));
    request.extensions_mut().insert(ClientIp(client_ip));

    let span = tracing::info_span!(
        "http",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id.as_str(),
        client_ip = %client_ip,
        status = tracing::field::Empty,
    );
    let started = Instant::now();
    let method = MethodLabel::of(request.method());
    let route = RouteLabel::of(request.extensions().get::<MatchedPath>());
    let http1 = request.version() < Version::HTTP_2;
    let body_timed_out = request.extensions().get::<BodyTimedOut>().cloned();
    let mut response = next.run(request).instrument(span.clone()).await;
    // Whatever the handler made of the failed read (axum calls it a bad body), the
    // client was too slow: 408, and the connection is not reused (RFC 9110 §15.5.9).
    if body_timed_out.is_some_and(|timed_out| timed_out.fired()) {
        response = ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "The request body was not received in time",
        )
        .with_code(REQUEST_TIMEOUT_CODE)
        .into_response();
        if http1 {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
    let mut response = render_problem(response, request_id.as_str());
    span.record("status", response.status().as_u16());
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state
        .metrics
        .record(method, route, status, elapsed.as_secs_f64());
    span.in_scope(|| tracing::info!(elapsed_ms = elapsed.as_millis() as u64, "request finished"));
    if let Ok(value) = HeaderValue::from_str(request_id.as_str()) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// Gives every error response the problem shape: an [`ApiError`] is rendered with the
/// request id; an error produced by a layer (axum's 405 with `Allow`, the body limit's
/// 413) is rewritten, keeping its headers.
fn render_problem(mut response: Response, request_id: &str) -> Response {
    let error = match response.extensions_mut().remove::<Unrendered>() {
        Some(Unrendered(error)) => error,
        None if response.status().is_client_error() || response.status().is_server_error() => {
            // A JSON body is a deliberate answer (e.g. /health's 503); plain or empty
            // bodies come from layers and get the problem shape.
            let is_json = response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|value| {
                    value.as_bytes().starts_with(b"application/")
                        && value.as_bytes().ends_with(b"json")
                });
            if is_json {
                return response;
            }
            ApiError::new(response.status(), default_detail(response.status()))
        }
        None => return response,
    };
    let (mut parts, _) = response.into_parts();
    let rendered = problem_response(&error, request_id);
    parts.status = rendered.status();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in rendered.headers() {
        parts.headers.insert(name, value.clone());
    }
    Response::from_parts(parts, rendered.into_body())
}

fn default_detail(status: StatusCode) -> String {
    match status {
        StatusCode::NOT_FOUND => "Not found".into(),
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed".into(),
        StatusCode::PAYLOAD_TOO_LARGE => format!("Request body exceeds {MAX_BODY_BYTES} bytes"),
        status if status.is_server_error() => "Internal server error".into(),
        status => status.canonical_reason().unwrap_or("Error").into(),
    }
}

/// The fallback of unknown paths (including the legacy routes outside the contract).
pub async fn not_found() -> ApiError {
    ApiError::not_found("Not found")
}

/// Verifies the bearer token; on success the request carries an [`Auth`].
pub async fn authenticate(
    State(state): State<SharedState>,
    mut request: Request,
    next: Next,
) -> Response {
    // Only the header goes into the future: a `&Request` is not `Send`.
    let header = request.headers().get(header::AUTHORIZATION).cloned();
    match verify(&state, header).await {
        Ok(auth) => {
            request.extensions_mut().insert(auth);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

async fn verify(state: &AppState, header: Option<HeaderValue>) -> Result<Auth, ApiError> {
    let header = header.ok_or_else(|| ApiError::unauthorized("Not authenticated"))?;
    let token = header
        .to_str()
        .map_err(|_| AuthError::Malformed)
        .and_then(bearer_token)
        .map_err(auth_error)?;
    let caller = state.verifier.verify(token).await.map_err(auth_error)?;
    Auth::new(caller, token).ok_or_else(|| auth_error(AuthError::Malformed))
}

fn auth_error(error: AuthError) -> ApiError {
    match error {
        AuthError::KeysUnavailable => {
            tracing::warn!("token verification keys unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The service is temporarily unavailable; retry shortly",
            )
        }
        AuthError::Expired => ApiError::unauthorized("Token has expired"),
        AuthError::Missing => ApiError::unauthorized("Not authenticated"),
        AuthError::Malformed | AuthError::Invalid => {
            ApiError::unauthorized("Could not validate credentials")
        }
        AuthError::Revoked => ApiError::unauthorized("Token has been revoked")
            .with_code(common::status::reason::TOKEN_REVOKED),
        AuthError::RevocationUnknown => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The service is temporarily unavailable; retry shortly",
        ),
    }
}

/// The per-IP limit of the auth routes.
pub async fn limit_auth(
    State(state): State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    let ip = request
        .extensions()
        .get::<ClientIp>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |ip| ip.0);
    let decision = state.limiter.check(state.limiter.auth_key(ip)).await;
    limited(decision, request, next).await
}

/// The per-user, per-endpoint limit of the other authenticated routes, from the
/// gateway's own state (no Redis round trip); runs after [`authenticate`].
pub async fn limit_api(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let Some(auth) = request.extensions().get::<Auth>() else {
        return ApiError::unauthorized("Not authenticated").into_response();
    };
    let template = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("", MatchedPath::as_str);
    let endpoint = format!(
        "{} {}",
        request.method(),
        template.strip_prefix("/api/v1").unwrap_or(template)
    );
    let decision = state.api_limiter.check(auth.caller.user_id, &endpoint);
    limited(Some(decision), request, next).await
}

/// Runs the request if `decision` admits it (or, `None`, if no check could be made) and
/// writes the limit's headers.
async fn limited(decision: Option<Decision>, request: Request, next: Next) -> Response {
    let Some(decision) = decision else {
        return next.run(request).await;
    };
    let mut response = if decision.allowed {
        next.run(request).await
    } else {
        decision.rejection().into_response()
    };
    decision.write_headers(&mut response);
    response
}

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::*;

    #[test]
    fn request_ids_are_kept_only_when_short_and_plain() {
        assert!(valid_request_id("abc-123_X.y"));
        assert!(valid_request_id(&"a".repeat(128)));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id(&"a".repeat(129)));
        assert!(!valid_request_id("has space"));
        assert!(!valid_request_id("new\nline"));
        assert!(!valid_request_id("ünï"));
    }

    #[test]
    fn a_plain_405_from_a_layer_becomes_a_problem_keeping_allow() {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET,HEAD"));

        let rendered = render_problem(response, "rid");

        assert_eq!(rendered.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(rendered.headers()[header::ALLOW], "GET,HEAD");
        assert_eq!(
            rendered.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }
}
