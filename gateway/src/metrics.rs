//! The gateway's own series in the process registry (served on the metrics port
//! like every process's, and on the API's `/metrics`): HTTP requests by route
//! template, method and status, their latency, and rate-limit fail-opens.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone)]
pub struct HttpMetrics {
    registry: common::metrics::Metrics,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
    pub rate_limit_fail_open: Counter,
}

impl std::fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpMetrics").finish_non_exhaustive()
    }
}

impl HttpMetrics {
    /// Registers the gateway's series in `registry`.
    pub fn register(registry: &common::metrics::Metrics) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(common::metrics::latency_buckets())
        });
        let rate_limit_fail_open = Counter::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer each HTTP request, by method and route template",
            duration.clone(),
        );
        registry.register(
            "gateway_rate_limit_fail_open",
            "Calls let through unchecked because the rate-limit Redis was unavailable",
            rate_limit_fail_open.clone(),
        );
        Self {
            registry: registry.clone(),
            requests,
            duration,
            rate_limit_fail_open,
        }
    }

    /// Records one answered request; `route` is the matched template (or `unmatched`,
    /// so random paths cannot blow up the label set).
    pub fn record(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let (method, route) = (method.to_owned(), route.to_owned());
        self.requests
            .get_or_create(&RequestLabels {
                method: method.clone(),
                route: route.clone(),
                status,
            })
            .inc();
        self.duration
            .get_or_create(&RouteLabels { method, route })
            .observe(seconds);
    }

    pub fn render(&self) -> String {
        self.registry.render()
    }
}
