//! A gRPC server assembled by `common::grpc::serve_grpc` keeps a client's connection
//! when many of that client's calls are cancelled at once (docs/operations.md,
//! "gRPC connections and cancelled calls").
//!
//! The gateway keeps one HTTP/2 connection per service endpoint. When its own clients
//! hang up, it cancels their calls: a RST_STREAM per call. A server that reads many of
//! those before it has taken the calls off its accept queue (it was busy) used to
//! answer GOAWAY `too_many_resets` after 20, failing every other call on the
//! connection. The server here is made busy for real: its only thread blocks while
//! the client opens and cancels a burst of calls, then reads them all at once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use common::{
    grpc::{GrpcServer, MAX_LOCAL_ERROR_RESET_STREAMS, serve_grpc},
    health::Health,
    shutdown::Shutdown,
};
use tonic::{
    body::Body,
    codegen::{BoxFuture, Service, http},
    server::NamedService,
    service::Routes,
    transport::Channel,
};

/// Calls cancelled in one burst: five times the 20 that used to cost the connection.
const CANCELLED: usize = 100;
/// How long the server's thread stays blocked, the burst arriving meanwhile.
const BLOCKED_FOR: Duration = Duration::from_secs(2);

/// `/test.v1.Busy/Block` blocks the thread it runs on for [`BLOCKED_FOR`], like a
/// server whose only core is busy, then answers an empty message;
/// `/test.v1.Busy/Hold` never answers (it waits without blocking).
#[derive(Clone)]
struct Busy {
    entered: Arc<AtomicUsize>,
}

impl NamedService for Busy {
    const NAME: &'static str = "test.v1.Busy";
}

impl Service<http::Request<Body>> for Busy {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let method = Method {
            blocks: request.uri().path() == BLOCK,
            entered: self.entered.clone(),
        };
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<(), ()>::default());
            Ok(grpc.unary(method, request).await)
        })
    }
}

struct Method {
    blocks: bool,
    entered: Arc<AtomicUsize>,
}

impl tonic::server::UnaryService<()> for Method {
    type Response = ();
    type Future = BoxFuture<tonic::Response<()>, tonic::Status>;

    fn call(&mut self, _request: tonic::Request<()>) -> Self::Future {
        let (blocks, entered) = (self.blocks, self.entered.clone());
        Box::pin(async move {
            entered.fetch_add(1, Ordering::SeqCst);
            if blocks {
                std::thread::sleep(BLOCKED_FOR);
            } else {
                std::future::pending::<()>().await;
            }
            Ok(tonic::Response::new(()))
        })
    }
}

/// Starts `serve_grpc` with [`Busy`] on a thread of its own with a one-thread
/// runtime; returns its address and the count of calls that reached `Busy`.
fn start_server(shutdown: Shutdown) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let entered = Arc::new(AtomicUsize::new(0));
    let busy = Busy {
        entered: entered.clone(),
    };
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let (health, health_service) = Health::new(&[]).await;
            let server = GrpcServer {
                listener: tokio::net::TcpListener::from_std(listener).unwrap(),
                health,
                health_service,
                shutdown,
                shutdown_timeout: Duration::from_secs(1),
                service_names: &[],
                metrics: common::metrics::Metrics::new(),
            };
            serve_grpc(server, Routes::new(busy)).await.expect("serve");
        });
    });
    (addr, entered)
}

/// A channel that opens one connection only: should the server close it, every later
/// call fails, where a normal channel would reconnect and hide it.
async fn one_connection_channel(addr: std::net::SocketAddr) -> Channel {
    let opened = Arc::new(AtomicBool::new(false));
    let connector = tower::service_fn(move |_: http::Uri| {
        let opened = opened.clone();
        async move {
            if opened.swap(true, Ordering::SeqCst) {
                return Err(std::io::Error::other("this channel has had its connection"));
            }
            let stream = tokio::net::TcpStream::connect(addr).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_with_connector(connector)
        .await
        .expect("connect")
}

/// One unary call with an empty message to `path` on `channel`.
async fn call(channel: Channel, path: &'static str) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let path = http::uri::PathAndQuery::from_static(path);
    grpc.unary(tonic::Request::new(()), path, codec)
        .await
        .map(|_| ())
}

const CHECK: &str = "/grpc.health.v1.Health/Check";
const BLOCK: &str = "/test.v1.Busy/Block";
const HOLD: &str = "/test.v1.Busy/Hold";

/// Waits until `count` calls have reached the server.
async fn wait_entered(entered: &AtomicUsize, count: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while entered.load(Ordering::SeqCst) < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {count} calls reached the server",
            entered.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_cancelled_calls_leaves_the_connection_serving_the_others() {
    // Arrange: one channel (one HTTP/2 connection), working.
    test_support::init();
    let shutdown = Shutdown::new();
    let (addr, entered) = start_server(shutdown.clone());
    let channel = one_connection_channel(addr).await;
    call(channel.clone(), CHECK).await.expect("a first call");

    // Act: a call in flight that blocks the server's thread; meanwhile a burst of calls
    // is sent and cancelled, all read by the server only once it is free again.
    let in_flight = tokio::spawn(call(channel.clone(), BLOCK));
    wait_entered(&entered, 1).await;
    let cancelled: Vec<_> = (0..CANCELLED)
        .map(|_| tokio::spawn(call(channel.clone(), CHECK)))
        .collect();
    // Long enough for the client to write every request, well within the block.
    tokio::time::sleep(BLOCKED_FOR / 4).await;
    for call in &cancelled {
        call.abort();
    }
    let in_flight = tokio::time::timeout(Duration::from_secs(30), in_flight)
        .await
        .expect("the in-flight call ends")
        .unwrap();
    let mut later = Vec::new();
    for _ in 0..5 {
        later.push(call(channel.clone(), CHECK).await);
    }
    shutdown.trigger();

    // Assert: the call that shared the connection with the burst completed, and so do
    // the calls after it, on that same connection.
    assert!(
        in_flight.is_ok(),
        "the call in flight beside the cancelled ones failed: {in_flight:?}"
    );
    assert!(later.iter().all(Result::is_ok), "{later:?}");
    for call in cancelled {
        let cut = call.await;
        assert!(
            cut.as_ref().is_err_and(|e| e.is_cancelled()),
            "a call of the burst was not cancelled: {cut:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_cut_mid_flight_over_a_connections_life_do_not_use_up_its_reset_allowance() {
    // Arrange
    test_support::init();
    let shutdown = Shutdown::new();
    let (addr, entered) = start_server(shutdown.clone());
    let channel = one_connection_channel(addr).await;

    // Act: more calls than the lifetime allowance of protocol-error resets, each cut
    // while the server is working on it, in rounds below the stream limit.
    const ROUNDS: usize = 12;
    const PER_ROUND: usize = 100;
    for round in 1..=ROUNDS {
        let calls: Vec<_> = (0..PER_ROUND)
            .map(|_| tokio::spawn(call(channel.clone(), HOLD)))
            .collect();
        wait_entered(&entered, round * PER_ROUND).await;
        for call in calls {
            call.abort();
        }
    }
    let later = call(channel.clone(), CHECK).await;
    shutdown.trigger();

    // Assert
    const {
        assert!(
            ROUNDS * PER_ROUND > MAX_LOCAL_ERROR_RESET_STREAMS,
            "the test cuts more calls than the allowance"
        )
    };
    assert!(later.is_ok(), "{later:?}");
}
