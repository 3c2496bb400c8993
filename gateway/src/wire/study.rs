//! Study queue, reviews and progress (deck-service).

use proto::deck::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    Breach, CardStatus, Difficulty, Failed, Level, Spelled, Succeeded, Timestamp, page::Page,
};
use crate::{
    extract::{Params, Validator, parse_uuid},
    wire::decks::all,
};

/// The largest `time_taken` in seconds (a proto `int32`).
const MAX_TIME_TAKEN: i64 = i32::MAX as i64;

// ------------------------------------------------------------------ queries

/// `GET /study/queue[/{deck_id}]`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StudyQueueQuery {
    #[param(required = false, minimum = 1, maximum = 100, default = 20)]
    pub limit: u32,
    #[param(required = false, default = true)]
    pub include_new: bool,
    #[param(required = false, minimum = 0, maximum = 50, default = 10)]
    pub new_cards_limit: u32,
    #[param(required = false, default = false)]
    pub include_early_practice: bool,
    #[param(required = false, minimum = 0, maximum = 50, default = 10)]
    pub early_practice_limit: u32,
}

impl StudyQueueQuery {
    pub fn parse(params: &mut Params) -> Self {
        // The bounds make the casts lossless.
        Self {
            limit: params.int("limit", 20, 1, 100) as u32,
            include_new: params.boolean("include_new", true),
            new_cards_limit: params.int("new_cards_limit", 10, 0, 50) as u32,
            include_early_practice: params.boolean("include_early_practice", false),
            early_practice_limit: params.int("early_practice_limit", 10, 0, 50) as u32,
        }
    }

    pub fn into_proto(self, deck_id: Option<String>) -> pb::GetStudyQueueRequest {
        pb::GetStudyQueueRequest {
            deck_id,
            limit: self.limit,
            include_new: Some(self.include_new),
            new_cards_limit: Some(self.new_cards_limit),
            include_early_practice: self.include_early_practice,
            early_practice_limit: Some(self.early_practice_limit),
        }
    }
}

/// `GET /study/stats`, `GET /progress/trends`: an optional deck.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    #[param(format = Uuid)]
    pub deck_id: Option<String>,
}

impl StatsQuery {
    pub fn parse(params: &mut Params) -> Self {
        Self {
            deck_id: params.optional_uuid("deck_id"),
        }
    }
}

/// `GET /reviews`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListReviewsQuery {
    /// First day, inclusive.
    #[param(format = Date)]
    pub start_date: Option<String>,
    /// Last day, inclusive; not before `start_date`.
    #[param(format = Date)]
    pub end_date: Option<String>,
    #[param(required = false, minimum = 1, default = 1)]
    pub page: u32,
    #[param(required = false, minimum = 1, maximum = 100, default = 50)]
    pub page_size: u32,
}

impl ListReviewsQuery {
    pub fn parse(params: &mut Params) -> Self {
        let start_date = params.optional_date("start_date");
        let end_date = params.optional_date("end_date");
        let (page, page_size) = params.page(50, 100);
        // Both are YYYY-MM-DD: text order is date order.
        if let (Some(start), Some(end)) = (&start_date, &end_date)
            && start > end
        {
            params
                .check
                .error("end_date", "must not be before start_date");
        }
        Self {
            start_date,
            end_date,
            page,
            page_size,
        }
    }

    pub fn into_proto(self) -> pb::ListReviewsRequest {
        pb::ListReviewsRequest {
            start_date: self.start_date,
            end_date: self.end_date,
            page: self.page,
            page_size: self.page_size,
        }
    }
}

/// `GET /progress/decks`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeckProgressQuery {
    #[param(required = false, minimum = 1, default = 1)]
    pub page: u32,
    #[param(required = false, minimum = 1, maximum = 100, default = 20)]
    pub page_size: u32,
}

impl DeckProgressQuery {
    pub fn parse(params: &mut Params) -> Self {
        let (page, page_size) = params.page(20, 100);
        Self { page, page_size }
    }
}

/// The span of `GET /progress/trends`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// 7 days.
    #[default]
    Week,
    /// 30 days.
    Month,
    /// 365 days.
    Year,
}

impl Spelled for Period {
    const EXPECTED: &'static str = "must be one of week, month, year";
}

impl Period {
    fn as_str(self) -> &'static str {
        match self {
            Self::Week => "week",
            Self::Month => "month",
            Self::Year => "year",
        }
    }
}

