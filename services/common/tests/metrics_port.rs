//! The `/metrics` port of a server assembled by `common::grpc::GrpcApp` is served
//! through `common::http` with `METRICS_LIMITS`: a client that trickles its headers,
//! or sends nothing, is disconnected at the header deadline instead of holding a
//! connection forever, and scrapes keep working beside it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

use std::{net::SocketAddr, time::Duration};

use common::{
    config::GrpcServerConfig, grpc::GrpcApp, metrics::METRICS_LIMITS, shutdown::Shutdown,
};
use test_support::http::HttpClient;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Starts a server with no services of its own; returns its metrics address.
async fn start(shutdown: &Shutdown) -> SocketAddr {
    test_support::init();
    let config = GrpcServerConfig {
        grpc_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        metrics_addr: None,
        readiness_interval: Duration::from_millis(200),
        shutdown_timeout: Duration::from_secs(1),
    };
    let app = GrpcApp::bind(&config, ([127, 0, 0, 1], 0).into(), &[], shutdown.clone())
        .await
        .expect("bind");
    let metrics_addr = app.metrics_addr();
    tokio::spawn(app.run(tonic::service::Routes::default()));
    metrics_addr
}

/// Sends one header line every 500 ms, never finishing the request, until the server
/// closes the connection or `limit` passes; returns what the server sent and whether
/// it closed.
async fn trickle_headers(addr: SocketAddr, limit: Duration) -> (Vec<u8>, bool) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\n")
        .await
        .expect("send the request line");
    let deadline = tokio::time::Instant::now() + limit;
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return (received, true),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Err(_) => {
                if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
                    return (received, true);
                }
            }
        }
    }
    (received, false)
}

#[tokio::test]
async fn a_client_trickling_headers_to_the_metrics_port_is_disconnected() {
    // Arrange
    let shutdown = Shutdown::new();
    let addr = start(&shutdown).await;
    let limit = METRICS_LIMITS.header_read_timeout * 3;

    // Act: a slow client, and a scrape while it holds its connection.
    let slow = tokio::spawn(trickle_headers(addr, limit));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let scrape = HttpClient::new(addr.to_string())
        .get("/metrics")
        .send()
        .await;
    let (received, closed) = slow.await.unwrap();
    shutdown.trigger();

    // Assert
    assert!(
        closed,
        "still connected after {limit:?} of trickled headers"
    );
    assert!(
        received.is_empty(),
        "a request that never arrived got an answer: {:?}",
        String::from_utf8_lossy(&received)
    );
    assert_eq!(scrape.status, 200);
    assert_eq!(
        scrape.header("content-type"),
        Some(common::metrics::PROMETHEUS_TEXT_CONTENT_TYPE)
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_to_the_metrics_port_is_closed() {
    // Arrange
    let shutdown = Shutdown::new();
    let addr = start(&shutdown).await;
    let limit = METRICS_LIMITS.header_read_timeout * 3;

    // Act
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(limit, silent.read(&mut buffer)).await;
    shutdown.trigger();

    // Assert
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "a silent connection stayed open (or was answered): {read:?}"
    );
}
