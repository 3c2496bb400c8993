//! Tokens: their claims, the one validation every binary holds them to, and local
//! verification with the public keys that session-service publishes (ARCHITECTURE.md,
//! "Tokens and sessions").
//!
//! [`TokenValidation`] is that one validation, for access and refresh tokens alike: it
//! pins the algorithm to the key's own (EdDSA or ES256, never HS* or `none`), the issuer,
//! the audience and the `type`, and judges `exp` against an injectable
//! [`Clock`](crate::clock::Clock) with a few seconds of leeway. [`AccessVerifier`] adds
//! the keys: they are looked up by `kid`; an unknown `kid` triggers a refetch of the key
//! set, at most once per [`REFETCH_INTERVAL`] after a successful one, so a rotated key is
//! picked up without letting garbage tokens hammer session-service. A fetch is shared by
//! every caller waiting for keys and runs in a task of its own, so a caller that goes
//! away cannot strand it; a failed fetch answers [`AuthError::KeysUnavailable`] (503),
//! never "invalid", and does not start the throttle.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, OnceLock, RwLock},
    time::Duration,
};

use futures::{
    FutureExt,
    future::{BoxFuture, Shared},
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

use crate::clock::{Clock, SystemClock};
use crate::sync::{MutexExt, RwLockExt};

/// Default `iss` of every token.
pub const DEFAULT_ISSUER: &str = "learn-greek-easy";
/// Default `aud` of every token.
pub const DEFAULT_AUDIENCE: &str = "learn-greek-easy-api";
/// Seconds of clock skew tolerated on `exp`.
pub const LEEWAY_SECONDS: u64 = 5;
/// Longest token accepted, in bytes; anything longer is refused unread.
pub const MAX_TOKEN_BYTES: usize = 8192;
/// Most verified tokens remembered per process (about 100 bytes each plus the token).
pub const VERIFIED_CACHE_CAPACITY: u64 = 50_000;
/// Longest a verified token is remembered, whatever its `exp` says.
pub const MAX_CACHED_LIFETIME: Duration = Duration::from_secs(3600);
/// Least time between a successful key-set fetch and the next one caused by an unknown `kid`.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// Longest a key-set fetch may take; the callers waiting for it then get
/// [`AuthError::KeysUnavailable`].
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// First pause of [`AccessVerifier::prefetch`] after a failed fetch (doubling up to
/// [`REFETCH_INTERVAL`]).
const PREFETCH_FIRST_RETRY: Duration = Duration::from_millis(500);

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

/// What [`TokenValidation`] reads from the claims of one kind of token.
pub trait Claims: DeserializeOwned {
    /// The `type` a token of these claims must have.
    const TYPE: TokenType;

    /// The `type` the token says it has.
    fn token_type(&self) -> TokenType;

    /// `exp`, unix seconds.
    fn expires_at(&self) -> u64;
}

impl Claims for AccessClaims {
    const TYPE: TokenType = TokenType::Access;

    fn token_type(&self) -> TokenType {
        self.token_type
    }

    fn expires_at(&self) -> u64 {
        self.exp
    }
}

/// The verified caller of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub is_superuser: bool,
    /// Unix seconds at which the token was issued (`iat`).
    pub issued_at: u64,
    /// Unix seconds at which the token expires.
    pub expires_at: u64,
}

/// Why a token was refused. The message is safe to show a caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
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
    /// The token's session or user has ended ([`crate::revocation`]).
    #[error("token revoked")]
    Revoked,
    /// Whether the token is revoked cannot be known now, and `REVOCATION_FALLBACK=refuse`.
    #[error("cannot check the token for revocation")]
    RevocationUnknown,
}

impl From<AuthError> for tonic::Status {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::KeysUnavailable | AuthError::RevocationUnknown => {
                tonic::Status::unavailable(error.to_string())
            }
            AuthError::Revoked => crate::status::refusal(
                tonic::Code::Unauthenticated,
                error.to_string(),
                crate::status::SESSION_DOMAIN,
                crate::status::reason::TOKEN_REVOKED,
                None,
            ),
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

/// Why a JWK cannot verify tokens.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    #[error("key {0:?} is not an EdDSA (Ed25519) or ES256 (P-256) key")]
    Unsupported(String),
    #[error("key {0:?}: {1}")]
    Malformed(String, String),
}

