//! The OpenAPI 3.1 document served at `/openapi.json`, generated, never written by hand:
//!
//! - each handler's `#[utoipa::path]` names its route, parameters, body and the answers it
//!   makes itself; the body types are [`crate::wire`]'s, whose schemas are derived;
//! - [`crate::routes`] registers the handlers through utoipa-axum's `OpenApiRouter`, so
//!   the document's paths are the router's own;
//! - the answers a layer makes (401 and 429 of authentication and rate limits, 408 and 413
//!   of a body that came late or too big, `Cache-Control`, the ETag and 304 of a tagged
//!   GET) are added here, by the same functions that group the routes under those layers.

use std::collections::BTreeMap;

use utoipa::{
    IntoResponses, PartialSchema, ToSchema,
    openapi::{
        ComponentsBuilder, ContentBuilder, InfoBuilder, ObjectBuilder, OpenApi, OpenApiBuilder,
        Ref, RefOr, Response, ResponseBuilder, Server, Type,
        header::HeaderBuilder,
        path::{Operation, ParameterBuilder, ParameterIn, PathItem},
        security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
    },
};

use crate::{
    caching::{NO_STORE, PRIVATE_NO_CACHE},
    error::{PROBLEM_JSON, Problem},
    wire::Timestamp,
};

/// Name of the bearer security scheme.
const BEARER: &str = "bearer";

/// The document's frame: info, server, the bearer scheme (the default of every
/// operation that does not say otherwise), and the schemas the problem answers share.
pub fn frame() -> OpenApi {
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Learn Greek Easy API")
                .version("1.0.0")
                .description(Some(DESCRIPTION))
                .build(),
        )
        .servers(Some([Server::new("/")]))
        .components(Some(
            ComponentsBuilder::new()
                .security_scheme(
                    BEARER,
                    SecurityScheme::Http(
                        HttpBuilder::new()
                            .scheme(HttpAuthScheme::Bearer)
                            .bearer_format("JWT")
                            .build(),
                    ),
                )
                .schema(Problem::name(), Problem::schema())
                .schema(Timestamp::name(), Timestamp::schema())
                .build(),
        ))
        .security(Some([bearer()]))
        .build()
}

const DESCRIPTION: &str = "HTTP API of the Learn Greek Easy gateway. Errors are RFC 9457 \
problem details (application/problem+json) with code, detail, request_id and, on validation \
failures, errors naming each bad field by its full path. Authenticated routes are rate \
limited per user and endpoint, auth routes per client IP (X-RateLimit-* headers). Responses \
of 1 KiB or more are compressed (zstd, br, gzip) when Accept-Encoding allows; every response \
carries Vary: Accept-Encoding. Authenticated responses are Cache-Control: private, no-cache; \
those carrying tokens are no-store. A request body not complete 10 s after its headers is \
answered 408. Metrics are not served on this port.";

fn bearer() -> SecurityRequirement {
    SecurityRequirement::new(BEARER, Vec::<String>::new())
}

/// A problem answer with `description`.
fn problem(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(Problem::name())))
                .build(),
        )
        .build()
}

/// The problem answers a handler may list in `#[utoipa::path(responses(...))]`, one
/// type per status.
macro_rules! problems {
    ($($(#[$doc:meta])* $name:ident = $status:literal, $description:literal;)*) => {$(
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                BTreeMap::from([($status.to_string(), problem($description).into())])
            }
        }
    )*};
}

problems! {
    /// A missing, malformed, expired or revoked token (`WWW-Authenticate: Bearer`).
    Unauthorized = 401, "Unauthorized";
    /// A superuser route called by a normal user.
    Forbidden = 403, "Forbidden";
    NotFound = 404, "Not found";
    /// The body did not arrive within the body deadline; the connection is closed.
    TimedOut = 408, "The request body was not received in time (code REQUEST_TIMEOUT); the connection is closed";
    Conflict = 409, "Conflict";
    /// Over 65,536 bytes of body.
    TooLarge = 413, "Request body too large (code PAYLOAD_TOO_LARGE)";
    /// Edge validation or a service's INVALID_ARGUMENT: `errors` names every bad field.
    Invalid = 422, "Validation error";
    /// With `Retry-After`.
    RateLimited = 429, "Rate limit exceeded";
    /// With `Retry-After`.
    Unavailable = 503, "Service unavailable";
}

