//! What the gateway shows operators, and what watching it costs: `/metrics` only on the
//! metrics port, with labels clients cannot multiply; health checks over the gateway's
//! existing channels, so probing opens no connections.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

mod support;

use std::{collections::BTreeSet, time::Duration};

use support::{assert_problem, start_gateway};
use test_support::stack::spawn_stack;
use uuid::Uuid;

/// The `name{labels}` of every `http_*` series in a metrics text.
fn http_series(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|line| line.starts_with("http_"))
        .filter_map(|line| line.rsplit_once(' ').map(|(series, _)| series.to_owned()))
        .collect()
}

#[tokio::test]
async fn metrics_are_not_served_on_the_api_port() {
    let gateway = start_gateway(&[]).await;

    let on_api_port = gateway.http.get("/metrics").send().await;
    let on_metrics_port = gateway.metrics.get("/metrics").send().await;

    assert_problem(&on_api_port, 404, "NOT_FOUND");
    assert_eq!(on_metrics_port.status, 200);
    assert!(
        on_metrics_port
            .text()
            .contains("gateway_rate_limit_fail_open_total"),
        "{}",
        on_metrics_port.text()
    );
}

#[tokio::test]
async fn made_up_methods_and_paths_add_no_series_and_the_metrics_port_counts_everything() {
    // Arrange: one made-up method on a route and off any route, so their series exist.
    let gateway = start_gateway(&[]).await;
    gateway.http.get("/health/live").send().await;
    gateway.http.request("BREW", "/api/v1/decks").send().await;
    gateway.http.request("BREW", "/no/such/path").send().await;
    let before = http_series(&gateway.metrics.get("/metrics").send().await.text());

    // Act: 40 more made-up methods, on a route and on random paths.
    let methods: Vec<String> = (0..40)
        .map(|_| format!("X{}", &Uuid::new_v4().simple().to_string()[..10]).to_uppercase())
        .collect();
    for method in &methods {
        gateway.http.request(method, "/api/v1/decks").send().await;
        let path = format!("/random/{}", Uuid::new_v4());
        gateway.http.request(method, &path).send().await;
    }
    let metrics = gateway.metrics.get("/metrics").send().await.text();
    let after = http_series(&metrics);

    // Assert
    assert_eq!(
        after.difference(&before).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "new series"
    );
    for method in &methods {
        assert!(!metrics.contains(method.as_str()), "{method} is a label");
    }
    for series in [
        r#"http_requests_total{method="GET",route="/health/live",status="200"}"#,
        r#"http_requests_total{method="OTHER",route="/api/v1/decks",status="405"}"#,
        r#"http_requests_total{method="OTHER",route="unmatched",status="404"}"#,
        r#"http_request_duration_seconds_count{method="GET",route="/health/live"}"#,
    ] {
        assert!(after.contains(series), "{series} missing from:\n{metrics}");
    }
    let other_on_route = metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(
                r#"http_requests_total{method="OTHER",route="/api/v1/decks",status="405"} "#,
            )
        })
        .unwrap();
    assert_eq!(other_on_route, "41");
}

/// Sockets (any state, either end) on `ports` of this machine, from /proc/net/tcp{,6}.
fn sockets_on(ports: &[u16]) -> usize {
    let port_of = |address: &str| {
        address
            .rsplit_once(':')
            .and_then(|(_, port)| u16::from_str_radix(port, 16).ok())
    };
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .map(|line| {
                    line.split_whitespace()
                        .skip(1)
                        .take(2)
                        .filter_map(port_of)
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        })
        .filter(|ends| ends.iter().any(|port| ports.contains(port)))
        .count()
}

#[tokio::test]
async fn health_checks_reuse_the_gateways_channels_instead_of_dialling_the_services() {
    // Arrange: only the gateway talks to the services' gRPC ports.
    let stack = spawn_stack().await;
    let port = |addr: &str| addr.rsplit_once(':').unwrap().1.parse::<u16>().unwrap();
    let ports = [port(&stack.session.grpc_addr), port(&stack.deck.grpc_addr)];
    assert_eq!(stack.http.get("/health").send().await.status, 200);
    // A few readiness rounds (every 200 ms in the stack) on the steady channels.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = sockets_on(&ports);

    // Act
    for _ in 0..100 {
        assert_eq!(stack.http.get("/health").send().await.status, 200);
        assert_eq!(stack.http.get("/health/ready").send().await.status, 200);
    }
    let after = sockets_on(&ports);

    // Assert: dialling per check left two TIME-WAIT sockets per call (121 → 508).
    assert!(
        after <= before + 4,
        "sockets on the services' ports went from {before} to {after}"
    );
}
