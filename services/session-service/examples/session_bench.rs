//! Benchmark of session-service over gRPC (not a test): refresh rotations per second and
//! login latency (p50 / p99) with N concurrent workers, against a running service.
//!
//! ```text
//! make run        # or any session-service with its PostgreSQL and Redis
//! cargo run --release -p session-service --example session_bench -- \
//!     --addr http://127.0.0.1:50051 --workers 8 --seconds 10 --logins 400
//! ```
//!
//! Each refresh worker logs in once and then chains its own tokens (every call rotates,
//! none is a grace replay). Login runs the full argon2id verification, so its rate is
//! bounded by PASSWORD_HASH_CONCURRENCY and the CPUs. Each worker logs in to an account
//! of its own: concurrent logins of one account count against its login throttle.
//!
//! With `--abandon N [--abandon-deadline-ms 250]` it measures only load shedding: N
//! logins of unknown e-mails, each given up after the deadline, then the latency of the
//! next ordinary login (which should cost about one hash, not the abandoned ones' queue).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark, not a service: a failed step ends the run with the value shown"
)]

use std::time::{Duration, Instant};

use proto::session::v1::{self as pb, session_service_client::SessionServiceClient};
use tonic::{Request, transport::Channel};

const PASSWORD: &str = "benchmark-password-1";

struct Options {
    addr: String,
    workers: usize,
    seconds: u64,
    logins: usize,
    abandon: usize,
    abandon_deadline: Duration,
}

fn options() -> Options {
    let mut options = Options {
        addr: "http://127.0.0.1:50051".into(),
        workers: 8,
        seconds: 10,
        logins: 400,
        abandon: 0,
        abandon_deadline: Duration::from_millis(250),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).map(String::as_str).unwrap_or_default();
        match pair[0].as_str() {
            "--addr" => options.addr = value.to_owned(),
            "--workers" => options.workers = value.parse().expect("--workers N"),
            "--seconds" => options.seconds = value.parse().expect("--seconds N"),
            "--logins" => options.logins = value.parse().expect("--logins N"),
            "--abandon" => options.abandon = value.parse().expect("--abandon N"),
            "--abandon-deadline-ms" => {
                options.abandon_deadline =
                    Duration::from_millis(value.parse().expect("--abandon-deadline-ms N"))
            }
            other => panic!("unknown argument {other} (see the example's doc comment)"),
        }
    }
    options
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

async fn login(client: &mut SessionServiceClient<Channel>, email: &str) -> pb::TokenPair {
    client
        .login(pb::LoginRequest {
            email: email.into(),
            password: PASSWORD.into(),
            client: None,
        })
        .await
        .expect("login")
        .into_inner()
}

async fn connect(addr: &str) -> Channel {
    Channel::from_shared(addr.to_owned())
        .expect("address")
        .connect()
        .await
        .expect("connect")
}

/// Registers a new account and returns its e-mail.
async fn register(client: &mut SessionServiceClient<Channel>) -> String {
    let email = format!("bench-{}@example.com", uuid::Uuid::new_v4().simple());
    client
        .register(pb::RegisterRequest {
            email: email.clone(),
            password: PASSWORD.into(),
            full_name: "Benchmark".into(),
            client: None,
        })
        .await
        .expect("register");
    email
}

async fn timed_login(client: &mut SessionServiceClient<Channel>, email: &str) -> Duration {
    let start = Instant::now();
    login(client, email).await;
    start.elapsed()
}

