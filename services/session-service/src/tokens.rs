//! Signing and verifying the tokens this service issues (ARCHITECTURE.md, "Tokens and sessions").
//!
//! Both tokens are EdDSA (Ed25519) JWTs whose header carries the `kid` of the signing key.
//! Ed25519 signatures are deterministic, so the same claims signed with the same key give
//! the same token bytes: that is how a grace-window replay returns the identical pair
//! without the tokens themselves ever being stored.
//!
//! Tokens are signed here with the key held parsed: `jsonwebtoken::encode` re-reads the
//! PKCS#8 key on every call, which derives the public key (a scalar multiplication as costly
//! as the signature itself; bench/REPORT.md, the refresh profile). The header is
//! jsonwebtoken's own, serialized once, and a test holds the tokens to be byte-identical to
//! `jsonwebtoken::encode`'s.
//!
//! Verifying is not done here: both kinds of token are held to the one validation of
//! every binary (`common::auth::TokenValidation`), through the verifier that
//! [`TokenKeys::verifier`] builds over the published keys.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{
    auth::{
        AccessClaims, AccessVerifier, AuthError, Claims, PublicJwk, TokenType, TokenValidation,
        check_jwk,
    },
    clock::Clock,
    config::Secret,
};
use ed25519_dalek::{
    Signer,
    pkcs8::{DecodePrivateKey, EncodePrivateKey},
};
use jsonwebtoken::{Algorithm, Header};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{config::TokenConfig, error::RefreshError};

/// The claims of a refresh token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshClaims {
    pub sub: Uuid,
    pub sid: Uuid,
    #[serde(rename = "type")]
    pub token_type: TokenType,
    /// Generation: 0 at login, +1 on every rotation.
    #[serde(rename = "gen")]
    pub generation: u64,
    pub iat: u64,
    pub exp: u64,
    pub jti: Uuid,
    pub iss: String,
    pub aud: String,
}

impl Claims for RefreshClaims {
    const TYPE: TokenType = TokenType::Refresh;

    fn token_type(&self) -> TokenType {
        self.token_type
    }

    fn expires_at(&self) -> u64 {
        self.exp
    }
}

impl From<AuthError> for RefreshError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Expired => Self::Expired,
            // A fixed key set is never unavailable; anything else is not one of ours.
            _ => Self::Invalid,
        }
    }
}

/// Everything that determines one issued pair; signing it twice gives the same tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairSpec {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub generation: u64,
    pub refresh_jti: Uuid,
    pub access_jti: Uuid,
    pub issued_at: u64,
    pub access_expires_at: u64,
    pub refresh_expires_at: u64,
    pub is_superuser: bool,
}

