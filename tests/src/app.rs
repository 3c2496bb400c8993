//! The one way a test configures and starts a service (STYLE.md, "three test tiers").
//!
//! A [`ServiceConfig`] is a binary's settings, keyed by their environment variable
//! (`DATABASE_URL`, ...). The same description starts the service either way a test
//! needs it:
//!
//! - as a process: [`ServiceConfig::spawn`] hands the settings over as environment
//!   variables (on top of a clean environment), as a deployment does;
//! - in the test's own process: [`ServiceConfig::parse`] turns them into the binary's
//!   command line (`--database-url=...`) for its clap `Cli`, because the environment is
//!   shared by every test of the process and command-line flags are not. The crate then
//!   builds its `Application` and hands its `run()` to [`InProcess::start`], which shuts
//!   it down when the test drops it.
//!
//! Every setting has both spellings (`common::config`: `--flag` and its env var), so one
//! name per setting is enough. The presets ([`ServiceConfig::session_service`],
//! [`ServiceConfig::deck_service`], [`ServiceConfig::gateway`]) hold what every test of
//! that binary needs: ports 0, the test's own database and key prefix, the test keys.

use std::{future::Future, time::Duration};

use common::shutdown::Shutdown;

use crate::{
    ServiceProcess, ServingStatus, TestTokens, conformance::workspace_binary, run_to_exit,
    spawn_service, wait_for_health,
};

/// Ask the OS for a free port.
pub const ANY_PORT: &str = "127.0.0.1:0";

/// A binary and its settings, by environment variable name.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    binary: String,
    /// In insertion order; a name appears once (a later `set` replaces the value).
    settings: Vec<(String, String)>,
}

impl ServiceConfig {
    /// No settings yet for `binary`, a workspace binary's name (`deck-service`).
    pub fn new(binary: &str) -> Self {
        Self {
            binary: binary.to_owned(),
            settings: Vec::new(),
        }
    }

    /// session-service on a free gRPC port, signing with the test key
    /// ([`signing_key_file`]), so [`TestTokens`] tokens verify against it.
    pub fn session_service(database_url: &str, redis_url: &str, prefix: &str) -> Self {
        Self::new("session-service")
            .set("GRPC_ADDR", ANY_PORT)
            .set("DATABASE_URL", database_url)
            .set("SESSION_REDIS_URL", redis_url)
            .set("REDIS_KEY_PREFIX", prefix)
            .set("JWT_PRIVATE_KEY_FILE", signing_key_file())
    }

    /// deck-service on a free gRPC port, with its cache on `cache_redis_url`, verifying
    /// tokens with the [`TestTokens`] key. It follows revocations only where a test sets
    /// `SESSION_REDIS_URL` (see [`wait_for_revocations`]).
    pub fn deck_service(database_url: &str, cache_redis_url: &str, prefix: &str) -> Self {
        Self::new("deck-service")
            .set("GRPC_ADDR", ANY_PORT)
            .set("DATABASE_URL", database_url)
            .set("CACHE_REDIS_URL", cache_redis_url)
            .set("REDIS_KEY_PREFIX", prefix)
            .set("JWT_PUBLIC_KEYS_FILE", test_jwks_file())
    }

    /// The gateway on free HTTP and gRPC ports in front of the services at
    /// `session_url` and `deck_url` (`http://host:port`, or a comma list), with its
    /// rate limits on `redis_url`, and readiness checked every 200 ms. It fetches its
    /// verification keys from session-service unless a test sets
    /// `JWT_PUBLIC_KEYS_FILE`, and follows revocations only where a test sets
    /// `SESSION_REDIS_URL` (see [`wait_for_revocations`]).
    pub fn gateway(session_url: &str, deck_url: &str, redis_url: &str, prefix: &str) -> Self {
        Self::new("gateway")
            .set("HTTP_ADDR", ANY_PORT)
            .set("GRPC_ADDR", ANY_PORT)
            .set("SESSION_SERVICE_URL", session_url)
            .set("DECK_SERVICE_URL", deck_url)
            .set("RATE_LIMIT_REDIS_URL", redis_url)
            .set("REDIS_KEY_PREFIX", prefix)
            .set("READINESS_INTERVAL_MS", "200")
    }

    /// The workspace binary's name.
    pub fn binary(&self) -> &str {
        &self.binary
    }

    /// Sets `name` (an env var, `DATABASE_URL`, or its flag, `--database-url`),
    /// replacing an earlier value.
    pub fn set(mut self, name: &str, value: impl ToString) -> Self {
        let name = setting_name(name);
        let value = value.to_string();
        match self.settings.iter_mut().find(|(n, _)| *n == name) {
            Some(setting) => setting.1 = value,
            None => self.settings.push((name, value)),
        }
        self
    }

    /// Sets each of `overrides`, in order (a test's own settings over a preset's).
    pub fn set_all<N: AsRef<str>, V: ToString>(
        self,
        overrides: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        overrides.into_iter().fold(self, |config, (name, value)| {
            config.set(name.as_ref(), value)
        })
    }

