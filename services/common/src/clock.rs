//! Where "now" comes from, and the unix-time conversions every process needs.
//!
//! Production runs on [`SystemClock`]. A service takes its clock as an `Arc<dyn Clock>`,
//! so tests can inject a [`ManualClock`] and move time instead of sleeping: "today" in
//! SM-2 and the study queue (deck-service), token lifetimes, session expiry, grace
//! windows and login locks (session-service), and the time claims of every token
//! ([`crate::auth::TokenValidation`]).
//!
//! What the clock does not move: TTLs that Redis applies on its own clock. Whatever a
//! service decides by time, it decides by its [`Clock`]; a Redis TTL only removes what is
//! past deciding about.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use time::{Date, OffsetDateTime};

/// A source of the current UTC time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;

    /// Today's UTC date.
    fn today(&self) -> Date {
        self.now().date()
    }

    /// Whole seconds since the unix epoch, as tokens count time (`iat`, `exp`).
    fn unix_seconds(&self) -> u64 {
        unix_seconds(self.now())
    }

    /// Milliseconds since the unix epoch, as the Redis scripts count time.
    fn unix_millis(&self) -> u64 {
        unix_millis(self.now())
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

/// Whole seconds from the unix epoch to `at` (0 for an earlier time).
pub fn unix_seconds(at: OffsetDateTime) -> u64 {
    u64::try_from(at.unix_timestamp()).unwrap_or(0)
}

/// Milliseconds from the unix epoch to `at` (0 for an earlier time).
pub fn unix_millis(at: OffsetDateTime) -> u64 {
    u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// Seconds from `now` to the next UTC midnight (at least 1).
pub fn seconds_to_next_midnight(now: OffsetDateTime) -> u64 {
    let next = now
        .date()
        .next_day()
        .map_or(now, |day| day.midnight().assume_utc());
    u64::try_from((next - now).whole_seconds().max(1)).unwrap_or(1)
}

/// A clock that tests move: it stands still until moved ([`ManualClock::new`]), or runs
/// at the system's pace and can be moved ahead ([`ManualClock::running`]). Clones share
/// one time.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<ManualTime>>);

#[derive(Debug)]
struct ManualTime {
    /// The time at `since`, or the time for ever while the clock stands still.
    at: OffsetDateTime,
    /// When the clock runs: the instant at which it read `at`.
    since: Option<std::time::Instant>,
}

impl ManualClock {
    /// A clock that reads `now` until it is moved.
    pub fn new(now: OffsetDateTime) -> Self {
        Self(Arc::new(Mutex::new(ManualTime {
            at: now,
            since: None,
        })))
    }

    /// A clock that starts at the system time and runs with it, so calls made one after
    /// another see time pass as they would in production; [`ManualClock::advance`] jumps
    /// it ahead (a test that would otherwise sleep).
    pub fn running() -> Self {
        Self(Arc::new(Mutex::new(ManualTime {
            at: OffsetDateTime::now_utc(),
            since: Some(std::time::Instant::now()),
        })))
    }

    /// Moves the clock to `now` (a running clock runs on from there).
    pub fn set(&self, now: OffsetDateTime) {
        let mut time = self.lock();
        time.at = now;
        if time.since.is_some() {
            time.since = Some(std::time::Instant::now());
        }
    }

    /// Moves the clock by `by` (forwards for a positive duration).
    pub fn advance(&self, by: time::Duration) {
        self.lock().at += by;
    }

    fn lock(&self) -> MutexGuard<'_, ManualTime> {
        // The guarded value is always whole (plain assignments), so a panic elsewhere
        // while it was held leaves nothing half-set.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        let time = self.lock();
        match time.since {
            Some(since) => time.at + since.elapsed(),
            None => time.at,
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn unix_times_count_from_the_epoch_and_never_go_below_zero() {
        let at = datetime!(2026-03-01 12:00:00.250 UTC);

        assert_eq!(unix_seconds(at), 1_772_366_400);
        assert_eq!(unix_millis(at), 1_772_366_400_250);
        assert_eq!(unix_seconds(datetime!(1969-12-31 23:59:59 UTC)), 0);
        assert_eq!(unix_millis(datetime!(1969-12-31 23:59:59 UTC)), 0);
    }

    #[test]
    fn a_manual_clock_stands_still_until_moved_and_its_clones_move_with_it() {
        let clock = ManualClock::new(datetime!(2026-03-01 23:59:30 UTC));
        let clone = clock.clone();
        let before = clock.now();

        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(clock.now(), before, "stands still");
        clone.advance(time::Duration::seconds(45));

        assert_eq!(clock.now(), datetime!(2026-03-02 00:00:15 UTC));
        assert_eq!(clock.today(), datetime!(2026-03-02 0:00 UTC).date());
        assert_eq!(clock.unix_seconds(), unix_seconds(clock.now()));
    }

    #[test]
    fn a_running_clock_follows_the_system_clock_from_where_it_was_moved() {
        let clock = ManualClock::running();
        let start = clock.now();
        let system = OffsetDateTime::now_utc();
        assert!((system - start).abs() < time::Duration::seconds(5));

        clock.advance(time::Duration::hours(1));
        std::thread::sleep(std::time::Duration::from_millis(20));
        let later = clock.now();

        assert!(later >= start + time::Duration::hours(1) + time::Duration::milliseconds(20));
        assert!(later < start + time::Duration::hours(1) + time::Duration::seconds(60));
        clock.set(datetime!(2026-03-01 0:00 UTC));
        assert!(clock.now() >= datetime!(2026-03-01 0:00 UTC));
        assert!(clock.now() < datetime!(2026-03-01 0:01 UTC));
    }

    #[test]
    fn the_next_midnight_is_at_least_a_second_away() {
        assert_eq!(
            seconds_to_next_midnight(datetime!(2026-03-01 23:59:30 UTC)),
            30
        );
        assert_eq!(
            seconds_to_next_midnight(datetime!(2026-03-01 0:00 UTC)),
            86_400
        );
        assert_eq!(
            seconds_to_next_midnight(datetime!(2026-03-01 23:59:59.999 UTC)),
            1
        );
    }
}