/// A signed access and refresh token (bearer secrets: `Debug` does not show them).
#[derive(Clone, PartialEq, Eq)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// The access token's lifetime as issued, in seconds. A grace replay answers the
    /// pair as issued with this same number: the response is identical.
    pub expires_in: u64,
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPair")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Why the signing-key configuration is unusable (start-up stops with exit 64).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("JWT_PRIVATE_KEY_FILE or JWT_PRIVATE_KEY is required (an Ed25519 PKCS#8 PEM key)")]
    Missing,
    #[error("set only one of JWT_PRIVATE_KEY_FILE and JWT_PRIVATE_KEY")]
    Both,
    #[error("{0}: cannot read: {1}")]
    Read(&'static str, std::io::Error),
    #[error("{0}: not an Ed25519 PKCS#8 PEM private key")]
    BadPrivateKey(&'static str),
    #[error("JWT_ADDITIONAL_PUBLIC_KEYS_FILE: {0}")]
    BadJwks(String),
}

/// The signing key, the published verification keys and the claims every token carries.
pub struct TokenKeys {
    signing: ed25519_dalek::SigningKey,
    /// The JWS header every token carries (`alg` EdDSA, `typ` JWT, `kid`), base64url.
    header: String,
    kid: String,
    published: Vec<PublicJwk>,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// Loads the key named by the configuration.
    pub fn from_config(config: &TokenConfig) -> Result<Self, KeyError> {
        let (pem, variable) = match (&config.jwt_private_key_file, &config.jwt_private_key) {
            (None, None) => return Err(KeyError::Missing),
            (Some(_), Some(_)) => return Err(KeyError::Both),
            (Some(path), None) => (
                Secret::new(
                    std::fs::read_to_string(path)
                        .map_err(|e| KeyError::Read("JWT_PRIVATE_KEY_FILE", e))?,
                ),
                "JWT_PRIVATE_KEY_FILE",
            ),
            (None, Some(pem)) => (pem.clone(), "JWT_PRIVATE_KEY"),
        };
        let additional = (config.jwt_additional_public_keys_file.as_ref())
            .map_or_else(Vec::new, |file| file.keys().to_vec());
        Self::new(
            &pem,
            variable,
            additional,
            &config.jwt_issuer,
            &config.jwt_audience,
        )
    }

    /// Builds the keys from a PEM private key and older public keys to keep publishing.
    pub fn new(
        pem: &Secret<String>,
        variable: &'static str,
        additional: Vec<PublicJwk>,
        issuer: &str,
        audience: &str,
    ) -> Result<Self, KeyError> {
        let signing = ed25519_dalek::SigningKey::from_pkcs8_pem(pem.expose().trim())
            .map_err(|_| KeyError::BadPrivateKey(variable))?;
        let current = ed25519_jwk(&signing.verifying_key().to_bytes());
        let kid = current.kid.clone();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.clone());
        let header = URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&header).map_err(|_| KeyError::BadPrivateKey(variable))?);
        let mut published = vec![current];
        published.extend(additional.into_iter().filter(|jwk| jwk.kid != kid));

        // Every published key must verify: a verifier would silently skip one that
        // does not, and its tokens would be refused everywhere.
        for jwk in &published {
            check_jwk(jwk).map_err(|error| KeyError::BadJwks(error.to_string()))?;
        }
        Ok(Self {
            signing,
            header,
            kid,
            published,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        })
    }

    /// The keys GetPublicKeys publishes: the signing key's first, then the older ones.
    pub fn published(&self) -> &[PublicJwk] {
        &self.published
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The verifier of this service's tokens, access and refresh alike: the published
    /// keys, this issuer and audience, and time by `clock`.
    pub fn verifier(&self, clock: Arc<dyn Clock>) -> AccessVerifier {
        AccessVerifier::with_validation(
            self.published.clone(),
            TokenValidation::new(&self.issuer, &self.audience, clock),
        )
    }

    /// Signs the pair described by `spec`; the same spec always gives the same tokens.
    pub fn sign(&self, spec: &PairSpec) -> Result<TokenPair, serde_json::Error> {
        let access = AccessClaims {
            sub: spec.user_id,
            sid: spec.session_id,
            token_type: TokenType::Access,
            iat: spec.issued_at,
            exp: spec.access_expires_at,
            jti: spec.access_jti,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            is_superuser: spec.is_superuser,
        };
        let refresh = RefreshClaims {
            sub: spec.user_id,
            sid: spec.session_id,
            token_type: TokenType::Refresh,
            generation: spec.generation,
            iat: spec.issued_at,
            exp: spec.refresh_expires_at,
            jti: spec.refresh_jti,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        Ok(TokenPair {
            access_token: self.jwt(&access)?,
            refresh_token: self.jwt(&refresh)?,
            expires_in: spec.access_expires_at.saturating_sub(spec.issued_at),
        })
    }

    /// The compact JWS of `claims` (RFC 7515, section 7.1): header, claims and signature,
    /// each base64url without padding, joined by dots.
    fn jwt(&self, claims: &impl Serialize) -> Result<String, serde_json::Error> {
        let claims = serde_json::to_vec(claims)?;
        // 4/3 for base64, 86 for the signature, 2 for the dots.
        let mut token = String::with_capacity(self.header.len() + claims.len() * 4 / 3 + 90);
        token.push_str(&self.header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(claims, &mut token);
        let signature = self.signing.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut token);
        Ok(token)
    }
}

/// Verifies a refresh token with `verifier` (built by [`TokenKeys::verifier`]): a
/// published key by `kid`, that key's own algorithm, issuer, audience, `exp` (with the
/// shared leeway, by the verifier's clock) and `type: "refresh"`.
pub async fn verify_refresh(
    verifier: &AccessVerifier,
    token: &str,
) -> Result<RefreshClaims, RefreshError> {
    Ok(verifier.verify_token::<RefreshClaims>(token).await?)
}

/// The JWK of an Ed25519 public key.
pub fn ed25519_jwk(public_key: &[u8; 32]) -> PublicJwk {
    PublicJwk {
        kid: common::auth::key_id(public_key),
        kty: "OKP".into(),
        alg: "EdDSA".into(),
        key_use: "sig".into(),
        crv: "Ed25519".into(),
        x: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public_key),
        y: None,
    }
}

/// A new random Ed25519 signing key as PKCS#8 PEM (the `generate-key` subcommand).
#[allow(
    clippy::expect_used,
    reason = "a well-formed key of fixed size always encodes as PKCS#8 PEM"
)]
pub fn generate_key_pem() -> Secret<String> {
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .expect("encode a fresh key");
    Secret::new(pem.to_string())
}

