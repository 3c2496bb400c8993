//! The router: every route of HTTP_API.md, grouped by the layers they need.
//!
//! - auth routes without a token (register, login, google, refresh): per-IP limit,
//!   `Cache-Control: no-store` (their answers carry tokens);
//! - every other `/api/v1` route: bearer token, then the per-user, per-endpoint limit,
//!   `Cache-Control: private, no-cache`; the GETs of a deck, a card and their lists
//!   also get an `ETag` and answer 304 to `If-None-Match` ([`caching`]);
//! - health, JWKS, OpenAPI: neither. (Metrics are on the metrics port only.)
//!
//! Around all of them: body limit, CORS, the request-id layer that also renders every
//! error as a problem body, `Vary: Accept-Encoding`, and outermost compression.

pub mod auth;
pub mod decks;
pub mod health;
pub mod study;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    middleware::{from_fn, from_fn_with_state},
    routing::{MethodRouter, delete, get, post},
};
use http::{HeaderName, HeaderValue, Method, header};
use tower::util::MapResponseLayer;
use tower_http::{
    compression::{CompressionLayer, predicate::SizeAbove},
    cors::{AllowOrigin, CorsLayer},
    limit::RequestBodyLimitLayer,
    set_header::SetResponseHeaderLayer,
};

use crate::{
    caching::{self, COMPRESS_MIN_BYTES, NO_STORE, PRIVATE_NO_CACHE},
    config::Origins,
    middleware::{MAX_BODY_BYTES, authenticate, limit_api, limit_auth, not_found, request_context},
    state::AppState,
};

/// Every (method, path) the router serves, in OpenAPI order; a test holds the OpenAPI
/// document and the router to this list.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/google"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/logout-all"),
    ("GET", "/api/v1/auth/sessions"),
    ("DELETE", "/api/v1/auth/sessions/{session_id}"),
    ("GET", "/api/v1/auth/me"),
    ("PATCH", "/api/v1/auth/me"),
    ("GET", "/api/v1/decks"),
    ("POST", "/api/v1/decks"),
    ("GET", "/api/v1/decks/search"),
    ("GET", "/api/v1/decks/{id}"),
    ("PATCH", "/api/v1/decks/{id}"),
    ("DELETE", "/api/v1/decks/{id}"),
    ("GET", "/api/v1/cards"),
    ("POST", "/api/v1/cards"),
    ("GET", "/api/v1/cards/search"),
    ("POST", "/api/v1/cards/bulk"),
    ("GET", "/api/v1/cards/{id}"),
    ("PATCH", "/api/v1/cards/{id}"),
    ("DELETE", "/api/v1/cards/{id}"),
    ("GET", "/api/v1/study/queue"),
    ("GET", "/api/v1/study/queue/{deck_id}"),
    ("GET", "/api/v1/study/stats"),
    ("POST", "/api/v1/study/initialize"),
    ("POST", "/api/v1/study/initialize/{deck_id}"),
    ("POST", "/api/v1/reviews"),
    ("GET", "/api/v1/reviews"),
    ("POST", "/api/v1/reviews/bulk"),
    ("GET", "/api/v1/progress/dashboard"),
    ("GET", "/api/v1/progress/decks"),
    ("GET", "/api/v1/progress/decks/{deck_id}"),
    ("GET", "/api/v1/progress/trends"),
    ("GET", "/health"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/openapi.json"),
];

