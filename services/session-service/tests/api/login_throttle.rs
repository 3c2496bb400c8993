//! The per-account login throttle: failed logins of one e-mail address, from any client
//! address, registered or not, called over gRPC directly (no gateway in front).

use std::time::Duration;

use common::status::reason;
use test_support::RedisServer;
use tonic::{Code, Status};

use crate::helpers::{
    PASSWORD, TestApp, assert_status, refusal_details, spawn_app, spawn_app_with, unique_email,
};

const WRONG: &str = "not-the-password-1";
const FIFTEEN_MINUTES: Duration = Duration::from_secs(900);

/// 25 wrong passwords for `email`, each from another client address and with the
/// address's case changing, then the right password; the answers in order.
async fn twenty_five_failures_then_the_password(app: &TestApp, email: &str) -> Vec<Status> {
    let mut answers = Vec::new();
    for i in 0..25 {
        let spelled = if i % 2 == 0 {
            email.to_uppercase()
        } else {
            email.to_owned()
        };
        let answer = app
            .login_from(&spelled, WRONG, &format!("203.0.113.{i}"))
            .await;
        answers.push(answer.expect_err("a wrong password never logs in"));
    }
    let right = app.login_from(email, PASSWORD, "198.51.100.7").await;
    answers.push(right.expect_err("a locked address is refused even with the right password"));
    answers
}

/// Checks the throttle's pattern and returns the first throttled answer.
fn assert_throttled_by_the_eleventh(answers: &[Status]) -> &Status {
    let codes: Vec<Code> = answers.iter().map(Status::code).collect();
    let first = codes
        .iter()
        .position(|code| *code == Code::ResourceExhausted)
        .unwrap_or_else(|| panic!("never throttled: {codes:?}"));
    assert!(
        first <= 10,
        "throttled only at attempt {}: {codes:?}",
        first + 1
    );
    assert!(
        codes[..first]
            .iter()
            .all(|code| *code == Code::Unauthenticated),
        "{codes:?}"
    );
    assert!(
        codes[first..]
            .iter()
            .all(|code| *code == Code::ResourceExhausted),
        "once throttled, every later attempt is (the lock outlasts the test): {codes:?}"
    );
    for answer in &answers[first..] {
        let (info, delay) = refusal_details(answer);
        assert_eq!(info.as_deref(), Some(reason::LOGIN_THROTTLED));
        let delay = delay.expect("a RetryInfo");
        assert!(
            delay > Duration::ZERO && delay <= FIFTEEN_MINUTES,
            "{delay:?}"
        );
    }
    &answers[first]
}

#[tokio::test]
async fn twenty_five_wrong_passwords_from_25_addresses_are_throttled_by_the_eleventh() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    let hashes_before = app.counter("session_password_hashes_total").await;

    let answers = twenty_five_failures_then_the_password(&app, &email).await;

    let first = assert_throttled_by_the_eleventh(&answers);
    let checked = answers
        .iter()
        .filter(|a| a.code() == Code::Unauthenticated)
        .count() as u64;
    assert_eq!(
        app.counter("session_password_hashes_total").await - hashes_before,
        checked,
        "a throttled attempt checks no password"
    );
    assert_eq!(
        first.message(),
        "too many failed logins for this e-mail address; try again later"
    );
    assert_eq!(
        app.counter("session_login_throttled_total").await,
        answers.len() as u64 - checked
    );
}

#[tokio::test]
async fn an_address_without_an_account_is_throttled_the_same_way_with_the_same_answer() {
    let app = spawn_app().await;
    let registered = unique_email();
    app.register(&registered).await;
    let unknown = unique_email();

    let for_registered = twenty_five_failures_then_the_password(&app, &registered).await;
    let for_unknown = twenty_five_failures_then_the_password(&app, &unknown).await;

    assert_throttled_by_the_eleventh(&for_unknown);
    for (a, b) in for_registered.iter().zip(&for_unknown) {
        assert_eq!(a.code(), b.code());
        assert_eq!(a.message(), b.message());
        let ((info_a, delay_a), (info_b, delay_b)) = (refusal_details(a), refusal_details(b));
        assert_eq!(info_a, info_b);
        // The same lock, seen a few hashes' time apart.
        let (delay_a, delay_b) = (
            delay_a.unwrap_or_default().as_secs_f64(),
            delay_b.unwrap_or_default().as_secs_f64(),
        );
        assert!((delay_a - delay_b).abs() < 20.0, "{delay_a} vs {delay_b}");
    }
}

