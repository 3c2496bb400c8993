//! Proto messages → the JSON shapes of HTTP_API.md, and the enum spellings both ways.
//! Timestamps become RFC 3339 UTC with `Z` (microseconds); optional fields become `null`.

use proto::deck::v1 as deck;
use proto::session::v1 as session;
use serde_json::{Value, json};

/// RFC 3339 UTC with `Z`, microsecond precision; `null` when absent or out of range.
pub fn timestamp(ts: Option<&prost_types::Timestamp>) -> Value {
    let Some(ts) = ts else { return Value::Null };
    let nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
    let micros = nanos.div_euclid(1000) * 1000;
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp_nanos(micros) else {
        return Value::Null;
    };
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    at.format(&format).map_or(Value::Null, Value::String)
}

pub fn now() -> Value {
    let now = time::OffsetDateTime::now_utc();
    timestamp(Some(&prost_types::Timestamp {
        seconds: now.unix_timestamp(),
        nanos: i32::try_from(now.nanosecond()).unwrap_or(0),
    }))
}

pub fn parse_level(value: &str) -> Result<deck::Level, String> {
    Ok(match value {
        "A1" => deck::Level::A1,
        "A2" => deck::Level::A2,
        "B1" => deck::Level::B1,
        "B2" => deck::Level::B2,
        "C1" => deck::Level::C1,
        "C2" => deck::Level::C2,
        _ => return Err("must be one of A1, A2, B1, B2, C1, C2".into()),
    })
}

pub fn level(value: i32) -> Value {
    match deck::Level::try_from(value) {
        Ok(deck::Level::A1) => "A1".into(),
        Ok(deck::Level::A2) => "A2".into(),
        Ok(deck::Level::B1) => "B1".into(),
        Ok(deck::Level::B2) => "B2".into(),
        Ok(deck::Level::C1) => "C1".into(),
        Ok(deck::Level::C2) => "C2".into(),
        _ => Value::Null,
    }
}

pub fn parse_difficulty(value: &str) -> Result<deck::Difficulty, String> {
    Ok(match value {
        "easy" => deck::Difficulty::Easy,
        "medium" => deck::Difficulty::Medium,
        "hard" => deck::Difficulty::Hard,
        _ => return Err("must be one of easy, medium, hard".into()),
    })
}

pub fn difficulty(value: i32) -> Value {
    match deck::Difficulty::try_from(value) {
        Ok(deck::Difficulty::Easy) => "easy".into(),
        Ok(deck::Difficulty::Medium) => "medium".into(),
        Ok(deck::Difficulty::Hard) => "hard".into(),
        _ => Value::Null,
    }
}

pub fn status(value: i32) -> Value {
    match deck::CardStatus::try_from(value) {
        Ok(deck::CardStatus::New) => "new".into(),
        Ok(deck::CardStatus::Learning) => "learning".into(),
        Ok(deck::CardStatus::Review) => "review".into(),
        Ok(deck::CardStatus::Mastered) => "mastered".into(),
        _ => Value::Null,
    }
}

pub fn token_pair(pair: session::TokenPair) -> Value {
    json!({
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "token_type": if pair.token_type.is_empty() { "bearer".to_owned() } else { pair.token_type },
        "expires_in": pair.expires_in,
    })
}

pub fn profile(profile: session::Profile) -> Value {
    let settings = profile.settings.unwrap_or_default();
    json!({
        "id": profile.id,
        "email": profile.email,
        "full_name": profile.full_name,
        "is_active": profile.is_active,
        "is_superuser": profile.is_superuser,
        "email_verified_at": timestamp(profile.email_verified_at.as_ref()),
        "created_at": timestamp(profile.created_at.as_ref()),
        "updated_at": timestamp(profile.updated_at.as_ref()),
        "settings": {
            "id": settings.id,
            "user_id": settings.user_id,
            "daily_goal": settings.daily_goal,
            "email_notifications": settings.email_notifications,
            "preferred_language": settings.preferred_language,
            "created_at": timestamp(settings.created_at.as_ref()),
            "updated_at": timestamp(settings.updated_at.as_ref()),
        },
    })
}

pub fn session(session: session::Session) -> Value {
    json!({
        "id": session.id,
        "created_at": timestamp(session.created_at.as_ref()),
        "last_used_at": timestamp(session.last_used_at.as_ref()),
        "expires_at": timestamp(session.expires_at.as_ref()),
        "ip_address": empty_as_null(session.ip_address),
        "user_agent": empty_as_null(session.user_agent),
        "current": session.current,
    })
}

fn empty_as_null(value: String) -> Value {
    if value.is_empty() {
        Value::Null
    } else {
        Value::String(value)
    }
}

