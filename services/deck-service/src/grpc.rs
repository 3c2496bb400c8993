//! The gRPC adapter: verifies the caller, parses requests into domain types, calls the
//! store or the cache, and shapes responses. Semantics follow HTTP_API.md (the gateway
//! maps JSON to these messages one to one).

use std::{collections::HashMap, sync::Arc, time::Duration};

use common::auth::{AccessVerifier, Caller};
use proto::deck::v1::{self as pb, deck_service_server::DeckService};
use time::{Date, OffsetDateTime};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    cache::Cache,
    clock::{Clock, seconds_to_next_midnight},
    domain::{
        CardId, DeckId, Difficulty, Level, Page, UserId, format_date, optional_text, parse_date,
        search_query, text, timestamp,
    },
    error::{Error, Result},
    sm2::Quality,
    store::{
        CardPatch, DeckPatch, NewCard, NewReview, ReviewFailure, ReviewOutcome, Store,
        next_midnight,
    },
    views::{self, CachedCards, CachedDeckProgress, CachedDueCards, DueCard},
};

const ALL_DECKS_ID: &str = "00000000-0000-0000-0000-000000000000";
const MAX_DESCRIPTION: usize = 2000;
const MAX_TEXT: usize = 1000;
const MAX_PRONUNCIATION: usize = 255;

/// Base TTLs of the cache families.
#[derive(Clone, Copy, Debug)]
pub struct Ttls {
    pub deck: Duration,
    pub cards: Duration,
    pub user_decks: Duration,
    pub due_cards: Duration,
}

/// The DeckService implementation.
#[derive(Clone)]
pub struct DeckApi {
    store: Store,
    cache: Cache,
    verifier: AccessVerifier,
    clock: Arc<dyn Clock>,
    ttls: Ttls,
}

fn deck_not_found(deck: impl std::fmt::Display) -> Error {
    Error::NotFound(format!("Deck with ID '{deck}' not found"))
}

fn card_not_found(card: impl std::fmt::Display) -> Error {
    Error::NotFound(format!("Card with ID '{card}' not found"))
}

fn new_card(prefix: &str, card: &pb::NewCard) -> Result<NewCard> {
    let field = |name: &str| format!("{prefix}{name}");
    Ok(NewCard {
        front_text: text(&field("front_text"), &card.front_text, 1, MAX_TEXT)?,
        back_text: text(&field("back_text"), &card.back_text, 1, MAX_TEXT)?,
        example_sentence: optional_text(
            &field("example_sentence"),
            card.example_sentence.as_deref(),
            MAX_TEXT,
        )?,
        pronunciation: optional_text(
            &field("pronunciation"),
            card.pronunciation.as_deref(),
            MAX_PRONUNCIATION,
        )?,
        difficulty: Difficulty::from_proto(&field("difficulty"), card.difficulty)?.ok_or_else(
            || Error::invalid(&field("difficulty"), "is required (easy, medium or hard)"),
        )?,
        order_index: order_index(&field("order_index"), card.order_index)?,
    })
}

fn order_index(field: &str, value: u32) -> Result<i32> {
    i32::try_from(value)
        .map_err(|_| Error::invalid(field, format!("must be between 0 and {}", i32::MAX)))
}

fn bounded(field: &str, value: u32, default: u32, min: u32, max: u32) -> Result<u32> {
    let value = if value == 0 && min > 0 {
        default
    } else {
        value
    };
    if !(min..=max).contains(&value) {
        return Err(Error::invalid(
            field,
            format!("must be between {min} and {max}"),
        ));
    }
    Ok(value)
}

fn review_result(outcome: &ReviewOutcome, quality: Quality) -> pb::ReviewResult {
    use crate::domain::status_to_proto;
    pb::ReviewResult {
        success: true,
        card_id: outcome.card_id.to_string(),
        quality: i32::from(quality.get()),
        previous_status: status_to_proto(outcome.previous),
        new_status: status_to_proto(outcome.next.status),
        easiness_factor: outcome.next.easiness_factor,
        interval: outcome.next.interval.max(0) as u32,
        repetitions: outcome.next.repetitions.max(0) as u32,
        next_review_date: format_date(outcome.next.next_review_date),
        message: outcome.message.map(str::to_owned),
    }
}

fn quality(field: &str, value: i32) -> Result<Quality> {
    Quality::new(i64::from(value)).ok_or_else(|| Error::invalid(field, "must be between 0 and 5"))
}

fn time_taken(field: &str, value: i32) -> Result<i32> {
    if value < 0 {
        return Err(Error::invalid(field, "must be 0 or more seconds"));
    }
    Ok(value)
}

impl DeckApi {
    pub fn new(
        store: Store,
        cache: Cache,
        verifier: AccessVerifier,
        clock: Arc<dyn Clock>,
        ttls: Ttls,
    ) -> Self {
        Self {
            store,
            cache,
            verifier,
            clock,
            ttls,
        }
    }

    async fn caller<T>(&self, request: &Request<T>) -> Result<Caller> {
        Ok(self.verifier.verify_metadata(request.metadata()).await?)
    }

