//! Client-side load balancing for every gRPC client (ARCHITECTURE.md, "Replicas and load
//! balancing").
//!
//! gRPC keeps one long-lived HTTP/2 connection per channel, so a plain tonic `Channel` to a
//! Kubernetes ClusterIP Service sends every call of a process to the one pod it reached
//! first, and replicas the autoscaler adds get nothing from running clients.
//! A [`BalancedChannel`] instead holds one lazily connected tonic `Channel` per address of
//! the service and spreads calls over them:
//!
//! - **Addresses.** A [`ServiceUrl`] is one `http://host:port` or a comma-separated list of
//!   them. IP literals are used as they are; DNS names (a headless Service) are resolved in
//!   a background task, again every `GRPC_RESOLVE_INTERVAL_MS`: new addresses get calls
//!   from the next resolution on, addresses that are gone are dropped (calls in flight on
//!   them finish). A name that fails to resolve keeps its last addresses. At most
//!   [`MAX_ENDPOINTS`] addresses are used.
//! - **Picking.** Round robin over the endpoints not known to be down. An endpoint whose
//!   call fails in the transport (connection refused, reset, closed) is marked down and
//!   gets no calls until a TCP connect to it succeeds again (probed every
//!   [`PROBE_INTERVAL`]). When every endpoint is down, calls still go out round robin, so
//!   one that came back is found without waiting for the probe.
//! - **Retry.** A call in [`IDEMPOTENT_READS`] that fails before any response (a transport
//!   failure, or a trailers-only UNAVAILABLE answer) is sent once more, to a different
//!   endpoint, within what is left of its `grpc-timeout`. Its request body is buffered for
//!   that (unary requests are small). Every other call is sent once: a write that fails is
//!   the caller's to handle, because it may have been applied.
//! - **Lifetime.** The background task holds only a weak reference: it stops when the last
//!   clone of the channel is dropped, or on the process's shutdown signal, whichever comes
//!   first. It never runs on a caller's future, so a caller that gives up cannot stall it.
//!
//! A URL with a single IP address behaves like the plain tonic channel it replaces: one
//! endpoint, connected on first use, no retry (there is no other endpoint to retry on).

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, RwLock, Weak,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use clap::Args;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use tokio::{sync::watch, time::Instant};
use tonic::{body::Body, transport::Channel};
use tower::ServiceExt;

use crate::{config::parse_millis, shutdown::Shutdown, sync::RwLockExt};

/// Most endpoints one channel balances over; further addresses are ignored (with a warning).
pub const MAX_ENDPOINTS: usize = 64;
/// How often endpoints marked down are probed with a TCP connect.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Longest wait for one probe's TCP connect.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait for one DNS resolution; a slower one counts as failed.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest time a call made right after start waits for the first resolution.
const FIRST_RESOLUTION_WAIT: Duration = Duration::from_secs(3);
/// Connect timeout of each endpoint's connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 keep-alive pings, so a peer that vanished without a FIN is noticed.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// The gRPC methods that only read, and so are retried once on another endpoint when they
/// fail before any response. Every method of `proto/proto/learngreek/*` is either here or
/// a write (a unit test below keeps the two lists complete): Get*, List* and Search* read;
/// everything else (Register, Login, Refresh, Logout*, RevokeSession, Update*, Create*,
/// Delete*, InitializeStudy, Submit*) writes, even where it is idempotent in effect, because
/// a second attempt of a write that reached the first server is not ours to judge.
pub const IDEMPOTENT_READS: &[&str] = &[
    "/learngreek.deck.v1.DeckService/ListDecks",
    "/learngreek.deck.v1.DeckService/SearchDecks",
    "/learngreek.deck.v1.DeckService/GetDeck",
    "/learngreek.deck.v1.DeckService/ListCards",
    "/learngreek.deck.v1.DeckService/SearchCards",
    "/learngreek.deck.v1.DeckService/GetCard",
    "/learngreek.deck.v1.DeckService/GetStudyQueue",
    "/learngreek.deck.v1.DeckService/GetStudyStats",
    "/learngreek.deck.v1.DeckService/ListReviews",
    "/learngreek.deck.v1.DeckService/GetDashboard",
    "/learngreek.deck.v1.DeckService/ListDeckProgress",
    "/learngreek.deck.v1.DeckService/GetDeckProgress",
    "/learngreek.deck.v1.DeckService/GetTrends",
    "/learngreek.session.v1.SessionService/ListSessions",
    "/learngreek.session.v1.SessionService/GetProfile",
    "/learngreek.session.v1.SessionService/GetPublicKeys",
    "/grpc.health.v1.Health/Check",
];

