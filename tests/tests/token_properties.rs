//! Property tests of the access-token parser and verifier (`common::auth`): whatever
//! arrives in an `Authorization` header, verification answers with an error or a
//! caller, never a panic, and it accepts exactly the tokens the design allows.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

use base64::Engine;
use common::auth::{AccessClaims, AccessVerifier, AuthError, TokenType, bearer_token};
use proptest::prelude::*;
use test_support::{TestTokens, tokens::now};
use uuid::Uuid;

fn verifier() -> AccessVerifier {
    let tokens = TestTokens::new();
    AccessVerifier::with_keys(vec![tokens.public_jwk()], &tokens.issuer, &tokens.audience)
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(future)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_authorization_value_is_parsed_without_panicking(value in ".{0,300}") {
        if let Ok(token) = bearer_token(&value) {
            prop_assert!(!token.is_empty());
            prop_assert_eq!(token, token.trim());
        }
    }

    #[test]
    fn arbitrary_strings_are_never_accepted_as_tokens(token in "[A-Za-z0-9._~+/=-]{0,400}") {
        prop_assert!(block_on(verifier().verify(&token)).is_err());
    }

    #[test]
    fn a_signed_token_is_accepted_exactly_when_its_claims_are_valid(
        is_access in any::<bool>(),
        right_issuer in any::<bool>(),
        right_audience in any::<bool>(),
        expires_in in -3600i64..3600,
        is_superuser in any::<bool>(),
    ) {
        let tokens = TestTokens::new();
        let user_id = Uuid::new_v4();
        let mut claims = tokens.claims(user_id, is_superuser);
        claims.token_type = if is_access { TokenType::Access } else { TokenType::Refresh };
        if !right_issuer { claims.iss = "someone-else".into(); }
        if !right_audience { claims.aud = "another-api".into(); }
        claims.exp = now().saturating_add_signed(expires_in);
        // Tokens within the leeway of their expiry are not asserted either way.
        prop_assume!(!(-10..=10).contains(&expires_in));

        let verdict = block_on(verifier().verify(&tokens.sign(&claims)));

        let valid = is_access && right_issuer && right_audience && expires_in > 0;
        prop_assert_eq!(verdict.is_ok(), valid, "{:?}", verdict);
        if let Ok(caller) = verdict {
            prop_assert_eq!(caller.user_id, user_id);
            prop_assert_eq!(caller.is_superuser, is_superuser);
        }
        if !valid && is_access && right_issuer && right_audience {
            prop_assert_eq!(verdict, Err(AuthError::Expired));
        }
    }

    #[test]
    fn a_payload_changed_after_signing_is_rejected(is_superuser in any::<bool>(), extra_seconds in 1u64..100_000) {
        let tokens = TestTokens::new();
        let claims = tokens.claims(Uuid::new_v4(), false);
        let token = tokens.sign(&claims);
        let forged = AccessClaims { is_superuser, exp: claims.exp + extra_seconds, ..claims };
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&forged).expect("claims serialise"));
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[1] = &payload;

        prop_assert_eq!(block_on(verifier().verify(&parts.join("."))), Err(AuthError::Invalid));
    }
}

#[test]
fn alg_none_and_hs256_with_the_public_key_are_rejected() {
    let tokens = TestTokens::new();
    let claims = tokens.claims(Uuid::new_v4(), true);
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = engine.encode(serde_json::to_vec(&claims).expect("claims serialise"));
    let kid = tokens.public_jwk().kid;

    let none_header = engine.encode(format!(r#"{{"alg":"none","typ":"JWT","kid":"{kid}"}}"#));
    let none_token = format!("{none_header}.{payload}.");
    let public_key = engine
        .decode(tokens.public_jwk().x)
        .expect("x is base64url");
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.kid = Some(kid);
    let hs_token = jsonwebtoken::encode(
        &hs_header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&public_key),
    )
    .expect("sign HS256");

    assert_eq!(
        block_on(verifier().verify(&none_token)),
        Err(AuthError::Invalid)
    );
    assert_eq!(
        block_on(verifier().verify(&hs_token)),
        Err(AuthError::Invalid)
    );
    assert!(
        block_on(verifier().verify(&tokens.sign(&claims))).is_ok(),
        "the untampered token verifies"
    );
}

#[test]
fn a_token_signed_by_an_unknown_key_is_rejected() {
    let claims = TestTokens::untrusted().claims(Uuid::new_v4(), false);

    let verdict = block_on(verifier().verify(&TestTokens::untrusted().sign(&claims)));

    assert_eq!(verdict, Err(AuthError::Invalid));
}
