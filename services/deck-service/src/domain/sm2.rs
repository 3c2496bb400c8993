//! SM-2 exactly as `SM2.md` specifies it: a pure function of the previous state, the
//! quality and "today", so it can be tested bit for bit without a database; and what a
//! review changes beyond the card's state (the per-deck counters, the message).

use time::{Date, Duration};

use crate::error::Violation;

/// Easiness factor of a card never reviewed.
pub const INITIAL_EASINESS: f64 = 2.5;
/// The easiness factor never goes below this.
pub const MIN_EASINESS: f64 = 1.3;
/// Longest interval, in days (about 100 years), so `next_review_date` stays a valid date
/// however many reviews a card gets (the legacy back end overflowed past year 9999).
pub const MAX_INTERVAL_DAYS: i32 = 36_500;

/// Learning status of one card for one user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    New,
    Learning,
    Review,
    Mastered,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Learning => "learning",
            Status::Review => "review",
            Status::Mastered => "mastered",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "new" => Status::New,
            "learning" => Status::Learning,
            "review" => Status::Review,
            "mastered" => Status::Mastered,
            _ => return None,
        })
    }
}

/// A review quality, 0–5 (anything else is rejected at the edge).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quality(u8);

impl Quality {
    pub fn new(value: i64) -> Option<Self> {
        (0..=5).contains(&value).then_some(Self(value as u8))
    }

    /// The quality of request field `field`.
    pub fn parse(field: &str, value: i32) -> Result<Self, Violation> {
        Self::new(i64::from(value)).ok_or_else(|| Violation::new(field, "must be between 0 and 5"))
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

/// The SRS state of one card for one user.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SrsState {
    pub easiness_factor: f64,
    pub interval: i32,
    pub repetitions: i32,
    pub status: Status,
    pub next_review_date: Date,
}

impl SrsState {
    /// The state of a freshly initialised card: due `today`.
    pub fn initial(today: Date) -> Self {
        Self {
            easiness_factor: INITIAL_EASINESS,
            interval: 0,
            repetitions: 0,
            status: Status::New,
            next_review_date: today,
        }
    }
}

/// Applies one review (SM2.md, steps 1–5, in that order).
pub fn review(previous: SrsState, quality: Quality, today: Date) -> SrsState {
    let q = f64::from(quality.get());
    // Step 1, on every review, failures included. The expression is kept in the
    // documented shape: reordering it changes the last bits of the result.
    let easiness_factor =
        MIN_EASINESS.max(previous.easiness_factor + (0.1 - (5.0 - q) * (0.08 + (5.0 - q) * 0.02)));
    // Step 2 (with the cap of step 5 applied to its result).
    let (interval, repetitions) = if quality.get() < 3 {
        (1, 0)
    } else {
        let interval = match previous.repetitions {
            0 => 1,
            1 => 6,
            // The *new* easiness factor; the cap keeps the product far inside f64/i32 range.
            _ => (f64::from(previous.interval) * easiness_factor).round_ties_even() as i64,
        };
        (interval, previous.repetitions + 1)
    };
    let interval = interval.min(i64::from(MAX_INTERVAL_DAYS)) as i32;
    // Step 3.
    let status = if quality.get() < 3 || repetitions < 3 {
        Status::Learning
    } else if easiness_factor >= 2.3 && interval >= 21 {
        Status::Mastered
    } else {
        Status::Review
    };
    // Step 4. Saturate rather than fail: with the cap this only matters near year 9999.
    let next_review_date = today
        .checked_add(Duration::days(i64::from(interval)))
        .unwrap_or(Date::MAX);
    SrsState {
        easiness_factor,
        interval,
        repetitions,
        status,
        next_review_date,
    }
}

/// Everything one review changes (HTTP_API.md, "A review, in one transaction").
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reviewed {
    pub previous: Status,
    pub next: SrsState,
    /// Added to the deck's `cards_studied`: 1 on the card's first review.
    pub studied_delta: i32,
    /// Added to the deck's `cards_mastered`: +1 on entering mastered, -1 on leaving it.
    pub mastered_delta: i32,
    pub message: Option<&'static str>,
}

impl Reviewed {
    /// A review of quality `quality` today of a card in state `previous`, reviewed
    /// before or not (`first_review`).
    pub fn of(previous: SrsState, first_review: bool, quality: Quality, today: Date) -> Self {
        Self::between(
            previous.status,
            review(previous, quality, today),
            first_review,
            quality,
        )
    }

