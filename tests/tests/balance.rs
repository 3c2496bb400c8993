//! Client-side load balancing (`common::balance`, issue 14) against real deck-service
//! processes over real gRPC. Which replica served a call is read from each process's own
//! `/metrics` (`grpc_server_requests_total`), never from the client's bookkeeping.
//!
//! DNS: a test cannot change what a real name resolves to (no DNS server, and /etc/hosts is
//! off limits), so the re-resolution tests feed the channel a table of their own through
//! the `Resolve` trait; `localhost` checks the system resolver itself.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use common::{
    balance::{BalancedChannel, ClientConfig, Resolve, ServiceUrl},
    shutdown::Shutdown,
};
use futures::future::BoxFuture;
use proto::deck::v1::{
    CreateDeckRequest, GetDeckRequest, Level, deck_service_client::DeckServiceClient,
};
use test_support::{
    ServiceConfig, ServiceProcess, TestTokens,
    conformance::workspace_binary,
    free_port, fresh_database, key_prefix, redis_url,
    replicas::{GET_DECK, served},
    stack::spawn_stack,
};
use tokio::time::{Instant, sleep};
use tonic::{Code, Request};
use uuid::Uuid;

const CREATE_DECK: &str = "/learngreek.deck.v1.DeckService/CreateDeck";

type Client = DeckServiceClient<BalancedChannel>;

/// Several deck-service processes on one database and one Redis key prefix, as replicas.
struct Replicas {
    config: ServiceConfig,
}

impl Replicas {
    async fn new() -> Self {
        let config =
            ServiceConfig::deck_service(&fresh_database().await, &redis_url(), &key_prefix())
                .set("METRICS_ADDR", "127.0.0.1:0");
        Self { config }
    }

    async fn spawn(&self) -> ServiceProcess {
        self.config.spawn().await
    }

    /// `n` replicas, started one after the other (so the migrations run once).
    async fn spawn_many(&self, n: usize) -> Vec<ServiceProcess> {
        let mut replicas = Vec::new();
        for _ in 0..n {
            replicas.push(self.spawn().await);
        }
        replicas
    }
}

/// `http://a,http://b,...` of the processes' gRPC addresses.
fn url_of(processes: &[&ServiceProcess]) -> ServiceUrl {
    let text = processes
        .iter()
        .map(|process| format!("http://{}", process.grpc_addr))
        .collect::<Vec<_>>()
        .join(",");
    ServiceUrl::parse(&text).unwrap()
}

fn authorized<T>(message: T, superuser: bool) -> Request<T> {
    let token = TestTokens::new().access_token(Uuid::new_v4(), superuser);
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii token"),
    );
    request.set_timeout(Duration::from_secs(10));
    request
}

fn get_deck(deck_id: &str) -> Request<GetDeckRequest> {
    authorized(
        GetDeckRequest {
            deck_id: deck_id.to_owned(),
        },
        false,
    )
}

fn create_deck_request() -> Request<CreateDeckRequest> {
    authorized(
        CreateDeckRequest {
            name: "Balanced".into(),
            description: None,
            level: Level::A1.into(),
        },
        true,
    )
}

async fn create_deck(client: &mut Client) -> String {
    client
        .create_deck(create_deck_request())
        .await
        .expect("create deck")
        .into_inner()
        .id
}

fn client(url: &ServiceUrl, shutdown: &Shutdown) -> Client {
    DeckServiceClient::new(BalancedChannel::new(
        url,
        &ClientConfig::default(),
        shutdown,
    ))
}

