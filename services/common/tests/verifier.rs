//! The access-token verifier's key fetching (`common::auth`): one fetch shared by every
//! caller, independent of the caller that started it, throttled only after a success,
//! and the verified-token cache following the key set. The key set comes from an
//! injected fetcher, the verifier's own seam (the gateway's real one calls
//! session-service; `tests/tests/key_fetch.rs` covers that path end to end).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use base64::Engine;
use common::auth::{
    AccessVerifier, AuthError, FETCH_TIMEOUT, KeyFetcher, PublicJwk, REFETCH_INTERVAL,
};
use test_support::TestTokens;
use tokio::sync::Semaphore;
use uuid::Uuid;

/// What one fetch answers.
type Answer = Result<Vec<PublicJwk>, String>;

/// A fetcher that answers each call with the next planned answer (the last one
/// repeats), after passing `gate`; it counts its calls and marks each finished one.
#[derive(Clone)]
struct Fetcher {
    calls: Arc<AtomicUsize>,
    finished: Arc<AtomicUsize>,
    plan: Arc<Mutex<Vec<Answer>>>,
    gate: Arc<Semaphore>,
}

impl Fetcher {
    /// Answers at once.
    fn open(plan: Vec<Answer>) -> Self {
        let fetcher = Self::gated(plan);
        fetcher.open_gate();
        fetcher
    }

    /// Waits for [`Fetcher::open_gate`] before answering.
    fn gated(plan: Vec<Answer>) -> Self {
        Self {
            calls: Arc::default(),
            finished: Arc::default(),
            plan: Arc::new(Mutex::new(plan)),
            gate: Arc::new(Semaphore::new(0)),
        }
    }

    fn open_gate(&self) {
        self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn finished(&self) -> usize {
        self.finished.load(Ordering::SeqCst)
    }

    fn key_fetcher(&self) -> KeyFetcher {
        let this = self.clone();
        Arc::new(move || {
            let this = this.clone();
            this.calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                let _pass = this.gate.acquire().await.expect("gate open");
                let answer = {
                    let mut plan = this.plan.lock().unwrap();
                    if plan.len() > 1 {
                        plan.remove(0)
                    } else {
                        plan[0].clone()
                    }
                };
                this.finished.fetch_add(1, Ordering::SeqCst);
                answer
            })
        })
    }

    fn verifier(&self) -> AccessVerifier {
        let tokens = TestTokens::new();
        AccessVerifier::with_fetcher(self.key_fetcher(), &tokens.issuer, &tokens.audience)
    }
}

/// Waits (at most 10 s) until `condition` holds.
async fn until(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `token` with its header's `kid` replaced by one no key set has.
fn with_unknown_kid(token: &str) -> String {
    let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": "no-such-kid"});
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header.to_string());
    let (_, rest) = token.split_once('.').expect("a JWT has dots");
    format!("{header}.{rest}")
}

#[tokio::test]
async fn concurrent_first_verifications_all_wait_for_the_one_fetch() {
    // Arrange: a fetch that holds until released.
    let tokens = TestTokens::new();
    let fetcher = Fetcher::gated(vec![Ok(vec![tokens.public_jwk()])]);
    let verifier = fetcher.verifier();

    // Act: 50 callers arrive while the key set is still being fetched.
    let callers: Vec<_> = (0..50)
        .map(|_| {
            let verifier = verifier.clone();
            let token = tokens.access_token(Uuid::new_v4(), false);
            tokio::spawn(async move { verifier.verify(&token).await })
        })
        .collect();
    until("the fetch starts", || fetcher.calls() == 1).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    fetcher.open_gate();

    // Assert: every one was verified, by one fetch.
    for caller in callers {
        assert!(caller.await.unwrap().is_ok());
    }
    assert_eq!(fetcher.calls(), 1);
}

#[tokio::test]
async fn a_fetch_whose_caller_gives_up_still_completes_and_serves_the_next_caller() {
    // Arrange: the first caller starts the fetch, then goes away mid-fetch.
    let tokens = TestTokens::new();
    let fetcher = Fetcher::gated(vec![Ok(vec![tokens.public_jwk()])]);
    let verifier = fetcher.verifier();
    let first = {
        let verifier = verifier.clone();
        let token = tokens.access_token(Uuid::new_v4(), false);
        tokio::spawn(async move { verifier.verify(&token).await })
    };
    until("the fetch starts", || fetcher.calls() == 1).await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());

    // Act: the fetch is let through with nobody waiting for it.
    fetcher.open_gate();
    until("the abandoned fetch finishes", || fetcher.finished() == 1).await;
    let next = verifier
        .verify(&tokens.access_token(Uuid::new_v4(), false))
        .await;

    // Assert: the next caller is served by the keys that fetch brought.
    assert!(next.is_ok(), "{next:?}");
    assert_eq!(fetcher.calls(), 1);
}

