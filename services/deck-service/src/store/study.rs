//! Study: the rows of the study queue, starting study of a deck, and reviews (the SRS
//! row, the review log, the per-deck counters and the outbox row, in one statement per
//! review).

use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::{
    Store,
    cards::{CARD_COLUMNS, CardRow},
    outbox::PendingInvalidation,
};
use crate::{
    domain::{
        DeckId, UserId,
        requests::{CardSelection, NewReview},
        sm2::{SrsState, Status},
    },
    error::{Error, Result},
};

/// A card joined with one user's SRS row (absent for new cards).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct QueueRow {
    #[sqlx(flatten)]
    pub card: CardRow,
    pub status: Option<String>,
    pub next_review_date: Option<Date>,
    pub easiness_factor: Option<f64>,
    pub interval_days: Option<i32>,
}

/// The SRS columns of a [`QueueRow`], from the user's row `s`.
const SRS_COLUMNS: &str = "s.status, s.next_review_date, s.easiness_factor, s.interval_days";

/// The user's SRS rows `s` with their cards `c`, of active decks.
const SRS_OF_ACTIVE_DECKS: &str = "FROM card_srs s JOIN cards c ON c.id = s.card_id \
                                   JOIN decks d ON d.id = c.deck_id AND d.is_active";

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ReviewRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub card_id: Uuid,
    pub quality: i16,
    pub time_taken: i32,
    pub reviewed_at: OffsetDateTime,
}

/// What InitializeStudy did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Initialized {
    /// The cards that got an SRS row now.
    pub card_ids: Vec<Uuid>,
    /// Selected cards that had one already.
    pub already: u32,
}

/// One review as PostgreSQL applied it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AppliedReview {
    /// The card's state before the review.
    pub previous: SrsState,
    /// Whether the card had never been reviewed.
    pub first_review: bool,
    /// The state the review stored.
    pub next: SrsState,
}

/// The row `apply_review` answers with.
#[derive(sqlx::FromRow)]
struct AppliedRow {
    previous_easiness_factor: f64,
    previous_interval_days: i32,
    previous_repetitions: i32,
    previous_status: String,
    previous_next_review_date: Date,
    first_review: bool,
    easiness_factor: f64,
    interval_days: i32,
    repetitions: i32,
    status: String,
    next_review_date: Date,
    outbox_id: i64,
}

impl AppliedRow {
    fn into_applied(self) -> Result<AppliedReview> {
        let status = |value: &str| {
            Status::parse(value)
                .ok_or_else(|| Error::internal(anyhow::anyhow!("unknown SRS status {value:?}")))
        };
        Ok(AppliedReview {
            previous: SrsState {
                easiness_factor: self.previous_easiness_factor,
                interval: self.previous_interval_days,
                repetitions: self.previous_repetitions,
                status: status(&self.previous_status)?,
                next_review_date: self.previous_next_review_date,
            },
            first_review: self.first_review,
            next: SrsState {
                easiness_factor: self.easiness_factor,
                interval: self.interval_days,
                repetitions: self.repetitions,
                status: status(&self.status)?,
                next_review_date: self.next_review_date,
            },
        })
    }
}

