//! Study: the rows of the study queue, starting study of a deck, and reviews (the SRS
//! row, the review log and the per-deck counters, in one transaction per review).

use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::{Store, db::Tx, outbox::PendingInvalidation};
use crate::{
    domain::{
        CardId, DeckId, UserId,
        requests::{CardSelection, NewReview},
        sm2::{Reviewed, SrsState, Status},
    },
    error::Result,
};

/// A card joined with one user's SRS row (absent for new cards).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct QueueRow {
    pub card_id: Uuid,
    pub deck_id: Uuid,
    pub front_text: String,
    pub back_text: String,
    pub example_sentence: Option<String>,
    pub pronunciation: Option<String>,
    pub difficulty: String,
    pub status: Option<String>,
    pub next_review_date: Option<Date>,
    pub easiness_factor: Option<f64>,
    pub interval_days: Option<i32>,
}

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

/// A review under way: its transaction, with the card's SRS row locked.
pub struct ReviewTx {
    tx: Tx,
    deck_id: Uuid,
    /// The card's state before this review.
    pub previous: SrsState,
    /// Whether the card has never been reviewed.
    pub first_review: bool,
}

impl Store {
    /// The user's due SRS rows (next_review_date <= today) of active decks, oldest first.
    pub async fn due_cards(&self, user: UserId, today: Date) -> Result<Vec<QueueRow>> {
        Ok(sqlx::query_as(
            "SELECT c.id AS card_id, c.deck_id, c.front_text, c.back_text, c.example_sentence, c.pronunciation, \
                    c.difficulty, s.status, s.next_review_date, s.easiness_factor, s.interval_days \
             FROM card_srs s JOIN cards c ON c.id = s.card_id JOIN decks d ON d.id = c.deck_id AND d.is_active \
             WHERE s.user_id = $1 AND s.next_review_date <= $2 \
             ORDER BY s.next_review_date, c.order_index, c.id",
        )
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
        Ok(sqlx::query_as(
            "SELECT c.id AS card_id, c.deck_id, c.front_text, c.back_text, c.example_sentence, c.pronunciation, \
                    c.difficulty, NULL::text AS status, NULL::date AS next_review_date, \
                    NULL::float8 AS easiness_factor, NULL::int4 AS interval_days \
             FROM cards c JOIN decks d ON d.id = c.deck_id AND d.is_active \
             WHERE ($2::uuid IS NULL OR c.deck_id = $2) \
               AND NOT EXISTS (SELECT 1 FROM card_srs s WHERE s.user_id = $1 AND s.card_id = c.id) \
             ORDER BY c.order_index, d.created_at, c.id LIMIT $3",
        )
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
        Ok(sqlx::query_as(
            "SELECT c.id AS card_id, c.deck_id, c.front_text, c.back_text, c.example_sentence, c.pronunciation, \
                    c.difficulty, s.status, s.next_review_date, s.easiness_factor, s.interval_days \
             FROM card_srs s JOIN cards c ON c.id = s.card_id JOIN decks d ON d.id = c.deck_id AND d.is_active \
             WHERE s.user_id = $1 AND s.next_review_date > $3 AND s.status IN ('learning', 'review') \
               AND ($2::uuid IS NULL OR s.deck_id = $2) \
             ORDER BY s.next_review_date, c.order_index, c.id LIMIT $4",
        )
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

    /// Starts the review of `card` by `user`: the card must be in an active deck, and
    /// in `deck` when it is given (`None` otherwise). Creates the card's SRS row if
    /// needed (as InitializeStudy would) and locks it, so two concurrent reviews of one
    /// card apply one after the other instead of both starting from the same state.
    pub async fn begin_review(
        &self,
        user: UserId,
        card: CardId,
        deck: Option<DeckId>,
        now: OffsetDateTime,
    ) -> Result<Option<ReviewTx>> {
        let mut tx = self.db.begin().await?;
        // A card of a soft-deleted deck is gone for learners (HTTP_API.md).
        let card_deck: Option<(Uuid,)> = sqlx::query_as(
            "SELECT deck_id FROM cards WHERE id = $1 \
             AND deck_id IN (SELECT id FROM decks WHERE is_active)",
        )
        .bind(card.0)
        .fetch_optional(tx.conn())
        .await?;
        let deck_id = match (card_deck, deck) {
            (Some((actual,)), Some(expected)) if actual != expected.0 => None,
            (found, _) => found.map(|(id,)| id),
        };
        let Some(deck_id) = deck_id else {
            return Ok(None);
        };
        sqlx::query(
            "INSERT INTO card_srs (user_id, card_id, deck_id, next_review_date, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (user_id, card_id) DO NOTHING",
        )
        .bind(user.0)
        .bind(card.0)
        .bind(deck_id)
        .bind(now.date())
        .bind(now)
        .execute(tx.conn())
        .await?;
        let (ef, interval, repetitions, status, next_review_date, last_reviewed_at): (
            f64,
            i32,
            i32,
            String,
            Date,
            Option<OffsetDateTime>,
        ) = sqlx::query_as(
            "SELECT easiness_factor, interval_days, repetitions, status, next_review_date, last_reviewed_at \
             FROM card_srs WHERE user_id = $1 AND card_id = $2 FOR UPDATE",
        )
        .bind(user.0)
        .bind(card.0)
        .fetch_one(tx.conn())
        .await?;
        Ok(Some(ReviewTx {
            tx,
            deck_id,
            previous: SrsState {
                easiness_factor: ef,
                interval,
                repetitions,
                status: Status::parse(&status).unwrap_or(Status::New),
                next_review_date,
            },
            first_review: last_reviewed_at.is_none(),
        }))
    }

    /// Writes what `review` did (`reviewed`): the new SRS state, the review-log row and
    /// the deck's counters; then commits, with the user's cache keys owed by `owed`
    /// (from [`Store::user_invalidation`]).
    pub async fn finish_review(
        &self,
        review_tx: ReviewTx,
        owed: &mut PendingInvalidation,
        user: UserId,
        review: NewReview,
        reviewed: &Reviewed,
        now: OffsetDateTime,
    ) -> Result<()> {
        let ReviewTx {
            mut tx, deck_id, ..
        } = review_tx;
        let card = review.card;
        let next = reviewed.next;
        sqlx::query(
            "UPDATE card_srs SET easiness_factor = $3, interval_days = $4, repetitions = $5, status = $6, \
             next_review_date = $7, last_reviewed_at = $8, updated_at = $8 WHERE user_id = $1 AND card_id = $2",
        )
        .bind(user.0)
        .bind(card.0)
        .bind(next.easiness_factor)
        .bind(next.interval)
        .bind(next.repetitions)
        .bind(next.status.as_str())
        .bind(next.next_review_date)
        .bind(now)
        .execute(tx.conn())
        .await?;
        sqlx::query(
            "INSERT INTO reviews (id, user_id, card_id, deck_id, quality, time_taken, previous_status, new_status, \
             reviewed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(Uuid::new_v4())
        .bind(user.0)
        .bind(card.0)
        .bind(deck_id)
        .bind(i16::from(review.quality.get()))
        .bind(review.time_taken)
        .bind(reviewed.previous.as_str())
        .bind(next.status.as_str())
        .bind(now)
        .execute(tx.conn())
        .await?;
        sqlx::query(
            "INSERT INTO deck_progress (user_id, deck_id, cards_studied, cards_mastered, first_studied_at, \
             last_studied_at, created_at) VALUES ($1, $2, $3, GREATEST($4, 0), $5, $5, $5) \
             ON CONFLICT (user_id, deck_id) DO UPDATE SET \
               cards_studied = deck_progress.cards_studied + EXCLUDED.cards_studied, \
               cards_mastered = GREATEST(0, deck_progress.cards_mastered + $4), \
               first_studied_at = COALESCE(deck_progress.first_studied_at, EXCLUDED.first_studied_at), \
               last_studied_at = GREATEST(deck_progress.last_studied_at, EXCLUDED.last_studied_at)",
        )
        .bind(user.0)
        .bind(deck_id)
        .bind(reviewed.studied_delta)
        .bind(reviewed.mastered_delta)
        .bind(now)
        .execute(tx.conn())
        .await?;
        self.outbox.commit_owing(tx, owed).await
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
