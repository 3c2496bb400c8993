//! An in-process session-service on port 0 over a fresh database and a random Redis
//! key prefix, with a gRPC client, direct handles on its stores, and its clock.

use std::{sync::Arc, time::Duration};

use common::{
    clock::ManualClock,
    shutdown::Shutdown,
    status::{Details, Violation},
};
use proto::session::v1::{self as pb, session_service_client::SessionServiceClient};
use session_service::{
    config::Cli,
    startup::{Application, Options},
};
use test_support::{
    InProcess, ServiceConfig, ServingStatus, TestTokens, fresh_database, key_prefix, redis_url,
    wait_for_health,
};
use tonic::{Code, Request, Status, transport::Channel};
use uuid::Uuid;

pub const PASSWORD: &str = "kalimera2024";

pub struct TestApp {
    pub client: SessionServiceClient<Channel>,
    pub pg: sqlx::PgPool,
    pub database_url: String,
    /// The service's Redis (one node or a cluster), for looking at keys directly.
    pub redis: common::redis::RedisPool,
    pub prefix: String,
    /// Mints tokens with the service's own signing key (the test fixture key).
    pub tokens: TestTokens,
    /// `host:port` of the Prometheus `/metrics` endpoint.
    pub metrics_addr: String,
    /// The service's clock: it runs with the system clock, and a test moves it ahead
    /// instead of sleeping (token expiry, session lifetime, grace window, login locks).
    /// Redis TTLs still run on Redis's own clock.
    pub clock: ManualClock,
    /// Shuts the service down when the test drops the app.
    _running: InProcess,
}

/// Starts the service with default settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[], None).await
}

/// Starts the service with `settings` over the test defaults below (each an env var
/// name, e.g. `("REFRESH_GRACE_SECONDS", "1")`), and optionally a Redis of its own
/// instead of the shared one.
pub async fn spawn_app_with(settings: &[(&str, &str)], redis: Option<String>) -> TestApp {
    test_support::init();
    let database_url = fresh_database().await;
    let redis = redis.unwrap_or_else(redis_url);
    let prefix = key_prefix();
    let config = ServiceConfig::session_service(&database_url, &redis, &prefix)
        .set("METRICS_ADDR", "127.0.0.1:0")
        .set("READINESS_INTERVAL_MS", 100)
        .set("SHUTDOWN_TIMEOUT_MS", 1000)
        .set("PASSWORD_HASH_CONCURRENCY", 2)
        .set_all(settings.iter().copied());
    let cli: Cli = config.parse();

    let shutdown = Shutdown::new();
    let clock = ManualClock::running();
    let options = Options {
        clock: Arc::new(clock.clone()),
    };
    let application = Application::build(cli.config, options, shutdown.clone())
        .await
        .expect("build session-service");
    let addr = application.local_addr().to_string();
    let metrics_addr = application.metrics_addr().to_string();
    let running = InProcess::start(shutdown, application.run());
    wait_for_health(
        &addr,
        "readiness",
        ServingStatus::Serving,
        Duration::from_secs(15),
    )
    .await;

    let client = SessionServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let pg = sqlx::PgPool::connect(&database_url)
        .await
        .expect("connect test database");
    TestApp {
        client,
        pg,
        database_url,
        redis: test_redis_pool(&redis),
        prefix,
        tokens: TestTokens::new(),
        metrics_addr,
        clock,
        _running: running,
    }
}

/// A pool on the test Redis, single node or cluster (`make test` runs this suite on both).
fn test_redis_pool(url: &str) -> common::redis::RedisPool {
    let config = common::config::RedisConfig {
        redis_connect_timeout: Duration::from_secs(2),
        redis_response_timeout: Duration::from_secs(2),
        redis_key_prefix: String::new(),
    };
    common::redis::RedisPool::new(url, &config).expect("test Redis URL")
}

pub fn unique_email() -> String {
    format!(
        "user-{}@example.com",
        &Uuid::new_v4().simple().to_string()[..12]
    )
}

pub fn client_info(ip: &str) -> Option<pb::ClientInfo> {
    Some(pb::ClientInfo {
        ip_address: ip.into(),
        user_agent: "test-agent/1.0".into(),
    })
}

/// `request` with `authorization: Bearer <access_token>`.
pub fn bearer<T>(access_token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {access_token}")
            .parse()
            .expect("ascii token"),
    );
    request
}

/// The claims of a JWT, read without verification.
pub fn claims_of(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("three JWT parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON payload")
}