    async fn superuser<T>(&self, request: &Request<T>) -> Result<Caller> {
        let caller = self.caller(request).await?;
        if !caller.is_superuser {
            return Err(Error::PermissionDenied);
        }
        Ok(caller)
    }

    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    fn today(&self) -> Date {
        self.clock.today()
    }

    // ------------------------------------------------------------ cached views

    /// An active deck with its card count (`cache:deck:{id}`).
    pub async fn deck_view(&self, deck: DeckId) -> Result<Option<pb::Deck>> {
        let store = self.store.clone();
        self.cache
            .get_or_load(
                self.cache.keys().deck(deck),
                self.ttls.deck,
                None,
                |_: &pb::Deck| true,
                move || async move {
                    Ok(store
                        .active_deck_with_count(deck)
                        .await?
                        .map(|(row, count)| views::deck(&row, Some(count))))
                },
            )
            .await
    }

    /// The cards of an active deck (`cache:cards:{id}`).
    async fn cards_view(&self, deck: DeckId) -> Result<Option<CachedCards>> {
        let store = self.store.clone();
        self.cache
            .get_or_load(
                self.cache.keys().cards(deck),
                self.ttls.cards,
                None,
                |_: &CachedCards| true,
                move || async move {
                    Ok(store
                        .cards_of_active_deck(deck)
                        .await?
                        .map(|cards| CachedCards {
                            cards: cards.iter().map(views::card).collect(),
                        }))
                },
            )
            .await
    }

    /// The user's due cards today (`cache:due_cards:{user}`), TTL never past midnight.
    async fn due_view(&self, user: UserId) -> Result<CachedDueCards> {
        let store = self.store.clone();
        let now = self.now();
        let today = format_date(now.date());
        let cap = Duration::from_secs(seconds_to_next_midnight(now));
        let fresh_day = today.clone();
        let loaded = self
            .cache
            .get_or_load(
                self.cache.keys().due_cards(user),
                self.ttls.due_cards,
                Some(cap),
                move |value: &CachedDueCards| value.as_of == fresh_day,
                move || async move {
                    let rows = store.due_cards(user, now.date()).await?;
                    Ok(Some(CachedDueCards {
                        as_of: today,
                        cards: rows
                            .iter()
                            .map(|row| DueCard {
                                deck_id: row.deck_id.to_string(),
                                card: Some(views::queue_card(row, false)),
                            })
                            .collect(),
                    }))
                },
            )
            .await?;
        Ok(loaded.unwrap_or_default())
    }

    /// The user's started decks with progress (`cache:user:{user}:decks`).
    async fn user_decks_view(&self, user: UserId) -> Result<CachedDeckProgress> {
        let store = self.store.clone();
        let now = self.now();
        let today = format_date(now.date());
        let cap = Duration::from_secs(seconds_to_next_midnight(now));
        let fresh_day = today.clone();
        let loaded = self
            .cache
            .get_or_load(
                self.cache.keys().user_decks(user),
                self.ttls.user_decks,
                Some(cap),
                move |value: &CachedDeckProgress| value.as_of == fresh_day,
                move || async move {
                    let rows = store.progress(user, None, now.date()).await?;
                    Ok(Some(CachedDeckProgress {
                        as_of: today,
                        decks: rows.iter().map(views::progress_summary).collect(),
                    }))
                },
            )
            .await?;
        Ok(loaded.unwrap_or_default())
    }

    /// An active deck or NOT_FOUND.
    async fn require_deck(&self, deck: DeckId) -> Result<pb::Deck> {
        self.deck_view(deck)
            .await?
            .ok_or_else(|| deck_not_found(deck))
    }

    // ------------------------------------------------------------ study helpers

