//! Sessions are bounded: at most MAX_SESSIONS_PER_USER live sessions per user (a new one
//! ends the least recently used), stale ids leave the user's set, and a full sessions
//! Redis answers UNAVAILABLE.

use std::{collections::BTreeSet, time::Duration};

use common::status::reason;
use proto::session::v1 as pb;
use test_support::RedisServer;
use tonic::Code;

use crate::helpers::{
    PASSWORD, assert_refused, assert_status, session_id_of, spawn_app, spawn_app_with,
    unique_email, user_id_of,
};

async fn set_members(app: &crate::helpers::TestApp, user_id: uuid::Uuid) -> BTreeSet<String> {
    let key = format!("{}session:user_sessions:{{{user_id}}}", app.prefix);
    let members: Vec<String> = app.redis_command(redis::cmd("SMEMBERS").arg(key)).await;
    members.into_iter().collect()
}

#[tokio::test]
async fn sixty_logins_leave_fifty_live_sessions_and_end_the_oldest_ten() {
    let app = spawn_app().await;
    let email = unique_email();
    let mut pairs = vec![app.register(&email).await];
    for _ in 1..60 {
        pairs.push(app.login(&email, PASSWORD).await.expect("login"));
    }

    let newest = pairs.last().unwrap();
    let listed = app.list_sessions(&newest.access_token).await;

    assert_eq!(listed.len(), 50);
    for ended in &pairs[..10] {
        assert_refused(
            app.refresh(&ended.refresh_token).await,
            reason::SESSION_REVOKED,
        );
    }
    let listed: BTreeSet<String> = listed.into_iter().map(|s| s.id).collect();
    let kept: BTreeSet<String> = pairs[10..]
        .iter()
        .map(|p| session_id_of(p).to_string())
        .collect();
    assert_eq!(listed, kept, "the fifty most recent are the live ones");
    assert_eq!(set_members(&app, user_id_of(newest)).await, kept);
    assert!(app.refresh(&pairs[10].refresh_token).await.is_ok());
    assert_eq!(app.counter("session_evicted_total").await, 10);
    assert_eq!(app.counter("session_revoked_total").await, 10);
}

#[tokio::test]
async fn the_session_ended_by_the_cap_is_the_least_recently_used_not_the_oldest() {
    let app = spawn_app_with(&[("MAX_SESSIONS_PER_USER", "3")], None).await;
    let email = unique_email();
    let first = app.register(&email).await;
    let second = app.login(&email, PASSWORD).await.unwrap();
    let third = app.login(&email, PASSWORD).await.unwrap();
    // Using the first session makes the second the least recently used.
    let first = app.refresh(&first.refresh_token).await.unwrap();

    let fourth = app.login(&email, PASSWORD).await.unwrap();

    assert_refused(
        app.refresh(&second.refresh_token).await,
        reason::SESSION_REVOKED,
    );
    let listed: BTreeSet<String> = app
        .list_sessions(&fourth.access_token)
        .await
        .into_iter()
        .map(|s| s.id)
        .collect();
    let expected: BTreeSet<String> = [&first, &third, &fourth]
        .iter()
        .map(|p| session_id_of(p).to_string())
        .collect();
    assert_eq!(listed, expected);
}

/// Waits on the wall clock: what is under test is the id left behind once Redis's own
/// TTL has removed a session's hash.
#[tokio::test]
async fn creating_a_session_drops_the_ids_of_expired_ones_from_the_users_set() {
    let app = spawn_app_with(&[("REFRESH_TOKEN_TTL_SECONDS", "2")], None).await;
    let email = unique_email();
    let expired = app.register(&email).await;
    let user_id = user_id_of(&expired);
    let expired_key = format!(
        "{}session:refresh:{{{user_id}}}:{}",
        app.prefix,
        session_id_of(&expired)
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // A later session keeps the set alive after the first one's hash expires.
    let alive = app.login(&email, PASSWORD).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app
        .redis_command::<bool>(redis::cmd("EXISTS").arg(&expired_key))
        .await
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first session never expired"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        set_members(&app, user_id)
            .await
            .contains(&session_id_of(&expired).to_string()),
        "the expired id is still in the set before the next login"
    );

    let newest = app.login(&email, PASSWORD).await.unwrap();

    let members = set_members(&app, user_id).await;
    assert!(
        !members.contains(&session_id_of(&expired).to_string()),
        "{members:?}"
    );
    assert!(
        members.contains(&session_id_of(&newest).to_string()),
        "{members:?}"
    );
    let possible: BTreeSet<String> = [&alive, &newest]
        .iter()
        .map(|p| session_id_of(p).to_string())
        .collect();
    assert!(members.is_subset(&possible), "{members:?}");
    assert_eq!(
        app.counter("session_evicted_total").await,
        0,
        "an expired session is not counted as ended by the cap"
    );
}