pub fn user_id_of(pair: &pb::TokenPair) -> Uuid {
    claims_of(&pair.access_token)["sub"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

pub fn session_id_of(pair: &pb::TokenPair) -> Uuid {
    claims_of(&pair.access_token)["sid"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The `ErrorInfo` reason and `RetryInfo` delay a status carries.
pub fn refusal_details(status: &Status) -> (Option<String>, Option<Duration>) {
    let details = Details::of(status);
    (details.reason, details.retry_after)
}

/// Asserts UNAUTHENTICATED with the `ErrorInfo` reason `reason` (a `common::status::reason`).
#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(result: Result<T, Status>, reason: &str) {
    match result {
        Ok(value) => panic!("expected UNAUTHENTICATED {reason}, got {value:?}"),
        Err(status) => {
            assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
            assert_eq!(
                Details::of(&status).reason.as_deref(),
                Some(reason),
                "{status:?}"
            );
        }
    }
}

/// Asserts INVALID_ARGUMENT whose `BadRequest` names exactly `fields`, in order.
#[track_caller]
pub fn assert_invalid_fields<T: std::fmt::Debug>(result: Result<T, Status>, fields: &[&str]) {
    match result {
        Ok(value) => panic!("expected INVALID_ARGUMENT {fields:?}, got {value:?}"),
        Err(status) => {
            assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
            let named: Vec<String> = Details::of(&status)
                .violations
                .into_iter()
                .map(|Violation { field, .. }| field)
                .collect();
            assert_eq!(named, fields, "{status:?}");
        }
    }
}

/// Asserts an error status with `code` whose message starts with `prefix`.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, prefix: &str) {
    match result {
        Ok(value) => panic!("expected {code:?} \"{prefix}…\", got {value:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "message: {}", status.message());
            assert!(
                status.message().starts_with(prefix),
                "expected \"{prefix}…\", got {:?}",
                status.message()
            );
        }
    }
}

impl TestApp {
    pub async fn register(&self, email: &str) -> pb::TokenPair {
        self.client
            .clone()
            .register(pb::RegisterRequest {
                email: email.into(),
                password: PASSWORD.into(),
                full_name: "Μαρία Παπαδοπούλου".into(),
                client: client_info("10.0.0.1"),
            })
            .await
            .expect("register")
            .into_inner()
    }

    pub async fn login(&self, email: &str, password: &str) -> Result<pb::TokenPair, Status> {
        self.client
            .clone()
            .login(pb::LoginRequest {
                email: email.into(),
                password: password.into(),
                client: client_info("10.0.0.2"),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// A login as if from the client address `ip`.
    pub async fn login_from(
        &self,
        email: &str,
        password: &str,
        ip: &str,
    ) -> Result<pb::TokenPair, Status> {
        self.client
            .clone()
            .login(pb::LoginRequest {
                email: email.into(),
                password: password.into(),
                client: client_info(ip),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// The value of the counter `name` (e.g. `session_password_hashes_total`) on `/metrics`.
    pub async fn counter(&self, name: &str) -> u64 {
        let body = self.scrape_metrics().await;
        body.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{name} missing in:\n{body}"))
            .parse()
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// The body of `GET /metrics`.
    pub async fn scrape_metrics(&self) -> String {
        test_support::http::HttpClient::new(self.metrics_addr.clone())
            .scrape()
            .await
            .0
    }

    pub async fn refresh(&self, refresh_token: &str) -> Result<pb::TokenPair, Status> {
        self.client
            .clone()
            .refresh(pb::RefreshRequest {
                refresh_token: refresh_token.into(),
                client: client_info("10.0.0.3"),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn list_sessions(&self, access_token: &str) -> Vec<pb::Session> {
        self.client
            .clone()
            .list_sessions(bearer(access_token, pb::ListSessionsRequest {}))
            .await
            .expect("list sessions")
            .into_inner()
            .sessions
    }

    /// A valid access token for `user_id` (signed with the service's key), for calls
    /// after every session of the user has ended.
    pub fn access_token_for(&self, user_id: Uuid) -> String {
        self.tokens.access_token(user_id, false)
    }

    /// Every Redis key of this test's prefix (on every master of a cluster), but the
    /// revocation snapshot, which outlives the sessions it names by design (see
    /// [`TestApp::revocations`]).
    pub async fn redis_keys(&self) -> Vec<String> {
        let snapshot = common::revocation::snapshot_key(&self.prefix);
        let mut keys: Vec<String> = self
            .redis_command::<Vec<String>>(redis::cmd("KEYS").arg(format!("{}*", self.prefix)))
            .await
            .into_iter()
            .filter(|key| *key != snapshot)
            .collect();
        keys.sort();
        keys
    }

    /// The revocations in the snapshot, oldest first.
    pub async fn revocations(&self) -> Vec<common::revocation::Revocation> {
        let key = common::revocation::snapshot_key(&self.prefix);
        let members: Vec<String> = self
            .redis_command(redis::cmd("ZRANGE").arg(key).arg(0).arg(-1))
            .await;
        let mut revocations: Vec<common::revocation::Revocation> = members
            .iter()
            .map(|member| serde_json::from_str(member).expect("a revocation"))
            .collect();
        revocations.sort_by_key(|revocation| revocation.at_ms);
        revocations
    }

    /// Runs one command on the service's Redis.
    pub async fn redis_command<T: redis::FromRedisValue + Send + 'static>(
        &self,
        command: &redis::Cmd,
    ) -> T {
        let command = command.clone();
        self.redis
            .run(|mut connection| async move { command.query_async::<T>(&mut connection).await })
            .await
            .expect("Redis command")
    }
}