/// N logins given up after `deadline` (on a few connections, so that every one reaches
/// the server), then one ordinary login, timed.
async fn abandoned_logins(options: &Options) {
    let channel = connect(&options.addr).await;
    let mut client = SessionServiceClient::new(channel.clone());
    let email = register(&mut client).await;
    let mut before: Vec<Duration> = Vec::new();
    for _ in 0..5 {
        before.push(timed_login(&mut client, &email).await);
    }
    before.sort();

    let mut channels = Vec::new();
    for _ in 0..options.abandon.div_ceil(100) {
        channels.push(connect(&options.addr).await);
    }
    let deadline = options.abandon_deadline;
    let burst = (0..options.abandon).map(|i| {
        let mut client = SessionServiceClient::new(channels[i % channels.len()].clone());
        async move {
            let mut request = Request::new(pb::LoginRequest {
                email: format!(
                    "abandoned-{i}-{}@example.com",
                    uuid::Uuid::new_v4().simple()
                ),
                password: PASSWORD.into(),
                client: None,
            });
            request.set_timeout(deadline);
            let outcome = tokio::time::timeout(deadline, client.login(request)).await;
            match outcome {
                Err(_) => "given up",
                Ok(Ok(_)) => "ok",
                Ok(Err(status)) => match status.code() {
                    tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
                    tonic::Code::Unauthenticated => "UNAUTHENTICATED",
                    tonic::Code::Cancelled | tonic::Code::DeadlineExceeded => "given up",
                    _ => "other error",
                },
            }
        }
    });
    let start = Instant::now();
    let outcomes = futures::future::join_all(burst).await;
    let burst_time = start.elapsed();
    let after = timed_login(&mut client, &email).await;

    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for outcome in outcomes {
        *counts.entry(outcome).or_default() += 1;
    }
    println!(
        "ordinary login before the burst: median {:.1} ms of 5",
        before[2].as_secs_f64() * 1000.0
    );
    println!(
        "burst: {} logins with a {} ms deadline, over in {:.2} s: {counts:?}",
        options.abandon,
        deadline.as_millis(),
        burst_time.as_secs_f64()
    );
    println!(
        "next ordinary login after the burst: {:.1} ms",
        after.as_secs_f64() * 1000.0
    );
}

#[tokio::main]
async fn main() {
    let options = options();
    if options.abandon > 0 {
        abandoned_logins(&options).await;
        return;
    }
    let channel = connect(&options.addr).await;
    let mut client = SessionServiceClient::new(channel.clone());

    // Baseline: an RPC that touches neither PostgreSQL nor Redis.
    let start = Instant::now();
    for _ in 0..100 {
        client
            .get_public_keys(pb::GetPublicKeysRequest {})
            .await
            .expect("get public keys");
    }
    println!(
        "baseline: GetPublicKeys {:.2} ms per call, one worker",
        start.elapsed().as_secs_f64() * 10.0
    );

    // Refresh rotations: each worker chains its own session's tokens.
    let deadline = Instant::now() + Duration::from_secs(options.seconds);
    let mut workers = Vec::new();
    for _ in 0..options.workers {
        let mut client = SessionServiceClient::new(channel.clone());
        let email = register(&mut client).await;
        workers.push(tokio::spawn(async move {
            let mut token = login(&mut client, &email).await.refresh_token;
            let mut rotations = 0u64;
            while Instant::now() < deadline {
                let pair = client
                    .refresh(pb::RefreshRequest {
                        refresh_token: token,
                        client: None,
                    })
                    .await
                    .expect("refresh")
                    .into_inner();
                token = pair.refresh_token;
                rotations += 1;
            }
            rotations
        }));
    }
    let start = Instant::now();
    let mut rotations = 0;
    for worker in workers {
        rotations += worker.await.expect("refresh worker");
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "refresh: {rotations} rotations in {elapsed:.1} s with {} workers = {:.0} rotations/s",
        options.workers,
        rotations as f64 / elapsed
    );

    // Login latency, each worker on an account of its own.
    let per_worker = options.logins.div_ceil(options.workers);
    let mut workers = Vec::new();
    for _ in 0..options.workers {
        let mut client = SessionServiceClient::new(channel.clone());
        let email = register(&mut client).await;
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_worker);
            for _ in 0..per_worker {
                let start = Instant::now();
                login(&mut client, &email).await;
                latencies.push(start.elapsed());
            }
            latencies
        }));
    }
    let start = Instant::now();
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.expect("login worker"));
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort();
    println!(
        "login: {} logins in {elapsed:.1} s with {} workers = {:.0} logins/s; p50 {:.1} ms, p99 {:.1} ms",
        latencies.len(),
        options.workers,
        latencies.len() as f64 / elapsed,
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
    );
}
