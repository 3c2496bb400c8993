//! Study: the study queue (due cards through the cache, then new cards, then early
//! practice), study stats, starting study of a deck, reviews and the review log.

use proto::deck::v1::{self as pb, bulk_review_item::Outcome};
use uuid::Uuid;

use super::{DeckApp, messages};
use crate::{
    cache::views::DueCard,
    domain::{
        DeckId, Page, UserId, midnight, next_midnight,
        progress::{current_streak, round_to},
        requests::{CardSelection, DayRange, NewReview, QueueRequest},
        sm2::Reviewed,
    },
    error::{Error, Result},
    store::outbox::PendingInvalidation,
};

/// The queue of every deck answers with this id and name.
const ALL_DECKS_ID: &str = "00000000-0000-0000-0000-000000000000";
const ALL_DECKS_NAME: &str = "All Decks";

impl DeckApp {
    /// The study queue (HTTP_API.md, "StudyQueue"): due cards, then new cards, then
    /// early practice, together at most `limit`.
    pub async fn study_queue(&self, user: UserId, request: QueueRequest) -> Result<pb::StudyQueue> {
        let deck = request.deck;
        let (deck_id, deck_name) = match deck {
            Some(deck) => {
                let found = self.require_deck(deck).await?;
                (found.id, found.name)
            }
            None => (ALL_DECKS_ID.to_owned(), ALL_DECKS_NAME.to_owned()),
        };
        let deck_filter = deck.map(|d| d.to_string());
        let due: Vec<pb::StudyQueueCard> = self
            .due_cards(user)
            .await?
            .into_iter()
            .filter(|due| deck_filter.as_ref().is_none_or(|deck| &due.deck_id == deck))
            .filter_map(|due| due.card)
            .take(request.limit)
            .collect();
        let new = self
            .store
            .new_cards(user, deck, request.new_room(due.len()) as i64)
            .await?;
        let early = self
            .store
            .early_practice(
                user,
                deck,
                self.today(),
                request.early_room(due.len(), new.len()) as i64,
            )
            .await?;

        let (total_due, total_new, total_early) =
            (due.len() as u32, new.len() as u32, early.len() as u32);
        let mut cards = due;
        cards.extend(new.iter().map(|row| messages::queue_card(row, false)));
        cards.extend(early.iter().map(|row| messages::queue_card(row, true)));
        Ok(pb::StudyQueue {
            deck_id,
            deck_name,
            total_due,
            total_new,
            total_early_practice: total_early,
            total_in_queue: cards.len() as u32,
            cards,
        })
    }

    /// The user's due cards today, through the cache.
    async fn due_cards(&self, user: UserId) -> Result<Vec<DueCard>> {
        let store = self.store.clone();
        let now = self.now();
        let cached = self
            .views
            .due_cards(user, now, move || async move {
                let rows = store.due_cards(user, now.date()).await?;
                Ok(rows
                    .iter()
                    .map(|row| DueCard {
                        deck_id: row.card.deck_id.to_string(),
                        card: Some(messages::queue_card(row, false)),
                    })
                    .collect())
            })
            .await?;
        Ok(cached.cards)
    }

    pub async fn study_stats(&self, user: UserId, deck: Option<DeckId>) -> Result<pb::StudyStats> {
        let today = self.today();
        let counts = self.store.status_counts(user, deck, today).await?;
        let all = self.store.review_totals(user, deck, None, None).await?;
        let today_totals = self
            .store
            .review_totals(
                user,
                deck,
                Some(midnight(today)),
                Some(next_midnight(today)),
            )
            .await?;
        let days = self.store.study_days(user, today).await?;
        Ok(pb::StudyStats {
            by_status: Some(messages::status_counts(&counts)),
            reviews_today: messages::count(today_totals.total),
            current_streak: current_streak(&days, today),
            due_today: messages::count(counts.due),
            total_reviews: messages::count(all.total),
            total_study_time: messages::count(all.study_time),
            average_quality: round_to(all.average_quality.unwrap_or(0.0), 2),
        })
    }