/// `GET /progress/trends`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrendsQuery {
    #[param(inline, required = false, default = "week")]
    pub period: Period,
    #[param(format = Uuid)]
    pub deck_id: Option<String>,
}

impl TrendsQuery {
    pub fn parse(params: &mut Params) -> Self {
        Self {
            period: params.choice("period").unwrap_or_default(),
            deck_id: params.optional_uuid("deck_id"),
        }
    }

    pub fn into_proto(self) -> pb::GetTrendsRequest {
        pb::GetTrendsRequest {
            period: self.period.as_str().to_owned(),
            deck_id: self.deck_id,
        }
    }
}

// ------------------------------------------------------------------ request bodies

/// `POST /study/initialize`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = InitializeRequest)]
pub struct Initialize {
    #[schema(format = Uuid)]
    pub deck_id: String,
    /// 1-100 ids; those not in the deck are ignored.
    #[schema(schema_with = super::one_to_a_hundred_uuids)]
    pub card_ids: Vec<String>,
}

impl Initialize {
    pub fn parse(self, check: &mut Validator) -> pb::InitializeStudyRequest {
        let deck_id = check.uuid("deck_id", &self.deck_id);
        if self.card_ids.is_empty() || self.card_ids.len() > 100 {
            check.error("card_ids", "must hold between 1 and 100 ids");
        }
        let card_ids = self
            .card_ids
            .iter()
            .enumerate()
            .map(|(index, id)| match parse_uuid(id) {
                Some(id) => id,
                None => {
                    check.error(&format!("card_ids[{index}]"), "must be a valid UUID");
                    String::new()
                }
            })
            .collect();
        pb::InitializeStudyRequest {
            deck_id,
            card_ids,
            all_cards: false,
        }
    }
}

/// `POST /reviews`, and each item of a bulk.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ReviewRequest)]
pub struct NewReview {
    #[schema(format = Uuid)]
    pub card_id: String,
    #[schema(minimum = 0, maximum = 5)]
    pub quality: i64,
    /// Seconds.
    #[schema(minimum = 0, maximum = 2147483647)]
    pub time_taken: i64,
}

impl NewReview {
    /// Validates one review; `prefix` names it inside a bulk body (`reviews[3].`).
    pub fn parse(self, check: &mut Validator, prefix: &str) -> pb::SubmitReviewRequest {
        let card_id = check.uuid(&format!("{prefix}card_id"), &self.card_id);
        check.range(&format!("{prefix}quality"), self.quality, 0, 5);
        check.range(
            &format!("{prefix}time_taken"),
            self.time_taken,
            0,
            MAX_TIME_TAKEN,
        );
        pb::SubmitReviewRequest {
            card_id,
            quality: self.quality.clamp(0, 5) as i32,
            time_taken: self.time_taken.clamp(0, MAX_TIME_TAKEN) as i32,
        }
    }
}

/// `POST /reviews/bulk`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = BulkReviewRequest)]
pub struct BulkReviews {
    #[schema(format = Uuid)]
    pub deck_id: String,
    /// The client's own id of its study session.
    #[schema(min_length = 1, max_length = 100)]
    pub session_id: String,
    #[schema(min_items = 1, max_items = 100)]
    pub reviews: Vec<NewReview>,
}

impl BulkReviews {
    pub fn parse(self, check: &mut Validator) -> pb::SubmitReviewsRequest {
        let deck_id = check.uuid("deck_id", &self.deck_id);
        check.length("session_id", &self.session_id, 1, 100);
        if self.reviews.is_empty() || self.reviews.len() > 100 {
            check.error("reviews", "must hold between 1 and 100 reviews");
        }
        let reviews = self
            .reviews
            .into_iter()
            .enumerate()
            .map(|(index, review)| review.parse(check, &format!("reviews[{index}].")))
            .collect();
        pb::SubmitReviewsRequest {
            deck_id,
            session_id: self.session_id,
            reviews,
        }
    }
}

// ------------------------------------------------------------------ responses

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StudyQueueCard {
    #[schema(format = Uuid)]
    pub card_id: String,
    pub front_text: String,
    pub back_text: String,
    #[schema(required = true)]
    pub example_sentence: Option<String>,
    #[schema(required = true)]
    pub pronunciation: Option<String>,
    pub difficulty: Difficulty,
    /// `null` for a new card (no SRS row yet).
    #[schema(required = true)]
    pub status: Option<CardStatus>,
    pub is_new: bool,
    pub is_early_practice: bool,
    #[schema(required = true, format = Date)]
    pub due_date: Option<String>,
    #[schema(required = true)]
    pub easiness_factor: Option<f64>,
    #[schema(required = true)]
    pub interval: Option<u32>,
}

