//! The HTTP contract as types (HTTP_API.md): every request body, query and response body
//! of the gateway, one module per resource. The OpenAPI document is derived from these
//! types (`utoipa::ToSchema` / `IntoParams`) and the router ([`crate::openapi`]), and the
//! handlers serialize them straight to the wire, so the document, the router and the
//! bytes sent cannot drift apart.
//!
//! Conventions of the types here:
//! - Response types carry `#[serde(deny_unknown_fields)]` only so that their schemas say
//!   `additionalProperties: false` (serde ignores it when serializing). Request types do
//!   not: unknown request fields are ignored, as the legacy API did.
//! - A nullable response field is `Option<T>` with `#[schema(required = true)]`: it is
//!   always present, `null` when there is no value.
//! - A paged list is a [`page::Page`] of the resource's part (`Page<DeckItems>` is
//!   `DeckList`): the page header is written once.
//! - A response is built from a service's answer with `TryFrom` (a page with
//!   [`page::Page::of`]); a value the proto contract promises but the answer lacks (a
//!   timestamp, an enum left unspecified) is a [`Breach`], answered 500 (the document
//!   never describes a body the gateway sends).
//! - Request types hold what the client sent (strings, integers); `validate` checks them
//!   and names every bad field by its full path ([`crate::extract::Validator`]), so one
//!   answer lists them all. Their `#[schema(...)]` bounds state the same rules.

pub mod auth;
pub mod decks;
pub mod health;
pub mod page;
pub mod study;

use std::borrow::Cow;

use http::StatusCode;
use proto::deck::v1 as pb;
use serde::{Deserialize, Serialize, Serializer};
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{KnownFormat, ObjectBuilder, RefOr, Schema, SchemaFormat, Type},
};

use crate::error::ApiError;

/// A service answer that lacks what its proto contract promises: logged, answered 500.
#[derive(Debug)]
pub struct Breach(pub &'static str);

impl From<Breach> for ApiError {
    fn from(Breach(what): Breach) -> Self {
        tracing::error!(missing = what, "a service answer breaks its contract");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    }
}

/// An instant, on the wire as RFC 3339 UTC with `Z` and microseconds
/// (`2026-11-26T10:00:00.123456Z`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timestamp(time::OffsetDateTime);

/// `[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z`: 27 bytes.
const TIMESTAMP_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
);

impl Timestamp {
    pub fn now() -> Self {
        Self(time::OffsetDateTime::now_utc())
    }

    /// A proto timestamp, truncated to microseconds; `None` when absent or out of range.
    pub fn of(ts: Option<&prost_types::Timestamp>) -> Option<Self> {
        let ts = ts?;
        let nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
        let micros = nanos.div_euclid(1000) * 1000;
        time::OffsetDateTime::from_unix_timestamp_nanos(micros)
            .ok()
            .map(Self)
    }

    /// A timestamp the answer must carry; `field` names it in the breach.
    pub fn required(
        ts: Option<&prost_types::Timestamp>,
        field: &'static str,
    ) -> Result<Self, Breach> {
        Self::of(ts).ok_or(Breach(field))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Formatted on the stack: no String per timestamp.
        let mut buffer = [0u8; 40];
        let mut rest = &mut buffer[..];
        self.0
            .format_into(&mut rest, TIMESTAMP_FORMAT)
            .map_err(serde::ser::Error::custom)?;
        let written = 40 - rest.len();
        let text = std::str::from_utf8(&buffer[..written]).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(text)
    }
}

impl PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("RFC 3339, UTC with `Z`, microseconds"))
            .into()
    }
}

impl ToSchema for Timestamp {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Timestamp")
    }
}

/// An enum of the contract, spelled on the wire as its serde names say.
pub trait Spelled: Sized + Copy + serde::de::DeserializeOwned + 'static {
    /// The message of a value outside the enum ("must be one of …").
    const EXPECTED: &'static str;

    /// The value spelled `text` (case-sensitive).
    fn parse(text: &str) -> Option<Self> {
        use serde::de::{IntoDeserializer, value::Error};
        Self::deserialize(IntoDeserializer::<Error>::into_deserializer(text)).ok()
    }
}

/// A request's enum value as sent: a known spelling, or anything else, kept so that
/// validation reports it together with the other bad fields (serde would stop at it).
/// A field of this type documents itself as the enum (`#[schema(value_type = T)]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice<T> {
    Known(T),
    Unknown,
}

impl<'de, T: Spelled> Deserialize<'de> for Choice<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Any JSON value: a non-string is as unknown as a misspelt string.
        Ok(match MaybeText::deserialize(deserializer)? {
            MaybeText::Text(text) => T::parse(&text).map_or(Self::Unknown, Self::Known),
            MaybeText::Other(_) => Self::Unknown,
        })
    }
}

/// A string, or any other JSON value (ignored).
#[derive(Deserialize)]
#[serde(untagged)]
enum MaybeText<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Other(serde::de::IgnoredAny),
}

/// A deck's CEFR level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Level {
    A1,
    A2,
    B1,
    B2,
    C1,
    C2,
}

impl Spelled for Level {
    const EXPECTED: &'static str = "must be one of A1, A2, B1, B2, C1, C2";
}

