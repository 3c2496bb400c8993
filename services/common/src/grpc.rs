//! [`serve_grpc`]: the one function that assembles every gRPC server, so health,
//! reflection, tracing, request ids and draining cannot be forgotten; and
//! [`healthcheck`], the client side of a container healthcheck.

use std::time::Duration;

use tokio::net::TcpListener;
use tonic::{service::Routes, transport::Server};
use tonic_health::{ServingStatus, pb::HealthCheckRequest, pb::health_client::HealthClient};

use crate::{health::Health, shutdown::Shutdown};

/// gRPC metadata key that carries the request id from the gateway to the services.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Most streams a client may cancel before the server has taken them off its accept
/// queue (h2's default is 20; one more and the server answers GOAWAY `too_many_resets`
/// and drops the connection, failing every other call on it). The gateway keeps one
/// HTTP/2 connection per service endpoint and cancels a call whenever its own client
/// hangs up, so a burst of hang-ups read at once by a busy server is ordinary
/// traffic. 1024, the gateway's default `HTTP_MAX_CONNECTIONS`, covers every client of
/// a full gateway hanging up together. It stays bounded because each such stream
/// holds its request headers until it is accepted (at most about 16 MiB for a hostile
/// peer filling the queue with 16 KiB headers; an internal port has none).
pub const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 1024;

/// Most streams the server resets because the client broke the protocol on them,
/// over a connection's life, before it answers GOAWAY. Cancelling a call is not a
/// protocol error and does not count; this bounds the work a faulty or hostile peer
/// can make the server do (the CVE-2023-44487 family). h2's own default, stated here
/// so it is a decision rather than an accident.
pub const MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;

/// Everything [`serve_grpc`] needs besides the application's own services.
pub struct GrpcServer {
    pub listener: TcpListener,
    pub health: Health,
    pub health_service:
        tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>,
    pub shutdown: Shutdown,
    /// Longest wait for in-flight calls once shutdown starts.
    pub shutdown_timeout: Duration,
    /// Fully-qualified names of the application's services, advertised by reflection.
    pub service_names: &'static [&'static str],
    /// Where every call is recorded.
    pub metrics: crate::metrics::Metrics,
}

/// Why the server stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves `routes` plus grpc.health.v1 and reflection on `server.listener` until the
/// shutdown signal fires. Shutdown then turns every readiness name NOT_SERVING, stops
/// accepting, lets in-flight calls finish (at most `shutdown_timeout`) and returns.
pub async fn serve_grpc(server: GrpcServer, routes: Routes) -> Result<(), ServeError> {
    let GrpcServer {
        listener,
        health,
        health_service,
        shutdown,
        shutdown_timeout,
        service_names,
        metrics,
    } = server;
    let mut reflection = tonic_reflection::server::Builder::configure();
    for name in service_names
        .iter()
        .chain(&[tonic_health::pb::health_server::SERVICE_NAME])
    {
        reflection = reflection.with_service_name(*name);
    }
    let reflection = reflection
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let routes = routes.add_service(health_service).add_service(reflection);

    let trace = tower_http::trace::TraceLayer::new_for_grpc().make_span_with(
        |request: &http::Request<_>| {
            let request_id = request
                .headers()
                .get(REQUEST_ID_HEADER)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("grpc", path = %request.uri().path(), request_id = %request_id)
        },
    );

    let drain_signal = {
        let shutdown = shutdown.clone();
        let health = health.clone();
        async move {
            shutdown.wait().await;
            health.drain().await;
            tracing::info!("draining in-flight calls");
        }
    };
    // TCP_NODELAY: without it, a response written right after a small frame (say the
    // WINDOW_UPDATE for a request body) waits for the client's delayed ACK, about 40 ms
    // per call. `Server::tcp_nodelay` only covers listeners tonic binds itself.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let serve = Server::builder()
        .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_ACCEPT_RESET_STREAMS))
        .http2_max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESET_STREAMS))
        .layer(trace)
        .layer(crate::metrics::GrpcMetricsLayer::new(
            metrics,
            crate::metrics::GrpcMethods::served_by(service_names),
        ))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, drain_signal);

    let drain_deadline = async {
        shutdown.wait().await;
        tokio::time::sleep(shutdown_timeout).await;
    };
    tokio::select! {
        result = serve => result?,
        () = drain_deadline => tracing::warn!(?shutdown_timeout, "in-flight calls still running at the shutdown deadline"),
    }
    tracing::info!("gRPC server stopped");
    Ok(())
}

/// Prints the bound address on stdout (one line, `<name> listening on <addr>`), for
/// operators and for tests that start the binary on port 0.
pub fn announce(name: &str, what: &str, addr: std::net::SocketAddr) {
    println!("{name} {what} listening on {addr}");
    tracing::info!(%addr, "{what} listening");
}

/// Binds `addr` and returns the listener (port 0 picks a free port; read it back with
/// `local_addr`).
pub async fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Performs one grpc.health.v1 Check of `service` at `addr` (`host:port` or a URL).
/// Returns the serving status, or an error message. A comma-separated list (a balanced
/// service URL) is SERVING when any of its endpoints is: a call through it would succeed.
pub async fn check_health(addr: &str, service: &str) -> Result<ServingStatus, String> {
    if !addr.contains(',') {
        return check_one(addr, service).await;
    }
    let results =
        futures::future::join_all(addr.split(',').map(|one| check_one(one.trim(), service))).await;
    let serving = results
        .iter()
        .find(|result| matches!(result, Ok(ServingStatus::Serving)));
    serving
        .or(results.first())
        .cloned()
        .unwrap_or_else(|| Err(format!("no address in '{addr}'")))
}

