//! The domain of deck-service: the values requests are parsed into once at the edge
//! (ids, levels, pages, texts, dates; each parser's error names the field), the
//! validated requests ([`requests`]), SM-2 ([`sm2`]) and the progress arithmetic
//! ([`progress`]). Pure: no I/O, so all of it is tested without a database.

pub mod progress;
pub mod requests;
pub mod sm2;

use proto::deck::v1 as pb;
use time::{Date, OffsetDateTime, macros::format_description};
use uuid::Uuid;

use crate::error::Violation;
use sm2::Status;

macro_rules! id_type {
    ($name:ident) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $name(pub Uuid);

        impl $name {
            /// Parses a lowercase hyphenated UUID (the wire form of every id).
            pub fn parse(field: &str, value: &str) -> Result<Self, Violation> {
                parse_uuid(field, value).map(Self)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(DeckId);
id_type!(CardId);
id_type!(UserId);

fn parse_uuid(field: &str, value: &str) -> Result<Uuid, Violation> {
    if value.is_empty() {
        return Err(Violation::new(field, "is required"));
    }
    // Only the canonical form: one id, one spelling (and one cache key).
    match Uuid::try_parse(value) {
        Ok(id) if id.hyphenated().to_string() == value => Ok(id),
        _ => Err(Violation::new(field, "must be a lowercase hyphenated UUID")),
    }
}

/// CEFR level of a deck.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    A1,
    A2,
    B1,
    B2,
    C1,
    C2,
}

impl Level {
    pub const ALL: [Level; 6] = [
        Level::A1,
        Level::A2,
        Level::B1,
        Level::B2,
        Level::C1,
        Level::C2,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::A1 => "A1",
            Level::A2 => "A2",
            Level::B1 => "B1",
            Level::B2 => "B2",
            Level::C1 => "C1",
            Level::C2 => "C2",
        }
    }

    pub fn from_db(value: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|level| level.as_str() == value)
            .unwrap_or(Level::A1)
    }

    /// `None` for LEVEL_UNSPECIFIED; an unknown number is invalid.
    pub fn from_proto(field: &str, value: i32) -> Result<Option<Self>, Violation> {
        match pb::Level::try_from(value) {
            Ok(pb::Level::Unspecified) => Ok(None),
            Ok(pb::Level::A1) => Ok(Some(Level::A1)),
            Ok(pb::Level::A2) => Ok(Some(Level::A2)),
            Ok(pb::Level::B1) => Ok(Some(Level::B1)),
            Ok(pb::Level::B2) => Ok(Some(Level::B2)),
            Ok(pb::Level::C1) => Ok(Some(Level::C1)),
            Ok(pb::Level::C2) => Ok(Some(Level::C2)),
            Err(_) => Err(Violation::new(
                field,
                "must be one of A1, A2, B1, B2, C1, C2",
            )),
        }
    }

    pub fn to_proto(self) -> i32 {
        (match self {
            Level::A1 => pb::Level::A1,
            Level::A2 => pb::Level::A2,
            Level::B1 => pb::Level::B1,
            Level::B2 => pb::Level::B2,
            Level::C1 => pb::Level::C1,
            Level::C2 => pb::Level::C2,
        }) as i32
    }
}

/// Difficulty of a card.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Difficulty {
    Easy,
    Medium,
    Hard,
}

impl Difficulty {
    pub fn as_str(self) -> &'static str {
        match self {
            Difficulty::Easy => "easy",
            Difficulty::Medium => "medium",
            Difficulty::Hard => "hard",
        }
    }

    pub fn parse_str(value: &str) -> Option<Self> {
        Some(match value {
            "easy" => Difficulty::Easy,
            "medium" => Difficulty::Medium,
            "hard" => Difficulty::Hard,
            _ => return None,
        })
    }

    pub fn from_db(value: &str) -> Self {
        Self::parse_str(value).unwrap_or(Difficulty::Medium)
    }

    /// `None` for DIFFICULTY_UNSPECIFIED.
    pub fn from_proto(field: &str, value: i32) -> Result<Option<Self>, Violation> {
        match pb::Difficulty::try_from(value) {
            Ok(pb::Difficulty::Unspecified) => Ok(None),
            Ok(pb::Difficulty::Easy) => Ok(Some(Difficulty::Easy)),
            Ok(pb::Difficulty::Medium) => Ok(Some(Difficulty::Medium)),
            Ok(pb::Difficulty::Hard) => Ok(Some(Difficulty::Hard)),
            Err(_) => Err(Violation::new(field, "must be one of easy, medium, hard")),
        }
    }

    pub fn to_proto(self) -> i32 {
        (match self {
            Difficulty::Easy => pb::Difficulty::Easy,
            Difficulty::Medium => pb::Difficulty::Medium,
            Difficulty::Hard => pb::Difficulty::Hard,
        }) as i32
    }
}

