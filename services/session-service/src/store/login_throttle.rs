//! The per-account login throttle (HTTP_API.md, "Rate limits"), kept in the sessions Redis.
//!
//! Failed logins are counted per e-mail address, whatever client address they come from
//! and whether or not an account has that address, so the answer says nothing about
//! which addresses exist. One key per address, named by a hash of the (lower-cased)
//! address, so Redis never holds an address:
//! `session:login_failures:{<first 16 bytes of SHA-256, hex>}`, a hash of `n` (attempts
//! counted) and `until` (locked until, unix ms); see `lua/login_attempt.lua`.
//!
//! The rules ([`LockSchedule`]): every admitted attempt counts as a failure until it
//! succeeds, and a success forgets the address's failures. With `max_failures` = 10 and
//! a window of 15 minutes, the first 5 failures are free; the 6th locks the address for
//! 56 s, and each later failure for twice as long as the one before, up to 15 minutes
//! from the 10th on. A locked address is refused without any password check. The record
//! is forgotten one window after its last lock ends. So no window of 15 minutes holds
//! more than 10 failures, and `Retry-After` grows with repeated failures but never
//! exceeds the window.

use std::time::Duration;

use common::redis::RedisPool;
use redis::Script;
use sha2::{Digest, Sha256};

use crate::{domain::Email, error::Error};

static LOGIN_ATTEMPT: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(include_str!("lua/login_attempt.lua")));

/// Separates these hashes from any other SHA-256 of an e-mail address.
const KEY_HASH_CONTEXT: &[u8] = b"learngreek.session.v1 login throttle\0";

/// The locks the throttle applies: how long an address is locked after its n-th
/// counted failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockSchedule {
    window: Duration,
    /// Lock after the 1st, 2nd, ... failure; the last applies to every later one too.
    locks: Vec<Duration>,
}

impl LockSchedule {
    /// At most `max_failures` failures in any `window`: the first half of them are
    /// free, each later one locks for twice as long as the one before, and the
    /// `max_failures`-th and every one after it lock for the whole window (the cap).
    pub fn new(max_failures: u32, window: Duration) -> Self {
        let max_failures = max_failures.max(1);
        let free = max_failures / 2;
        let window_ns = window.as_nanos();
        let locks = (1..=max_failures)
            .map(|n| match n {
                n if n <= free => Duration::ZERO,
                n => {
                    let halvings = max_failures - n;
                    let ns = window_ns.checked_shr(halvings).unwrap_or(0);
                    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
                }
            })
            .collect();
        Self { window, locks }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// The lock after the `n`-th counted failure (n from 1).
    pub fn lock_after(&self, n: usize) -> Duration {
        self.locks[n.clamp(1, self.locks.len()) - 1]
    }
}

/// What the throttle says about a login attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead: the attempt is counted.
    Admitted,
    /// The address is locked for this long still; check no password.
    Locked(Duration),
}

/// The throttle's store.
#[derive(Clone, Debug)]
pub struct LoginThrottle {
    redis: RedisPool,
    schedule: LockSchedule,
}

impl LoginThrottle {
    pub fn new(redis: RedisPool, schedule: LockSchedule) -> Self {
        Self { redis, schedule }
    }

    /// `{prefix}session:login_failures:{<hash of the address>}`
    pub fn key(&self, email: &Email) -> String {
        record_key(self.redis.prefix(), email)
    }

    /// Counts an attempt for `email`, or says how long the address is still locked.
    pub async fn admit(&self, email: &Email, now_ms: u64) -> Result<Admission, Error> {
        let mut invocation = LOGIN_ATTEMPT.prepare_invoke();
        invocation
            .key(self.key(email))
            .arg(now_ms)
            .arg(millis(self.schedule.window));
        for lock in &self.schedule.locks {
            invocation.arg(millis(*lock));
        }
        let wait_ms: u64 = self
            .redis
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        Ok(match wait_ms {
            0 => Admission::Admitted,
            ms => Admission::Locked(Duration::from_millis(ms)),
        })
    }

