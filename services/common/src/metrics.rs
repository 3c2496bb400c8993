//! Prometheus metrics: one registry per process, served as text on `/metrics`.
//!
//! [`crate::grpc::serve_grpc`] records every RPC (`grpc_server_requests_total` by method
//! and status code, `grpc_server_request_duration_seconds` by method); services add
//! their own series (cache, sessions, rate limits) with [`Metrics::register`].
//!
//! Every label takes its value from a fixed set: the `method` of an RPC is one of the
//! methods the server serves ([`GrpcMethods`]) or `unknown`, and `code` is one of the
//! 17 gRPC status codes, so clients making up paths cannot grow the series count.
//!
//! `/metrics` answers in the Prometheus text format (0.0.4), which every scraper and
//! `promtool check metrics` read, or in OpenMetrics when the scraper asks for it in
//! `Accept` (as Prometheus does).

use std::{
    collections::HashSet,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use futures::future::BoxFuture;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::{Metric, Registry},
};
use prost::Message as _;

use crate::sync::RwLockExt;

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

/// A counter kept in an atomic field of a component's struct: the series name (exported
/// with the `_total` suffix), its help, and the field.
pub type AtomicCounter<T> = (&'static str, &'static str, fn(&T) -> &AtomicU64);

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
            .write_unpoisoned()
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

    /// Adds a counter for each of `counters`, read at each scrape from its atomic field of
    /// `source` (a component's struct of counts, shared with the code that counts).
    pub fn register_atomic_counters<T: Send + Sync + 'static>(
        &self,
        source: &Arc<T>,
        counters: &[AtomicCounter<T>],
    ) {
        for &(name, help, field) in counters {
            let source = Arc::clone(source);
            self.register_counter_fn(name, help, move || field(&source).load(Ordering::Relaxed));
        }
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
            .write_unpoisoned()
            .register_collector(Box::new(collector));
    }

    /// The whole registry in the OpenMetrics text format (served with
    /// [`OPENMETRICS_CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.read_unpoisoned();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }

    /// The whole registry in the Prometheus text format 0.0.4 (served with
    /// [`PROMETHEUS_TEXT_CONTENT_TYPE`]).
    pub fn render_prometheus_text(&self) -> String {
        openmetrics_to_prometheus_text(&self.render())
    }

    /// An axum router serving `GET /metrics`: OpenMetrics to a scraper whose `Accept`
    /// names it, the Prometheus text format to everyone else.
    pub fn router(&self) -> Router {
        let metrics = self.clone();
        Router::new().route(
            "/metrics",
            get(move |headers: http::HeaderMap| {
                let metrics = metrics.clone();
                async move {
                    let openmetrics = headers
                        .get_all(http::header::ACCEPT)
                        .iter()
                        .filter_map(|value| value.to_str().ok())
                        .any(|value| value.contains("application/openmetrics-text"));
                    if openmetrics {
                        (
                            [(http::header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
                            metrics.render(),
                        )
                    } else {
                        (
                            [(http::header::CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE)],
                            metrics.render_prometheus_text(),
                        )
                    }
                }
            }),
        )
    }

    /// Records one gRPC call (used by [`GrpcMetricsLayer`]); `method` is already one
    /// of the bounded labels of [`GrpcMethods::label`].
    fn record_rpc(&self, method: &str, code: &'static str, started: Instant) {
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

/// `Content-Type` of [`Metrics::render`].
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `Content-Type` of [`Metrics::render_prometheus_text`].
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Rewrites prometheus_client's OpenMetrics exposition in the Prometheus text format
/// 0.0.4. The samples are the same; the descriptors differ: a counter's family is named
/// with its `_total` suffix, `info` becomes `gauge` (named `_info`) and `unknown`
/// `untyped`, and there is no `# UNIT` or `# EOF` line. (Exemplars, which this
/// project does not record, would not be converted.)
fn openmetrics_to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut lines = openmetrics.lines().peekable();
    while let Some(line) = lines.next() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let (keyword, rest) = if let Some(rest) = line.strip_prefix("# HELP ") {
            ("HELP", rest)
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            ("TYPE", rest)
        } else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
        // prometheus_client writes each family's HELP line right before its TYPE line.
        let kind = if keyword == "TYPE" {
            Some(text)
        } else {
            lines
                .peek()
                .and_then(|next| next.strip_prefix("# TYPE "))
                .and_then(|next| next.split_once(' '))
                .filter(|(next_name, _)| *next_name == name)
                .map(|(_, kind)| kind)
        };
        let (name, kind) = match kind {
            Some("counter") => (format!("{name}_total"), "counter"),
            Some("info") => (format!("{name}_info"), "gauge"),
            Some("unknown") => (name.to_owned(), "untyped"),
            Some(kind) => (name.to_owned(), kind),
            None => (name.to_owned(), "untyped"),
        };
        let text = if keyword == "TYPE" { kind } else { text };
        out.push_str(&format!("# {keyword} {name} {text}\n"));
    }
    out
}

/// The gRPC methods one server serves, each the label of its own calls; every other
/// path shares the label `unknown`.
#[derive(Clone, Debug, Default)]
pub struct GrpcMethods {
    paths: Arc<HashSet<Box<str>>>,
}

impl GrpcMethods {
    /// The label of every call to a path no served method has.
    pub const UNKNOWN: &'static str = "unknown";

    /// Every method (`/package.Service/Method`) of the services named `service_names`
    /// in the encoded `FileDescriptorSet`s `descriptor_sets`.
    pub fn from_descriptors(service_names: &[&str], descriptor_sets: &[&[u8]]) -> Self {
        let mut paths = HashSet::new();
        for encoded in descriptor_sets {
            // The sets are compiled into the binary; one that does not decode is a
            // build defect, and a server without its labels still serves.
            let Ok(set) = prost_types::FileDescriptorSet::decode(*encoded) else {
                tracing::error!("a compiled-in file descriptor set does not decode");
                continue;
            };
            for file in &set.file {
                for service in &file.service {
                    let full_name = match file.package() {
                        "" => service.name().to_owned(),
                        package => format!("{package}.{}", service.name()),
                    };
                    if !service_names.contains(&full_name.as_str()) {
                        continue;
                    }
                    for method in &service.method {
                        paths.insert(format!("/{full_name}/{}", method.name()).into());
                    }
                }
            }
        }
        Self {
            paths: Arc::new(paths),
        }
    }

    /// What [`crate::grpc::serve_grpc`] serves: the application's `service_names`
    /// (from [`proto::FILE_DESCRIPTOR_SET`]), grpc.health.v1 and reflection v1.
    pub fn served_by(service_names: &[&str]) -> Self {
        let mut names = service_names.to_vec();
        names.push(tonic_health::pb::health_server::SERVICE_NAME);
        names.push(tonic_reflection::pb::v1::server_reflection_server::SERVICE_NAME);
        Self::from_descriptors(
            &names,
            &[
                proto::FILE_DESCRIPTOR_SET,
                tonic_health::pb::FILE_DESCRIPTOR_SET,
                tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            ],
        )
    }

    /// The `method` label of a call to `path`: the path itself when served, else
    /// [`GrpcMethods::UNKNOWN`].
    pub fn label<'a>(&self, path: &'a str) -> &'a str {
        if self.paths.contains(path) {
            path
        } else {
            Self::UNKNOWN
        }
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

/// The connection rules of every `/metrics` port. Only scrapers and operators call
/// it, on an internal network, each with a request or two a minute: a slow or silent
/// client is a fault or a probe, never a customer on a bad link, so the deadlines are
/// short and a handful of connections is plenty. Prometheus keeps its connection open
/// between scrapes (15 to 60 s apart); the idle timeout outlasts that.
pub const METRICS_LIMITS: crate::http::Limits = crate::http::Limits {
    header_read_timeout: Duration::from_secs(5),
    body_read_timeout: Duration::from_secs(5),
    idle_timeout: Duration::from_secs(120),
    max_connections: 64,
};

/// Serves `/metrics` on `listener` with [`METRICS_LIMITS`] until `shutdown` fires,
/// then drains its connections for at most `drain_timeout`.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    shutdown: crate::shutdown::Shutdown,
    drain_timeout: Duration,
) {
    crate::http::serve(
        listener,
        metrics.router(),
        METRICS_LIMITS,
        shutdown,
        drain_timeout,
    )
    .await;
}

