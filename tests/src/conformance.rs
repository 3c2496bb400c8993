//! Checks every process must pass (ARCHITECTURE.md, "Health"), shared by the
//! services' own test suites so each runs the same assertions against its binary.

use std::time::Duration;

use tokio_stream::StreamExt;
use tonic_health::{
    ServingStatus,
    pb::{HealthCheckRequest, health_client::HealthClient},
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

use crate::grpc_channel as channel;

/// `""`, `liveness`, `readiness` and every service name answer SERVING.
pub async fn assert_all_names_serving(addr: &str, service_names: &[&str]) {
    for name in ["", "liveness", "readiness"].iter().chain(service_names) {
        super::wait_for_health(addr, name, ServingStatus::Serving, Duration::from_secs(15)).await;
    }
}

/// An unknown health name answers NOT_FOUND.
pub async fn assert_unknown_name_not_found(addr: &str) {
    let error = HealthClient::new(channel(addr).await)
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("an unknown name must not answer");
    assert_eq!(error.code(), tonic::Code::NotFound, "{error:?}");
}

/// Opens a Watch on `readiness`; the returned stream yields each status change.
pub async fn watch_readiness(
    addr: &str,
) -> impl tokio_stream::Stream<Item = ServingStatus> + Unpin {
    let stream = HealthClient::new(channel(addr).await)
        .watch(HealthCheckRequest {
            service: "readiness".into(),
        })
        .await
        .expect("watch readiness")
        .into_inner();
    Box::pin(stream.map(|item| match item.expect("watch item").status {
        1 => ServingStatus::Serving,
        2 => ServingStatus::NotServing,
        _ => ServingStatus::Unknown,
    }))
}

/// Waits (up to `timeout`) for `stream` to yield `expected`.
pub async fn next_status_is(
    stream: &mut (impl tokio_stream::Stream<Item = ServingStatus> + Unpin),
    expected: ServingStatus,
    timeout: Duration,
) {
    let found = tokio::time::timeout(timeout, async {
        while let Some(status) = stream.next().await {
            if status == expected {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        found,
        Ok(true),
        "Watch did not report {expected:?} within {timeout:?}"
    );
}

/// The names reflection lists (`list_services`).
pub async fn reflection_services(addr: &str) -> Vec<String> {
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel(addr).await)
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("reflection call")
        .into_inner();
    let response = responses
        .next()
        .await
        .expect("one response")
        .expect("reflection answer");
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => list
            .service
            .into_iter()
            .map(|service| service.name)
            .collect(),
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

/// A sibling binary of the running test (all workspace binaries land in one folder).
pub fn workspace_binary(name: &str) -> String {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first (make test does)",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

/// Generates the conformance tests every gRPC service binary must pass:
/// health names, NOT_FOUND for an unknown name, readiness that follows PostgreSQL both
/// ways (every service needs it), reflection, the `healthcheck`
/// subcommand, SIGTERM draining, and exit 64 on bad configuration.
///
/// `$config` is a `fn(database_url: &str, redis_url: &str) -> ServiceConfig` giving the
/// binary's settings (a [`crate::ServiceConfig`] preset, with a free gRPC port).
#[macro_export]
macro_rules! service_conformance_tests {
    (binary: $binary:expr, service: $service:expr, config: $config:expr $(,)?) => {
        mod service_conformance {
            use std::time::Duration;

            #[allow(unused_imports)]
            use super::*;

            use $crate::{ServingStatus, conformance, fresh_database, redis_url, run_to_exit, wait_for_health};

            async fn start() -> $crate::ServiceProcess {
                $crate::init();
                ($config)(&fresh_database().await, &redis_url()).spawn().await
            }

            #[tokio::test]
            async fn health_names_answer_serving_and_unknown_name_is_not_found() {
                let service = start().await;

                conformance::assert_all_names_serving(&service.grpc_addr, &[$service]).await;
                conformance::assert_unknown_name_not_found(&service.grpc_addr).await;
            }

            #[tokio::test]
            async fn readiness_follows_postgres_both_ways_and_watch_streams_it() {
                $crate::init();
                let mut postgres = $crate::PostgresServer::start();
                let database_url = $crate::create_database(&postgres.admin_url()).await;
                let service = ($config)(&database_url, &redis_url()).spawn().await;
                let addr = service.grpc_addr.clone();
                wait_for_health(&addr, "readiness", ServingStatus::Serving, Duration::from_secs(15)).await;
                let mut watch = conformance::watch_readiness(&addr).await;

                postgres.stop();
                conformance::next_status_is(&mut watch, ServingStatus::NotServing, Duration::from_secs(5)).await;
                wait_for_health(&addr, $service, ServingStatus::NotServing, Duration::from_secs(1)).await;
                wait_for_health(&addr, "liveness", ServingStatus::Serving, Duration::from_secs(1)).await;

                postgres.restart();
                conformance::next_status_is(&mut watch, ServingStatus::Serving, Duration::from_secs(10)).await;
            }

            #[tokio::test]
            async fn reflection_lists_its_own_service_only() {
                let service = start().await;

                let names = conformance::reflection_services(&service.grpc_addr).await;

                assert!(names.iter().any(|n| n == $service), "{names:?}");
                let others = names.iter().filter(|n| n.starts_with("learngreek.") && *n != $service).count();
                assert_eq!(others, 0, "only its own services: {names:?}");
            }

            #[tokio::test]
            async fn metrics_endpoint_counts_each_rpc_by_method_and_code() {
                let service = start().await;
                wait_for_health(&service.grpc_addr, "readiness", ServingStatus::Serving, Duration::from_secs(15)).await;
                let _ = $crate::health_status(&service.grpc_addr, "no.such.Service").await;

                let body = $crate::http::HttpClient::new(service.metrics_addr()).scrape().await.0;

                assert!(
                    body.contains(r#"grpc_server_requests_total{method="/grpc.health.v1.Health/Check",code="OK"}"#),
                    "{body}"
                );
                assert!(
                    body.contains(r#"grpc_server_requests_total{method="/grpc.health.v1.Health/Check",code="NOT_FOUND"} 1"#),
                    "{body}"
                );
                assert!(body.contains("grpc_server_request_duration_seconds_bucket"), "{body}");
                assert!(body.contains("db_pool_connections "), "pool usage: {body}");
            }

            #[tokio::test]
            async fn sigterm_turns_not_serving_and_exits_zero() {
                let mut service = start().await;
                let addr = service.grpc_addr.clone();
                wait_for_health(&addr, "readiness", ServingStatus::Serving, Duration::from_secs(15)).await;
                let mut watch = conformance::watch_readiness(&addr).await;

                service.terminate();

                conformance::next_status_is(&mut watch, ServingStatus::NotServing, Duration::from_secs(5)).await;
                drop(watch);
                let status = service.wait_exit(Duration::from_secs(20)).await;
                assert_eq!(status.code(), Some(0));
            }

            #[tokio::test]
            async fn healthcheck_subcommand_exits_zero_only_when_serving() {
                let service = start().await;
                let addr = service.grpc_addr.clone();
                wait_for_health(&addr, "readiness", ServingStatus::Serving, Duration::from_secs(15)).await;
                let nobody = format!("127.0.0.1:{}", $crate::free_port());

                let (serving, _, _) = run_to_exit($binary, &["healthcheck", "--addr", &addr], &[]).await;
                let (unknown, _, _) =
                    run_to_exit($binary, &["healthcheck", "--addr", &addr, "--service", "nope"], &[]).await;
                let (absent, _, _) = run_to_exit($binary, &["healthcheck", "--addr", &nobody], &[]).await;

                assert_eq!(serving, Some(0));
                assert_eq!(unknown, Some(1));
                assert_eq!(absent, Some(1));
            }

            #[tokio::test]
            async fn a_bad_configuration_value_exits_64_naming_the_variable() {
                for (variable, value) in [
                    ("GRPC_ADDR", "not-an-address"),
                    ("REDIS_RESPONSE_TIMEOUT_MS", "soon"),
                    ("DATABASE_MAX_CONNECTIONS", "0"),
                    ("LOG_FORMAT", "xml"),
                ] {
                    let (code, _, stderr) = run_to_exit($binary, &[], &[(variable, value.to_owned())]).await;

                    assert_eq!(code, Some(64), "{variable}={value}: {stderr}");
                    assert!(stderr.contains(variable), "{variable} not named in: {stderr}");
                    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
                }
            }
        }
    };
}