    async fn study_queue(
        &self,
        user: UserId,
        request: pb::GetStudyQueueRequest,
    ) -> Result<pb::StudyQueue> {
        let limit = bounded("limit", request.limit, 20, 1, 100)? as usize;
        let include_new = request.include_new.unwrap_or(true);
        let new_limit = bounded(
            "new_cards_limit",
            request.new_cards_limit.unwrap_or(10),
            10,
            0,
            50,
        )? as usize;
        let early_limit = bounded(
            "early_practice_limit",
            request.early_practice_limit.unwrap_or(10),
            10,
            0,
            50,
        )? as usize;
        let deck = request
            .deck_id
            .as_deref()
            .map(|id| DeckId::parse("deck_id", id))
            .transpose()?;
        let (deck_id, deck_name) = match deck {
            Some(deck) => {
                let found = self.require_deck(deck).await?;
                (found.id, found.name)
            }
            None => (ALL_DECKS_ID.to_owned(), "All Decks".to_owned()),
        };
        let deck_filter = deck.map(|d| d.to_string());

        let due: Vec<pb::StudyQueueCard> = self
            .due_view(user)
            .await?
            .cards
            .into_iter()
            .filter(|due| deck_filter.as_ref().is_none_or(|deck| &due.deck_id == deck))
            .filter_map(|due| due.card)
            .take(limit)
            .collect();
        let new_count = if include_new {
            new_limit.min(limit - due.len())
        } else {
            0
        };
        let new = self.store.new_cards(user, deck, new_count as i64).await?;
        let early_count = if request.include_early_practice {
            early_limit.min(limit - due.len() - new.len())
        } else {
            0
        };
        let early = self
            .store
            .early_practice(user, deck, self.today(), early_count as i64)
            .await?;

        let (total_due, total_new, total_early) =
            (due.len() as u32, new.len() as u32, early.len() as u32);
        let mut cards = due;
        cards.extend(new.iter().map(|row| views::queue_card(row, false)));
        cards.extend(early.iter().map(|row| views::queue_card(row, true)));
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

    fn status_counts(row: &crate::store::StatusCountsRow) -> pb::StatusCounts {
        let n = |value: i64| value.max(0) as u64;
        pb::StatusCounts {
            new: n(row.new),
            learning: n(row.learning),
            review: n(row.review),
            mastered: n(row.mastered),
            due: n(row.due),
        }
    }

    /// One entry per day `from..=to`, zero-filled.
    fn days_between(from: Date, to: Date) -> Vec<Date> {
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
}

fn respond<T>(result: Result<T>) -> std::result::Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl DeckService for DeckApi {
    async fn list_decks(
        &self,
        request: Request<pb::ListDecksRequest>,
    ) -> std::result::Result<Response<pb::ListDecksResponse>, Status> {
        respond(
            async {
                self.caller(&request).await?;
                let request = request.into_inner();
                let page = Page::parse(request.page, request.page_size, 20, 100)?;
                let level = Level::from_proto("level", request.level)?;
                let (total, decks) = self
                    .store
                    .list_decks(level, page.limit(), page.offset())
                    .await?;
                Ok(pb::ListDecksResponse {
                    total: total as u64,
                    page: page.page,
                    page_size: page.page_size,
                    decks: decks.iter().map(|row| views::deck(row, None)).collect(),
                })
            }
            .await,
        )
    }

    async fn search_decks(
        &self,
        request: Request<pb::SearchDecksRequest>,
    ) -> std::result::Result<Response<pb::SearchDecksResponse>, Status> {
        respond(
            async {
                self.caller(&request).await?;
                let request = request.into_inner();
                let query = search_query(&request.query)?;
                let page = Page::parse(request.page, request.page_size, 20, 50)?;
                let (total, decks) = self
                    .store
                    .search_decks(&query, page.limit(), page.offset())
                    .await?;
                Ok(pb::SearchDecksResponse {
                    total: total as u64,
                    page: page.page,
                    page_size: page.page_size,
                    query,
                    decks: decks.iter().map(|row| views::deck(row, None)).collect(),
                })
            }
            .await,
        )
    }

    async fn get_deck(
        &self,
        request: Request<pb::GetDeckRequest>,
    ) -> std::result::Result<Response<pb::Deck>, Status> {
        respond(
            async {
                self.caller(&request).await?;
                let deck = DeckId::parse("deck_id", &request.get_ref().deck_id)?;
                self.require_deck(deck).await
            }
            .await,
        )
    }

    async fn create_deck(
        &self,
        request: Request<pb::CreateDeckRequest>,
    ) -> std::result::Result<Response<pb::Deck>, Status> {
        respond(
            async {
                self.superuser(&request).await?;
                let request = request.into_inner();
                let name = text("name", &request.name, 1, 255)?;
                let description = optional_text(
                    "description",
                    request.description.as_deref(),
                    MAX_DESCRIPTION,
                )?;
                let level = Level::from_proto("level", request.level)?.ok_or_else(|| {
                    Error::invalid("level", "is required (A1, A2, B1, B2, C1 or C2)")
                })?;
                let row = self
                    .store
                    .create_deck(&name, description.as_deref(), level, self.now())
                    .await?;
                Ok(views::deck(&row, None))
            }
            .await,
        )
    }

    async fn update_deck(
        &self,
        request: Request<pb::UpdateDeckRequest>,
    ) -> std::result::Result<Response<pb::Deck>, Status> {
        respond(
            async {
                self.superuser(&request).await?;
                let request = request.into_inner();
                let deck = DeckId::parse("deck_id", &request.deck_id)?;
                if request.clear_description && request.description.is_some() {
                    return Err(Error::invalid(
                        "description",
                        "cannot be set and cleared at once",
                    ));
                }
                let patch = DeckPatch {
                    name: request
                        .name
                        .as_deref()
                        .map(|name| text("name", name, 1, 255))
                        .transpose()?,
                    description: if request.clear_description {
                        Some(None)
                    } else {
                        request
                            .description
                            .as_deref()
                            .map(|d| optional_text("description", Some(d), MAX_DESCRIPTION))
                            .transpose()?
                    },
                    level: Level::from_proto("level", request.level)?,
                    is_active: request.is_active,
                };
                let row = self
                    .store
                    .update_deck(deck, patch, self.now())
                    .await?
                    .ok_or_else(|| deck_not_found(deck))?;
                Ok(views::deck(&row, None))
            }
            .await,
        )
    }

    async fn delete_deck(
        &self,
        request: Request<pb::DeleteDeckRequest>,
    ) -> std::result::Result<Response<pb::DeleteDeckResponse>, Status> {
        respond(
            async {
                self.superuser(&request).await?;
                let deck = DeckId::parse("deck_id", &request.get_ref().deck_id)?;
                if !self.store.delete_deck(deck, self.now()).await? {
                    return Err(deck_not_found(deck));
                }
                Ok(pb::DeleteDeckResponse {})
            }
            .await,
        )
    }

    async fn list_cards(
        &self,
        request: Request<pb::ListCardsRequest>,
    ) -> std::result::Result<Response<pb::ListCardsResponse>, Status> {
        respond(
            async {
                self.caller(&request).await?;
                let request = request.into_inner();
                let deck = DeckId::parse("deck_id", &request.deck_id)?;
                let difficulty = Difficulty::from_proto("difficulty", request.difficulty)?;
                let page = Page::parse(request.page, request.page_size, 50, 100)?;
                let cards = self
                    .cards_view(deck)
                    .await?
                    .ok_or_else(|| deck_not_found(deck))?
                    .cards;
                let matching: Vec<pb::Card> = match difficulty {
                    Some(difficulty) => cards
                        .into_iter()
                        .filter(|card| card.difficulty == difficulty.to_proto())
                        .collect(),
                    None => cards,
                };
                Ok(pb::ListCardsResponse {
                    total: matching.len() as u64,
                    page: page.page,
                    page_size: page.page_size,
                    deck_id: deck.to_string(),
                    cards: page.slice(&matching),
                })
            }
            .await,
        )
    }

    async fn search_cards(
        &self,
        request: Request<pb::SearchCardsRequest>,
    ) -> std::result::Result<Response<pb::SearchCardsResponse>, Status> {
        respond(
            async {
                self.caller(&request).await?;
                let request = request.into_inner();
                let query = search_query(&request.query)?;
                let deck = request
                    .deck_id
                    .as_deref()
                    .map(|id| DeckId::parse("deck_id", id))
                    .transpose()?;
                let page = Page::parse(request.page, request.page_size, 20, 50)?;
                if let Some(deck) = deck {
                    self.require_deck(deck).await?;
                }
                let (total, cards) = self
                    .store
                    .search_cards(&query, deck, page.limit(), page.offset())
                    .await?;
                Ok(pb::SearchCardsResponse {
                    total: total as u64,
                    page: page.page,
                    page_size: page.page_size,
                    query,
                    deck_id: deck.map(|d| d.to_string()),
                    cards: cards.iter().map(views::card).collect(),
                })
            }
            .await,
        )
    }

    async fn get_card(
        &self,
        request: Request<pb::GetCardRequest>,
    ) -> std::result::Result<Response<pb::Card>, Status> {
        respond(
            async {
                self.caller(&request).await?;
                let card = CardId::parse("card_id", &request.get_ref().card_id)?;
                let row = self
                    .store
                    .card(card)
                    .await?
                    .ok_or_else(|| card_not_found(card))?;
                Ok(views::card(&row))
            }
            .await,
        )
    }

    async fn create_card(
        &self,
        request: Request<pb::CreateCardRequest>,
    ) -> std::result::Result<Response<pb::Card>, Status> {
        respond(
            async {
                self.superuser(&request).await?;
                let request = request.into_inner();
                let deck = DeckId::parse("deck_id", &request.deck_id)?;
                let card = request
                    .card
                    .as_ref()
                    .ok_or_else(|| Error::invalid("card", "is required"))?;
                let card = new_card("", card)?;
                let created = self
                    .store
                    .create_cards(deck, vec![card], self.now())
                    .await?
                    .ok_or_else(|| deck_not_found(deck))?;
                let row = created
                    .first()
                    .ok_or_else(|| Error::internal(anyhow::anyhow!("insert returned no card")))?;
                Ok(views::card(row))
            }
            .await,
        )
    }

    async fn create_cards(
        &self,
        request: Request<pb::CreateCardsRequest>,
    ) -> std::result::Result<Response<pb::CreateCardsResponse>, Status> {
        respond(
            async {
                self.superuser(&request).await?;
                let request = request.into_inner();
                let deck = DeckId::parse("deck_id", &request.deck_id)?;
                if request.cards.is_empty() || request.cards.len() > 100 {
                    return Err(Error::invalid("cards", "must contain 1–100 cards"));
                }
                let cards = request
                    .cards
                    .iter()
                    .enumerate()
                    .map(|(i, card)| new_card(&format!("cards[{i}]."), card))
                    .collect::<Result<Vec<_>>>()?;
                let created = self
                    .store
                    .create_cards(deck, cards, self.now())
                    .await?
                    .ok_or_else(|| deck_not_found(deck))?;
                Ok(pb::CreateCardsResponse {
                    deck_id: deck.to_string(),
                    created_count: created.len() as u32,
                    cards: created.iter().map(views::card).collect(),
                })
            }
            .await,
        )
    }

    async fn update_card(
        &self,
        request: Request<pb::UpdateCardRequest>,
    ) -> std::result::Result<Response<pb::Card>, Status> {
        respond(
            async {
                self.superuser(&request).await?;
                let request = request.into_inner();
                let card = CardId::parse("card_id", &request.card_id)?;
                if request.clear_example_sentence && request.example_sentence.is_some() {
                    return Err(Error::invalid(
                        "example_sentence",
                        "cannot be set and cleared at once",
                    ));
                }
                if request.clear_pronunciation && request.pronunciation.is_some() {
                    return Err(Error::invalid(
                        "pronunciation",
                        "cannot be set and cleared at once",
                    ));
                }
                let clearable = |clear: bool,
                                 value: Option<&str>,
                                 field: &str,
                                 max: usize|
                 -> Result<Option<Option<String>>> {
                    if clear {
                        return Ok(Some(None));
                    }
                    value
                        .map(|v| optional_text(field, Some(v), max))
                        .transpose()
                };
                let patch = CardPatch {
                    deck_id: request
                        .deck_id
                        .as_deref()
                        .map(|id| DeckId::parse("deck_id", id))
                        .transpose()?,
                    front_text: request
                        .front_text
                        .as_deref()
                        .map(|t| text("front_text", t, 1, MAX_TEXT))
                        .transpose()?,
                    back_text: request
                        .back_text
                        .as_deref()
                        .map(|t| text("back_text", t, 1, MAX_TEXT))
                        .transpose()?,
                    example_sentence: clearable(
                        request.clear_example_sentence,
                        request.example_sentence.as_deref(),
                        "example_sentence",
                        MAX_TEXT,
                    )?,
                    pronunciation: clearable(
                        request.clear_pronunciation,
                        request.pronunciation.as_deref(),
                        "pronunciation",
                        MAX_PRONUNCIATION,
                    )?,
                    difficulty: Difficulty::from_proto("difficulty", request.difficulty)?,
                    order_index: request
                        .order_index
                        .map(|i| order_index("order_index", i))
                        .transpose()?,
                };
                let row = self.store.update_card(card, patch, self.now()).await?;
                Ok(views::card(&row))
            }
            .await,
        )
    }

    async fn delete_card(
        &self,
        request: Request<pb::DeleteCardRequest>,
    ) -> std::result::Result<Response<pb::DeleteCardResponse>, Status> {
        respond(
            async {
                self.superuser(&request).await?;
                let card = CardId::parse("card_id", &request.get_ref().card_id)?;
                if !self.store.delete_card(card).await? {
                    return Err(card_not_found(card));
                }
                Ok(pb::DeleteCardResponse {})
            }
            .await,
        )
    }

    async fn get_study_queue(
        &self,
        request: Request<pb::GetStudyQueueRequest>,
    ) -> std::result::Result<Response<pb::StudyQueue>, Status> {
        respond(
            async {
                let caller = self.caller(&request).await?;
                self.study_queue(UserId(caller.user_id), request.into_inner())
                    .await
            }
            .await,
        )
    }

    async fn get_study_stats(
        &self,
        request: Request<pb::GetStudyStatsRequest>,
    ) -> std::result::Result<Response<pb::StudyStats>, Status> {
        respond(
            async {
                let user = UserId(self.caller(&request).await?.user_id);
                let deck = request
                    .get_ref()
                    .deck_id
                    .as_deref()
                    .map(|id| DeckId::parse("deck_id", id))
                    .transpose()?;
                let today = self.today();
                let counts = self.store.status_counts(user, deck, today).await?;
                let all = self.store.review_totals(user, deck, None, None).await?;
                let today_totals = self
                    .store
                    .review_totals(
                        user,
                        deck,
                        Some(today.midnight().assume_utc()),
                        Some(next_midnight(today)),
                    )
                    .await?;
                let days = self.store.study_days(user, today).await?;
                Ok(pb::StudyStats {
                    by_status: Some(Self::status_counts(&counts)),
                    reviews_today: today_totals.total as u64,
                    current_streak: views::current_streak(&days, today),
                    due_today: counts.due.max(0) as u64,
                    total_reviews: all.total as u64,
                    total_study_time: all.study_time.max(0) as u64,
                    average_quality: views::round_to(all.average_quality.unwrap_or(0.0), 2),
                })
            }
            .await,
        )
    }

    async fn initialize_study(
        &self,
        request: Request<pb::InitializeStudyRequest>,
    ) -> std::result::Result<Response<pb::InitializeStudyResponse>, Status> {
        respond(
            async {
                let user = UserId(self.caller(&request).await?.user_id);
                let request = request.into_inner();
                let deck = DeckId::parse("deck_id", &request.deck_id)?;
                let cards = if request.all_cards {
                    if !request.card_ids.is_empty() {
                        return Err(Error::invalid(
                            "card_ids",
                            "must be empty when all_cards is set",
                        ));
                    }
                    None
                } else {
                    if request.card_ids.is_empty() || request.card_ids.len() > 100 {
                        return Err(Error::invalid("card_ids", "must contain 1–100 ids"));
                    }
                    let mut ids = request
                        .card_ids
                        .iter()
                        .enumerate()
                        .map(|(i, id)| CardId::parse(&format!("card_ids[{i}]"), id).map(|c| c.0))
                        .collect::<Result<Vec<Uuid>>>()?;
                    ids.sort();
                    ids.dedup();
                    Some(ids)
                };
                let (initialized, already) = self
                    .store
                    .initialize(user, deck, cards, self.now())
                    .await?
                    .ok_or_else(|| deck_not_found(deck))?;
                Ok(pb::InitializeStudyResponse {
                    initialized_count: initialized.len() as u32,
                    already_exists_count: already,
                    card_ids: initialized.iter().map(Uuid::to_string).collect(),
                })
            }
            .await,
        )
    }

    async fn submit_review(
        &self,
        request: Request<pb::SubmitReviewRequest>,
    ) -> std::result::Result<Response<pb::ReviewResult>, Status> {
        respond(
            async {
                let user = UserId(self.caller(&request).await?.user_id);
                let request = request.into_inner();
                let review = NewReview {
                    card: CardId::parse("card_id", &request.card_id)?,
                    quality: quality("quality", request.quality)?,
                    time_taken: time_taken("time_taken", request.time_taken)?,
                };
                let mut owed = self.store.user_invalidation(user);
                let reviewed = self
                    .store
                    .review(&mut owed, user, None, review, self.now())
                    .await;
                owed.run().await;
                match reviewed {
                    Ok(outcome) => Ok(review_result(&outcome, review.quality)),
                    Err(ReviewFailure::CardNotFound) => Err(card_not_found(review.card)),
                    Err(ReviewFailure::Other(error)) => Err(error),
                }
            }
            .await,
        )
    }

    async fn submit_reviews(
        &self,
        request: Request<pb::SubmitReviewsRequest>,
    ) -> std::result::Result<Response<pb::SubmitReviewsResponse>, Status> {
        respond(
            async {
                let user = UserId(self.caller(&request).await?.user_id);
                let request = request.into_inner();
                let deck = DeckId::parse("deck_id", &request.deck_id)?;
                let session_id = text("session_id", &request.session_id, 1, 100)?;
                if request.reviews.is_empty() || request.reviews.len() > 100 {
                    return Err(Error::invalid("reviews", "must contain 1–100 reviews"));
                }
                let reviews = request
                    .reviews
                    .iter()
                    .enumerate()
                    .map(|(i, review)| {
                        Ok(NewReview {
                            card: CardId::parse(&format!("reviews[{i}].card_id"), &review.card_id)?,
                            quality: quality(&format!("reviews[{i}].quality"), review.quality)?,
                            time_taken: time_taken(
                                &format!("reviews[{i}].time_taken"),
                                review.time_taken,
                            )?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                self.require_deck(deck).await?;

                let mut results = Vec::with_capacity(reviews.len());
                let mut successful = 0;
                // One invalidation for the whole batch, owed from the first commit on.
                let mut owed = self.store.user_invalidation(user);
                for review in reviews {
                    let card = review.card;
                    let outcome = match self
                        .store
                        .review(&mut owed, user, Some(deck), review, self.now())
                        .await
                    {
                        Ok(outcome) => {
                            successful += 1;
                            pb::bulk_review_item::Outcome::Result(review_result(
                                &outcome,
                                review.quality,
                            ))
                        }
                        Err(failure) => {
                            let message = match failure {
                                ReviewFailure::CardNotFound => {
                                    format!("Card with ID '{card}' not found in deck '{deck}'")
                                }
                                ReviewFailure::Other(error) => {
                                    tracing::error!(%error, %card, "bulk review item failed");
                                    "Review could not be saved".to_owned()
                                }
                            };
                            pb::bulk_review_item::Outcome::Failure(pb::FailedReview {
                                card_id: card.to_string(),
                                message,
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
            .await,
        )
    }

    async fn list_reviews(
        &self,
        request: Request<pb::ListReviewsRequest>,
    ) -> std::result::Result<Response<pb::ListReviewsResponse>, Status> {
        respond(
            async {
                let user = UserId(self.caller(&request).await?.user_id);
                let request = request.into_inner();
                let start = request
                    .start_date
                    .as_deref()
                    .map(|d| parse_date("start_date", d))
                    .transpose()?;
                let end = request
                    .end_date
                    .as_deref()
                    .map(|d| parse_date("end_date", d))
                    .transpose()?;
                if let (Some(start), Some(end)) = (start, end)
                    && end < start
                {
                    return Err(Error::invalid("end_date", "must not be before start_date"));
                }
                let page = Page::parse(request.page, request.page_size, 50, 100)?;
                let (total, rows) = self
                    .store
                    .list_reviews(
                        user,
                        start.map(|d| d.midnight().assume_utc()),
                        end.map(next_midnight),
                        page.limit(),
                        page.offset(),
                    )
                    .await?;
                Ok(pb::ListReviewsResponse {
                    total: total as u64,
                    page: page.page,
                    page_size: page.page_size,
                    reviews: rows
                        .iter()
                        .map(|row| pb::Review {
                            id: row.id.to_string(),
                            user_id: row.user_id.to_string(),
                            card_id: row.card_id.to_string(),
                            quality: i32::from(row.quality),
                            time_taken: row.time_taken,
                            reviewed_at: Some(timestamp(row.reviewed_at)),
                        })
                        .collect(),
                })
            }
            .await,
        )
    }

    async fn get_dashboard(
        &self,
        request: Request<pb::GetDashboardRequest>,
    ) -> std::result::Result<Response<pb::Dashboard>, Status> {
        respond(
            async {
                let user = UserId(self.caller(&request).await?.user_id);
                let daily_goal = bounded(
                    "daily_goal",
                    request.get_ref().daily_goal.unwrap_or(20),
                    20,
                    1,
                    200,
                )?;
                let today = self.today();
                let counts = self.store.status_counts(user, None, today).await?;
                let all = self.store.review_totals(user, None, None, None).await?;
                let days = self.store.study_days(user, today).await?;
                let progress = self.user_decks_view(user).await?;
                let week_start = today - time::Duration::days(6);
                let daily: HashMap<Date, _> = self
                    .store
                    .daily(user, None, week_start, today)
                    .await?
                    .into_iter()
                    .map(|d| (d.day, d))
                    .collect();
                let today_row = daily.get(&today);
                let reviews_today = today_row.map_or(0, |d| d.reviews);
                let studied: u64 = progress.decks.iter().map(|d| d.cards_studied).sum();
                let mastered = counts.mastered.max(0) as u64;
                Ok(pb::Dashboard {
                    overview: Some(pb::DashboardOverview {
                        total_cards_studied: studied,
                        total_cards_mastered: mastered,
                        total_decks_started: progress.decks.len() as u64,
                        overall_mastery_percentage: views::percentage(
                            mastered as f64,
                            studied as f64,
                        ),
                        accuracy_percentage: views::percentage(
                            all.correct as f64,
                            all.total as f64,
                        ),
                    }),
                    today: Some(pb::DashboardToday {
                        reviews_completed: reviews_today as u64,
                        cards_due: counts.due.max(0) as u64,
                        daily_goal,
                        goal_progress_percentage: views::percentage(
                            reviews_today as f64,
                            f64::from(daily_goal),
                        )
                        .min(100.0),
                        study_time_seconds: today_row.map_or(0, |d| d.study_time.max(0) as u64),
                    }),
                    streak: Some(pb::Streak {
                        current_streak: views::current_streak(&days, today),
                        longest_streak: views::longest_streak(&days),
                        last_study_date: days.first().copied().map(format_date),
                    }),
                    cards_by_status: Some(Self::status_counts(&counts)),
                    recent_activity: Self::days_between(week_start, today)
                        .into_iter()
                        .map(|day| {
                            let row = daily.get(&day);
                            pb::DailyActivity {
                                date: format_date(day),
                                reviews_count: row.map_or(0, |d| d.reviews as u64),
                                average_quality: views::round_to(
                                    row.map_or(0.0, |d| d.average_quality),
                                    2,
                                ),
                            }
                        })
                        .collect(),
                })
            }
            .await,
        )
    }

    async fn list_deck_progress(
        &self,
        request: Request<pb::ListDeckProgressRequest>,
    ) -> std::result::Result<Response<pb::ListDeckProgressResponse>, Status> {
        respond(
            async {
                let user = UserId(self.caller(&request).await?.user_id);
                let page =
                    Page::parse(request.get_ref().page, request.get_ref().page_size, 20, 100)?;
                let decks = self.user_decks_view(user).await?.decks;
                Ok(pb::ListDeckProgressResponse {
                    total: decks.len() as u64,
                    page: page.page,
                    page_size: page.page_size,
                    decks: page.slice(&decks),
                })
            }
            .await,
        )
    }

    async fn get_deck_progress(
        &self,
        request: Request<pb::GetDeckProgressRequest>,
    ) -> std::result::Result<Response<pb::DeckProgressDetail>, Status> {
        respond(
            async {
                let user = UserId(self.caller(&request).await?.user_id);
                let deck = DeckId::parse("deck_id", &request.get_ref().deck_id)?;
                let today = self.today();
                let row = self
                    .store
                    .progress(user, Some(deck), today)
                    .await?
                    .into_iter()
                    .next()
                    .ok_or_else(|| {
                        Error::NotFound(format!(
                            "No progress for deck with ID '{deck}': not found or not started"
                        ))
                    })?;
                let counts = self.store.status_counts(user, Some(deck), today).await?;
                let reviews = self
                    .store
                    .review_totals(user, Some(deck), None, None)
                    .await?;
                let total = row.total_cards.max(0) as u64;
                let studied = row.cards_studied.max(0) as u64;
                let remaining = total.saturating_sub(studied);
                let estimated_completion_days = if remaining == 0 {
                    Some(0)
                } else if studied > 0 && reviews.days_active > 0 {
                    let per_day = studied as f64 / reviews.days_active as f64;
                    Some((remaining as f64 / per_day).ceil().min(f64::from(u32::MAX)) as u32)
                } else {
                    None
                };
                Ok(pb::DeckProgressDetail {
                    deck_id: deck.to_string(),
                    deck_name: row.deck_name.clone(),
                    deck_level: Level::from_db(&row.deck_level).to_proto(),
                    deck_description: row.deck_description.clone(),
                    progress: Some(pb::DeckProgressCounts {
                        total_cards: total,
                        cards_studied: studied,
                        cards_mastered: row.cards_mastered.max(0) as u64,
                        cards_due: counts.due.max(0) as u64,
                        cards_new: counts.new.max(0) as u64,
                        cards_learning: counts.learning.max(0) as u64,
                        cards_review: counts.review.max(0) as u64,
                        mastery_percentage: views::percentage(
                            f64::from(row.cards_mastered),
                            total as f64,
                        ),
                        completion_percentage: views::percentage(studied as f64, total as f64),
                    }),
                    statistics: Some(pb::DeckStatistics {
                        total_reviews: reviews.total.max(0) as u64,
                        total_study_time_seconds: reviews.study_time.max(0) as u64,
                        average_quality: views::round_to(reviews.average_quality.unwrap_or(0.0), 2),
                        average_easiness_factor: views::round_to(
                            counts
                                .average_easiness_factor
                                .unwrap_or(crate::sm2::INITIAL_EASINESS),
                            2,
                        ),
                        average_interval_days: views::round_to(
                            counts.average_interval.unwrap_or(0.0),
                            1,
                        ),
                    }),
                    timeline: Some(pb::DeckTimeline {
                        first_studied_at: row.first_studied_at.map(timestamp),
                        last_studied_at: row.last_studied_at.map(timestamp),
                        days_active: reviews.days_active.max(0) as u32,
                        estimated_completion_days,
                    }),
                })
            }
            .await,
        )
    }

    async fn get_trends(
        &self,
        request: Request<pb::GetTrendsRequest>,
    ) -> std::result::Result<Response<pb::Trends>, Status> {
        respond(
            async {
                let user = UserId(self.caller(&request).await?.user_id);
                let request = request.into_inner();
                let (period, days) = match request.period.as_str() {
                    "" | "week" => ("week", 7),
                    "month" => ("month", 30),
                    "year" => ("year", 365),
                    _ => return Err(Error::invalid("period", "must be week, month or year")),
                };
                let deck = request
                    .deck_id
                    .as_deref()
                    .map(|id| DeckId::parse("deck_id", id))
                    .transpose()?;
                let end = self.today();
                let start = end - time::Duration::days(days - 1);
                let rows: HashMap<Date, _> = self
                    .store
                    .daily(user, deck, start, end)
                    .await?
                    .into_iter()
                    .map(|d| (d.day, d))
                    .collect();
                let all_days = Self::days_between(start, end);
                let half = all_days.len() / 2;
                let (mut first, mut second) = ((0.0, 0_i64), (0.0, 0_i64));
                let mut best: Option<(Date, i64)> = None;
                let mut daily_stats = Vec::with_capacity(all_days.len());
                let (mut total, mut time_spent, mut mastered) = (0_i64, 0_i64, 0_i64);
                for (i, day) in all_days.iter().enumerate() {
                    let row = rows.get(day);
                    let reviews = row.map_or(0, |d| d.reviews);
                    if let Some(row) = row {
                        let half_sum = if i < half { &mut first } else { &mut second };
                        half_sum.0 += row.average_quality * row.reviews as f64;
                        half_sum.1 += row.reviews;
                        total += row.reviews;
                        time_spent += row.study_time;
                        mastered += row.mastered;
                        if best.is_none_or(|(_, most)| reviews > most) {
                            best = Some((*day, reviews));
                        }
                    }
                    let accuracy = row.map_or(0.0, |d| {
                        views::percentage(d.correct as f64, d.reviews as f64)
                    });
                    daily_stats.push(pb::DailyStats {
                        date: format_date(*day),
                        reviews_count: reviews.max(0) as u64,
                        cards_learned: row.map_or(0, |d| d.learned.max(0) as u64),
                        cards_learning: row.map_or(0, |d| d.learning.max(0) as u64),
                        cards_mastered: row.map_or(0, |d| d.mastered.max(0) as u64),
                        study_time_seconds: row.map_or(0, |d| d.study_time.max(0) as u64),
                        average_quality: views::round_to(row.map_or(0.0, |d| d.average_quality), 2),
                        vocab_accuracy: accuracy,
                        culture_accuracy: 0.0,
                        combined_accuracy: accuracy,
                    });
                }
                Ok(pb::Trends {
                    period: period.to_owned(),
                    start_date: format_date(start),
                    end_date: format_date(end),
                    daily_stats,
                    summary: Some(pb::TrendsSummary {
                        total_reviews: total.max(0) as u64,
                        total_study_time_seconds: time_spent.max(0) as u64,
                        cards_mastered: mastered.max(0) as u64,
                        average_daily_reviews: views::round_to(total as f64 / days as f64, 2),
                        best_day: best
                            .filter(|(_, n)| *n > 0)
                            .map(|(day, _)| format_date(day)),
                        quality_trend: views::quality_trend(first, second).to_owned(),
                    }),
                })
            }
            .await,
        )
    }
}
