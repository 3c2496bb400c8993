//! Fault-injection helpers for the resilience tests (`tests/tests/resilience.rs`).
//!
//! [`exchange`] sends one request of the shared client ([`crate::http`]) and times
//! what became of it ([`Outcome`]: answered, refused at connect, dropped after
//! connecting, or no answer in time), so a test can count each kind while a dependency
//! is killed, paused or restarted. [`Load`] runs such requests in a loop from several
//! tasks and keeps every sample.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinHandle,
    time::Instant,
};

pub use crate::http::Outcome;
use crate::http::RequestBuilder;

/// One request's outcome and timing.
#[derive(Clone, Debug)]
pub struct Sample {
    /// When the request started, relative to the start of its [`Load`] (or of the call).
    pub started: Duration,
    pub elapsed: Duration,
    pub outcome: Outcome,
}

impl Sample {
    pub fn status(&self) -> Option<u16> {
        match &self.outcome {
            Outcome::Answered(answer) => Some(answer.status),
            _ => None,
        }
    }
}

/// Sends `request` and waits at most `deadline` for the whole exchange.
pub async fn exchange(request: &RequestBuilder, deadline: Duration) -> Sample {
    let started = Instant::now();
    let outcome = request.try_send(deadline).await;
    Sample {
        started: Duration::ZERO,
        elapsed: started.elapsed(),
        outcome,
    }
}

/// Requests sent in a loop by `concurrency` tasks until [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    tasks: Vec<JoinHandle<()>>,
    started: Instant,
}

impl Load {
    /// Starts the tasks; task `i` sends `requests[i % requests.len()]` each time, waits at
    /// most `deadline` for each answer, and pauses `pause` between requests.
    pub fn start(
        requests: Vec<RequestBuilder>,
        concurrency: usize,
        deadline: Duration,
        pause: Duration,
    ) -> Self {
        assert!(!requests.is_empty(), "a load needs at least one request");
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let tasks = (0..concurrency)
            .map(|i| {
                let (stop, samples) = (stop.clone(), samples.clone());
                let request = requests[i % requests.len()].clone();
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let at = started.elapsed();
                        let mut sample = exchange(&request, deadline).await;
                        sample.started = at;
                        samples.lock().expect("samples lock").push(sample);
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            samples,
            tasks,
            started,
        }
    }

    /// Time since the load started (the `started` of samples is measured on this clock).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Samples so far (a copy).
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().expect("samples lock").clone()
    }

    /// Stops the tasks (each finishes its current request) and returns every sample.
    pub async fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("load task panicked");
        }
        std::mem::take(&mut *self.samples.lock().expect("samples lock"))
    }
}

/// A readable summary of samples that are not as expected, for assertion messages.
pub fn describe(samples: &[&Sample]) -> String {
    let mut lines: Vec<String> = samples
        .iter()
        .take(10)
        .map(|s| {
            let what = match &s.outcome {
                Outcome::Answered(a) => {
                    format!(
                        "{} {}",
                        a.status,
                        a.text().chars().take(200).collect::<String>()
                    )
                }
                other => format!("{other:?}"),
            };
            format!("  at {:?} after {:?}: {what}", s.started, s.elapsed)
        })
        .collect();
    if samples.len() > 10 {
        lines.push(format!("  ... and {} more", samples.len() - 10));
    }
    lines.join("\n")
}

/// One field of Redis `INFO` (e.g. `keyspace_hits`) from the server on `port`, spoken
/// in raw RESP so the tests need no Redis client.
pub async fn redis_info_u64(port: u16, field: &str) -> u64 {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("connect to Redis on {port}: {e}"));
    stream
        .write_all(b"*2\r\n$4\r\nINFO\r\n$3\r\nall\r\n")
        .await
        .expect("send INFO");
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    // A bulk string: `$<len>\r\n<payload>\r\n`; read until the whole payload is in.
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("Redis INFO within 5 s")
            .expect("read INFO");
        assert!(n > 0, "Redis closed the connection during INFO");
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(2).position(|w| w == b"\r\n") {
            let len: usize = String::from_utf8_lossy(&raw[1..end])
                .parse()
                .expect("INFO bulk length");
            if raw.len() >= end + 2 + len {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&raw);
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("INFO has no {field}"))
        .trim()
        .parse()
        .expect("INFO field is a number")
}
