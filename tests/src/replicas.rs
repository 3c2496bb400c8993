//! N replicas of every process, as `REPLICAS=N make run` starts them: N session-services
//! and N deck-services sharing one database each and one Redis key prefix, and N gateways,
//! every one of them balancing over all the service replicas through comma-separated
//! service URLs (`common::balance`). Which replica served a call is read from that
//! process's own `/metrics`, never from a client's bookkeeping.

use crate::{
    ServiceConfig, ServiceProcess, fresh_database, http::HttpClient, key_prefix, redis_url,
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
    deck_config: ServiceConfig,
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

    let session_config =
        ServiceConfig::session_service(&session_database_url, &redis_url, &redis_prefix)
            .set_all(options.session_env.iter().cloned());
    let sessions = spawn_n(n, &session_config).await;
    let deck_config = ServiceConfig::deck_service(&deck_database_url, &redis_url, &redis_prefix)
        .set_all(options.deck_env.iter().cloned());
    let decks = spawn_n(n, &deck_config).await;
    let deck_addrs: Vec<String> = decks.iter().map(|d| d.grpc_addr.clone()).collect();

    let gateway_config = ServiceConfig::gateway(
        &url_list(&sessions),
        &url_list(&decks),
        &redis_url,
        &redis_prefix,
    )
    .set("RATE_LIMIT_API_PER_MINUTE", "1000000")
    .set_all(options.gateway_env.iter().cloned());
    let mut gateways = Vec::new();
    let mut fronts = Vec::new();
    for _ in 0..n {
        let gateway = spawn_with_metrics(&gateway_config).await;
        gateway.wait_ready().await;
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
        deck_config,
        deck_addrs,
    }
}

/// `n` processes of `config`, one after the other (so migrations run once).
async fn spawn_n(n: usize, config: &ServiceConfig) -> Vec<ServiceProcess> {
    let mut processes = Vec::new();
    for _ in 0..n {
        processes.push(spawn_with_metrics(config).await);
    }
    processes
}

/// A free metrics port each: replicas on one host cannot share the default.
async fn spawn_with_metrics(config: &ServiceConfig) -> ServiceProcess {
    config
        .clone()
        .set("METRICS_ADDR", "127.0.0.1:0")
        .spawn()
        .await
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
        let process = self.deck_config.respawn_on(&self.deck_addrs[i]).await;
        self.decks[i] = Some(process);
    }

    /// The running deck-service replica `i`.
    pub fn deck(&self, i: usize) -> &ServiceProcess {
        self.decks[i].as_ref().expect("replica running")
    }
}

/// Calls of `method` that `process` has served (any status), from its own `/metrics`.
pub async fn served(process: &ServiceProcess, method: &str) -> u64 {
    let metrics = HttpClient::new(process.metrics_addr()).scrape().await;
    let prefix = format!(r#"grpc_server_requests_total{{method="{method}","#);
    metrics
        .text()
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