/// A deck; `with_count` adds `card_count` (the detail route).
pub fn deck(deck: deck::Deck, with_count: bool) -> Value {
    let mut value = json!({
        "id": deck.id,
        "name": deck.name,
        "description": deck.description,
        "level": level(deck.level),
        "is_active": deck.is_active,
        "created_at": timestamp(deck.created_at.as_ref()),
        "updated_at": timestamp(deck.updated_at.as_ref()),
    });
    if with_count {
        value["card_count"] = json!(deck.card_count.unwrap_or(0));
    }
    value
}

pub fn card(card: deck::Card) -> Value {
    json!({
        "id": card.id,
        "deck_id": card.deck_id,
        "front_text": card.front_text,
        "back_text": card.back_text,
        "example_sentence": card.example_sentence,
        "pronunciation": card.pronunciation,
        "difficulty": difficulty(card.difficulty),
        "order_index": card.order_index,
        "created_at": timestamp(card.created_at.as_ref()),
        "updated_at": timestamp(card.updated_at.as_ref()),
    })
}

pub fn study_queue(queue: deck::StudyQueue) -> Value {
    let cards: Vec<Value> = queue
        .cards
        .into_iter()
        .map(|card| {
            json!({
                "card_id": card.card_id,
                "front_text": card.front_text,
                "back_text": card.back_text,
                "example_sentence": card.example_sentence,
                "pronunciation": card.pronunciation,
                "difficulty": difficulty(card.difficulty),
                "status": status(card.status),
                "is_new": card.is_new,
                "is_early_practice": card.is_early_practice,
                "due_date": card.due_date,
                "easiness_factor": card.easiness_factor,
                "interval": card.interval,
            })
        })
        .collect();
    json!({
        "deck_id": queue.deck_id,
        "deck_name": queue.deck_name,
        "total_due": queue.total_due,
        "total_new": queue.total_new,
        "total_early_practice": queue.total_early_practice,
        "total_in_queue": queue.total_in_queue,
        "cards": cards,
    })
}

pub fn status_counts(counts: Option<deck::StatusCounts>, with_due: bool) -> Value {
    let counts = counts.unwrap_or_default();
    let mut value = json!({
        "new": counts.new,
        "learning": counts.learning,
        "review": counts.review,
        "mastered": counts.mastered,
    });
    if with_due {
        value["due"] = json!(counts.due);
    }
    value
}

pub fn study_stats(stats: deck::StudyStats) -> Value {
    json!({
        "by_status": status_counts(stats.by_status, true),
        "reviews_today": stats.reviews_today,
        "current_streak": stats.current_streak,
        "due_today": stats.due_today,
        "total_reviews": stats.total_reviews,
        "total_study_time": stats.total_study_time,
        "average_quality": stats.average_quality,
    })
}

pub fn initialize(response: deck::InitializeStudyResponse) -> Value {
    json!({
        "initialized_count": response.initialized_count,
        "already_exists_count": response.already_exists_count,
        "card_ids": response.card_ids,
    })
}

pub fn review_result(result: deck::ReviewResult) -> Value {
    json!({
        "success": result.success,
        "card_id": result.card_id,
        "quality": result.quality,
        "previous_status": status(result.previous_status),
        "new_status": status(result.new_status),
        "easiness_factor": result.easiness_factor,
        "interval": result.interval,
        "repetitions": result.repetitions,
        "next_review_date": result.next_review_date,
        "message": result.message,
    })
}

pub fn bulk_reviews(response: deck::SubmitReviewsResponse) -> Value {
    use deck::bulk_review_item::Outcome;
    let results: Vec<Value> = response
        .results
        .into_iter()
        .map(|item| match item.outcome {
            Some(Outcome::Result(result)) => review_result(result),
            Some(Outcome::Failure(failure)) => {
                json!({"success": false, "card_id": failure.card_id, "message": failure.message})
            }
            None => json!({"success": false, "card_id": Value::Null, "message": "no outcome"}),
        })
        .collect();
    json!({
        "session_id": response.session_id,
        "total_submitted": response.total_submitted,
        "successful": response.successful,
        "failed": response.failed,
        "results": results,
    })
}

pub fn review(review: deck::Review) -> Value {
    json!({
        "id": review.id,
        "user_id": review.user_id,
        "card_id": review.card_id,
        "quality": review.quality,
        "time_taken": review.time_taken,
        "reviewed_at": timestamp(review.reviewed_at.as_ref()),
    })
}

pub fn dashboard(dashboard: deck::Dashboard) -> Value {
    let overview = dashboard.overview.unwrap_or_default();
    let today = dashboard.today.unwrap_or_default();
    let streak = dashboard.streak.unwrap_or_default();
    json!({
        "overview": {
            "total_cards_studied": overview.total_cards_studied,
            "total_cards_mastered": overview.total_cards_mastered,
            "total_decks_started": overview.total_decks_started,
            "overall_mastery_percentage": overview.overall_mastery_percentage,
            "accuracy_percentage": overview.accuracy_percentage,
        },
        "today": {
            "reviews_completed": today.reviews_completed,
            "cards_due": today.cards_due,
            "daily_goal": today.daily_goal,
            "goal_progress_percentage": today.goal_progress_percentage,
            "study_time_seconds": today.study_time_seconds,
        },
        "streak": {
            "current_streak": streak.current_streak,
            "longest_streak": streak.longest_streak,
            "last_study_date": streak.last_study_date,
        },
        "cards_by_status": status_counts(dashboard.cards_by_status, false),
        "recent_activity": dashboard.recent_activity.into_iter().map(|day| json!({
            "date": day.date,
            "reviews_count": day.reviews_count,
            "average_quality": day.average_quality,
        })).collect::<Vec<_>>(),
    })
}

