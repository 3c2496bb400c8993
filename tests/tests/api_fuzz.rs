//! Schemathesis against the gateway's own OpenAPI document (issue 7; docs/resilience.md):
//! generated valid and invalid requests to every documented operation, with a
//! superuser's token, must never get a 5xx, never hang, and every response must match
//! the documented schema. schemathesis is pinned in `tests/python-tools.txt` and runs from
//! test-support's virtual environment ([`test_support::tools`]); in CI a missing one fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

use std::time::Duration;

use test_support::{
    stack::{StackOptions, spawn_stack_with},
    tools::{self, PythonTools},
};
use tokio::time::Instant;

/// Examples per operation and phase; bounded so the run takes about a minute here.
const MAX_EXAMPLES: &str = "10";

/// The whole run's limit: past it the test fails as a hang.
const RUN_LIMIT: Duration = Duration::from_secs(360);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_to_every_documented_operation_get_no_5xx_and_schema_conforming_answers()
{
    // Arrange: the stack without rate limits (429 would hide the answers under test),
    // and a superuser, so the admin operations are exercised past their 403.
    // Made once for every test that needs it; this may wait for another process's install.
    let tools = tokio::task::spawn_blocking(PythonTools::get).await;
    let Some(tools) = tools::or_skip(
        tools.expect("the tools lookup finishes"),
        "generated_requests_to_every_documented_operation_get_no_5xx_and_schema_conforming_answers",
    ) else {
        return;
    };
    let stack = spawn_stack_with(StackOptions {
        gateway_env: vec![
            ("RATE_LIMIT_API_PER_MINUTE", "1000000".to_owned()),
            ("RATE_LIMIT_AUTH_PER_MINUTE", "1000000".to_owned()),
        ],
        ..StackOptions::default()
    })
    .await;
    stack
        .register("fuzz@example.com", "password1", "Fuzz")
        .await;
    stack.make_superuser("fuzz@example.com").await;
    let tokens = stack.login("fuzz@example.com", "password1").await;
    let token = tokens["access_token"].as_str().expect("access token");

    // Act: every operation but Google sign-in, which the contract makes a 503 on
    // purpose (HTTP_API.md: "not enabled"); it gets its own run without the 5xx check.
    let main = run_schemathesis(
        &tools,
        &stack.http_addr,
        token,
        &[
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--exclude-path",
            GOOGLE,
        ],
    )
    .await;
    let google = run_schemathesis(
        &tools,
        &stack.http_addr,
        token,
        &[
            "--checks",
            "response_schema_conformance,status_code_conformance",
            "--include-path",
            GOOGLE,
        ],
    )
    .await;

    // Assert
    for (name, outcome) in [("all operations", main), ("Google sign-in", google)] {
        let (status, output) = outcome;
        let status = status.unwrap_or_else(|| {
            panic!("schemathesis ({name}) did not finish within {RUN_LIMIT:?} (a hang?):\n{output}")
        });
        println!("{output}");
        assert!(
            status.success(),
            "schemathesis ({name}) found failures ({status}):\n{output}"
        );
    }
}

const GOOGLE: &str = "/api/v1/auth/google";

/// Runs schemathesis against the gateway's `/openapi.json` with `args` added; returns
/// its exit status (`None`: killed at [`RUN_LIMIT`]) and its output.
async fn run_schemathesis(
    tools: &PythonTools,
    addr: &str,
    token: &str,
    args: &[&str],
) -> (Option<std::process::ExitStatus>, String) {
    let report = std::env::temp_dir().join(format!("lge-schemathesis-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&report).expect("create report dir");
    // Output goes to a file: a full pipe would stall the child and look like a hang.
    let log = std::fs::File::create(report.join("output.txt")).expect("create output file");
    let mut child = tools
        .command("python")
        .args(["-m", "schemathesis.cli", "run"])
        .arg(format!("http://{addr}/openapi.json"))
        .args([
            "--max-examples",
            MAX_EXAMPLES,
            "--request-timeout",
            "10",
            "--max-response-time",
            "10",
            // One worker: CPython 3.11's ast.parse is not thread-safe (hypothesis calls it to
            // describe filters), and two workers crashed it with "AST constructor recursion
            // depth mismatch".
            "--workers",
            "1",
            "--seed",
            "20261126",
            "--no-shrink",
            "--suppress-health-check",
            "all",
            "--report",
            "junit",
        ])
        .args(args)
        .arg("--report-dir")
        .arg(&report)
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .stdout(log.try_clone().expect("clone output file"))
        .stderr(log)
        .spawn()
        .expect("run schemathesis");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for schemathesis") {
            break Some(status);
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let output = std::fs::read_to_string(report.join("output.txt")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&report);
    (status, output)
}
