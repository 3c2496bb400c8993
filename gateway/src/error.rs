//! The one error path of the gateway: every failure becomes an [`ApiError`], rendered
//! as an RFC 9457 `application/problem+json` body ([`Problem`]). gRPC statuses map to
//! HTTP by the table of HTTP_API.md ([`http_status`]); what a caller must act on (the
//! bad fields, the reason of a refusal) is read from the status's `google.rpc` details
//! ([`common::status::Details`]), never from its message. 5xx bodies never carry a
//! service's message.

use axum::{
    Json,
    response::{IntoResponse, Response},
};
use common::status::{Details, reason};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use utoipa::ToSchema;

/// 499, the de-facto "client closed request" status (CANCELLED).
pub const CLIENT_CLOSED_REQUEST: u16 = 499;
/// Seconds a client should wait after a 503 before retrying.
pub const UNAVAILABLE_RETRY_AFTER_SECONDS: u64 = 1;
/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One field that failed validation: its full path as the client sent it
/// (`page_size`, `cards[1].back_text`), and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The RFC 9457 body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Problem<'a> {
    /// Always `about:blank`: the status and `code` say what happened.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The status's reason phrase.
    pub title: &'static str,
    pub status: u16,
    /// The human message (the front end displays it).
    pub detail: &'a str,
    /// The machine code: by status, or more specific (HTTP_API.md, Errors).
    pub code: &'static str,
    /// Equals the response's `X-Request-ID`.
    pub request_id: &'a str,
    /// On validation failures: one item per bad field.
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    #[schema(inline)]
    pub errors: &'a [FieldError],
}

/// An error answer: status, machine code, human detail, optional per-field errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub retry_after: Option<u64>,
    /// The `ErrorInfo.reason` of the service's status, when it is one the gateway acts on
    /// (one of [`common::status::reason`]).
    pub reason: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            code: code_of(status),
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: match status {
                StatusCode::SERVICE_UNAVAILABLE => Some(UNAVAILABLE_RETRY_AFTER_SECONDS),
                _ => None,
            },
            reason: None,
        }
    }

    /// 422 with per-field errors; the detail repeats the first one for clients that
    /// only display `detail`.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.first() {
            Some(first) => format!("{}: {}", first.field, first.message),
            None => "Validation error".to_owned(),
        };
        Self {
            errors,
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
        }
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError::new(field, message)])
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }

    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "Superuser privileges required")
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The 504 of a request whose deadline passed.
    pub fn timeout() -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            generic_detail(StatusCode::GATEWAY_TIMEOUT),
        )
    }

    /// The answer to a service call that failed with `status`. `deadline_passed` tells
    /// whether the request's own deadline had passed when the status arrived: a
    /// server-side timeout reaches the gateway as CANCELLED, and that is the deadline
    /// passing (504), not the call being abandoned (499).
    pub fn from_call(status: tonic::Status, deadline_passed: bool) -> Self {
        if status.code() == tonic::Code::Cancelled && deadline_passed {
            return Self::timeout();
        }
        if status.code() == tonic::Code::ResourceExhausted {
            return resource_exhausted(&status);
        }
        let code = if is_transport_failure(&status) {
            tonic::Code::Unavailable
        } else {
            status.code()
        };
        let http = http_status(code);
        if http.is_server_error() {
            tracing::warn!(code = ?status.code(), message = status.message(), http = http.as_u16(), "service call failed");
            return Self::new(http, generic_detail(http));
        }
        let detail = if status.message().is_empty() {
            title_of(http).to_owned()
        } else {
            status.message().to_owned()
        };
        let details = Details::of(&status);
        let mut error = Self::new(http, detail);
        error.reason = known_reason(&details);
        if http == StatusCode::UNPROCESSABLE_ENTITY {
            // The paths are the client's own (the services use the JSON names).
            error.errors = details
                .violations
                .into_iter()
                .map(|violation| FieldError::new(violation.field, violation.message))
                .collect();
        }
        // An access token of an ended session is refused as such on every route.
        if http == StatusCode::UNAUTHORIZED && error.reason == Some(reason::TOKEN_REVOKED) {
            error.code = reason::TOKEN_REVOKED;
        }
        error
    }

    /// The body, with `request_id` filled in by the request-id middleware.
    pub fn body<'a>(&'a self, request_id: &'a str) -> Problem<'a> {
        Problem {
            kind: "about:blank",
            title: title_of(self.status),
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
            request_id,
            errors: &self.errors,
        }
    }
}