pub fn status_to_proto(status: Status) -> i32 {
    (match status {
        Status::New => pb::CardStatus::New,
        Status::Learning => pb::CardStatus::Learning,
        Status::Review => pb::CardStatus::Review,
        Status::Mastered => pb::CardStatus::Mastered,
    }) as i32
}

pub fn status_from_db(value: &str) -> Status {
    Status::parse(value).unwrap_or(Status::New)
}

/// A validated page request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub page: u32,
    pub page_size: u32,
}

impl Page {
    /// `page` 0 means 1, `page_size` 0 means `default`; `page_size` must lie in 1..=`max`.
    pub fn parse(page: u32, page_size: u32, default: u32, max: u32) -> Result<Self, Violation> {
        let page_size = if page_size == 0 { default } else { page_size };
        if page_size > max {
            return Err(Violation::new(
                "page_size",
                format!("must be between 1 and {max}"),
            ));
        }
        Ok(Self {
            page: page.max(1),
            page_size,
        })
    }

    pub fn limit(self) -> i64 {
        i64::from(self.page_size)
    }

    pub fn offset(self) -> i64 {
        i64::from(self.page - 1) * i64::from(self.page_size)
    }

    /// The slice of `items` this page covers (for lists paginated in memory).
    pub fn slice<T: Clone>(self, items: &[T]) -> Vec<T> {
        let start = usize::try_from(self.offset())
            .unwrap_or(usize::MAX)
            .min(items.len());
        let end = start
            .saturating_add(self.page_size as usize)
            .min(items.len());
        items[start..end].to_vec()
    }
}

/// Text of `min..=max` characters (after trimming surrounding whitespace), or an error naming `field`.
pub fn text(field: &str, value: &str, min: usize, max: usize) -> Result<String, Violation> {
    let value = value.trim();
    let count = value.chars().count();
    if count < min || count > max {
        return Err(if min == 1 && count == 0 {
            Violation::new(field, format!("is required (1–{max} characters)"))
        } else {
            Violation::new(field, format!("must be {min}–{max} characters"))
        });
    }
    if value.chars().any(|c| c == '\0') {
        return Err(Violation::new(field, "must not contain NUL characters"));
    }
    Ok(value.to_owned())
}

/// Optional text: absent or blank is `None`.
pub fn optional_text(
    field: &str,
    value: Option<&str>,
    max: usize,
) -> Result<Option<String>, Violation> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(value) => text(field, value, 1, max).map(Some),
    }
}

/// A search query, 1–100 characters.
pub fn search_query(value: &str) -> Result<String, Violation> {
    text("query", value, 1, 100)
}

/// A count of `min..=max`; 0 means `default` when 0 is not allowed.
pub fn bounded(
    field: &str,
    value: u32,
    default: u32,
    min: u32,
    max: u32,
) -> Result<u32, Violation> {
    let value = if value == 0 && min > 0 {
        default
    } else {
        value
    };
    if !(min..=max).contains(&value) {
        return Err(Violation::new(
            field,
            format!("must be between {min} and {max}"),
        ));
    }
    Ok(value)
}

/// `YYYY-MM-DD`.
pub fn parse_date(field: &str, value: &str) -> Result<Date, Violation> {
    Date::parse(value, format_description!("[year]-[month]-[day]"))
        .map_err(|_| Violation::new(field, "must be a date YYYY-MM-DD"))
}