/// Whether the call to `path` (`/package.Service/Method`) may be retried on another endpoint.
pub fn is_idempotent_read(path: &str) -> bool {
    IDEMPOTENT_READS.contains(&path)
}

/// Settings of every balanced gRPC client of a process. Kept here rather than in
/// [`crate::config`] because only this module reads them.
#[derive(Clone, Debug, Args)]
pub struct ClientConfig {
    /// How often, in milliseconds, the DNS names in a service URL are resolved again
    /// (100–60000): new replicas get calls, and gone ones are dropped, within this time.
    #[arg(long = "grpc-resolve-interval-ms", env = "GRPC_RESOLVE_INTERVAL_MS",
          default_value = "5000", value_parser = parse_resolve_interval)]
    pub grpc_resolve_interval: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            grpc_resolve_interval: Duration::from_secs(5),
        }
    }
}

fn parse_resolve_interval(value: &str) -> Result<Duration, String> {
    let interval = parse_millis(value)?;
    if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&interval) {
        return Err(format!(
            "'{value}' is not between 100 and 60000 milliseconds"
        ));
    }
    Ok(interval)
}

/// Where one part of a [`ServiceUrl`] points.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    host: Host,
    port: u16,
}

/// A gRPC service URL: `http://host:port`, or several of them separated by commas. Hosts are
/// IP addresses or DNS names; the port defaults to 80, as for any `http://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceUrl {
    text: String,
    targets: Vec<Target>,
}

impl ServiceUrl {
    /// Parses and checks a service URL (also the clap value parser of every `*_SERVICE_URL`).
    pub fn parse(value: &str) -> Result<Self, String> {
        let parts: Vec<&str> = value.split(',').map(str::trim).collect();
        if parts.len() > MAX_ENDPOINTS {
            return Err(format!(
                "names {} URLs; at most {MAX_ENDPOINTS} are allowed",
                parts.len()
            ));
        }
        let targets = parts
            .iter()
            .map(|part| parse_target(part).map_err(|reason| format!("'{part}' {reason}")))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            text: value.trim().to_owned(),
            targets,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn has_names(&self) -> bool {
        self.targets
            .iter()
            .any(|target| matches!(target.host, Host::Name(_)))
    }
}

impl std::str::FromStr for ServiceUrl {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        Self::parse(value)
    }
}

impl std::fmt::Display for ServiceUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn parse_target(part: &str) -> Result<Target, &'static str> {
    if part.is_empty() {
        return Err("is empty (a comma too many?)");
    }
    let uri: http::Uri = part.parse().map_err(|_| "is not a URL")?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err("uses https, which this build does not support"),
        _ => return Err("must start with http://"),
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err("must not have a path");
    }
    let host = uri
        .host()
        .filter(|host| !host.is_empty())
        .ok_or("has no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = match host.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) => Host::Name(host.to_owned()),
    };
    // `Uri::port` reads an out-of-range port as no port at all, so read the authority.
    let authority = uri.authority().map_or("", |authority| authority.as_str());
    if authority.contains('@') {
        return Err("must not carry credentials");
    }
    let port = match authority.rsplit_once(':') {
        Some((_, port)) if !port.contains(']') => port
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or("has a port outside 1-65535")?,
        _ => 80,
    };
    Ok(Target { host, port })
}

