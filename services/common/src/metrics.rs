//! Prometheus metrics: one registry per process, served as text on `/metrics`.
//!
//! [`crate::grpc::serve_grpc`] records every RPC (`grpc_server_requests_total` by method
//! and status code, `grpc_server_request_duration_seconds` by method); services add
//! their own series (cache, sessions, rate limits) with [`Metrics::register`].

use std::{
    sync::{Arc, RwLock},
    task::{Context, Poll},
    time::Instant,
};

use axum::{Router, routing::get};
use futures::future::BoxFuture;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::{Metric, Registry},
};

/// Buckets from 100 µs to about 6.5 s, for request latencies.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 17)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

/// The registry of one process.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<RwLock<Registry>>,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_duration: Family<MethodLabels, Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let rpc_requests = Family::<RpcLabels, Counter>::default();
        let rpc_duration = Family::<MethodLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register(
            "grpc_server_requests",
            "gRPC calls served, by method and status code",
            rpc_requests.clone(),
        );
        registry.register(
            "grpc_server_request_duration_seconds",
            "Time to the response headers of each gRPC call, by method",
            rpc_duration.clone(),
        );
        Self {
            registry: Arc::new(RwLock::new(registry)),
            rpc_requests,
            rpc_duration,
        }
    }

    /// Adds a series (a `Counter`, `Gauge`, `Family`, ... clone sharing its state).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry
            .write()
            .expect("metrics lock poisoned")
            .register(name, help, metric);
    }

    /// Adds a counter whose value is read from `read` at each scrape: for counts a
    /// component already keeps (atomics), so it need not depend on this crate's types.
    pub fn register_counter_fn(
        &self,
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) {
        self.register_collector(FnMetric {
            name,
            help,
            gauge: false,
            read: Box::new(move || read() as i64),
        });
    }

    /// Adds a gauge whose value is read from `read` at each scrape (a state, a pool size).
    pub fn register_gauge_fn(
        &self,
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> i64 + Send + Sync + 'static,
    ) {
        self.register_collector(FnMetric {
            name,
            help,
            gauge: true,
            read: Box::new(read),
        });
    }

    fn register_collector(&self, collector: impl prometheus_client::collector::Collector) {
        self.registry
            .write()
            .expect("metrics lock poisoned")
            .register_collector(Box::new(collector));
    }

    /// The whole registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.read().expect("metrics lock poisoned");
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }

    /// An axum router serving `GET /metrics`.
    pub fn router(&self) -> Router {
        let metrics = self.clone();
        Router::new().route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                }
            }),
        )
    }

    /// Records one gRPC call (used by [`GrpcMetricsLayer`]).
    fn record_rpc(&self, method: &str, code: &str, started: Instant) {
        self.rpc_requests
            .get_or_create(&RpcLabels {
                method: method.to_owned(),
                code: code.to_owned(),
            })
            .inc();
        self.rpc_duration
            .get_or_create(&MethodLabels {
                method: method.to_owned(),
            })
            .observe(started.elapsed().as_secs_f64());
    }
}

/// A series read from a closure at scrape time.
struct FnMetric {
    name: &'static str,
    help: &'static str,
    gauge: bool,
    read: Box<dyn Fn() -> i64 + Send + Sync>,
}

impl std::fmt::Debug for FnMetric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnMetric")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl prometheus_client::collector::Collector for FnMetric {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::{
            encoding::EncodeMetric,
            metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
        };
        let value = (self.read)();
        if self.gauge {
            let metric =
                encoder.encode_descriptor(self.name, self.help, None, MetricType::Gauge)?;
            ConstGauge::new(value).encode(metric)
        } else {
            let metric =
                encoder.encode_descriptor(self.name, self.help, None, MetricType::Counter)?;
            ConstCounter::new(value.max(0) as u64).encode(metric)
        }
    }
}

/// Serves `/metrics` on `listener` until `shutdown` fires.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    shutdown: crate::shutdown::Shutdown,
) -> std::io::Result<()> {
    axum::serve(listener, metrics.router())
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await
}

/// Tower layer recording each gRPC call in [`Metrics`].
#[derive(Clone, Debug)]
pub struct GrpcMetricsLayer {
    metrics: Metrics,
}

impl GrpcMetricsLayer {
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for GrpcMetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>> + Send,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let metrics = self.metrics.clone();
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            // A failed unary call answers "trailers-only": its status is in the headers.
            // A successful one carries `grpc-status: 0` in the trailers, after the body.
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<i32>().ok())
                .map_or("OK", |code| format_code(tonic::Code::from_i32(code)));
            metrics.record_rpc(&method, code, started);
            Ok(response)
        })
    }
}

fn format_code(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn closure_series_are_read_at_scrape_time() {
        let metrics = Metrics::new();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let reader = hits.clone();
        metrics.register_counter_fn("cache_hits", "Cache hits", move || {
            reader.load(std::sync::atomic::Ordering::Relaxed)
        });
        metrics.register_gauge_fn("breaker_state", "Breaker state", || 2);

        hits.store(7, std::sync::atomic::Ordering::Relaxed);
        let text = metrics.render();

        assert!(text.contains("cache_hits_total 7"), "{text}");
        assert!(text.contains("breaker_state 2"), "{text}");
    }
}
