//! Progress: aggregates of the SRS rows and of the review log, and the started decks.
//!
//! SRS rows count only in active decks: a deleted deck's cards are gone for learners,
//! from the counts by status and the due count too. The review log keeps every review
//! made before a delete (history stays history).

use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::Store;
use crate::{
    domain::{DeckId, UserId, midnight, next_midnight, progress::DayActivity},
    error::Result,
};

/// Counts of one user's SRS rows (of active decks) by status, plus those due.
#[derive(Clone, Copy, Debug, Default, sqlx::FromRow)]
pub struct StatusCounts {
    pub new: i64,
    pub learning: i64,
    pub review: i64,
    pub mastered: i64,
    pub due: i64,
    pub average_easiness_factor: Option<f64>,
    pub average_interval: Option<f64>,
}

/// Review-log aggregates.
#[derive(Clone, Copy, Debug, Default, sqlx::FromRow)]
pub struct ReviewTotals {
    pub total: i64,
    pub study_time: i64,
    pub average_quality: Option<f64>,
    pub correct: i64,
    pub days_active: i64,
}

/// One started deck of a user, with its progress figures.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ProgressRow {
    pub deck_id: Uuid,
    pub deck_name: String,
    pub deck_level: String,
    pub deck_description: Option<String>,
    pub cards_studied: i32,
    pub cards_mastered: i32,
    pub first_studied_at: Option<OffsetDateTime>,
    pub last_studied_at: Option<OffsetDateTime>,
    pub total_cards: i64,
    pub cards_due: i64,
    pub average_easiness_factor: Option<f64>,
}

impl Store {
    /// The user's SRS rows of active decks (of `deck`) by status, and those due `today`.
    pub async fn status_counts(
        &self,
        user: UserId,
        deck: Option<DeckId>,
        today: Date,
    ) -> Result<StatusCounts> {
        Ok(sqlx::query_as(
            "SELECT count(*) FILTER (WHERE s.status = 'new') AS new, \
                    count(*) FILTER (WHERE s.status = 'learning') AS learning, \
                    count(*) FILTER (WHERE s.status = 'review') AS review, \
                    count(*) FILTER (WHERE s.status = 'mastered') AS mastered, \
                    count(*) FILTER (WHERE s.next_review_date <= $3) AS due, \
                    avg(s.easiness_factor) AS average_easiness_factor, \
                    avg(s.interval_days)::float8 AS average_interval \
             FROM card_srs s JOIN decks d ON d.id = s.deck_id AND d.is_active \
             WHERE s.user_id = $1 AND ($2::uuid IS NULL OR s.deck_id = $2)",
        )
        .bind(user.0)
        .bind(deck.map(|d| d.0))
        .bind(today)
        .fetch_one(self.db.pool())
        .await?)
    }

    /// Aggregates of the review log in `[from, to)` (all time when `None`).
    pub async fn review_totals(
        &self,
        user: UserId,
        deck: Option<DeckId>,
        from: Option<OffsetDateTime>,
        to: Option<OffsetDateTime>,
    ) -> Result<ReviewTotals> {
        Ok(sqlx::query_as(
            "SELECT count(*) AS total, COALESCE(sum(time_taken), 0)::int8 AS study_time, \
                    avg(quality)::float8 AS average_quality, count(*) FILTER (WHERE quality >= 3) AS correct, \
                    count(DISTINCT (reviewed_at AT TIME ZONE 'UTC')::date) AS days_active \
             FROM reviews WHERE user_id = $1 AND ($2::uuid IS NULL OR deck_id = $2) \
               AND ($3::timestamptz IS NULL OR reviewed_at >= $3) AND ($4::timestamptz IS NULL OR reviewed_at < $4)",
        )
        .bind(user.0)
        .bind(deck.map(|d| d.0))
        .bind(from)
        .bind(to)
        .fetch_one(self.db.pool())
        .await?)
    }

