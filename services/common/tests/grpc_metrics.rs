//! The per-RPC series of a real gRPC server assembled by `common::grpc` (GrpcApp /
//! serve_grpc): labels stay within the methods the server serves, whatever paths
//! clients make up, and `/metrics` speaks the format the scraper asks for.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

use std::{net::SocketAddr, time::Duration};

use common::{
    config::GrpcServerConfig,
    grpc::GrpcApp,
    metrics::{OPENMETRICS_CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE},
    shutdown::Shutdown,
};
use test_support::http::HttpClient;
use tonic::{codegen::http::uri::PathAndQuery, transport::Channel};

/// A running server with `service_names`, its gRPC channel and its `/metrics` client.
struct Server {
    grpc_addr: String,
    channel: Channel,
    metrics: HttpClient,
    shutdown: Shutdown,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

async fn start(service_names: &'static [&'static str]) -> Server {
    test_support::init();
    let config = GrpcServerConfig {
        grpc_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        metrics_addr: None,
        readiness_interval: Duration::from_millis(200),
        shutdown_timeout: Duration::from_secs(1),
    };
    let shutdown = Shutdown::new();
    let app = GrpcApp::bind(
        &config,
        ([127, 0, 0, 1], 0).into(),
        service_names,
        shutdown.clone(),
    )
    .await
    .expect("bind");
    let grpc_addr = app.local_addr();
    let metrics = HttpClient::new(app.metrics_addr().to_string());
    tokio::spawn(app.run(tonic::service::Routes::default()));
    let channel = Channel::from_shared(format!("http://{grpc_addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect");
    Server {
        grpc_addr: grpc_addr.to_string(),
        channel,
        metrics,
        shutdown,
    }
}

/// One unary call with an empty message to `path`; returns its status code.
async fn call(channel: &Channel, path: &str) -> tonic::Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("channel ready");
    let path = PathAndQuery::try_from(path.to_owned()).expect("a valid path");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    match grpc.unary(tonic::Request::new(()), path, codec).await {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}

/// The `grpc_server_requests_total` sample lines of a scrape.
fn request_series(body: &str) -> Vec<&str> {
    body.lines()
        .filter(|line| line.starts_with("grpc_server_requests_total{"))
        .collect()
}

#[tokio::test]
async fn made_up_grpc_paths_share_one_unknown_series() {
    // Arrange
    let server = start(&[proto::SESSION_SERVICE_NAME]).await;

    // Act: 40 made-up services, a made-up method of a served service, a service of
    // another process, and one real call.
    let mut made_up: Vec<String> = (0..40)
        .map(|index| format!("/made.up{index}.Service/Method{index}"))
        .collect();
    made_up.push("/grpc.health.v1.Health/NoSuchMethod".into());
    made_up.push("/learngreek.deck.v1.DeckService/ListDecks".into());
    made_up.push("/not-even-grpc".into());
    for path in &made_up {
        assert_eq!(
            call(&server.channel, path).await,
            tonic::Code::Unimplemented
        );
    }
    let own = "/learngreek.session.v1.SessionService/GetPublicKeys";
    call(&server.channel, own).await;
    let liveness = test_support::health_status(&server.grpc_addr, "liveness").await;
    assert_eq!(liveness, Ok(test_support::ServingStatus::Serving));
    let body = server.metrics.get("/metrics").send().await.text();

    // Assert
    let series = request_series(&body);
    let unknown: Vec<_> = series
        .iter()
        .filter(|line| line.contains(r#"method="unknown""#))
        .collect();
    assert_eq!(
        unknown,
        [&format!(
            r#"grpc_server_requests_total{{method="unknown",code="UNIMPLEMENTED"}} {}"#,
            made_up.len()
        )],
        "{body}"
    );
    assert!(!body.contains("made.up"), "{body}");
    assert!(!body.contains("DeckService"), "{body}");
    assert!(
        series
            .iter()
            .any(|line| line.contains(&format!(r#"method="{own}",code="UNIMPLEMENTED"}} 1"#))),
        "the server's own service keeps its label: {body}"
    );
    assert!(
        series.iter().any(|line| line.starts_with(
            r#"grpc_server_requests_total{method="/grpc.health.v1.Health/Check",code="OK"}"#
        )),
        "grpc.health.v1 keeps its label: {body}"
    );
}

#[tokio::test]
async fn metrics_speak_prometheus_text_unless_the_scraper_asks_for_openmetrics() {
    // Arrange
    let server = start(&[]).await;
    call(&server.channel, "/grpc.health.v1.Health/Check").await;

    // Act
    let plain = server.metrics.get("/metrics").send().await;
    let openmetrics = server
        .metrics
        .get("/metrics")
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await;

    // Assert: the same samples; the descriptors of each format.
    assert_eq!(
        plain.header("content-type"),
        Some(PROMETHEUS_TEXT_CONTENT_TYPE)
    );
    let plain = plain.text();
    assert!(
        plain.contains("# TYPE grpc_server_requests_total counter\n"),
        "{plain}"
    );
    assert!(!plain.contains("# EOF"), "{plain}");
    assert_eq!(
        openmetrics.header("content-type"),
        Some(OPENMETRICS_CONTENT_TYPE)
    );
    let openmetrics = openmetrics.text();
    assert!(
        openmetrics.contains("# TYPE grpc_server_requests counter\n"),
        "{openmetrics}"
    );
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    let samples = |body: &str| -> Vec<String> {
        body.lines()
            .filter(|line| line.starts_with("grpc_server_requests_total{"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(samples(&plain), samples(&openmetrics));
}
