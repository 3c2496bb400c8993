//! N replicas of every process, as `REPLICAS=N make run` starts them: N session-services
//! and N deck-services sharing one database each and one Redis key prefix, and N gateways,
//! every one of them balancing over all the service replicas through comma-separated
//! service URLs (`common::balance`). Which replica served a call is read from that
//! process's own `/metrics`, never from a client's bookkeeping.

use std::time::Duration;

use crate::{
    ServiceProcess, ServingStatus, TestTokens, chaos::respawn_on, conformance::workspace_binary,
    fresh_database, http::HttpClient, http_get, key_prefix, redis_url, spawn_service,
    stack::signing_key_file, wait_for_health,
};

/// The gRPC method a cached deck read reaches deck-service with.
pub const GET_DECK: &str = "/learngreek.deck.v1.DeckService/GetDeck";

/// Every process of a replicated stack (killed on drop), and a client of each gateway.
pub struct ReplicatedStack {
    pub sessions: Vec<ServiceProcess>,
    pub decks: Vec<Option<ServiceProcess>>,
    pub gateways: Vec<ServiceProcess>,
    /// One client per gateway, in the order of `gateways`.
    pub fronts: Vec<HttpClient>,
    pub redis_url: String,
    pub redis_prefix: String,
    pub session_database_url: String,
    deck_env: Vec<(&'static str, String)>,
    deck_addrs: Vec<String>,
}

/// Options of [`spawn_replicated_stack_with`]: extra environment per kind of process.
#[derive(Clone, Debug, Default)]
pub struct ReplicaOptions {
    pub session_env: Vec<(&'static str, String)>,
    pub deck_env: Vec<(&'static str, String)>,
    pub gateway_env: Vec<(&'static str, String)>,
}

/// `n` replicas of each process, with default options.
pub async fn spawn_replicated_stack(n: usize) -> ReplicatedStack {
    spawn_replicated_stack_with(n, ReplicaOptions::default()).await
}

/// Starts `n` session-services, `n` deck-services (one after the other, so migrations run
/// once) and `n` gateways over all of them, and waits until every gateway is ready.
pub async fn spawn_replicated_stack_with(n: usize, options: ReplicaOptions) -> ReplicatedStack {
    crate::init();
    let redis_url = redis_url();
    let redis_prefix = key_prefix();
    let session_database_url = fresh_database().await;
    let deck_database_url = fresh_database().await;
    let jwks_file = TestTokens::new().jwks_file().to_string_lossy().into_owned();

    let mut session_env = vec![
        ("DATABASE_URL", session_database_url.clone()),
        ("SESSION_REDIS_URL", redis_url.clone()),
        ("REDIS_KEY_PREFIX", redis_prefix.clone()),
        ("JWT_PRIVATE_KEY_FILE", signing_key_file()),
    ];
    session_env.extend(options.session_env.iter().cloned());
    let mut sessions = Vec::new();
    for _ in 0..n {
        sessions.push(spawn_on("session-service", "127.0.0.1:0", &session_env).await);
    }

    let mut deck_env = vec![
        ("DATABASE_URL", deck_database_url),
        ("CACHE_REDIS_URL", redis_url.clone()),
        ("REDIS_KEY_PREFIX", redis_prefix.clone()),
        ("JWT_PUBLIC_KEYS_FILE", jwks_file),
    ];
    deck_env.extend(options.deck_env.iter().cloned());
    let mut decks = Vec::new();
    for _ in 0..n {
        decks.push(spawn_on("deck-service", "127.0.0.1:0", &deck_env).await);
    }
    let deck_addrs: Vec<String> = decks.iter().map(|d| d.grpc_addr.clone()).collect();

    let mut gateway_env = vec![
        ("HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("SESSION_SERVICE_URL", url_list(&sessions)),
        ("DECK_SERVICE_URL", url_list(&decks)),
        ("RATE_LIMIT_REDIS_URL", redis_url.clone()),
        ("REDIS_KEY_PREFIX", redis_prefix.clone()),
        ("RATE_LIMIT_API_PER_MINUTE", "1000000".to_owned()),
        ("READINESS_INTERVAL_MS", "200".to_owned()),
    ];
    gateway_env.extend(options.gateway_env.iter().cloned());
    let mut gateways = Vec::new();
    let mut fronts = Vec::new();
    for _ in 0..n {
        let gateway = spawn_on("gateway", "127.0.0.1:0", &gateway_env).await;
        wait_for_health(
            &gateway.grpc_addr,
            "readiness",
            ServingStatus::Serving,
            Duration::from_secs(30),
        )
        .await;
        fronts.push(HttpClient::new(gateway.listeners["HTTP"].clone()));
        gateways.push(gateway);
    }

    ReplicatedStack {
        sessions,
        decks: decks.into_iter().map(Some).collect(),
        gateways,
        fronts,
        redis_url,
        redis_prefix,
        session_database_url,
        deck_env,
        deck_addrs,
    }
}

async fn spawn_on(binary: &str, grpc_addr: &str, env: &[(&'static str, String)]) -> ServiceProcess {
    let mut env = env.to_vec();
    env.push(("GRPC_ADDR", grpc_addr.to_owned()));
    env.push(("METRICS_ADDR", "127.0.0.1:0".to_owned()));
    spawn_service(&workspace_binary(binary), &[], &env).await
}

/// `http://a,http://b,...` of the processes' gRPC addresses.
fn url_list(processes: &[ServiceProcess]) -> String {
    processes
        .iter()
        .map(|process| format!("http://{}", process.grpc_addr))
        .collect::<Vec<_>>()
        .join(",")
}

impl ReplicatedStack {
    /// SIGKILLs deck-service replica `i` (no drain: as a crashed pod).
    pub fn kill_deck(&mut self, i: usize) {
        let process = self.decks[i].take().expect("replica running");
        process.sigkill();
    }

    /// Starts deck-service replica `i` again on the address it had.
    pub async fn restart_deck(&mut self, i: usize) {
        let process = respawn_on(
            &workspace_binary("deck-service"),
            &self.deck_addrs[i],
            &self.deck_env,
        )
        .await;
        self.decks[i] = Some(process);
    }

    /// The running deck-service replica `i`.
    pub fn deck(&self, i: usize) -> &ServiceProcess {
        self.decks[i].as_ref().expect("replica running")
    }
}

/// Calls of `method` that `process` has served (any status), from its own `/metrics`.
pub async fn served(process: &ServiceProcess, method: &str) -> u64 {
    let (status, body) = http_get(&process.listeners["metrics"], "/metrics").await;
    assert_eq!(status, 200, "metrics of {}", process.grpc_addr);
    let prefix = format!(r#"grpc_server_requests_total{{method="{method}","#);
    body.lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