pub fn format_date(date: Date) -> String {
    date.format(format_description!("[year]-[month]-[day]"))
        .unwrap_or_default()
}

/// The first instant of `day` (UTC).
pub fn midnight(day: Date) -> OffsetDateTime {
    day.midnight().assume_utc()
}

/// The first instant after `day` (UTC).
pub fn next_midnight(day: Date) -> OffsetDateTime {
    day.next_day().unwrap_or(Date::MAX).midnight().assume_utc()
}

/// Every day `from..=to`, in order.
pub fn days_between(from: Date, to: Date) -> Vec<Date> {
    let mut days = Vec::new();
    let mut day = from;
    while day <= to {
        days.push(day);
        match day.next_day() {
            Some(next) => day = next,
            None => break,
        }
    }
    days
}

pub fn timestamp(at: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.unix_timestamp(),
        nanos: at.nanosecond() as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_canonical_uuids() {
        assert!(DeckId::parse("deck_id", "7f0c4b8e-1a2b-4c3d-8e9f-0a1b2c3d4e5f").is_ok());
        let upper = DeckId::parse("deck_id", "7F0C4B8E-1A2B-4C3D-8E9F-0A1B2C3D4E5F").unwrap_err();
        assert_eq!(
            upper,
            Violation::new("deck_id", "must be a lowercase hyphenated UUID")
        );
        assert_eq!(
            DeckId::parse("deck_id", "").unwrap_err(),
            Violation::new("deck_id", "is required")
        );
    }

    #[test]
    fn pages_default_and_bound() {
        assert_eq!(
            Page::parse(0, 0, 20, 100).unwrap(),
            Page {
                page: 1,
                page_size: 20
            }
        );
        assert_eq!(Page::parse(3, 100, 20, 100).unwrap().offset(), 200);
        assert_eq!(
            Page::parse(1, 101, 20, 100).unwrap_err(),
            Violation::new("page_size", "must be between 1 and 100")
        );
        assert_eq!(
            Page {
                page: 2,
                page_size: 2
            }
            .slice(&[1, 2, 3]),
            vec![3]
        );
        assert!(
            Page {
                page: u32::MAX,
                page_size: 100
            }
            .slice(&[1, 2, 3])
            .is_empty()
        );
    }

    #[test]
    fn text_counts_characters_not_bytes() {
        assert_eq!(text("name", " Ελληνικά ", 1, 8).unwrap(), "Ελληνικά");
        assert!(text("name", "", 1, 8).is_err());
        assert!(text("name", "Ελληνικάα", 1, 8).is_err());
    }

    #[test]
    fn dates_parse_only_in_iso_form() {
        assert_eq!(
            format_date(parse_date("start_date", "2026-02-28").unwrap()),
            "2026-02-28"
        );
        assert_eq!(
            parse_date("start_date", "2026-02-30").unwrap_err(),
            Violation::new("start_date", "must be a date YYYY-MM-DD")
        );
        assert!(parse_date("end_date", "26-2-1").is_err());
    }

    #[test]
    fn days_between_lists_every_day_inclusive() {
        use time::macros::date;
        assert_eq!(
            days_between(date!(2026 - 02 - 27), date!(2026 - 03 - 01)),
            [
                date!(2026 - 02 - 27),
                date!(2026 - 02 - 28),
                date!(2026 - 03 - 01)
            ]
        );
        assert!(days_between(date!(2026 - 03 - 01), date!(2026 - 02 - 27)).is_empty());
        assert_eq!(
            next_midnight(date!(2026 - 02 - 28)),
            midnight(date!(2026 - 03 - 01))
        );
    }

    #[test]
    fn bounded_counts_default_zero_only_where_zero_is_not_allowed() {
        assert_eq!(bounded("limit", 0, 20, 1, 100), Ok(20));
        assert_eq!(bounded("new_cards_limit", 0, 10, 0, 50), Ok(0));
        assert_eq!(
            bounded("limit", 101, 20, 1, 100),
            Err(Violation::new("limit", "must be between 1 and 100"))
        );
    }
}