#[tokio::test]
async fn a_session_past_its_lifetime_by_the_clock_ends_at_the_next_login_before_redis_expires_it() {
    // A lifetime far longer than the test takes on the wall clock, so Redis's TTL never runs
    // out during it: only the injected clock ends the first session.
    let app = spawn_app_with(&[("REFRESH_TOKEN_TTL_SECONDS", "60")], None).await;
    let email = unique_email();
    let expired = app.register(&email).await;
    let user_id = user_id_of(&expired);
    let expired_key = format!(
        "{}session:refresh:{{{user_id}}}:{}",
        app.prefix,
        session_id_of(&expired)
    );
    app.clock.advance(time::Duration::seconds(30));
    let alive = app.login(&email, PASSWORD).await.unwrap();
    // Past the first session's lifetime, inside the second's; Redis's TTL has not run out.
    app.clock.advance(time::Duration::seconds(31));

    let newest = app.login(&email, PASSWORD).await.unwrap();

    let members = set_members(&app, user_id).await;
    let expected: BTreeSet<String> = [&alive, &newest]
        .iter()
        .map(|p| session_id_of(p).to_string())
        .collect();
    assert_eq!(members, expected);
    assert!(
        !app.redis_command::<bool>(redis::cmd("EXISTS").arg(&expired_key))
            .await,
        "the ended session's hash is deleted, not left to its TTL"
    );
    assert_eq!(app.list_sessions(&newest.access_token).await.len(), 2);
    assert_eq!(
        app.counter("session_evicted_total").await,
        0,
        "an expired session is not counted as ended by the cap"
    );
}

#[tokio::test]
async fn a_full_sessions_redis_answers_unavailable_and_changes_nothing() {
    let redis =
        RedisServer::start_with(&["--maxmemory", "16mb", "--maxmemory-policy", "noeviction"]);
    let app = spawn_app_with(&[], Some(redis.url())).await;
    let email = unique_email();
    let pair = app.register(&email).await;
    // 3 MB of keys of the test's own, then a maxmemory below that: every write that
    // could grow memory is refused (noeviction) until memory is freed.
    let fillers: Vec<String> = (0..3)
        .map(|i| format!("{}filler:{i}", app.prefix))
        .collect();
    for filler in &fillers {
        app.redis_command::<()>(redis::cmd("SET").arg(filler).arg(vec![b'x'; 1 << 20]))
            .await;
    }
    app.redis_command::<()>(redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("2mb"))
        .await;
    let register = app
        .client
        .clone()
        .register(pb::RegisterRequest {
            email: unique_email(),
            password: PASSWORD.into(),
            full_name: "Νίκος".into(),
            client: None,
        })
        .await;
    let login = app.login(&email, PASSWORD).await;
    let refresh = app.refresh(&pair.refresh_token).await;

    assert_status(register, Code::Unavailable, "session store unavailable");
    assert_status(login, Code::Unavailable, "session store unavailable");
    assert_status(refresh, Code::Unavailable, "session store unavailable");
    // Room again: the fillers gone and the limit back where it was.
    app.redis_command::<()>(redis::cmd("DEL").arg(&fillers))
        .await;
    app.redis_command::<()>(redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("16mb"))
        .await;
    let rotated = app
        .refresh(&pair.refresh_token)
        .await
        .expect("the refused refresh rotated nothing");
    assert_eq!(app.list_sessions(&rotated.access_token).await.len(), 1);
}