/// The reasons of [`common::status::reason`] the gateway turns into a problem `code`.
fn known_reason(details: &Details) -> Option<&'static str> {
    [
        reason::TOKEN_EXPIRED,
        reason::TOKEN_INVALID,
        reason::SESSION_REVOKED,
        reason::REFRESH_TOKEN_REUSED,
        reason::TOKEN_REVOKED,
    ]
    .into_iter()
    .find(|known| details.is(known))
}

/// The status of a gRPC code, by the table of HTTP_API.md. (A CANCELLED after the
/// request's deadline is a 504: [`ApiError::from_call`].)
pub fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code;
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument => StatusCode::UNPROCESSABLE_ENTITY,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        #[allow(clippy::expect_used, reason = "499 is within 100..=999")]
        Code::Cancelled => {
            StatusCode::from_u16(CLIENT_CLOSED_REQUEST).expect("499 is a valid status")
        }
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Internal | Code::Unknown | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The `code` member of a problem body, by status.
pub fn code_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "BAD_REQUEST",
        401 => "UNAUTHORIZED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        405 => "METHOD_NOT_ALLOWED",
        409 => "CONFLICT",
        413 => "PAYLOAD_TOO_LARGE",
        422 => "VALIDATION_ERROR",
        429 => "RATE_LIMIT_EXCEEDED",
        CLIENT_CLOSED_REQUEST => "CANCELLED",
        501 => "NOT_IMPLEMENTED",
        503 => "SERVICE_UNAVAILABLE",
        504 => "TIMEOUT",
        500..=599 => "INTERNAL_ERROR",
        _ => "BAD_REQUEST",
    }
}

fn title_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        CLIENT_CLOSED_REQUEST => "Client Closed Request",
        _ => status.canonical_reason().unwrap_or("Error"),
    }
}

/// The detail shown for a 5xx: never the service's own message, which may name internals.
fn generic_detail(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_IMPLEMENTED => "This operation is not implemented",
        StatusCode::SERVICE_UNAVAILABLE => "The service is temporarily unavailable; retry shortly",
        StatusCode::GATEWAY_TIMEOUT => "The request timed out",
        _ => "Internal server error",
    }
}

/// A status the client transport made up because no answer came (the connection to
/// the service broke mid-call): tonic reports it as UNKNOWN "transport error" or an
/// INTERNAL h2 error, with the transport error as its `source`. A status a service sent
/// never has a source. The service was unavailable, so it maps like UNAVAILABLE.
fn is_transport_failure(status: &tonic::Status) -> bool {
    use std::error::Error;
    matches!(status.code(), tonic::Code::Unknown | tonic::Code::Internal)
        && status.source().is_some()
}

/// RESOURCE_EXHAUSTED, read from its `google.rpc` details: reason OVERLOADED is 503, any
/// other 429 RATE_LIMIT_EXCEEDED; both wait `RetryInfo.retry_delay` (whole seconds,
/// rounded up, at least 1; 1 without one).
fn resource_exhausted(status: &tonic::Status) -> ApiError {
    let details = Details::of(status);
    let retry_after = details
        .retry_after
        .map_or(UNAVAILABLE_RETRY_AFTER_SECONDS, retry_after_seconds);
    let error = if details.is(reason::OVERLOADED) {
        tracing::warn!(message = status.message(), "service overloaded");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            generic_detail(StatusCode::SERVICE_UNAVAILABLE),
        )
    } else if status.message().is_empty() {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            title_of(StatusCode::TOO_MANY_REQUESTS),
        )
    } else {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, status.message())
    };
    error.with_retry_after(retry_after)
}

/// A retry delay as `Retry-After` seconds: rounded up, never 0.
fn retry_after_seconds(delay: std::time::Duration) -> u64 {
    let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    seconds.max(1)
}

impl From<tonic::Status> for ApiError {
    /// A status outside any request's deadline (a CANCELLED is 499).
    fn from(status: tonic::Status) -> Self {
        Self::from_call(status, false)
    }
}

/// Marker the request-id middleware finds on a response whose body it must render.
#[derive(Clone, Debug)]
pub struct Unrendered(pub ApiError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The body is rendered by the request-id middleware, which knows the id; a bare
        // body without it is the fallback should the middleware not run.
        let mut response = problem_response(&self, "");
        response.extensions_mut().insert(Unrendered(self));
        response
    }
}