    /// Forgets the failures of `email` (after a successful login).
    pub async fn forgive(&self, email: &Email) -> Result<(), Error> {
        let key = self.key(email);
        self.redis
            .run(|mut connection| async move {
                redis::cmd("DEL")
                    .arg(key)
                    .query_async::<()>(&mut connection)
                    .await
            })
            .await?;
        Ok(())
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn record_key(prefix: &str, email: &Email) -> String {
    let digest = Sha256::new()
        .chain_update(KEY_HASH_CONTEXT)
        .chain_update(email.as_str().as_bytes())
        .finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}session:login_failures:{{{hex}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIFTEEN_MINUTES: Duration = Duration::from_secs(900);

    #[test]
    fn by_default_five_failures_are_free_then_locks_double_up_to_fifteen_minutes() {
        let schedule = LockSchedule::new(10, FIFTEEN_MINUTES);

        let locks: Vec<u64> = (1..=12)
            .map(|n| schedule.lock_after(n).as_millis() as u64)
            .collect();

        assert_eq!(
            locks,
            [
                0, 0, 0, 0, 0, 56_250, 112_500, 225_000, 450_000, 900_000, 900_000, 900_000
            ]
        );
    }

    #[test]
    fn locks_never_shrink_and_never_exceed_the_window() {
        for max_failures in [1, 2, 3, 7, 10, 64, 100] {
            let schedule = LockSchedule::new(max_failures, FIFTEEN_MINUTES);
            let locks: Vec<Duration> = (1..=max_failures as usize + 3)
                .map(|n| schedule.lock_after(n))
                .collect();

            assert!(locks.windows(2).all(|w| w[0] <= w[1]), "{locks:?}");
            assert!(
                locks.iter().all(|lock| *lock <= FIFTEEN_MINUTES),
                "{locks:?}"
            );
            assert_eq!(
                schedule.lock_after(max_failures as usize),
                FIFTEEN_MINUTES,
                "the cap is reached at the most failures allowed ({max_failures})"
            );
        }
    }

    /// Replays `lua/login_attempt.lua`'s rules for an attacker who retries the moment
    /// the address is unlocked, and counts failures in every window.
    #[test]
    fn a_relentless_guesser_gets_at_most_max_failures_into_any_window() {
        for (max_failures, window_ms) in [(10u32, 900_000u64), (1, 1_000), (3, 60_000), (25, 5_000)]
        {
            let schedule = LockSchedule::new(max_failures, Duration::from_millis(window_ms));
            let (mut n, mut forget_at) = (0usize, 0u64);
            let mut failures = Vec::new();
            let mut now = 0u64;
            while now < 20 * window_ms {
                if now >= forget_at {
                    n = 0;
                }
                // Admitted (the guesser never tries while locked: those attempts change nothing).
                n += 1;
                let lock = schedule.lock_after(n).as_millis() as u64;
                forget_at = now + lock + window_ms;
                failures.push(now);
                // The next guess comes the moment the lock ends, or a millisecond later.
                now = (now + lock).max(now + 1);
            }

            let most_in_a_window = failures
                .iter()
                .map(|start| {
                    failures
                        .iter()
                        .filter(|t| **t >= *start && **t < start + window_ms)
                        .count()
                })
                .max()
                .unwrap();
            assert!(
                most_in_a_window <= max_failures as usize,
                "{most_in_a_window} failures in one window with max {max_failures}"
            );
        }
    }

    #[test]
    fn the_key_holds_a_hash_of_the_address_as_its_hash_tag_not_the_address() {
        let email = Email::parse("Maria@Example.com").unwrap();
        let same = Email::parse("maria@example.COM").unwrap();

        let key = record_key("t1:", &email);

        assert_eq!(
            key,
            record_key("t1:", &same),
            "case-insensitive, as accounts are"
        );
        assert!(!key.to_lowercase().contains("maria"), "{key}");
        let tag = key
            .strip_prefix("t1:session:login_failures:{")
            .and_then(|rest| rest.strip_suffix('}'))
            .expect("the documented layout");
        assert_eq!(tag.len(), 32);
        assert!(tag.chars().all(|c| c.is_ascii_hexdigit()), "{tag}");
    }
}