    /// Starts study of `cards` of an active deck: each gets an SRS row, due today.
    pub async fn initialize_study(
        &self,
        user: UserId,
        deck: DeckId,
        cards: CardSelection,
    ) -> Result<pb::InitializeStudyResponse> {
        let initialized = self
            .store
            .initialize(user, deck, cards, self.now())
            .await?
            .ok_or_else(|| Error::deck_not_found(deck))?;
        Ok(pb::InitializeStudyResponse {
            initialized_count: initialized.card_ids.len() as u32,
            already_exists_count: initialized.already,
            card_ids: initialized.card_ids.iter().map(Uuid::to_string).collect(),
        })
    }

    /// One review; NOT_FOUND for a card that is not in an active deck.
    pub async fn submit_review(&self, user: UserId, review: NewReview) -> Result<pb::ReviewResult> {
        let mut owed = self.store.user_invalidation(user);
        let reviewed = self.review_one(&mut owed, user, None, review).await;
        owed.run().await;
        match reviewed? {
            Some(reviewed) => Ok(messages::review_result(
                review.card.0,
                review.quality,
                &reviewed,
            )),
            None => Err(Error::card_not_found(review.card)),
        }
    }

    /// Reviews of cards of an active deck, each in its own transaction: a card that is
    /// not in the deck, or a review that fails, is reported as a failed item and the
    /// others are kept.
    pub async fn submit_reviews(
        &self,
        user: UserId,
        deck: DeckId,
        session_id: String,
        reviews: Vec<NewReview>,
    ) -> Result<pb::SubmitReviewsResponse> {
        self.require_deck(deck).await?;
        let mut results = Vec::with_capacity(reviews.len());
        let mut successful = 0;
        // One invalidation for the whole batch, owed from the first commit on.
        let mut owed = self.store.user_invalidation(user);
        for review in reviews {
            let card = review.card;
            let outcome = match self.review_one(&mut owed, user, Some(deck), review).await {
                Ok(Some(reviewed)) => {
                    successful += 1;
                    Outcome::Result(messages::review_result(card.0, review.quality, &reviewed))
                }
                Ok(None) => Outcome::Failure(pb::FailedReview {
                    card_id: card.to_string(),
                    message: format!("Card with ID '{card}' not found in deck '{deck}'"),
                }),
                Err(error) => {
                    tracing::error!(%error, %card, "bulk review item failed");
                    Outcome::Failure(pb::FailedReview {
                        card_id: card.to_string(),
                        message: "Review could not be saved".to_owned(),
                    })
                }
            };
            results.push(pb::BulkReviewItem {
                outcome: Some(outcome),
            });
        }
        owed.run().await;
        Ok(pb::SubmitReviewsResponse {
            session_id,
            total_submitted: results.len() as u32,
            successful,
            failed: results.len() as u32 - successful,
            results,
        })
    }

    /// Applies one review (one statement, its own transaction), the user's cache keys
    /// owed by `owed`; `None` when the card is not in an active deck (or not in `deck`).
    ///
    /// The statement runs in a task of its own that owes its own invalidation: a caller
    /// that goes away while PostgreSQL applies the review cannot leave a committed
    /// review's outbox row unowed (the task's invalidation then runs when it ends);
    /// otherwise `owed` takes the row over.
    async fn review_one(
        &self,
        owed: &mut PendingInvalidation,
        user: UserId,
        deck: Option<DeckId>,
        review: NewReview,
    ) -> Result<Option<Reviewed>> {
        let now = self.now();
        let store = self.store.clone();
        let mut own = self.store.user_invalidation(user);
        let task = tokio::spawn(async move {
            let applied = store.review(&mut own, user, deck, review, now).await;
            (applied, own)
        });
        let (applied, own) = task.await.map_err(Error::internal)?;
        owed.absorb(own);
        Ok(applied?.map(|applied| {
            Reviewed::between(
                applied.previous.status,
                applied.next,
                applied.first_review,
                review.quality,
            )
        }))
    }

    /// The caller's own reviews within `days`, newest first.
    pub async fn list_reviews(
        &self,
        user: UserId,
        days: DayRange,
        page: Page,
    ) -> Result<pb::ListReviewsResponse> {
        let (total, rows) = self
            .store
            .list_reviews(
                user,
                days.start.map(midnight),
                days.end.map(next_midnight),
                page.limit(),
                page.offset(),
            )
            .await?;
        Ok(pb::ListReviewsResponse {
            total: messages::count(total),
            page: page.page,
            page_size: page.page_size,
            reviews: rows.iter().map(messages::review).collect(),
        })
    }
}