impl TryFrom<pb::StudyQueueCard> for StudyQueueCard {
    type Error = Breach;

    fn try_from(card: pb::StudyQueueCard) -> Result<Self, Breach> {
        Ok(Self {
            card_id: card.card_id,
            front_text: card.front_text,
            back_text: card.back_text,
            example_sentence: card.example_sentence,
            pronunciation: card.pronunciation,
            difficulty: Difficulty::of(card.difficulty, "queue.card.difficulty")?,
            status: CardStatus::of(card.status),
            is_new: card.is_new,
            is_early_practice: card.is_early_practice,
            due_date: card.due_date,
            easiness_factor: card.easiness_factor,
            interval: card.interval,
        })
    }
}

/// A study queue; the `total_*` count the cards in this queue.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StudyQueue {
    /// The all-zero UUID for all decks.
    #[schema(format = Uuid)]
    pub deck_id: String,
    /// "All Decks" for all decks.
    pub deck_name: String,
    pub total_due: u32,
    pub total_new: u32,
    pub total_early_practice: u32,
    pub total_in_queue: u32,
    pub cards: Vec<StudyQueueCard>,
}

impl TryFrom<pb::StudyQueue> for StudyQueue {
    type Error = Breach;

    fn try_from(queue: pb::StudyQueue) -> Result<Self, Breach> {
        Ok(Self {
            deck_id: queue.deck_id,
            deck_name: queue.deck_name,
            total_due: queue.total_due,
            total_new: queue.total_new,
            total_early_practice: queue.total_early_practice,
            total_in_queue: queue.total_in_queue,
            cards: all(queue.cards)?,
        })
    }
}

/// The user's SRS rows by status, and those due today.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusCountsWithDue {
    pub new: u64,
    pub learning: u64,
    pub review: u64,
    pub mastered: u64,
    /// Rows with `next_review_date` ≤ today.
    pub due: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StudyStats {
    #[schema(inline)]
    pub by_status: StatusCountsWithDue,
    pub reviews_today: u64,
    pub current_streak: u32,
    pub due_today: u64,
    pub total_reviews: u64,
    pub total_study_time: u64,
    /// 0 without reviews.
    pub average_quality: f64,
}

impl From<pb::StudyStats> for StudyStats {
    fn from(stats: pb::StudyStats) -> Self {
        let counts = stats.by_status.unwrap_or_default();
        Self {
            by_status: StatusCountsWithDue {
                new: counts.new,
                learning: counts.learning,
                review: counts.review,
                mastered: counts.mastered,
                due: counts.due,
            },
            reviews_today: stats.reviews_today,
            current_streak: stats.current_streak,
            due_today: stats.due_today,
            total_reviews: stats.total_reviews,
            total_study_time: stats.total_study_time,
            average_quality: stats.average_quality,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = InitializeResponse)]
pub struct Initialized {
    pub initialized_count: u32,
    pub already_exists_count: u32,
    /// The ids newly initialised.
    #[schema(schema_with = super::uuids)]
    pub card_ids: Vec<String>,
}

impl From<pb::InitializeStudyResponse> for Initialized {
    fn from(response: pb::InitializeStudyResponse) -> Self {
        Self {
            initialized_count: response.initialized_count,
            already_exists_count: response.already_exists_count,
            card_ids: response.card_ids,
        }
    }
}

/// The outcome of one review (SM2.md).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewResult {
    pub success: Succeeded,
    #[schema(format = Uuid)]
    pub card_id: String,
    pub quality: i32,
    pub previous_status: CardStatus,
    pub new_status: CardStatus,
    pub easiness_factor: f64,
    pub interval: u32,
    pub repetitions: u32,
    #[schema(format = Date)]
    pub next_review_date: String,
    #[schema(required = true)]
    pub message: Option<String>,
}

impl TryFrom<pb::ReviewResult> for ReviewResult {
    type Error = Breach;

    fn try_from(result: pb::ReviewResult) -> Result<Self, Breach> {
        Ok(Self {
            success: Succeeded,
            card_id: result.card_id,
            quality: result.quality,
            previous_status: CardStatus::required(
                result.previous_status,
                "review.previous_status",
            )?,
            new_status: CardStatus::required(result.new_status, "review.new_status")?,
            easiness_factor: result.easiness_factor,
            interval: result.interval,
            repetitions: result.repetitions,
            next_review_date: result.next_review_date,
            message: result.message,
        })
    }
}