async fn check_one(addr: &str, service: &str) -> Result<ServingStatus, String> {
    let uri = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    let endpoint = tonic::transport::Endpoint::from_shared(uri)
        .map_err(|e| format!("bad address '{addr}': {e}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(3));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map_err(|status| format!("{}: {}", status.code(), status.message()))?;
    Ok(match response.into_inner().status {
        1 => ServingStatus::Serving,
        2 => ServingStatus::NotServing,
        _ => ServingStatus::Unknown,
    })
}

/// `Ok` while `service` at `addr` is SERVING: a readiness dependency on another process.
pub async fn require_serving(addr: String, service: &'static str) -> Result<(), String> {
    match check_health(&addr, service).await? {
        ServingStatus::Serving => Ok(()),
        other => Err(format!("{addr} reports {service} {other:?}")),
    }
}

/// The `healthcheck` subcommand: exits 0 only when `service` is SERVING.
pub async fn healthcheck(addr: &str, service: &str) -> std::process::ExitCode {
    match check_health(addr, service).await {
        Ok(ServingStatus::Serving) => {
            println!("SERVING");
            std::process::ExitCode::SUCCESS
        }
        Ok(status) => {
            println!("{status:?}");
            std::process::ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("healthcheck failed: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A bound gRPC server with its health statuses and the dependencies readiness
/// follows: the skeleton every binary's `Application` is built around.
pub struct GrpcApp {
    server: GrpcServer,
    metrics_listener: TcpListener,
    dependencies: Vec<crate::health::Dependency>,
    readiness_interval: Duration,
}

impl GrpcApp {
    /// Binds `GRPC_ADDR` (or `default_addr`) and creates the health statuses.
    pub async fn bind(
        config: &crate::config::GrpcServerConfig,
        default_addr: std::net::SocketAddr,
        service_names: &'static [&'static str],
        shutdown: Shutdown,
    ) -> std::io::Result<Self> {
        let grpc_addr = config.grpc_addr.unwrap_or(default_addr);
        let listener = bind(grpc_addr).await?;
        let metrics_addr = config.metrics_addr.unwrap_or_else(|| {
            let port = if grpc_addr.port() == 0 {
                0
            } else {
                grpc_addr.port().saturating_add(1000)
            };
            std::net::SocketAddr::new(grpc_addr.ip(), port)
        });
        let metrics_listener = bind(metrics_addr).await?;
        // Announced here, before the binary announces its gRPC address, so a harness
        // reading stdout up to the gRPC line sees both.
        announce(
            service_names
                .first()
                .map_or("process", |name| name.rsplit('.').next().unwrap_or(name)),
            "metrics",
            metrics_listener.local_addr()?,
        );
        let (health, health_service) = Health::new(service_names).await;
        let metrics = crate::metrics::Metrics::new();
        health.register_metrics(&metrics);
        Ok(Self {
            metrics_listener,
            server: GrpcServer {
                listener,
                health,
                health_service,
                shutdown,
                shutdown_timeout: config.shutdown_timeout,
                service_names,
                metrics,
            },
            dependencies: Vec::new(),
            readiness_interval: config.readiness_interval,
        })
    }

    /// Readiness also requires `dependency`.
    pub fn depends_on(mut self, dependency: crate::health::Dependency) -> Self {
        self.dependencies.push(dependency);
        self
    }

    #[allow(
        clippy::expect_used,
        reason = "a listener bound at start has an address; getsockname cannot fail on it"
    )]
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.server
            .listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn health(&self) -> &Health {
        &self.server.health
    }

    pub fn shutdown(&self) -> &Shutdown {
        &self.server.shutdown
    }

    /// The process's metrics registry, for the application's own series.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.server.metrics
    }

    /// Where `/metrics` is served.
    #[allow(
        clippy::expect_used,
        reason = "a listener bound at start has an address; getsockname cannot fail on it"
    )]
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        self.metrics_listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Starts the readiness probe and serves `routes` until shutdown.
    pub async fn run(self, routes: Routes) -> Result<(), ServeError> {
        crate::health::spawn_readiness_probe(
            self.server.health.clone(),
            self.dependencies,
            self.readiness_interval,
            self.server.shutdown.clone(),
        );
        // Stops on the same signal and drains within the same deadline.
        let metrics = tokio::spawn(crate::metrics::serve_metrics(
            self.metrics_listener,
            self.server.metrics.clone(),
            self.server.shutdown.clone(),
            self.server.shutdown_timeout,
        ));
        let served = serve_grpc(self.server, routes).await;
        if let Err(error) = metrics.await {
            tracing::warn!(%error, "metrics server failed");
        }
        served
    }
}

/// The `healthcheck` subcommand of a binary whose gRPC server defaults to `default_port`:
/// checks `--addr`, else 127.0.0.1 on the port of `GRPC_ADDR`, else `default_port`.
pub async fn healthcheck_command(
    args: crate::config::HealthcheckArgs,
    grpc: &crate::config::GrpcServerConfig,
    default_port: u16,
) -> std::process::ExitCode {
    let addr = args.addr.unwrap_or_else(|| {
        let port = grpc.grpc_addr.map_or(default_port, |addr| addr.port());
        format!("127.0.0.1:{port}")
    });
    healthcheck(&addr, &args.service).await
}

/// The exit code of a server that stopped with `result`; a failure is logged and
/// printed with its whole chain of causes (`{:#}`).
pub fn exit_code<E: std::fmt::Display>(
    name: &str,
    result: Result<(), E>,
) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "{name} failed");
            eprintln!("{name}: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