/// Polls `condition` every 200 ms until it holds; panics with `what` after `timeout`.
async fn eventually<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !condition().await {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn calls_spread_over_every_endpoint_of_a_comma_separated_url() {
    test_support::init();
    let replicas = Replicas::new().await;
    let processes = replicas.spawn_many(3).await;
    let shutdown = Shutdown::new();
    let mut client = client(&url_of(&processes.iter().collect::<Vec<_>>()), &shutdown);
    let deck_id = create_deck(&mut client).await;

    for _ in 0..200 {
        client.get_deck(get_deck(&deck_id)).await.expect("GetDeck");
    }

    for process in &processes {
        let count = served(process, GET_DECK).await;
        // A fair share of 200 over three is about 67; half of it is a generous floor.
        assert!(
            count >= 33,
            "{} served {count} of 200 GetDeck calls",
            process.grpc_addr
        );
    }
}

/// Runs GetDeck from four tasks until stopped; counts successes and keeps every failure.
struct ReadLoop {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ReadLoop {
    fn start(client: &Client, deck_id: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..4)
            .map(|_| {
                let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
                let mut client = client.clone();
                let deck_id = deck_id.to_owned();
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        match client.get_deck(get_deck(&deck_id)).await {
                            Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                            Err(status) => {
                                failures.lock().unwrap().push(format!("{status:?}"));
                                0
                            }
                        };
                        sleep(Duration::from_millis(5)).await;
                    }
                })
            })
            .collect();
        Self {
            stop,
            ok,
            failures,
            tasks,
        }
    }

    fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("read task");
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failures.lock().unwrap().clone(),
        )
    }
}

#[tokio::test]
async fn a_killed_endpoint_costs_no_failed_read_and_gets_calls_again_after_restart() {
    test_support::init();
    let replicas = Replicas::new().await;
    let mut processes = replicas.spawn_many(2).await;
    let shutdown = Shutdown::new();
    let channel = BalancedChannel::new(
        &url_of(&processes.iter().collect::<Vec<_>>()),
        &ClientConfig::default(),
        &shutdown,
    );
    let mut client = DeckServiceClient::new(channel.clone());
    let deck_id = create_deck(&mut client).await;
    let victim_addr: SocketAddr = processes[0].grpc_addr.parse().unwrap();
    let reads = ReadLoop::start(&client, &deck_id);
    eventually("reads flow", Duration::from_secs(30), || async {
        reads.ok() >= 50
    })
    .await;

    // Act: kill one replica under load, keep reading, then start it again on its port.
    let mut victim = processes.remove(0);
    victim.sigkill();
    victim.wait_exit(Duration::from_secs(10)).await;
    eventually(
        "the killed endpoint is marked down",
        Duration::from_secs(10),
        || async {
            channel
                .endpoints()
                .iter()
                .any(|endpoint| endpoint.addr == victim_addr && !endpoint.up)
        },
    )
    .await;
    let before = reads.ok();
    eventually(
        "reads go on while it is down",
        Duration::from_secs(30),
        || async { reads.ok() >= before + 100 },
    )
    .await;
    let restarted = replicas.config.respawn_on(&victim_addr.to_string()).await;
    eventually(
        "the restarted endpoint gets calls",
        Duration::from_secs(15),
        || async { served(&restarted, GET_DECK).await > 0 },
    )
    .await;
    let (ok, failures) = reads.finish().await;

    assert!(
        failures.is_empty(),
        "{} of {} reads failed: {failures:?}",
        failures.len(),
        ok + failures.len() as u64
    );
    assert!(
        channel.endpoints().iter().all(|endpoint| endpoint.up),
        "{:?}",
        channel.endpoints()
    );
}

#[tokio::test]
async fn a_write_that_fails_with_unavailable_is_not_retried_but_a_read_is() {
    test_support::init();
    let replicas = Replicas::new().await;
    let live = replicas.spawn().await;
    // Nothing listens on the first address: the first call of a channel goes there.
    let url = ServiceUrl::parse(&format!(
        "http://127.0.0.1:{},http://{}",
        free_port(),
        live.grpc_addr
    ))
    .unwrap();
    let shutdown = Shutdown::new();

    let write = client(&url, &shutdown)
        .create_deck(create_deck_request())
        .await;
    let read = client(&url, &shutdown)
        .get_deck(get_deck(&Uuid::new_v4().to_string()))
        .await;

    let write = write.expect_err("the write went to the dead endpoint");
    assert_eq!(write.code(), Code::Unavailable, "{write:?}");
    assert_eq!(served(&live, CREATE_DECK).await, 0, "the write was retried");
    // The read also went to the dead endpoint first, and was answered by the live one.
    let read = read.expect_err("the deck does not exist");
    assert_eq!(read.code(), Code::NotFound, "{read:?}");
    assert_eq!(served(&live, GET_DECK).await, 1);
}

