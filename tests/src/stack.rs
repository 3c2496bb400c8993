//! The whole back end as separate processes: session-service, deck-service and the
//! gateway, each on free ports, with fresh databases and a random Redis key prefix
//! on the shared test servers. For end-to-end tests, benchmarks and chaos tests.
//!
//! ```ignore
//! let stack = test_support::stack::spawn_stack().await;
//! let response = stack.http.get("/health/ready").send().await;
//! ```

use std::time::Duration;

use crate::{
    ServiceProcess, ServingStatus, TestTokens, conformance::workspace_binary, fresh_database,
    http::HttpClient, key_prefix, redis_url, run_to_exit, spawn_service, wait_for_health,
};

/// Knobs of [`spawn_stack_with`]; `Default` is what most tests want.
#[derive(Clone, Debug, Default)]
pub struct StackOptions {
    /// Extra environment of the gateway (e.g. `RATE_LIMIT_API_PER_MINUTE`), applied last.
    pub gateway_env: Vec<(&'static str, String)>,
    /// Extra environment of session-service, applied last.
    pub session_env: Vec<(&'static str, String)>,
    /// Extra environment of deck-service, applied last.
    pub deck_env: Vec<(&'static str, String)>,
    /// Redis URL for all three roles (default: the shared test Redis).
    pub redis_url: Option<String>,
    /// When set, each process's log (stderr) is appended to `<dir>/<binary>.log`.
    pub log_dir: Option<std::path::PathBuf>,
}

/// The three running processes (killed on drop) and an HTTP client for the gateway.
pub struct Stack {
    pub session: ServiceProcess,
    pub deck: ServiceProcess,
    pub gateway: ServiceProcess,
    /// Client of the gateway's HTTP address.
    pub http: HttpClient,
    /// `127.0.0.1:<port>` of the gateway's HTTP API.
    pub http_addr: String,
    /// The Redis key prefix every process of this stack uses.
    pub redis_prefix: String,
    pub redis_url: String,
    pub session_database_url: String,
    pub deck_database_url: String,
}

/// The signing key session-service uses in tests (the trusted [`TestTokens`] key).
pub fn signing_key_file() -> String {
    format!(
        "{}/fixtures/test-signing-key.pem",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Starts the stack with default options and waits until the gateway is ready.
pub async fn spawn_stack() -> Stack {
    spawn_stack_with(StackOptions::default()).await
}

/// Starts session-service, deck-service and the gateway (in that order) and waits
/// until the gateway's readiness reports both services SERVING.
pub async fn spawn_stack_with(options: StackOptions) -> Stack {
    crate::init();
    let redis_url = options.redis_url.clone().unwrap_or_else(redis_url);
    let redis_prefix = key_prefix();
    let session_database_url = fresh_database().await;
    let deck_database_url = fresh_database().await;
    let jwks_file = TestTokens::new().jwks_file().to_string_lossy().into_owned();

    let mut session_env = vec![
        ("GRPC_ADDR", "127.0.0.1:0".to_owned()),
        ("DATABASE_URL", session_database_url.clone()),
        ("SESSION_REDIS_URL", redis_url.clone()),
        ("REDIS_KEY_PREFIX", redis_prefix.clone()),
        ("JWT_PRIVATE_KEY_FILE", signing_key_file()),
    ];
    session_env.extend(options.session_env.iter().cloned());
    let session = spawn_logged("session-service", &session_env, options.log_dir.as_deref()).await;

    let mut deck_env = vec![
        ("GRPC_ADDR", "127.0.0.1:0".to_owned()),
        ("DATABASE_URL", deck_database_url.clone()),
        ("CACHE_REDIS_URL", redis_url.clone()),
        ("SESSION_REDIS_URL", redis_url.clone()),
        ("REDIS_KEY_PREFIX", redis_prefix.clone()),
        ("JWT_PUBLIC_KEYS_FILE", jwks_file),
    ];
    deck_env.extend(options.deck_env.iter().cloned());
    let deck = spawn_logged("deck-service", &deck_env, options.log_dir.as_deref()).await;

    // The gateway fetches its verification keys from session-service, as in production.
    let mut gateway_env = vec![
        ("HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("GRPC_ADDR", "127.0.0.1:0".to_owned()),
        (
            "SESSION_SERVICE_URL",
            format!("http://{}", session.grpc_addr),
        ),
        ("DECK_SERVICE_URL", format!("http://{}", deck.grpc_addr)),
        ("RATE_LIMIT_REDIS_URL", redis_url.clone()),
        ("SESSION_REDIS_URL", redis_url.clone()),
        ("REDIS_KEY_PREFIX", redis_prefix.clone()),
        ("READINESS_INTERVAL_MS", "200".to_owned()),
    ];
    gateway_env.extend(options.gateway_env.iter().cloned());
    let gateway = spawn_logged("gateway", &gateway_env, options.log_dir.as_deref()).await;
    let http_addr = gateway
        .listeners
        .get("HTTP")
        .expect("gateway reports its HTTP address")
        .clone();
    wait_for_health(
        &gateway.grpc_addr,
        "readiness",
        ServingStatus::Serving,
        Duration::from_secs(30),
    )
    .await;

    Stack {
        session,
        deck,
        gateway,
        http: HttpClient::new(http_addr.clone()),
        http_addr,
        redis_prefix,
        redis_url,
        session_database_url,
        deck_database_url,
    }
}

/// Spawns a workspace binary; with `log_dir`, through `sh` so its stderr lands in a file
/// (`exec` keeps the pid, so signals still reach the binary).
async fn spawn_logged(
    name: &str,
    envs: &[(&'static str, String)],
    log_dir: Option<&std::path::Path>,
) -> ServiceProcess {
    let binary = workspace_binary(name);
    match log_dir {
        None => spawn_service(&binary, &[], envs).await,
        Some(dir) => {
            let log = dir
                .join(format!("{name}.log"))
                .to_string_lossy()
                .into_owned();
            let mut envs = envs.to_vec();
            envs.push(("STACK_LOG_FILE", log));
            spawn_service(
                "sh",
                &["-c", r#"exec "$0" 2>>"$STACK_LOG_FILE""#, &binary],
                &envs,
            )
            .await
        }
    }
}

impl Stack {
    /// Registers a user through the API and returns its TokenResponse JSON.
    pub async fn register(
        &self,
        email: &str,
        password: &str,
        full_name: &str,
    ) -> serde_json::Value {
        let response = self
            .http
            .post("/api/v1/auth/register")
            .json(
                &serde_json::json!({"email": email, "password": password, "full_name": full_name}),
            )
            .send()
            .await;
        assert_eq!(
            response.status,
            201,
            "register {email}: {}",
            response.text()
        );
        response.json()
    }

    /// Makes an existing user a superuser with session-service's `make-superuser`
    /// subcommand (the role shows in tokens issued afterwards: log in again).
    pub async fn make_superuser(&self, email: &str) {
        self.change_user("make-superuser", email).await;
    }

    /// Runs session-service's user subcommand `command` (`make-superuser`,
    /// `remove-superuser`, `deactivate-user`) on `email`, which must succeed; it ends
    /// every session and access token of the user.
    pub async fn change_user(&self, command: &str, email: &str) {
        let (code, stdout, stderr) = run_to_exit(
            &workspace_binary("session-service"),
            &[command, email],
            &[
                ("DATABASE_URL", self.session_database_url.clone()),
                ("SESSION_REDIS_URL", self.redis_url.clone()),
                ("REDIS_KEY_PREFIX", self.redis_prefix.clone()),
                ("JWT_PRIVATE_KEY_FILE", signing_key_file()),
            ],
        )
        .await;
        assert_eq!(code, Some(0), "{command} {email}: {stdout}{stderr}");
    }

    /// Logs in and returns the TokenResponse JSON.
    pub async fn login(&self, email: &str, password: &str) -> serde_json::Value {
        let response = self
            .http
            .post("/api/v1/auth/login")
            .json(&serde_json::json!({"email": email, "password": password}))
            .send()
            .await;
        assert_eq!(response.status, 200, "login {email}: {}", response.text());
        response.json()
    }

    /// Another gateway replica on this stack's services, Redis and prefix, with `env`
    /// applied last; ready when this returns.
    pub async fn spawn_gateway_replica(&self, env: &[(&'static str, String)]) -> ServiceProcess {
        let mut gateway_env = vec![
            ("HTTP_ADDR", "127.0.0.1:0".to_owned()),
            ("GRPC_ADDR", "127.0.0.1:0".to_owned()),
            (
                "SESSION_SERVICE_URL",
                format!("http://{}", self.session.grpc_addr),
            ),
            (
                "DECK_SERVICE_URL",
                format!("http://{}", self.deck.grpc_addr),
            ),
            ("RATE_LIMIT_REDIS_URL", self.redis_url.clone()),
            ("SESSION_REDIS_URL", self.redis_url.clone()),
            ("REDIS_KEY_PREFIX", self.redis_prefix.clone()),
            ("READINESS_INTERVAL_MS", "200".to_owned()),
        ];
        gateway_env.extend(env.iter().cloned());
        let gateway = spawn_logged("gateway", &gateway_env, None).await;
        wait_for_health(
            &gateway.grpc_addr,
            "readiness",
            ServingStatus::Serving,
            Duration::from_secs(30),
        )
        .await;
        gateway
    }

    /// Another deck-service replica on this stack's database, Redis and prefix.
    pub async fn spawn_deck_replica(&self) -> ServiceProcess {
        let jwks_file = TestTokens::new().jwks_file().to_string_lossy().into_owned();
        let deck_env = vec![
            ("GRPC_ADDR", "127.0.0.1:0".to_owned()),
            ("DATABASE_URL", self.deck_database_url.clone()),
            ("CACHE_REDIS_URL", self.redis_url.clone()),
            ("SESSION_REDIS_URL", self.redis_url.clone()),
            ("REDIS_KEY_PREFIX", self.redis_prefix.clone()),
            ("JWT_PUBLIC_KEYS_FILE", jwks_file),
        ];
        spawn_logged("deck-service", &deck_env, None).await
    }
}