/// Every operation of `document`.
fn operations(document: &mut OpenApi) -> impl Iterator<Item = &mut Operation> {
    document
        .paths
        .paths
        .values_mut()
        .flat_map(|item: &mut PathItem| {
            [
                item.get.as_mut(),
                item.put.as_mut(),
                item.post.as_mut(),
                item.delete.as_mut(),
                item.options.as_mut(),
                item.head.as_mut(),
                item.patch.as_mut(),
                item.trace.as_mut(),
            ]
        })
        .flatten()
}

/// Adds the answers of `R` to `operation`.
fn answers<R: IntoResponses>(operation: &mut Operation) {
    operation.responses.responses.extend(R::responses());
}

/// The answers of the body layers (deadline, size) on operations that read a body.
fn body_answers(operation: &mut Operation) {
    if operation.request_body.is_some() {
        answers::<TimedOut>(operation);
        answers::<TooLarge>(operation);
    }
}

/// Puts `Cache-Control: value` on every answer of `operation`.
fn cache_control(operation: &mut Operation, value: &'static str, description: &str) {
    for response in operation.responses.responses.values_mut() {
        if let RefOr::T(response) = response {
            response
                .headers
                .insert("Cache-Control".to_owned(), fixed_header(value, description));
        }
    }
}

fn fixed_header(value: &'static str, description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some([value])),
        )
        .description(Some(description))
        .build()
}

/// The routes without a token whose answers carry tokens: limited per client IP,
/// `Cache-Control: no-store`, no security.
pub fn limited_by_ip(document: &mut OpenApi) {
    for operation in operations(document) {
        answers::<RateLimited>(operation);
        body_answers(operation);
        cache_control(operation, NO_STORE, "no-store: the body carries tokens");
        operation.security = Some(Vec::new());
    }
}

/// The routes behind the bearer token and the per-user limit, `Cache-Control:
/// private, no-cache`.
pub fn authenticated(document: &mut OpenApi) {
    for operation in operations(document) {
        answers::<Unauthorized>(operation);
        answers::<RateLimited>(operation);
        body_answers(operation);
        cache_control(operation, PRIVATE_NO_CACHE, PRIVATE_NO_CACHE);
        operation.security = Some(vec![bearer()]);
    }
}

/// The open routes: no token, no limit.
pub fn open(document: &mut OpenApi) {
    for operation in operations(document) {
        operation.security = Some(Vec::new());
    }
}

/// A GET tagged by [`crate::caching::conditional_get`]: `If-None-Match`, an `ETag` on its
/// 200, and the 304.
pub fn tagged(paths: &mut utoipa::openapi::path::Paths) {
    let etag = || {
        HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(
                "Strong entity tag derived from the body; a compressed response's tag names \
                 its coding (\"<digest>-br\"). Send it back in If-None-Match to get 304 while \
                 nothing changed.",
            ))
            .build()
    };
    for item in paths.paths.values_mut() {
        let Some(operation) = item.get.as_mut() else {
            continue;
        };
        if let Some(RefOr::T(ok)) = operation.responses.responses.get_mut("200") {
            ok.headers.insert("ETag".to_owned(), etag());
        }
        operation.responses.responses.insert(
            "304".to_owned(),
            ResponseBuilder::new()
                .description(
                    "Not modified: If-None-Match names the current body. No body; ETag, \
                     Cache-Control and Vary as on the 200",
                )
                .header("ETag", etag())
                .build()
                .into(),
        );
        operation.parameters.get_or_insert_with(Vec::new).push(
            ParameterBuilder::new()
                .name("If-None-Match")
                .parameter_in(ParameterIn::Header)
                .description(Some(
                    "ETag(s) of a copy the client holds; if one names the current body, the \
                     answer is 304 without a body.",
                ))
                .schema(Some(String::schema()))
                .build(),
        );
    }
}
