//! Access tokens signed with a fixed test key, so a service's tests can call it as
//! any user (or superuser) without running session-service. The key is a test
//! fixture, never used outside tests.

use base64::Engine;
use common::auth::{AccessClaims, PublicJwk, TokenType};
use ed25519_dalek::pkcs8::DecodePrivateKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use uuid::Uuid;

const SIGNING_KEY_PEM: &str = include_str!("../fixtures/test-signing-key.pem");
const OTHER_KEY_PEM: &str = include_str!("../fixtures/test-other-key.pem");

/// Mints tokens with one of the two fixture keys.
pub struct TestTokens {
    encoding: EncodingKey,
    jwk: PublicJwk,
    pub issuer: String,
    pub audience: String,
}

impl TestTokens {
    /// The key the services under test trust (put [`TestTokens::jwks_json`] in their
    /// `JWT_PUBLIC_KEYS_FILE`).
    pub fn new() -> Self {
        Self::from_pem(SIGNING_KEY_PEM)
    }

    /// A key nobody trusts, for "wrongly signed" cases.
    pub fn untrusted() -> Self {
        Self::from_pem(OTHER_KEY_PEM)
    }

    fn from_pem(pem: &str) -> Self {
        let signing = ed25519_dalek::SigningKey::from_pkcs8_pem(pem).expect("fixture key parses");
        let public = signing.verifying_key().to_bytes();
        let jwk = PublicJwk {
            kid: common::auth::key_id(&public),
            kty: "OKP".into(),
            alg: "EdDSA".into(),
            key_use: "sig".into(),
            crv: "Ed25519".into(),
            x: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public),
            y: None,
        };
        Self {
            encoding: EncodingKey::from_ed_pem(pem.as_bytes()).expect("fixture key parses"),
            jwk,
            issuer: common::auth::DEFAULT_ISSUER.into(),
            audience: common::auth::DEFAULT_AUDIENCE.into(),
        }
    }

    pub fn public_jwk(&self) -> PublicJwk {
        self.jwk.clone()
    }

    /// `{"keys": [<this key>]}`.
    pub fn jwks_json(&self) -> String {
        serde_json::json!({ "keys": [self.jwk] }).to_string()
    }

    /// Writes the JWKS to a fresh file and returns its path.
    pub fn jwks_file(&self) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("lge-jwks-{}.json", Uuid::new_v4().simple()));
        std::fs::write(&path, self.jwks_json()).expect("write JWKS file");
        path
    }

    /// Claims of a valid access token for `user_id`, expiring in 30 minutes.
    pub fn claims(&self, user_id: Uuid, is_superuser: bool) -> AccessClaims {
        let now = now();
        AccessClaims {
            sub: user_id,
            sid: Uuid::new_v4(),
            token_type: TokenType::Access,
            iat: now,
            exp: now + 1800,
            jti: Uuid::new_v4(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            is_superuser,
        }
    }

    /// A valid access token.
    pub fn access_token(&self, user_id: Uuid, is_superuser: bool) -> String {
        self.sign(&self.claims(user_id, is_superuser))
    }

    /// Signs any claims with this key (EdDSA, with its `kid`).
    pub fn sign(&self, claims: &impl serde::Serialize) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.jwk.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign test token")
    }
}

impl Default for TestTokens {
    fn default() -> Self {
        Self::new()
    }
}

/// Unix seconds now, by the system clock.
pub fn now() -> u64 {
    common::clock::Clock::unix_seconds(&common::clock::SystemClock)
}
