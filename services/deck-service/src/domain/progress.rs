//! The progress rules of HTTP_API.md: percentages and rounding, streaks, the quality
//! trend, time estimates, and the summary of a trend period.

use time::Date;

use crate::error::Violation;

/// `part / whole` as a percentage with one decimal; 0 when `whole` is 0.
pub fn percentage(part: f64, whole: f64) -> f64 {
    if whole <= 0.0 {
        0.0
    } else {
        round_to(part / whole * 100.0, 1)
    }
}

pub fn round_to(value: f64, decimals: i32) -> f64 {
    let factor = 10f64.powi(decimals);
    (value * factor).round() / factor
}

/// How far today's reviews are towards the daily goal, in percent, at most 100.
pub fn goal_progress(reviews_today: i64, daily_goal: u32) -> f64 {
    percentage(reviews_today as f64, f64::from(daily_goal)).min(100.0)
}

/// Minutes to review `due` cards, at about 30 seconds a card.
pub fn estimated_review_minutes(due: i64) -> u32 {
    ((due.max(0) as u64).div_ceil(2)).min(u64::from(u32::MAX)) as u32
}

/// Days until every card of a deck is studied, at the pace so far (cards studied per
/// active day): 0 when none is left, unknown before the first studied day.
pub fn estimated_completion_days(total: u64, studied: u64, days_active: i64) -> Option<u32> {
    let remaining = total.saturating_sub(studied);
    if remaining == 0 {
        Some(0)
    } else if studied > 0 && days_active > 0 {
        let per_day = studied as f64 / days_active as f64;
        Some((remaining as f64 / per_day).ceil().min(f64::from(u32::MAX)) as u32)
    } else {
        None
    }
}

/// Consecutive days with a review, counted back from `today` (0 without a review today).
/// `days` are distinct and newest first.
pub fn current_streak(days: &[Date], today: Date) -> u32 {
    let mut expected = today;
    let mut streak = 0;
    for &day in days {
        if day > expected {
            continue;
        }
        if day != expected {
            break;
        }
        streak += 1;
        match expected.previous_day() {
            Some(previous) => expected = previous,
            None => break,
        }
    }
    streak
}

/// The longest run of consecutive days in `days` (distinct, newest first).
pub fn longest_streak(days: &[Date]) -> u32 {
    let (mut longest, mut run) = (0, 0);
    let mut previous: Option<Date> = None;
    for &day in days {
        run = match previous {
            Some(later) if later.previous_day() == Some(day) => run + 1,
            _ => 1,
        };
        longest = longest.max(run);
        previous = Some(day);
    }
    longest
}

/// "improving" / "declining" / "stable": second half's average quality above / below
/// / within 0.3 of the first half's. Halves without reviews make it "stable".
/// Each half is (sum of qualities, number of reviews).
pub fn quality_trend(first: (f64, i64), second: (f64, i64)) -> &'static str {
    let (first_sum, first_count) = first;
    let (second_sum, second_count) = second;
    if first_count == 0 || second_count == 0 {
        return "stable";
    }
    let (a, b) = (
        first_sum / first_count as f64,
        second_sum / second_count as f64,
    );
    if b > a + 0.3 {
        "improving"
    } else if b < a - 0.3 {
        "declining"
    } else {
        "stable"
    }
}

/// One UTC day of a user's review log.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DayActivity {
    pub reviews: i64,
    /// Seconds.
    pub study_time: i64,
    pub average_quality: f64,
    /// Reviews of quality 3 or more.
    pub correct: i64,
    /// Reviews of a new card.
    pub learned: i64,
    /// Reviews that left the card learning.
    pub learning: i64,
    /// Reviews that made a card mastered.
    pub mastered: i64,
}

impl DayActivity {
    /// Share of correct reviews, in percent.
    pub fn accuracy(&self) -> f64 {
        percentage(self.correct as f64, self.reviews as f64)
    }
}

/// The period of GetTrends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    Week,
    Month,
    Year,
}

