//! The API rate limit from state local to each gateway, reconciled through the shared
//! rate-limit Redis in the background (docs/gateway.md, "Rate limits"): real gateways
//! (processes, or in this process) on a real Redis. The Redis Cluster pass of `make test`
//! runs this binary too.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use test_support::{
    RedisMonitor, RedisServer, ServiceProcess, TestTokens,
    http::{HttpClient, HttpResponse},
    redis_monitor::SCRIPT_CLIENT,
    stack::{StackOptions, spawn_stack_with},
};

use support::{Gateway, assert_problem, start_gateway};

const DECKS: &str = "/api/v1/decks";
const PASSWORD: &str = "correct horse 42";
const BATCHES: &str = "gateway_rate_limit_sync_batches_total";
const UNREPORTED: &str = "gateway_rate_limit_sync_unreported";

fn unique_email() -> String {
    format!(
        "u{}@example.com",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// The value of `series` on a gateway process's metrics port (0 when absent).
async fn metric(process: &ServiceProcess, series: &str) -> f64 {
    let metrics = HttpClient::new(process.listeners["metrics"].clone())
        .scrape()
        .await;
    metrics.value(series).unwrap_or(0.0)
}

/// The value of `series` on an in-process gateway's metrics port (0 when absent).
async fn local_metric(gateway: &Gateway, series: &str) -> f64 {
    gateway.metrics.scrape().await.value(series).unwrap_or(0.0)
}

/// Waits (up to 10 s) until `series` of `process` is above `floor`; its value then.
async fn wait_above(process: &ServiceProcess, series: &str, floor: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let value = metric(process, series).await;
        if value > floor {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{series} stayed at {value}, not above {floor}, for 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn decks(http: &HttpClient, token: &str) -> HttpResponse {
    http.get(DECKS).bearer(token).send().await
}

/// A refusal as the contract has it: 429 RATE_LIMIT_EXCEEDED, `Retry-After`, nothing left.
fn assert_limited(response: &HttpResponse, limit: u32) {
    assert_problem(response, 429, "RATE_LIMIT_EXCEEDED");
    let retry_after: u64 = response
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "{retry_after}");
    assert_eq!(response.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(
        response.header("x-ratelimit-limit"),
        Some(limit.to_string().as_str())
    );
}

/// Waits (up to 10 s) until `process` has reported every call it admitted to Redis.
async fn wait_reported(process: &ServiceProcess) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(process, UNREPORTED).await > 0.0 {
        assert!(Instant::now() < deadline, "calls stay unreported");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One API call on `gateway`; when admitted, also waits until the gateway has reported
/// it (and so taken in the shared state). `true` if admitted.
async fn call_and_sync(
    http: &HttpClient,
    process: &ServiceProcess,
    token: &str,
    limit: u32,
) -> bool {
    let response = decks(http, token).await;
    if response.status == 429 {
        assert_limited(&response, limit);
        return false;
    }
    assert_eq!(response.status, 200, "{}", response.text());
    wait_reported(process).await;
    true
}

#[tokio::test]
async fn api_calls_spread_over_two_gateways_sharing_redis_are_limited_at_the_documented_bound() {
    // Arrange: two gateways on one rate-limit Redis, 20 calls per minute (one per 3 s).
    const LIMIT: u32 = 20;
    let env = vec![
        ("RATE_LIMIT_API_PER_MINUTE", LIMIT.to_string()),
        ("RATE_LIMIT_SYNC_INTERVAL_MS", "100".to_owned()),
    ];
    let stack = spawn_stack_with(StackOptions {
        gateway_env: env.clone(),
        ..StackOptions::default()
    })
    .await;
    let replica = stack.spawn_gateway_replica(&env).await;
    let gateways = [
        (stack.http.clone(), &stack.gateway),
        (HttpClient::new(replica.listeners["HTTP"].clone()), &replica),
    ];
    let alternating = stack.register(&unique_email(), PASSWORD, "Ελένη").await;
    let alternating = alternating["access_token"].as_str().unwrap().to_owned();
    let one_sided = stack.register(&unique_email(), PASSWORD, "Νίκος").await;
    let one_sided = one_sided["access_token"].as_str().unwrap().to_owned();

    // Act 1: calls alternated over both, each gateway reconciling after each call it
    // admits, until both refuse.
    let started = Instant::now();
    let mut admitted = 0;
    let mut refused = [false; 2];
    for call in 0..3 * LIMIT as usize {
        let (http, process) = &gateways[call % 2];
        if call_and_sync(http, process, &alternating, LIMIT).await {
            admitted += 1;
        } else {
            refused[call % 2] = true;
        }
        if refused == [true; 2] {
            break;
        }
    }
    let elapsed = started.elapsed();

    // Assert 1: the limit, plus what drained meanwhile, plus the bound: each gateway
    // decides without the other's calls since its own last reconciliation, here the
    // other's one latest call. Without the reconciliation each gateway admits 20.
    assert_eq!(refused, [true; 2], "both gateways refuse in the end");
    let drained = (elapsed.as_secs_f64() * f64::from(LIMIT) / 60.0).ceil() as u32;
    assert!(admitted >= LIMIT, "stricter than the limit: {admitted}");
    assert!(
        admitted <= LIMIT + 1 + drained,
        "{admitted} admitted, more than {LIMIT} + 1 + {drained} drained in {elapsed:?}"
    );

    // Act 2: the whole burst at once on the first gateway, then calls on the second,
    // which holds no bucket for this user yet.
    let (first, second) = (&gateways[0], &gateways[1]);
    let burst: Vec<_> = (0..LIMIT)
        .map(|_| {
            let (http, token) = (first.0.clone(), one_sided.clone());
            tokio::spawn(async move { decks(&http, &token).await.status })
        })
        .collect();
    for call in burst {
        assert_eq!(call.await.unwrap(), 200, "the burst is admitted");
    }
    wait_reported(first.1).await;
    let new_to_second = call_and_sync(&second.0, second.1, &one_sided, LIMIT).await;
    let after_its_sync = decks(&second.0, &one_sided).await;

    // Assert 2: a key new to a gateway is admitted until its first reconciliation (here
    // one call); then the first gateway's calls count there too.
    assert!(
        new_to_second,
        "admitted before the second gateway knows the key"
    );
    assert_limited(&after_its_sync, LIMIT);
}

#[tokio::test]
async fn api_calls_make_no_redis_round_trip_and_reconciliation_is_about_one_batch_per_tick() {
    // Arrange: a gateway in this process with keys under a prefix of this test's own.
    const CALLS: usize = 60;
    let interval = Duration::from_millis(100);
    let prefix = test_support::key_prefix();
    let gateway = start_gateway(&[
        ("--redis-key-prefix", prefix.clone()),
        (
            "--rate-limit-sync-interval-ms",
            interval.as_millis().to_string(),
        ),
    ])
    .await;
    let token = TestTokens::new().access_token(uuid::Uuid::new_v4(), false);
    let mut monitor = RedisMonitor::start(&test_support::redis_url()).await;

    // Act: calls one after another, then until the last one is reconciled.
    let started = Instant::now();
    for _ in 0..CALLS {
        let response = decks(&gateway.http, &token).await;
        assert_eq!(
            response.header("x-ratelimit-limit"),
            Some("100"),
            "{}",
            response.text()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while local_metric(&gateway, UNREPORTED).await > 0.0 {
        assert!(Instant::now() < deadline, "never reconciled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    let api_key = format!("{prefix}rate:api:");
    let commands: Vec<_> = monitor
        .collect()
        .await
        .into_iter()
        // Sent by the gateway, not run by its scripts (MONITOR shows those as "lua").
        .filter(|command| command.client != SCRIPT_CLIENT)
        .filter(|command| command.args.iter().any(|arg| arg.starts_with(&api_key)))
        .collect();

    println!(
        "{CALLS} API calls in {elapsed:?}: {} rate-limit Redis commands",
        commands.len()
    );
    // Assert: one script call per reconciliation that had something to report (so at
    // most one per tick, two ticks per interval, the first at once; one more if the
    // script had to be loaded: an EVALSHA answered NOSCRIPT is sent again), not one per
    // API call.
    let ticks = (2.0 * elapsed.as_secs_f64() / interval.as_secs_f64()).ceil() as usize + 2;
    assert!(!commands.is_empty(), "the calls were reported");
    assert!(
        commands.len() < CALLS / 2 && commands.len() <= ticks,
        "{} Redis commands for {CALLS} calls in {elapsed:?}: {commands:#?}",
        commands.len()
    );
    assert!(
        commands.iter().all(|command| command.name == "EVALSHA"),
        "{commands:#?}"
    );
}

#[tokio::test]
async fn with_the_rate_limit_redis_down_api_calls_are_limited_locally_and_auth_calls_fail_open() {
    // Arrange: a rate-limit Redis of this test's own, 5 API calls per minute; one call
    // reconciled while Redis is up.
    const LIMIT: u32 = 5;
    let mut redis = RedisServer::start();
    let stack = spawn_stack_with(StackOptions {
        gateway_env: vec![
            ("RATE_LIMIT_REDIS_URL", redis.url()),
            ("RATE_LIMIT_API_PER_MINUTE", LIMIT.to_string()),
        ],
        ..StackOptions::default()
    })
    .await;
    let email = unique_email();
    let pair = stack.register(&email, PASSWORD, "Ελένη").await;
    let token = pair["access_token"].as_str().unwrap().to_owned();
    assert!(call_and_sync(&stack.http, &stack.gateway, &token, LIMIT).await);
    let batches_before = metric(&stack.gateway, BATCHES).await;
    let fail_open_before = metric(&stack.gateway, "gateway_rate_limit_fail_open_total").await;

    // Act 1: Redis gone.
    redis.kill();
    let mut statuses = Vec::new();
    for _ in 0..LIMIT {
        statuses.push(decks(&stack.http, &token).await);
    }
    let login = stack
        .http
        .post("/api/v1/auth/login")
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await;

    // Assert 1: API calls answered and still limited (4 more, then 429); the login
    // let through unchecked and counted; the failed reconciliations counted.
    let codes: Vec<u16> = statuses.iter().map(|response| response.status).collect();
    assert_eq!(codes, [200, 200, 200, 200, 429], "{codes:?}");
    assert_limited(statuses.last().unwrap(), LIMIT);
    assert_eq!(login.status, 200, "{}", login.text());
    assert!(login.header("x-ratelimit-limit").is_none(), "unchecked");
    assert!(metric(&stack.gateway, "gateway_rate_limit_fail_open_total").await > fail_open_before);
    wait_above(
        &stack.gateway,
        "gateway_rate_limit_sync_failures_total",
        0.0,
    )
    .await;
    assert_eq!(metric(&stack.gateway, BATCHES).await, batches_before);

    // Act 2 / Assert 2: Redis back; the calls counted during the outage are reported.
    redis.restart();
    wait_above(&stack.gateway, BATCHES, batches_before).await;
    wait_reported(&stack.gateway).await;
}

#[tokio::test]
async fn many_users_do_not_grow_the_local_buckets_beyond_their_maximum() {
    // Arrange
    let gateway = start_gateway(&[("--rate-limit-api-max-buckets", "5".to_owned())]).await;
    let tokens = TestTokens::new();

    // Act: one call each from 40 users.
    for _ in 0..40 {
        let token = tokens.access_token(uuid::Uuid::new_v4(), false);
        let response = decks(&gateway.http, &token).await;
        assert_eq!(response.header("x-ratelimit-remaining"), Some("99"));
    }
    let held = local_metric(&gateway, "gateway_rate_limit_api_buckets").await;

    // Assert
    assert!((1.0..=5.0).contains(&held), "{held} buckets held");
}

/// A gateway process with test defaults (trusted JWKS file, services nobody listens on,
/// keys under `prefix`) and `env`; returned once its revocation snapshot is in (the test
/// tokens name no real session: until then each request would look it up and refuse).
async fn spawn_gateway(prefix: &str, env: &[(&'static str, String)]) -> ServiceProcess {
    let mut envs = vec![
        ("HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("GRPC_ADDR", "127.0.0.1:0".to_owned()),
        ("SESSION_SERVICE_URL", support::nobody()),
        ("DECK_SERVICE_URL", support::nobody()),
        ("RATE_LIMIT_REDIS_URL", test_support::redis_url()),
        ("SESSION_REDIS_URL", test_support::redis_url()),
        ("REDIS_KEY_PREFIX", prefix.to_owned()),
        (
            "JWT_PUBLIC_KEYS_FILE",
            TestTokens::new().jwks_file().to_string_lossy().into_owned(),
        ),
    ];
    envs.extend(env.iter().cloned());
    let gateway = test_support::spawn_service(env!("CARGO_BIN_EXE_gateway"), &[], &envs).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&gateway, "revocation_push_live").await != 1.0 {
        assert!(Instant::now() < deadline, "revocation push not live");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gateway
}

#[tokio::test]
async fn a_gateway_stopped_by_sigterm_reports_the_calls_it_admitted_since_its_last_reconciliation()
{
    // Arrange: two gateways on one Redis and prefix; the first reconciles only once a
    // second, so the calls below fall between two of its ticks.
    const LIMIT: u32 = 5;
    let prefix = test_support::key_prefix();
    let limit = ("RATE_LIMIT_API_PER_MINUTE", LIMIT.to_string());
    let mut first = spawn_gateway(
        &prefix,
        &[
            limit.clone(),
            ("RATE_LIMIT_SYNC_INTERVAL_MS", "1000".to_owned()),
        ],
    )
    .await;
    let second = spawn_gateway(&prefix, &[limit]).await;
    let token = TestTokens::new().access_token(uuid::Uuid::new_v4(), false);
    let first_http = HttpClient::new(first.listeners["HTTP"].clone());
    let second_http = HttpClient::new(second.listeners["HTTP"].clone());
    for _ in 0..LIMIT {
        let response = decks(&first_http, &token).await;
        assert_ne!(response.header("x-ratelimit-remaining"), None);
    }

    // Act: stop the first gateway at once; then the second one learns the key.
    first.terminate();
    assert!(first.wait_exit(Duration::from_secs(15)).await.success());
    let new_to_second = decks(&second_http, &token).await;
    wait_reported(&second).await;
    let after_its_sync = decks(&second_http, &token).await;

    // Assert: the first gateway's calls reached Redis on its way out.
    assert_eq!(new_to_second.header("x-ratelimit-remaining"), Some("4"));
    assert_limited(&after_its_sync, LIMIT);
}