    /// Removes `name`, so the binary's default applies.
    pub fn unset(mut self, name: &str) -> Self {
        let name = setting_name(name);
        self.settings.retain(|(n, _)| *n != name);
        self
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        let name = setting_name(name);
        self.settings
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The settings as environment variables.
    pub fn env(&self) -> Vec<(&str, String)> {
        self.settings
            .iter()
            .map(|(name, value)| (name.as_str(), value.clone()))
            .collect()
    }

    /// The settings as a command line: the binary's name, then `--flag=value` each.
    pub fn args(&self) -> Vec<String> {
        let flags = self.settings.iter().map(|(name, value)| {
            format!("--{}={value}", name.to_ascii_lowercase().replace('_', "-"))
        });
        std::iter::once(self.binary.clone()).chain(flags).collect()
    }

    /// The binary's `Cli` parsed from [`ServiceConfig::args`], for an in-process start.
    pub fn parse<C: clap::Parser>(&self) -> C {
        C::try_parse_from(self.args())
            .unwrap_or_else(|e| panic!("test configuration of {} parses: {e}", self.binary))
    }

    /// Starts the binary with these settings and waits until it reports its gRPC
    /// address (not until it is ready: see [`ServiceProcess::wait_ready`]).
    pub async fn spawn(&self) -> ServiceProcess {
        spawn_service(&workspace_binary(&self.binary), &[], &self.env()).await
    }

    /// Starts the binary on the gRPC address `addr` a killed instance had, with a free
    /// metrics port (the default, gRPC port + 1000, could be taken). Retries for a few
    /// seconds while the old socket lingers.
    pub async fn respawn_on(&self, addr: &str) -> ServiceProcess {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpListener::bind(addr).is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{addr} is still taken after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.clone()
            .set("GRPC_ADDR", addr)
            .set("METRICS_ADDR", ANY_PORT)
            .spawn()
            .await
    }

    /// Runs the binary with these settings and `args` (a subcommand) to its exit:
    /// (exit code, stdout, stderr).
    pub async fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        run_to_exit(&workspace_binary(&self.binary), args, &self.env()).await
    }
}

/// `DATABASE_URL` for `--database-url` (or `DATABASE_URL` itself).
fn setting_name(name: &str) -> String {
    match name.strip_prefix("--") {
        Some(flag) => flag.to_ascii_uppercase().replace('-', "_"),
        None => name.to_owned(),
    }
}

/// The signing key session-service uses in tests (the trusted [`TestTokens`] key).
pub fn signing_key_file() -> String {
    format!(
        "{}/fixtures/test-signing-key.pem",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A JWKS file with the trusted [`TestTokens`] key, for services that verify tokens.
pub fn test_jwks_file() -> String {
    TestTokens::new().jwks_file().to_string_lossy().into_owned()
}

impl ServiceProcess {
    /// Waits (up to 30 s) until the process's readiness is SERVING.
    pub async fn wait_ready(&self) {
        wait_for_health(
            &self.grpc_addr,
            "readiness",
            ServingStatus::Serving,
            Duration::from_secs(30),
        )
        .await;
    }

    /// `host:port` of the process's `/metrics`.
    pub fn metrics_addr(&self) -> &str {
        &self.listeners["metrics"]
    }
}

/// An application running on the test's runtime, shut down when dropped (as a
/// [`ServiceProcess`] is killed when dropped).
pub struct InProcess {
    shutdown: Shutdown,
}

impl InProcess {
    /// Runs `run` (the application's `run()`, built with `shutdown`) in the background.
    pub fn start<F>(shutdown: Shutdown, run: F) -> Self
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        tokio::spawn(run);
        Self { shutdown }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// Waits (up to 5 s) for the revocation snapshot to be in (`revocation_push_live 1` on
/// the `/metrics` at `metrics_addr`). Test tokens name no real session: until then the
/// per-request session lookup would refuse them. A dead Redis never gets there; its
/// tests take the fallback path, so this returns after 5 s rather than failing.
pub async fn wait_for_revocations(metrics_addr: &str) {
    let metrics = crate::http::HttpClient::new(metrics_addr);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while metrics.scrape().await.value("revocation_push_live") != Some(1.0)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_description_gives_the_environment_and_the_command_line() {
        let config = ServiceConfig::new("deck-service")
            .set("GRPC_ADDR", ANY_PORT)
            .set("--cache-l1-max-bytes", 0)
            .set_all([("GRPC_ADDR", "127.0.0.1:7000")])
            .set("REDIS_KEY_PREFIX", "t1:")
            .unset("--redis-key-prefix");

        assert_eq!(
            config.env(),
            [
                ("GRPC_ADDR", "127.0.0.1:7000".to_owned()),
                ("CACHE_L1_MAX_BYTES", "0".to_owned())
            ]
        );
        assert_eq!(
            config.args(),
            [
                "deck-service",
                "--grpc-addr=127.0.0.1:7000",
                "--cache-l1-max-bytes=0"
            ]
        );
        assert_eq!(config.get("--grpc-addr"), Some("127.0.0.1:7000"));
    }
}