impl Store {
    /// The user's due SRS rows (next_review_date <= today) of active decks, oldest first.
    pub async fn due_cards(&self, user: UserId, today: Date) -> Result<Vec<QueueRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {CARD_COLUMNS}, {SRS_COLUMNS} {SRS_OF_ACTIVE_DECKS} \
             WHERE s.user_id = $1 AND s.next_review_date <= $2 \
             ORDER BY s.next_review_date, c.order_index, c.id"
        ))
        .bind(user.0)
        .bind(today)
        .fetch_all(self.db.pool())
        .await?)
    }

    /// Cards without an SRS row for the user, from active decks, in order_index order.
    pub async fn new_cards(
        &self,
        user: UserId,
        deck: Option<DeckId>,
        limit: i64,
    ) -> Result<Vec<QueueRow>> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_as(&format!(
            "SELECT {CARD_COLUMNS}, NULL::text AS status, NULL::date AS next_review_date, \
                    NULL::float8 AS easiness_factor, NULL::int4 AS interval_days \
             FROM cards c JOIN decks d ON d.id = c.deck_id AND d.is_active \
             WHERE ($2::uuid IS NULL OR c.deck_id = $2) \
               AND NOT EXISTS (SELECT 1 FROM card_srs s WHERE s.user_id = $1 AND s.card_id = c.id) \
             ORDER BY c.order_index, d.created_at, c.id LIMIT $3"
        ))
        .bind(user.0)
        .bind(deck.map(|d| d.0))
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?)
    }

    /// Learning or review rows due after today, soonest first.
    pub async fn early_practice(
        &self,
        user: UserId,
        deck: Option<DeckId>,
        today: Date,
        limit: i64,
    ) -> Result<Vec<QueueRow>> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_as(&format!(
            "SELECT {CARD_COLUMNS}, {SRS_COLUMNS} {SRS_OF_ACTIVE_DECKS} \
             WHERE s.user_id = $1 AND s.next_review_date > $3 AND s.status IN ('learning', 'review') \
               AND ($2::uuid IS NULL OR s.deck_id = $2) \
             ORDER BY s.next_review_date, c.order_index, c.id LIMIT $4"
        ))
        .bind(user.0)
        .bind(deck.map(|d| d.0))
        .bind(today)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?)
    }

    /// Creates SRS rows (new, due today) for the `cards` of `deck`, and starts the deck
    /// for the user; `None` when the deck is missing or inactive.
    pub async fn initialize(
        &self,
        user: UserId,
        deck: DeckId,
        cards: CardSelection,
        now: OffsetDateTime,
    ) -> Result<Option<Initialized>> {
        let cards = match cards {
            CardSelection::All => None,
            CardSelection::Only(ids) => Some(ids),
        };
        let mut tx = self.db.begin().await?;
        let active: Option<(bool,)> =
            sqlx::query_as("SELECT is_active FROM decks WHERE id = $1 FOR SHARE")
                .bind(deck.0)
                .fetch_optional(tx.conn())
                .await?;
        if !matches!(active, Some((true,))) {
            return Ok(None);
        }
        let (matching,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM cards WHERE deck_id = $1 AND ($2::uuid[] IS NULL OR id = ANY($2))")
                .bind(deck.0)
                .bind(&cards)
                .fetch_one(tx.conn())
                .await?;
        let inserted: Vec<(Uuid,)> = sqlx::query_as(
            "INSERT INTO card_srs (user_id, card_id, deck_id, next_review_date, created_at, updated_at) \
             SELECT $1, c.id, c.deck_id, $4, $5, $5 FROM cards c \
             WHERE c.deck_id = $2 AND ($3::uuid[] IS NULL OR c.id = ANY($3)) \
             ORDER BY c.order_index, c.id \
             ON CONFLICT (user_id, card_id) DO NOTHING RETURNING card_id",
        )
        .bind(user.0)
        .bind(deck.0)
        .bind(&cards)
        .bind(now.date())
        .bind(now)
        .fetch_all(tx.conn())
        .await?;
        // Starting a deck is what makes GetDeckProgress answer for it.
        sqlx::query(
            "INSERT INTO deck_progress (user_id, deck_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, deck_id) DO NOTHING",
        )
        .bind(user.0)
        .bind(deck.0)
        .bind(now)
        .execute(tx.conn())
        .await?;
        let keys = self.outbox.user_keys(user);
        self.outbox.commit(tx, keys).await?;
        let already = (matching as usize).saturating_sub(inserted.len()) as u32;
        Ok(Some(Initialized {
            card_ids: inserted.into_iter().map(|(id,)| id).collect(),
            already,
        }))
    }

    /// Applies one review of `review.card` by `user` at `now`, in one statement (one
    /// round trip, its own transaction: `apply_review` in the migrations, where its rules
    /// are commented). The card must be in an active deck, and in `deck` when it is given
    /// (`None` otherwise, and nothing changes). The statement also records the user's
    /// cache keys (`owed`'s) in the outbox; its row is owed by `owed` from then on.
    pub async fn review(
        &self,
        owed: &mut PendingInvalidation,
        user: UserId,
        deck: Option<DeckId>,
        review: NewReview,
        now: OffsetDateTime,
    ) -> Result<Option<AppliedReview>> {
        let row: Option<AppliedRow> =
            sqlx::query_as("SELECT * FROM apply_review($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                .bind(user.0)
                .bind(review.card.0)
                .bind(deck.map(|d| d.0))
                .bind(i16::from(review.quality.get()))
                .bind(review.time_taken)
                .bind(now)
                .bind(now.date())
                .bind(Uuid::new_v4())
                .bind(owed.keys())
                .fetch_optional(self.db.pool())
                .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        owed.record(row.outbox_id);
        Ok(Some(row.into_applied()?))
    }
    /// The user's reviews in `[from, to)`, newest first, and how many there are in all.
    pub async fn list_reviews(
        &self,
        user: UserId,
        from: Option<OffsetDateTime>,
        to: Option<OffsetDateTime>,
        limit: i64,
        offset: i64,
    ) -> Result<(i64, Vec<ReviewRow>)> {
        let filter = "user_id = $1 AND ($2::timestamptz IS NULL OR reviewed_at >= $2) \
                      AND ($3::timestamptz IS NULL OR reviewed_at < $3)";
        let (total,): (i64,) =
            sqlx::query_as(&format!("SELECT count(*) FROM reviews WHERE {filter}"))
                .bind(user.0)
                .bind(from)
                .bind(to)
                .fetch_one(self.db.pool())
                .await?;
        let reviews = sqlx::query_as(&format!(
            "SELECT id, user_id, card_id, quality, time_taken, reviewed_at FROM reviews WHERE {filter} \
             ORDER BY reviewed_at DESC, id DESC LIMIT $4 OFFSET $5"
        ))
        .bind(user.0)
        .bind(from)
        .bind(to)
        .bind(limit)
        .bind(offset)
        .fetch_all(self.db.pool())
        .await?;
        Ok((total, reviews))
    }
}