impl Level {
    pub fn to_proto(self) -> pb::Level {
        match self {
            Self::A1 => pb::Level::A1,
            Self::A2 => pb::Level::A2,
            Self::B1 => pb::Level::B1,
            Self::B2 => pb::Level::B2,
            Self::C1 => pb::Level::C1,
            Self::C2 => pb::Level::C2,
        }
    }

    /// The level of a service answer; unspecified is a [`Breach`].
    pub fn of(value: i32, field: &'static str) -> Result<Self, Breach> {
        Ok(match pb::Level::try_from(value) {
            Ok(pb::Level::A1) => Self::A1,
            Ok(pb::Level::A2) => Self::A2,
            Ok(pb::Level::B1) => Self::B1,
            Ok(pb::Level::B2) => Self::B2,
            Ok(pb::Level::C1) => Self::C1,
            Ok(pb::Level::C2) => Self::C2,
            _ => return Err(Breach(field)),
        })
    }
}

/// A card's difficulty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Difficulty {
    Easy,
    Medium,
    Hard,
}

impl Spelled for Difficulty {
    const EXPECTED: &'static str = "must be one of easy, medium, hard";
}

impl Difficulty {
    pub fn to_proto(self) -> pb::Difficulty {
        match self {
            Self::Easy => pb::Difficulty::Easy,
            Self::Medium => pb::Difficulty::Medium,
            Self::Hard => pb::Difficulty::Hard,
        }
    }

    pub fn of(value: i32, field: &'static str) -> Result<Self, Breach> {
        Ok(match pb::Difficulty::try_from(value) {
            Ok(pb::Difficulty::Easy) => Self::Easy,
            Ok(pb::Difficulty::Medium) => Self::Medium,
            Ok(pb::Difficulty::Hard) => Self::Hard,
            _ => return Err(Breach(field)),
        })
    }
}

/// Where a card stands in the user's spaced repetition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CardStatus {
    New,
    Learning,
    Review,
    Mastered,
}

impl CardStatus {
    /// The status of a service answer; `None` when unspecified.
    pub fn of(value: i32) -> Option<Self> {
        match pb::CardStatus::try_from(value) {
            Ok(pb::CardStatus::New) => Some(Self::New),
            Ok(pb::CardStatus::Learning) => Some(Self::Learning),
            Ok(pb::CardStatus::Review) => Some(Self::Review),
            Ok(pb::CardStatus::Mastered) => Some(Self::Mastered),
            _ => None,
        }
    }

    pub fn required(value: i32, field: &'static str) -> Result<Self, Breach> {
        Self::of(value).ok_or(Breach(field))
    }
}

/// The schema of a list of UUID strings.
pub(crate) fn uuids() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::Array::new(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
    )
}

/// The schema of a list of 1-100 UUID strings.
pub(crate) fn one_to_a_hundred_uuids() -> utoipa::openapi::schema::Array {
    let mut list = uuids();
    list.min_items = Some(1);
    list.max_items = Some(100);
    list
}

/// The `true` of a successful item (`"success": true`); its schema admits only `true`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Succeeded;

impl Serialize for Succeeded {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bool(true)
    }
}

impl PartialSchema for Succeeded {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Boolean)
            .enum_values(Some([true]))
            .into()
    }
}

impl ToSchema for Succeeded {}

/// The `false` of a failed item (`"success": false`); its schema admits only `false`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Failed;

impl Serialize for Failed {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bool(false)
    }
}

impl PartialSchema for Failed {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Boolean)
            .enum_values(Some([false]))
            .into()
    }
}

impl ToSchema for Failed {}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn timestamps_are_utc_with_z_and_microseconds() {
        let ts = prost_types::Timestamp {
            seconds: 1_764_163_200,
            nanos: 123_456_789,
        };

        let at = Timestamp::of(Some(&ts)).unwrap();

        assert_eq!(json!(at), json!("2025-11-26T13:20:00.123456Z"));
        assert_eq!(Timestamp::of(None), None);
        assert!(Timestamp::required(None, "created_at").is_err());
    }

    #[test]
    fn enums_are_case_sensitive_and_spelled_as_the_contract() {
        assert_eq!(Level::parse("B2"), Some(Level::B2));
        assert_eq!(Level::parse("b2"), None);
        assert_eq!(json!(Level::C1), json!("C1"));
        assert_eq!(Difficulty::parse("hard"), Some(Difficulty::Hard));
        assert_eq!(Difficulty::parse("Hard"), None);
        assert_eq!(json!(CardStatus::Mastered), json!("mastered"));
        assert!(Level::of(0, "level").is_err());
    }

    #[test]
    fn a_choice_keeps_any_value_so_validation_can_name_it() {
        let known: Choice<Difficulty> = serde_json::from_value(json!("easy")).unwrap();
        let misspelt: Choice<Difficulty> = serde_json::from_value(json!("EASY")).unwrap();
        let number: Choice<Difficulty> = serde_json::from_value(json!(3)).unwrap();

        assert_eq!(known, Choice::Known(Difficulty::Easy));
        assert_eq!(misspelt, Choice::Unknown);
        assert_eq!(number, Choice::Unknown);
    }
}
