//! A circuit breaker in front of Redis: after `threshold` consecutive failures calls
//! skip Redis for `cooldown`; then one probe call decides whether to close again.
//!
//! A call holds a [`Permit`] and reports through it. The probe's permit, dropped
//! without a verdict (its caller went away mid-call), hands the probe to the next
//! caller at once: otherwise a client that hangs up during every probe would keep
//! the cache switched off.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, Ordering},
    },
    time::{Duration, Instant},
};

use common::sync::MutexExt;

/// Breaker state as exported in the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum BreakerState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl BreakerState {
    pub fn from_u8(value: u8) -> Self {
        match value {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }
}

#[derive(Debug)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// A probe is in flight since `since`. Should it neither report nor be dropped
    /// (a future parked unpolled), another probe is allowed after a further cool-down.
    HalfOpen {
        since: Instant,
    },
}

#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    cooldown: Duration,
    exported: Arc<AtomicU8>,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration, exported: Arc<AtomicU8>) -> Self {
        Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            threshold: threshold.max(1),
            cooldown,
            exported,
        }
    }

    fn set(&self, state: &mut State, next: State) {
        let exported = match next {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        };
        if exported != BreakerState::from_u8(self.exported.load(Ordering::Relaxed)) {
            tracing::warn!(state = ?exported, "cache Redis circuit breaker");
        }
        self.exported.store(exported as u8, Ordering::Relaxed);
        *state = next;
    }

    /// A permit to call Redis now, or `None` while the breaker is open.
    pub fn permit(&self) -> Option<Permit<'_>> {
        self.permit_at(Instant::now())
    }

    fn permit_at(&self, now: Instant) -> Option<Permit<'_>> {
        let mut state = self.state.lock_unpoisoned();
        let probe = match *state {
            State::Closed { .. } => None,
            State::Open { until } if now >= until => Some(now),
            State::HalfOpen { since } if now >= since + self.cooldown => Some(now),
            State::Open { .. } | State::HalfOpen { .. } => return None,
        };
        if let Some(since) = probe {
            self.set(&mut state, State::HalfOpen { since });
        }
        Some(Permit {
            breaker: self,
            probe,
            reported: false,
        })
    }

    fn success(&self) {
        let mut state = self.state.lock_unpoisoned();
        if !matches!(*state, State::Closed { failures: 0 }) {
            self.set(&mut state, State::Closed { failures: 0 });
        }
    }

    fn failure(&self, now: Instant) {
        let mut state = self.state.lock_unpoisoned();
        let next = match *state {
            State::Closed { failures } if failures + 1 < self.threshold => State::Closed {
                failures: failures + 1,
            },
            _ => State::Open {
                until: now + self.cooldown,
            },
        };
        self.set(&mut state, next);
    }

    /// The probe that started at `since` ended without a verdict: let the next call
    /// probe, unless something else has decided the state meanwhile.
    fn abandon(&self, since: Instant) {
        let mut state = self.state.lock_unpoisoned();
        if matches!(*state, State::HalfOpen { since: current } if current == since) {
            self.set(&mut state, State::Open { until: since });
        }
    }

    pub fn state(&self) -> BreakerState {
        BreakerState::from_u8(self.exported.load(Ordering::Relaxed))
    }
}

/// Leave to call Redis once; report how it went with [`Permit::success`] or
/// [`Permit::failure`].
#[must_use]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    /// When this call is the half-open probe, the instant it began.
    probe: Option<Instant>,
    reported: bool,
}

impl Permit<'_> {
    pub fn success(mut self) {
        self.reported = true;
        self.breaker.success();
    }

    pub fn failure(mut self) {
        self.reported = true;
        self.breaker.failure(Instant::now());
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let (Some(since), false) = (self.probe, self.reported) {
            self.breaker.abandon(since);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(cooldown: Duration) -> Breaker {
        Breaker::new(3, cooldown, Arc::default())
    }

    fn fail(breaker: &Breaker, times: usize) {
        for _ in 0..times {
            breaker.permit().expect("closed").failure();
        }
    }

    #[test]
    fn opens_after_threshold_consecutive_failures_only() {
        let breaker = breaker(Duration::from_secs(60));
        fail(&breaker, 2);
        breaker.permit().unwrap().success();
        fail(&breaker, 2);
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.permit().expect("still closed").failure();
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.permit().is_none());
    }

    #[test]
    fn after_the_cooldown_one_probe_decides() {
        let breaker = breaker(Duration::from_secs(60));
        fail(&breaker, 3);
        let later = Instant::now() + Duration::from_secs(61);

        let probe = breaker
            .permit_at(later)
            .expect("probe allowed after cooldown");
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(breaker.permit_at(later).is_none(), "one probe at a time");
        probe.success();
        assert_eq!(breaker.state(), BreakerState::Closed);

        fail(&breaker, 3);
        let later = Instant::now() + Duration::from_secs(61);
        breaker.permit_at(later).unwrap().failure();
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn a_probe_dropped_without_a_verdict_lets_the_next_call_probe_at_once() {
        let breaker = breaker(Duration::from_secs(60));
        fail(&breaker, 3);
        let later = Instant::now() + Duration::from_secs(61);

        // The probe's caller goes away before Redis answers.
        drop(breaker.permit_at(later).expect("probe"));

        let next = breaker.permit_at(later);
        assert!(
            next.is_some(),
            "the next call probes without another cooldown"
        );
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
    }

    #[test]
    fn an_abandoned_probe_does_not_undo_a_later_verdict() {
        let breaker = breaker(Duration::from_secs(60));
        fail(&breaker, 3);
        let later = Instant::now() + Duration::from_secs(61);
        let first = breaker.permit_at(later).expect("probe");
        // Stuck long enough for a second probe, which closes the breaker.
        let much_later = later + Duration::from_secs(61);
        breaker
            .permit_at(much_later)
            .expect("second probe")
            .success();

        drop(first);

        assert_eq!(breaker.state(), BreakerState::Closed);
    }
}