/// Whether `jwk` can verify tokens here: an Ed25519 or P-256 key of the matching `alg`.
/// A verifier ignores any other key of a key set; a service that publishes keys refuses
/// to start with one ([`JwkError`] says which and why).
pub fn check_jwk(jwk: &PublicJwk) -> Result<(), JwkError> {
    VerificationKey::from_jwk(jwk).map(drop)
}

/// The only signing algorithms this design allows: asymmetric ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyAlgorithm {
    EdDsa,
    Es256,
}

impl KeyAlgorithm {
    fn jwt(self) -> Algorithm {
        match self {
            Self::EdDsa => Algorithm::EdDSA,
            Self::Es256 => Algorithm::ES256,
        }
    }
}

/// A usable key: its pinned algorithm and the decoding key.
#[derive(Clone)]
struct VerificationKey {
    algorithm: KeyAlgorithm,
    key: DecodingKey,
}

impl VerificationKey {
    fn from_jwk(jwk: &PublicJwk) -> Result<Self, JwkError> {
        let malformed = |error: jsonwebtoken::errors::Error| {
            JwkError::Malformed(jwk.kid.clone(), error.to_string())
        };
        match (jwk.kty.as_str(), jwk.alg.as_str(), jwk.crv.as_str()) {
            ("OKP", "EdDSA", "Ed25519") => Ok(Self {
                algorithm: KeyAlgorithm::EdDsa,
                key: DecodingKey::from_ed_components(&jwk.x).map_err(malformed)?,
            }),
            ("EC", "ES256", "P-256") => {
                let y = jwk.y.as_deref().ok_or_else(|| {
                    JwkError::Malformed(jwk.kid.clone(), "an EC key needs `y`".into())
                })?;
                Ok(Self {
                    algorithm: KeyAlgorithm::Es256,
                    key: DecodingKey::from_ec_components(&jwk.x, y).map_err(malformed)?,
                })
            }
            _ => Err(JwkError::Unsupported(jwk.kid.clone())),
        }
    }
}

/// The rules every token of this deployment is held to: the one validation of the
/// gateway, deck-service and session-service, for access and refresh tokens alike.
///
/// - the header's `alg` must be the verifying key's own, EdDSA or ES256: this is what
///   stops `none`, and HS256 tokens "signed" with the public key as a secret;
/// - the signature, `iss`, `aud`, and the presence of `exp`, `iss`, `aud` and `sub`
///   (`iat` too: the claim types require it), checked by jsonwebtoken with a
///   [`Validation`] built once per algorithm;
/// - `exp` against the injected [`Clock`], with [`LEEWAY_SECONDS`] of skew, since
///   jsonwebtoken would read the system clock (its own time checks are off). A token
///   whose issuer or audience is wrong is invalid, expired or not;
/// - the `type` claim: [`Claims::TYPE`] of the claims asked for.
#[derive(Clone)]
pub struct TokenValidation {
    issuer: String,
    audience: String,
    clock: Arc<dyn Clock>,
    eddsa: Validation,
    es256: Validation,
}