/// The full problem response for `error` and `request_id`.
pub fn problem_response(error: &ApiError, request_id: &str) -> Response {
    let mut response = (error.status, Json(error.body(request_id))).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if let Some(seconds) = error.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if error.status == StatusCode::UNAUTHORIZED {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

#[cfg(test)]
pub(crate) mod tests {
    use common::status::{SESSION_DOMAIN, Violation, invalid_fields, refusal};
    use tonic::Code;

    use super::*;

    #[test]
    fn every_grpc_code_maps_to_the_documented_http_status() {
        let table = [
            (Code::InvalidArgument, 422),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::Aborted, 409),
            (Code::FailedPrecondition, 400),
            (Code::OutOfRange, 400),
            (Code::ResourceExhausted, 429),
            (Code::Cancelled, 499),
            (Code::Unimplemented, 501),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
            (Code::Internal, 500),
            (Code::Unknown, 500),
            (Code::DataLoss, 500),
        ];
        for (code, expected) in table {
            assert_eq!(http_status(code).as_u16(), expected, "{code:?}");
        }
    }

    #[test]
    fn cancelled_is_a_timeout_after_the_requests_deadline_and_499_before_it() {
        // A server-side tonic timeout says "Timeout expired"; the message does not count.
        let after = ApiError::from_call(tonic::Status::cancelled("Timeout expired"), true);
        let before = ApiError::from_call(tonic::Status::cancelled("Timeout expired"), false);

        assert_eq!(after.status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(after.code, "TIMEOUT");
        assert_eq!(before.status.as_u16(), 499);
        assert_eq!(before.code, "CANCELLED");
    }

    #[test]
    fn every_status_has_its_documented_code() {
        for (status, code) in [
            (400, "BAD_REQUEST"),
            (401, "UNAUTHORIZED"),
            (403, "FORBIDDEN"),
            (404, "NOT_FOUND"),
            (405, "METHOD_NOT_ALLOWED"),
            (409, "CONFLICT"),
            (413, "PAYLOAD_TOO_LARGE"),
            (422, "VALIDATION_ERROR"),
            (429, "RATE_LIMIT_EXCEEDED"),
            (499, "CANCELLED"),
            (500, "INTERNAL_ERROR"),
            (501, "NOT_IMPLEMENTED"),
            (503, "SERVICE_UNAVAILABLE"),
            (504, "TIMEOUT"),
        ] {
            assert_eq!(
                code_of(StatusCode::from_u16(status).unwrap()),
                code,
                "{status}"
            );
        }
    }

    #[test]
    fn server_errors_hide_the_service_message() {
        let error = ApiError::from(tonic::Status::internal("relation \"users\" does not exist"));

        assert_eq!(error.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(error.code, "INTERNAL_ERROR");
        assert!(!error.detail.contains("users"), "{}", error.detail);
    }

    #[test]
    fn a_call_cut_by_the_transport_is_unavailable_but_a_services_unknown_stays_500() {
        let cut = tonic::Status::from_error(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset",
        )));
        assert_eq!(
            cut.code(),
            Code::Unknown,
            "tonic's own code for a lost connection"
        );

        let cut = ApiError::from(cut);
        let sent_by_service = ApiError::from(tonic::Status::unknown("transport error"));

        assert_eq!(cut.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(cut.retry_after, Some(UNAVAILABLE_RETRY_AFTER_SECONDS));
        assert_eq!(sent_by_service.status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn client_errors_keep_the_service_message() {
        let not_found = ApiError::from(tonic::Status::not_found("Deck with ID 'x' not found"));

        assert_eq!(not_found.status, StatusCode::NOT_FOUND);
        assert_eq!(not_found.detail, "Deck with ID 'x' not found");
        assert!(not_found.errors.is_empty());
    }

    #[test]
    fn a_bad_request_becomes_422_with_every_violation_by_its_full_path_in_order() {
        let status = invalid_fields([
            Violation::new("cards[1].back_text", "field required"),
            Violation::new("reviews[0].quality", "must be between 0 and 5"),
        ]);

        let error = ApiError::from(status);

        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.code, "VALIDATION_ERROR");
        assert_eq!(error.detail, "cards[1].back_text: field required");
        assert_eq!(
            error.errors,
            vec![
                FieldError::new("cards[1].back_text", "field required"),
                FieldError::new("reviews[0].quality", "must be between 0 and 5"),
            ]
        );
    }

    #[test]
    fn no_field_is_read_out_of_a_message_without_details() {
        let error = ApiError::from(tonic::Status::invalid_argument(
            "page_size: must be between 1 and 100",
        ));

        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.detail, "page_size: must be between 1 and 100");
        assert!(error.errors.is_empty(), "{:?}", error.errors);
    }

    /// An UNAUTHENTICATED refusal from session-service with ErrorInfo `reason`, as the
    /// services send it (for the tests of every module that maps one).
    pub(crate) fn unauthenticated(reason: &str) -> tonic::Status {
        refusal(
            Code::Unauthenticated,
            "refused",
            SESSION_DOMAIN,
            reason,
            None,
        )
    }

    #[test]
    fn a_revoked_access_token_is_token_revoked_on_any_route_and_other_reasons_stay_unauthorized() {
        let revoked = ApiError::from(unauthenticated(reason::TOKEN_REVOKED));
        let expired = ApiError::from(unauthenticated(reason::TOKEN_EXPIRED));
        let revoked_by_message = ApiError::from(tonic::Status::unauthenticated("TOKEN_REVOKED"));

        assert_eq!(revoked.code, "TOKEN_REVOKED");
        assert_eq!(revoked.status, StatusCode::UNAUTHORIZED);
        assert_eq!(expired.code, "UNAUTHORIZED");
        assert_eq!(expired.reason, Some(reason::TOKEN_EXPIRED));
        assert_eq!(revoked_by_message.code, "UNAUTHORIZED");
        assert_eq!(revoked_by_message.reason, None);
    }

    #[test]
    fn unavailable_and_exhausted_carry_retry_after_and_unauthorized_a_challenge() {
        let unavailable = problem_response(
            &ApiError::from(tonic::Status::unavailable("redis down")),
            "r1",
        );
        let exhausted = problem_response(
            &ApiError::from(tonic::Status::resource_exhausted("slow down")),
            "r1",
        );
        let unauthorized = problem_response(
            &ApiError::from(tonic::Status::unauthenticated("token expired")),
            "r1",
        );

        assert!(unavailable.headers().contains_key(header::RETRY_AFTER));
        assert!(exhausted.headers().contains_key(header::RETRY_AFTER));
        assert_eq!(unauthorized.headers()[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(
            unauthorized.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }

    fn exhausted_with(reason: &str, delay: std::time::Duration) -> tonic::Status {
        refusal(
            Code::ResourceExhausted,
            "slow down",
            SESSION_DOMAIN,
            reason,
            Some(delay),
        )
    }

    #[test]
    fn a_throttled_call_is_429_with_the_retry_delay_rounded_up_to_seconds() {
        let status = exhausted_with("LOGIN_THROTTLED", std::time::Duration::from_millis(56_250));

        let error = ApiError::from(status);
        let response = problem_response(&error, "r1");

        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "57");
        assert_eq!(error.code, "RATE_LIMIT_EXCEEDED");
        assert_eq!(error.detail, "slow down");
    }

    #[test]
    fn an_overloaded_service_is_503_with_its_retry_delay() {
        let error = ApiError::from(exhausted_with(
            reason::OVERLOADED,
            std::time::Duration::from_secs(3),
        ));

        let response = problem_response(&error, "r1");

        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(error.code, "SERVICE_UNAVAILABLE");
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
        assert!(
            !error.detail.contains("slow down"),
            "5xx hides the service message"
        );
    }

    #[test]
    fn retry_after_is_at_least_one_second_and_defaults_to_one_without_details() {
        let short = ApiError::from(exhausted_with(
            "LOGIN_THROTTLED",
            std::time::Duration::from_millis(20),
        ));
        let bare = ApiError::from(tonic::Status::resource_exhausted("slow down"));

        assert_eq!(short.retry_after, Some(1));
        assert_eq!(bare.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(bare.retry_after, Some(UNAVAILABLE_RETRY_AFTER_SECONDS));
    }

    #[test]
    fn the_body_carries_code_detail_request_id_and_errors() {
        let error = ApiError::field("page", "must be at least 1");

        let body = serde_json::to_value(error.body("req-1")).unwrap();

        assert_eq!(body["status"], 422);
        assert_eq!(body["code"], "VALIDATION_ERROR");
        assert_eq!(body["request_id"], "req-1");
        assert_eq!(body["errors"][0]["field"], "page");
        assert_eq!(body["title"], "Unprocessable Entity");
        assert_eq!(body["type"], "about:blank");
        let plain = serde_json::to_value(ApiError::not_found("gone").body("req-2")).unwrap();
        assert!(plain.get("errors").is_none(), "{plain}");
    }
}
