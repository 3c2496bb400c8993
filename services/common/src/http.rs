//! Hardened HTTP serving: hyper-util's builder serving HTTP/1.1 and h2c (prior
//! knowledge), as `axum::serve` does, plus the connection rules `axum::serve` lacks,
//! which would keep slow and silent clients connected forever (STYLE.md, "Pitfalls").
//! The gateway's API port serves through it with the limits of HTTP_API.md
//! ("Connections"), every `/metrics` port with [`crate::metrics::METRICS_LIMITS`].
//!
//! - a new connection, and each later request on a kept-alive one (from its first
//!   byte), has [`Limits::header_read_timeout`] to deliver complete headers; then the
//!   connection is closed (no response: the request never arrived);
//! - a request body must be complete [`Limits::body_read_timeout`] after its headers; a
//!   late one fails the read ([`BodyTimedOut`]): the gateway answers 408 and the
//!   connection closes;
//! - a connection with no request in progress for [`Limits::idle_timeout`] is closed
//!   (HTTP/2: GOAWAY);
//! - at most [`Limits::max_connections`] connections are served at once; the next one
//!   is not accepted (it waits in the listen backlog) until one closes;
//! - on shutdown the listener closes, every connection finishes the requests it has and
//!   closes, and whatever is still open after the drain deadline is dropped.
//!
//! hyper's own `header_read_timeout` is not used: its clock also runs while a kept-alive
//! connection waits for its next request, so it would close idle connections at the
//! header deadline. Each connection has a watchdog instead ([`Clock`]), which tells
//! waiting for headers apart from idling. hyper's timer serves HTTP/2 keep-alive pings.

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    pin::{Pin, pin},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::ConnectInfo,
};
use http::{Request, Version};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto::Builder,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Notify, OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
    time::{Instant, Sleep},
};
use tower::ServiceExt;

use crate::{shutdown::Shutdown, sync::MutexExt};

/// HTTP/2 pings on a quiet connection, so a vanished peer is noticed.
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// How long an HTTP/2 ping may go unanswered before the connection is closed.
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a listener waits for slow or silent clients, and how many it serves at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest time for a request's complete headers, from accepting the connection or
    /// from the first byte of a later request on it.
    pub header_read_timeout: Duration,
    /// Longest time for a request body to arrive after its headers.
    pub body_read_timeout: Duration,
    /// How long a connection may stay open with no request in progress.
    pub idle_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: u32,
}

/// The timeouts each connection's watchdog applies.
#[derive(Clone, Copy, Debug)]
struct Timeouts {
    header_read: Duration,
    body_read: Duration,
    idle: Duration,
}

/// Serves `router` on `listener` until `shutdown` fires, then drains the open
/// connections for at most `drain_timeout`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: Shutdown,
    drain_timeout: Duration,
) {
    let timeouts = Timeouts {
        header_read: limits.header_read_timeout,
        body_read: limits.body_read_timeout,
        idle: limits.idle_timeout,
    };
    let builder = Arc::new(builder());
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    let mut connections = JoinSet::new();
    loop {
        // A slot first, then accept: beyond the cap, connections wait in the backlog.
        #[allow(
            clippy::expect_used,
            reason = "`slots` is never closed: acquiring waits, it cannot fail"
        )]
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = shutdown.wait() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = accept(&listener) => accepted,
            () = shutdown.wait() => break,
        };
        while connections.try_join_next().is_some() {}
        connections.spawn(connection(
            builder.clone(),
            stream,
            peer,
            router.clone(),
            timeouts,
            shutdown.clone(),
            slot,
        ));
    }
    drop(listener);
    drain(connections, drain_timeout).await;
}

fn builder() -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT);
    builder
}

