//! Logout, logout-all, listing and revoking sessions, and the Redis key layout.

use common::status::reason;
use proto::session::v1 as pb;
use tonic::Code;

use crate::helpers::{
    PASSWORD, assert_invalid_fields, assert_refused, assert_status, bearer, session_id_of,
    spawn_app, spawn_app_with, unique_email, user_id_of,
};

#[tokio::test]
async fn a_refresh_token_of_another_user_logs_out_nothing() {
    let app = spawn_app().await;
    let mine = app.register(&unique_email()).await;
    let theirs = app.register(&unique_email()).await;

    let logout = app
        .client
        .clone()
        .logout(bearer(
            &mine.access_token,
            pb::LogoutRequest {
                refresh_token: theirs.refresh_token.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();

    assert!(!logout.token_revoked);
    assert!(
        app.refresh(&theirs.refresh_token).await.is_ok(),
        "their session lives on"
    );
}

#[tokio::test]
async fn logout_with_an_invalid_refresh_token_reports_nothing_revoked() {
    let app = spawn_app().await;
    let pair = app.register(&unique_email()).await;

    let logout = app
        .client
        .clone()
        .logout(bearer(
            &pair.access_token,
            pb::LogoutRequest {
                refresh_token: "garbage".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let unauthenticated = app
        .client
        .clone()
        .logout(pb::LogoutRequest {
            refresh_token: pair.refresh_token,
        })
        .await;

    assert!(!logout.token_revoked);
    assert_status(
        unauthenticated,
        Code::Unauthenticated,
        "missing bearer token",
    );
}

#[tokio::test]
async fn logout_all_counts_only_live_sessions() {
    let app = spawn_app().await;
    let email = unique_email();
    let first = app.register(&email).await;
    let second = app.login(&email, PASSWORD).await.unwrap();
    app.login(&email, PASSWORD).await.unwrap();
    app.client
        .clone()
        .revoke_session(bearer(
            &first.access_token,
            pb::RevokeSessionRequest {
                session_id: session_id_of(&second).to_string(),
            },
        ))
        .await
        .unwrap();

    let all = app
        .client
        .clone()
        .logout_all(bearer(&first.access_token, pb::LogoutAllRequest {}))
        .await
        .unwrap()
        .into_inner();
    let again = app
        .client
        .clone()
        .logout_all(bearer(&first.access_token, pb::LogoutAllRequest {}))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(all.sessions_revoked, 2);
    assert_eq!(again.sessions_revoked, 0);
    assert_refused(
        app.refresh(&first.refresh_token).await,
        reason::SESSION_REVOKED,
    );
}

#[tokio::test]
async fn a_session_past_its_lifetime_by_the_clock_is_not_listed() {
    let app = spawn_app_with(&[("REFRESH_TOKEN_TTL_SECONDS", "60")], None).await;
    let email = unique_email();
    app.register(&email).await;
    app.clock.advance(time::Duration::seconds(30));
    let young = app.login(&email, PASSWORD).await.unwrap();
    app.clock.advance(time::Duration::seconds(31));

    let listed = app.list_sessions(&young.access_token).await;

    let ids: Vec<String> = listed.into_iter().map(|s| s.id).collect();
    assert_eq!(ids, [session_id_of(&young).to_string()]);
}

#[tokio::test]
async fn sessions_past_their_lifetime_by_the_clock_are_not_counted_as_ended() {
    let app = spawn_app_with(&[("REFRESH_TOKEN_TTL_SECONDS", "60")], None).await;
    let email = unique_email();
    let first = app.register(&email).await;
    app.login(&email, PASSWORD).await.unwrap();
    app.clock.advance(time::Duration::seconds(30));
    let young = app.login(&email, PASSWORD).await.unwrap();
    app.clock.advance(time::Duration::seconds(31));

    let revoke_expired = app
        .client
        .clone()
        .revoke_session(bearer(
            &young.access_token,
            pb::RevokeSessionRequest {
                session_id: session_id_of(&first).to_string(),
            },
        ))
        .await;
    let all = app
        .client
        .clone()
        .logout_all(bearer(&young.access_token, pb::LogoutAllRequest {}))
        .await
        .unwrap()
        .into_inner();

    assert_status(revoke_expired, Code::NotFound, "session not found");
    assert_eq!(all.sessions_revoked, 1, "only the young session was live");
    assert!(
        app.redis_keys().await.is_empty(),
        "{:?}",
        app.redis_keys().await
    );
}

#[tokio::test]
async fn list_sessions_marks_the_current_one_and_shows_newest_first() {
    let app = spawn_app().await;
    let email = unique_email();
    let first = app.register(&email).await;
    let second = app.login(&email, PASSWORD).await.unwrap();

    let sessions = app.list_sessions(&first.access_token).await;

    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0].id, session_id_of(&second).to_string());
    assert_eq!(sessions[1].id, session_id_of(&first).to_string());
    assert!(sessions[1].current && !sessions[0].current);
    let session = &sessions[1];
    let (created, expires) = (
        session.created_at.unwrap().seconds,
        session.expires_at.unwrap().seconds,
    );
    assert_eq!(session.last_used_at.unwrap().seconds, created);
    assert!(
        (expires - created - 2_592_000).abs() <= 1,
        "30 days by default"
    );
}

#[tokio::test]
async fn revoking_a_session_that_is_not_the_callers_is_not_found() {
    let app = spawn_app().await;
    let mine = app.register(&unique_email()).await;
    let theirs = app.register(&unique_email()).await;
    let revoke = |session_id: String| {
        let mut client = app.client.clone();
        let token = mine.access_token.clone();
        async move {
            client
                .revoke_session(bearer(&token, pb::RevokeSessionRequest { session_id }))
                .await
        }
    };

    let other_users = revoke(session_id_of(&theirs).to_string()).await;
    let unknown = revoke(uuid::Uuid::new_v4().to_string()).await;
    let malformed = revoke("not-a-uuid".into()).await;
    let own = revoke(session_id_of(&mine).to_string())
        .await
        .unwrap()
        .into_inner();

    assert_status(other_users, Code::NotFound, "session not found");
    assert_status(unknown, Code::NotFound, "session not found");
    assert_invalid_fields(malformed, &["session_id"]);
    assert!(own.token_revoked);
    assert!(app.refresh(&theirs.refresh_token).await.is_ok());
    assert_refused(
        app.refresh(&mine.refresh_token).await,
        reason::SESSION_REVOKED,
    );
}

#[tokio::test]
async fn every_key_of_one_user_hashes_to_the_same_cluster_slot() {
    let app = spawn_app().await;
    let email = unique_email();
    let pair = app.register(&email).await;
    app.login(&email, PASSWORD).await.unwrap();
    app.login(&email, PASSWORD).await.unwrap();
    let user_id = user_id_of(&pair);

    let keys = app.redis_keys().await;

    assert_eq!(
        keys.len(),
        4,
        "three session hashes and the user's set: {keys:?}"
    );
    assert!(
        keys.contains(&format!(
            "{}session:user_sessions:{{{user_id}}}",
            app.prefix
        )),
        "{keys:?}"
    );
    assert!(
        keys.contains(&format!(
            "{}session:refresh:{{{user_id}}}:{}",
            app.prefix,
            session_id_of(&pair)
        )),
        "{keys:?}"
    );
    let slot = test_support::key_slot(&keys[0]);
    assert!(
        keys.iter().all(|key| test_support::key_slot(key) == slot),
        "{keys:?}"
    );
    assert_eq!(
        slot,
        test_support::key_slot(&user_id.to_string()),
        "the slot is the user id's"
    );
    if std::env::var_os("TEST_REDIS_IS_CLUSTER").is_some() {
        // On a real cluster, ask the server too.
        for key in &keys {
            let server_slot: u16 = app
                .redis_command(redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
                .await;
            assert_eq!(
                redis::cluster_routing::Slot::new(server_slot),
                Some(slot),
                "{key}"
            );
        }
    }
}

#[tokio::test]
async fn session_keys_expire_with_the_session_lifetime() {
    let app = spawn_app().await;
    app.register(&unique_email()).await;

    let keys = app.redis_keys().await;

    assert_eq!(keys.len(), 2);
    for key in keys {
        let ttl: i64 = app.redis_command(redis::cmd("TTL").arg(&key)).await;
        assert!((2_591_990..=2_592_000).contains(&ttl), "{key}: {ttl}");
    }
}

#[tokio::test]
async fn metrics_count_session_creations_and_revocations() {
    let app = spawn_app().await;
    let email = unique_email();
    let registered = app.register(&email).await;
    let second = app.login(&email, PASSWORD).await.unwrap();
    app.login(&email, PASSWORD).await.unwrap();

    let logout = pb::LogoutRequest {
        refresh_token: second.refresh_token.clone(),
    };
    app.client
        .clone()
        .logout(bearer(&registered.access_token, logout))
        .await
        .unwrap();
    app.client
        .clone()
        .logout_all(bearer(&registered.access_token, pb::LogoutAllRequest {}))
        .await
        .unwrap();
    let body = app.scrape_metrics().await;

    for line in ["session_created_total 3", "session_revoked_total 3"] {
        assert!(
            body.lines().any(|l| l == line),
            "{line} missing in:\n{body}"
        );
    }
}
