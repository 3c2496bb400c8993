//! PostgreSQL access: every query of deck-service, with runtime-checked `query_as`
//! (no database at build time). Writes record the cache keys they make stale in
//! `cache_outbox` inside their own transaction, then invalidate after COMMIT.
//!
//! Every statement run for a request is counted, so tests can assert that a cached
//! read did not touch PostgreSQL.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use sqlx::{PgPool, Postgres, Transaction};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::{
    cache::{Cache, PendingInvalidation},
    domain::{CardId, DeckId, Difficulty, Level, UserId},
    error::{Error, Result},
    sm2::{self, Quality, SrsState, Status},
};

/// The database side of deck-service.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    cache: Cache,
    queries: Arc<AtomicU64>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct DeckRow {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub level: String,
    pub is_active: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct CardRow {
    pub id: Uuid,
    pub deck_id: Uuid,
    pub front_text: String,
    pub back_text: String,
    pub example_sentence: Option<String>,
    pub pronunciation: Option<String>,
    pub difficulty: String,
    pub order_index: i32,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

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

/// Counts of one user's SRS rows by status, plus those due.
#[derive(Clone, Copy, Debug, Default, sqlx::FromRow)]
pub struct StatusCountsRow {
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

/// One UTC day of the review log.
#[derive(Clone, Copy, Debug, sqlx::FromRow)]
pub struct DayRow {
    pub day: Date,
    pub reviews: i64,
    pub study_time: i64,
    pub average_quality: f64,
    pub correct: i64,
    pub learned: i64,
    pub learning: i64,
    pub mastered: i64,
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

/// Fields of a new card, validated.
#[derive(Clone, Debug)]
pub struct NewCard {
    pub front_text: String,
    pub back_text: String,
    pub example_sentence: Option<String>,
    pub pronunciation: Option<String>,
    pub difficulty: Difficulty,
    pub order_index: i32,
}

/// A partial deck update (None: unchanged; `Some(None)`: set to null).
#[derive(Clone, Debug, Default)]
pub struct DeckPatch {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub level: Option<Level>,
    pub is_active: Option<bool>,
}

/// A partial card update.
#[derive(Clone, Debug, Default)]
pub struct CardPatch {
    pub deck_id: Option<DeckId>,
    pub front_text: Option<String>,
    pub back_text: Option<String>,
    pub example_sentence: Option<Option<String>>,
    pub pronunciation: Option<Option<String>>,
    pub difficulty: Option<Difficulty>,
    pub order_index: Option<i32>,
}

/// One review to apply, validated.
#[derive(Clone, Copy, Debug)]
pub struct NewReview {
    pub card: CardId,
    pub quality: Quality,
    /// Seconds, 0 or more.
    pub time_taken: i32,
}

/// What one review did.
#[derive(Clone, Debug)]
pub struct ReviewOutcome {
    pub card_id: Uuid,
    pub previous: Status,
    pub next: SrsState,
    pub message: Option<&'static str>,
}

/// Why one review of a bulk submission was not applied.
pub enum ReviewFailure {
    /// Reported as a failed item; the others go on.
    CardNotFound,
    Other(Error),
}

/// `%…%` for ILIKE with the wildcards of `query` escaped.
fn like_pattern(query: &str) -> String {
    let mut pattern = String::with_capacity(query.len() + 2);
    pattern.push('%');
    for c in query.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

const DECK_COLUMNS: &str = "id, name, description, level, is_active, created_at, updated_at";
const CARD_COLUMNS: &str = "id, deck_id, front_text, back_text, example_sentence, pronunciation, difficulty, \
                            order_index, created_at, updated_at";

impl Store {
    pub fn new(pool: PgPool, cache: Cache) -> Self {
        Self {
            pool,
            cache,
            queries: Arc::default(),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Statements run so far on behalf of requests.
    pub fn query_counter(&self) -> Arc<AtomicU64> {
        self.queries.clone()
    }

    fn count(&self, statements: u64) {
        self.queries.fetch_add(statements, Ordering::Relaxed);
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        self.count(1);
        Ok(self.pool.begin().await?)
    }

    /// Records `keys` in the outbox, commits, then invalidates them.
    async fn commit(&self, tx: Transaction<'static, Postgres>, keys: Vec<String>) -> Result<()> {
        let mut owed = PendingInvalidation::new(&self.cache, &self.pool, keys);
        self.commit_recording(tx, &mut owed).await?;
        owed.run().await;
        Ok(())
    }

    /// Adds `owed`'s keys to the outbox and commits. From here on the invalidation is
    /// owed even if this future is dropped (see [`PendingInvalidation`]).
    async fn commit_recording(
        &self,
        mut tx: Transaction<'static, Postgres>,
        owed: &mut PendingInvalidation,
    ) -> Result<()> {
        self.count(2);
        let (id,): (i64,) =
            sqlx::query_as("INSERT INTO cache_outbox (keys) VALUES ($1) RETURNING id")
                .bind(owed.keys())
                .fetch_one(&mut *tx)
                .await?;
        owed.record(id);
        tx.commit().await?;
        Ok(())
    }

    /// The invalidation owed by reviews (and study initialisation) of `user`.
    pub fn user_invalidation(&self, user: UserId) -> PendingInvalidation {
        PendingInvalidation::new(
            &self.cache,
            &self.pool,
            self.cache.keys().of_user(user).to_vec(),
        )
    }

    /// The cache keys a change to the content of `decks` makes stale: the decks' own
    /// keys, and the progress and due cards of every user who started one of them.
    async fn content_keys(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        decks: &[Uuid],
    ) -> Result<Vec<String>> {
        self.count(1);
        let users: Vec<(Uuid,)> =
            sqlx::query_as("SELECT DISTINCT user_id FROM deck_progress WHERE deck_id = ANY($1)")
                .bind(decks)
                .fetch_all(&mut **tx)
                .await?;
        let keys = self.cache.keys();
        let mut out: Vec<String> = decks
            .iter()
            .flat_map(|deck| keys.of_deck(DeckId(*deck)))
            .collect();
        out.extend(users.iter().flat_map(|(user,)| keys.of_user(UserId(*user))));
        Ok(out)
    }

    // ------------------------------------------------------------------ decks

    pub async fn list_decks(
        &self,
        level: Option<Level>,
        limit: i64,
        offset: i64,
    ) -> Result<(i64, Vec<DeckRow>)> {
        self.count(2);
        let level = level.map(Level::as_str);
        let (total,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM decks WHERE is_active AND ($1::text IS NULL OR level = $1)",
        )
        .bind(level)
        .fetch_one(&self.pool)
        .await?;
        let decks = sqlx::query_as(&format!(
            "SELECT {DECK_COLUMNS} FROM decks WHERE is_active AND ($1::text IS NULL OR level = $1) \
             ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
        ))
        .bind(level)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        Ok((total, decks))
    }

    pub async fn search_decks(
        &self,
        query: &str,
        limit: i64,
        offset: i64,
    ) -> Result<(i64, Vec<DeckRow>)> {
        self.count(2);
        let pattern = like_pattern(query);
        let filter =
            "is_active AND (name ILIKE $1 ESCAPE '\\' OR description ILIKE $1 ESCAPE '\\')";
        let (total,): (i64,) =
            sqlx::query_as(&format!("SELECT count(*) FROM decks WHERE {filter}"))
                .bind(&pattern)
                .fetch_one(&self.pool)
                .await?;
        let decks = sqlx::query_as(&format!(
            "SELECT {DECK_COLUMNS} FROM decks WHERE {filter} ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
        ))
        .bind(&pattern)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        Ok((total, decks))
    }

    /// An active deck with its card count, in one statement.
    pub async fn active_deck_with_count(&self, deck: DeckId) -> Result<Option<(DeckRow, i64)>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            deck: DeckRow,
            card_count: i64,
        }
        self.count(1);
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {DECK_COLUMNS}, (SELECT count(*) FROM cards c WHERE c.deck_id = d.id) AS card_count \
             FROM decks d WHERE id = $1 AND is_active"
        ))
        .bind(deck.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| (row.deck, row.card_count)))
    }

    /// The deck (active or not).
    pub async fn deck(&self, deck: DeckId) -> Result<Option<DeckRow>> {
        self.count(1);
        Ok(
            sqlx::query_as(&format!("SELECT {DECK_COLUMNS} FROM decks WHERE id = $1"))
                .bind(deck.0)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn create_deck(
        &self,
        name: &str,
        description: Option<&str>,
        level: Level,
        now: OffsetDateTime,
    ) -> Result<DeckRow> {
        let mut tx = self.begin().await?;
        self.count(1);
        let deck: DeckRow = sqlx::query_as(&format!(
            "INSERT INTO decks (id, name, description, level, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING {DECK_COLUMNS}"
        ))
        .bind(Uuid::new_v4())
        .bind(name)
        .bind(description)
        .bind(level.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        // A "missing" entry cannot exist for a fresh id; the keys are listed anyway so
        // the rule "every write invalidates what it touches" has no exception.
        let keys = self.cache.keys().of_deck(DeckId(deck.id)).to_vec();
        self.commit(tx, keys).await?;
        Ok(deck)
    }

    pub async fn update_deck(
        &self,
        deck: DeckId,
        patch: DeckPatch,
        now: OffsetDateTime,
    ) -> Result<Option<DeckRow>> {
        let mut tx = self.begin().await?;
        self.count(1);
        let row: Option<DeckRow> = sqlx::query_as(&format!(
            "UPDATE decks SET \
               name = COALESCE($2, name), \
               description = CASE WHEN $3 THEN $4 ELSE description END, \
               level = COALESCE($5, level), \
               is_active = COALESCE($6, is_active), \
               updated_at = $7 \
             WHERE id = $1 RETURNING {DECK_COLUMNS}"
        ))
        .bind(deck.0)
        .bind(patch.name)
        .bind(patch.description.is_some())
        .bind(patch.description.flatten())
        .bind(patch.level.map(Level::as_str))
        .bind(patch.is_active)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let keys = self.content_keys(&mut tx, &[deck.0]).await?;
        self.commit(tx, keys).await?;
        Ok(Some(row))
    }

    /// Soft delete; `false` when the deck does not exist. Deleting twice is fine.
    pub async fn delete_deck(&self, deck: DeckId, now: OffsetDateTime) -> Result<bool> {
        let mut tx = self.begin().await?;
        self.count(1);
        let found = sqlx::query(
            "UPDATE decks SET is_active = false, updated_at = CASE WHEN is_active THEN $2 ELSE updated_at END \
             WHERE id = $1",
        )
        .bind(deck.0)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !found {
            return Ok(false);
        }
        let keys = self.content_keys(&mut tx, &[deck.0]).await?;
        self.commit(tx, keys).await?;
        Ok(true)
    }

    // ------------------------------------------------------------------ cards

    /// Every card of an active deck in order; `None` when the deck is missing or inactive.
    pub async fn cards_of_active_deck(&self, deck: DeckId) -> Result<Option<Vec<CardRow>>> {
        self.count(2);
        let active: Option<(bool,)> = sqlx::query_as("SELECT is_active FROM decks WHERE id = $1")
            .bind(deck.0)
            .fetch_optional(&self.pool)
            .await?;
        if !matches!(active, Some((true,))) {
            return Ok(None);
        }
        let cards = sqlx::query_as(&format!(
            "SELECT {CARD_COLUMNS} FROM cards WHERE deck_id = $1 ORDER BY order_index, id"
        ))
        .bind(deck.0)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(cards))
    }

    pub async fn search_cards(
        &self,
        query: &str,
        deck: Option<DeckId>,
        limit: i64,
        offset: i64,
    ) -> Result<(i64, Vec<CardRow>)> {
        self.count(2);
        let pattern = like_pattern(query);
        let filter = "($2::uuid IS NULL OR deck_id = $2) AND (front_text ILIKE $1 ESCAPE '\\' \
                      OR back_text ILIKE $1 ESCAPE '\\' OR example_sentence ILIKE $1 ESCAPE '\\') \
                      AND deck_id IN (SELECT id FROM decks WHERE is_active)";
        let (total,): (i64,) =
            sqlx::query_as(&format!("SELECT count(*) FROM cards WHERE {filter}"))
                .bind(&pattern)
                .bind(deck.map(|d| d.0))
                .fetch_one(&self.pool)
                .await?;
        let cards = sqlx::query_as(&format!(
            "SELECT {CARD_COLUMNS} FROM cards WHERE {filter} ORDER BY deck_id, order_index, id LIMIT $3 OFFSET $4"
        ))
        .bind(&pattern)
        .bind(deck.map(|d| d.0))
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        Ok((total, cards))
    }

    /// A card of an active deck: a soft-deleted deck takes its cards with it.
    pub async fn card(&self, card: CardId) -> Result<Option<CardRow>> {
        self.count(1);
        Ok(sqlx::query_as(&format!(
            "SELECT {CARD_COLUMNS} FROM cards WHERE id = $1 \
             AND deck_id IN (SELECT id FROM decks WHERE is_active)"
        ))
        .bind(card.0)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Creates `cards` in `deck`, all or nothing; `None` when the deck does not exist.
    pub async fn create_cards(
        &self,
        deck: DeckId,
        cards: Vec<NewCard>,
        now: OffsetDateTime,
    ) -> Result<Option<Vec<CardRow>>> {
        let mut tx = self.begin().await?;
        self.count(1);
        // Lock the deck row so a concurrent delete cannot interleave.
        let exists: Option<(Uuid,)> =
            sqlx::query_as("SELECT id FROM decks WHERE id = $1 FOR SHARE")
                .bind(deck.0)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let mut created = Vec::with_capacity(cards.len());
        for card in cards {
            self.count(1);
            let row: CardRow = sqlx::query_as(&format!(
                "INSERT INTO cards (id, deck_id, front_text, back_text, example_sentence, pronunciation, \
                 difficulty, order_index, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING {CARD_COLUMNS}"
            ))
            .bind(Uuid::new_v4())
            .bind(deck.0)
            .bind(&card.front_text)
            .bind(&card.back_text)
            .bind(&card.example_sentence)
            .bind(&card.pronunciation)
            .bind(card.difficulty.as_str())
            .bind(card.order_index)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            created.push(row);
        }
        let keys = self.content_keys(&mut tx, &[deck.0]).await?;
        self.commit(tx, keys).await?;
        Ok(Some(created))
    }

    /// `Err(NotFound)` names what is missing: the card, or the deck it should move to.
    pub async fn update_card(
        &self,
        card: CardId,
        patch: CardPatch,
        now: OffsetDateTime,
    ) -> Result<CardRow> {
        let mut tx = self.begin().await?;
        self.count(1);
        let current: Option<(Uuid,)> =
            sqlx::query_as("SELECT deck_id FROM cards WHERE id = $1 FOR UPDATE")
                .bind(card.0)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((old_deck,)) = current else {
            return Err(Error::NotFound(format!("Card with ID '{card}' not found")));
        };
        if let Some(new_deck) = patch.deck_id {
            self.count(1);
            let exists: Option<(Uuid,)> =
                sqlx::query_as("SELECT id FROM decks WHERE id = $1 FOR SHARE")
                    .bind(new_deck.0)
                    .fetch_optional(&mut *tx)
                    .await?;
            if exists.is_none() {
                return Err(Error::NotFound(format!(
                    "Deck with ID '{new_deck}' not found"
                )));
            }
        }
        self.count(1);
        let row: CardRow = sqlx::query_as(&format!(
            "UPDATE cards SET \
               deck_id = COALESCE($2, deck_id), \
               front_text = COALESCE($3, front_text), \
               back_text = COALESCE($4, back_text), \
               example_sentence = CASE WHEN $5 THEN $6 ELSE example_sentence END, \
               pronunciation = CASE WHEN $7 THEN $8 ELSE pronunciation END, \
               difficulty = COALESCE($9, difficulty), \
               order_index = COALESCE($10, order_index), \
               updated_at = $11 \
             WHERE id = $1 RETURNING {CARD_COLUMNS}"
        ))
        .bind(card.0)
        .bind(patch.deck_id.map(|d| d.0))
        .bind(patch.front_text)
        .bind(patch.back_text)
        .bind(patch.example_sentence.is_some())
        .bind(patch.example_sentence.flatten())
        .bind(patch.pronunciation.is_some())
        .bind(patch.pronunciation.flatten())
        .bind(patch.difficulty.map(Difficulty::as_str))
        .bind(patch.order_index)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let mut decks = vec![old_deck];
        if row.deck_id != old_deck {
            decks.push(row.deck_id);
            self.move_srs(&mut tx, card.0, old_deck, row.deck_id, now)
                .await?;
        }
        let keys = self.content_keys(&mut tx, &decks).await?;
        self.commit(tx, keys).await?;
        Ok(row)
    }

    /// A card moved decks: its SRS rows follow it, and the per-deck counters move with them.
    async fn move_srs(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        card: Uuid,
        from: Uuid,
        to: Uuid,
        now: OffsetDateTime,
    ) -> Result<()> {
        self.count(3);
        sqlx::query(
            "UPDATE deck_progress p SET \
               cards_studied = GREATEST(0, p.cards_studied - (s.last_reviewed_at IS NOT NULL)::int), \
               cards_mastered = GREATEST(0, p.cards_mastered - (s.status = 'mastered')::int) \
             FROM card_srs s WHERE s.card_id = $1 AND p.user_id = s.user_id AND p.deck_id = $2",
        )
        .bind(card)
        .bind(from)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "INSERT INTO deck_progress (user_id, deck_id, cards_studied, cards_mastered, created_at) \
             SELECT s.user_id, $2, (s.last_reviewed_at IS NOT NULL)::int, (s.status = 'mastered')::int, $3 \
             FROM card_srs s WHERE s.card_id = $1 \
             ON CONFLICT (user_id, deck_id) DO UPDATE SET \
               cards_studied = deck_progress.cards_studied + EXCLUDED.cards_studied, \
               cards_mastered = deck_progress.cards_mastered + EXCLUDED.cards_mastered",
        )
        .bind(card)
        .bind(to)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        sqlx::query("UPDATE card_srs SET deck_id = $2 WHERE card_id = $1")
            .bind(card)
            .bind(to)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// `false` when the card does not exist.
    pub async fn delete_card(&self, card: CardId) -> Result<bool> {
        let mut tx = self.begin().await?;
        self.count(1);
        let current: Option<(Uuid,)> =
            sqlx::query_as("SELECT deck_id FROM cards WHERE id = $1 FOR UPDATE")
                .bind(card.0)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((deck,)) = current else {
            return Ok(false);
        };
        // Take the card out of every user's per-deck counters before its SRS rows go.
        self.count(2);
        sqlx::query(
            "UPDATE deck_progress p SET \
               cards_studied = GREATEST(0, p.cards_studied - (s.last_reviewed_at IS NOT NULL)::int), \
               cards_mastered = GREATEST(0, p.cards_mastered - (s.status = 'mastered')::int) \
             FROM card_srs s WHERE s.card_id = $1 AND p.user_id = s.user_id AND p.deck_id = $2",
        )
        .bind(card.0)
        .bind(deck)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM cards WHERE id = $1")
            .bind(card.0)
            .execute(&mut *tx)
            .await?;
        let keys = self.content_keys(&mut tx, &[deck]).await?;
        self.commit(tx, keys).await?;
        Ok(true)
    }

    // ------------------------------------------------------------------ study

    /// The user's due SRS rows (next_review_date <= today) of active decks, oldest first.
    pub async fn due_cards(&self, user: UserId, today: Date) -> Result<Vec<QueueRow>> {
        self.count(1);
        Ok(sqlx::query_as(
            "SELECT c.id AS card_id, c.deck_id, c.front_text, c.back_text, c.example_sentence, c.pronunciation, \
                    c.difficulty, s.status, s.next_review_date, s.easiness_factor, s.interval_days \
             FROM card_srs s JOIN cards c ON c.id = s.card_id JOIN decks d ON d.id = c.deck_id AND d.is_active \
             WHERE s.user_id = $1 AND s.next_review_date <= $2 \
             ORDER BY s.next_review_date, c.order_index, c.id",
        )
        .bind(user.0)
        .bind(today)
        .fetch_all(&self.pool)
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
        self.count(1);
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
        .fetch_all(&self.pool)
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
        self.count(1);
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
        .fetch_all(&self.pool)
        .await?)
    }

    /// Creates SRS rows (new, due today) for `cards` of `deck` (every card when `None`).
    /// Returns the ids newly initialised and how many already had a row; `None` when
    /// the deck is missing or inactive.
    pub async fn initialize(
        &self,
        user: UserId,
        deck: DeckId,
        cards: Option<Vec<Uuid>>,
        now: OffsetDateTime,
    ) -> Result<Option<(Vec<Uuid>, u32)>> {
        let mut tx = self.begin().await?;
        self.count(1);
        let active: Option<(bool,)> =
            sqlx::query_as("SELECT is_active FROM decks WHERE id = $1 FOR SHARE")
                .bind(deck.0)
                .fetch_optional(&mut *tx)
                .await?;
        if !matches!(active, Some((true,))) {
            return Ok(None);
        }
        self.count(3);
        let (matching,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM cards WHERE deck_id = $1 AND ($2::uuid[] IS NULL OR id = ANY($2))")
                .bind(deck.0)
                .bind(&cards)
                .fetch_one(&mut *tx)
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
        .fetch_all(&mut *tx)
        .await?;
        // Starting a deck is what makes GetDeckProgress answer for it.
        sqlx::query(
            "INSERT INTO deck_progress (user_id, deck_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, deck_id) DO NOTHING",
        )
        .bind(user.0)
        .bind(deck.0)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let keys = self.cache.keys().of_user(user).to_vec();
        self.commit(tx, keys).await?;
        let already = (matching as usize).saturating_sub(inserted.len()) as u32;
        Ok(Some((
            inserted.into_iter().map(|(id,)| id).collect(),
            already,
        )))
    }

    pub async fn status_counts(
        &self,
        user: UserId,
        deck: Option<DeckId>,
        today: Date,
    ) -> Result<StatusCountsRow> {
        self.count(1);
        Ok(sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status = 'new') AS new, \
                    count(*) FILTER (WHERE status = 'learning') AS learning, \
                    count(*) FILTER (WHERE status = 'review') AS review, \
                    count(*) FILTER (WHERE status = 'mastered') AS mastered, \
                    count(*) FILTER (WHERE next_review_date <= $3) AS due, \
                    avg(easiness_factor) AS average_easiness_factor, \
                    avg(interval_days)::float8 AS average_interval \
             FROM card_srs WHERE user_id = $1 AND ($2::uuid IS NULL OR deck_id = $2)",
        )
        .bind(user.0)
        .bind(deck.map(|d| d.0))
        .bind(today)
        .fetch_one(&self.pool)
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
        self.count(1);
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
        .fetch_one(&self.pool)
        .await?)
    }

    /// The UTC days on which the user reviewed something, up to `today`, newest first.
    pub async fn study_days(&self, user: UserId, today: Date) -> Result<Vec<Date>> {
        self.count(1);
        let rows: Vec<(Date,)> = sqlx::query_as(
            "SELECT DISTINCT (reviewed_at AT TIME ZONE 'UTC')::date AS day FROM reviews \
             WHERE user_id = $1 AND reviewed_at < $2 ORDER BY day DESC",
        )
        .bind(user.0)
        .bind(next_midnight(today))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(day,)| day).collect())
    }

    /// Per-day aggregates of the review log for the days `from..=to`.
    pub async fn daily(
        &self,
        user: UserId,
        deck: Option<DeckId>,
        from: Date,
        to: Date,
    ) -> Result<Vec<DayRow>> {
        self.count(1);
        Ok(sqlx::query_as(
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
        .bind(from.midnight().assume_utc())
        .bind(next_midnight(to))
        .fetch_all(&self.pool)
        .await?)
    }

    // ------------------------------------------------------------------ reviews

    /// One review in one transaction: SRS update, review log, deck progress. The card
    /// must be in an active deck, and in `deck` when it is given. The user's cache
    /// keys are owed by `owed` (from [`Store::user_invalidation`]) once it commits.
    pub async fn review(
        &self,
        owed: &mut PendingInvalidation,
        user: UserId,
        deck: Option<DeckId>,
        review: NewReview,
        now: OffsetDateTime,
    ) -> Result<ReviewOutcome, ReviewFailure> {
        let outcome = self.review_in_tx(owed, user, deck, review, now).await;
        outcome.map_err(|error| match error {
            Error::NotFound(_) => ReviewFailure::CardNotFound,
            other => ReviewFailure::Other(other),
        })
    }

    async fn review_in_tx(
        &self,
        owed: &mut PendingInvalidation,
        user: UserId,
        deck: Option<DeckId>,
        review: NewReview,
        now: OffsetDateTime,
    ) -> Result<ReviewOutcome> {
        let NewReview {
            card,
            quality,
            time_taken,
        } = review;
        let today = now.date();
        let mut tx = self.begin().await?;
        self.count(1);
        // A card of a soft-deleted deck is gone for learners (HTTP_API.md).
        let card_deck: Option<(Uuid,)> = sqlx::query_as(
            "SELECT deck_id FROM cards WHERE id = $1 \
             AND deck_id IN (SELECT id FROM decks WHERE is_active)",
        )
        .bind(card.0)
        .fetch_optional(&mut *tx)
        .await?;
        let deck_id = match (card_deck, deck) {
            (Some((actual,)), Some(expected)) if actual != expected.0 => None,
            (found, _) => found.map(|(id,)| id),
        };
        let Some(deck_id) = deck_id else {
            return Err(Error::NotFound(format!("Card with ID '{card}' not found")));
        };
        // Create the row if needed, then lock it: two concurrent reviews of one card
        // apply one after the other instead of both starting from the same state.
        self.count(2);
        sqlx::query(
            "INSERT INTO card_srs (user_id, card_id, deck_id, next_review_date, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (user_id, card_id) DO NOTHING",
        )
        .bind(user.0)
        .bind(card.0)
        .bind(deck_id)
        .bind(today)
        .bind(now)
        .execute(&mut *tx)
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
        .fetch_one(&mut *tx)
        .await?;
        let previous = SrsState {
            easiness_factor: ef,
            interval,
            repetitions,
            status: Status::parse(&status).unwrap_or(Status::New),
            next_review_date,
        };
        let next = sm2::review(previous, quality, today);
        let first_review = last_reviewed_at.is_none();
        let mastered_delta = match (
            previous.status == Status::Mastered,
            next.status == Status::Mastered,
        ) {
            (false, true) => 1,
            (true, false) => -1,
            _ => 0,
        };
        self.count(3);
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
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO reviews (id, user_id, card_id, deck_id, quality, time_taken, previous_status, new_status, \
             reviewed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(Uuid::new_v4())
        .bind(user.0)
        .bind(card.0)
        .bind(deck_id)
        .bind(i16::from(quality.get()))
        .bind(time_taken)
        .bind(previous.status.as_str())
        .bind(next.status.as_str())
        .bind(now)
        .execute(&mut *tx)
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
        .bind(i32::from(first_review))
        .bind(mastered_delta)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        self.commit_recording(tx, owed).await?;
        Ok(ReviewOutcome {
            card_id: card.0,
            previous: previous.status,
            next,
            message: sm2::message(previous.status, next.status, quality),
        })
    }

    pub async fn list_reviews(
        &self,
        user: UserId,
        from: Option<OffsetDateTime>,
        to: Option<OffsetDateTime>,
        limit: i64,
        offset: i64,
    ) -> Result<(i64, Vec<ReviewRow>)> {
        self.count(2);
        let filter = "user_id = $1 AND ($2::timestamptz IS NULL OR reviewed_at >= $2) \
                      AND ($3::timestamptz IS NULL OR reviewed_at < $3)";
        let (total,): (i64,) =
            sqlx::query_as(&format!("SELECT count(*) FROM reviews WHERE {filter}"))
                .bind(user.0)
                .bind(from)
                .bind(to)
                .fetch_one(&self.pool)
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
        .fetch_all(&self.pool)
        .await?;
        Ok((total, reviews))
    }

    // ------------------------------------------------------------------ progress

    /// The user's started decks (active ones), most recently studied first; or the
    /// one deck `only`.
    pub async fn progress(
        &self,
        user: UserId,
        only: Option<DeckId>,
        today: Date,
    ) -> Result<Vec<ProgressRow>> {
        self.count(1);
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
        .fetch_all(&self.pool)
        .await?)
    }
}

/// The first instant after `day` (UTC).
pub fn next_midnight(day: Date) -> OffsetDateTime {
    day.next_day().unwrap_or(Date::MAX).midnight().assume_utc()
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
        assert_eq!(like_pattern("γεια"), "%γεια%");
    }
}