/// Turns a DNS name and a port into addresses: [`SystemResolver`] in production, and a
/// table a test controls where a test needs a name whose addresses change.
pub trait Resolve: Send + Sync + 'static {
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>>;
}

/// The operating system's resolver (`getaddrinfo`, through `tokio::net::lookup_host`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> {
        let host = host.to_owned();
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect())
        })
    }
}

/// What [`BalancedChannel::endpoints`] reports about one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointStatus {
    pub addr: SocketAddr,
    /// False while the endpoint is marked down (its last call failed in the transport and
    /// no probe has reached it since).
    pub up: bool,
}

/// One address of the service and its own lazily connected channel.
struct Endpoint {
    addr: SocketAddr,
    channel: Channel,
    down: AtomicBool,
}

impl Endpoint {
    fn new(addr: SocketAddr) -> Self {
        #[allow(
            clippy::expect_used,
            reason = "`http://` and a formatted SocketAddr always parse as a URI"
        )]
        let uri = http::Uri::try_from(format!("http://{addr}"))
            .expect("a socket address always forms a valid authority");
        // The settings the gateway's channels always had: TCP_NODELAY (without it a small
        // request waits for a delayed ACK, ~40 ms), and keep-alive pings while idle.
        let channel = tonic::transport::Endpoint::from(uri)
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_while_idle(true)
            .connect_lazy();
        Self {
            addr,
            channel,
            down: AtomicBool::new(false),
        }
    }

    fn is_up(&self) -> bool {
        !self.down.load(Ordering::Relaxed)
    }

    fn mark_down(&self, error: &tonic::transport::Error) {
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(addr = %self.addr, error = %error_chain(error), "gRPC endpoint marked down");
        }
    }

    fn mark_up(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!(addr = %self.addr, "gRPC endpoint is back");
        }
    }

    /// Sends one call; a transport failure other than the call's own deadline marks the
    /// endpoint down.
    async fn send(&self, request: http::Request<Body>) -> Result<http::Response<Body>, BoxError> {
        let result = self.channel.clone().oneshot(request).await;
        if let Err(error) = &result
            && !is_deadline(error)
        {
            self.mark_down(error);
        }
        result.map_err(Into::into)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Endpoints = Arc<[Arc<Endpoint>]>;

/// A tonic-compatible channel over every address of a [`ServiceUrl`]. Cheap to clone (all
/// clones share the endpoints); use it wherever a `tonic::transport::Channel` went:
/// `DeckServiceClient::new(channel)`.
#[derive(Clone)]
pub struct BalancedChannel {
    shared: Arc<Shared>,
}

struct Shared {
    url: String,
    endpoints: RwLock<Endpoints>,
    /// Round-robin position (the first call goes to the first address).
    next: AtomicUsize,
    /// True once the first resolution is done (at once when the URL names no DNS name).
    resolved: watch::Sender<bool>,
}

impl std::fmt::Debug for BalancedChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BalancedChannel")
            .field("url", &self.shared.url)
            .field("endpoints", &self.endpoints())
            .finish()
    }
}

impl BalancedChannel {
    /// A channel over `url`'s addresses, resolving DNS names with the system resolver.
    /// Connects lazily, so a process starts (and reports not ready) while the service is
    /// down. Must be called inside a Tokio runtime (it starts the background task).
    pub fn new(url: &ServiceUrl, config: &ClientConfig, shutdown: &Shutdown) -> Self {
        Self::with_resolver(url, config, shutdown, Arc::new(SystemResolver))
    }