#[cfg(test)]
mod tests {
    use common::{auth::LEEWAY_SECONDS, clock::ManualClock};

    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(
            &generate_key_pem(),
            "JWT_PRIVATE_KEY",
            Vec::new(),
            "iss",
            "aud",
        )
        .unwrap()
    }

    fn spec(now: u64) -> PairSpec {
        PairSpec {
            user_id: Uuid::new_v4(),
            session_id: Uuid::new_v4(),
            generation: 3,
            refresh_jti: Uuid::new_v4(),
            access_jti: Uuid::new_v4(),
            issued_at: now,
            access_expires_at: now + 60,
            refresh_expires_at: now + 600,
            is_superuser: false,
        }
    }

    /// A verifier of `keys` on a clock standing at `now` (unix seconds).
    fn verifier_at(keys: &TokenKeys, now: u64) -> (AccessVerifier, ManualClock) {
        let clock = ManualClock::new(
            time::OffsetDateTime::from_unix_timestamp(now as i64).expect("a valid time"),
        );
        (keys.verifier(Arc::new(clock.clone())), clock)
    }

    /// 2021-01-01: long past by the system clock, so only a verifier's own clock can
    /// accept these tokens.
    const NOW: u64 = 1_609_459_200;

    #[test]
    fn a_token_is_byte_identical_to_what_jsonwebtoken_encodes_with_the_same_key() {
        let pem = generate_key_pem();
        let keys = TokenKeys::new(&pem, "JWT_PRIVATE_KEY", Vec::new(), "iss", "aud").unwrap();
        let claims = serde_json::json!({"sub": "Ελένη", "exp": 1_700_000_000, "n": [1, 2]});
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(keys.kid.clone());
        let key = jsonwebtoken::EncodingKey::from_ed_pem(pem.expose().as_bytes()).unwrap();

        let ours = keys.jwt(&claims).unwrap();

        assert_eq!(ours, jsonwebtoken::encode(&header, &claims, &key).unwrap());
    }

    #[test]
    fn signing_the_same_spec_twice_gives_identical_tokens() {
        let keys = keys();
        let spec = spec(NOW);

        assert_eq!(keys.sign(&spec).unwrap(), keys.sign(&spec).unwrap());
    }

    #[tokio::test]
    async fn a_signed_refresh_token_verifies_with_its_claims() {
        let keys = keys();
        let spec = spec(NOW);
        let pair = keys.sign(&spec).unwrap();
        let (verifier, _) = verifier_at(&keys, NOW);

        let claims = verify_refresh(&verifier, &pair.refresh_token)
            .await
            .unwrap();

        assert_eq!(
            (claims.sub, claims.sid, claims.generation, claims.jti),
            (spec.user_id, spec.session_id, 3, spec.refresh_jti)
        );
    }

    #[tokio::test]
    async fn an_access_token_is_not_a_refresh_token_nor_a_refresh_token_an_access_token() {
        let keys = keys();
        let pair = keys.sign(&spec(NOW)).unwrap();
        let (verifier, _) = verifier_at(&keys, NOW);

        assert_eq!(
            verify_refresh(&verifier, &pair.access_token).await,
            Err(RefreshError::Invalid)
        );
        assert_eq!(
            verifier.verify(&pair.refresh_token).await,
            Err(AuthError::Invalid)
        );
        assert!(verifier.verify(&pair.access_token).await.is_ok());
    }

    #[tokio::test]
    async fn a_refresh_token_expires_by_the_verifiers_clock_after_the_leeway() {
        let keys = keys();
        let pair = keys.sign(&spec(NOW)).unwrap();
        let (verifier, clock) = verifier_at(&keys, NOW + 600 + LEEWAY_SECONDS);

        let at_the_leeway = verify_refresh(&verifier, &pair.refresh_token).await;
        clock.advance(time::Duration::seconds(1));
        let after_it = verify_refresh(&verifier, &pair.refresh_token).await;

        assert!(at_the_leeway.is_ok(), "{at_the_leeway:?}");
        assert_eq!(after_it, Err(RefreshError::Expired));
    }

    #[tokio::test]
    async fn a_token_of_another_key_is_invalid() {
        let pair = keys().sign(&spec(NOW)).unwrap();
        let (verifier, _) = verifier_at(&keys(), NOW);

        assert_eq!(
            verify_refresh(&verifier, &pair.refresh_token).await,
            Err(RefreshError::Invalid)
        );
    }

    #[test]
    fn an_additional_key_that_cannot_verify_stops_the_start() {
        let symmetric = PublicJwk {
            kty: "oct".into(),
            alg: "HS256".into(),
            crv: String::new(),
            ..keys().published()[0].clone()
        };

        let refused = TokenKeys::new(
            &generate_key_pem(),
            "JWT_PRIVATE_KEY",
            vec![symmetric],
            "iss",
            "aud",
        );

        assert!(
            matches!(&refused, Err(KeyError::BadJwks(why)) if why.contains("not an EdDSA")),
            "{:?}",
            refused.err()
        );
    }

    #[test]
    fn the_published_set_lists_the_signing_key_first_and_keeps_older_keys() {
        let old = keys().published()[0].clone();
        let keys = TokenKeys::new(
            &generate_key_pem(),
            "JWT_PRIVATE_KEY",
            vec![old.clone()],
            "iss",
            "aud",
        )
        .unwrap();

        assert_eq!(keys.published().len(), 2);
        assert_eq!(keys.published()[1], old);
    }
}
