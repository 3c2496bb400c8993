//! Access tokens: their claims, and local verification with the public keys that
//! session-service publishes (ARCHITECTURE.md, "Tokens and sessions").
//!
//! Verification pins the algorithm to the key's own (EdDSA or ES256, never HS* or
//! `none`), the issuer, the audience and `type: "access"`, with a few seconds of
//! leeway. Keys are looked up by `kid`; an unknown `kid` triggers a refetch of the key
//! set, at most once per [`REFETCH_INTERVAL`], so a rotated key is picked up without
//! letting garbage tokens hammer session-service.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Default `iss` of every token.
pub const DEFAULT_ISSUER: &str = "learn-greek-easy";
/// Default `aud` of every token.
pub const DEFAULT_AUDIENCE: &str = "learn-greek-easy-api";
/// Seconds of clock skew tolerated on `exp`, `iat` and `nbf`.
pub const LEEWAY_SECONDS: u64 = 5;
/// Most verified tokens remembered per process (about 100 bytes each plus the token).
pub const VERIFIED_CACHE_CAPACITY: usize = 50_000;
/// Least time between two key-set fetches caused by unknown `kid`s.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// What kind of token a JWT is (`type` claim).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    Access,
    Refresh,
}

/// The claims of an access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user's id.
    pub sub: Uuid,
    /// The session's id.
    pub sid: Uuid,
    #[serde(rename = "type")]
    pub token_type: TokenType,
    pub iat: u64,
    pub exp: u64,
    pub jti: Uuid,
    pub iss: String,
    pub aud: String,
    /// The superuser role.
    #[serde(default)]
    pub is_superuser: bool,
}

/// The verified caller of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub is_superuser: bool,
    /// Unix seconds at which the token expires.
    pub expires_at: u64,
}

/// Why a token was refused. The message is safe to show a caller.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("malformed authorization header")]
    Malformed,
    #[error("token expired")]
    Expired,
    #[error("invalid token")]
    Invalid,
    #[error("verification keys unavailable")]
    KeysUnavailable,
}

impl From<AuthError> for tonic::Status {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::KeysUnavailable => tonic::Status::unavailable(error.to_string()),
            _ => tonic::Status::unauthenticated(error.to_string()),
        }
    }
}

/// One public verification key in JWKS form (the fields of `learngreek.session.v1.Jwk`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicJwk {
    pub kid: String,
    pub kty: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub key_use: String,
    pub crv: String,
    pub x: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
}

impl From<proto::session::v1::Jwk> for PublicJwk {
    fn from(jwk: proto::session::v1::Jwk) -> Self {
        Self {
            kid: jwk.kid,
            kty: jwk.kty,
            alg: jwk.alg,
            key_use: jwk.r#use,
            crv: jwk.crv,
            x: jwk.x,
            y: jwk.y,
        }
    }
}

impl From<PublicJwk> for proto::session::v1::Jwk {
    fn from(jwk: PublicJwk) -> Self {
        Self {
            kid: jwk.kid,
            kty: jwk.kty,
            alg: jwk.alg,
            r#use: jwk.key_use,
            crv: jwk.crv,
            x: jwk.x,
            y: jwk.y,
        }
    }
}

/// A usable key: its pinned algorithm and the decoding key.
#[derive(Clone)]
struct VerificationKey {
    algorithm: Algorithm,
    key: DecodingKey,
}

impl VerificationKey {
    /// Only the asymmetric algorithms this design allows are accepted.
    fn from_jwk(jwk: &PublicJwk) -> Option<Self> {
        match (jwk.kty.as_str(), jwk.alg.as_str(), jwk.crv.as_str()) {
            ("OKP", "EdDSA", "Ed25519") => {
                DecodingKey::from_ed_components(&jwk.x)
                    .ok()
                    .map(|key| Self {
                        algorithm: Algorithm::EdDSA,
                        key,
                    })
            }
            ("EC", "ES256", "P-256") => DecodingKey::from_ec_components(&jwk.x, jwk.y.as_deref()?)
                .ok()
                .map(|key| Self {
                    algorithm: Algorithm::ES256,
                    key,
                }),
            _ => None,
        }
    }
}

/// Where the verifier gets its key set from.
pub type KeyFetcher = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<Vec<PublicJwk>, String>> + Send>> + Send + Sync,
>;

/// Verifies access tokens locally against a cached key set.
#[derive(Clone)]
pub struct AccessVerifier {
    inner: Arc<VerifierInner>,
}