/// Tower layer recording each gRPC call in [`Metrics`], labelled by `methods`.
#[derive(Clone, Debug)]
pub struct GrpcMetricsLayer {
    metrics: Metrics,
    methods: GrpcMethods,
}

impl GrpcMetricsLayer {
    pub fn new(metrics: Metrics, methods: GrpcMethods) -> Self {
        Self { metrics, methods }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
            methods: self.methods.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: Metrics,
    methods: GrpcMethods,
}

/// Records its call when dropped: with the code set once the response is there, or as
/// CANCELLED when the client went away first (the server then drops the call's future).
struct RecordCall {
    metrics: Metrics,
    method: String,
    started: Instant,
    code: &'static str,
}

impl Drop for RecordCall {
    fn drop(&mut self) {
        self.metrics
            .record_rpc(&self.method, self.code, self.started);
    }
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
        let record = RecordCall {
            metrics: self.metrics.clone(),
            method: self.methods.label(request.uri().path()).to_owned(),
            started: Instant::now(),
            code: format_code(tonic::Code::Cancelled),
        };
        let future = self.inner.call(request);
        Box::pin(async move {
            // The whole guard moves in (not just the field assigned below), so it is
            // dropped with the call's future.
            let mut record = record;
            let response = future.await;
            record.code = match &response {
                // A failed unary call answers "trailers-only": its status is in the
                // headers. A successful one carries `grpc-status: 0` in the trailers.
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<i32>().ok())
                    .map_or("OK", |code| format_code(tonic::Code::from_i32(code))),
                Err(_) => format_code(tonic::Code::Unknown),
            };
            response
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
    use std::sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    };