/// A review of a bulk that failed (an unknown card); the others are kept.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewFailure {
    pub success: Failed,
    pub card_id: String,
    pub message: String,
}

/// One item of a bulk's results, in the order submitted.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum BulkReviewItem {
    Result(ReviewResult),
    Failure(ReviewFailure),
}

impl TryFrom<pb::BulkReviewItem> for BulkReviewItem {
    type Error = Breach;

    fn try_from(item: pb::BulkReviewItem) -> Result<Self, Breach> {
        use pb::bulk_review_item::Outcome;
        match item.outcome {
            Some(Outcome::Result(result)) => Ok(Self::Result(result.try_into()?)),
            Some(Outcome::Failure(failure)) => Ok(Self::Failure(ReviewFailure {
                success: Failed,
                card_id: failure.card_id,
                message: failure.message,
            })),
            None => Err(Breach("bulk review item without an outcome")),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BulkReviewResponse)]
pub struct BulkReviewResults {
    pub session_id: String,
    pub total_submitted: u32,
    pub successful: u32,
    pub failed: u32,
    pub results: Vec<BulkReviewItem>,
}

impl TryFrom<pb::SubmitReviewsResponse> for BulkReviewResults {
    type Error = Breach;

    fn try_from(response: pb::SubmitReviewsResponse) -> Result<Self, Breach> {
        Ok(Self {
            session_id: response.session_id,
            total_submitted: response.total_submitted,
            successful: response.successful,
            failed: response.failed,
            results: all(response.results)?,
        })
    }
}

/// One entry of the caller's review log.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Review {
    #[schema(format = Uuid)]
    pub id: String,
    #[schema(format = Uuid)]
    pub user_id: String,
    #[schema(format = Uuid)]
    pub card_id: String,
    pub quality: i32,
    pub time_taken: i32,
    pub reviewed_at: Timestamp,
}

impl TryFrom<pb::Review> for Review {
    type Error = Breach;

    fn try_from(review: pb::Review) -> Result<Self, Breach> {
        Ok(Self {
            id: review.id,
            user_id: review.user_id,
            card_id: review.card_id,
            quality: review.quality,
            time_taken: review.time_taken,
            reviewed_at: Timestamp::required(review.reviewed_at.as_ref(), "review.reviewed_at")?,
        })
    }
}

/// `GET /reviews`.
pub type ReviewList = Page<ReviewItems>;

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ReviewList)]
pub struct ReviewItems {
    pub reviews: Vec<Review>,
}

impl TryFrom<pb::ListReviewsResponse> for ReviewItems {
    type Error = Breach;

