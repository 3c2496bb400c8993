//! session-service's login protections as the HTTP API shows them (HTTP_API.md, "Rate
//! limits" and the status table): the real three processes, the gateway's per-IP limit
//! raised out of the way. A login throttled per e-mail address is 429
//! RATE_LIMIT_EXCEEDED with `Retry-After`; a full password-hashing queue is 503
//! SERVICE_UNAVAILABLE with `Retry-After`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

use serde_json::json;
use test_support::{
    http::HttpResponse,
    stack::{Stack, StackOptions, spawn_stack_with},
};

const WRONG: &str = "not-the-password-1";

fn options(session_env: Vec<(&'static str, String)>) -> StackOptions {
    StackOptions {
        gateway_env: vec![("RATE_LIMIT_AUTH_PER_MINUTE", "1000000".to_owned())],
        session_env,
        ..StackOptions::default()
    }
}

async fn login(stack: &Stack, email: &str, password: &str) -> HttpResponse {
    stack
        .http
        .post("/api/v1/auth/login")
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
}

fn retry_after(response: &HttpResponse) -> u64 {
    response
        .header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {}", response.text()))
        .parse()
        .expect("Retry-After in whole seconds")
}

/// Wrong passwords for `email` until the first refusal that is not a 401.
async fn fail_until_refused(stack: &Stack, email: &str) -> (usize, HttpResponse) {
    for failures in 0..11 {
        let response = login(stack, email, WRONG).await;
        if response.status != 401 {
            return (failures, response);
        }
    }
    panic!("eleven failures for {email} and still no throttle");
}

#[tokio::test]
async fn a_throttled_login_is_429_rate_limit_exceeded_with_retry_after_for_any_address() {
    let stack = spawn_stack_with(options(Vec::new())).await;
    let registered = format!("throttled-{}@example.com", uuid::Uuid::new_v4().simple());
    stack.register(&registered, "password1", "Throttled").await;
    let unknown = format!("nobody-{}@example.com", uuid::Uuid::new_v4().simple());

    let (failures, refused) = fail_until_refused(&stack, &registered).await;
    let (unknown_failures, unknown_refused) = fail_until_refused(&stack, &unknown).await;
    let right_password = login(&stack, &registered, "password1").await;

    assert!(failures <= 10, "{failures} failures before the throttle");
    assert_eq!(refused.status, 429, "{}", refused.text());
    let body = refused.json();
    assert_eq!(body["code"], "RATE_LIMIT_EXCEEDED");
    assert_eq!(
        body["detail"],
        "too many failed logins for this e-mail address; try again later"
    );
    // The first lock (56.25 s by default) in whole seconds, rounded up.
    let wait = retry_after(&refused);
    assert!((45..=57).contains(&wait), "Retry-After {wait}");
    assert_eq!(
        unknown_failures, failures,
        "the same budget for an unknown address"
    );
    assert_eq!(unknown_refused.status, 429);
    assert_eq!(unknown_refused.json()["detail"], body["detail"]);
    assert!(retry_after(&unknown_refused).abs_diff(wait) <= 10);
    assert_eq!(
        right_password.status, 429,
        "a locked address is refused even with the right password"
    );
}

#[tokio::test]
async fn a_full_password_hashing_queue_is_503_with_retry_after() {
    // One hashing thread and no queue: of logins arriving together, one is hashed.
    let stack = spawn_stack_with(options(vec![
        ("PASSWORD_HASH_CONCURRENCY", "1".to_owned()),
        ("PASSWORD_HASH_QUEUE", "0".to_owned()),
    ]))
    .await;

    let mut burst = tokio::task::JoinSet::new();
    for i in 0..20 {
        let http = stack.http.clone();
        burst.spawn(async move {
            http.post("/api/v1/auth/login")
                .json(&json!({"email": format!("burst{i}@example.com"), "password": WRONG}))
                .send()
                .await
        });
    }
    let answers = burst.join_all().await;

    let overloaded: Vec<&HttpResponse> = answers.iter().filter(|r| r.status == 503).collect();
    assert!(
        !overloaded.is_empty(),
        "statuses: {:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(
        answers.iter().all(|r| matches!(r.status, 401 | 503)),
        "every other login was checked: {:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for response in overloaded {
        assert_eq!(response.json()["code"], "SERVICE_UNAVAILABLE");
        assert_eq!(retry_after(response), 1);
    }
}
