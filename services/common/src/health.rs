//! grpc.health.v1 names and the background readiness probe.
//!
//! Every process serves these names (ARCHITECTURE.md, "Health"):
//! - `liveness`: SERVING while the process runs;
//! - `readiness`, `""` and the process's fully-qualified gRPC service names: SERVING
//!   only while every required dependency answers.
//!
//! [`spawn_readiness_probe`] re-checks the dependencies every interval, so readiness
//! follows them both ways within a few seconds, without a restart.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tonic_health::{
    ServingStatus,
    pb::health_server::HealthServer,
    server::{HealthReporter, HealthService},
};

use crate::shutdown::Shutdown;

/// Health name that is SERVING while the process runs.
pub const LIVENESS: &str = "liveness";
/// Health name that is SERVING while the process can do its job.
pub const READINESS: &str = "readiness";

/// Handle on the health statuses of one process.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    readiness_names: Arc<[String]>,
    /// Held through each update of the readiness names, so two updates never
    /// interleave name by name; `true` once draining, after which readiness stays off.
    draining: Arc<tokio::sync::Mutex<bool>>,
    /// What the readiness names say, readable without awaiting (the `readiness_serving`
    /// gauge is read at each scrape).
    serving: Arc<AtomicBool>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("readiness_names", &self.readiness_names)
            .finish()
    }
}

impl Health {
    /// Creates the statuses (liveness SERVING, every readiness name NOT_SERVING until the
    /// first probe passes) and the grpc.health.v1 service that serves them.
    pub async fn new(service_names: &[&str]) -> (Self, HealthServer<HealthService>) {
        let reporter = HealthReporter::new();
        let service = HealthServer::new(HealthService::from_health_reporter(reporter.clone()));
        let readiness_names: Arc<[String]> = [READINESS, ""]
            .iter()
            .chain(service_names)
            .map(|name| (*name).to_owned())
            .collect();
        let health = Self {
            reporter,
            readiness_names,
            draining: Arc::new(tokio::sync::Mutex::new(false)),
            serving: Arc::new(AtomicBool::new(false)),
        };
        health
            .reporter
            .set_service_status(LIVENESS, ServingStatus::Serving)
            .await;
        health.set_ready(false).await;
        (health, service)
    }

    /// Sets every readiness name at once. Once [`Health::drain`] has run, readiness
    /// stays NOT_SERVING: a probe that checked its dependencies before the shutdown
    /// began cannot turn it back on.
    pub async fn set_ready(&self, ready: bool) {
        let draining = self.draining.lock().await;
        self.set_all(ready && !*draining).await;
    }

    /// Turns every readiness name NOT_SERVING for good: the process is shutting down.
    pub async fn drain(&self) {
        let mut draining = self.draining.lock().await;
        *draining = true;
        self.set_all(false).await;
    }

    /// Whether the readiness names are SERVING now.
    pub fn is_ready(&self) -> bool {
        self.serving.load(Ordering::Relaxed)
    }

    /// Exports [`Health::is_ready`] as the gauge `readiness_serving` (1 SERVING, 0 not):
    /// the series the "process not ready" alert watches (deploy/prometheus/). The
    /// kubelet's probe only takes a pod out of its Service; this tells an operator.
    pub fn register_metrics(&self, metrics: &crate::metrics::Metrics) {
        let serving = self.serving.clone();
        metrics.register_gauge_fn(
            "readiness_serving",
            "1 while the grpc.health.v1 readiness names are SERVING, else 0",
            move || i64::from(serving.load(Ordering::Relaxed)),
        );
    }

    async fn set_all(&self, ready: bool) {
        let status = if ready {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for name in self.readiness_names.iter() {
            self.reporter.set_service_status(name, status).await;
        }
        // Last, so the gauge never says SERVING before the health names do.
        self.serving.store(ready, Ordering::Relaxed);
    }
}

/// The future a dependency check returns.
pub type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One dependency readiness waits for, e.g. PostgreSQL or the sessions Redis.
pub struct Dependency {
    name: &'static str,
    check: Box<dyn Fn() -> CheckFuture + Send + Sync>,
}

impl Dependency {
    /// `check` answers `Ok` while the dependency is usable.
    pub fn new<F, Fut, E>(name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        Self {
            name,
            check: Box::new(move || {
                let fut = check();
                Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
            }),
        }
    }
}

/// Checks `dependencies` every `interval` and sets readiness accordingly until
/// `shutdown` fires. Each check is bounded by the interval (at least one second), so
/// one that hangs counts as down. Changes are logged once, not on every round.
pub fn spawn_readiness_probe(
    health: Health,
    dependencies: Vec<Dependency>,
    interval: Duration,
    shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    let check_timeout = interval.max(Duration::from_secs(1));
    tokio::spawn(async move {
        let mut last: Option<bool> = None;
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.wait() => return,
            }
            let mut ready = true;
            for dependency in &dependencies {
                let outcome = match tokio::time::timeout(check_timeout, (dependency.check)()).await
                {
                    Ok(outcome) => outcome,
                    Err(_) => Err(format!("no answer within {check_timeout:?}")),
                };
                if let Err(error) = outcome {
                    ready = false;
                    if last != Some(false) {
                        tracing::warn!(dependency = dependency.name, %error, "dependency unavailable");
                    }
                }
            }
            if shutdown.is_triggered() {
                return;
            }
            if last != Some(ready) {
                tracing::info!(ready, "readiness changed");
                health.set_ready(ready).await;
                last = Some(ready);
            }
        }
    })
}

impl Dependency {
    /// PostgreSQL answers `SELECT 1`.
    pub fn postgres(pool: sqlx::PgPool) -> Self {
        Self::new("postgres", move || {
            let pool = pool.clone();
            async move { crate::postgres::ping(&pool).await }
        })
    }

    /// The Redis of a role answers PING.
    pub fn redis(name: &'static str, pool: crate::redis::RedisPool) -> Self {
        Self::new(name, move || {
            let pool = pool.clone();
            async move { pool.ping().await }
        })
    }
}
