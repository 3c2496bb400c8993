//! The one token validation (`common::auth::TokenValidation`) that every binary holds
//! access and refresh tokens to: time claims judged by the injected clock with the
//! shared leeway, not by the system clock; the `type` pinned per claims type; issuer and
//! audience pinned; tokens past the size limit refused unread.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

use std::sync::Arc;

use common::{
    auth::{
        AccessClaims, AccessVerifier, AuthError, Claims, LEEWAY_SECONDS, MAX_TOKEN_BYTES,
        TokenType, TokenValidation,
    },
    clock::ManualClock,
};
use serde::Deserialize;
use test_support::TestTokens;
use time::OffsetDateTime;
use uuid::Uuid;

/// 2021-01-01 00:00 UTC: long past by the system clock, so a token issued then verifies
/// only if the verifier's own clock says so.
const THEN: u64 = 1_609_459_200;

/// A second kind of claims, as session-service's refresh tokens are.
#[derive(Debug, Deserialize)]
struct RefreshLike {
    sub: Uuid,
    #[serde(rename = "type")]
    token_type: TokenType,
    exp: u64,
}

impl Claims for RefreshLike {
    const TYPE: TokenType = TokenType::Refresh;

    fn token_type(&self) -> TokenType {
        self.token_type
    }

    fn expires_at(&self) -> u64 {
        self.exp
    }
}

fn at(unix_seconds: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix_seconds as i64).expect("a valid time")
}

/// A verifier of the test key on a clock standing at `now`.
fn verifier_at(now: u64) -> (AccessVerifier, ManualClock) {
    let tokens = TestTokens::new();
    let clock = ManualClock::new(at(now));
    let validation =
        TokenValidation::new(&tokens.issuer, &tokens.audience, Arc::new(clock.clone()));
    (
        AccessVerifier::with_validation(vec![tokens.public_jwk()], validation),
        clock,
    )
}

/// Access-token claims issued at `THEN`, expiring `lifetime` seconds later.
fn claims_issued_then(lifetime: u64) -> AccessClaims {
    let mut claims = TestTokens::new().claims(Uuid::new_v4(), false);
    claims.iat = THEN;
    claims.exp = THEN + lifetime;
    claims
}

#[tokio::test]
async fn a_token_is_judged_by_the_injected_clock_not_the_system_clock() {
    let token = TestTokens::new().sign(&claims_issued_then(60));
    let (verifier, _) = verifier_at(THEN + 30);

    let verdict = verifier.verify(&token).await;

    assert!(
        verdict.is_ok(),
        "expired by the system clock only: {verdict:?}"
    );
}

#[tokio::test]
async fn a_token_is_accepted_until_its_expiry_plus_the_leeway_and_no_longer() {
    let token = TestTokens::new().sign(&claims_issued_then(60));
    let (fresh, _) = verifier_at(THEN + 60 + LEEWAY_SECONDS);
    let (late, _) = verifier_at(THEN + 60 + LEEWAY_SECONDS + 1);

    assert!(fresh.verify(&token).await.is_ok());
    assert_eq!(late.verify(&token).await, Err(AuthError::Expired));
}

#[tokio::test]
async fn a_remembered_token_expires_when_the_clock_moves_past_it() {
    let token = TestTokens::new().sign(&claims_issued_then(60));
    let (verifier, clock) = verifier_at(THEN);
    assert!(verifier.verify(&token).await.is_ok());

    clock.advance(time::Duration::seconds((60 + LEEWAY_SECONDS + 1) as i64));

    assert_eq!(verifier.verify(&token).await, Err(AuthError::Expired));
}

#[tokio::test]
async fn each_kind_of_claims_accepts_only_tokens_of_its_own_type() {
    let tokens = TestTokens::new();
    let access = claims_issued_then(60);
    let refresh = AccessClaims {
        token_type: TokenType::Refresh,
        ..access.clone()
    };
    let (verifier, clock) = verifier_at(THEN);

    let as_refresh = verifier
        .verify_token::<RefreshLike>(&tokens.sign(&refresh))
        .await;
    let access_as_refresh = verifier
        .verify_token::<RefreshLike>(&tokens.sign(&access))
        .await;
    let refresh_as_access = verifier.verify(&tokens.sign(&refresh)).await;
    clock.advance(time::Duration::hours(1));
    let expired_refresh = verifier
        .verify_token::<RefreshLike>(&tokens.sign(&refresh))
        .await;

    assert_eq!(as_refresh.map(|claims| claims.sub).ok(), Some(access.sub));
    assert_eq!(access_as_refresh.err(), Some(AuthError::Invalid));
    assert_eq!(refresh_as_access, Err(AuthError::Invalid));
    assert_eq!(expired_refresh.err(), Some(AuthError::Expired));
}

#[tokio::test]
async fn a_wrong_issuer_or_audience_is_invalid_for_every_kind_of_token() {
    let tokens = TestTokens::new();
    let refresh = AccessClaims {
        token_type: TokenType::Refresh,
        ..claims_issued_then(60)
    };
    let (verifier, _) = verifier_at(THEN);

    for claims in [
        AccessClaims {
            iss: "someone-else".into(),
            ..refresh.clone()
        },
        AccessClaims {
            aud: "another-api".into(),
            ..refresh.clone()
        },
    ] {
        let verdict = verifier
            .verify_token::<RefreshLike>(&tokens.sign(&claims))
            .await;

        assert_eq!(verdict.err(), Some(AuthError::Invalid), "{claims:?}");
    }
}

#[tokio::test]
async fn a_token_longer_than_the_limit_is_refused_unread() {
    let (verifier, _) = verifier_at(THEN);
    let mut claims = serde_json::to_value(claims_issued_then(60)).unwrap();
    claims["padding"] = "x".repeat(MAX_TOKEN_BYTES).into();
    let oversized = TestTokens::new().sign(&claims);

    assert!(oversized.len() > MAX_TOKEN_BYTES);
    assert_eq!(verifier.verify(&oversized).await, Err(AuthError::Invalid));
}
