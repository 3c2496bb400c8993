//! The one error type of session-service and its one mapping to gRPC status codes.
//!
//! Refusals that tell the caller when to come back carry that as structured
//! `google.rpc` details (STYLE.md rule 14), never as message text: an `ErrorInfo` whose
//! reason says which refusal it is, in the domain [`ERROR_DOMAIN`], and a `RetryInfo`
//! with the delay. The gateway reads them (`gateway/src/error.rs`): `OVERLOADED` becomes
//! 503, any other RESOURCE_EXHAUSTED 429, both with `Retry-After`.

use std::time::Duration;

use common::{auth::AuthError, redis::RedisError};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of this service's errors.
pub const ERROR_DOMAIN: &str = "learngreek.session.v1";
/// `ErrorInfo.reason` of a login refused by the per-account throttle.
pub const REASON_LOGIN_THROTTLED: &str = "LOGIN_THROTTLED";
/// `ErrorInfo.reason` of a call refused because the password-hashing queue is full.
pub const REASON_OVERLOADED: &str = "OVERLOADED";

/// Why a refresh token was refused. The gateway maps the first words of the status
/// message (`token expired`, `token invalid`, `session revoked`, `refresh token reused`)
/// to its TOKEN_EXPIRED, TOKEN_INVALID, SESSION_REVOKED and REFRESH_TOKEN_REUSED codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    #[error("token expired")]
    Expired,
    #[error("token invalid")]
    Invalid,
    #[error("token invalid: user account is inactive or gone")]
    InactiveUser,
    #[error("session revoked")]
    Revoked,
    #[error("refresh token reused: the session has been revoked")]
    Reused,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field failed validation; the message starts with the field's name.
    #[error("{field}: {message}")]
    InvalidArgument {
        field: &'static str,
        message: String,
    },
    #[error("email already registered")]
    EmailTaken,
    /// Unknown e-mail, wrong password or inactive user: one answer for all three.
    #[error("Invalid email or password")]
    InvalidCredentials,
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Refresh(#[from] RefreshError),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Too many failed logins for this e-mail address; the same for every address,
    /// registered or not.
    #[error("too many failed logins for this e-mail address; try again later")]
    LoginThrottled { retry_after: Duration },
    /// The password-hashing queue is full.
    #[error("the server is busy; retry shortly")]
    Overloaded { retry_after: Duration },
    #[error("session store unavailable")]
    SessionStore(#[from] RedisError),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            message: message.into(),
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        use tonic::Status;
        match error {
            Error::InvalidArgument { .. } => Status::invalid_argument(error.to_string()),
            Error::EmailTaken => Status::already_exists(error.to_string()),
            Error::InvalidCredentials | Error::Refresh(_) => {
                Status::unauthenticated(error.to_string())
            }
            Error::Auth(auth) => auth.into(),
            Error::NotFound(_) => Status::not_found(error.to_string()),
            Error::LoginThrottled { retry_after } => {
                retry_later(REASON_LOGIN_THROTTLED, &error, retry_after)
            }
            Error::Overloaded { retry_after } => {
                tracing::warn!("password hashing queue full: call refused");
                retry_later(REASON_OVERLOADED, &error, retry_after)
            }
            Error::SessionStore(cause) => {
                tracing::warn!(error = %cause, "session store unavailable");
                Status::unavailable("session store unavailable")
            }
            Error::Database(cause) if is_unavailable(&cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                Status::unavailable("database unavailable")
            }
            Error::Database(cause) => {
                tracing::error!(error = %cause, "database error");
                Status::internal("internal error")
            }
            Error::Internal(cause) => {
                tracing::error!(error = %cause, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

/// RESOURCE_EXHAUSTED with the refusal's `reason` and how long to wait, as details.
fn retry_later(reason: &str, error: &Error, retry_after: Duration) -> tonic::Status {
    let mut details = ErrorDetails::new();
    details
        .set_error_info(reason, ERROR_DOMAIN, std::collections::HashMap::new())
        .set_retry_info(Some(retry_after));
    tonic::Status::with_error_details(tonic::Code::ResourceExhausted, error.to_string(), details)
}

/// Errors that mean "PostgreSQL cannot be reached now", which a retry may cure.
fn is_unavailable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed
    )
}

/// True when `error` violates a unique constraint (a duplicate e-mail).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|db| db.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_errors_start_with_the_words_the_gateway_maps() {
        let cases = [
            (RefreshError::Expired, "token expired"),
            (RefreshError::Invalid, "token invalid"),
            (RefreshError::InactiveUser, "token invalid"),
            (RefreshError::Revoked, "session revoked"),
            (RefreshError::Reused, "refresh token reused"),
        ];
        for (error, prefix) in cases {
            let status = tonic::Status::from(Error::from(error));

            assert_eq!(status.code(), tonic::Code::Unauthenticated);
            assert!(status.message().starts_with(prefix), "{}", status.message());
        }
    }

    #[test]
    fn store_failures_are_unavailable_and_hide_the_cause() {
        let error = Error::SessionStore(RedisError::Timeout(std::time::Duration::from_millis(5)));

        let status = tonic::Status::from(error);

        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(status.message(), "session store unavailable");
    }

    #[test]
    fn refusals_carry_their_reason_and_delay_as_details() {
        let cases = [
            (
                Error::LoginThrottled {
                    retry_after: Duration::from_millis(56_250),
                },
                REASON_LOGIN_THROTTLED,
                Duration::from_millis(56_250),
            ),
            (
                Error::Overloaded {
                    retry_after: Duration::from_secs(1),
                },
                REASON_OVERLOADED,
                Duration::from_secs(1),
            ),
        ];
        for (error, reason, delay) in cases {
            let status = tonic::Status::from(error);

            let details = status.get_error_details();
            assert_eq!(status.code(), tonic::Code::ResourceExhausted);
            let info = details.error_info().expect("an ErrorInfo");
            assert_eq!(
                (info.reason.as_str(), info.domain.as_str()),
                (reason, ERROR_DOMAIN)
            );
            assert_eq!(
                details.retry_info().and_then(|retry| retry.retry_delay),
                Some(delay)
            );
        }
    }

    #[test]
    fn validation_messages_name_the_field() {
        let status = tonic::Status::from(Error::invalid(
            "password",
            "must contain a letter and a digit",
        ));

        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "password: must contain a letter and a digit"
        );
    }
}