    use super::{GrpcMethods, GrpcMetricsLayer, Metrics, openmetrics_to_prometheus_text};

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

    #[test]
    fn atomic_counters_export_each_field_live_under_its_own_name() {
        #[derive(Default)]
        struct Counts {
            hits: AtomicU64,
            misses: AtomicU64,
        }
        let metrics = Metrics::new();
        let counts = Arc::new(Counts::default());
        metrics.register_atomic_counters(
            &counts,
            &[
                ("test_hits", "Hits", |c| &c.hits),
                ("test_misses", "Misses", |c| &c.misses),
            ],
        );

        counts.hits.store(3, Ordering::Relaxed);
        counts.misses.store(5, Ordering::Relaxed);
        let text = metrics.render();

        assert!(text.contains("test_hits_total 3"), "{text}");
        assert!(text.contains("test_misses_total 5"), "{text}");
    }

    #[test]
    fn known_methods_come_from_the_descriptors_of_the_served_services() {
        let methods = GrpcMethods::served_by(&[proto::SESSION_SERVICE_NAME]);

        for path in [
            "/learngreek.session.v1.SessionService/Login",
            "/learngreek.session.v1.SessionService/GetPublicKeys",
            "/grpc.health.v1.Health/Check",
            "/grpc.health.v1.Health/Watch",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        ] {
            assert_eq!(methods.label(path), path);
        }
        for path in [
            "/learngreek.deck.v1.DeckService/ListDecks",
            "/learngreek.session.v1.SessionService/NoSuchMethod",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            "/learngreek.session.v1.SessionService/Login/extra",
            "",
        ] {
            assert_eq!(methods.label(path), GrpcMethods::UNKNOWN, "{path}");
        }
    }

    #[test]
    fn openmetrics_descriptors_become_prometheus_text_ones() {
        let openmetrics = "# HELP requests Requests served.\n\
                           # TYPE requests counter\n\
                           requests_total{code=\"OK\"} 3\n\
                           # HELP latency_seconds Latency.\n\
                           # TYPE latency_seconds histogram\n\
                           # UNIT latency_seconds seconds\n\
                           latency_seconds_sum 0.5\n\
                           latency_seconds_count 1\n\
                           latency_seconds_bucket{le=\"+Inf\"} 1\n\
                           # HELP build Build.\n\
                           # TYPE build info\n\
                           build_info{version=\"1\"} 1\n\
                           # HELP state State.\n\
                           # TYPE state gauge\n\
                           state 2\n\
                           # EOF\n";

        let text = openmetrics_to_prometheus_text(openmetrics);

        assert_eq!(
            text,
            "# HELP requests_total Requests served.\n\
             # TYPE requests_total counter\n\
             requests_total{code=\"OK\"} 3\n\
             # HELP latency_seconds Latency.\n\
             # TYPE latency_seconds histogram\n\
             latency_seconds_sum 0.5\n\
             latency_seconds_count 1\n\
             latency_seconds_bucket{le=\"+Inf\"} 1\n\
             # HELP build_info Build.\n\
             # TYPE build_info gauge\n\
             build_info{version=\"1\"} 1\n\
             # HELP state State.\n\
             # TYPE state gauge\n\
             state 2\n"
        );
    }

    #[tokio::test]
    async fn a_call_dropped_before_its_response_counts_as_cancelled() {
        use tower::{Layer, Service, ServiceExt};
        let metrics = Metrics::new();
        let path = "/grpc.health.v1.Health/Check";
        let layer = GrpcMetricsLayer::new(metrics.clone(), GrpcMethods::served_by(&[]));
        // A handler that never answers: the client gives up first.
        let mut service = layer.layer(tower::service_fn(|_: http::Request<()>| {
            futures::future::pending::<Result<http::Response<()>, std::convert::Infallible>>()
        }));

        let call = service
            .ready()
            .await
            .unwrap()
            .call(http::Request::get(path).body(()).unwrap());
        drop(call);

        let text = metrics.render_prometheus_text();
        assert!(
            text.contains(&format!(
                r#"grpc_server_requests_total{{method="{path}",code="CANCELLED"}} 1"#
            )),
            "{text}"
        );
    }
}
