//! Benchmark (not a test): GetDeck, ListCards and GetStudyQueue over gRPC with N
//! concurrent clients, once with the Redis cache and once without it (cache Redis URL
//! pointing at a closed port, so the breaker is open and every read goes to
//! PostgreSQL). Prints calls per second and p99 latency.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres CACHE_REDIS_URL=redis://127.0.0.1:6379 \
//!   BENCH_CLIENTS=16 BENCH_SECONDS=5 cargo run --release -p deck-service --example deck_bench
//! ```
//! `DATABASE_URL` is an admin URL: the benchmark creates a fresh database there.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark, not a service: a failed step ends the run with the value shown"
)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use common::shutdown::Shutdown;
use deck_service::{config::Cli, startup::Application};
use proto::deck::v1::{self as pb, deck_service_client::DeckServiceClient};
use test_support::{ServiceConfig, TestTokens};
use tonic::{Request, transport::Channel};
use uuid::Uuid;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn auth<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

async fn start(
    database_url: &str,
    redis_url: &str,
    jwks: &str,
) -> (DeckServiceClient<Channel>, Shutdown) {
    let prefix = format!("bench{}:", &Uuid::new_v4().simple().to_string()[..8]);
    let cli: Cli = ServiceConfig::deck_service(database_url, redis_url, &prefix)
        .set("JWT_PUBLIC_KEYS_FILE", jwks)
        .set("DATABASE_MAX_CONNECTIONS", 32)
        .parse();
    let shutdown = Shutdown::new();
    let app = Application::build(cli.config, shutdown.clone())
        .await
        .expect("build deck-service");
    let addr = app.local_addr();
    tokio::spawn(app.run());
    let channel = test_support::grpc_channel(&addr.to_string()).await;
    (DeckServiceClient::new(channel), shutdown)
}

#[derive(Clone, Copy, Debug)]
enum Call {
    GetDeck,
    ListCards,
    StudyQueue,
}

async fn run(
    client: &DeckServiceClient<Channel>,
    call: Call,
    deck: &str,
    tokens: &[String],
    clients: usize,
    seconds: u64,
) -> (f64, Duration) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let tasks = (0..clients).map(|i| {
        let mut client = client.clone();
        let (deck, token) = (deck.to_owned(), tokens[i % tokens.len()].clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let started = Instant::now();
                let ok = match call {
                    Call::GetDeck => client
                        .get_deck(auth(
                            &token,
                            pb::GetDeckRequest {
                                deck_id: deck.clone(),
                            },
                        ))
                        .await
                        .is_ok(),
                    Call::ListCards => client
                        .list_cards(auth(
                            &token,
                            pb::ListCardsRequest {
                                deck_id: deck.clone(),
                                ..Default::default()
                            },
                        ))
                        .await
                        .is_ok(),
                    Call::StudyQueue => client
                        .get_study_queue(auth(
                            &token,
                            pb::GetStudyQueueRequest {
                                deck_id: Some(deck.clone()),
                                include_new: Some(false),
                                ..Default::default()
                            },
                        ))
                        .await
                        .is_ok(),
                };
                assert!(ok, "{call:?} failed");
                latencies.push(started.elapsed());
            }
            latencies
        })
    });
    let mut all: Vec<Duration> = Vec::new();
    for task in futures::future::join_all(tasks).await {
        all.extend(task.unwrap());
    }
    all.sort();
    let p99 = all[(all.len() * 99 / 100).min(all.len() - 1)];
    (all.len() as f64 / seconds as f64, p99)
}

#[tokio::main]
async fn main() {
    let admin_url = env(
        "DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
    );
    let redis_url = env("CACHE_REDIS_URL", "redis://127.0.0.1:6379");
    let clients: usize = env("BENCH_CLIENTS", "16").parse().expect("BENCH_CLIENTS");
    let seconds: u64 = env("BENCH_SECONDS", "5").parse().expect("BENCH_SECONDS");
    let database_url = test_support::create_database(&admin_url).await;
    let tokens = TestTokens::new();
    let jwks = tokens.jwks_file();
    let jwks = jwks.to_str().unwrap();

    let (mut cached, stop_cached) = start(&database_url, &redis_url, jwks).await;
    // A closed port: the breaker opens and every read goes to PostgreSQL.
    let closed = format!("redis://127.0.0.1:{}", test_support::free_port());
    let (uncached, stop_uncached) = start(&database_url, &closed, jwks).await;

    // Content: one deck of 100 cards, studied by 50 users (all cards due).
    let admin = tokens.access_token(Uuid::new_v4(), true);
    let deck = cached
        .create_deck(auth(
            &admin,
            pb::CreateDeckRequest {
                name: "Bench".into(),
                description: None,
                level: 1,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let cards = (0..100)
        .map(|i| pb::NewCard {
            front_text: format!("λέξη {i}"),
            back_text: format!("word {i}"),
            example_sentence: Some("Μια πρόταση.".into()),
            pronunciation: Some("léksi".into()),
            difficulty: 1,
            order_index: i,
        })
        .collect();
    cached
        .create_cards(auth(
            &admin,
            pb::CreateCardsRequest {
                deck_id: deck.id.clone(),
                cards,
            },
        ))
        .await
        .unwrap();
    let users: Vec<String> = (0..50)
        .map(|_| tokens.access_token(Uuid::new_v4(), false))
        .collect();
    for user in &users {
        cached
            .initialize_study(auth(
                user,
                pb::InitializeStudyRequest {
                    deck_id: deck.id.clone(),
                    card_ids: Vec::new(),
                    all_cards: true,
                },
            ))
            .await
            .unwrap();
    }
    let users = Arc::new(users);

    println!("deck_bench: {clients} concurrent clients, {seconds} s per case, 100 cards, 50 users");
    println!(
        "{:<14} {:<9} {:>12} {:>10}",
        "call", "mode", "calls/s", "p99"
    );
    for call in [Call::GetDeck, Call::ListCards, Call::StudyQueue] {
        for (mode, client) in [("cached", &cached), ("uncached", &uncached)] {
            let (rate, p99) = run(client, call, &deck.id, &users, clients, seconds).await;
            println!(
                "{:<14} {:<9} {:>12.0} {:>8.2}ms",
                format!("{call:?}"),
                mode,
                rate,
                p99.as_secs_f64() * 1000.0
            );
        }
    }
    stop_cached.trigger();
    stop_uncached.trigger();
}
