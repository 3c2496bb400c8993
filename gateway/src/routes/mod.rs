//! The router: every route of HTTP_API.md, grouped by the layers they need, and the
//! OpenAPI document generated from the same groups ([`document`]).
//!
//! - auth routes without a token (register, login, google, refresh): per-IP limit,
//!   `Cache-Control: no-store` (their answers carry tokens);
//! - every other `/api/v1` route: bearer token, then the per-user, per-endpoint limit,
//!   `Cache-Control: private, no-cache`; the GETs of a deck, a card and their lists
//!   also get an `ETag` and answer 304 to `If-None-Match` ([`caching`]);
//! - health, JWKS, OpenAPI: neither. (Metrics are on the metrics port only.)
//!
//! Each group is an utoipa-axum `OpenApiRouter`: registering a handler adds its route to
//! the router and its operation to the document, and the group adds to the document what
//! its layers answer ([`crate::openapi`]). The layers need the state, the document does
//! not: [`document`] builds the same groups without their layers.
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
    routing::MethodRouter,
};
use http::{HeaderName, HeaderValue, Method, header};
use tower::util::MapResponseLayer;
use tower_http::{
    compression::{CompressionLayer, predicate::SizeAbove},
    cors::{AllowOrigin, CorsLayer},
    limit::RequestBodyLimitLayer,
    set_header::SetResponseHeaderLayer,
};
use utoipa::openapi::OpenApi;
use utoipa_axum::{
    router::{OpenApiRouter, UtoipaMethodRouter, UtoipaMethodRouterExt},
    routes,
};

use crate::{
    caching::{self, COMPRESS_MIN_BYTES, NO_STORE, PRIVATE_NO_CACHE},
    config::Origins,
    middleware::{MAX_BODY_BYTES, authenticate, limit_api, limit_auth, not_found, request_context},
    openapi,
    state::SharedState,
};

type Group = OpenApiRouter<SharedState>;
type Route = MethodRouter<SharedState>;

/// The OpenAPI document of every route (what `/openapi.json` serves).
pub fn document() -> OpenApi {
    OpenApiRouter::with_openapi(openapi::frame())
        .merge(by_ip(None))
        .merge(authenticated(None))
        .merge(open())
        .into_openapi()
}

pub fn router(state: SharedState, origins: &Origins) -> Router {
    // Built now, so a document that cannot be generated stops the start.
    std::sync::LazyLock::force(&health::DOCUMENT);
    let (routes, _document) = OpenApiRouter::new()
        .merge(by_ip(Some(&state)))
        .merge(authenticated(Some(&state)))
        .merge(open())
        .split_for_parts();

    routes
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

/// One group: its routes, each wrapped by `layers`, and `document` adding what the
/// layers answer. Layers go on each method router (`route_layer`), not on the Router:
/// a wrong method then gets its 405 without being authenticated or counted against a
/// rate limit. They run outside-in in reverse order of adding.
fn group(
    document: fn(&mut OpenApi),
    routes: impl IntoIterator<Item = UtoipaMethodRouter<SharedState>>,
    layers: impl Fn(Route) -> Route,
) -> Group {
    let mut group = routes
        .into_iter()
        .fold(OpenApiRouter::default(), |group, route| {
            group.routes(route.map(&layers))
        });
    document(group.get_openapi_mut());
    group
}

/// register, login, google, refresh: no token; limited per client IP; `no-store`.
/// Without a state: the routes of the document, without their layers.
fn by_ip(state: Option<&SharedState>) -> Group {
    let routes = [
        routes!(auth::register),
        routes!(auth::login),
        routes!(auth::google),
        routes!(auth::refresh),
    ];
    group(openapi::limited_by_ip, routes, |route| match state {
        None => route,
        Some(state) => route
            .route_layer(from_fn_with_state(state.clone(), limit_auth))
            .route_layer(SetResponseHeaderLayer::overriding(
                header::CACHE_CONTROL,
                HeaderValue::from_static(NO_STORE),
            ))
            .route_layer(SetResponseHeaderLayer::overriding(
                header::PRAGMA,
                HeaderValue::from_static("no-cache"),
            )),
    })
}

/// Every other `/api/v1` route: bearer token, then the per-user, per-endpoint limit;
/// `private, no-cache`. Without a state: the routes of the document.
fn authenticated(state: Option<&SharedState>) -> Group {
    let routes = [
        routes!(auth::logout),
        routes!(auth::logout_all),
        routes!(auth::list_sessions),
        routes!(auth::revoke_session),
        routes!(auth::me, auth::update_me),
        tagged(routes!(decks::list_decks)),
        routes!(decks::create_deck),
        routes!(decks::search_decks),
        tagged(routes!(decks::get_deck)),
        routes!(decks::update_deck, decks::delete_deck),
        tagged(routes!(decks::list_cards)),
        routes!(decks::create_card),
        routes!(decks::search_cards),
        routes!(decks::create_cards),
        tagged(routes!(decks::get_card)),
        routes!(decks::update_card, decks::delete_card),
        routes!(study::queue_all),
        routes!(study::queue_deck),
        routes!(study::stats),
        routes!(study::initialize),
        routes!(study::initialize_deck),
        routes!(study::review, study::list_reviews),
        routes!(study::review_bulk),
        routes!(study::dashboard),
        routes!(study::deck_progress_list),
        routes!(study::deck_progress),
        routes!(study::trends),
    ];
    group(openapi::authenticated, routes, |route| match state {
        None => route,
        Some(state) => route
            .route_layer(from_fn_with_state(state.clone(), limit_api))
            .route_layer(from_fn_with_state(state.clone(), authenticate))
            .route_layer(SetResponseHeaderLayer::if_not_present(
                header::CACHE_CONTROL,
                HeaderValue::from_static(PRIVATE_NO_CACHE),
            )),
    })
}

/// Health, JWKS, OpenAPI: no token, no limit.
fn open() -> Group {
    let routes = [
        routes!(health::health),
        routes!(health::live),
        routes!(health::ready),
        routes!(health::jwks),
        routes!(health::openapi),
    ];
    group(openapi::open, routes, |route| route)
}

/// A GET whose 200 carries an `ETag` and that answers 304 to a matching
/// `If-None-Match` ([`caching::conditional_get`]). Only on the GET it wraps: the methods
/// registered beside it on the same path are not tagged.
fn tagged(route: UtoipaMethodRouter<SharedState>) -> UtoipaMethodRouter<SharedState> {
    let (schemas, mut paths, method_router) = route;
    openapi::tagged(&mut paths);
    (
        schemas,
        paths,
        method_router.route_layer(from_fn(caching::conditional_get)),
    )
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
