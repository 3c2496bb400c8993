//! Readiness during shutdown (`common::health`): once draining starts, nothing turns
//! it back on.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

use common::{grpc::check_health, health::Health};
use tonic_health::ServingStatus;

#[tokio::test]
async fn after_draining_a_late_probe_result_cannot_turn_readiness_back_on() {
    // Arrange: readiness served over real gRPC, and SERVING.
    let (health, service) = Health::new(&["learngreek.test.v1.Test"]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    health.set_ready(true).await;
    assert_eq!(
        check_health(&addr, "readiness").await,
        Ok(ServingStatus::Serving)
    );

    // Act: shutdown drains, then a probe that checked its dependencies just before
    // reports them up.
    health.drain().await;
    health.set_ready(true).await;

    // Assert
    for name in ["readiness", "", "learngreek.test.v1.Test"] {
        assert_eq!(
            check_health(&addr, name).await,
            Ok(ServingStatus::NotServing),
            "{name:?}"
        );
    }
    assert_eq!(
        check_health(&addr, "liveness").await,
        Ok(ServingStatus::Serving)
    );
}

/// The value of an unlabelled series in an exposition.
fn sample(exposition: &str, name: &str) -> Option<String> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .map(str::to_owned)
}

#[tokio::test]
async fn readiness_serving_gauge_follows_readiness_and_drops_to_zero_on_drain() {
    // Arrange: a registry exporting the health's gauge; readiness starts NOT_SERVING.
    let (health, _service) = Health::new(&["learngreek.test.v1.Test"]).await;
    let metrics = common::metrics::Metrics::new();
    health.register_metrics(&metrics);
    let before = sample(&metrics.render(), "readiness_serving");

    // Act
    health.set_ready(true).await;
    let ready = sample(&metrics.render(), "readiness_serving");
    health.set_ready(false).await;
    let unready = sample(&metrics.render(), "readiness_serving");
    health.set_ready(true).await;
    health.drain().await;
    let drained = sample(&metrics.render(), "readiness_serving");

    // Assert
    assert_eq!(before.as_deref(), Some("0"));
    assert_eq!(ready.as_deref(), Some("1"));
    assert_eq!(unready.as_deref(), Some("0"));
    assert_eq!(drained.as_deref(), Some("0"));
    assert!(!health.is_ready());
}
