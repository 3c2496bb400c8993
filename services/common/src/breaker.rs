//! The circuit breaker in front of every optional dependency (deck-service's cache
//! Redis, the gateway's rate-limit Redis; docs/resilience.md, "Circuit breakers").
//!
//! After `threshold` consecutive failures the breaker opens: calls are refused at once
//! for `cooldown`. Then it is half-open: one call, the probe, goes through while the
//! others are still refused, and its verdict closes the breaker or opens it again.
//!
//! [`Breaker::call`] runs the guarded work in a task of its own, under the deadline the
//! caller gives, so the verdict does not depend on who waits for it (STYLE.md rule 17).
//! A caller cut before the deadline (a client hanging up, a shorter request timeout)
//! leaves the call to finish, fail or time out, and that counts: a dependency that
//! hangs opens the breaker even when no caller waits as long as the deadline. Running
//! out of the deadline is a failure.
//!
//! Each call holds a [`Permit`] and reports through it. A probe's permit dropped
//! without a verdict (its task cancelled, say at shutdown, or the work panicked) hands
//! the probe to the next call at once: otherwise callers that never let a probe finish
//! would keep the dependency switched off. The breaker only refuses a caller that
//! comes back within the cooldown; it never makes anyone wait.

use std::{
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, Ordering},
    },
    time::{Duration, Instant},
};

use tracing::Instrument;

/// Breaker state, as exported in a gauge (0 closed, 1 open, 2 half-open).
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

/// When a breaker opens and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker (at least 1).
    pub threshold: u32,
    /// How long the open breaker refuses calls before one probe.
    pub cooldown: Duration,
}

/// Why a guarded call gave no value.
#[derive(Debug, thiserror::Error)]
pub enum CallError<E> {
    /// The breaker is open (or half-open with its probe under way): not attempted.
    #[error("circuit breaker open")]
    Open,
    /// The work failed.
    #[error(transparent)]
    Failed(E),
    /// The work did not finish within its deadline.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// The work's task was cancelled before a verdict (the runtime is shutting down).
    #[error("the call was cancelled")]
    Cancelled,
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
    /// (a task parked forever), another probe is allowed after a further cooldown.
    HalfOpen {
        since: Instant,
    },
}

impl State {
    fn exported(&self) -> BreakerState {
        match self {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

/// A circuit breaker; clones share one state.
#[derive(Clone, Debug)]
pub struct Breaker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// What it guards, for the log line of each state change.
    name: &'static str,
    state: Mutex<State>,
    settings: BreakerSettings,
    exported: Arc<AtomicU8>,
}

impl Breaker {
    /// A closed breaker named `name` (in its logs) that mirrors its state into
    /// `exported` (a [`BreakerState`] as `u8`, for a gauge).
    pub fn new(name: &'static str, settings: BreakerSettings, exported: Arc<AtomicU8>) -> Self {
        exported.store(BreakerState::Closed as u8, Ordering::Relaxed);
        Self {
            inner: Arc::new(Inner {
                name,
                state: Mutex::new(State::Closed { failures: 0 }),
                settings: BreakerSettings {
                    threshold: settings.threshold.max(1),
                    cooldown: settings.cooldown,
                },
                exported,
            }),
        }
    }

    /// The state now.
    pub fn state(&self) -> BreakerState {
        BreakerState::from_u8(self.inner.exported.load(Ordering::Relaxed))
    }

    /// Runs `work` unless the breaker refuses it, and records its verdict: a value is a
    /// success; an error, or no answer within `deadline`, a failure. The work runs in a
    /// task of its own (in the caller's tracing span) and keeps running to its verdict
    /// if the caller goes away; it holds whatever it needs (a pooled connection) only
    /// until then, so `deadline` bounds that too.
    pub async fn call<T, E, Fut>(&self, deadline: Duration, work: Fut) -> Result<T, CallError<E>>
    where
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let permit = self.permit().ok_or(CallError::Open)?;
        let guarded = async move {
            match tokio::time::timeout(deadline, work).await {
                Ok(Ok(value)) => {
                    permit.success();
                    Ok(value)
                }
                Ok(Err(error)) => {
                    permit.failure();
                    Err(CallError::Failed(error))
                }
                Err(_) => {
                    permit.failure();
                    Err(CallError::TimedOut(deadline))
                }
            }
        };
        match tokio::spawn(guarded.in_current_span()).await {
            Ok(outcome) => outcome,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => Err(CallError::Cancelled),
        }
    }

    /// Leave to call now, or `None` while the breaker is open.
    fn permit(&self) -> Option<Permit> {
        self.permit_at(Instant::now())
    }

    fn permit_at(&self, now: Instant) -> Option<Permit> {
        let mut state = self.inner.lock();
        let probe = match *state {
            State::Closed { .. } => None,
            State::Open { until } if now >= until => Some(now),
            State::HalfOpen { since } if now >= since + self.inner.settings.cooldown => Some(now),
            State::Open { .. } | State::HalfOpen { .. } => return None,
        };
        if let Some(since) = probe {
            self.inner.set(&mut state, State::HalfOpen { since });
        }
        Some(Permit {
            breaker: self.clone(),
            probe,
            reported: false,
        })
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every critical section below is a plain assignment: a panic cannot leave the
        // state half-written, so a poisoned lock still holds a consistent state.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, state: &mut State, next: State) {
        let exported = next.exported();
        if exported != state.exported() {
            tracing::warn!(breaker = self.name, state = ?exported, "circuit breaker changed state");
        }
        self.exported.store(exported as u8, Ordering::Relaxed);
        *state = next;
    }

    fn success(&self) {
        let mut state = self.lock();
        if !matches!(*state, State::Closed { failures: 0 }) {
            self.set(&mut state, State::Closed { failures: 0 });
        }
    }

    fn failure(&self, now: Instant) {
        let mut state = self.lock();
        let next = match *state {
            State::Closed { failures } if failures + 1 < self.settings.threshold => State::Closed {
                failures: failures + 1,
            },
            _ => State::Open {
                until: now + self.settings.cooldown,
            },
        };
        self.set(&mut state, next);
    }

    /// The probe that started at `since` ended without a verdict: let the next call
    /// probe, unless something else has decided the state meanwhile.
    fn abandon(&self, since: Instant) {
        let mut state = self.lock();
        if matches!(*state, State::HalfOpen { since: current } if current == since) {
            self.set(&mut state, State::Open { until: since });
        }
    }
}

/// Leave to call once; the verdict goes back with [`Permit::success`] or
/// [`Permit::failure`].
#[must_use]
struct Permit {
    breaker: Breaker,
    /// When this call is the half-open probe, the instant it began.
    probe: Option<Instant>,
    reported: bool,
}

impl Permit {
    fn success(mut self) {
        self.reported = true;
        self.breaker.inner.success();
    }

