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
    let app = spawn_app_with(&[("REFRESH_GRACE_MAX_REPLAYS", "2")], None).await;
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
async fn a_grace_replay_answers_the_pair_kept_by_the_rotation_which_lives_only_for_the_window() {
    // Arrange: a rotation, and the copy of its pair that it keeps.
    let app = spawn_app_with(&[("REFRESH_GRACE_SECONDS", "1")], None).await;
    let first = app.register(&unique_email()).await;
    let rotated = app.refresh(&first.refresh_token).await.unwrap();
    let issued = format!(
        "{}session:issued:{{{}}}:{}",
        app.prefix,
        user_id_of(&first),
        session_id_of(&first)
    );
    let kept: Vec<String> = app
        .redis_command(
            redis::cmd("HMGET")
                .arg(&issued)
                .arg("access")
                .arg("refresh"),
        )
        .await;
    let ttl_ms: i64 = app.redis_command(redis::cmd("PTTL").arg(&issued)).await;
    // Mark the kept copy, so the replay shows where its answer comes from.
    let _: i64 = app
        .redis_command(
            redis::cmd("HSET")
                .arg(&issued)
                .arg("access")
                .arg("kept-copy"),
        )
        .await;

    // Act: a replay inside the window; then the window passes on Redis's clock.
    let replay = app.refresh(&first.refresh_token).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let exists_after: i64 = app.redis_command(redis::cmd("EXISTS").arg(&issued)).await;

    // Assert: the rotation kept the pair it issued, for the grace window only, and the
    // replay answered that copy instead of signing again.
    assert_eq!(
        kept,
        [rotated.access_token.clone(), rotated.refresh_token.clone()]
    );
    assert!(
        (1..=1000).contains(&ttl_ms),
        "TTL of the kept pair: {ttl_ms} ms"
    );
    assert_eq!(replay.access_token, "kept-copy");
    assert_eq!(replay.refresh_token, rotated.refresh_token);
    assert_eq!(replay.expires_in, rotated.expires_in);
    assert_eq!(exists_after, 0, "the kept pair is gone after the window");
}

#[tokio::test]
async fn the_standing_check_of_a_refresh_is_one_statement_prepared_once_per_connection() {
    // Arrange: a one-connection pool on the service's database, and a user.
    use session_service::store::users;
    let app = spawn_app().await;
    let user = user_id_of(&app.register(&unique_email()).await);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&app.database_url)
        .await
        .unwrap();

    // Act: the check, three times on that one connection.
    for _ in 0..3 {
        let standing = users::standing(&pool, user).await.unwrap().unwrap();
        assert!(standing.is_active);
    }
    let prepared: Vec<(String,)> =
        sqlx::query_as("SELECT statement FROM pg_prepared_statements WHERE statement = $1")
            .bind(users::STANDING)
            .fetch_all(&pool)
            .await
            .unwrap();

    // Assert: prepared once (a text query built per call would leave none; one prepared
    // per call, three).
    assert_eq!(prepared.len(), 1, "{prepared:?}");
}

#[tokio::test]
async fn replaying_a_rotated_token_after_the_grace_window_revokes_the_session() {
    let app = spawn_app_with(&[("REFRESH_GRACE_SECONDS", "1")], None).await;
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
    let app = spawn_app_with(&[("REFRESH_TOKEN_TTL_SECONDS", "2")], None).await;
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
    // Redis's own TTL runs on the wall clock: a lifetime far longer than the test takes,
    // so only the injected clock decides.
    let app = spawn_app_with(&[("REFRESH_TOKEN_TTL_SECONDS", "60")], None).await;
    let mut pair = app.register(&unique_email()).await;
    let created = app.list_sessions(&pair.access_token).await.remove(0);

    // 80 s in all, longer than the lifetime, but never more than 20 s apart.
    for _ in 0..4 {
        app.clock.advance(time::Duration::seconds(20));
        pair = app
            .refresh(&pair.refresh_token)
            .await
            .expect("a used session stays alive");
    }

    let session = app.list_sessions(&pair.access_token).await.remove(0);
    assert_eq!(session.created_at, created.created_at);
    assert!(session.last_used_at.unwrap().seconds >= created.last_used_at.unwrap().seconds + 60);
    assert!(session.expires_at.unwrap().seconds > created.expires_at.unwrap().seconds + 59);
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
    let app = spawn_app_with(&[("REFRESH_GRACE_SECONDS", "1")], None).await;
    let first = app.register(&unique_email()).await;
    app.refresh(&first.refresh_token).await.unwrap();
    app.refresh(&first.refresh_token).await.unwrap();
    app.clock.advance(time::Duration::milliseconds(1300));
    let _ = app.refresh(&first.refresh_token).await;
    let _ = app.refresh("garbage").await;

    let body = app.scrape_metrics().await;

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
