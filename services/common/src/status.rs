//! The structured half of every gRPC error (STYLE.md rule 14): what a caller must act on
//! travels as `google.rpc` details, never as message text that someone parses back out.
//!
//! - a request that fails validation is INVALID_ARGUMENT with a `BadRequest` listing each
//!   offending field by its full path as the client sent it (`page_size`,
//!   `cards[1].back_text`, `reviews[0].quality`), also for a missing field;
//! - a refusal a client can tell apart (a throttled login, an overloaded hasher, a reused
//!   refresh token) carries an `ErrorInfo` whose `reason` is one of [`reason`], in the
//!   domain of the service that refused;
//! - a "come back later" carries a `RetryInfo` with the delay.
//!
//! Services build statuses with [`invalid_fields`] and [`refusal`]; the gateway reads them
//! back with [`Details::of`]. The message stays the human sentence shown to a user.

use std::{collections::HashMap, time::Duration};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// `ErrorInfo.domain` of session-service's errors.
pub const SESSION_DOMAIN: &str = "learngreek.session.v1";
/// `ErrorInfo.domain` of deck-service's errors.
pub const DECK_DOMAIN: &str = "learngreek.deck.v1";

/// Every `ErrorInfo.reason` a service may send. The gateway turns some of them into the
/// problem body's `code` (HTTP_API.md, Errors); the strings are part of the contract.
pub mod reason {
    /// RESOURCE_EXHAUSTED: the per-account login throttle (HTTP 429).
    pub const LOGIN_THROTTLED: &str = "LOGIN_THROTTLED";
    /// RESOURCE_EXHAUSTED: the server sheds load, e.g. a full hashing queue (HTTP 503).
    pub const OVERLOADED: &str = "OVERLOADED";
    /// UNAUTHENTICATED: the refresh token has expired.
    pub const TOKEN_EXPIRED: &str = "TOKEN_EXPIRED";
    /// UNAUTHENTICATED: the token is not one of ours (bad signature, claims, type).
    pub const TOKEN_INVALID: &str = "TOKEN_INVALID";
    /// UNAUTHENTICATED: the token's session has ended (logout, revoke, expiry).
    pub const SESSION_REVOKED: &str = "SESSION_REVOKED";
    /// UNAUTHENTICATED: an old refresh token was replayed; the session is revoked.
    pub const REFRESH_TOKEN_REUSED: &str = "REFRESH_TOKEN_REUSED";
    /// UNAUTHENTICATED: an access token of an ended session or an ended user.
    pub const TOKEN_REVOKED: &str = "TOKEN_REVOKED";
}

/// One field that failed validation: its full path as the client sent it, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub message: String,
}

impl Violation {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// INVALID_ARGUMENT with a `BadRequest` of `violations`; the message repeats the first
/// one ("field: why") for callers that only show the message.
pub fn invalid_fields(violations: impl IntoIterator<Item = Violation>) -> Status {
    let violations: Vec<Violation> = violations.into_iter().collect();
    let message = violations.first().map_or_else(
        || "invalid request".to_owned(),
        |first| format!("{}: {}", first.field, first.message),
    );
    let details = ErrorDetails::with_bad_request(
        violations
            .into_iter()
            .map(|violation| FieldViolation::new(violation.field, violation.message))
            .collect::<Vec<_>>(),
    );
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// `code` with an `ErrorInfo` of `reason` in `domain`, and a `RetryInfo` when the caller
/// may try again after `retry_after`.
pub fn refusal(
    code: Code,
    message: impl Into<String>,
    domain: &str,
    reason: &str,
    retry_after: Option<Duration>,
) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(reason, domain, HashMap::new());
    if let Some(delay) = retry_after {
        details.set_retry_info(Some(delay));
    }
    Status::with_error_details(code, message.into(), details)
}

/// What the details of a status say, read once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Details {
    /// `ErrorInfo.reason`, when present.
    pub reason: Option<String>,
    /// `RetryInfo.retry_delay`, when present.
    pub retry_after: Option<Duration>,
    /// `BadRequest.field_violations`, in order.
    pub violations: Vec<Violation>,
}

impl Details {
    /// The details of `status` (empty when it carries none or they do not decode).
    pub fn of(status: &Status) -> Self {
        let details = status.get_error_details();
        Self {
            reason: details.error_info().map(|info| info.reason.clone()),
            retry_after: details.retry_info().and_then(|retry| retry.retry_delay),
            violations: details
                .bad_request()
                .map(|bad| {
                    bad.field_violations
                        .iter()
                        .map(|violation| Violation::new(&violation.field, &violation.description))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Whether the reason is `reason`.
    pub fn is(&self, reason: &str) -> bool {
        self.reason.as_deref() == Some(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_violations_travel_with_their_full_paths_in_order() {
        let status = invalid_fields([
            Violation::new("cards[1].back_text", "field required"),
            Violation::new("page_size", "must be between 1 and 100"),
        ]);

        let details = Details::of(&status);

        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "cards[1].back_text: field required");
        assert_eq!(
            details.violations,
            vec![
                Violation::new("cards[1].back_text", "field required"),
                Violation::new("page_size", "must be between 1 and 100"),
            ]
        );
        assert_eq!(details.reason, None);
    }

    #[test]
    fn a_refusal_carries_its_reason_and_delay() {
        let status = refusal(
            Code::ResourceExhausted,
            "Too many failed logins",
            SESSION_DOMAIN,
            reason::LOGIN_THROTTLED,
            Some(Duration::from_millis(56_250)),
        );

        let details = Details::of(&status);

        assert!(details.is(reason::LOGIN_THROTTLED));
        assert!(!details.is(reason::OVERLOADED));
        assert_eq!(details.retry_after, Some(Duration::from_millis(56_250)));
        assert_eq!(status.message(), "Too many failed logins");
    }

    #[test]
    fn a_plain_status_has_no_details() {
        assert_eq!(
            Details::of(&Status::not_found("Deck not found")),
            Details::default()
        );
    }
}