#[tokio::test]
async fn a_failed_fetch_answers_unavailable_and_does_not_start_the_throttle() {
    // Arrange: session-service fails once, then answers.
    let tokens = TestTokens::new();
    let fetcher = Fetcher::open(vec![
        Err("session-service unavailable".into()),
        Ok(vec![tokens.public_jwk()]),
    ]);
    let verifier = fetcher.verifier();
    let token = tokens.access_token(Uuid::new_v4(), false);

    // Act
    let during_outage = verifier.verify(&token).await;
    let after = verifier.verify(&token).await;

    // Assert: a valid token is never "invalid" for want of keys, and the retry came at once.
    assert_eq!(during_outage, Err(AuthError::KeysUnavailable));
    assert!(after.is_ok(), "{after:?}");
    assert_eq!(fetcher.calls(), 2);
}

#[tokio::test]
async fn after_a_successful_fetch_unknown_kids_are_refused_without_refetching() {
    // Arrange
    let tokens = TestTokens::new();
    let fetcher = Fetcher::open(vec![Ok(vec![tokens.public_jwk()])]);
    let verifier = fetcher.verifier();
    let token = tokens.access_token(Uuid::new_v4(), false);
    assert!(verifier.verify(&token).await.is_ok());

    // Act: garbage with made-up kids, within the throttle interval.
    let mut verdicts = Vec::new();
    for _ in 0..20 {
        verdicts.push(verifier.verify(&with_unknown_kid(&token)).await);
    }

    // Assert
    assert!(
        verdicts.iter().all(|v| *v == Err(AuthError::Invalid)),
        "{verdicts:?}"
    );
    assert_eq!(fetcher.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_withdrawn_keys_cached_tokens_are_refused_after_a_refetch() {
    // Arrange: keys A and B are published, a token signed by B is verified (and cached),
    // then B is withdrawn from the published set.
    let (a, b) = (TestTokens::new(), TestTokens::untrusted());
    let fetcher = Fetcher::open(vec![
        Ok(vec![a.public_jwk(), b.public_jwk()]),
        Ok(vec![a.public_jwk()]),
    ]);
    let verifier = fetcher.verifier();
    let token_a = a.access_token(Uuid::new_v4(), false);
    let token_b = b.access_token(Uuid::new_v4(), false);
    assert!(verifier.verify(&token_b).await.is_ok());
    assert!(verifier.verify(&token_b).await.is_ok());

    // Act: past the throttle, an unknown kid makes the verifier refetch.
    tokio::time::advance(REFETCH_INTERVAL + Duration::from_secs(1)).await;
    let unknown = verifier.verify(&with_unknown_kid(&token_a)).await;

    // Assert
    assert_eq!(unknown, Err(AuthError::Invalid));
    assert_eq!(fetcher.calls(), 2);
    assert_eq!(verifier.verify(&token_b).await, Err(AuthError::Invalid));
    assert!(verifier.verify(&token_a).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_fetch_that_never_answers_is_given_up_after_the_fetch_timeout() {
    // Arrange: a fetch that hangs until the gate opens (never, for the first one).
    let tokens = TestTokens::new();
    let fetcher = Fetcher::gated(vec![Ok(vec![tokens.public_jwk()])]);
    let verifier = fetcher.verifier();
    let token = tokens.access_token(Uuid::new_v4(), false);

    // Act
    let started = tokio::time::Instant::now();
    let hung = verifier.verify(&token).await;
    let waited = started.elapsed();
    fetcher.open_gate();
    let retried = verifier.verify(&token).await;

    // Assert: the waiter got "unavailable" once the fetch timed out, and the next
    // caller started a fresh fetch (a timeout does not start the throttle either).
    assert_eq!(hung, Err(AuthError::KeysUnavailable));
    assert!(waited >= FETCH_TIMEOUT, "{waited:?}");
    assert!(retried.is_ok(), "{retried:?}");
    assert_eq!(fetcher.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn prefetch_keeps_trying_until_the_keys_are_there_before_the_first_request() {
    // Arrange: session-service is down for the first two attempts.
    let tokens = TestTokens::new();
    let fetcher = Fetcher::open(vec![
        Err("connection refused".into()),
        Err("connection refused".into()),
        Ok(vec![tokens.public_jwk()]),
    ]);
    let verifier = fetcher.verifier();

    // Act
    verifier.prefetch();
    until("the prefetch succeeds", || fetcher.finished() == 3).await;
    let first = verifier
        .verify(&tokens.access_token(Uuid::new_v4(), false))
        .await;

    // Assert: the first request found the keys in place and fetched nothing itself.
    assert!(first.is_ok(), "{first:?}");
    assert_eq!(fetcher.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn prefetch_stops_once_the_verifier_is_dropped() {
    // Arrange: session-service never answers.
    let fetcher = Fetcher::open(vec![Err("connection refused".into())]);
    let verifier = fetcher.verifier();
    verifier.prefetch();
    until("the first attempt", || fetcher.finished() >= 1).await;

    // Act
    drop(verifier);
    let calls = fetcher.calls();
    tokio::time::sleep(Duration::from_secs(60)).await;

    // Assert: at most the attempt already due, not one every few seconds.
    assert!(
        fetcher.calls() <= calls + 1,
        "{} calls after the drop",
        fetcher.calls() - calls
    );
}