struct VerifierInner {
    /// Tokens already verified, with their callers: a client sends the same access token
    /// on every request for 30 minutes, and an Ed25519 check costs far more than a lookup.
    /// Keyed by the whole token, so only the very bytes once verified can hit.
    verified: RwLock<HashMap<Box<str>, Caller>>,
    keys: RwLock<HashMap<String, VerificationKey>>,
    fetcher: Option<KeyFetcher>,
    last_fetch: Mutex<Option<Instant>>,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for AccessVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessVerifier")
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .finish_non_exhaustive()
    }
}

impl AccessVerifier {
    /// A verifier with a fixed key set (no refetching).
    pub fn with_keys(keys: Vec<PublicJwk>, issuer: &str, audience: &str) -> Self {
        let verifier = Self::build(None, issuer, audience);
        verifier.replace_keys(keys);
        verifier
    }

    /// A verifier that fetches its key set with `fetcher` on first use and on an
    /// unknown `kid` (throttled).
    pub fn with_fetcher(fetcher: KeyFetcher, issuer: &str, audience: &str) -> Self {
        Self::build(Some(fetcher), issuer, audience)
    }

    /// A verifier whose keys come from session-service's `GetPublicKeys` at `channel`.
    pub fn from_session_service(
        channel: crate::balance::BalancedChannel,
        issuer: &str,
        audience: &str,
    ) -> Self {
        let fetcher: KeyFetcher = Arc::new(move || {
            let mut client = proto::session::v1::session_service_client::SessionServiceClient::new(
                channel.clone(),
            );
            Box::pin(async move {
                let mut request = tonic::Request::new(proto::session::v1::GetPublicKeysRequest {});
                request.set_timeout(Duration::from_secs(2));
                let keys = client
                    .get_public_keys(request)
                    .await
                    .map_err(|status| status.to_string())?;
                Ok(keys
                    .into_inner()
                    .keys
                    .into_iter()
                    .map(PublicJwk::from)
                    .collect())
            })
        });
        Self::with_fetcher(fetcher, issuer, audience)
    }

    fn build(fetcher: Option<KeyFetcher>, issuer: &str, audience: &str) -> Self {
        Self {
            inner: Arc::new(VerifierInner {
                verified: RwLock::new(HashMap::new()),
                keys: RwLock::new(HashMap::new()),
                fetcher,
                last_fetch: Mutex::new(None),
                issuer: issuer.to_owned(),
                audience: audience.to_owned(),
            }),
        }
    }

    fn replace_keys(&self, keys: Vec<PublicJwk>) {
        let usable: HashMap<_, _> = keys
            .iter()
            .filter_map(|jwk| VerificationKey::from_jwk(jwk).map(|key| (jwk.kid.clone(), key)))
            .collect();
        *self.inner.keys.write().expect("key lock poisoned") = usable;
    }

    fn key(&self, kid: &str) -> Option<VerificationKey> {
        self.inner
            .keys
            .read()
            .expect("key lock poisoned")
            .get(kid)
            .cloned()
    }

    /// Fetches the key set unless one was fetched within [`REFETCH_INTERVAL`]
    /// (the first fetch is never throttled).
    async fn refetch(&self) -> Result<(), AuthError> {
        let Some(fetcher) = &self.inner.fetcher else {
            return Ok(());
        };
        {
            let mut last = self.inner.last_fetch.lock().expect("fetch lock poisoned");
            if last.is_some_and(|at| at.elapsed() < REFETCH_INTERVAL) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        match fetcher().await {
            Ok(keys) => {
                self.replace_keys(keys);
                Ok(())
            }
            Err(error) => {
                tracing::warn!(%error, "cannot fetch the token verification keys");
                // Allow an early retry: the failure was not the key set's answer.
                *self.inner.last_fetch.lock().expect("fetch lock poisoned") = None;
                Err(AuthError::KeysUnavailable)
            }
        }
    }

    /// Verifies `token` as an access token. A token verified before is answered from the
    /// cache until it expires (plus the leeway), without checking its signature again.
    pub async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let now = unix_seconds();
        if let Some(caller) = self.cached(token, now) {
            return Ok(caller);
        }
        let caller = self.verify_uncached(token).await?;
        self.remember(token, caller);
        Ok(caller)
    }

    fn cached(&self, token: &str, now: u64) -> Option<Caller> {
        let verified = self.inner.verified.read().expect("cache lock poisoned");
        verified
            .get(token)
            .filter(|caller| now <= caller.expires_at.saturating_add(LEEWAY_SECONDS))
            .copied()
    }