impl Period {
    /// `""` means a week.
    pub fn parse(field: &str, value: &str) -> Result<Self, Violation> {
        match value {
            "" | "week" => Ok(Self::Week),
            "month" => Ok(Self::Month),
            "year" => Ok(Self::Year),
            _ => Err(Violation::new(field, "must be week, month or year")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Week => "week",
            Self::Month => "month",
            Self::Year => "year",
        }
    }

    pub fn days(self) -> i64 {
        match self {
            Self::Week => 7,
            Self::Month => 30,
            Self::Year => 365,
        }
    }
}

/// The summary of a trend period.
#[derive(Clone, Debug, PartialEq)]
pub struct TrendSummary {
    pub total_reviews: i64,
    pub study_time: i64,
    pub cards_mastered: i64,
    pub average_daily_reviews: f64,
    /// The first day with the most reviews; none without reviews.
    pub best_day: Option<Date>,
    pub quality_trend: &'static str,
}

/// Sums up `days`: every day of the period in order, each with its activity if any.
/// The quality trend compares the first half of the days with the second.
pub fn trend_summary(days: &[(Date, Option<DayActivity>)]) -> TrendSummary {
    let half = days.len() / 2;
    let (mut first, mut second) = ((0.0, 0_i64), (0.0, 0_i64));
    let mut best: Option<(Date, i64)> = None;
    let (mut total, mut study_time, mut mastered) = (0_i64, 0_i64, 0_i64);
    for (i, (day, activity)) in days.iter().enumerate() {
        let Some(activity) = activity else { continue };
        let half_sum = if i < half { &mut first } else { &mut second };
        half_sum.0 += activity.average_quality * activity.reviews as f64;
        half_sum.1 += activity.reviews;
        total += activity.reviews;
        study_time += activity.study_time;
        mastered += activity.mastered;
        if best.is_none_or(|(_, most)| activity.reviews > most) {
            best = Some((*day, activity.reviews));
        }
    }
    TrendSummary {
        total_reviews: total,
        study_time,
        cards_mastered: mastered,
        average_daily_reviews: if days.is_empty() {
            0.0
        } else {
            round_to(total as f64 / days.len() as f64, 2)
        },
        best_day: best.filter(|(_, n)| *n > 0).map(|(day, _)| day),
        quality_trend: quality_trend(first, second),
    }
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    #[test]
    fn streaks_count_consecutive_days_back_from_today() {
        let today = date!(2026 - 11 - 26);
        let days = [
            date!(2026 - 11 - 26),
            date!(2026 - 11 - 25),
            date!(2026 - 11 - 23),
            date!(2026 - 11 - 22),
            date!(2026 - 11 - 21),
        ];
        assert_eq!(current_streak(&days, today), 2);
        assert_eq!(longest_streak(&days), 3);
        assert_eq!(current_streak(&days[1..], today), 0);
        assert_eq!(current_streak(&[], today), 0);
    }

    #[test]
    fn quality_trend_uses_a_threshold_of_point_three() {
        assert_eq!(quality_trend((6.0, 2), (8.0, 2)), "improving");
        assert_eq!(quality_trend((8.0, 2), (6.0, 2)), "declining");
        assert_eq!(quality_trend((6.0, 2), (6.5, 2)), "stable");
        assert_eq!(quality_trend((0.0, 0), (6.5, 2)), "stable");
    }

    #[test]
    fn percentages_round_to_one_decimal_and_survive_zero() {
        assert_eq!(percentage(1.0, 3.0), 33.3);
        assert_eq!(percentage(1.0, 0.0), 0.0);
        assert_eq!(estimated_review_minutes(3), 2);
        assert_eq!(goal_progress(30, 20), 100.0);
        assert_eq!(goal_progress(3, 10), 30.0);
    }

    #[test]
    fn completion_is_estimated_from_the_pace_so_far() {
        assert_eq!(estimated_completion_days(10, 10, 3), Some(0));
        assert_eq!(estimated_completion_days(10, 4, 2), Some(3));
        assert_eq!(estimated_completion_days(10, 0, 0), None);
    }

    #[test]
    fn a_trend_summary_sums_the_days_and_compares_the_halves() {
        let day = |reviews, average_quality| {
            Some(DayActivity {
                reviews,
                average_quality,
                study_time: 10 * reviews,
                mastered: 1,
                ..Default::default()
            })
        };
        let days = [
            (date!(2030 - 03 - 01), day(2, 2.0)),
            (date!(2030 - 03 - 02), None),
            (date!(2030 - 03 - 03), day(4, 4.0)),
            (date!(2030 - 03 - 04), day(4, 5.0)),
        ];

        let summary = trend_summary(&days);

        assert_eq!(
            summary,
            TrendSummary {
                total_reviews: 10,
                study_time: 100,
                cards_mastered: 3,
                average_daily_reviews: 2.5,
                best_day: Some(date!(2030 - 03 - 03)),
                quality_trend: "improving",
            }
        );
        assert_eq!(
            trend_summary(&[(date!(2030 - 03 - 01), None)]).best_day,
            None
        );
    }

    #[test]
    fn periods_parse_with_a_week_by_default() {
        assert_eq!(Period::parse("period", ""), Ok(Period::Week));
        assert_eq!(Period::parse("period", "year").map(Period::days), Ok(365));
        assert_eq!(
            Period::parse("period", "decade"),
            Err(Violation::new("period", "must be week, month or year"))
        );
    }
}
