//! Every kind of bad token is refused, by Refresh and by the bearer RPCs alike.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use common::status::{Details, reason};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proto::session::v1 as pb;
use serde_json::{Value, json};
use test_support::TestTokens;
use tonic::Code;

use crate::helpers::{
    TestApp, assert_refused, assert_status, bearer, claims_of, spawn_app, unique_email,
};

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

fn header_of(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

/// Bad variants of a real token, each with the reason Refresh refuses it for.
fn forgeries(app: &TestApp, token: &str) -> Vec<(&'static str, String, &'static str)> {
    let claims = claims_of(token);
    let kid = header_of(token)["kid"].as_str().unwrap().to_owned();
    let public_key = URL_SAFE_NO_PAD.decode(app.tokens.public_jwk().x).unwrap();
    let with = |changes: Value| {
        let mut claims = claims.clone();
        for (name, value) in changes.as_object().unwrap() {
            claims[name] = value.clone();
        }
        claims
    };

    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
        b64(&claims)
    );
    let mut hs256_header = Header::new(Algorithm::HS256);
    hs256_header.kid = Some(kid.clone());
    let hs256 = jsonwebtoken::encode(
        &hs256_header,
        &claims,
        &EncodingKey::from_secret(&public_key),
    )
    .unwrap();
    let hs256_jwk_x = jsonwebtoken::encode(
        &hs256_header,
        &claims,
        &EncodingKey::from_secret(app.tokens.public_jwk().x.as_bytes()),
    )
    .unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(&with(json!({"sub": uuid::Uuid::new_v4()}))),
        parts[2]
    );
    let now = test_support::tokens::now();
    let expired = app
        .tokens
        .sign(&with(json!({"iat": now - 7200, "exp": now - 3600})));
    let wrong_issuer = app.tokens.sign(&with(json!({"iss": "someone-else"})));
    let wrong_audience = app.tokens.sign(&with(json!({"aud": "another-api"})));
    let untrusted = TestTokens::untrusted().sign(&claims);
    let mut unknown_kid_header = Header::new(Algorithm::EdDSA);
    unknown_kid_header.kid = Some("0123456789abcdef".into());
    let unknown_kid = format!(
        "{}.{}.{}",
        b64(&serde_json::to_value(&unknown_kid_header).unwrap()),
        parts[1],
        parts[2]
    );
    let no_kid = format!(
        "{}.{}.{}",
        b64(&json!({"alg": "EdDSA", "typ": "JWT"})),
        parts[1],
        parts[2]
    );

    vec![
        ("alg none", none, reason::TOKEN_INVALID),
        (
            "HS256 keyed with the public key bytes",
            hs256,
            reason::TOKEN_INVALID,
        ),
        (
            "HS256 keyed with the JWK x",
            hs256_jwk_x,
            reason::TOKEN_INVALID,
        ),
        ("tampered payload", tampered, reason::TOKEN_INVALID),
        ("expired", expired, reason::TOKEN_EXPIRED),
        ("wrong issuer", wrong_issuer, reason::TOKEN_INVALID),
        ("wrong audience", wrong_audience, reason::TOKEN_INVALID),
        (
            "signed by an untrusted key",
            untrusted,
            reason::TOKEN_INVALID,
        ),
        ("unknown kid", unknown_kid, reason::TOKEN_INVALID),
        ("no kid", no_kid, reason::TOKEN_INVALID),
        ("garbage", "not.a.jwt".into(), reason::TOKEN_INVALID),
        ("empty", String::new(), reason::TOKEN_INVALID),
    ]
}

#[tokio::test]
async fn refresh_rejects_every_forged_or_misused_token_and_the_real_one_still_works() {
    let app = spawn_app().await;
    let pair = app.register(&unique_email()).await;

    for (case, token, expected) in forgeries(&app, &pair.refresh_token) {
        let result = app.refresh(&token).await;

        match result {
            Ok(_) => panic!("{case}: accepted"),
            Err(status) => {
                assert_eq!(
                    status.code(),
                    Code::Unauthenticated,
                    "{case}: {}",
                    status.message()
                );
                assert!(Details::of(&status).is(expected), "{case}: {status:?}");
                let sentence = match expected {
                    reason::TOKEN_EXPIRED => "token expired",
                    _ => "token invalid",
                };
                assert_eq!(status.message(), sentence, "{case}");
            }
        }
    }
    assert_refused(app.refresh(&pair.access_token).await, reason::TOKEN_INVALID);
    assert!(
        app.refresh(&pair.refresh_token).await.is_ok(),
        "no forgery touched the session"
    );
}

