//! A gateway that has just started has no verification keys yet: it fetches them from
//! session-service (issue 10, item 3). Clients that arrive meanwhile, and clients that
//! cut their requests mid-flight, must never turn a valid token into a 401.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

use std::time::Duration;

use test_support::{
    ServiceConfig, TestTokens,
    chaos::{Outcome, Sample, describe, exchange},
    http::HttpClient,
    stack::{StackOptions, spawn_stack_with},
};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

/// How long the proxy in front of session-service holds each new connection: long
/// enough that the gateway's first key fetch is still under way when the requests come.
const CONNECT_DELAY: Duration = Duration::from_secs(1);

/// A TCP proxy to `upstream` that waits [`CONNECT_DELAY`] before connecting each
/// accepted connection, then relays bytes both ways. Returns its `host:port`.
async fn slow_proxy(upstream: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                tokio::time::sleep(CONNECT_DELAY).await;
                if let Ok(mut server) = TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_gateway_just_started_never_refuses_valid_tokens_while_clients_cut_requests() {
    // Arrange: the services, and a second gateway reaching session-service through a
    // slow proxy, started just now (its key set is still being fetched).
    let stack = spawn_stack_with(StackOptions::default()).await;
    let proxy = slow_proxy(stack.session.grpc_addr.clone()).await;
    let gateway = ServiceConfig::gateway(
        &format!("http://{proxy}"),
        &format!("http://{}", stack.deck.grpc_addr),
        &stack.redis_url,
        &stack.redis_prefix,
    )
    .set("RATE_LIMIT_API_PER_MINUTE", 1_000_000)
    .spawn()
    .await;
    let http = HttpClient::new(gateway.listeners["HTTP"].clone());
    let tokens = TestTokens::new();

    // Act: 200 requests at once, each with its own valid token; every second one is cut
    // after 0 to 1.5 s, most of them while the key fetch is still under way.
    let requests: Vec<_> = (0..200u64)
        .map(|index| {
            let request = http
                .get("/api/v1/decks")
                .bearer(&tokens.access_token(Uuid::new_v4(), false));
            tokio::spawn(async move {
                if index % 2 == 0 {
                    Some(exchange(&request, Duration::from_secs(30)).await)
                } else {
                    let cut_after = Duration::from_millis(index * 7 % 150 * 10);
                    let _ = tokio::time::timeout(cut_after, exchange(&request, cut_after)).await;
                    None
                }
            })
        })
        .collect();
    let mut completed: Vec<Sample> = Vec::new();
    for request in requests {
        completed.extend(request.await.expect("request task"));
    }

    // Assert: every completed request was answered, and none with 401.
    assert_eq!(completed.len(), 100);
    let refused: Vec<&Sample> = completed
        .iter()
        .filter(|sample| sample.status() == Some(401))
        .collect();
    assert!(
        refused.is_empty(),
        "{} of 100 valid tokens refused:\n{}",
        refused.len(),
        describe(&refused)
    );
    let not_ok: Vec<&Sample> = completed
        .iter()
        .filter(
            |sample| !matches!(&sample.outcome, Outcome::Answered(answer) if answer.status == 200),
        )
        .collect();
    assert!(
        not_ok.is_empty(),
        "{} of 100 not answered 200:\n{}",
        not_ok.len(),
        describe(&not_ok)
    );
}
