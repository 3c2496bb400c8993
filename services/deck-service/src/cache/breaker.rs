//! A circuit breaker in front of Redis: after `threshold` consecutive failures calls
//! skip Redis for `cooldown`; then one probe call decides whether to close again.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, Ordering},
    },
    time::{Duration, Instant},
};

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
    /// A probe is in flight since `since`; if it never reports (its caller was
    /// cancelled), another probe is allowed after a further cool-down.
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

    /// Whether a call may go to Redis now.
    pub fn allow(&self) -> bool {
        let mut state = self.state.lock().expect("breaker lock");
        let now = Instant::now();
        match *state {
            State::Closed { .. } => true,
            State::Open { until } if now >= until => {
                self.set(&mut state, State::HalfOpen { since: now });
                true
            }
            State::HalfOpen { since } if now >= since + self.cooldown => {
                self.set(&mut state, State::HalfOpen { since: now });
                true
            }
            State::Open { .. } | State::HalfOpen { .. } => false,
        }
    }

    pub fn success(&self) {
        let mut state = self.state.lock().expect("breaker lock");
        if !matches!(*state, State::Closed { failures: 0 }) {
            self.set(&mut state, State::Closed { failures: 0 });
        }
    }

    pub fn failure(&self) {
        let mut state = self.state.lock().expect("breaker lock");
        let now = Instant::now();
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

    pub fn state(&self) -> BreakerState {
        BreakerState::from_u8(self.exported.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(cooldown: Duration) -> Breaker {
        Breaker::new(3, cooldown, Arc::default())
    }

    #[test]
    fn opens_after_threshold_consecutive_failures_only() {
        let breaker = breaker(Duration::from_secs(60));
        breaker.failure();
        breaker.failure();
        breaker.success();
        breaker.failure();
        breaker.failure();
        assert!(breaker.allow());
        breaker.failure();
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(!breaker.allow());
    }

    #[test]
    fn after_the_cooldown_one_probe_decides() {
        let breaker = breaker(Duration::from_millis(0));
        for _ in 0..3 {
            breaker.failure();
        }
        assert!(breaker.allow(), "probe allowed after cooldown");
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        breaker.success();
        assert_eq!(breaker.state(), BreakerState::Closed);

        for _ in 0..3 {
            breaker.failure();
        }
        assert!(breaker.allow());
        breaker.failure();
        assert_eq!(breaker.state(), BreakerState::Open);
    }
}
