//! `grpc-load`: drives `DeckService.GetDeck` for one deck directly over gRPC (no
//! gateway) with N concurrent tasks for a fixed time, and prints one JSON object
//! with the request rate, the latency percentiles and the error count. It is the
//! gRPC row of `make bench` (scripts/bench.sh); wrk cannot speak gRPC.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Parser;
use proto::deck::v1::{GetDeckRequest, deck_service_client::DeckServiceClient};
use tonic::{
    metadata::MetadataValue,
    transport::{Channel, Endpoint},
};

/// Drive DeckService.GetDeck over gRPC and report req/s, p50, p99 and errors as JSON.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// deck-service gRPC URL, e.g. `http://127.0.0.1:50052`.
    #[arg(long, env = "DECK_SERVICE_URL")]
    url: String,
    /// The deck every call reads (a cache hit after the first call).
    #[arg(long)]
    deck_id: String,
    /// File with one access token per line; task i uses line i modulo their count.
    #[arg(long)]
    tokens: PathBuf,
    /// Concurrent tasks, each with one call in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// HTTP/2 connections the tasks are spread over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// How long to drive, in seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of calls before the measured run (fills the cache, opens the streams).
    #[arg(long, default_value_t = 0)]
    warmup: u64,
}

/// What one task measured: call latencies in microseconds, and failures.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.concurrency == 0 || cli.connections == 0 {
        bail!("--concurrency and --connections must be at least 1");
    }
    let tokens: Vec<String> = std::fs::read_to_string(&cli.tokens)
        .with_context(|| format!("reading {}", cli.tokens.display()))?
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|token| format!("Bearer {token}"))
        .collect();
    if tokens.is_empty() {
        bail!("{} holds no token", cli.tokens.display());
    }

    let mut channels = Vec::with_capacity(cli.connections);
    for _ in 0..cli.connections {
        // One connect per channel: each is its own HTTP/2 connection.
        let channel = Endpoint::from_shared(cli.url.clone())?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to {}", cli.url))?;
        channels.push(channel);
    }

    if cli.warmup > 0 {
        run(&cli, &channels, &tokens, Duration::from_secs(cli.warmup)).await?;
    }
    let started = Instant::now();
    let tallies = run(&cli, &channels, &tokens, Duration::from_secs(cli.duration)).await?;
    let elapsed = started.elapsed().as_secs_f64();

    let errors: u64 = tallies.iter().map(|tally| tally.errors).sum();
    let mut latencies: Vec<u32> = tallies
        .into_iter()
        .flat_map(|tally| tally.latencies_us)
        .collect();
    latencies.sort_unstable();
    let percentile = |p: f64| -> u32 {
        if latencies.is_empty() {
            return 0;
        }
        let rank = ((p / 100.0) * latencies.len() as f64).ceil() as usize;
        latencies[rank.clamp(1, latencies.len()) - 1]
    };
    let requests = latencies.len() as u64 + errors;
    let report = serde_json::json!({
        "requests": requests,
        "errors": errors,
        "duration_s": elapsed,
        "rps": requests as f64 / elapsed,
        "p50_us": percentile(50.0),
        "p99_us": percentile(99.0),
        "max_us": latencies.last().copied().unwrap_or(0),
    });
    println!("{report}");
    Ok(())
}

/// Runs `cli.concurrency` tasks for `duration`, each calling GetDeck in a loop.
async fn run(
    cli: &Cli,
    channels: &[Channel],
    tokens: &[String],
    duration: Duration,
) -> anyhow::Result<Vec<Tally>> {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::with_capacity(cli.concurrency);
    for i in 0..cli.concurrency {
        let mut client = DeckServiceClient::new(channels[i % channels.len()].clone());
        let token: MetadataValue<_> = tokens[i % tokens.len()]
            .parse()
            .context("token is not valid metadata")?;
        let deck_id = cli.deck_id.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while Instant::now() < deadline {
                let mut request = tonic::Request::new(GetDeckRequest {
                    deck_id: deck_id.clone(),
                });
                request
                    .metadata_mut()
                    .insert("authorization", token.clone());
                let sent = Instant::now();
                match client.get_deck(request).await {
                    Ok(_) => {
                        let micros = sent.elapsed().as_micros();
                        tally
                            .latencies_us
                            .push(u32::try_from(micros).unwrap_or(u32::MAX));
                    }
                    Err(_) => tally.errors += 1,
                }
            }
            tally
        }));
    }
    let mut tallies = Vec::with_capacity(tasks.len());
    for task in tasks {
        tallies.push(task.await?);
    }
    Ok(tallies)
}
