//! Shared by the gateway-only tests: the gateway in-process on port 0, and a fake
//! gRPC upstream that answers every call with a chosen status and records what the
//! gateway sent (metadata and message bytes).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]
#![allow(dead_code)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, http::HeaderMap, response::Response};
use common::shutdown::Shutdown;
use gateway::{config::Cli, startup::Application};
use test_support::{InProcess, ServiceConfig, http::HttpClient, key_prefix};

/// A gateway running in this test process, stopped on drop.
pub struct Gateway {
    pub http: HttpClient,
    /// Client of the metrics port (`/metrics` is served there only).
    pub metrics: HttpClient,
    pub grpc_addr: String,
    /// Shuts the gateway down when the test drops it.
    _running: InProcess,
}

/// Address of a port nobody listens on.
pub fn nobody() -> String {
    format!("http://127.0.0.1:{}", test_support::free_port())
}

/// The gateway's test defaults: services at ports nobody listens on, the shared Redis
/// with a random prefix, and the trusted JWKS file (no key fetch).
pub fn gateway_config() -> ServiceConfig {
    let redis_url = test_support::redis_url();
    ServiceConfig::gateway(&nobody(), &nobody(), &redis_url, &key_prefix())
        .set("JWT_PUBLIC_KEYS_FILE", test_support::app::test_jwks_file())
}

/// Starts the gateway in-process with [`gateway_config`], following revocations on the
/// shared Redis, overridden by `settings` (each an env var name or its `--flag`, and a
/// value).
pub async fn start_gateway(settings: &[(&str, String)]) -> Gateway {
    test_support::init();
    let cli: Cli = gateway_config()
        .set("SESSION_REDIS_URL", test_support::redis_url())
        .set_all(settings.iter().cloned())
        .parse();
    let shutdown = Shutdown::new();
    let app = Application::build(cli.config, shutdown.clone())
        .await
        .expect("gateway builds");
    let http = HttpClient::new(app.http_addr().to_string());
    let metrics = HttpClient::new(app.metrics_addr().to_string());
    let grpc_addr = app.grpc_addr().to_string();
    let running = InProcess::start(shutdown, app.run());
    test_support::app::wait_for_revocations(metrics.addr()).await;
    Gateway {
        http,
        metrics,
        grpc_addr,
        _running: running,
    }
}

/// What one call to the fake upstream carried.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    /// The protobuf message (the gRPC frame without its 5-byte prefix).
    pub message: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct Behaviour {
    /// Sent trailers-only: code, message and `google.rpc` details.
    pub status: tonic::Status,
    pub delay: Duration,
}

/// A gRPC "service" answering every call trailers-only with the configured status.
#[derive(Clone)]
pub struct FakeUpstream {
    pub url: String,
    behaviour: Arc<Mutex<Behaviour>>,
    calls: Arc<Mutex<Vec<Recorded>>>,
}

impl FakeUpstream {
    pub async fn start() -> Self {
        let behaviour = Arc::new(Mutex::new(Behaviour {
            status: tonic::Status::unimplemented("not here"),
            delay: Duration::ZERO,
        }));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let state = (behaviour.clone(), calls.clone());
        let router = Router::new().fallback(answer).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake upstream");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            url,
            behaviour,
            calls,
        }
    }

    pub fn answer_with(&self, code: tonic::Code, message: &str) {
        self.answer_with_status(tonic::Status::new(code, message));
    }

    /// Answers with `status`, its details included (as a service built with
    /// `common::status` sends them).
    pub fn answer_with_status(&self, status: tonic::Status) {
        self.behaviour.lock().unwrap().status = status;
    }

    pub fn delay(&self, delay: Duration) {
        self.behaviour.lock().unwrap().delay = delay;
    }

    /// The calls received, without the gateway's readiness probes.
    pub fn calls(&self) -> Vec<Recorded> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|call| !call.path.starts_with("/grpc.health"))
            .cloned()
            .collect()
    }
}

type FakeState = (Arc<Mutex<Behaviour>>, Arc<Mutex<Vec<Recorded>>>);

async fn answer(
    State((behaviour, calls)): State<FakeState>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    calls.lock().unwrap().push(Recorded {
        path: parts.uri.path().to_owned(),
        headers: parts.headers.clone(),
        message: bytes.get(5..).map(<[u8]>::to_vec).unwrap_or_default(),
    });
    let behaviour = behaviour.lock().unwrap().clone();
    tokio::time::sleep(behaviour.delay).await;
    // tonic's own encoding of a trailers-only answer: grpc-status, the percent-encoded
    // grpc-message and grpc-status-details-bin.
    behaviour.status.into_http()
}

/// Asserts a problem body: status, `code`, content type, non-empty `detail`, and a
/// `request_id` equal to the `X-Request-ID` header.
pub fn assert_problem(
    response: &test_support::http::HttpResponse,
    status: u16,
    code: &str,
) -> serde_json::Value {
    assert_eq!(response.status, status, "{}", response.text());
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json"),
        "{}",
        response.text()
    );
    let body = response.json();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    assert_eq!(
        body["request_id"].as_str(),
        response.header("x-request-id"),
        "{body}"
    );
    body
}