    /// The UTC days on which the user reviewed something, up to `today`, newest first.
    pub async fn study_days(&self, user: UserId, today: Date) -> Result<Vec<Date>> {
        let rows: Vec<(Date,)> = sqlx::query_as(
            "SELECT DISTINCT (reviewed_at AT TIME ZONE 'UTC')::date AS day FROM reviews \
             WHERE user_id = $1 AND reviewed_at < $2 ORDER BY day DESC",
        )
        .bind(user.0)
        .bind(next_midnight(today))
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.into_iter().map(|(day,)| day).collect())
    }

    /// Per-day aggregates of the review log for the days `from..=to` that have reviews.
    pub async fn daily(
        &self,
        user: UserId,
        deck: Option<DeckId>,
        from: Date,
        to: Date,
    ) -> Result<Vec<(Date, DayActivity)>> {
        #[derive(sqlx::FromRow)]
        struct DayRow {
            day: Date,
            reviews: i64,
            study_time: i64,
            average_quality: f64,
            correct: i64,
            learned: i64,
            learning: i64,
            mastered: i64,
        }
        let rows: Vec<DayRow> = sqlx::query_as(
            "SELECT (reviewed_at AT TIME ZONE 'UTC')::date AS day, count(*) AS reviews, \
                    COALESCE(sum(time_taken), 0)::int8 AS study_time, avg(quality)::float8 AS average_quality, \
                    count(*) FILTER (WHERE quality >= 3) AS correct, \
                    count(*) FILTER (WHERE previous_status = 'new') AS learned, \
                    count(*) FILTER (WHERE new_status = 'learning') AS learning, \
                    count(*) FILTER (WHERE new_status = 'mastered' AND previous_status <> 'mastered') AS mastered \
             FROM reviews WHERE user_id = $1 AND ($2::uuid IS NULL OR deck_id = $2) \
               AND reviewed_at >= $3 AND reviewed_at < $4 \
             GROUP BY 1 ORDER BY 1",
        )
        .bind(user.0)
        .bind(deck.map(|d| d.0))
        .bind(midnight(from))
        .bind(next_midnight(to))
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                (
                    row.day,
                    DayActivity {
                        reviews: row.reviews,
                        study_time: row.study_time,
                        average_quality: row.average_quality,
                        correct: row.correct,
                        learned: row.learned,
                        learning: row.learning,
                        mastered: row.mastered,
                    },
                )
            })
            .collect())
    }

    /// The user's started decks (active ones), most recently studied first; or the
    /// one deck `only`.
    pub async fn progress(
        &self,
        user: UserId,
        only: Option<DeckId>,
        today: Date,
    ) -> Result<Vec<ProgressRow>> {
        Ok(sqlx::query_as(
            "SELECT p.deck_id, d.name AS deck_name, d.level AS deck_level, d.description AS deck_description, \
                    p.cards_studied, p.cards_mastered, p.first_studied_at, p.last_studied_at, \
                    (SELECT count(*) FROM cards c WHERE c.deck_id = p.deck_id) AS total_cards, \
                    (SELECT count(*) FROM card_srs s WHERE s.user_id = p.user_id AND s.deck_id = p.deck_id \
                       AND s.next_review_date <= $3) AS cards_due, \
                    (SELECT avg(s.easiness_factor) FROM card_srs s WHERE s.user_id = p.user_id \
                       AND s.deck_id = p.deck_id) AS average_easiness_factor \
             FROM deck_progress p JOIN decks d ON d.id = p.deck_id AND d.is_active \
             WHERE p.user_id = $1 AND ($2::uuid IS NULL OR p.deck_id = $2) \
             ORDER BY p.last_studied_at DESC NULLS LAST, p.created_at DESC, p.deck_id",
        )
        .bind(user.0)
        .bind(only.map(|d| d.0))
        .bind(today)
        .fetch_all(self.db.pool())
        .await?)
    }
}