    fn try_from(response: pb::ListReviewsResponse) -> Result<Self, Breach> {
        Ok(Self {
            reviews: all(response.reviews)?,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Overview {
    pub total_cards_studied: u64,
    pub total_cards_mastered: u64,
    pub total_decks_started: u64,
    pub overall_mastery_percentage: f64,
    pub accuracy_percentage: f64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Today {
    pub reviews_completed: u64,
    pub cards_due: u64,
    pub daily_goal: u32,
    pub goal_progress_percentage: f64,
    pub study_time_seconds: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreakBody {
    pub current_streak: u32,
    pub longest_streak: u32,
    #[schema(required = true, format = Date)]
    pub last_study_date: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusCounts {
    pub new: u64,
    pub learning: u64,
    pub review: u64,
    pub mastered: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DayActivity {
    #[schema(format = Date)]
    pub date: String,
    pub reviews_count: u64,
    pub average_quality: f64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Dashboard {
    #[schema(inline)]
    pub overview: Overview,
    #[schema(inline)]
    pub today: Today,
    #[schema(inline)]
    pub streak: StreakBody,
    #[schema(inline)]
    pub cards_by_status: StatusCounts,
    #[schema(inline)]
    pub recent_activity: Vec<DayActivity>,
}

impl From<pb::Dashboard> for Dashboard {
    fn from(dashboard: pb::Dashboard) -> Self {
        let overview = dashboard.overview.unwrap_or_default();
        let today = dashboard.today.unwrap_or_default();
        let streak = dashboard.streak.unwrap_or_default();
        let counts = dashboard.cards_by_status.unwrap_or_default();
        Self {
            overview: Overview {
                total_cards_studied: overview.total_cards_studied,
                total_cards_mastered: overview.total_cards_mastered,
                total_decks_started: overview.total_decks_started,
                overall_mastery_percentage: overview.overall_mastery_percentage,
                accuracy_percentage: overview.accuracy_percentage,
            },
            today: Today {
                reviews_completed: today.reviews_completed,
                cards_due: today.cards_due,
                daily_goal: today.daily_goal,
                goal_progress_percentage: today.goal_progress_percentage,
                study_time_seconds: today.study_time_seconds,
            },
            streak: StreakBody {
                current_streak: streak.current_streak,
                longest_streak: streak.longest_streak,
                last_study_date: streak.last_study_date,
            },
            cards_by_status: StatusCounts {
                new: counts.new,
                learning: counts.learning,
                review: counts.review,
                mastered: counts.mastered,
            },
            recent_activity: dashboard
                .recent_activity
                .into_iter()
                .map(|day| DayActivity {
                    date: day.date,
                    reviews_count: day.reviews_count,
                    average_quality: day.average_quality,
                })
                .collect(),
        }
    }
}

/// The kind of a deck's content (only vocabulary decks exist).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeckType {
    Vocabulary,
}

/// A started deck's progress.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeckProgressSummary {
    #[schema(format = Uuid)]
    pub deck_id: String,
    pub deck_name: String,
    pub deck_level: Level,
    pub total_cards: u64,
    pub cards_studied: u64,
    pub cards_mastered: u64,
    pub cards_due: u64,
    pub mastery_percentage: f64,
    pub completion_percentage: f64,
    #[schema(required = true)]
    pub last_studied_at: Option<Timestamp>,
    pub average_easiness_factor: f64,
    pub estimated_review_time_minutes: u32,
    pub deck_type: DeckType,
}

impl TryFrom<pb::DeckProgressSummary> for DeckProgressSummary {
    type Error = Breach;

    fn try_from(summary: pb::DeckProgressSummary) -> Result<Self, Breach> {
        Ok(Self {
            deck_id: summary.deck_id,
            deck_name: summary.deck_name,
            deck_level: Level::of(summary.deck_level, "progress.deck_level")?,
            total_cards: summary.total_cards,
            cards_studied: summary.cards_studied,
            cards_mastered: summary.cards_mastered,
            cards_due: summary.cards_due,
            mastery_percentage: summary.mastery_percentage,
            completion_percentage: summary.completion_percentage,
            last_studied_at: Timestamp::of(summary.last_studied_at.as_ref()),
            average_easiness_factor: summary.average_easiness_factor,
            estimated_review_time_minutes: summary.estimated_review_time_minutes,
            // Empty: the service's default, vocabulary.
            deck_type: match summary.deck_type.as_str() {
                "" => DeckType::Vocabulary,
                other => spelled(other, "progress.deck_type")?,
            },
        })
    }
}

/// A value a service sent as text, which must be one of the contract's.
fn spelled<T: Spelled>(text: &str, field: &'static str) -> Result<T, Breach> {
    T::parse(text).ok_or(Breach(field))
}

impl Spelled for DeckType {
    const EXPECTED: &'static str = "must be vocabulary";
}

/// `GET /progress/decks`.
pub type DeckProgressList = Page<DeckProgressItems>;

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DeckProgressList)]
pub struct DeckProgressItems {
    pub decks: Vec<DeckProgressSummary>,
}

impl TryFrom<pb::ListDeckProgressResponse> for DeckProgressItems {
    type Error = Breach;

    fn try_from(response: pb::ListDeckProgressResponse) -> Result<Self, Breach> {
        Ok(Self {
            decks: all(response.decks)?,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressCounts {
    pub total_cards: u64,
    pub cards_studied: u64,
    pub cards_mastered: u64,
    pub cards_due: u64,
    pub cards_new: u64,
    pub cards_learning: u64,
    pub cards_review: u64,
    pub mastery_percentage: f64,
    pub completion_percentage: f64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeckStatistics {
    pub total_reviews: u64,
    pub total_study_time_seconds: u64,
    pub average_quality: f64,
    pub average_easiness_factor: f64,
    pub average_interval_days: f64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeckTimeline {
    #[schema(required = true)]
    pub first_studied_at: Option<Timestamp>,
    #[schema(required = true)]
    pub last_studied_at: Option<Timestamp>,
    pub days_active: u32,
    #[schema(required = true)]
    pub estimated_completion_days: Option<u32>,
}

/// One started deck's progress in detail.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeckProgressDetail {
    #[schema(format = Uuid)]
    pub deck_id: String,
    pub deck_name: String,
    pub deck_level: Level,
    #[schema(required = true)]
    pub deck_description: Option<String>,
    #[schema(inline)]
    pub progress: ProgressCounts,
    #[schema(inline)]
    pub statistics: DeckStatistics,
    #[schema(inline)]
    pub timeline: DeckTimeline,
}

impl TryFrom<pb::DeckProgressDetail> for DeckProgressDetail {
    type Error = Breach;

    fn try_from(detail: pb::DeckProgressDetail) -> Result<Self, Breach> {
        let progress = detail.progress.unwrap_or_default();
        let statistics = detail.statistics.unwrap_or_default();
        let timeline = detail.timeline.unwrap_or_default();
        Ok(Self {
            deck_id: detail.deck_id,
            deck_name: detail.deck_name,
            deck_level: Level::of(detail.deck_level, "progress.deck_level")?,
            deck_description: detail.deck_description,
            progress: ProgressCounts {
                total_cards: progress.total_cards,
                cards_studied: progress.cards_studied,
                cards_mastered: progress.cards_mastered,
                cards_due: progress.cards_due,
                cards_new: progress.cards_new,
                cards_learning: progress.cards_learning,
                cards_review: progress.cards_review,
                mastery_percentage: progress.mastery_percentage,
                completion_percentage: progress.completion_percentage,
            },
            statistics: DeckStatistics {
                total_reviews: statistics.total_reviews,
                total_study_time_seconds: statistics.total_study_time_seconds,
                average_quality: statistics.average_quality,
                average_easiness_factor: statistics.average_easiness_factor,
                average_interval_days: statistics.average_interval_days,
            },
            timeline: DeckTimeline {
                first_studied_at: Timestamp::of(timeline.first_studied_at.as_ref()),
                last_studied_at: Timestamp::of(timeline.last_studied_at.as_ref()),
                days_active: timeline.days_active,
                estimated_completion_days: timeline.estimated_completion_days,
            },
        })
    }
}

/// How the second half of a period's average quality compares with the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum QualityTrend {
    Improving,
    Declining,
    Stable,
}

impl Spelled for QualityTrend {
    const EXPECTED: &'static str = "must be one of improving, declining, stable";
}

/// One day of a trend (zero-filled when nothing happened).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DayStats {
    #[schema(format = Date)]
    pub date: String,
    pub reviews_count: u64,
    pub cards_learned: u64,
    pub cards_learning: u64,
    pub cards_mastered: u64,
    pub study_time_seconds: u64,
    pub average_quality: f64,
    pub vocab_accuracy: f64,
    pub culture_accuracy: f64,
    pub combined_accuracy: f64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrendsSummary {
    pub total_reviews: u64,
    pub total_study_time_seconds: u64,
    pub cards_mastered: u64,
    pub average_daily_reviews: f64,
    #[schema(required = true, format = Date)]
    pub best_day: Option<String>,
    pub quality_trend: QualityTrend,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Trends {
    pub period: Period,
    #[schema(format = Date)]
    pub start_date: String,
    #[schema(format = Date)]
    pub end_date: String,
    #[schema(inline)]
    pub daily_stats: Vec<DayStats>,
    #[schema(inline)]
    pub summary: TrendsSummary,
}

impl TryFrom<pb::Trends> for Trends {
    type Error = Breach;

    fn try_from(trends: pb::Trends) -> Result<Self, Breach> {
        let summary = trends.summary.unwrap_or_default();
        Ok(Self {
            period: spelled(&trends.period, "trends.period")?,
            start_date: trends.start_date,
            end_date: trends.end_date,
            daily_stats: trends
                .daily_stats
                .into_iter()
                .map(|day| DayStats {
                    date: day.date,
                    reviews_count: day.reviews_count,
                    cards_learned: day.cards_learned,
                    cards_learning: day.cards_learning,
                    cards_mastered: day.cards_mastered,
                    study_time_seconds: day.study_time_seconds,
                    average_quality: day.average_quality,
                    vocab_accuracy: day.vocab_accuracy,
                    culture_accuracy: day.culture_accuracy,
                    combined_accuracy: day.combined_accuracy,
                })
                .collect(),
            summary: TrendsSummary {
                total_reviews: summary.total_reviews,
                total_study_time_seconds: summary.total_study_time_seconds,
                cards_mastered: summary.cards_mastered,
                average_daily_reviews: summary.average_daily_reviews,
                best_day: summary.best_day,
                quality_trend: spelled(&summary.quality_trend, "trends.quality_trend")?,
            },
        })
    }
}
