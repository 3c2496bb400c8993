//! Password hashing sheds load: a burst of logins whose callers give up costs no hashing
//! once they are gone, and past the queue bound a call is refused at once as OVERLOADED.

use std::time::{Duration, Instant};

use futures::future::join_all;
use proto::session::v1 as pb;
use tonic::{Code, Request};

use crate::helpers::{PASSWORD, refusal_details, spawn_app_with, unique_email};

#[tokio::test]
async fn abandoned_logins_are_skipped_and_past_the_queue_bound_calls_are_refused_at_once() {
    let app = spawn_app_with(
        &[
            ("PASSWORD_HASH_CONCURRENCY", "1"),
            ("PASSWORD_HASH_QUEUE", "32"),
        ],
        None,
    )
    .await;
    let email = unique_email();
    app.register(&email).await;
    let deadline = Duration::from_millis(300);

    // 150 logins of unknown addresses (each one a hash), each given up after 300 ms.
    let burst = (0..150).map(|_| {
        let mut client = app.client.clone();
        async move {
            let mut request = Request::new(pb::LoginRequest {
                email: unique_email(),
                password: PASSWORD.into(),
                client: None,
            });
            request.set_timeout(deadline);
            // The caller waits past the deadline it sent, so what the server answered is
            // seen even on a loaded machine (a refusal instead of DEADLINE_EXCEEDED: it
            // was refused before the server gave up on it).
            let started = Instant::now();
            let answer = tokio::time::timeout(deadline * 10, client.login(request)).await;
            (answer, started.elapsed())
        }
    });
    let answers = join_all(burst).await;
    // Let the server notice the last cancellations (its own deadline is the same 300 ms).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hashes_before = app.counter("session_password_hashes_total").await;
    let started = Instant::now();
    app.login(&email, PASSWORD)
        .await
        .expect("an ordinary login after the burst");
    let next_login = started.elapsed();
    let hashes_after = app.counter("session_password_hashes_total").await;

    let refused: Vec<_> = answers
        .iter()
        .filter_map(|(answer, elapsed)| match answer {
            Ok(Err(status)) if status.code() == Code::ResourceExhausted => Some((status, *elapsed)),
            _ => None,
        })
        .collect();
    // At most 1 running + 32 queued at any moment, so most of the burst was refused
    // (how many exactly depends on how fast places freed up on a loaded machine).
    assert!(!refused.is_empty(), "the burst overflowed the queue");
    for (status, _) in &refused {
        assert_eq!(
            refusal_details(status),
            (
                Some(common::status::reason::OVERLOADED.into()),
                Some(Duration::from_secs(1))
            )
        );
    }
    // The next login waited for at most the hash already running, not for the queue.
    assert!(
        hashes_after - hashes_before <= 2,
        "{} hashes ran for one login after the burst (took {next_login:?})",
        hashes_after - hashes_before
    );
    assert!(
        app.counter("session_password_hash_abandoned_total").await > 0,
        "queued hashes of callers that had gone were skipped"
    );
    assert!(app.counter("session_password_hash_rejected_total").await >= refused.len() as u64);
}
