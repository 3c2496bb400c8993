//! The one error type of deck-service and its one mapping to gRPC statuses.
//!
//! Bad input travels as structure (STYLE.md rule 14): INVALID_ARGUMENT with a
//! `google.rpc.BadRequest` naming every offending field by its full path as the client
//! sent it (`page_size`, `cards[1].back_text`), built by [`common::status::invalid_fields`].

use std::sync::Arc;

pub use common::status::Violation;

/// Everything an RPC can fail with. `Clone`, so one database failure can be handed to
/// every caller waiting on the same single-flight load.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: every field that failed validation, in the order checked (never empty).
    #[error("{}", first_violation(.0))]
    InvalidArgument(Vec<Violation>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthenticated(String),
    /// The token's session or user has ended: UNAUTHENTICATED with reason TOKEN_REVOKED.
    #[error("token revoked")]
    TokenRevoked,
    #[error("superuser role required")]
    PermissionDenied,
    #[error("{0}")]
    Unavailable(String),
    /// A failure of ours or of a dependency: logged with its cause, hidden from callers.
    #[error("internal error: {0:#}")]
    Internal(Arc<anyhow::Error>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn first_violation(violations: &[Violation]) -> String {
    violations.first().map_or_else(
        || "invalid request".to_owned(),
        |first| format!("{}: {}", first.field, first.message),
    )
}

impl Error {
    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::Internal(Arc::new(error.into()))
    }

    pub fn deck_not_found(deck: impl std::fmt::Display) -> Self {
        Self::NotFound(format!("Deck with ID '{deck}' not found"))
    }

    pub fn card_not_found(card: impl std::fmt::Display) -> Self {
        Self::NotFound(format!("Card with ID '{card}' not found"))
    }
}

impl From<Violation> for Error {
    fn from(violation: Violation) -> Self {
        Self::InvalidArgument(vec![violation])
    }
}

impl From<Vec<Violation>> for Error {
    fn from(violations: Vec<Violation>) -> Self {
        Self::InvalidArgument(violations)
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
            common::auth::AuthError::KeysUnavailable
            | common::auth::AuthError::RevocationUnknown => Self::Unavailable(error.to_string()),
            common::auth::AuthError::Revoked => Self::TokenRevoked,
            _ => Self::Unauthenticated(error.to_string()),
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidArgument(violations) => common::status::invalid_fields(violations),
            Error::NotFound(message) => tonic::Status::not_found(message),
            Error::Unauthenticated(message) => tonic::Status::unauthenticated(message),
            Error::TokenRevoked => common::auth::AuthError::Revoked.into(),
            Error::PermissionDenied => tonic::Status::permission_denied(error.to_string()),
            Error::Unavailable(message) => tonic::Status::unavailable(message),
            Error::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "internal error");
                tonic::Status::internal("internal error")
            }
        }
    }
}

/// Checks several fields at once: every value, or every violation among them, so a
/// client learns of all its mistakes in one answer (a bulk request: of every bad item).
///
/// Implemented for tuples of field results and for a `Vec` of item results; each error
/// is one [`Violation`] or a `Vec` of them (an item with several bad fields).
pub trait Checked {
    type Values;
    fn checked(self) -> Result<Self::Values, Vec<Violation>>;
}

/// One field's violation, or the violations of a nested item.
pub trait IntoViolations {
    fn into_violations(self) -> Vec<Violation>;
}

impl IntoViolations for Violation {
    fn into_violations(self) -> Vec<Violation> {
        vec![self]
    }
}

impl IntoViolations for Vec<Violation> {
    fn into_violations(self) -> Vec<Violation> {
        self
    }
}

impl<T, E: IntoViolations> Checked for Vec<Result<T, E>> {
    type Values = Vec<T>;

    fn checked(self) -> Result<Vec<T>, Vec<Violation>> {
        let mut values = Vec::with_capacity(self.len());
        let mut violations = Vec::new();
        for result in self {
            match result {
                Ok(value) => values.push(value),
                Err(error) => violations.extend(error.into_violations()),
            }
        }
        if violations.is_empty() {
            Ok(values)
        } else {
            Err(violations)
        }
    }
}

macro_rules! checked_tuple {
    ($($value:ident: $T:ident, $E:ident);+) => {
        impl<$($T, $E: IntoViolations),+> Checked for ($(Result<$T, $E>,)+) {
            type Values = ($($T,)+);

            fn checked(self) -> Result<Self::Values, Vec<Violation>> {
                let ($($value,)+) = self;
                let mut violations = Vec::new();
                $(
                    let $value = match $value {
                        Ok(value) => Some(value),
                        Err(error) => {
                            violations.extend(error.into_violations());
                            None
                        }
                    };
                )+
                match ($($value,)+) {
                    ($(Some($value),)+) => Ok(($($value,)+)),
                    _ => Err(violations),
                }
            }
        }
    };
}

checked_tuple!(a: A, EA; b: B, EB);
checked_tuple!(a: A, EA; b: B, EB; c: C, EC);
checked_tuple!(a: A, EA; b: B, EB; c: C, EC; d: D, ED);
checked_tuple!(a: A, EA; b: B, EB; c: C, EC; d: D, ED; e: E, EE);
checked_tuple!(a: A, EA; b: B, EB; c: C, EC; d: D, ED; e: E, EE; f: F, EF);
checked_tuple!(a: A, EA; b: B, EB; c: C, EC; d: D, ED; e: E, EE; f: F, EF; g: G, EG);

#[cfg(test)]
mod tests {
    use common::status::Details;

    use super::*;

    #[test]
    fn internal_errors_hide_their_cause_from_callers() {
        let status = tonic::Status::from(Error::internal(anyhow::anyhow!("password=hunter2")));
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(status.message(), "internal error");
    }

    #[test]
    fn validation_errors_carry_every_field_as_a_bad_request() {
        let status = tonic::Status::from(Error::InvalidArgument(vec![
            Violation::new("page_size", "must be between 1 and 100"),
            Violation::new("level", "must be one of A1, A2, B1, B2, C1, C2"),
        ]));

        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "page_size: must be between 1 and 100");
        let fields: Vec<String> = Details::of(&status)
            .violations
            .into_iter()
            .map(|violation| violation.field)
            .collect();
        assert_eq!(fields, ["page_size", "level"]);
    }

    #[test]
    fn checked_collects_every_violation_in_order_or_every_value() {
        let bad = |field: &str| Err::<u32, _>(Violation::new(field, "bad"));
        let item = |i: usize| -> Result<u32, Vec<Violation>> {
            (Ok::<_, Violation>(1), bad(&format!("cards[{i}].back_text")))
                .checked()
                .map(|(one, _)| one)
        };

        let fine = (Ok::<_, Violation>(1), Ok::<_, Violation>("x")).checked();
        let items = vec![item(0), Ok(7), item(2)].checked();

        assert_eq!(fine, Ok((1, "x")));
        assert_eq!(
            items
                .unwrap_err()
                .into_iter()
                .map(|violation| violation.field)
                .collect::<Vec<_>>(),
            ["cards[0].back_text", "cards[2].back_text"]
        );
    }
}