pub fn deck_progress_summary(summary: deck::DeckProgressSummary) -> Value {
    json!({
        "deck_id": summary.deck_id,
        "deck_name": summary.deck_name,
        "deck_level": level(summary.deck_level),
        "total_cards": summary.total_cards,
        "cards_studied": summary.cards_studied,
        "cards_mastered": summary.cards_mastered,
        "cards_due": summary.cards_due,
        "mastery_percentage": summary.mastery_percentage,
        "completion_percentage": summary.completion_percentage,
        "last_studied_at": timestamp(summary.last_studied_at.as_ref()),
        "average_easiness_factor": summary.average_easiness_factor,
        "estimated_review_time_minutes": summary.estimated_review_time_minutes,
        "deck_type": if summary.deck_type.is_empty() { "vocabulary".to_owned() } else { summary.deck_type },
    })
}

pub fn deck_progress_detail(detail: deck::DeckProgressDetail) -> Value {
    let progress = detail.progress.unwrap_or_default();
    let statistics = detail.statistics.unwrap_or_default();
    let timeline = detail.timeline.unwrap_or_default();
    json!({
        "deck_id": detail.deck_id,
        "deck_name": detail.deck_name,
        "deck_level": level(detail.deck_level),
        "deck_description": detail.deck_description,
        "progress": {
            "total_cards": progress.total_cards,
            "cards_studied": progress.cards_studied,
            "cards_mastered": progress.cards_mastered,
            "cards_due": progress.cards_due,
            "cards_new": progress.cards_new,
            "cards_learning": progress.cards_learning,
            "cards_review": progress.cards_review,
            "mastery_percentage": progress.mastery_percentage,
            "completion_percentage": progress.completion_percentage,
        },
        "statistics": {
            "total_reviews": statistics.total_reviews,
            "total_study_time_seconds": statistics.total_study_time_seconds,
            "average_quality": statistics.average_quality,
            "average_easiness_factor": statistics.average_easiness_factor,
            "average_interval_days": statistics.average_interval_days,
        },
        "timeline": {
            "first_studied_at": timestamp(timeline.first_studied_at.as_ref()),
            "last_studied_at": timestamp(timeline.last_studied_at.as_ref()),
            "days_active": timeline.days_active,
            "estimated_completion_days": timeline.estimated_completion_days,
        },
    })
}

pub fn trends(trends: deck::Trends) -> Value {
    let summary = trends.summary.unwrap_or_default();
    json!({
        "period": trends.period,
        "start_date": trends.start_date,
        "end_date": trends.end_date,
        "daily_stats": trends.daily_stats.into_iter().map(|day| json!({
            "date": day.date,
            "reviews_count": day.reviews_count,
            "cards_learned": day.cards_learned,
            "cards_learning": day.cards_learning,
            "cards_mastered": day.cards_mastered,
            "study_time_seconds": day.study_time_seconds,
            "average_quality": day.average_quality,
            "vocab_accuracy": day.vocab_accuracy,
            "culture_accuracy": day.culture_accuracy,
            "combined_accuracy": day.combined_accuracy,
        })).collect::<Vec<_>>(),
        "summary": {
            "total_reviews": summary.total_reviews,
            "total_study_time_seconds": summary.total_study_time_seconds,
            "cards_mastered": summary.cards_mastered,
            "average_daily_reviews": summary.average_daily_reviews,
            "best_day": summary.best_day,
            "quality_trend": summary.quality_trend,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_with_z_and_microseconds() {
        let ts = prost_types::Timestamp {
            seconds: 1_764_163_200,
            nanos: 123_456_789,
        };

        assert_eq!(timestamp(Some(&ts)), json!("2025-11-26T13:20:00.123456Z"));
        assert_eq!(timestamp(None), Value::Null);
    }

    #[test]
    fn enums_are_case_sensitive_and_round_trip() {
        assert_eq!(parse_level("B2"), Ok(deck::Level::B2));
        assert!(parse_level("b2").is_err());
        assert_eq!(level(deck::Level::C1 as i32), json!("C1"));
        assert_eq!(parse_difficulty("hard"), Ok(deck::Difficulty::Hard));
        assert!(parse_difficulty("Hard").is_err());
        assert_eq!(status(deck::CardStatus::Mastered as i32), json!("mastered"));
    }
}