    /// As [`BalancedChannel::new`], resolving DNS names with `resolver`.
    pub fn with_resolver(
        url: &ServiceUrl,
        config: &ClientConfig,
        shutdown: &Shutdown,
        resolver: Arc<dyn Resolve>,
    ) -> Self {
        let shared = Arc::new(Shared {
            url: url.text.clone(),
            endpoints: RwLock::new(Arc::from(Vec::new())),
            next: AtomicUsize::new(0),
            resolved: watch::channel(false).0,
        });
        if !url.has_names() {
            // Only IP literals: the endpoints are known now, and never change.
            let addrs = url
                .targets
                .iter()
                .filter_map(|target| match target.host {
                    Host::Ip(ip) => Some(SocketAddr::new(ip, target.port)),
                    Host::Name(_) => None,
                })
                .collect();
            shared.update(dedup_and_cap(&shared.url, addrs));
            shared.resolved.send_replace(true);
        }
        tokio::spawn(maintain(
            Arc::downgrade(&shared),
            url.clone(),
            config.grpc_resolve_interval,
            resolver,
            shutdown.clone(),
        ));
        Self { shared }
    }

    /// The current endpoints in round-robin order, with their state.
    pub fn endpoints(&self) -> Vec<EndpointStatus> {
        self.shared
            .snapshot()
            .iter()
            .map(|endpoint| EndpointStatus {
                addr: endpoint.addr,
                up: endpoint.is_up(),
            })
            .collect()
    }
}

impl tower::Service<http::Request<Body>> for BalancedChannel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    /// Always ready: readiness is per endpoint, and waited for inside the call.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move { shared.dispatch(request).await })
    }
}

impl Shared {
    fn snapshot(&self) -> Endpoints {
        self.endpoints.read_unpoisoned().clone()
    }

    /// The next endpoint in round-robin order other than `except`: one not known to be
    /// down if there is any, else any.
    fn pick(&self, except: Option<SocketAddr>) -> Option<Arc<Endpoint>> {
        let endpoints = self.snapshot();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let in_order = || {
            (0..endpoints.len())
                .map(|offset| &endpoints[start.wrapping_add(offset) % endpoints.len()])
                .filter(|endpoint| Some(endpoint.addr) != except)
        };
        in_order()
            .find(|endpoint| endpoint.is_up())
            .or_else(|| in_order().next())
            .cloned()
    }

    async fn dispatch(
        &self,
        request: http::Request<Body>,
    ) -> Result<http::Response<Body>, BoxError> {
        if !*self.resolved.borrow() {
            let mut resolved = self.resolved.subscribe();
            let _ =
                tokio::time::timeout(FIRST_RESOLUTION_WAIT, resolved.wait_for(|done| *done)).await;
        }
        let Some(first) = self.pick(None) else {
            return Err(Box::new(tonic::Status::unavailable(format!(
                "no address of {} is known",
                self.url
            ))));
        };
        if !is_idempotent_read(request.uri().path()) {
            return first.send(request).await;
        }

        let started = Instant::now();
        let (parts, body) = request.into_parts();
        let body = body.collect().await?.to_bytes();
        let attempt = |parts: http::request::Parts| {
            http::Request::from_parts(parts, Body::new(Full::new(body.clone())))
        };
        let result = first.send(attempt(parts.clone())).await;
        if !failed_before_any_response(&result) {
            return result;
        }
        let Some(second) = self.pick(Some(first.addr)) else {
            return result;
        };
        let mut parts = parts;
        if let Some(timeout) = parts.headers.get(GRPC_TIMEOUT).and_then(parse_grpc_timeout) {
            let Some(left) = timeout
                .checked_sub(started.elapsed())
                .filter(|left| !left.is_zero())
            else {
                return result;
            };
            parts
                .headers
                .insert(GRPC_TIMEOUT, format_grpc_timeout(left));
        }
        tracing::debug!(
            path = parts.uri.path(),
            from = %first.addr,
            to = %second.addr,
            "retrying an idempotent read on another endpoint"
        );
        second.send(attempt(parts)).await
    }

