//! The gateway's own series in the process registry, served on the metrics port
//! (`METRICS_ADDR`) with every other series, never on the API port: HTTP requests by
//! route template, method and status, their latency, rate-limit fail-opens, and the
//! reconciliation of the API limits with Redis.
//!
//! Every label has a fixed set of values whatever the clients send: methods outside
//! [`MethodLabel`]'s set count as `OTHER`, a route is one of the router's templates or
//! `unmatched`, and statuses are the few the gateway answers with. Recording a request
//! allocates no label text.

use axum::extract::MatchedPath;
use http::Method;
use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder},
    metrics::{counter::Counter, family::Family, histogram::Histogram},
};

use crate::rate_limit::api::{ApiLimiter, SyncMetrics};

/// The `route` label of a request whose path matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The `method` label: the methods the API uses, and `OTHER` for any other, so a client
/// making up methods cannot add series.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum MethodLabel {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Other,
}

impl MethodLabel {
    pub fn of(method: &Method) -> Self {
        match *method {
            Method::GET => Self::Get,
            Method::HEAD => Self::Head,
            Method::POST => Self::Post,
            Method::PUT => Self::Put,
            Method::PATCH => Self::Patch,
            Method::DELETE => Self::Delete,
            Method::OPTIONS => Self::Options,
            _ => Self::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Options => "OPTIONS",
            Self::Other => "OTHER",
        }
    }
}

impl EncodeLabelValue for MethodLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// The `route` label: the template of the route the router matched (one of its own, so
/// the set is bounded), or [`UNMATCHED_ROUTE`]. A clone is a reference count: axum keeps
/// the template in an `Arc`.
#[derive(Clone, Debug)]
pub struct RouteLabel(Option<MatchedPath>);

impl RouteLabel {
    pub fn of(matched: Option<&MatchedPath>) -> Self {
        Self(matched.cloned())
    }

    pub fn as_str(&self) -> &str {
        self.0.as_ref().map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
    }
}

impl PartialEq for RouteLabel {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RouteLabel {}

impl std::hash::Hash for RouteLabel {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for RouteLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: MethodLabel,
    route: RouteLabel,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: MethodLabel,
    route: RouteLabel,
}

#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
    pub rate_limit_fail_open: Counter,
    pub rate_limit_sync: SyncMetrics,
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
        let rate_limit_sync = SyncMetrics::default();
        registry.register(
            "gateway_rate_limit_sync_batches",
            "Script calls that reported locally admitted API calls to the rate-limit Redis and brought back the shared state",
            rate_limit_sync.batches.clone(),
        );
        registry.register(
            "gateway_rate_limit_sync_failures",
            "Reconciliation script calls that failed; their counts are sent again with the next tick",
            rate_limit_sync.failures.clone(),
        );
        registry.register(
            "gateway_rate_limit_sync_dropped",
            "Locally admitted API calls never reported to Redis because the reconciliation queue was full",
            rate_limit_sync.dropped.clone(),
        );
        Self {
            requests,
            duration,
            rate_limit_fail_open,
            rate_limit_sync,
        }
    }

    /// Records one answered request (labels from [`MethodLabel::of`] and [`RouteLabel::of`]).
    pub fn record(&self, method: MethodLabel, route: RouteLabel, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route: route.clone(),
                status,
            })
            .inc();
        self.duration
            .get_or_create(&RouteLabels { method, route })
            .observe(seconds);
    }
}

/// The API limiter's gauges: buckets held, and buckets with calls not yet reported.
pub fn register_api_limiter(registry: &common::metrics::Metrics, limiter: &ApiLimiter) {
    let held = limiter.clone();
    registry.register_gauge_fn(
        "gateway_rate_limit_api_buckets",
        "API rate-limit buckets (user and endpoint) held in memory, at most RATE_LIMIT_API_MAX_BUCKETS",
        move || i64::try_from(held.buckets()).unwrap_or(i64::MAX),
    );
    let unreported = limiter.clone();
    registry.register_gauge_fn(
        "gateway_rate_limit_sync_unreported",
        "API rate-limit buckets with calls not yet reported to Redis (queued, or being sent)",
        move || i64::try_from(unreported.unreported()).unwrap_or(i64::MAX),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_fixed_set_are_other() {
        assert_eq!(MethodLabel::of(&Method::GET).as_str(), "GET");
        assert_eq!(MethodLabel::of(&Method::OPTIONS).as_str(), "OPTIONS");
        for made_up in ["BREW", "PROPFIND", "get", "XYZZY"] {
            let method = Method::from_bytes(made_up.as_bytes()).unwrap();
            assert_eq!(MethodLabel::of(&method), MethodLabel::Other, "{made_up}");
        }
    }

    /// The route label a router gives a request for `path`.
    async fn label_of(path: &str) -> String {
        use axum::{Router, body::Body, extract::Request, routing::get};
        use tower::ServiceExt;
        let label = |request: Request| async move {
            RouteLabel::of(request.extensions().get::<MatchedPath>())
                .as_str()
                .to_owned()
        };
        let router = Router::new()
            .route("/api/v1/decks/{id}", get(label))
            .fallback(label);
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn only_templates_of_the_router_are_route_labels() {
        assert_eq!(label_of("/api/v1/decks/123").await, "/api/v1/decks/{id}");
        assert_eq!(label_of("/api/v1/xp/123").await, UNMATCHED_ROUTE);
    }
}