/// The next connection, with TCP_NODELAY (a small response is not held back waiting
/// for the client's delayed ACK).
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%error, "cannot set TCP_NODELAY");
                }
                return (stream, peer);
            }
            // The client gave up before it was accepted: nothing to do.
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                ) => {}
            // Out of file descriptors, say: retrying at once would spin.
            Err(error) => {
                tracing::error!(%error, "cannot accept HTTP connections; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Waits for every connection to close, at most `deadline`, then drops the rest.
async fn drain(mut connections: JoinSet<()>, deadline: Duration) {
    if connections.is_empty() {
        return;
    }
    tracing::info!(open = connections.len(), "draining HTTP connections");
    let drained = tokio::time::timeout(deadline, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            ?deadline,
            "HTTP connections still open at the shutdown deadline; closing them"
        );
        connections.shutdown().await;
    }
}

/// Serves one connection under its watchdog; `_slot` is its place under the cap.
async fn connection(
    builder: Arc<Builder<TokioExecutor>>,
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    timeouts: Timeouts,
    shutdown: Shutdown,
    _slot: OwnedSemaphorePermit,
) {
    let clock = Arc::new(Clock::new());
    let io = TokioIo::new(WatchedIo {
        stream,
        clock: clock.clone(),
    });
    let service = {
        let clock = clock.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let in_flight = clock.request_started(request.version());
            let (mut parts, body) = request.into_parts();
            let timed_out = BodyTimedOut::default();
            parts.extensions.insert(ConnectInfo(peer));
            parts.extensions.insert(timed_out.clone());
            let body = DeadlineBody {
                inner: body,
                deadline: Instant::now() + timeouts.body_read,
                sleep: None,
                timed_out,
            };
            let response = router
                .clone()
                .oneshot(Request::from_parts(parts, Body::new(body)));
            async move {
                let response = response.await.unwrap_or_else(|never| match never {});
                Ok::<_, Infallible>(response.map(|body| Tracked {
                    body,
                    _in_flight: in_flight,
                }))
            }
        })
    };
    let mut connection = pin!(builder.serve_connection(io, service));
    let mut stopping = pin!(shutdown.wait());
    let mut draining = false;
    loop {
        let deadline = clock.next_deadline(timeouts).map(|(at, _)| at);
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!(%peer, %error, "HTTP connection ended with an error");
                }
                return;
            }
            () = clock.changed.notified() => continue,
            () = sleep_until(deadline) => {}
            () = &mut stopping, if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
                continue;
            }
        }
        match clock.next_deadline(timeouts) {
            Some((at, Expiry::Close)) if at <= Instant::now() => {
                tracing::debug!(%peer, "request headers not received in time; closing the connection");
                return;
            }
            Some((at, Expiry::Shutdown)) if at <= Instant::now() => {
                clock.closing();
                connection.as_mut().graceful_shutdown();
            }
            _ => {}
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// What a connection is doing, as far as its timeouts are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting since then for a request's headers: a new connection, or an idle
    /// HTTP/1 connection on which the next request has started to arrive.
    Headers(Instant),
    /// At least one request is being served.
    Busy,
    /// No request in progress since then.
    Idle(Instant),
    /// Asked to close since then (idle); dropped if it takes longer than a header wait.
    Closing(Instant),
}

/// What the watchdog does at a deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expiry {
    /// Drop the connection.
    Close,
    /// Close it gracefully (HTTP/2: GOAWAY).
    Shutdown,
}

#[derive(Debug)]
struct ClockState {
    phase: Phase,
    in_flight: usize,
    http2: bool,
}

/// One connection's phase, fed by its socket ([`WatchedIo`]) and its requests
/// ([`InFlight`]), read by its watchdog, which `changed` wakes when a deadline moves
/// earlier.
#[derive(Debug)]
struct Clock {
    state: Mutex<ClockState>,
    changed: Notify,
}

impl Clock {
    fn new() -> Self {
        Self {
            state: Mutex::new(ClockState {
                phase: Phase::Headers(Instant::now()),
                in_flight: 0,
                http2: false,
            }),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ClockState> {
        self.state.lock_unpoisoned()
    }

    /// Bytes arrived. On an idle HTTP/1 connection they are the next request's start.
    /// (On HTTP/2, pings and settings arrive on idle connections too; they are not requests.)
    fn received(&self) {
        let mut state = self.state();
        if matches!(state.phase, Phase::Idle(_)) && !state.http2 {
            state.phase = Phase::Headers(Instant::now());
            drop(state);
            self.changed.notify_one();
        }
    }

    fn request_started(self: &Arc<Self>, version: Version) -> InFlight {
        let mut state = self.state();
        state.in_flight += 1;
        state.http2 |= version == Version::HTTP_2;
        state.phase = Phase::Busy;
        InFlight(self.clone())
    }

    fn request_finished(&self) {
        let mut state = self.state();
        state.in_flight -= 1;
        if state.in_flight == 0 {
            state.phase = Phase::Idle(Instant::now());
            drop(state);
            self.changed.notify_one();
        }
    }

    fn closing(&self) {
        self.state().phase = Phase::Closing(Instant::now());
    }

    fn next_deadline(&self, timeouts: Timeouts) -> Option<(Instant, Expiry)> {
        match self.state().phase {
            Phase::Headers(since) => Some((since + timeouts.header_read, Expiry::Close)),
            Phase::Busy => None,
            Phase::Idle(since) => Some((since + timeouts.idle, Expiry::Shutdown)),
            Phase::Closing(since) => Some((since + timeouts.header_read, Expiry::Close)),
        }
    }
}

/// One request being served: from its headers until its response body is done or
/// dropped (the client went away).
#[derive(Debug)]
struct InFlight(Arc<Clock>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// The socket, telling the clock when bytes arrive.
struct WatchedIo {
    stream: TcpStream,
    clock: Arc<Clock>,
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.clock.received();
        }
        read
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// In a request's extensions: set once its body missed the body-read deadline, so
/// the answer is a 408 whatever the handler made of the failed read.
#[derive(Clone, Debug, Default)]
pub struct BodyTimedOut(Arc<AtomicBool>);

impl BodyTimedOut {
    pub fn fired(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The read of a request body after its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyReadTimeout;

/// A request body that fails once `deadline` passes before it is complete. The timer
/// is only created when a read has to wait, so complete bodies cost none.
struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    timed_out: BodyTimedOut,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.timed_out.fired() {
            return Poll::Ready(Some(Err(BodyReadTimeout.into())));
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(sleep.as_mut().poll(cx));
        this.timed_out.0.store(true, Ordering::Relaxed);
        Poll::Ready(Some(Err(BodyReadTimeout.into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request [`InFlight`] until it is sent or dropped.
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