    /// Replaces the endpoint set with `addrs`, keeping the channels (and connections) of
    /// addresses that stay.
    fn update(&self, addrs: Vec<SocketAddr>) {
        let current = self.snapshot();
        if current
            .iter()
            .map(|endpoint| endpoint.addr)
            .eq(addrs.iter().copied())
        {
            return;
        }
        let next: Vec<Arc<Endpoint>> = addrs
            .iter()
            .map(|addr| {
                current
                    .iter()
                    .find(|endpoint| endpoint.addr == *addr)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Endpoint::new(*addr)))
            })
            .collect();
        let added: Vec<_> = addrs
            .iter()
            .filter(|addr| !current.iter().any(|endpoint| endpoint.addr == **addr))
            .collect();
        let removed: Vec<_> = current
            .iter()
            .map(|endpoint| endpoint.addr)
            .filter(|addr| !addrs.contains(addr))
            .collect();
        tracing::info!(url = %self.url, ?added, ?removed, "gRPC endpoints changed");
        *self.endpoints.write_unpoisoned() = Arc::from(next);
    }

    /// One TCP connect to each endpoint marked down; those that accept are up again.
    async fn probe_down_endpoints(&self) {
        let down: Vec<Arc<Endpoint>> = self
            .snapshot()
            .iter()
            .filter(|endpoint| !endpoint.is_up())
            .cloned()
            .collect();
        futures::future::join_all(down.iter().map(|endpoint| async move {
            let connect = tokio::net::TcpStream::connect(endpoint.addr);
            if let Ok(Ok(_)) = tokio::time::timeout(PROBE_TIMEOUT, connect).await {
                endpoint.mark_up();
            }
        }))
        .await;
    }
}

/// The background task of one channel: re-resolves DNS names and probes endpoints marked
/// down, until the channel is dropped or the process shuts down.
async fn maintain(
    shared: Weak<Shared>,
    url: ServiceUrl,
    resolve_interval: Duration,
    resolver: Arc<dyn Resolve>,
    shutdown: Shutdown,
) {
    let stop = shutdown.wait();
    tokio::pin!(stop);
    let mut resolve = tokio::time::interval(resolve_interval);
    resolve.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut probe = tokio::time::interval(PROBE_INTERVAL);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The last good answer of each target, kept when a later resolution fails.
    let mut last: Vec<Vec<SocketAddr>> = vec![Vec::new(); url.targets.len()];
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = resolve.tick(), if url.has_names() => {
                let addrs = resolve_all(&url, resolver.as_ref(), &mut last).await;
                let Some(shared) = shared.upgrade() else { return };
                shared.update(dedup_and_cap(&shared.url, addrs));
                shared.resolved.send_replace(true);
            }
            _ = probe.tick() => {
                let Some(shared) = shared.upgrade() else { return };
                shared.probe_down_endpoints().await;
            }
        }
    }
}

/// Every target's addresses, in the URL's order (a name's own addresses sorted, so the set
/// does not churn when a DNS server rotates its answers).
async fn resolve_all(
    url: &ServiceUrl,
    resolver: &dyn Resolve,
    last: &mut [Vec<SocketAddr>],
) -> Vec<SocketAddr> {
    let answers = futures::future::join_all(url.targets.iter().map(|target| async move {
        match &target.host {
            Host::Ip(ip) => Ok(vec![SocketAddr::new(*ip, target.port)]),
            Host::Name(name) => {
                match tokio::time::timeout(RESOLVE_TIMEOUT, resolver.resolve(name, target.port))
                    .await
                {
                    Ok(Ok(mut addrs)) => {
                        addrs.sort();
                        Ok(addrs)
                    }
                    Ok(Err(error)) => Err(error.to_string()),
                    Err(_) => Err(format!("no answer within {RESOLVE_TIMEOUT:?}")),
                }
            }
        }
    }))
    .await;
    for ((answer, kept), target) in answers.into_iter().zip(last.iter_mut()).zip(&url.targets) {
        match answer {
            Ok(addrs) => *kept = addrs,
            Err(error) => {
                tracing::warn!(host = ?target.host, %error, "cannot resolve a gRPC service name; keeping its last addresses");
            }
        }
    }
    last.iter().flatten().copied().collect()
}

