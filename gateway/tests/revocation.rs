//! Ended sessions end their access tokens (HTTP_API.md, Conventions): the real binaries
//! on real PostgreSQL and Redis. After each revoking call, the affected access tokens —
//! already in the verification cache — are refused with 401 TOKEN_REVOKED by the
//! gateway's routes (`GET /auth/me`, `GET /decks`) and by deck-service itself, within
//! 1 s of the call's answer; other sessions and other users keep working.
//!
//! Needs the service binaries built (`make test` builds the workspace). The Redis Cluster
//! pass of `make test` runs this binary too.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

use std::time::{Duration, Instant};

use proto::deck::v1::{ListDecksRequest, deck_service_client::DeckServiceClient};
use serde_json::{Value, json};
use test_support::{
    RedisServer, ServiceProcess,
    http::{HttpClient, HttpResponse},
    stack::{Stack, StackOptions, spawn_stack, spawn_stack_with},
};

const PASSWORD: &str = "correct horse 42";
/// The contract's bound on a revocation's delay (HTTP_API.md).
const WITHIN: Duration = Duration::from_secs(1);

fn unique_email() -> String {
    format!(
        "u{}@example.com",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

fn access(pair: &Value) -> String {
    pair["access_token"].as_str().unwrap().to_owned()
}

async fn me(http: &HttpClient, token: &str) -> HttpResponse {
    http.get("/api/v1/auth/me").bearer(token).send().await
}

async fn decks(http: &HttpClient, token: &str) -> HttpResponse {
    http.get("/api/v1/decks").bearer(token).send().await
}

/// The gRPC code and ErrorInfo reason deck-service answers `ListDecks` with.
async fn deck_service_verdict(deck: &ServiceProcess, token: &str) -> Result<(), String> {
    use tonic_types::StatusExt;
    let mut client = DeckServiceClient::connect(format!("http://{}", deck.grpc_addr))
        .await
        .expect("connect to deck-service");
    let mut request = tonic::Request::new(ListDecksRequest::default());
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    match client.list_decks(request).await {
        Ok(_) => Ok(()),
        Err(status) => Err(format!(
            "{:?} {}",
            status.code(),
            status
                .get_details_error_info()
                .map(|info| info.reason)
                .unwrap_or_default()
        )),
    }
}

fn assert_revoked(response: &HttpResponse, what: &str) {
    assert_eq!(response.status, 401, "{what}: {}", response.text());
    assert_eq!(response.json()["code"], "TOKEN_REVOKED", "{what}");
    assert_eq!(
        response.header("www-authenticate"),
        Some("Bearer"),
        "{what}"
    );
}

/// Polls `GET /auth/me` with `token` until it is refused; the time from `since` to the
/// first refusal. Panics if that takes longer than [`WITHIN`].
async fn first_refusal(http: &HttpClient, token: &str, since: Instant) -> Duration {
    loop {
        let response = me(http, token).await;
        if response.status != 200 {
            assert_revoked(&response, "GET /auth/me");
            return since.elapsed();
        }
        assert!(
            since.elapsed() < WITHIN,
            "the token still works {:?} after the revoking call answered",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Asserts `token` is refused everywhere within [`WITHIN`] of `since`: the gateway's
/// `GET /auth/me` and `GET /decks`, and deck-service's own check.
async fn assert_refused_everywhere(stack: &Stack, token: &str, since: Instant) {
    first_refusal(&stack.http, token, since).await;
    assert_revoked(&decks(&stack.http, token).await, "GET /decks");
    assert_eq!(
        deck_service_verdict(&stack.deck, token).await,
        Err("Unauthenticated TOKEN_REVOKED".to_owned())
    );
}

/// Asserts `token` works on both routes and on deck-service (and so sits in every
/// verification cache).
async fn assert_works(stack: &Stack, token: &str) {
    assert_eq!(me(&stack.http, token).await.status, 200);
    assert_eq!(decks(&stack.http, token).await.status, 200);
    assert_eq!(deck_service_verdict(&stack.deck, token).await, Ok(()));
}

/// A user with two sessions, and another user; every token checked (and cached) once.
struct Users {
    email: String,
    first: Value,
    second: Value,
    other: Value,
}

async fn users(stack: &Stack) -> Users {
    let email = unique_email();
    let first = stack.register(&email, PASSWORD, "Ελένη").await;
    let second = stack.login(&email, PASSWORD).await;
    let other = stack.register(&unique_email(), PASSWORD, "Νίκος").await;
    for pair in [&first, &second, &other] {
        assert_works(stack, &access(pair)).await;
    }
    Users {
        email,
        first,
        second,
        other,
    }
}

#[tokio::test]
async fn logout_ends_the_sessions_access_tokens_on_both_services_within_a_second() {
    let stack = spawn_stack().await;
    let users = users(&stack).await;

    let response = stack
        .http
        .post("/api/v1/auth/logout")
        .bearer(&access(&users.first))
        .json(&json!({"refresh_token": users.first["refresh_token"]}))
        .send()
        .await;
    let answered = Instant::now();

    assert_eq!(response.status, 200, "{}", response.text());
    assert_refused_everywhere(&stack, &access(&users.first), answered).await;
    assert_works(&stack, &access(&users.second)).await;
    assert_works(&stack, &access(&users.other)).await;
}

#[tokio::test]
async fn deleting_a_session_ends_its_access_tokens_within_a_second() {
    let stack = spawn_stack().await;
    let users = users(&stack).await;
    let listed = stack
        .http
        .get("/api/v1/auth/sessions")
        .bearer(&access(&users.second))
        .send()
        .await
        .json();
    let first_id = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|session| session["current"] == false)
        .expect("the other session is listed")["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let response = stack
        .http
        .delete(&format!("/api/v1/auth/sessions/{first_id}"))
        .bearer(&access(&users.second))
        .send()
        .await;
    let answered = Instant::now();

    assert_eq!(response.status, 200, "{}", response.text());
    assert_refused_everywhere(&stack, &access(&users.first), answered).await;
    assert_works(&stack, &access(&users.second)).await;
    assert_works(&stack, &access(&users.other)).await;
}

#[tokio::test]
async fn logout_all_ends_every_access_token_of_the_user_within_a_second() {
    let stack = spawn_stack().await;
    let users = users(&stack).await;

    let response = stack
        .http
        .post("/api/v1/auth/logout-all")
        .bearer(&access(&users.first))
        .send()
        .await;
    let answered = Instant::now();

    assert_eq!(response.status, 200, "{}", response.text());
    assert_refused_everywhere(&stack, &access(&users.first), answered).await;
    assert_refused_everywhere(&stack, &access(&users.second), answered).await;
    assert_works(&stack, &access(&users.other)).await;
    // A login after the answer is a new start, not refused by the revocation.
    let again = stack.login(&users.email, PASSWORD).await;
    assert_works(&stack, &access(&again)).await;
}

#[tokio::test]
async fn reuse_detection_ends_the_sessions_access_tokens_within_a_second() {
    let stack = spawn_stack_with(StackOptions {
        session_env: vec![("REFRESH_GRACE_SECONDS", "0".to_owned())],
        ..StackOptions::default()
    })
    .await;
    let users = users(&stack).await;
    let refresh = |token: Value| {
        let http = stack.http.clone();
        async move {
            http.post("/api/v1/auth/refresh")
                .json(&json!({"refresh_token": token}))
                .send()
                .await
        }
    };
    let rotated = refresh(users.first["refresh_token"].clone()).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let rotated = rotated.json();
    assert_works(&stack, &access(&rotated)).await;

    let replay = refresh(users.first["refresh_token"].clone()).await;
    let answered = Instant::now();

    assert_eq!(replay.status, 401, "{}", replay.text());
    assert_refused_everywhere(&stack, &access(&users.first), answered).await;
    assert_refused_everywhere(&stack, &access(&rotated), answered).await;
    assert_works(&stack, &access(&users.second)).await;
    assert_works(&stack, &access(&users.other)).await;
}

#[tokio::test]
async fn deactivation_and_a_superuser_flag_change_end_the_users_tokens_within_a_second() {
    let stack = spawn_stack().await;
    let demoted = users(&stack).await;
    let deactivated = users(&stack).await;
    stack.make_superuser(&demoted.email).await;
    let admin = stack.login(&demoted.email, PASSWORD).await;
    assert_works(&stack, &access(&admin)).await;

    stack.change_user("remove-superuser", &demoted.email).await;
    let demoted_at = Instant::now();
    assert_refused_everywhere(&stack, &access(&admin), demoted_at).await;
    stack
        .change_user("deactivate-user", &deactivated.email)
        .await;
    let deactivated_at = Instant::now();
    assert_refused_everywhere(&stack, &access(&deactivated.first), deactivated_at).await;
    assert_refused_everywhere(&stack, &access(&deactivated.second), deactivated_at).await;

    assert_works(&stack, &access(&demoted.other)).await;
    assert_works(&stack, &access(&deactivated.other)).await;
    let again = stack.login(&demoted.email, PASSWORD).await;
    assert_eq!(
        me(&stack.http, &access(&again)).await.json()["is_superuser"],
        false
    );
}

#[tokio::test]
async fn a_rotated_sessions_previous_access_token_keeps_working() {
    let stack = spawn_stack().await;
    let users = users(&stack).await;

    let rotated = stack
        .http
        .post("/api/v1/auth/refresh")
        .json(&json!({"refresh_token": users.first["refresh_token"]}))
        .send()
        .await;

    assert_eq!(rotated.status, 200, "{}", rotated.text());
    tokio::time::sleep(WITHIN).await;
    assert_works(&stack, &access(&users.first)).await;
    assert_works(&stack, &access(&rotated.json())).await;
}

#[tokio::test]
async fn a_revocation_through_one_replica_is_enforced_by_every_replica() {
    let stack = spawn_stack().await;
    let gateway = stack.spawn_gateway_replica(&[]).await;
    let second_http = HttpClient::new(gateway.listeners["HTTP"].clone());
    let deck = stack.spawn_deck_replica().await;
    let users = users(&stack).await;
    let token = access(&users.first);
    assert_eq!(me(&second_http, &token).await.status, 200);
    assert_eq!(deck_service_verdict(&deck, &token).await, Ok(()));

    let response = stack
        .http
        .post("/api/v1/auth/logout")
        .bearer(&token)
        .json(&json!({"refresh_token": users.first["refresh_token"]}))
        .send()
        .await;
    let answered = Instant::now();

    assert_eq!(response.status, 200);
    first_refusal(&second_http, &token, answered).await;
    assert_revoked(
        &decks(&second_http, &token).await,
        "GET /decks on replica 2",
    );
    assert_eq!(
        deck_service_verdict(&deck, &token).await,
        Err("Unauthenticated TOKEN_REVOKED".to_owned())
    );
    assert_refused_everywhere(&stack, &token, answered).await;
    assert_eq!(me(&second_http, &access(&users.second)).await.status, 200);
}

/// The value of the series `name` (with its labels, e.g. `x_total{kind="session"}`) on
/// a process's `/metrics`; 0 when absent.
async fn metric(process: &ServiceProcess, series: &str) -> f64 {
    HttpClient::new(process.metrics_addr())
        .scrape()
        .await
        .value(series)
        .unwrap_or(0.0)
}

/// Waits (up to 10 s) for `revocation_push_live` of `process` to be `value`.
async fn wait_push_live(process: &ServiceProcess, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(process, "revocation_push_live").await != value {
        assert!(
            Instant::now() < deadline,
            "revocation_push_live did not become {value}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_gateway_started_after_a_revocation_refuses_the_token_from_its_snapshot() {
    let stack = spawn_stack().await;
    let users = users(&stack).await;
    let token = access(&users.first);
    let response = stack
        .http
        .post("/api/v1/auth/logout")
        .bearer(&token)
        .json(&json!({"refresh_token": users.first["refresh_token"]}))
        .send()
        .await;
    assert_eq!(response.status, 200);

    let late = stack.spawn_gateway_replica(&[]).await;
    wait_push_live(&late, 1.0).await;
    let late_http = HttpClient::new(late.listeners["HTTP"].clone());
    let refused = me(&late_http, &token).await;

    assert_revoked(&refused, "GET /auth/me on a gateway started later");
    assert_eq!(
        metric(&late, r#"revocations_applied_total{kind="session"}"#).await,
        1.0,
        "the revocation came from the snapshot"
    );
    assert_eq!(
        metric(
            &late,
            r#"revocation_fallback_checks_total{outcome="checked"}"#
        )
        .await,
        0.0,
        "refused by the in-memory set, not by a Redis lookup"
    );
    assert_eq!(me(&late_http, &access(&users.second)).await.status, 200);
}

/// Runs one command on `redis`.
async fn redis_command(redis: &RedisServer, command: &redis::Cmd) {
    let mut connection = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    command
        .query_async::<redis::Value>(&mut connection)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_cut_subscription_falls_back_to_per_request_checks_and_resumes_after_reconnecting() {
    // A Redis of its own: cutting pub/sub clients must not disturb other tests.
    let redis = RedisServer::start();
    let stack = spawn_stack_with(StackOptions {
        redis_url: Some(redis.url()),
        ..StackOptions::default()
    })
    .await;
    let users = users(&stack).await;
    wait_push_live(&stack.gateway, 1.0).await;

    // SUBSCRIBE is forbidden, so the cut subscriptions stay down; everything else works.
    redis_command(
        &redis,
        redis::cmd("ACL").arg(&["SETUSER", "default", "-subscribe"][..]),
    )
    .await;
    redis_command(
        &redis,
        redis::cmd("CLIENT").arg(&["KILL", "TYPE", "pubsub"][..]),
    )
    .await;
    wait_push_live(&stack.gateway, 0.0).await;
    let response = stack
        .http
        .post("/api/v1/auth/logout")
        .bearer(&access(&users.first))
        .json(&json!({"refresh_token": users.first["refresh_token"]}))
        .send()
        .await;
    assert_eq!(response.status, 200);

    // The push was missed: the per-request lookup of the session refuses the token.
    assert_revoked(
        &me(&stack.http, &access(&users.first)).await,
        "without push",
    );
    assert_eq!(me(&stack.http, &access(&users.second)).await.status, 200);
    let checked = r#"revocation_fallback_checks_total{outcome="checked"}"#;
    let fallback_checks = metric(&stack.gateway, checked).await;
    assert!(fallback_checks >= 2.0, "{fallback_checks}");

    redis_command(
        &redis,
        redis::cmd("ACL").arg(&["SETUSER", "default", "+subscribe"][..]),
    )
    .await;
    wait_push_live(&stack.gateway, 1.0).await;
    assert_revoked(
        &me(&stack.http, &access(&users.first)).await,
        "after reconnecting",
    );
    assert_eq!(me(&stack.http, &access(&users.second)).await.status, 200);
    assert_eq!(
        metric(&stack.gateway, checked).await,
        fallback_checks,
        "in-memory checks again: no more lookups"
    );
}

/// The delay from a revoking call's answer (logout on one gateway) to the first 401 on
/// another gateway replica, over 100 revocations; printed (run with `--no-capture`).
#[tokio::test]
async fn revocation_delay_over_a_hundred_revocations() {
    // Limits out of the way: this measures revocations, not the rate limiter.
    let unlimited = vec![
        ("RATE_LIMIT_AUTH_PER_MINUTE", "1000000".to_owned()),
        ("RATE_LIMIT_API_PER_MINUTE", "1000000".to_owned()),
    ];
    let stack = spawn_stack_with(StackOptions {
        gateway_env: unlimited.clone(),
        ..StackOptions::default()
    })
    .await;
    let replica = stack.spawn_gateway_replica(&unlimited).await;
    let replica_http = HttpClient::new(replica.listeners["HTTP"].clone());
    let email = unique_email();
    stack.register(&email, PASSWORD, "Ελένη").await;
    let mut delays = Vec::with_capacity(100);
    for _ in 0..100 {
        let pair = stack.login(&email, PASSWORD).await;
        let token = access(&pair);
        assert_eq!(me(&replica_http, &token).await.status, 200);
        let response = stack
            .http
            .post("/api/v1/auth/logout")
            .bearer(&token)
            .json(&json!({"refresh_token": pair["refresh_token"]}))
            .send()
            .await;
        assert_eq!(response.status, 200);
        delays.push(first_refusal(&replica_http, &token, Instant::now()).await);
    }
    delays.sort();
    let at = |q: f64| delays[((delays.len() as f64 * q).ceil() as usize).min(delays.len()) - 1];
    println!(
        "revocation delay over {} revocations (answer -> first 401 on another replica): \
         p50 {:?}, p99 {:?}, max {:?}",
        delays.len(),
        at(0.50),
        at(0.99),
        delays.last().unwrap()
    );
}
