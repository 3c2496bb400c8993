//! Refresh-token rotation: the grace window, reuse detection, concurrency, lifetime,
//! and a session store that stops answering. Time-dependent cases move the service's
//! clock instead of sleeping.

use std::time::{Duration, Instant};

use common::status::reason;
use futures::future::join_all;
use proto::session::v1 as pb;
use test_support::RedisServer;
use tonic::Code;

use crate::helpers::{
    PASSWORD, assert_refused, assert_status, bearer, claims_of, session_id_of, spawn_app,
    spawn_app_with, unique_email, user_id_of,
};

#[tokio::test]
async fn fifty_concurrent_refreshes_of_one_token_rotate_once_and_all_get_the_same_pair() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    let pair = app.login(&email, PASSWORD).await.unwrap();

    let results = join_all((0..50).map(|_| app.refresh(&pair.refresh_token))).await;

    let pairs: Vec<pb::TokenPair> = results
        .into_iter()
        .map(|r| r.expect("every refresh succeeds"))
        .collect();
    assert!(
        pairs.iter().all(|p| *p == pairs[0]),
        "every success returns the identical pair"
    );
    assert_eq!(
        claims_of(&pairs[0].refresh_token)["gen"],
        1,
        "exactly one rotation"
    );
    let sessions = app.list_sessions(&pairs[0].access_token).await;
    assert_eq!(
        sessions.len(),
        2,
        "the registration's session and this one, no branch"
    );
    assert_eq!(sessions.iter().filter(|s| s.current).count(), 1);
    assert!(
        app.refresh(&pairs[0].refresh_token).await.is_ok(),
        "the rotated-to token is the live one"
    );
}

#[tokio::test]
async fn a_replay_inside_the_grace_window_returns_the_identical_pair_a_bounded_number_of_times() {
    let app = spawn_app_with(&["--refresh-grace-max-replays=2"], None).await;
    let first = app.register(&unique_email()).await;
    let rotated = app.refresh(&first.refresh_token).await.unwrap();

    let replay_one = app.refresh(&first.refresh_token).await.unwrap();
    let replay_two = app.refresh(&first.refresh_token).await.unwrap();
    let replay_three = app.refresh(&first.refresh_token).await;

    assert_eq!(replay_one, rotated);
    assert_eq!(replay_two, rotated);
    assert_refused(replay_three, reason::REFRESH_TOKEN_REUSED);
    assert_refused(
        app.refresh(&rotated.refresh_token).await,
        reason::SESSION_REVOKED,
    );
}

#[tokio::test]
async fn replaying_a_rotated_token_after_the_grace_window_revokes_the_session() {
    let app = spawn_app_with(&["--refresh-grace-seconds=1"], None).await;
    let first = app.register(&unique_email()).await;
    let newest = app.refresh(&first.refresh_token).await.unwrap();
    app.clock.advance(time::Duration::milliseconds(1300));

    let replay = app.refresh(&first.refresh_token).await;

    assert_refused(replay, reason::REFRESH_TOKEN_REUSED);
    assert_refused(
        app.refresh(&newest.refresh_token).await,
        reason::SESSION_REVOKED,
    );
    assert!(
        app.list_sessions(&newest.access_token).await.is_empty(),
        "the session is gone"
    );
    assert!(
        app.redis_keys().await.is_empty(),
        "{:?}",
        app.redis_keys().await
    );
}

#[tokio::test]
async fn replaying_a_token_two_generations_old_is_reuse_even_inside_the_grace_window() {
    let app = spawn_app().await;
    let first = app.register(&unique_email()).await;
    let second = app.refresh(&first.refresh_token).await.unwrap();
    let third = app.refresh(&second.refresh_token).await.unwrap();

    assert_refused(
        app.refresh(&first.refresh_token).await,
        reason::REFRESH_TOKEN_REUSED,
    );
    assert_refused(
        app.refresh(&third.refresh_token).await,
        reason::SESSION_REVOKED,
    );
}

#[tokio::test]
async fn logout_all_racing_refreshes_leaves_no_session_alive() {
    let app = spawn_app().await;
    let email = unique_email();
    let first = app.register(&email).await;
    let user_id = user_id_of(&first);
    let mut chains = vec![first.refresh_token.clone()];
    for _ in 0..7 {
        chains.push(app.login(&email, PASSWORD).await.unwrap().refresh_token);
    }

    // Each chain refreshes its own token over and over while logout-all runs.
    let refreshers = chains.into_iter().map(|mut token| {
        let app = &app;
        async move {
            for _ in 0..10 {
                match app.refresh(&token).await {
                    Ok(pair) => token = pair.refresh_token,
                    Err(_) => break,
                }
            }
            token
        }
    });
    let logout_all = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        app.client
            .clone()
            .logout_all(bearer(&first.access_token, pb::LogoutAllRequest {}))
            .await
            .unwrap()
            .into_inner()
    };
    let (last_tokens, revoked) = tokio::join!(join_all(refreshers), logout_all);

    assert!(revoked.sessions_revoked <= 8);
    let access = app.access_token_for(user_id);
    assert!(
        app.list_sessions(&access).await.is_empty(),
        "no session survives"
    );
    for token in last_tokens {
        assert_eq!(
            app.refresh(&token).await.unwrap_err().code(),
            Code::Unauthenticated
        );
    }
    assert!(
        app.redis_keys().await.is_empty(),
        "{:?}",
        app.redis_keys().await
    );
}

