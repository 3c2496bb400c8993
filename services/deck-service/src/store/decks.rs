//! Decks: lists, search, one deck with its card count, and the superuser's writes.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{Store, like_pattern};
use crate::{
    domain::{
        DeckId, Level,
        requests::{DeckPatch, NewDeck},
    },
    error::Result,
};

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

const DECK_COLUMNS: &str = "id, name, description, level, is_active, created_at, updated_at";

impl Store {
    /// Active decks (of `level`), newest first, and how many there are in all.
    pub async fn list_decks(
        &self,
        level: Option<Level>,
        limit: i64,
        offset: i64,
    ) -> Result<(i64, Vec<DeckRow>)> {
        let level = level.map(Level::as_str);
        let (total,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM decks WHERE is_active AND ($1::text IS NULL OR level = $1)",
        )
        .bind(level)
        .fetch_one(self.db.pool())
        .await?;
        let decks = sqlx::query_as(&format!(
            "SELECT {DECK_COLUMNS} FROM decks WHERE is_active AND ($1::text IS NULL OR level = $1) \
             ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
        ))
        .bind(level)
        .bind(limit)
        .bind(offset)
        .fetch_all(self.db.pool())
        .await?;
        Ok((total, decks))
    }

    /// Active decks whose name or description contains `query`, case-insensitively.
    pub async fn search_decks(
        &self,
        query: &str,
        limit: i64,
        offset: i64,
    ) -> Result<(i64, Vec<DeckRow>)> {
        let pattern = like_pattern(query);
        let filter =
            "is_active AND (name ILIKE $1 ESCAPE '\\' OR description ILIKE $1 ESCAPE '\\')";
        let (total,): (i64,) =
            sqlx::query_as(&format!("SELECT count(*) FROM decks WHERE {filter}"))
                .bind(&pattern)
                .fetch_one(self.db.pool())
                .await?;
        let decks = sqlx::query_as(&format!(
            "SELECT {DECK_COLUMNS} FROM decks WHERE {filter} ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
        ))
        .bind(&pattern)
        .bind(limit)
        .bind(offset)
        .fetch_all(self.db.pool())
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
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {DECK_COLUMNS}, (SELECT count(*) FROM cards c WHERE c.deck_id = d.id) AS card_count \
             FROM decks d WHERE id = $1 AND is_active"
        ))
        .bind(deck.0)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.map(|row| (row.deck, row.card_count)))
    }

    pub async fn create_deck(&self, deck: &NewDeck, now: OffsetDateTime) -> Result<DeckRow> {
        let mut tx = self.db.begin().await?;
        let row: DeckRow = sqlx::query_as(&format!(
            "INSERT INTO decks (id, name, description, level, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING {DECK_COLUMNS}"
        ))
        .bind(Uuid::new_v4())
        .bind(&deck.name)
        .bind(&deck.description)
        .bind(deck.level.as_str())
        .bind(now)
        .fetch_one(tx.conn())
        .await?;
        // A "missing" entry cannot exist for a fresh id; the keys are listed anyway so
        // the rule "every write invalidates what it touches" has no exception.
        let keys = self.outbox.deck_keys(DeckId(row.id));
        self.outbox.commit(tx, keys).await?;
        Ok(row)
    }

    /// `None` when the deck does not exist.
    pub async fn update_deck(
        &self,
        deck: DeckId,
        patch: DeckPatch,
        now: OffsetDateTime,
    ) -> Result<Option<DeckRow>> {
        let mut tx = self.db.begin().await?;
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
        .fetch_optional(tx.conn())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let keys = self.outbox.content_keys(&mut tx, &[deck.0]).await?;
        self.outbox.commit(tx, keys).await?;
        Ok(Some(row))
    }

    /// Soft delete; `false` when the deck does not exist. Deleting twice is fine.
    pub async fn delete_deck(&self, deck: DeckId, now: OffsetDateTime) -> Result<bool> {
        let mut tx = self.db.begin().await?;
        let found = sqlx::query(
            "UPDATE decks SET is_active = false, updated_at = CASE WHEN is_active THEN $2 ELSE updated_at END \
             WHERE id = $1",
        )
        .bind(deck.0)
        .bind(now)
        .execute(tx.conn())
        .await?
        .rows_affected()
            == 1;
        if !found {
            return Ok(false);
        }
        let keys = self.outbox.content_keys(&mut tx, &[deck.0]).await?;
        self.outbox.commit(tx, keys).await?;
        Ok(true)
    }
}
