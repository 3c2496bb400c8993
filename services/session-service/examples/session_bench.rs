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
//! bounded by PASSWORD_HASH_CONCURRENCY and the CPUs.

use std::time::{Duration, Instant};

use proto::session::v1::{self as pb, session_service_client::SessionServiceClient};
use tonic::transport::Channel;

const PASSWORD: &str = "benchmark-password-1";

struct Options {
    addr: String,
    workers: usize,
    seconds: u64,
    logins: usize,
}

fn options() -> Options {
    let mut options = Options {
        addr: "http://127.0.0.1:50051".into(),
        workers: 8,
        seconds: 10,
        logins: 400,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).map(String::as_str).unwrap_or_default();
        match pair[0].as_str() {
            "--addr" => options.addr = value.to_owned(),
            "--workers" => options.workers = value.parse().expect("--workers N"),
            "--seconds" => options.seconds = value.parse().expect("--seconds N"),
            "--logins" => options.logins = value.parse().expect("--logins N"),
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

#[tokio::main]
async fn main() {
    let options = options();
    let channel = Channel::from_shared(options.addr.clone())
        .expect("address")
        .connect()
        .await
        .expect("connect");
    let mut client = SessionServiceClient::new(channel.clone());
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
        let email = email.clone();
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

    // Login latency.
    let per_worker = options.logins.div_ceil(options.workers);
    let mut workers = Vec::new();
    for _ in 0..options.workers {
        let mut client = SessionServiceClient::new(channel.clone());
        let email = email.clone();
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
