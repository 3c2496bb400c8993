//! Fault-injection helpers for the resilience tests (`tests/tests/resilience.rs`).
//!
//! Unlike [`crate::http::HttpClient`], which panics on any transport failure because a
//! healthy stack never has one, [`exchange`] classifies what happened to one request
//! — answered, refused at connect, dropped after connecting, or no answer in time —
//! so a test can count each kind while a dependency is killed, paused or restarted.
//! [`Load`] runs such requests in a loop from several tasks and keeps every sample.

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

use crate::{ServiceProcess, spawn_service};

/// One request to send (always `Connection: close`, so each is a fresh connection).
#[derive(Clone, Debug)]
pub struct Request {
    pub method: &'static str,
    pub path: String,
    pub bearer: Option<String>,
    /// A JSON body.
    pub body: Option<String>,
}

impl Request {
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: "GET",
            path: path.into(),
            bearer: None,
            body: None,
        }
    }

    pub fn post_json(path: impl Into<String>, body: &serde_json::Value) -> Self {
        Self {
            method: "POST",
            path: path.into(),
            bearer: None,
            body: Some(body.to_string()),
        }
    }

    pub fn bearer(mut self, token: &str) -> Self {
        self.bearer = Some(token.to_owned());
        self
    }
}

/// A complete answer.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What became of one request.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// A complete response arrived.
    Answered(Answer),
    /// The TCP connect failed (nothing listening): the request never reached a server.
    Refused(String),
    /// Connected, but the connection closed or broke before a complete response;
    /// `received` bytes of a response had arrived (0: the server sent nothing at all).
    Dropped { received: usize, error: String },
    /// No complete response within the deadline.
    TimedOut,
}

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

/// Sends `request` to `addr` and waits at most `deadline` for the whole exchange.
pub async fn exchange(addr: &str, request: &Request, deadline: Duration) -> Sample {
    let started = Instant::now();
    let outcome = match tokio::time::timeout(deadline, exchange_inner(addr, request)).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::TimedOut,
    };
    Sample {
        started: Duration::ZERO,
        elapsed: started.elapsed(),
        outcome,
    }
}

async fn exchange_inner(addr: &str, request: &Request) -> Outcome {
    let mut stream = match TcpStream::connect(addr).await {
        Ok(stream) => stream,
        Err(e) => return Outcome::Refused(e.to_string()),
    };
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n",
        request.method, request.path
    );
    if let Some(token) = &request.bearer {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = request.body.clone().unwrap_or_default();
    if request.body.is_some() {
        head.push_str("Content-Type: application/json\r\n");
    }
    if request.body.is_some() || request.method != "GET" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    head.push_str(&body);
    if let Err(e) = stream.write_all(head.as_bytes()).await {
        return Outcome::Dropped {
            received: 0,
            error: format!("write: {e}"),
        };
    }
    let mut raw = Vec::new();
    if let Err(e) = stream.read_to_end(&mut raw).await {
        return Outcome::Dropped {
            received: raw.len(),
            error: format!("read: {e}"),
        };
    }
    parse_complete(&raw)
}

/// Parses a response read to EOF; anything short of a complete one is `Dropped`.
fn parse_complete(raw: &[u8]) -> Outcome {
    let dropped = |error: String| Outcome::Dropped {
        received: raw.len(),
        error,
    };
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return dropped("incomplete head".to_owned());
    };
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let Some(status) = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
    else {
        return dropped(format!("bad status line in {head:?}"));
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = &raw[split + 4..];
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let body = if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        match dechunk(body) {
            Some(body) => body,
            None => return dropped("truncated chunked body".to_owned()),
        }
    } else if let Some(length) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        if body.len() < length {
            return dropped(format!("body of {} of {length} bytes", body.len()));
        }
        body[..length].to_vec()
    } else {
        body.to_vec()
    };
    Outcome::Answered(Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The decoded body, or `None` when the terminating chunk never arrived.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&data[..end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[end + 2..];
        if size == 0 {
            return Some(out);
        }
        if data.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
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
        addr: &str,
        requests: Vec<Request>,
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
                let addr = addr.to_owned();
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let at = started.elapsed();
                        let mut sample = exchange(&addr, &request, deadline).await;
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
                Outcome::Answered(a) => format!(
                    "{} {}",
                    a.status,
                    a.body.chars().take(200).collect::<String>()
                ),
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

/// Starts `binary` again on the gRPC address a killed instance had (`addr`), with a
/// free metrics port (the default, gRPC port + 1000, could be taken). Retries for a few
/// seconds while the old socket lingers.
pub async fn respawn_on(
    binary: &str,
    addr: &str,
    envs: &[(&'static str, String)],
) -> ServiceProcess {
    let mut envs = envs.to_vec();
    envs.retain(|(name, _)| *name != "GRPC_ADDR" && *name != "METRICS_ADDR");
    envs.push(("GRPC_ADDR", addr.to_owned()));
    envs.push(("METRICS_ADDR", "127.0.0.1:0".to_owned()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpListener::bind(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "{addr} is still taken after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    spawn_service(binary, &[], &envs).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_cut_short_counts_as_dropped_and_a_whole_one_as_answered() {
        let whole = parse_complete(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        let short = parse_complete(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello");
        let chunked = parse_complete(
            b"HTTP/1.1 503 X\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        );
        let unterminated =
            parse_complete(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
        let nothing = parse_complete(b"");

        assert!(matches!(whole, Outcome::Answered(a) if a.status == 200 && a.body == "hello"));
        assert!(matches!(short, Outcome::Dropped { received, .. } if received > 0));
        assert!(matches!(chunked, Outcome::Answered(a) if a.status == 503 && a.body == "abc"));
        assert!(matches!(unterminated, Outcome::Dropped { .. }));
        assert!(matches!(nothing, Outcome::Dropped { received: 0, .. }));
    }
}
