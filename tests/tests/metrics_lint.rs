//! Every process's `/metrics` passes `promtool check metrics` (Debian's `prometheus`
//! package; `.ci/run` installs it) after real traffic, made-up gRPC paths included, and
//! those paths share one `method="unknown"` series (issue 10, item 4).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

use std::{process::Stdio, time::Duration};

use test_support::{
    TestTokens,
    http::HttpClient,
    stack::{StackOptions, spawn_stack_with},
};
use tokio::io::AsyncWriteExt;
use tonic::{codegen::http::uri::PathAndQuery, transport::Channel};
use uuid::Uuid;

/// Made-up gRPC paths sent to every process.
const MADE_UP_CALLS: usize = 30;

/// One unary call with an empty message to `path` at `addr`; returns its status code.
async fn grpc_call(addr: &str, path: &str) -> tonic::Code {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("channel ready");
    let path = PathAndQuery::try_from(path.to_owned()).expect("a valid path");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    match grpc.unary(tonic::Request::new(()), path, codec).await {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}

/// Runs `promtool check metrics` on `exposition`; returns its exit success and output.
/// A missing promtool fails the test: CI installs it, and a lint that silently does
/// not run proves nothing.
async fn promtool_check(exposition: &str) -> (bool, String) {
    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): install Debian's `prometheus` package \
                 (apt-get install prometheus), as .ci/run does"
            )
        });
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(exposition.as_bytes())
        .await
        .expect("feed promtool");
    drop(stdin);
    let output = child.wait_with_output().await.expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test]
async fn every_process_serves_metrics_promtool_accepts_with_made_up_paths_under_one_label() {
    // Arrange: the stack, and some traffic of every kind.
    let stack = spawn_stack_with(StackOptions::default()).await;
    let token = TestTokens::new().access_token(Uuid::new_v4(), false);
    for path in ["/api/v1/decks", "/api/v1/no/such/route", "/api/v1/auth/me"] {
        stack.http.get(path).bearer(&token).send().await;
    }
    stack
        .http
        .get("/api/v1/decks")
        .bearer("garbage")
        .send()
        .await;
    let processes = [
        ("gateway", &stack.gateway),
        ("session-service", &stack.session),
        ("deck-service", &stack.deck),
    ];
    for (_, process) in &processes {
        for index in 0..MADE_UP_CALLS {
            let path = format!("/made.up{index}.Service/Nothing{index}");
            assert_eq!(
                grpc_call(&process.grpc_addr, &path).await,
                tonic::Code::Unimplemented
            );
        }
    }

    for (name, process) in processes {
        // Act
        let body = HttpClient::new(process.metrics_addr()).scrape().await.0;
        let (accepted, report) = promtool_check(&body).await;

        // Assert
        assert!(
            accepted && report.trim().is_empty(),
            "promtool check metrics on {name}'s /metrics:\n{report}\n--- exposition:\n{body}"
        );
        let unknown: Vec<&str> = body
            .lines()
            .filter(|line| line.starts_with("grpc_server_requests_total{"))
            .filter(|line| line.contains(r#"method="unknown""#))
            .collect();
        assert_eq!(
            unknown,
            [format!(
                r#"grpc_server_requests_total{{method="unknown",code="UNIMPLEMENTED"}} {MADE_UP_CALLS}"#
            )],
            "{name}: {body}"
        );
        assert!(!body.contains("made.up"), "{name}: {body}");
    }
}