fn dedup_and_cap(url: &str, addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let mut unique: Vec<SocketAddr> = Vec::with_capacity(addrs.len().min(MAX_ENDPOINTS));
    for addr in addrs {
        if unique.contains(&addr) {
            continue;
        }
        if unique.len() == MAX_ENDPOINTS {
            tracing::warn!(%url, "more than {MAX_ENDPOINTS} addresses; using the first {MAX_ENDPOINTS}");
            break;
        }
        unique.push(addr);
    }
    unique
}

/// Whether a call failed without the server answering it: no response at all (except for
/// the call's own deadline, which a retry cannot beat), or a trailers-only UNAVAILABLE.
fn failed_before_any_response(result: &Result<http::Response<Body>, BoxError>) -> bool {
    match result {
        Err(error) => !is_deadline(error.as_ref()),
        Ok(response) => response
            .headers()
            .get("grpc-status")
            .is_some_and(|code| code.as_bytes() == b"14"),
    }
}

fn is_deadline(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(error) = source {
        if error.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = error.source();
    }
    false
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(error) = source {
        text.push_str(": ");
        text.push_str(&error.to_string());
        source = error.source();
    }
    text
}

const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// A `grpc-timeout` value (at most 8 digits and a unit: H, M, S, m, u or n).
fn parse_grpc_timeout(value: &http::HeaderValue) -> Option<Duration> {
    let value = value.to_str().ok()?;
    let unit_at = value.len().checked_sub(1)?;
    let (digits, unit) = value.split_at(unit_at);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// `left` as a `grpc-timeout` value, in whole milliseconds (rounded up, so a retry never
/// gets a zero timeout), or seconds when that takes more than 8 digits.
#[allow(
    clippy::expect_used,
    reason = "ASCII digits and a unit letter are always a valid header value"
)]
fn format_grpc_timeout(left: Duration) -> http::HeaderValue {
    let millis = left.as_nanos().div_ceil(1_000_000);
    let text = if millis < 100_000_000 {
        format!("{millis}m")
    } else {
        format!("{}S", left.as_secs().min(99_999_999))
    };
    http::HeaderValue::try_from(text).expect("digits and a unit form a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_url_and_a_comma_list_parse_into_their_targets() {
        let single = ServiceUrl::parse("http://127.0.0.1:50051").unwrap();
        assert_eq!(
            single.targets,
            vec![Target {
                host: Host::Ip([127, 0, 0, 1].into()),
                port: 50051
            }]
        );
        let list =
            ServiceUrl::parse("http://10.0.0.1:1, http://deck-service:2,http://[::1]:3/").unwrap();
        assert_eq!(
            list.targets,
            vec![
                Target {
                    host: Host::Ip([10, 0, 0, 1].into()),
                    port: 1
                },
                Target {
                    host: Host::Name("deck-service".into()),
                    port: 2
                },
                Target {
                    host: Host::Ip("::1".parse().unwrap()),
                    port: 3
                },
            ]
        );
        assert!(list.has_names());
        assert!(!single.has_names());
        assert_eq!(
            ServiceUrl::parse("http://session-service").unwrap().targets[0].port,
            80
        );
    }

    #[test]
    fn bad_service_urls_are_refused_with_the_part_named() {
        for (url, reason) in [
            ("", "is empty"),
            ("http://a:1,", "is empty"),
            ("127.0.0.1:50051", "must start with http://"),
            ("https://a:1", "https"),
            ("http://a:1/path", "path"),
            ("http://a:99999", "port outside"),
            ("http://a:0", "port outside"),
            ("http://a b:1", "not a URL"),
        ] {
            let error = ServiceUrl::parse(url).unwrap_err();
            assert!(error.contains(reason), "{url}: {error}");
        }
        let too_many = vec!["http://10.0.0.1:1"; MAX_ENDPOINTS + 1].join(",");
        assert!(
            ServiceUrl::parse(&too_many)
                .unwrap_err()
                .contains("at most")
        );
    }

    #[test]
    fn the_resolve_interval_is_bounded() {
        assert_eq!(parse_resolve_interval("5000"), Ok(Duration::from_secs(5)));
        assert!(parse_resolve_interval("99").is_err());
        assert!(parse_resolve_interval("60001").is_err());
        assert!(parse_resolve_interval("soon").is_err());
    }

    #[test]
    fn grpc_timeouts_parse_and_format_in_the_wire_units() {
        let parse = |text: &str| parse_grpc_timeout(&http::HeaderValue::from_str(text).unwrap());
        assert_eq!(parse("1500m"), Some(Duration::from_millis(1500)));
        assert_eq!(parse("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse("123456789m"), None);
        assert_eq!(parse("m"), None);
        assert_eq!(parse("5x"), None);
        assert_eq!(
            format_grpc_timeout(Duration::from_micros(1_200_001)),
            "1201m"
        );
        assert_eq!(format_grpc_timeout(Duration::from_nanos(1)), "1m");
        assert_eq!(format_grpc_timeout(Duration::from_secs(200_000)), "200000S");
    }

    #[test]
    fn addresses_are_deduplicated_and_capped() {
        let addr = |port| SocketAddr::from(([127, 0, 0, 1], port));
        assert_eq!(
            dedup_and_cap("u", vec![addr(1), addr(2), addr(1)]),
            vec![addr(1), addr(2)]
        );
        let many: Vec<_> = (1..=200).map(addr).collect();
        assert_eq!(dedup_and_cap("u", many.clone()), many[..MAX_ENDPOINTS]);
    }

    /// Writes: every method of the protos that is not a read. With [`IDEMPOTENT_READS`] it
    /// must cover every method, so a new RPC cannot go unclassified.
    const WRITES: &[&str] = &[
        "/learngreek.deck.v1.DeckService/CreateDeck",
        "/learngreek.deck.v1.DeckService/UpdateDeck",
        "/learngreek.deck.v1.DeckService/DeleteDeck",
        "/learngreek.deck.v1.DeckService/CreateCard",
        "/learngreek.deck.v1.DeckService/CreateCards",
        "/learngreek.deck.v1.DeckService/UpdateCard",
        "/learngreek.deck.v1.DeckService/DeleteCard",
        "/learngreek.deck.v1.DeckService/InitializeStudy",
        "/learngreek.deck.v1.DeckService/SubmitReview",
        "/learngreek.deck.v1.DeckService/SubmitReviews",
        "/learngreek.session.v1.SessionService/Register",
        "/learngreek.session.v1.SessionService/Login",
        "/learngreek.session.v1.SessionService/Refresh",
        "/learngreek.session.v1.SessionService/Logout",
        "/learngreek.session.v1.SessionService/LogoutAll",
        "/learngreek.session.v1.SessionService/RevokeSession",
        "/learngreek.session.v1.SessionService/UpdateProfile",
    ];

    #[test]
    fn every_rpc_of_the_protos_is_classified_as_a_read_or_a_write() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).unwrap();
        let mut methods = Vec::new();
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    methods.push(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
        assert!(methods.len() > 30, "descriptor set has {methods:?}");
        for method in &methods {
            let read = is_idempotent_read(method);
            let write = WRITES.contains(&method.as_str());
            assert!(read != write, "{method}: read {read}, write {write}");
            let name = method.rsplit('/').next().unwrap();
            let looks_like_read = ["Get", "List", "Search"]
                .iter()
                .any(|prefix| name.starts_with(prefix));
            assert_eq!(read, looks_like_read, "{method}");
        }
        for listed in IDEMPOTENT_READS.iter().chain(WRITES) {
            assert!(
                methods.contains(&(*listed).to_owned()) || listed.starts_with("/grpc.health"),
                "{listed} is not a method of the protos"
            );
        }
    }
}