impl std::fmt::Debug for TokenValidation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenValidation")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl TokenValidation {
    /// Tokens of `issuer` for `audience`, timed by `clock`.
    pub fn new(issuer: &str, audience: &str, clock: Arc<dyn Clock>) -> Self {
        let rules = |algorithm: KeyAlgorithm| {
            let mut validation = Validation::new(algorithm.jwt());
            validation.set_issuer(&[issuer]);
            validation.set_audience(&[audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            // Time is judged against `clock` in `validate`, not the system clock.
            validation.validate_exp = false;
            validation.validate_nbf = false;
            validation
        };
        Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            clock,
            eddsa: rules(KeyAlgorithm::EdDsa),
            es256: rules(KeyAlgorithm::Es256),
        }
    }

    /// Tokens of `issuer` for `audience`, timed by the system clock.
    pub fn system(issuer: &str, audience: &str) -> Self {
        Self::new(issuer, audience, Arc::new(SystemClock))
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The clock this validation judges time by.
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }

    /// Unix seconds now, by this validation's clock.
    pub fn now(&self) -> u64 {
        self.clock.unix_seconds()
    }

    /// Whether a token expiring at `expires_at` is still accepted at `now` (unix
    /// seconds): until its `exp` plus the leeway, inclusive.
    pub fn is_live(expires_at: u64, now: u64) -> bool {
        now <= expires_at.saturating_add(LEEWAY_SECONDS)
    }

    /// The claims of `token`, whose header names `alg`, checked against `key` and every
    /// rule above.
    fn validate<C: Claims>(
        &self,
        token: &str,
        alg: Algorithm,
        key: &VerificationKey,
    ) -> Result<C, AuthError> {
        if alg != key.algorithm.jwt() {
            return Err(AuthError::Invalid);
        }
        let rules = match key.algorithm {
            KeyAlgorithm::EdDsa => &self.eddsa,
            KeyAlgorithm::Es256 => &self.es256,
        };
        let claims = jsonwebtoken::decode::<C>(token, &key.key, rules)
            .map_err(|_| AuthError::Invalid)?
            .claims;
        if !Self::is_live(claims.expires_at(), self.now()) {
            return Err(AuthError::Expired);
        }
        if claims.token_type() != C::TYPE {
            return Err(AuthError::Invalid);
        }
        Ok(claims)
    }
}

/// Where the verifier gets its key set from.
pub type KeyFetcher = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<Vec<PublicJwk>, String>> + Send>> + Send + Sync,
>;

/// Verifies access tokens locally against a cached key set.
///
/// A key-set fetch runs in a task of its own and is shared by every caller that needs
/// it (STYLE.md rule 17): a caller that gives up does not cancel it, and callers that
/// arrive while it runs wait for it instead of being refused. Fetching needs a Tokio
/// runtime.
#[derive(Clone)]
pub struct AccessVerifier {
    inner: Arc<VerifierInner>,
}

/// A verified token's caller, and the `kid` of the key that signed it: the entry is
/// dropped when that key leaves the key set.
#[derive(Clone)]
struct Verified {
    caller: Caller,
    kid: Arc<str>,
}

/// One key-set fetch as every waiter sees it; the work itself runs in a spawned task.
type SharedFetch = Shared<BoxFuture<'static, Result<(), AuthError>>>;

#[derive(Default)]
struct FetchState {
    /// The fetch under way: whoever needs keys meanwhile waits for this one.
    in_flight: Option<SharedFetch>,
    /// When a fetch last succeeded. Only a success starts the [`REFETCH_INTERVAL`]
    /// throttle: after a failure the next caller tries again.
    succeeded_at: Option<tokio::time::Instant>,
}

struct VerifierInner {
    /// Tokens already verified, with their callers: a client sends the same access token
    /// on every request for 30 minutes, and an Ed25519 check costs far more than a lookup.
    /// Keyed by the whole token, so only the very bytes once verified can hit. A
    /// concurrent cache, so lookups from every worker thread do not queue on one lock.
    verified: moka::sync::Cache<Box<str>, Verified>,
    keys: RwLock<HashMap<Arc<str>, VerificationKey>>,
    fetcher: Option<KeyFetcher>,
    fetch: Mutex<FetchState>,
    validation: TokenValidation,
    /// The revoked set every verified token is checked against, cached ones too; set
    /// once at start by [`AccessVerifier::check_revocations`].
    revocations: OnceLock<crate::revocation::Revocations>,
}

/// Forgets a verified token when it expires (plus the leeway) by the validation's
/// clock, and at the latest [`MAX_CACHED_LIFETIME`] after it was verified. (The cache
/// itself runs on the system's monotonic time; [`AccessVerifier::cached`] checks the
/// expiry against the clock again, so a moved clock is obeyed at once.)
struct UntilTokenExpiry(Arc<dyn Clock>);

impl moka::Expiry<Box<str>, Verified> for UntilTokenExpiry {
    fn expire_after_create(
        &self,
        _token: &Box<str>,
        verified: &Verified,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        let left = verified
            .caller
            .expires_at
            .saturating_add(LEEWAY_SECONDS)
            .saturating_sub(self.0.unix_seconds());
        Some(Duration::from_secs(left).min(MAX_CACHED_LIFETIME))
    }
}