    fn failure(mut self) {
        self.reported = true;
        self.breaker.inner.failure(Instant::now());
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let (Some(since), false) = (self.probe, self.reported) {
            self.breaker.inner.abandon(since);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(cooldown: Duration) -> Breaker {
        Breaker::new(
            "test",
            BreakerSettings {
                threshold: 3,
                cooldown,
            },
            Arc::default(),
        )
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

        // The probe's task goes away before the dependency answers.
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

    #[test]
    fn the_exported_gauge_follows_the_state() {
        let exported = Arc::new(AtomicU8::new(7));
        let breaker = Breaker::new(
            "test",
            BreakerSettings {
                threshold: 1,
                cooldown: Duration::from_secs(60),
            },
            exported.clone(),
        );
        assert_eq!(exported.load(Ordering::Relaxed), 0);
        breaker.permit().unwrap().failure();
        assert_eq!(exported.load(Ordering::Relaxed), 1);
        let _probe = breaker.permit_at(Instant::now() + Duration::from_secs(61));
        assert_eq!(exported.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_call_whose_caller_gives_up_still_counts_when_it_times_out() {
        let breaker = Breaker::new(
            "test",
            BreakerSettings {
                threshold: 1,
                cooldown: Duration::from_secs(60),
            },
            Arc::default(),
        );

        // A dependency that never answers, and a caller that leaves long before the
        // call's deadline.
        let cut = tokio::time::timeout(
            Duration::from_millis(10),
            breaker.call(
                Duration::from_millis(200),
                std::future::pending::<Result<(), ()>>(),
            ),
        )
        .await;
        assert!(cut.is_err(), "the caller was cut first");

        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while breaker.state() != BreakerState::Open {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the timed-out call never opened the breaker"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let refused = breaker.call(Duration::from_secs(1), async { Ok::<_, ()>(()) });
        assert!(matches!(refused.await, Err(CallError::Open)));
    }

    #[tokio::test]
    async fn a_call_reports_its_value_its_error_and_its_timeout() {
        let breaker = Breaker::new(
            "test",
            BreakerSettings {
                threshold: 2,
                cooldown: Duration::from_secs(60),
            },
            Arc::default(),
        );

        let value = breaker
            .call(Duration::from_secs(5), async { Ok::<_, &str>(7) })
            .await;
        let failed = breaker
            .call(Duration::from_secs(5), async { Err::<(), _>("refused") })
            .await;
        let closed_after_one = breaker.state();
        let timed_out = breaker
            .call(
                Duration::from_millis(20),
                std::future::pending::<Result<(), &str>>(),
            )
            .await;

        assert_eq!(value.ok(), Some(7));
        assert!(matches!(failed, Err(CallError::Failed("refused"))));
        assert_eq!(closed_after_one, BreakerState::Closed);
        assert!(matches!(timed_out, Err(CallError::TimedOut(_))));
        assert_eq!(breaker.state(), BreakerState::Open);
    }
}
