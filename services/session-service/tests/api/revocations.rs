//! Every ended session is recorded in the revocation snapshot and published on the
//! revocation channel of the sessions Redis (common::revocation), so the gateway and
//! deck-service refuse its access tokens at once.

use std::time::Duration;

use common::{
    clock::Clock,
    revocation::{Revocation, Revoked},
};
use futures::StreamExt;
use proto::session::v1 as pb;

use crate::helpers::{
    PASSWORD, TestApp, bearer, claims_of, session_id_of, spawn_app, spawn_app_with, unique_email,
    user_id_of,
};

/// A subscriber of the test's revocation channel, on one node (in a cluster too: classic
/// PUBLISH reaches every node).
async fn subscribe(app: &TestApp) -> redis::aio::PubSub {
    let url = test_support::redis_url();
    let node = url.split(',').next().unwrap().trim().to_owned();
    let mut pubsub = redis::Client::open(node)
        .unwrap()
        .get_async_pubsub()
        .await
        .expect("a pub/sub connection");
    pubsub
        .subscribe(common::revocation::channel(&app.prefix))
        .await
        .expect("SUBSCRIBE");
    pubsub
}

async fn next_message(pubsub: &mut redis::aio::PubSub) -> Revocation {
    let message = tokio::time::timeout(Duration::from_secs(10), pubsub.on_message().next())
        .await
        .expect("a revocation is published within 10 s")
        .expect("the subscription stays open");
    serde_json::from_slice(message.get_payload_bytes()).expect("the message is a revocation")
}

fn kinds(revocations: &[Revocation]) -> Vec<Revoked> {
    revocations.iter().map(|r| r.revoked).collect()
}

#[tokio::test]
async fn logout_revoke_and_logout_all_are_recorded_and_published() {
    let app = spawn_app().await;
    let email = unique_email();
    let first = app.register(&email).await;
    let second = app.login(&email, PASSWORD).await.unwrap();
    let third = app.login(&email, PASSWORD).await.unwrap();
    let mut pubsub = subscribe(&app).await;

    app.client
        .clone()
        .logout(bearer(
            &first.access_token,
            pb::LogoutRequest {
                refresh_token: first.refresh_token.clone(),
            },
        ))
        .await
        .unwrap();
    let logout = next_message(&mut pubsub).await;
    app.client
        .clone()
        .revoke_session(bearer(
            &third.access_token,
            pb::RevokeSessionRequest {
                session_id: session_id_of(&second).to_string(),
            },
        ))
        .await
        .unwrap();
    let revoke = next_message(&mut pubsub).await;
    app.client
        .clone()
        .logout_all(bearer(&third.access_token, pb::LogoutAllRequest {}))
        .await
        .unwrap();
    let logout_all = next_message(&mut pubsub).await;

    let user_id = user_id_of(&first);
    let Revoked::User { before, .. } = logout_all.revoked else {
        panic!("logout-all publishes a user revocation: {logout_all:?}");
    };
    assert_eq!(
        logout.revoked,
        Revoked::Session {
            sid: session_id_of(&first)
        }
    );
    assert_eq!(
        revoke.revoked,
        Revoked::Session {
            sid: session_id_of(&second)
        }
    );
    assert_eq!(logout_all.revoked, Revoked::User { user_id, before });
    let third_iat = claims_of(&third.access_token)["iat"].as_u64().unwrap();
    assert!(third_iat < before, "tokens issued so far are refused");
    // The default access lifetime (1800 s) plus the 5 s leeway.
    let now = app.clock.now().unix_timestamp() as u64;
    assert!((now + 1800..=now + 1806).contains(&logout_all.until));
    assert_eq!(
        kinds(&app.revocations().await),
        vec![logout.revoked, revoke.revoked, logout_all.revoked],
        "the snapshot holds what was published"
    );
}

#[tokio::test]
async fn a_login_after_logout_all_gets_a_token_the_revocation_does_not_refuse() {
    let app = spawn_app().await;
    let email = unique_email();
    let pair = app.register(&email).await;

    app.client
        .clone()
        .logout_all(bearer(&pair.access_token, pb::LogoutAllRequest {}))
        .await
        .unwrap();
    let again = app.login(&email, PASSWORD).await.unwrap();

    let revocations = app.revocations().await;
    let Some(Revoked::User { before, .. }) = revocations.last().map(|r| r.revoked) else {
        panic!("{revocations:?}");
    };
    assert!(claims_of(&pair.access_token)["iat"].as_u64().unwrap() < before);
    assert!(claims_of(&again.access_token)["iat"].as_u64().unwrap() >= before);
}

#[tokio::test]
async fn reuse_detection_and_the_session_cap_publish_the_sessions_they_end() {
    let app = spawn_app_with(
        &[
            ("REFRESH_GRACE_SECONDS", "1"),
            ("MAX_SESSIONS_PER_USER", "1"),
        ],
        None,
    )
    .await;
    let email = unique_email();
    let first = app.register(&email).await;
    let mut pubsub = subscribe(&app).await;

    // A second login beyond the cap of one ends the first session.
    let second = app.login(&email, PASSWORD).await.unwrap();
    let evicted = next_message(&mut pubsub).await;
    // Replaying a rotated refresh token after the grace window revokes the session.
    app.refresh(&second.refresh_token).await.unwrap();
    app.clock.advance(time::Duration::milliseconds(1300));
    let _ = app.refresh(&second.refresh_token).await;
    let reused = next_message(&mut pubsub).await;

    assert_eq!(
        evicted.revoked,
        Revoked::Session {
            sid: session_id_of(&first)
        }
    );
    assert_eq!(
        reused.revoked,
        Revoked::Session {
            sid: session_id_of(&second)
        }
    );
    assert_eq!(
        kinds(&app.revocations().await),
        vec![evicted.revoked, reused.revoked]
    );
}

#[tokio::test]
async fn the_snapshot_forgets_revocations_whose_tokens_have_expired() {
    let app = spawn_app_with(&[("ACCESS_TOKEN_TTL_SECONDS", "60")], None).await;
    let email = unique_email();
    let first = app.register(&email).await;
    let second = app.login(&email, PASSWORD).await.unwrap();
    app.client
        .clone()
        .revoke_session(bearer(
            &second.access_token,
            pb::RevokeSessionRequest {
                session_id: session_id_of(&first).to_string(),
            },
        ))
        .await
        .unwrap();

    // Past the first revocation's `until` (60 s + leeway), the next one trims it.
    app.clock.advance(time::Duration::seconds(120));
    app.client
        .clone()
        .logout_all(bearer(
            &app.access_token_for(user_id_of(&first)),
            pb::LogoutAllRequest {},
        ))
        .await
        .unwrap();

    let kinds = kinds(&app.revocations().await);
    assert_eq!(kinds.len(), 1, "{kinds:?}");
    assert!(matches!(kinds[0], Revoked::User { .. }), "{kinds:?}");
}