impl std::fmt::Debug for AccessVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessVerifier")
            .field("validation", &self.inner.validation)
            .finish_non_exhaustive()
    }
}

impl AccessVerifier {
    /// A verifier with a fixed key set (no refetching), on the system clock.
    pub fn with_keys(keys: Vec<PublicJwk>, issuer: &str, audience: &str) -> Self {
        Self::with_validation(keys, TokenValidation::system(issuer, audience))
    }

    /// A verifier with a fixed key set (no refetching) that holds tokens to `validation`
    /// (its clock among them). Keys that cannot verify tokens are left out
    /// ([`check_jwk`]).
    pub fn with_validation(keys: Vec<PublicJwk>, validation: TokenValidation) -> Self {
        let verifier = Self::build(None, validation);
        verifier.inner.replace_keys(keys);
        verifier
    }

    /// A verifier that fetches its key set with `fetcher` on first use and on an
    /// unknown `kid` (throttled). Call [`AccessVerifier::prefetch`] to fetch at once.
    pub fn with_fetcher(fetcher: KeyFetcher, issuer: &str, audience: &str) -> Self {
        Self::build(Some(fetcher), TokenValidation::system(issuer, audience))
    }

    /// A verifier whose keys come from session-service's `GetPublicKeys` at `channel`.
    /// Inside a Tokio runtime it starts fetching them at once ([`AccessVerifier::prefetch`]).
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
        let verifier = Self::with_fetcher(fetcher, issuer, audience);
        if tokio::runtime::Handle::try_current().is_ok() {
            verifier.prefetch();
        }
        verifier
    }

    fn build(fetcher: Option<KeyFetcher>, validation: TokenValidation) -> Self {
        let verified = moka::sync::Cache::builder()
            .max_capacity(VERIFIED_CACHE_CAPACITY)
            .expire_after(UntilTokenExpiry(Arc::clone(&validation.clock)))
            .build();
        Self {
            inner: Arc::new(VerifierInner {
                verified,
                keys: RwLock::new(HashMap::new()),
                fetcher,
                fetch: Mutex::new(FetchState::default()),
                validation,
                revocations: OnceLock::new(),
            }),
        }
    }

    /// The validation this verifier holds tokens to.
    pub fn validation(&self) -> &TokenValidation {
        &self.inner.validation
    }

    /// Starts fetching the key set in the background, retrying with backoff until a
    /// fetch succeeds, so the first requests rarely wait for keys. Requests that do
    /// arrive first wait for the same fetch. Stops when the verifier is dropped; does
    /// nothing without a fetcher. Must be called within a Tokio runtime.
    pub fn prefetch(&self) {
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut retry = PREFETCH_FIRST_RETRY;
            loop {
                // Only a weak handle between attempts, so this task never keeps a
                // dropped verifier alive.
                let Some(fetch) = inner.upgrade().and_then(|inner| inner.current_fetch()) else {
                    return;
                };
                if fetch.await.is_ok() {
                    return;
                }
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(REFETCH_INTERVAL);
            }
        });
    }

    /// From now on, checks every verified access token against `revocations` (only the
    /// first call counts): a revoked token is [`AuthError::Revoked`], cached or not.
    pub fn check_revocations(&self, revocations: crate::revocation::Revocations) {
        let _ = self.inner.revocations.set(revocations);
    }

    /// Verifies `token` as an access token. A token verified before is answered from the
    /// cache until it expires (plus the leeway), or until its signing key is withdrawn
    /// from the key set, without checking its signature again. Either way it is then
    /// checked against the revoked set, if one is installed.
    pub async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let caller = match self.cached(token, self.inner.validation.now()) {
            Some(caller) => caller,
            None => {
                let (claims, kid) = self.verify_claims::<AccessClaims>(token).await?;
                let caller = Caller {
                    user_id: claims.sub,
                    session_id: claims.sid,
                    is_superuser: claims.is_superuser,
                    issued_at: claims.iat,
                    expires_at: claims.exp,
                };
                self.remember(token, Verified { caller, kid });
                caller
            }
        };
        if let Some(revocations) = self.inner.revocations.get() {
            revocations.check(&caller).await?;
        }
        Ok(caller)
    }

    /// Verifies `token` as a token of the claims `C` (a refresh token, say) with the same
    /// keys and the same [`TokenValidation`], every time: nothing is remembered.
    pub async fn verify_token<C: Claims>(&self, token: &str) -> Result<C, AuthError> {
        Ok(self.verify_claims::<C>(token).await?.0)
    }

    fn cached(&self, token: &str, now: u64) -> Option<Caller> {
        self.inner
            .verified
            .get(token)
            .map(|verified| verified.caller)
            .filter(|caller| TokenValidation::is_live(caller.expires_at, now))
    }

    fn remember(&self, token: &str, verified: Verified) {
        let kid = Arc::clone(&verified.kid);
        self.inner.verified.insert(token.into(), verified);
        // A refetch that withdrew this key while the token was being checked may have
        // swept the cache just before the insert: look again, now that the entry is in.
        if self.inner.key(&kid).is_none() {
            self.inner.verified.invalidate(token);
        }
    }

    /// The claims of `token`, and the `kid` of the key that verified it.
    async fn verify_claims<C: Claims>(&self, token: &str) -> Result<(C, Arc<str>), AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Invalid);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        let kid = header.kid.ok_or(AuthError::Invalid)?;
        let (kid, key) = match self.inner.key(&kid) {
            Some(found) => found,
            None => {
                if let Some(fetch) = self.inner.current_fetch() {
                    // Without a key set the token cannot be judged: "unavailable" (503),
                    // never "invalid", for what may be a valid token.
                    fetch.await?;
                }
                self.inner.key(&kid).ok_or(AuthError::Invalid)?
            }
        };
        let claims = self
            .inner
            .validation
            .validate::<C>(token, header.alg, &key)?;
        Ok((claims, kid))
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

