//! The whole back end as separate processes: session-service, deck-service and the
//! gateway, each on free ports, with fresh databases and a random Redis key prefix
//! on the shared test servers. For end-to-end tests, benchmarks and chaos tests.
//!
//! ```ignore
//! let stack = test_support::stack::spawn_stack().await;
//! let response = stack.http.get("/health/ready").send().await;
//! ```

use crate::{
    ServiceConfig, ServiceProcess, conformance::workspace_binary, fresh_database, http::HttpClient,
    key_prefix, redis_url, spawn_service,
};

pub use crate::app::signing_key_file;

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
    /// deck-service's settings as started (options included), to start it again.
    pub deck_config: ServiceConfig,
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
    let log_dir = options.log_dir.as_deref();

    let session = ServiceConfig::session_service(&session_database_url, &redis_url, &redis_prefix)
        .set_all(options.session_env.iter().cloned());
    let session = spawn_logged(&session, log_dir).await;
    let deck_config = deck_config(&deck_database_url, &redis_url, &redis_prefix)
        .set_all(options.deck_env.iter().cloned());
    let deck = spawn_logged(&deck_config, log_dir).await;
    let gateway = gateway_config(&session, &deck, &redis_url, &redis_prefix)
        .set_all(options.gateway_env.iter().cloned());
    let gateway = spawn_logged(&gateway, log_dir).await;
    let http_addr = gateway
        .listeners
        .get("HTTP")
        .expect("gateway reports its HTTP address")
        .clone();
    gateway.wait_ready().await;

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
        deck_config,
    }
}

/// deck-service of a stack: its cache and revocations on the stack's Redis.
fn deck_config(database_url: &str, redis_url: &str, prefix: &str) -> ServiceConfig {
    ServiceConfig::deck_service(database_url, redis_url, prefix).set("SESSION_REDIS_URL", redis_url)
}

/// The gateway of a stack, in front of its two services, following revocations on the
/// stack's Redis. It fetches its verification keys from session-service, as in
/// production.
fn gateway_config(
    session: &ServiceProcess,
    deck: &ServiceProcess,
    redis_url: &str,
    prefix: &str,
) -> ServiceConfig {
    ServiceConfig::gateway(
        &format!("http://{}", session.grpc_addr),
        &format!("http://{}", deck.grpc_addr),
        redis_url,
        prefix,
    )
    .set("SESSION_REDIS_URL", redis_url)
}

/// Spawns a workspace binary; with `log_dir`, through `sh` so its stderr lands in a file
/// (`exec` keeps the pid, so signals still reach the binary).
async fn spawn_logged(config: &ServiceConfig, log_dir: Option<&std::path::Path>) -> ServiceProcess {
    let Some(dir) = log_dir else {
        return config.spawn().await;
    };
    let binary = workspace_binary(config.binary());
    let log = dir.join(format!("{}.log", config.binary()));
    let config = config.clone().set("STACK_LOG_FILE", log.to_string_lossy());
    spawn_service(
        "sh",
        &["-c", r#"exec "$0" 2>>"$STACK_LOG_FILE""#, &binary],
        &config.env(),
    )
    .await
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
        let (code, stdout, stderr) = ServiceConfig::session_service(
            &self.session_database_url,
            &self.redis_url,
            &self.redis_prefix,
        )
        .unset("GRPC_ADDR")
        .run(&[command, email])
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
        let gateway = gateway_config(
            &self.session,
            &self.deck,
            &self.redis_url,
            &self.redis_prefix,
        )
        .set_all(env.iter().cloned())
        .spawn()
        .await;
        gateway.wait_ready().await;
        gateway
    }

    /// Another deck-service replica on this stack's database, Redis and prefix.
    pub async fn spawn_deck_replica(&self) -> ServiceProcess {
        deck_config(&self.deck_database_url, &self.redis_url, &self.redis_prefix)
            .spawn()
            .await
    }
}
