//! Private Redis and PostgreSQL servers for tests that stop, pause or restart them.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind port 0")
        .local_addr()
        .expect("local addr")
        .port()
}

fn wait_for_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on port {port} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "kill -{name} {pid} failed"
    );
}

/// A `redis-server` of this test's own, on a free port, removed on drop.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    extra_args: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a Redis with no persistence.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a Redis with extra `redis-server` arguments (e.g. `--appendonly yes`).
    pub fn start_with(extra_args: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("lge-redis-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create Redis dir");
        let mut server = Self {
            port: free_port(),
            dir,
            extra_args: extra_args.iter().map(|s| (*s).to_owned()).collect(),
            child: None,
        };
        server.resume_process();
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port (and the same data directory).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "Redis is already running");
        self.resume_process();
    }

    fn resume_process(&mut self) {
        let binary = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        let mut command = Command::new(binary);
        command
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command
            .spawn()
            .expect("spawn redis-server (is it installed? `make test` installs it)");
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(10));
    }

    /// Kills the server (SIGKILL: no chance to save anything beyond its AOF).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server cleanly (SIGTERM, waits for exit).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "TERM");
            let _ = child.wait();
        }
    }

    /// Freezes the process (SIGSTOP): connections stay open but nothing answers.
    pub fn pause(&self) {
        signal(self.child.as_ref().expect("running").id(), "STOP");
    }

    /// Thaws a paused process (SIGCONT).
    pub fn resume(&self) {
        signal(self.child.as_ref().expect("running").id(), "CONT");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A paused process ignores SIGKILL until it is continued on some kernels.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A PostgreSQL cluster of this test's own (initdb + pg_ctl), removed on drop.
///
/// The server binaries refuse to run as root, so as root they run as the `postgres`
/// user (`runuser`), on a data directory that user owns.
pub struct PostgresServer {
    port: u16,
    dir: PathBuf,
    running: bool,
}

fn pg_bin(tool: &str) -> PathBuf {
    let dir = std::env::var("PG_BIN_DIR").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    PathBuf::from(dir).join(tool)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"0\n"))
}

fn run_pg_tool(tool: &str, args: &[&str]) {
    let binary = pg_bin(tool);
    let output = if is_root() {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&binary)
            .args(args)
            .output()
    } else {
        Command::new(&binary).args(args).output()
    }
    .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
    assert!(
        output.status.success(),
        "{tool} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl PostgresServer {
    /// initdb and start a cluster on a free port (trust authentication, user `postgres`).
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("lge-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create PostgreSQL dir");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status();
            assert!(status.is_ok_and(|s| s.success()), "chown PostgreSQL dir");
        }
        let data = dir.join("data");
        let data = data.to_str().expect("utf-8 path");
        run_pg_tool(
            "initdb",
            &[
                "-D",
                data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let mut server = Self {
            port: free_port(),
            dir,
            running: false,
        };
        server.restart();
        server
    }

    fn data_dir(&self) -> String {
        self.dir
            .join("data")
            .to_str()
            .expect("utf-8 path")
            .to_owned()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Admin URL (database `postgres`).
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the (stopped) server again on the same port.
    pub fn restart(&mut self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self
            .dir
            .join("log")
            .to_str()
            .expect("utf-8 path")
            .to_owned();
        run_pg_tool(
            "pg_ctl",
            &[
                "-D",
                &self.data_dir(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
        self.running = true;
    }

    /// Stops the server (fast mode: open connections are cut).
    pub fn stop(&mut self) {
        if self.running {
            run_pg_tool(
                "pg_ctl",
                &["-D", &self.data_dir(), "-m", "immediate", "-w", "stop"],
            );
            self.running = false;
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if self.running {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.stop()));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
