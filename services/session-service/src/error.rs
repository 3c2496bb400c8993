//! The one error type of session-service and its one mapping to gRPC status codes.
//!
//! What a caller must act on travels as `google.rpc` details built by `common::status`
//! (STYLE.md rule 14), never as message text: validation failures as a `BadRequest` of
//! every offending field, by the path the client sent it under; refusals a client tells
//! apart as an `ErrorInfo` whose reason says which one, in the domain
//! [`SESSION_DOMAIN`], with a `RetryInfo` when the caller may come back. The messages stay
//! the sentences a user is shown.

use std::time::Duration;

use common::{
    auth::AuthError,
    redis::RedisError,
    status::{self, SESSION_DOMAIN, Violation, reason},
};
use tonic::{Code, Status};

/// Why a refresh token was refused; [`RefreshError::reason`] names it for the gateway,
/// which answers the refresh route's 401 with that `code` (HTTP_API.md, Errors).
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

impl RefreshError {
    /// The `ErrorInfo.reason` of this refusal.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Expired => reason::TOKEN_EXPIRED,
            // To the client a deactivated account's token is one that no longer works.
            Self::Invalid | Self::InactiveUser => reason::TOKEN_INVALID,
            Self::Revoked => reason::SESSION_REVOKED,
            Self::Reused => reason::REFRESH_TOKEN_REUSED,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Request fields that failed validation, each by its path as the client sent it.
    #[error("invalid request fields: {0:?}")]
    InvalidArgument(Vec<Violation>),
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
    /// One field that failed validation.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![Violation::new(field, message)])
    }
}

impl From<Violation> for Error {
    fn from(violation: Violation) -> Self {
        Self::InvalidArgument(vec![violation])
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidArgument(violations) => status::invalid_fields(violations),
            Error::EmailTaken => Status::already_exists(error.to_string()),
            Error::InvalidCredentials => Status::unauthenticated(error.to_string()),
            Error::Refresh(refresh) => status::refusal(
                Code::Unauthenticated,
                refresh.to_string(),
                SESSION_DOMAIN,
                refresh.reason(),
                None,
            ),
            Error::Auth(auth) => auth.into(),
            Error::NotFound(_) => Status::not_found(error.to_string()),
            Error::LoginThrottled { retry_after } => status::refusal(
                Code::ResourceExhausted,
                error.to_string(),
                SESSION_DOMAIN,
                reason::LOGIN_THROTTLED,
                Some(retry_after),
            ),
            Error::Overloaded { retry_after } => {
                tracing::warn!("password hashing queue full: call refused");
                status::refusal(
                    Code::ResourceExhausted,
                    error.to_string(),
                    SESSION_DOMAIN,
                    reason::OVERLOADED,
                    Some(retry_after),
                )
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
    use common::status::Details;

    use super::*;

    #[test]
    fn refresh_refusals_carry_their_reason_and_keep_their_sentence() {
        let cases = [
            (
                RefreshError::Expired,
                reason::TOKEN_EXPIRED,
                "token expired",
            ),
            (
                RefreshError::Invalid,
                reason::TOKEN_INVALID,
                "token invalid",
            ),
            (
                RefreshError::InactiveUser,
                reason::TOKEN_INVALID,
                "token invalid: user account is inactive or gone",
            ),
            (
                RefreshError::Revoked,
                reason::SESSION_REVOKED,
                "session revoked",
            ),
            (
                RefreshError::Reused,
                reason::REFRESH_TOKEN_REUSED,
                "refresh token reused: the session has been revoked",
            ),
        ];
        for (error, reason, message) in cases {
            let status = Status::from(Error::from(error));

            assert_eq!(status.code(), Code::Unauthenticated);
            assert!(Details::of(&status).is(reason), "{error:?}");
            assert_eq!(status.message(), message);
        }
    }

    #[test]
    fn store_failures_are_unavailable_and_hide_the_cause() {
        let error = Error::SessionStore(RedisError::Timeout(std::time::Duration::from_millis(5)));

        let status = Status::from(error);

        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "session store unavailable");
    }

    #[test]
    fn refusals_carry_their_reason_and_delay_as_details() {
        let cases = [
            (
                Error::LoginThrottled {
                    retry_after: Duration::from_millis(56_250),
                },
                reason::LOGIN_THROTTLED,
                Duration::from_millis(56_250),
            ),
            (
                Error::Overloaded {
                    retry_after: Duration::from_secs(1),
                },
                reason::OVERLOADED,
                Duration::from_secs(1),
            ),
        ];
        for (error, reason, delay) in cases {
            let status = Status::from(error);

            let details = Details::of(&status);
            assert_eq!(status.code(), Code::ResourceExhausted);
            assert!(details.is(reason), "{details:?}");
            assert_eq!(details.retry_after, Some(delay));
            let domain = tonic_types::StatusExt::get_error_details(&status)
                .error_info()
                .map(|info| info.domain.clone());
            assert_eq!(domain.as_deref(), Some(SESSION_DOMAIN));
        }
    }

    #[test]
    fn validation_failures_list_every_field_and_the_message_names_the_first() {
        let status = Status::from(Error::InvalidArgument(vec![
            Violation::new("password", "must contain a letter and a digit"),
            Violation::new("full_name", "must not be empty"),
        ]));

        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "password: must contain a letter and a digit"
        );
        assert_eq!(
            Details::of(&status).violations,
            [
                Violation::new("password", "must contain a letter and a digit"),
                Violation::new("full_name", "must not be empty"),
            ]
        );
    }
}