#[tokio::test]
async fn a_session_past_its_lifetime_cannot_refresh() {
    let app = spawn_app_with(&["--refresh-token-ttl-seconds=2"], None).await;
    let pair = app.register(&unique_email()).await;
    let claims = claims_of(&pair.refresh_token);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        2
    );
    app.clock.advance(time::Duration::milliseconds(3100));

    let refreshed = app.refresh(&pair.refresh_token).await;

    assert_refused(refreshed, reason::TOKEN_EXPIRED);
    assert!(app.list_sessions(&pair.access_token).await.is_empty());
}

#[tokio::test]
async fn each_refresh_slides_the_session_lifetime_and_advances_last_used() {
    let app = spawn_app_with(&["--refresh-token-ttl-seconds=3"], None).await;
    let mut pair = app.register(&unique_email()).await;
    let created = app.list_sessions(&pair.access_token).await.remove(0);

    // Four seconds in all, longer than the lifetime, but never more than one second apart.
    for _ in 0..4 {
        app.clock.advance(time::Duration::seconds(1));
        pair = app
            .refresh(&pair.refresh_token)
            .await
            .expect("a used session stays alive");
    }

    let session = app.list_sessions(&pair.access_token).await.remove(0);
    assert_eq!(session.created_at, created.created_at);
    assert!(session.last_used_at.unwrap().seconds >= created.last_used_at.unwrap().seconds + 3);
    assert!(session.expires_at.unwrap().seconds > created.expires_at.unwrap().seconds + 2);
}

#[tokio::test]
async fn a_stopped_session_store_answers_unavailable_fast_and_the_token_still_works_after() {
    // AOF on, so the sessions survive the stop as they must in production.
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let app = spawn_app_with(&[], Some(redis.url())).await;
    let pair = app.register(&unique_email()).await;
    redis.stop();

    let start = Instant::now();
    let during = app.refresh(&pair.refresh_token).await;
    let elapsed = start.elapsed();

    assert_status(during, Code::Unavailable, "session store unavailable");
    assert!(
        elapsed < Duration::from_millis(800),
        "answered after {elapsed:?}"
    );
    redis.restart();
    let after = app.refresh(&pair.refresh_token).await;
    assert!(after.is_ok(), "{after:?}");
    assert_eq!(session_id_of(&after.unwrap()), session_id_of(&pair));
}

#[tokio::test]
async fn a_frozen_session_store_answers_unavailable_within_the_deadline_and_the_token_still_works_after()
 {
    let redis = RedisServer::start();
    let app = spawn_app_with(&[], Some(redis.url())).await;
    let pair = app.register(&unique_email()).await;
    redis.pause();

    let start = Instant::now();
    let during = app.refresh(&pair.refresh_token).await;
    let elapsed = start.elapsed();
    redis.resume();

    assert_status(during, Code::Unavailable, "session store unavailable");
    assert!(
        elapsed < Duration::from_millis(800),
        "answered after {elapsed:?}"
    );
    // The frozen call may have rotated once Redis woke up; the same token then gets
    // that pair through the grace window, so it still works either way.
    let after = app.refresh(&pair.refresh_token).await;
    assert!(after.is_ok(), "{after:?}");
}

#[tokio::test]
async fn a_deactivated_user_cannot_refresh() {
    let app = spawn_app().await;
    let email = unique_email();
    let pair = app.register(&email).await;
    sqlx::query("UPDATE users SET is_active = false WHERE email = $1")
        .bind(&email)
        .execute(&app.pg)
        .await
        .unwrap();

    assert_refused(
        app.refresh(&pair.refresh_token).await,
        reason::TOKEN_INVALID,
    );
}

#[tokio::test]
async fn metrics_count_rotations_grace_replays_and_reuse() {
    let app = spawn_app_with(&["--refresh-grace-seconds=1"], None).await;
    let first = app.register(&unique_email()).await;
    app.refresh(&first.refresh_token).await.unwrap();
    app.refresh(&first.refresh_token).await.unwrap();
    app.clock.advance(time::Duration::milliseconds(1300));
    let _ = app.refresh(&first.refresh_token).await;
    let _ = app.refresh("garbage").await;

    let body = test_support::http::HttpClient::new(app.metrics_addr.clone())
        .get("/metrics")
        .send()
        .await
        .text();

    for line in [
        "session_refresh_rotations_total 1",
        "session_refresh_grace_replays_total 1",
        "session_refresh_reuse_detected_total 1",
        "session_refresh_rejected_total 1",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "{line} missing in:\n{body}"
        );
    }
}