    fn remember(&self, token: &str, caller: Caller) {
        let mut verified = self.inner.verified.write().expect("cache lock poisoned");
        if verified.len() >= VERIFIED_CACHE_CAPACITY {
            // Dropping everything is crude but bounded and rare: expired entries go with
            // the rest, and live tokens are verified once more on their next use.
            verified.clear();
        }
        verified.insert(token.into(), caller);
    }

    async fn verify_uncached(&self, token: &str) -> Result<Caller, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        let kid = header.kid.ok_or(AuthError::Invalid)?;
        let key = match self.key(&kid) {
            Some(key) => key,
            None => {
                let never_fetched = self
                    .inner
                    .keys
                    .read()
                    .expect("key lock poisoned")
                    .is_empty();
                match self.refetch().await {
                    Err(error) if never_fetched => return Err(error),
                    _ => self.key(&kid).ok_or(AuthError::Invalid)?,
                }
            }
        };
        // The header's `alg` must be the key's own: this is what stops `none`, and HS256
        // tokens "signed" with the public key.
        if header.alg != key.algorithm {
            return Err(AuthError::Invalid);
        }
        let mut validation = Validation::new(key.algorithm);
        validation.set_issuer(&[&self.inner.issuer]);
        validation.set_audience(&[&self.inner.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECONDS;
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &key.key, &validation)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid,
            })?
            .claims;
        if claims.token_type != TokenType::Access {
            return Err(AuthError::Invalid);
        }
        Ok(Caller {
            user_id: claims.sub,
            session_id: claims.sid,
            is_superuser: claims.is_superuser,
            expires_at: claims.exp,
        })
    }

    /// Verifies the `authorization: Bearer <token>` entry of gRPC metadata.
    pub async fn verify_metadata(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Caller, AuthError> {
        let value = metadata.get("authorization").ok_or(AuthError::Missing)?;
        let token = bearer_token(value.to_str().map_err(|_| AuthError::Malformed)?)?;
        self.verify(token).await
    }
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// The token of an `Authorization` value `Bearer <token>` (scheme case-insensitive).
pub fn bearer_token(value: &str) -> Result<&str, AuthError> {
    let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::Malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.len() > 8192 {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

/// The `kid` of an Ed25519 public key: the first 16 hex digits of SHA-256 of its raw bytes,
/// so every process derives the same id from the same key.
pub fn key_id(public_key: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(public_key);
    digest
        .iter()
        .take(8)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_accepts_only_the_bearer_scheme() {
        assert_eq!(bearer_token("Bearer abc"), Ok("abc"));
        assert_eq!(bearer_token("bearer abc"), Ok("abc"));
        assert_eq!(bearer_token("Basic abc"), Err(AuthError::Malformed));
        assert_eq!(bearer_token("Bearer "), Err(AuthError::Malformed));
        assert_eq!(bearer_token("abc"), Err(AuthError::Malformed));
    }

    #[test]
    fn a_cached_token_is_answered_only_until_its_expiry_and_leeway() {
        let verifier = AccessVerifier::with_keys(Vec::new(), DEFAULT_ISSUER, DEFAULT_AUDIENCE);
        let caller = Caller {
            user_id: Uuid::new_v4(),
            session_id: Uuid::new_v4(),
            is_superuser: false,
            expires_at: 1_000,
        };
        verifier.remember("token", caller);

        assert_eq!(verifier.cached("token", 900), Some(caller));
        assert_eq!(
            verifier.cached("token", 1_000 + LEEWAY_SECONDS),
            Some(caller)
        );
        assert_eq!(verifier.cached("token", 1_001 + LEEWAY_SECONDS), None);
        assert_eq!(verifier.cached("other token", 900), None);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let verifier = AccessVerifier::with_keys(Vec::new(), DEFAULT_ISSUER, DEFAULT_AUDIENCE);
        let caller = Caller {
            user_id: Uuid::new_v4(),
            session_id: Uuid::new_v4(),
            is_superuser: false,
            expires_at: u64::MAX - LEEWAY_SECONDS,
        };
        for index in 0..=VERIFIED_CACHE_CAPACITY {
            verifier.remember(&index.to_string(), caller);
        }

        assert!(verifier.inner.verified.read().unwrap().len() <= VERIFIED_CACHE_CAPACITY);
    }

    #[test]
    fn jwks_with_symmetric_or_unknown_keys_are_ignored() {
        let hs = PublicJwk {
            kid: "k".into(),
            kty: "oct".into(),
            alg: "HS256".into(),
            key_use: "sig".into(),
            crv: String::new(),
            x: "c2VjcmV0".into(),
            y: None,
        };
        assert!(VerificationKey::from_jwk(&hs).is_none());
    }
}