/// A DNS table the test edits: every name resolves to the addresses set for it.
#[derive(Default)]
struct Table {
    names: Mutex<HashMap<String, Vec<SocketAddr>>>,
}

impl Table {
    fn set(&self, name: &str, processes: &[&ServiceProcess]) {
        let addrs = processes
            .iter()
            .map(|process| process.grpc_addr.parse().unwrap())
            .collect();
        self.names.lock().unwrap().insert(name.to_owned(), addrs);
    }
}

impl Resolve for Table {
    fn resolve(
        &self,
        host: &str,
        _port: u16,
    ) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> {
        let answer = self
            .names
            .lock()
            .unwrap()
            .get(host)
            .cloned()
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{host}: no such name"),
                )
            });
        Box::pin(async move { answer })
    }
}

#[tokio::test]
async fn a_new_address_of_a_dns_name_gets_calls_and_a_gone_one_is_dropped() {
    test_support::init();
    let replicas = Replicas::new().await;
    let first = replicas.spawn().await;
    let second = replicas.spawn().await;
    let table = Arc::new(Table::default());
    table.set("deck-service.test", &[&first]);
    let shutdown = Shutdown::new();
    // The default resolve interval: "a new replica gets calls within 15 s" is a promise of
    // the defaults.
    let channel = BalancedChannel::with_resolver(
        &ServiceUrl::parse("http://deck-service.test:50052").unwrap(),
        &ClientConfig::default(),
        &shutdown,
        table.clone(),
    );
    let mut client = DeckServiceClient::new(channel.clone());
    let deck_id = create_deck(&mut client).await;
    for _ in 0..20 {
        client.get_deck(get_deck(&deck_id)).await.expect("GetDeck");
    }
    assert_eq!(served(&second, GET_DECK).await, 0, "not yet in DNS");

    // A new replica appears in DNS: it gets calls within 15 s.
    table.set("deck-service.test", &[&first, &second]);
    let added = Instant::now();
    eventually(
        "the new address gets calls",
        Duration::from_secs(15),
        || {
            let mut client = client.clone();
            let (deck_id, second) = (&deck_id, &second);
            async move {
                client.get_deck(get_deck(deck_id)).await.expect("GetDeck");
                served(second, GET_DECK).await > 0
            }
        },
    )
    .await;
    assert!(added.elapsed() < Duration::from_secs(15));

    // The first one leaves DNS: it is dropped, and gets no more calls.
    table.set("deck-service.test", &[&second]);
    let first_addr: SocketAddr = first.grpc_addr.parse().unwrap();
    eventually(
        "the gone address is dropped",
        Duration::from_secs(15),
        || async {
            channel
                .endpoints()
                .iter()
                .all(|endpoint| endpoint.addr != first_addr)
        },
    )
    .await;
    let first_before = served(&first, GET_DECK).await;
    for _ in 0..20 {
        client.get_deck(get_deck(&deck_id)).await.expect("GetDeck");
    }
    assert_eq!(served(&first, GET_DECK).await, first_before);
    assert!(served(&second, GET_DECK).await >= 20);
}

