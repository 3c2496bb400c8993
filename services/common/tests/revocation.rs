//! The revoked set of `common::revocation` behind the one token verifier: a revoked
//! token is refused even when its verification is cached, the snapshot in Redis feeds a
//! set that was not listening, and `REVOCATION_FALLBACK` decides when Redis cannot say.
//! Real Redis (the shared test server, single node or cluster; a dead port for the
//! fallback).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

use std::{sync::Arc, time::Duration};

use common::{
    auth::{AccessVerifier, AuthError, DEFAULT_AUDIENCE, DEFAULT_ISSUER},
    clock::SystemClock,
    config::{RedisConfig, Secret},
    metrics::Metrics,
    redis::RedisPool,
    revocation::{Fallback, Publisher, RevocationConfig, Revocations, Revoked},
    shutdown::Shutdown,
};
use test_support::TestTokens;
use tokio::sync::watch;
use uuid::Uuid;

fn redis_config(prefix: &str) -> RedisConfig {
    RedisConfig {
        redis_connect_timeout: Duration::from_secs(2),
        redis_response_timeout: Duration::from_secs(2),
        redis_key_prefix: prefix.to_owned(),
    }
}

fn config(url: &str, fallback: Fallback) -> RevocationConfig {
    RevocationConfig {
        session_redis_url: Secret::new(url.to_owned()),
        revocation_fallback: fallback,
        revocation_check_timeout: Duration::from_secs(2),
    }
}

/// A verifier of `tokens` that checks `url`'s revocations, trusted while `epoch` says so.
fn verifier(
    tokens: &TestTokens,
    url: &str,
    prefix: &str,
    fallback: Fallback,
    epoch: watch::Receiver<Option<u64>>,
) -> (AccessVerifier, Revocations, Metrics) {
    let verifier =
        AccessVerifier::with_keys(vec![tokens.public_jwk()], DEFAULT_ISSUER, DEFAULT_AUDIENCE);
    let metrics = Metrics::new();
    let pool = RedisPool::new(url, &redis_config(prefix)).unwrap();
    let revocations = Revocations::with_epoch(
        pool,
        &config(url, fallback),
        Arc::new(SystemClock),
        epoch,
        &metrics,
    );
    verifier.check_revocations(revocations.clone());
    (verifier, revocations, metrics)
}

#[tokio::test]
async fn a_cached_token_of_a_session_in_the_snapshot_is_refused_once_the_snapshot_is_loaded() {
    test_support::init();
    let tokens = TestTokens::new();
    let prefix = test_support::key_prefix();
    let url = test_support::redis_url();
    let (epoch_sender, epoch) = watch::channel(None);
    let (verifier, revocations, _metrics) =
        verifier(&tokens, &url, &prefix, Fallback::Accept, epoch);
    let claims = tokens.claims(Uuid::new_v4(), false);
    let token = tokens.sign(&claims);
    let other = tokens.access_token(Uuid::new_v4(), false);
    // Not subscribed: the check asks Redis, which knows no such session.
    assert_eq!(verifier.verify(&token).await, Err(AuthError::Revoked));
    let shutdown = Shutdown::new();
    revocations.follow(shutdown.clone());
    let publisher = Publisher::new(
        RedisPool::new(&url, &redis_config(&prefix)).unwrap(),
        Duration::from_secs(1800),
    );
    publisher
        .publish(Revoked::Session { sid: claims.sid }, claims.iat)
        .await
        .unwrap();

    epoch_sender.send_replace(Some(7));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !revocations.is_live() {
        assert!(tokio::time::Instant::now() < deadline, "the snapshot loads");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    assert_eq!(verifier.verify(&token).await, Err(AuthError::Revoked));
    // In memory, no Redis: a token of a session Redis does not know is accepted.
    assert!(verifier.verify(&other).await.is_ok());
    epoch_sender.send_replace(None);
    assert!(!revocations.is_live(), "a lost subscription is not trusted");
    shutdown.trigger();
}

#[tokio::test]
async fn an_unanswerable_check_is_accepted_or_refused_by_the_fallback_setting() {
    test_support::init();
    let tokens = TestTokens::new();
    let nobody = format!("redis://127.0.0.1:{}", test_support::free_port());
    let token = tokens.access_token(Uuid::new_v4(), false);
    let (_sender, epoch) = watch::channel(None);
    let (accepting, _, accept_metrics) =
        verifier(&tokens, &nobody, "p:", Fallback::Accept, epoch.clone());
    let (refusing, _, refuse_metrics) = verifier(&tokens, &nobody, "p:", Fallback::Refuse, epoch);

    let accepted = accepting.verify(&token).await;
    let refused = refusing.verify(&token).await;

    assert!(accepted.is_ok(), "{accepted:?}");
    assert_eq!(refused, Err(AuthError::RevocationUnknown));
    assert!(
        accept_metrics
            .render_prometheus_text()
            .contains(r#"revocation_fallback_checks_total{outcome="accepted_unverified"} 1"#)
    );
    assert!(
        refuse_metrics
            .render_prometheus_text()
            .contains(r#"revocation_fallback_checks_total{outcome="refused_unverified"} 1"#)
    );
}