#[tokio::test]
async fn bearer_calls_reject_every_forged_or_misused_token() {
    let app = spawn_app().await;
    let pair = app.register(&unique_email()).await;
    let mut cases = forgeries(&app, &pair.access_token);
    cases.push((
        "a refresh token as bearer",
        pair.refresh_token.clone(),
        reason::TOKEN_INVALID,
    ));

    for (case, token, _) in cases {
        if token.is_empty() {
            continue;
        }
        let result = app
            .client
            .clone()
            .get_profile(bearer(&token, pb::GetProfileRequest {}))
            .await;

        assert_eq!(result.unwrap_err().code(), Code::Unauthenticated, "{case}");
    }
    let missing = app
        .client
        .clone()
        .get_profile(pb::GetProfileRequest {})
        .await;
    assert_status(missing, Code::Unauthenticated, "missing bearer token");
    assert!(
        app.client
            .clone()
            .get_profile(bearer(&pair.access_token, pb::GetProfileRequest {}))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn tokens_expire_by_the_services_clock_even_once_verified() {
    let app = spawn_app().await;
    let pair = app.register(&unique_email()).await;
    let profile = |token: String| {
        let mut client = app.client.clone();
        async move {
            client
                .get_profile(bearer(&token, pb::GetProfileRequest {}))
                .await
        }
    };
    assert!(profile(pair.access_token.clone()).await.is_ok());

    // Past the access token's 30 minutes and the 5 s leeway; the refresh token and its
    // session (30 days) live on.
    app.clock.advance(time::Duration::seconds(1800 + 6));

    assert_status(
        profile(pair.access_token.clone()).await,
        Code::Unauthenticated,
        "token expired",
    );
    let refreshed = app.refresh(&pair.refresh_token).await.expect("refresh");
    assert!(profile(refreshed.access_token).await.is_ok());
}

#[tokio::test]
async fn public_keys_publish_the_signing_key_with_its_issuer_and_audience() {
    let app = spawn_app().await;

    let keys = app
        .client
        .clone()
        .get_public_keys(pb::GetPublicKeysRequest {})
        .await
        .unwrap()
        .into_inner();

    assert_eq!(keys.issuer, "learn-greek-easy");
    assert_eq!(keys.audience, "learn-greek-easy-api");
    assert_eq!(keys.keys.len(), 1);
    let jwk = common::auth::PublicJwk::from(keys.keys[0].clone());
    assert_eq!(jwk, app.tokens.public_jwk());
    // What the gateway and deck-service do with them: verify an access token locally.
    let pair = app.register(&unique_email()).await;
    let verifier = common::auth::AccessVerifier::with_keys(vec![jwk], &keys.issuer, &keys.audience);
    assert!(verifier.verify(&pair.access_token).await.is_ok());
    assert!(
        verifier.verify(&pair.refresh_token).await.is_err(),
        "type is pinned"
    );
}

#[tokio::test]
async fn an_older_key_in_the_additional_keys_file_is_published_and_still_verifies() {
    let old = TestTokens::untrusted();
    let file = old.jwks_file();
    let app = crate::helpers::spawn_app_with(
        &[(
            "JWT_ADDITIONAL_PUBLIC_KEYS_FILE",
            &file.display().to_string(),
        )],
        None,
    )
    .await;
    let pair = app.register(&unique_email()).await;
    let user_id = crate::helpers::user_id_of(&pair);

    let keys = app
        .client
        .clone()
        .get_public_keys(pb::GetPublicKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    let old_token = old.access_token(user_id, false);
    let profile = app
        .client
        .clone()
        .get_profile(bearer(&old_token, pb::GetProfileRequest {}))
        .await;

    assert_eq!(keys.keys.len(), 2);
    assert_eq!(
        keys.keys[0].kid,
        app.tokens.public_jwk().kid,
        "the signing key comes first"
    );
    assert_eq!(keys.keys[1].kid, old.public_jwk().kid);
    assert!(profile.is_ok(), "{profile:?}");
}
