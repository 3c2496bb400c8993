//! Where "now" comes from. Production uses the system clock; tests inject a clock they
//! can move, so "today" in SM-2 and the study queue is under their control.

use std::sync::{Arc, Mutex};

use time::{Date, OffsetDateTime};

/// A source of the current UTC time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;

    /// Today's UTC date.
    fn today(&self) -> Date {
        self.now().date()
    }
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that stands still until moved (tests).
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<OffsetDateTime>>);

impl ManualClock {
    pub fn new(now: OffsetDateTime) -> Self {
        Self(Arc::new(Mutex::new(now)))
    }

    pub fn set(&self, now: OffsetDateTime) {
        *self.0.lock().expect("clock lock") = now;
    }

    pub fn advance(&self, by: time::Duration) {
        *self.0.lock().expect("clock lock") += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().expect("clock lock")
    }
}

/// Seconds from `now` to the next UTC midnight (at least 1).
pub fn seconds_to_next_midnight(now: OffsetDateTime) -> u64 {
    let next = now
        .date()
        .next_day()
        .map_or(now, |day| day.midnight().assume_utc());
    (next - now).whole_seconds().max(1) as u64
}