#[tokio::test]
async fn retry_after_grows_with_repeated_failures_and_is_capped_at_the_window() {
    // Four failures in any 4 s: two free, then locks of 2 s, then 4 s (the cap) each.
    let app = spawn_app_with(
        &[
            ("LOGIN_THROTTLE_MAX_FAILURES", "4"),
            ("LOGIN_THROTTLE_WINDOW_SECONDS", "4"),
        ],
        None,
    )
    .await;
    let email = unique_email();
    app.register(&email).await;
    let window = Duration::from_secs(4);
    let mut delays = Vec::new();
    for _ in 0..2 {
        assert_status(
            app.login(&email, WRONG).await,
            Code::Unauthenticated,
            "Invalid",
        );
    }

    for _ in 0..3 {
        assert_status(
            app.login(&email, WRONG).await,
            Code::Unauthenticated,
            "Invalid",
        );
        let locked = app.login(&email, PASSWORD).await.expect_err("locked");
        assert_eq!(locked.code(), Code::ResourceExhausted, "{locked:?}");
        let delay = refusal_details(&locked).1.expect("a RetryInfo");
        delays.push(delay);
        // Past the lock by the service's clock; the record's Redis TTL (lock + window)
        // has not run out, so the failures keep counting.
        app.clock
            .advance(time::Duration::try_from(delay + Duration::from_millis(100)).unwrap());
    }

    assert!(delays[0] <= window / 2, "{delays:?}");
    assert!(delays[1] > window / 2, "the lock doubled: {delays:?}");
    assert!(
        delays.iter().all(|delay| *delay <= window),
        "never longer than the window: {delays:?}"
    );
    assert!(delays[2] > window / 2, "still at the cap: {delays:?}");
}

#[tokio::test]
async fn a_successful_login_forgets_the_failures_before_it() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    for _ in 0..5 {
        assert_status(
            app.login(&email, WRONG).await,
            Code::Unauthenticated,
            "Invalid",
        );
    }

    app.login(&email, PASSWORD)
        .await
        .expect("the five free failures did not lock");
    let after: Vec<Code> = {
        let mut codes = Vec::new();
        for _ in 0..7 {
            codes.push(app.login(&email, WRONG).await.unwrap_err().code());
        }
        codes
    };

    assert_eq!(
        after,
        [
            [Code::Unauthenticated; 6].as_slice(),
            &[Code::ResourceExhausted]
        ]
        .concat(),
        "the count started again after the success"
    );
}

#[tokio::test]
async fn throttle_records_name_a_hash_of_the_address_never_the_address() {
    let app = spawn_app().await;
    let email = unique_email();

    app.login(&email, WRONG).await.unwrap_err();

    let keys = app.redis_keys().await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        keys[0].starts_with(&format!("{}session:login_failures:{{", app.prefix)),
        "{keys:?}"
    );
    let local_part = email.split('@').next().unwrap();
    assert!(!keys[0].contains(local_part), "{keys:?}");
    let ttl: i64 = app.redis_command(redis::cmd("TTL").arg(&keys[0])).await;
    assert!(
        (890..=900).contains(&ttl),
        "forgotten a window later: {ttl}"
    );
}

#[tokio::test]
async fn without_the_sessions_redis_a_login_is_unavailable_and_checks_no_password() {
    let mut redis = RedisServer::start();
    let app = spawn_app_with(&[], Some(redis.url())).await;
    let email = unique_email();
    app.register(&email).await;
    let hashes_before = app.counter("session_password_hashes_total").await;
    redis.stop();

    let login = app.login(&email, PASSWORD).await;

    assert_status(login, Code::Unavailable, "session store unavailable");
    assert_eq!(
        app.counter("session_password_hashes_total").await,
        hashes_before,
        "the throttle fails closed, before any hashing"
    );
}