    /// A review of quality `quality` that took a card from status `previous` to `next`
    /// (computed by [`review`], or by its SQL transcription `sm2_next`, which applies a
    /// review in one statement: see `store/study.rs`).
    pub fn between(previous: Status, next: SrsState, first_review: bool, quality: Quality) -> Self {
        let mastered_delta = match (
            previous == Status::Mastered,
            next.status == Status::Mastered,
        ) {
            (false, true) => 1,
            (true, false) => -1,
            _ => 0,
        };
        Self {
            previous,
            next,
            studied_delta: i32::from(first_review),
            mastered_delta,
            message: message(previous, next.status, quality),
        }
    }
}

/// The message of a review result (HTTP_API.md, "ReviewResult").
pub fn message(previous: Status, next: Status, quality: Quality) -> Option<&'static str> {
    if next == Status::Mastered && previous != Status::Mastered {
        Some("Congratulations! Card mastered!")
    } else if previous == Status::Mastered && next != Status::Mastered {
        Some("Card needs more practice.")
    } else if quality.get() == 5 {
        Some("Perfect!")
    } else if previous == Status::New && quality.get() >= 3 {
        Some("Good start!")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    const TODAY: Date = date!(2026 - 11 - 26);

    fn q(value: i64) -> Quality {
        Quality::new(value).unwrap()
    }

    fn summary(state: &SrsState) -> (f64, i32, i32, Status) {
        (
            state.easiness_factor,
            state.interval,
            state.repetitions,
            state.status,
        )
    }

    #[test]
    fn five_perfect_reviews_then_a_failure_match_the_vectors_bit_for_bit() {
        let mut state = SrsState::initial(TODAY);
        let expected = [
            (2.6_f64, 1, 1, Status::Learning),
            (2.7, 6, 2, Status::Learning),
            (2.8000000000000003, 17, 3, Status::Review),
            (2.9000000000000004, 49, 4, Status::Mastered),
            (3.0000000000000004, 147, 5, Status::Mastered),
        ];
        for want in expected {
            state = review(state, q(5), TODAY);
            let got = summary(&state);
            assert_eq!(
                got.0.to_bits(),
                want.0.to_bits(),
                "ef {} != {}",
                got.0,
                want.0
            );
            assert_eq!((got.1, got.2, got.3), (want.1, want.2, want.3));
        }
        state = review(state, q(1), TODAY);
        assert_eq!(
            state.easiness_factor.to_bits(),
            2.4600000000000004_f64.to_bits()
        );
        assert_eq!(
            (state.interval, state.repetitions, state.status),
            (1, 0, Status::Learning)
        );
    }

    #[test]
    fn one_quality_three_review_of_a_new_card_is_a_good_start() {
        let state = review(SrsState::initial(TODAY), q(3), TODAY);
        assert_eq!(state.easiness_factor.to_bits(), 2.36_f64.to_bits());
        assert_eq!(
            (state.interval, state.repetitions, state.status),
            (1, 1, Status::Learning)
        );
        assert_eq!(
            message(Status::New, state.status, q(3)),
            Some("Good start!")
        );
    }

    #[test]
    fn one_quality_zero_review_of_a_new_card_has_no_message() {
        let state = review(SrsState::initial(TODAY), q(0), TODAY);
        assert_eq!(
            state.easiness_factor.to_bits(),
            1.7000000000000002_f64.to_bits()
        );
        assert_eq!(
            (state.interval, state.repetitions, state.status),
            (1, 0, Status::Learning)
        );
        assert_eq!(message(Status::New, state.status, q(0)), None);
    }

    #[test]
    fn quality_four_with_ef_fixed_at_two_and_a_half_gives_1_6_15_38_95() {
        let mut state = SrsState::initial(TODAY);
        let mut intervals = Vec::new();
        for _ in 0..5 {
            state = review(state, q(4), TODAY);
            assert_eq!(state.easiness_factor.to_bits(), 2.5_f64.to_bits());
            intervals.push(state.interval);
        }
        assert_eq!(intervals, [1, 6, 15, 38, 95]);
    }

    #[test]
    fn fifty_failures_keep_ef_at_the_floor() {
        let mut state = SrsState::initial(TODAY);
        for _ in 0..50 {
            state = review(state, q(0), TODAY);
        }
        assert_eq!(state.easiness_factor.to_bits(), 1.3_f64.to_bits());
        assert_eq!((state.interval, state.repetitions), (1, 0));
    }

    #[test]
    fn interval_uses_round_half_to_even_with_the_new_ef() {
        assert_eq!((6.0 * 2.36_f64).round_ties_even(), 14.0);
        // After a q=3 review (ef 2.36) a second one keeps reps 1 → 6; the third
        // multiplies the previous interval by the new ef.
        let previous = SrsState {
            easiness_factor: 2.5,
            interval: 6,
            repetitions: 2,
            status: Status::Learning,
            next_review_date: TODAY,
        };
        let next = review(previous, q(3), TODAY);
        assert_eq!(next.easiness_factor.to_bits(), 2.36_f64.to_bits());
        assert_eq!(next.interval, 14);
    }

    #[test]
    fn many_perfect_reviews_cap_the_interval_and_keep_the_date_valid() {
        let mut state = SrsState::initial(TODAY);
        for _ in 0..40 {
            state = review(state, q(4), TODAY);
        }
        assert_eq!(state.interval, MAX_INTERVAL_DAYS);
        assert_eq!(state.next_review_date, TODAY + Duration::days(36_500));
    }

    #[test]
    fn next_review_date_is_today_plus_the_interval() {
        let state = review(SrsState::initial(TODAY), q(5), TODAY);
        assert_eq!(state.next_review_date, date!(2026 - 11 - 27));
    }

    #[test]
    fn messages_follow_mastery_transitions_first() {
        assert_eq!(
            message(Status::Review, Status::Mastered, q(5)),
            Some("Congratulations! Card mastered!")
        );
        assert_eq!(
            message(Status::Mastered, Status::Learning, q(1)),
            Some("Card needs more practice.")
        );
        assert_eq!(
            message(Status::Learning, Status::Learning, q(5)),
            Some("Perfect!")
        );
        assert_eq!(
            message(Status::New, Status::Learning, q(5)),
            Some("Perfect!")
        );
        assert_eq!(message(Status::Learning, Status::Review, q(4)), None);
    }

    #[test]
    fn quality_outside_zero_to_five_is_rejected() {
        assert!(Quality::new(-1).is_none());
        assert!(Quality::new(6).is_none());
        assert!(Quality::new(0).is_some() && Quality::new(5).is_some());
        assert_eq!(
            Quality::parse("reviews[0].quality", 6),
            Err(Violation::new(
                "reviews[0].quality",
                "must be between 0 and 5"
            ))
        );
    }

    #[test]
    fn a_review_counts_a_first_study_and_moves_the_mastered_counter_both_ways() {
        let mastered = SrsState {
            easiness_factor: 2.9,
            interval: 49,
            repetitions: 4,
            status: Status::Mastered,
            next_review_date: TODAY,
        };
        let review_state = SrsState {
            status: Status::Review,
            ..mastered
        };

        let first = Reviewed::of(SrsState::initial(TODAY), true, q(4), TODAY);
        let lapse = Reviewed::of(mastered, false, q(1), TODAY);
        let promoted = Reviewed::of(review_state, false, q(5), TODAY);
        let kept = Reviewed::of(mastered, false, q(5), TODAY);

        assert_eq!((first.studied_delta, first.mastered_delta), (1, 0));
        assert_eq!(first.message, Some("Good start!"));
        assert_eq!((lapse.studied_delta, lapse.mastered_delta), (0, -1));
        assert_eq!(lapse.previous, Status::Mastered);
        assert_eq!(promoted.mastered_delta, 1);
        assert_eq!(kept.mastered_delta, 0);
    }
}
