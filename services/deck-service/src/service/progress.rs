//! Progress: the dashboard, the started decks (through the cache), one deck's progress,
//! and the trends of a period; the figures come from the domain's progress rules.

use std::collections::HashMap;

use proto::deck::v1 as pb;
use time::Date;

use super::{DeckApp, messages};
use crate::{
    cache::views::CachedDeckProgress,
    domain::{
        DeckId, Level, Page, UserId, days_between, format_date,
        progress::{
            DayActivity, Period, current_streak, estimated_completion_days, goal_progress,
            longest_streak, percentage, round_to, trend_summary,
        },
        sm2::INITIAL_EASINESS,
        timestamp,
    },
    error::{Error, Result},
};

/// Days the dashboard's recent activity covers, today included.
const RECENT_DAYS: i64 = 7;

impl DeckApp {
    pub async fn dashboard(&self, user: UserId, daily_goal: u32) -> Result<pb::Dashboard> {
        let today = self.today();
        let counts = self.store.status_counts(user, None, today).await?;
        let all = self.store.review_totals(user, None, None, None).await?;
        let days = self.store.study_days(user, today).await?;
        let progress = self.user_decks(user).await?;
        let week_start = today - time::Duration::days(RECENT_DAYS - 1);
        let daily: HashMap<Date, DayActivity> = self
            .store
            .daily(user, None, week_start, today)
            .await?
            .into_iter()
            .collect();
        let today_activity = daily.get(&today).copied().unwrap_or_default();
        let studied: u64 = progress.decks.iter().map(|d| d.cards_studied).sum();
        let mastered = messages::count(counts.mastered);
        Ok(pb::Dashboard {
            overview: Some(pb::DashboardOverview {
                total_cards_studied: studied,
                total_cards_mastered: mastered,
                total_decks_started: progress.decks.len() as u64,
                overall_mastery_percentage: percentage(mastered as f64, studied as f64),
                accuracy_percentage: percentage(all.correct as f64, all.total as f64),
            }),
            today: Some(pb::DashboardToday {
                reviews_completed: messages::count(today_activity.reviews),
                cards_due: messages::count(counts.due),
                daily_goal,
                goal_progress_percentage: goal_progress(today_activity.reviews, daily_goal),
                study_time_seconds: messages::count(today_activity.study_time),
            }),
            streak: Some(pb::Streak {
                current_streak: current_streak(&days, today),
                longest_streak: longest_streak(&days),
                last_study_date: days.first().copied().map(format_date),
            }),
            cards_by_status: Some(messages::status_counts(&counts)),
            recent_activity: days_between(week_start, today)
                .into_iter()
                .map(|day| {
                    let activity = daily.get(&day).copied().unwrap_or_default();
                    pb::DailyActivity {
                        date: format_date(day),
                        reviews_count: messages::count(activity.reviews),
                        average_quality: round_to(activity.average_quality, 2),
                    }
                })
                .collect(),
        })
    }

    /// The user's started decks with their progress, through the cache.
    pub async fn list_deck_progress(
        &self,
        user: UserId,
        page: Page,
    ) -> Result<pb::ListDeckProgressResponse> {
        let decks = self.user_decks(user).await?.decks;
        Ok(pb::ListDeckProgressResponse {
            total: decks.len() as u64,
            page: page.page,
            page_size: page.page_size,
            decks: page.slice(&decks),
        })
    }

    async fn user_decks(&self, user: UserId) -> Result<CachedDeckProgress> {
        let store = self.store.clone();
        let now = self.now();
        self.views
            .user_decks(user, now, move || async move {
                let rows = store.progress(user, None, now.date()).await?;
                Ok(rows.iter().map(messages::progress_summary).collect())
            })
            .await
    }

    /// One started deck's progress; NOT_FOUND when the deck is unknown, inactive or not
    /// started by the user (the front end then initialises study for it).
    pub async fn deck_progress(
        &self,
        user: UserId,
        deck: DeckId,
    ) -> Result<pb::DeckProgressDetail> {
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
        let total = messages::count(row.total_cards);
        let studied = messages::count(i64::from(row.cards_studied));
        Ok(pb::DeckProgressDetail {
            deck_id: deck.to_string(),
            deck_name: row.deck_name.clone(),
            deck_level: Level::from_db(&row.deck_level).to_proto(),
            deck_description: row.deck_description.clone(),
            progress: Some(pb::DeckProgressCounts {
                total_cards: total,
                cards_studied: studied,
                cards_mastered: messages::count(i64::from(row.cards_mastered)),
                cards_due: messages::count(counts.due),
                cards_new: messages::count(counts.new),
                cards_learning: messages::count(counts.learning),
                cards_review: messages::count(counts.review),
                mastery_percentage: percentage(f64::from(row.cards_mastered), total as f64),
                completion_percentage: percentage(studied as f64, total as f64),
            }),
            statistics: Some(pb::DeckStatistics {
                total_reviews: messages::count(reviews.total),
                total_study_time_seconds: messages::count(reviews.study_time),
                average_quality: round_to(reviews.average_quality.unwrap_or(0.0), 2),
                average_easiness_factor: round_to(
                    counts.average_easiness_factor.unwrap_or(INITIAL_EASINESS),
                    2,
                ),
                average_interval_days: round_to(counts.average_interval.unwrap_or(0.0), 1),
            }),
            timeline: Some(pb::DeckTimeline {
                first_studied_at: row.first_studied_at.map(timestamp),
                last_studied_at: row.last_studied_at.map(timestamp),
                days_active: reviews.days_active.max(0) as u32,
                estimated_completion_days: estimated_completion_days(
                    total,
                    studied,
                    reviews.days_active,
                ),
            }),
        })
    }

    /// One zero-filled entry per day of `period` up to today, and its summary.
    pub async fn trends(
        &self,
        user: UserId,
        period: Period,
        deck: Option<DeckId>,
    ) -> Result<pb::Trends> {
        let end = self.today();
        let start = end - time::Duration::days(period.days() - 1);
        let activity: HashMap<Date, DayActivity> = self
            .store
            .daily(user, deck, start, end)
            .await?
            .into_iter()
            .collect();
        let days: Vec<(Date, Option<DayActivity>)> = days_between(start, end)
            .into_iter()
            .map(|day| (day, activity.get(&day).copied()))
            .collect();
        let summary = trend_summary(&days);
        Ok(pb::Trends {
            period: period.as_str().to_owned(),
            start_date: format_date(start),
            end_date: format_date(end),
            daily_stats: days
                .iter()
                .map(|(day, activity)| {
                    let activity = activity.unwrap_or_default();
                    let accuracy = activity.accuracy();
                    pb::DailyStats {
                        date: format_date(*day),
                        reviews_count: messages::count(activity.reviews),
                        cards_learned: messages::count(activity.learned),
                        cards_learning: messages::count(activity.learning),
                        cards_mastered: messages::count(activity.mastered),
                        study_time_seconds: messages::count(activity.study_time),
                        average_quality: round_to(activity.average_quality, 2),
                        vocab_accuracy: accuracy,
                        culture_accuracy: 0.0,
                        combined_accuracy: accuracy,
                    }
                })
                .collect(),
            summary: Some(pb::TrendsSummary {
                total_reviews: messages::count(summary.total_reviews),
                total_study_time_seconds: messages::count(summary.study_time),
                cards_mastered: messages::count(summary.cards_mastered),
                average_daily_reviews: summary.average_daily_reviews,
                best_day: summary.best_day.map(format_date),
                quality_trend: summary.quality_trend.to_owned(),
            }),
        })
    }
}