pub fn router(state: AppState, origins: &Origins) -> Router {
    // Layers go on each method router, not on the Router: a wrong method then gets its
    // 405 without being authenticated or counted against a rate limit.
    let limited_by_ip = |route: MethodRouter<AppState>| {
        route
            .route_layer(from_fn_with_state(state.clone(), limit_auth))
            .route_layer(SetResponseHeaderLayer::overriding(
                header::CACHE_CONTROL,
                HeaderValue::from_static(NO_STORE),
            ))
            .route_layer(SetResponseHeaderLayer::overriding(
                header::PRAGMA,
                HeaderValue::from_static("no-cache"),
            ))
    };
    // Layers run outside-in in reverse order of adding: authenticate, then limit.
    let authenticated = |route: MethodRouter<AppState>| {
        route
            .route_layer(from_fn_with_state(state.clone(), limit_api))
            .route_layer(from_fn_with_state(state.clone(), authenticate))
            .route_layer(SetResponseHeaderLayer::if_not_present(
                header::CACHE_CONTROL,
                HeaderValue::from_static(PRIVATE_NO_CACHE),
            ))
    };
    // Only on the GET it wraps: the methods chained after it are not tagged.
    let tagged =
        |route: MethodRouter<AppState>| route.route_layer(from_fn(caching::conditional_get));

    let public_auth = Router::new()
        .route("/api/v1/auth/register", limited_by_ip(post(auth::register)))
        .route("/api/v1/auth/login", limited_by_ip(post(auth::login)))
        .route("/api/v1/auth/google", limited_by_ip(post(auth::google)))
        .route("/api/v1/auth/refresh", limited_by_ip(post(auth::refresh)));

    let protected = Router::new()
        .route("/api/v1/auth/logout", authenticated(post(auth::logout)))
        .route(
            "/api/v1/auth/logout-all",
            authenticated(post(auth::logout_all)),
        )
        .route(
            "/api/v1/auth/sessions",
            authenticated(get(auth::list_sessions)),
        )
        .route(
            "/api/v1/auth/sessions/{session_id}",
            authenticated(delete(auth::revoke_session)),
        )
        .route(
            "/api/v1/auth/me",
            authenticated(get(auth::me).patch(auth::update_me)),
        )
        .route(
            "/api/v1/decks",
            authenticated(tagged(get(decks::list_decks)).post(decks::create_deck)),
        )
        .route(
            "/api/v1/decks/search",
            authenticated(get(decks::search_decks)),
        )
        .route(
            "/api/v1/decks/{id}",
            authenticated(
                tagged(get(decks::get_deck))
                    .patch(decks::update_deck)
                    .delete(decks::delete_deck),
            ),
        )
        .route(
            "/api/v1/cards",
            authenticated(tagged(get(decks::list_cards)).post(decks::create_card)),
        )
        .route(
            "/api/v1/cards/search",
            authenticated(get(decks::search_cards)),
        )
        .route(
            "/api/v1/cards/bulk",
            authenticated(post(decks::create_cards)),
        )
        .route(
            "/api/v1/cards/{id}",
            authenticated(
                tagged(get(decks::get_card))
                    .patch(decks::update_card)
                    .delete(decks::delete_card),
            ),
        )
        .route("/api/v1/study/queue", authenticated(get(study::queue_all)))
        .route(
            "/api/v1/study/queue/{deck_id}",
            authenticated(get(study::queue_deck)),
        )
        .route("/api/v1/study/stats", authenticated(get(study::stats)))
        .route(
            "/api/v1/study/initialize",
            authenticated(post(study::initialize)),
        )
        .route(
            "/api/v1/study/initialize/{deck_id}",
            authenticated(post(study::initialize_deck)),
        )
        .route(
            "/api/v1/reviews",
            authenticated(post(study::review).get(study::list_reviews)),
        )
        .route(
            "/api/v1/reviews/bulk",
            authenticated(post(study::review_bulk)),
        )
        .route(
            "/api/v1/progress/dashboard",
            authenticated(get(study::dashboard)),
        )
        .route(
            "/api/v1/progress/decks",
            authenticated(get(study::deck_progress_list)),
        )
        .route(
            "/api/v1/progress/decks/{deck_id}",
            authenticated(get(study::deck_progress)),
        )
        .route("/api/v1/progress/trends", authenticated(get(study::trends)));

    let open = Router::new()
        .route("/health", get(health::health))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/.well-known/jwks.json", get(health::jwks))
        .route("/openapi.json", get(health::openapi));

    Router::new()
        .merge(public_auth)
        .merge(protected)
        .merge(open)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(cors(origins))
        .layer(from_fn_with_state(state.clone(), request_context))
        // Every answer may be compressed (any body can grow past the threshold), so
        // caches must key on Accept-Encoding; set before compression, which then
        // does not add a second one.
        .layer(SetResponseHeaderLayer::appending(
            header::VARY,
            HeaderValue::from_static("accept-encoding"),
        ))
        // Outside the problem rendering, which rewrites bodies.
        .layer(
            CompressionLayer::new()
                .zstd(true)
                .br(true)
                .gzip(true)
                .compress_when(SizeAbove::new(COMPRESS_MIN_BYTES)),
        )
        .layer(MapResponseLayer::new(caching::coded_etag))
        .with_state(state)
}

/// CORS for the configured origins, with credentials; the request id and the
/// rate-limit headers are readable by the browser app.
fn cors(origins: &Origins) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins.0.clone()))
        .allow_credentials(true)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("x-ratelimit-limit"),
            HeaderName::from_static("x-ratelimit-remaining"),
            HeaderName::from_static("x-ratelimit-reset"),
            HeaderName::from_static("ratelimit"),
            HeaderName::from_static("ratelimit-policy"),
            header::RETRY_AFTER,
        ])
        .max_age(std::time::Duration::from_secs(600))
}
