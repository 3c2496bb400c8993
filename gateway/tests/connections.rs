//! The gateway's HTTP connections against slow, silent and greedy clients
//! (HTTP_API.md, "Connections"), over raw sockets: header and body deadlines, the idle
//! timeout, the connection cap, HTTP/2 (h2c), SIGTERM with a half-sent request, and
//! the client address behind a trusted proxy (IPv6 clients by /64).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

mod support;

use std::time::{Duration, Instant};

use http::{Request, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use support::{assert_problem, gateway_config, start_gateway};
use test_support::http::{HttpResponse, parse_head, parse_response};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const LIVE: &[u8] = b"GET /health/live HTTP/1.1\r\nHost: gateway\r\n\r\n";

async fn connect(addr: &str) -> TcpStream {
    TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

/// Reads until the server closes the connection, at most `limit`: what arrived, and
/// whether it closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut received = Vec::new();
    let closed = tokio::time::timeout(limit, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await
    .is_ok();
    (received, closed)
}

/// Sends `request` on a kept-alive connection and reads exactly one response (the
/// gateway's bodies carry a `Content-Length`).
async fn exchange(stream: &mut TcpStream, request: &[u8]) -> HttpResponse {
    stream.write_all(request).await.expect("send request");
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = parse_head(&received[..end + 4]);
            let length: usize = head
                .header("content-length")
                .map_or(0, |value| value.parse().unwrap());
            if received.len() >= end + 4 + length {
                return parse_response(&received[..end + 4 + length]);
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(15), stream.read(&mut buffer))
            .await
            .expect("a response within 15 s")
            .expect("read response");
        assert!(n > 0, "closed before a whole response: {received:?}");
        received.extend_from_slice(&buffer[..n]);
    }
}

// ------------------------------------------------------------------ headers

#[tokio::test]
async fn a_client_trickling_header_lines_is_disconnected_at_the_header_deadline() {
    // Arrange: the default header-read timeout (10 s).
    let gateway = start_gateway(&[]).await;
    let mut stream = connect(gateway.http.addr()).await;
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: gateway\r\n")
        .await
        .unwrap();
    let started = Instant::now();

    // Act: one more header line a second, never the blank line that ends them.
    let mut answer = Vec::new();
    let closed = loop {
        if started.elapsed() > Duration::from_secs(40) {
            break false;
        }
        if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
            break true;
        }
        let mut buffer = [0u8; 1024];
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(n)) => answer.extend_from_slice(&buffer[..n]),
            Err(_) => {}
        }
    };

    // Assert: closed around the 10 s deadline although bytes kept coming.
    assert!(closed, "still open after {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "closed only after {:?}",
        started.elapsed()
    );
    assert!(
        answer.is_empty(),
        "an unfinished request got an answer: {}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_at_the_header_deadline() {
    let gateway = start_gateway(&[("--http-header-read-timeout-ms", "1000".to_owned())]).await;
    let mut stream = connect(gateway.http.addr()).await;

    let (received, closed) = read_until_closed(&mut stream, Duration::from_secs(15)).await;

    assert!(closed, "a silent connection stayed open");
    assert!(received.is_empty());
}

// ------------------------------------------------------------------ bodies

#[tokio::test]
async fn a_stalled_or_trickled_body_is_answered_408_and_the_connection_closed() {
    let gateway = start_gateway(&[("--http-body-read-timeout-ms", "1000".to_owned())]).await;
    for trickle in [false, true] {
        // Arrange: headers promising 100 bytes, then 9 of them.
        let stream = connect(gateway.http.addr()).await;
        let (mut reader, mut writer) = stream.into_split();
        writer
            .write_all(
                b"POST /api/v1/auth/login HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\":",
            )
            .await
            .unwrap();
        // A trickle keeps bytes coming, a few a second, never the whole body; a stall
        // sends nothing more but keeps its side open.
        let sender = tokio::spawn(async move {
            for _ in 0..60 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if trickle && writer.write_all(b" ").await.is_err() {
                    return;
                }
            }
        });

        // Act
        let mut received = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(15), reader.read_to_end(&mut received))
                .await
                .is_ok();
        sender.abort();

        // Assert
        assert!(closed, "trickle {trickle}: the connection stayed open");
        let response = parse_response(&received);
        assert_problem(&response, 408, "REQUEST_TIMEOUT");
        assert_eq!(
            response.header("connection"),
            Some("close"),
            "trickle {trickle}"
        );
    }
}

// ------------------------------------------------------------------ keep-alive

#[tokio::test]
async fn an_idle_keep_alive_connection_outlives_the_header_deadline_and_closes_at_the_idle_timeout()
{
    // Arrange: waiting for the next request is not waiting for headers.
    let gateway = start_gateway(&[
        ("--http-header-read-timeout-ms", "1000".to_owned()),
        ("--http-idle-timeout-ms", "8000".to_owned()),
    ])
    .await;
    let mut stream = connect(gateway.http.addr()).await;
    let first = exchange(&mut stream, LIVE).await;

    // Act
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = exchange(&mut stream, LIVE).await;
    let idle_from = Instant::now();
    let (received, closed) = read_until_closed(&mut stream, Duration::from_secs(40)).await;

    // Assert
    assert_eq!(first.status, 200);
    assert_eq!(second.status, 200, "reused after three header deadlines");
    assert!(closed, "an idle connection stayed open");
    assert!(
        idle_from.elapsed() < Duration::from_secs(30),
        "closed only after {:?}",
        idle_from.elapsed()
    );
    assert!(received.is_empty());
}