impl VerifierInner {
    fn key(&self, kid: &str) -> Option<(Arc<str>, VerificationKey)> {
        self.keys
            .read_unpoisoned()
            .get_key_value(kid)
            .map(|(kid, key)| (Arc::clone(kid), key.clone()))
    }

    /// Installs a fetched key set; remembered tokens signed by a key that is no longer
    /// in it are forgotten, so they are checked (and refused) again.
    fn replace_keys(&self, keys: Vec<PublicJwk>) {
        let usable: HashMap<Arc<str>, VerificationKey> = keys
            .iter()
            .filter_map(|jwk| {
                VerificationKey::from_jwk(jwk)
                    .ok()
                    .map(|key| (Arc::from(jwk.kid.as_str()), key))
            })
            .collect();
        let withdrawn = {
            let mut current = self.keys.write_unpoisoned();
            let withdrawn = current.keys().any(|kid| !usable.contains_key(kid));
            *current = usable;
            withdrawn
        };
        if withdrawn {
            let keys = self.keys.read_unpoisoned();
            for (token, verified) in &self.verified {
                if !keys.contains_key(&verified.kid) {
                    self.verified.invalidate(token.as_ref());
                }
            }
        }
    }

    /// The key-set fetch a caller missing a key should wait for: the one under way, or
    /// a new one. `None` when there is no fetcher, or while the throttle after a
    /// successful fetch holds (the key set is fresh: an unknown `kid` is not in it).
    fn current_fetch(self: &Arc<Self>) -> Option<SharedFetch> {
        let fetcher = Arc::clone(self.fetcher.as_ref()?);
        let mut state = self.fetch.lock_unpoisoned();
        if let Some(fetch) = &state.in_flight {
            return Some(fetch.clone());
        }
        if state
            .succeeded_at
            .is_some_and(|at| at.elapsed() < REFETCH_INTERVAL)
        {
            return None;
        }
        let task = tokio::spawn(Arc::clone(self).run_fetch(fetcher));
        let fetch = async move { task.await.unwrap_or(Err(AuthError::KeysUnavailable)) }
            .boxed()
            .shared();
        state.in_flight = Some(fetch.clone());
        Some(fetch)
    }

