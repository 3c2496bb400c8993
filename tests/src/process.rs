//! Spawning the real binaries, reading back the port they bound, and signalling them.

use std::{
    collections::HashMap,
    process::{ExitStatus, Stdio},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// A running service binary, killed on drop.
pub struct ServiceProcess {
    child: Child,
    /// `127.0.0.1:<port>` of the gRPC server.
    pub grpc_addr: String,
    /// Every other `<what> listening on <addr>` line, keyed by `<what>` (e.g. `HTTP`).
    pub listeners: HashMap<String, String>,
}

/// Starts `binary` with `envs` (on top of a clean environment plus `PATH`) and waits up
/// to 60 s for its `... gRPC listening on <addr>` line. Each `(name, value)` is set as
/// an environment variable; pass `GRPC_ADDR=127.0.0.1:0` to get a free port.
pub async fn spawn_service(binary: &str, args: &[&str], envs: &[(&str, String)]) -> ServiceProcess {
    let mut command = Command::new(binary);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "RUST_LOG",
            std::env::var("TEST_SERVICE_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(if std::env::var_os("TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {binary}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut listeners = HashMap::new();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some((head, addr)) = line.split_once(" listening on ") {
                let what = head.rsplit(' ').next().unwrap_or_default().to_owned();
                listeners.insert(what.clone(), addr.trim().to_owned());
                if what == "gRPC" {
                    return true;
                }
            }
        }
        false
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "{binary} did not report its gRPC address (exited or timed out)"
    );
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let grpc_addr = listeners["gRPC"].clone();
    ServiceProcess {
        child,
        grpc_addr,
        listeners,
    }
}

impl ServiceProcess {
    pub fn pid(&self) -> u32 {
        self.child.id().expect("process still running")
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends SIGKILL: no drain, as a crashed pod.
    pub fn sigkill(&self) {
        self.signal("KILL");
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{name} failed");
    }

    /// Waits for the process to exit; panics after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("process did not exit within {timeout:?}"))
            .expect("wait for process")
    }
}

/// Runs `binary` to completion with `envs` and returns (exit code, stdout, stderr).
pub async fn run_to_exit(
    binary: &str,
    args: &[&str],
    envs: &[(&str, String)],
) -> (Option<i32>, String, String) {
    let output = Command::new(binary)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {binary}: {e}"));
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
