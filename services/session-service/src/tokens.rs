//! Signing and verifying the tokens this service issues (ARCHITECTURE.md, "Tokens and sessions").
//!
//! Both tokens are EdDSA (Ed25519) JWTs whose header carries the `kid` of the signing key.
//! Ed25519 signatures are deterministic, so the same claims signed with the same key give
//! the same token bytes: that is how a grace-window replay returns the identical pair
//! without the tokens themselves ever being stored.

use std::collections::HashMap;

use base64::Engine;
use common::{
    auth::{AccessClaims, AccessVerifier, LEEWAY_SECONDS, PublicJwk, TokenType},
    config::Secret,
};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
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

/// A signed access and refresh token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// The access token's lifetime as issued, in seconds. A grace replay re-signs the
    /// same pair, so it answers the same number too: the response is identical.
    pub expires_in: u64,
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
    encoding: EncodingKey,
    kid: String,
    published: Vec<PublicJwk>,
    decoding: HashMap<String, (Algorithm, DecodingKey)>,
    issuer: String,
    audience: String,
    verifier: AccessVerifier,
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
        let encoding = EncodingKey::from_ed_pem(pem.expose().trim().as_bytes())
            .map_err(|_| KeyError::BadPrivateKey(variable))?;
        let current = ed25519_jwk(&signing.verifying_key().to_bytes());
        let kid = current.kid.clone();
        let mut published = vec![current];
        published.extend(additional.into_iter().filter(|jwk| jwk.kid != kid));

        let mut decoding = HashMap::new();
        for jwk in &published {
            let key = match (jwk.kty.as_str(), jwk.alg.as_str(), jwk.crv.as_str()) {
                ("OKP", "EdDSA", "Ed25519") => {
                    DecodingKey::from_ed_components(&jwk.x).map(|key| (Algorithm::EdDSA, key))
                }
                ("EC", "ES256", "P-256") => {
                    DecodingKey::from_ec_components(&jwk.x, jwk.y.as_deref().unwrap_or_default())
                        .map(|key| (Algorithm::ES256, key))
                }
                _ => {
                    return Err(KeyError::BadJwks(format!(
                        "key {:?} is not an EdDSA or ES256 key",
                        jwk.kid
                    )));
                }
            }
            .map_err(|e| KeyError::BadJwks(format!("key {:?}: {e}", jwk.kid)))?;
            decoding.insert(jwk.kid.clone(), key);
        }
        let verifier = AccessVerifier::with_keys(published.clone(), issuer, audience);
        Ok(Self {
            encoding,
            kid,
            published,
            decoding,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            verifier,
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

    /// Verifies access tokens against the published keys, pinning issuer, audience and type.
    pub fn access_verifier(&self) -> &AccessVerifier {
        &self.verifier
    }

    /// Signs the pair described by `spec`; the same spec always gives the same tokens.
    pub fn sign(&self, spec: &PairSpec) -> Result<TokenPair, jsonwebtoken::errors::Error> {
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
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        Ok(TokenPair {
            access_token: jsonwebtoken::encode(&header, &access, &self.encoding)?,
            refresh_token: jsonwebtoken::encode(&header, &refresh, &self.encoding)?,
            expires_in: spec.access_expires_at.saturating_sub(spec.issued_at),
        })
    }

    /// Verifies a refresh token: a published key by `kid`, that key's own algorithm (never
    /// `none` or HS*), issuer, audience, expiry (with the shared leeway) and `type: "refresh"`.
    pub fn verify_refresh(&self, token: &str) -> Result<RefreshClaims, RefreshError> {
        if token.is_empty() || token.len() > 8192 {
            return Err(RefreshError::Invalid);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| RefreshError::Invalid)?;
        let kid = header.kid.ok_or(RefreshError::Invalid)?;
        let (algorithm, key) = self.decoding.get(&kid).ok_or(RefreshError::Invalid)?;
        if header.alg != *algorithm {
            return Err(RefreshError::Invalid);
        }
        let mut validation = Validation::new(*algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECONDS;
        let claims = jsonwebtoken::decode::<RefreshClaims>(token, key, &validation)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => RefreshError::Expired,
                _ => RefreshError::Invalid,
            })?
            .claims;
        if claims.token_type != TokenType::Refresh {
            return Err(RefreshError::Invalid);
        }
        Ok(claims)
    }
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
pub fn generate_key_pem() -> Secret<String> {
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .expect("encode a fresh key");
    Secret::new(pem.to_string())
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn signing_the_same_spec_twice_gives_identical_tokens() {
        let keys = keys();
        let spec = spec(unix_now());

        assert_eq!(keys.sign(&spec).unwrap(), keys.sign(&spec).unwrap());
    }

    #[test]
    fn a_signed_refresh_token_verifies_with_its_claims() {
        let keys = keys();
        let spec = spec(unix_now());
        let pair = keys.sign(&spec).unwrap();

        let claims = keys.verify_refresh(&pair.refresh_token).unwrap();

        assert_eq!(
            (claims.sub, claims.sid, claims.generation, claims.jti),
            (spec.user_id, spec.session_id, 3, spec.refresh_jti)
        );
    }

    #[test]
    fn an_access_token_is_not_a_refresh_token() {
        let keys = keys();
        let pair = keys.sign(&spec(unix_now())).unwrap();

        assert_eq!(
            keys.verify_refresh(&pair.access_token),
            Err(RefreshError::Invalid)
        );
    }

    #[test]
    fn an_expired_refresh_token_is_reported_as_expired() {
        let keys = keys();
        let pair = keys.sign(&spec(unix_now() - 1000)).unwrap();

        assert_eq!(
            keys.verify_refresh(&pair.refresh_token),
            Err(RefreshError::Expired)
        );
    }

    #[test]
    fn a_token_of_another_key_is_invalid() {
        let pair = keys().sign(&spec(unix_now())).unwrap();

        assert_eq!(
            keys().verify_refresh(&pair.refresh_token),
            Err(RefreshError::Invalid)
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
