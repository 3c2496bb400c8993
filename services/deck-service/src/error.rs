//! The one error type of deck-service and its one mapping to gRPC statuses.

use std::sync::Arc;

/// Everything an RPC can fail with. `Clone`, so one database failure can be handed to
/// every caller waiting on the same single-flight load.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// Bad input; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("superuser role required")]
    PermissionDenied,
    #[error("{0}")]
    Unavailable(String),
    /// A failure of ours or of a dependency: logged with its cause, hidden from callers.
    #[error("internal error: {0:#}")]
    Internal(Arc<anyhow::Error>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(field: &str, message: impl std::fmt::Display) -> Self {
        Self::InvalidArgument(format!("{field}: {message}"))
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::Internal(Arc::new(error.into()))
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            // Pool exhaustion or an unreachable server: worth a retry, not a bug.
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                tracing::warn!(%error, "PostgreSQL unavailable");
                Self::Unavailable("database unavailable, try again".into())
            }
            _ => Self::internal(error),
        }
    }
}

impl From<common::auth::AuthError> for Error {
    fn from(error: common::auth::AuthError) -> Self {
        match error {
            common::auth::AuthError::KeysUnavailable => Self::Unavailable(error.to_string()),
            _ => Self::Unauthenticated(error.to_string()),
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidArgument(message) => tonic::Status::invalid_argument(message),
            Error::NotFound(message) => tonic::Status::not_found(message),
            Error::Unauthenticated(message) => tonic::Status::unauthenticated(message),
            Error::PermissionDenied => tonic::Status::permission_denied(error.to_string()),
            Error::Unavailable(message) => tonic::Status::unavailable(message),
            Error::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "internal error");
                tonic::Status::internal("internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_cause_from_callers() {
        let status = tonic::Status::from(Error::internal(anyhow::anyhow!("password=hunter2")));
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(status.message(), "internal error");
    }

    #[test]
    fn validation_errors_name_the_field() {
        let status = tonic::Status::from(Error::invalid("page_size", "must be between 1 and 100"));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "page_size: must be between 1 and 100");
    }
}