#[tokio::test]
async fn a_name_is_resolved_with_the_system_resolver() {
    test_support::init();
    let replicas = Replicas::new().await;
    let process = replicas.spawn().await;
    let port = process.grpc_addr.rsplit(':').next().unwrap();
    let shutdown = Shutdown::new();
    let channel = BalancedChannel::new(
        &ServiceUrl::parse(&format!("http://localhost:{port}")).unwrap(),
        &ClientConfig::default(),
        &shutdown,
    );

    let result = DeckServiceClient::new(channel.clone())
        .get_deck(get_deck(&Uuid::new_v4().to_string()))
        .await;

    assert_eq!(result.expect_err("no such deck").code(), Code::NotFound);
    let expected: SocketAddr = process.grpc_addr.parse().unwrap();
    assert!(
        channel
            .endpoints()
            .iter()
            .any(|endpoint| endpoint.addr == expected),
        "{:?}",
        channel.endpoints()
    );
    assert_eq!(served(&process, GET_DECK).await, 1);
}

#[tokio::test]
async fn the_gateway_and_deck_service_balance_over_comma_separated_urls() {
    let stack = spawn_stack().await;
    // A second deck-service replica that verifies tokens with keys fetched from
    // session-service through a list whose first address is dead: the key fetch (an
    // idempotent read) is retried on the live one.
    let second = ServiceConfig::deck_service(
        &stack.deck_database_url,
        &stack.redis_url,
        &stack.redis_prefix,
    )
    .unset("JWT_PUBLIC_KEYS_FILE")
    .set("METRICS_ADDR", "127.0.0.1:0")
    .set(
        "SESSION_SERVICE_URL",
        format!(
            "http://127.0.0.1:{},http://{}",
            free_port(),
            stack.session.grpc_addr
        ),
    )
    .spawn()
    .await;
    let gateway = ServiceConfig::gateway(
        &format!("http://{}", stack.session.grpc_addr),
        &format!(
            "http://{},http://{}",
            stack.deck.grpc_addr, second.grpc_addr
        ),
        &stack.redis_url,
        &stack.redis_prefix,
    )
    .set("METRICS_ADDR", "127.0.0.1:0")
    .set("RATE_LIMIT_API_PER_MINUTE", 1_000_000)
    .spawn()
    .await;
    // Readiness checks a comma list too: SERVING once the replicas are.
    test_support::wait_for_health(
        &gateway.grpc_addr,
        "readiness",
        test_support::ServingStatus::Serving,
        Duration::from_secs(30),
    )
    .await;
    let http = test_support::http::HttpClient::new(gateway.listeners["HTTP"].clone());
    let token = TestTokens::new().access_token(Uuid::new_v4(), true);
    let created = http
        .post("/api/v1/decks")
        .bearer(&token)
        .json(&serde_json::json!({"name": "Balanced", "level": "A1"}))
        .send()
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let deck_id = created.json()["id"].as_str().unwrap().to_owned();

    for _ in 0..100 {
        let response = http
            .get(&format!("/api/v1/decks/{deck_id}"))
            .bearer(&token)
            .send()
            .await;
        assert_eq!(response.status, 200, "{}", response.text());
    }

    for replica in [&stack.deck, &second] {
        let count = served(replica, GET_DECK).await;
        assert!(count >= 25, "{} served {count} of 100", replica.grpc_addr);
    }
}

#[tokio::test]
async fn a_bad_service_url_or_resolve_interval_stops_the_process_with_exit_64() {
    for (binary, variable, value) in [
        ("gateway", "DECK_SERVICE_URL", "http://127.0.0.1:50052,"),
        (
            "gateway",
            "SESSION_SERVICE_URL",
            "https://session-service:50051",
        ),
        ("deck-service", "SESSION_SERVICE_URL", "127.0.0.1:50051"),
        ("gateway", "GRPC_RESOLVE_INTERVAL_MS", "5"),
    ] {
        // A process that accepted the value would serve until killed: bound the wait, and
        // kill it then.
        let run = tokio::process::Command::new(workspace_binary(binary))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(variable, value)
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .unwrap_or_else(|_| panic!("{binary} accepted {variable}={value} and kept running"))
            .expect("run the binary");
        let (code, stderr) = (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        );

        assert_eq!(code, Some(64), "{binary} {variable}={value}: {stderr}");
        assert!(
            stderr.contains(variable) && stderr.lines().count() == 1,
            "{binary} {variable}={value}: {stderr}"
        );
    }
}