#[tokio::test]
async fn a_connection_beyond_the_cap_waits_until_another_closes() {
    // Arrange: two connections in use (kept alive), the cap is two.
    let gateway = start_gateway(&[
        ("--http-max-connections", "2".to_owned()),
        ("--http-header-read-timeout-ms", "60000".to_owned()),
    ])
    .await;
    let mut first = connect(gateway.http.addr()).await;
    let mut second = connect(gateway.http.addr()).await;
    assert_eq!(exchange(&mut first, LIVE).await.status, 200);
    assert_eq!(exchange(&mut second, LIVE).await.status, 200);

    // Act: a third connects (the kernel's backlog takes it) and asks.
    let mut third = connect(gateway.http.addr()).await;
    third.write_all(LIVE).await.unwrap();
    let mut buffer = [0u8; 1024];
    let answered_early =
        tokio::time::timeout(Duration::from_secs(2), third.read(&mut buffer)).await;
    drop(first);
    let mut received = Vec::new();
    let answered_after = tokio::time::timeout(Duration::from_secs(15), async {
        while !received.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = third.read(&mut buffer).await.unwrap();
            assert!(n > 0, "closed without an answer");
            received.extend_from_slice(&buffer[..n]);
        }
    })
    .await;

    // Assert
    assert!(
        answered_early.is_err(),
        "served beyond the cap: {answered_early:?}"
    );
    assert!(answered_after.is_ok(), "not served once a slot was free");
    assert!(received.starts_with(b"HTTP/1.1 200"), "{received:?}");
    assert_eq!(exchange(&mut second, LIVE).await.status, 200);
}

#[tokio::test]
async fn h2c_with_prior_knowledge_is_served_and_an_idle_h2_connection_is_closed() {
    // Arrange
    let gateway = start_gateway(&[("--http-idle-timeout-ms", "1000".to_owned())]).await;
    let addr = gateway.http.addr().to_owned();
    let stream = connect(&addr).await;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("HTTP/2 handshake");
    let connection = tokio::spawn(connection);

    // Act
    let response = sender
        .send_request(
            Request::get(format!("http://{addr}/health/live"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .expect("HTTP/2 request");
    let version = response.version();
    let status = response.status();
    let body = axum::body::to_bytes(axum::body::Body::new(response.into_body()), 1 << 16)
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(15), connection).await;

    // Assert
    assert_eq!(version, Version::HTTP_2);
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["status"],
        "alive"
    );
    assert!(ended.is_ok(), "an idle HTTP/2 connection stayed open");
}

// ------------------------------------------------------------------ shutdown

#[tokio::test]
async fn sigterm_with_a_half_sent_request_connected_exits_within_the_shutdown_deadline() {
    // Arrange: the header deadline is far beyond the shutdown deadline, so only the
    // drain deadline can end the connection.
    let mut gateway = gateway_config()
        .set("HTTP_HEADER_READ_TIMEOUT_MS", 120_000)
        .set("SHUTDOWN_TIMEOUT_MS", 2000)
        .spawn()
        .await;
    let mut stream = connect(&gateway.listeners["HTTP"]).await;
    stream
        .write_all(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Act
    gateway.terminate();
    let status = gateway.wait_exit(Duration::from_secs(20)).await;

    // Assert
    assert_eq!(status.code(), Some(0));
}

// ------------------------------------------------------------------ client address

#[tokio::test]
async fn ipv6_clients_behind_a_trusted_proxy_share_the_auth_bucket_of_their_64() {
    // Arrange: the test is the trusted proxy, naming IPv6 clients in X-Forwarded-For.
    let gateway = start_gateway(&[("--trusted-proxies", "127.0.0.1/32".to_owned())]).await;
    let login = |ip: &str| {
        gateway
            .http
            .post("/api/v1/auth/login")
            .header("X-Forwarded-For", ip)
            .json(&json!({"email": "a@b.cd", "password": "abc12345"}))
            .send()
    };

    // Act: ten addresses of one /64, one call each.
    for host in 1..=10 {
        let response = login(&format!("2001:db8:77:1::{host:x}")).await;
        assert_ne!(response.status, 429, "call {host}: {}", response.text());
    }
    let same_64 = login("2001:db8:77:1:ffff:ffff:ffff:ffff").await;
    let other_64 = login("2001:db8:77:2::1").await;

    // Assert
    assert_problem(&same_64, 429, "RATE_LIMIT_EXCEEDED");
    assert_ne!(other_64.status, 429);
    assert_eq!(other_64.header("x-ratelimit-remaining"), Some("9"));
}