    /// One fetch, in its own task: installs the keys and settles the fetch state.
    async fn run_fetch(self: Arc<Self>, fetcher: KeyFetcher) -> Result<(), AuthError> {
        // Settles the state however the task ends (even by a panicking fetcher), so no
        // caller ever waits on a fetch that nobody runs.
        let mut settle = SettleFetch {
            state: &self.fetch,
            succeeded: false,
        };
        match tokio::time::timeout(FETCH_TIMEOUT, fetcher()).await {
            Ok(Ok(keys)) => {
                self.replace_keys(keys);
                settle.succeeded = true;
                Ok(())
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot fetch the token verification keys");
                Err(AuthError::KeysUnavailable)
            }
            Err(_) => {
                tracing::warn!(timeout = ?FETCH_TIMEOUT, "no token verification keys in time");
                Err(AuthError::KeysUnavailable)
            }
        }
    }
}

/// Ends a fetch when dropped: clears `in_flight`, and on success starts the throttle.
struct SettleFetch<'a> {
    state: &'a Mutex<FetchState>,
    succeeded: bool,
}

impl Drop for SettleFetch<'_> {
    fn drop(&mut self) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.in_flight = None;
        if self.succeeded {
            state.succeeded_at = Some(tokio::time::Instant::now());
        }
    }
}

/// The token of an `Authorization` value `Bearer <token>` (scheme case-insensitive).
pub fn bearer_token(value: &str) -> Result<&str, AuthError> {
    let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::Malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.len() > MAX_TOKEN_BYTES {
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

    fn verified(expires_at: u64) -> Verified {
        Verified {
            caller: Caller {
                user_id: Uuid::new_v4(),
                session_id: Uuid::new_v4(),
                is_superuser: false,
                issued_at: expires_at.saturating_sub(1800),
                expires_at,
            },
            kid: "k".into(),
        }
    }

    /// A fixed verifier that knows the key `k` (an Ed25519 key of all zeros).
    fn verifier_with_key_k() -> AccessVerifier {
        let jwk = PublicJwk {
            kid: "k".into(),
            kty: "OKP".into(),
            alg: "EdDSA".into(),
            key_use: "sig".into(),
            crv: "Ed25519".into(),
            x: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            y: None,
        };
        AccessVerifier::with_keys(vec![jwk], DEFAULT_ISSUER, DEFAULT_AUDIENCE)
    }

    fn now() -> u64 {
        SystemClock.unix_seconds()
    }

    #[test]
    fn a_cached_token_is_answered_only_until_its_expiry_and_leeway() {
        let verifier = verifier_with_key_k();
        let entry = verified(now() + 100);
        let caller = entry.caller;
        let expiry = caller.expires_at;
        verifier.remember("token", entry);

        assert_eq!(verifier.cached("token", expiry - 100), Some(caller));
        assert_eq!(
            verifier.cached("token", expiry + LEEWAY_SECONDS),
            Some(caller)
        );
        assert_eq!(verifier.cached("token", expiry + 1 + LEEWAY_SECONDS), None);
        assert_eq!(verifier.cached("other token", expiry - 100), None);
    }

    #[test]
    fn a_token_whose_key_is_unknown_is_not_remembered() {
        let verifier = AccessVerifier::with_keys(Vec::new(), DEFAULT_ISSUER, DEFAULT_AUDIENCE);
        let entry = verified(now() + 100);

        verifier.remember("token", entry);

        assert_eq!(verifier.cached("token", now()), None);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let verifier = verifier_with_key_k();
        for index in 0..=VERIFIED_CACHE_CAPACITY + 1000 {
            verifier.remember(&index.to_string(), verified(u64::MAX - LEEWAY_SECONDS));
        }
        verifier.inner.verified.run_pending_tasks();

        assert!(verifier.inner.verified.entry_count() <= VERIFIED_CACHE_CAPACITY);
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
        assert_eq!(check_jwk(&hs), Err(JwkError::Unsupported("k".into())));
        let ec_without_y = PublicJwk {
            kty: "EC".into(),
            alg: "ES256".into(),
            crv: "P-256".into(),
            ..hs
        };
        assert!(matches!(
            check_jwk(&ec_without_y),
            Err(JwkError::Malformed(..))
        ));
    }
}
