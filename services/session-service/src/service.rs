//! The use cases of session-service, independent of gRPC: register, login, refresh,
//! logout, sessions and profile. [`crate::grpc`] only translates to and from protobuf.

use std::{sync::Arc, time::Duration};

use common::{
    auth::{AccessVerifier, Caller},
    clock::{self, Clock},
    revocation::{Publisher, Revoked},
};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    domain::{ClientInfo, Credentials, ProfileUpdate, Registration},
    error::{Error, RefreshError},
    metrics::SessionMetrics,
    password::{Hasher, Verified},
    store::{
        login_throttle::{Admission, LoginThrottle},
        sessions::{Rotation, SessionInfo, Sessions},
        users::{self, ProfileRow},
    },
    tokens::{self, PairSpec, TokenKeys, TokenPair},
};

/// Token lifetimes.
#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    pub access: Duration,
    pub refresh: Duration,
}

/// Everything the use cases need; cheap to clone.
#[derive(Clone)]
pub struct SessionApp {
    pub pg: PgPool,
    pub sessions: Sessions,
    pub login_throttle: LoginThrottle,
    /// Signs the tokens.
    pub keys: Arc<TokenKeys>,
    /// Verifies both kinds of token this service issues, by [`SessionApp::clock`].
    pub verifier: AccessVerifier,
    /// "Now" for everything decided by time: token `iat`/`exp`, session times and
    /// expiry, the grace window, login locks.
    pub clock: Arc<dyn Clock>,
    pub hasher: Hasher,
    pub lifetimes: Lifetimes,
    pub metrics: Arc<SessionMetrics>,
    /// Records and publishes every ended session, so access tokens end with it.
    pub revocations: Publisher,
}

impl std::fmt::Debug for SessionApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionApp")
            .field("keys", &self.keys)
            .field("lifetimes", &self.lifetimes)
            .finish_non_exhaustive()
    }
}

impl SessionApp {
    fn now_ms(&self) -> u64 {
        self.clock.unix_millis()
    }

    /// Creates an account with default settings and its first session.
    #[tracing::instrument(skip_all)]
    pub async fn register(&self, registration: Registration) -> Result<TokenPair, Error> {
        let Registration {
            email,
            password,
            full_name,
            client,
        } = registration;
        let hash = self.hasher.hash(password).await?;
        let user_id = users::create(&self.pg, &email, &hash, &full_name).await?;
        tracing::info!(%user_id, "user registered");
        self.start_session(user_id, false, &client).await
    }

    /// Starts a session for an active user with the right password. Unknown e-mail, wrong
    /// password and inactive user give the same error after the same hashing work, and
    /// count alike against the e-mail address's login throttle.
    #[tracing::instrument(skip_all)]
    pub async fn login(&self, credentials: Credentials) -> Result<TokenPair, Error> {
        let result = self.check_password_and_start(credentials).await;
        match &result {
            Ok(_) => SessionMetrics::inc(&self.metrics.logins),
            Err(Error::InvalidCredentials) => SessionMetrics::inc(&self.metrics.login_failures),
            Err(Error::LoginThrottled { .. }) => SessionMetrics::inc(&self.metrics.login_throttled),
            Err(Error::SessionStore(_)) => SessionMetrics::inc(&self.metrics.store_unavailable),
            Err(_) => {}
        }
        result
    }

    async fn check_password_and_start(&self, credentials: Credentials) -> Result<TokenPair, Error> {
        let Credentials {
            email,
            password,
            client,
        } = credentials;
        // A place in the hashing queue first: a full queue answers at once, before the
        // attempt counts against the address.
        let slot = self.hasher.reserve()?;
        // The throttle is keyed by the e-mail address alone, so the same address from any
        // client address is one budget, and a locked address is refused before its
        // account is looked up or any password checked (no oracle, no CPU). Without the
        // sessions Redis no login could start a session anyway: its errors refuse the
        // attempt (fail closed).
        let admission = self.login_throttle.admit(&email, self.now_ms()).await?;
        if let Admission::Locked(retry_after) = admission {
            return Err(Error::LoginThrottled { retry_after });
        }
        let user = users::credentials(&self.pg, &email).await?;
        let stored = user.as_ref().map(|user| user.password_hash.clone());
        let verified = slot.verify(password.clone(), stored).await?;
        let Some(user) = user else {
            return Err(Error::InvalidCredentials);
        };
        if verified == Verified::No || !user.is_active {
            return Err(Error::InvalidCredentials);
        }
        // The right password: the address's earlier failures were its owner's typos.
        self.login_throttle.forgive(&email).await?;
        if verified == Verified::YesRehash {
            // A failed upgrade must not fail the login: the old hash still verifies.
            match self.hasher.hash(password).await {
                Ok(new) => {
                    match users::upgrade_password_hash(&self.pg, user.id, &user.password_hash, &new)
                        .await
                    {
                        Ok(_) => {
                            SessionMetrics::inc(&self.metrics.password_hash_upgrades);
                            tracing::info!(user_id = %user.id, "password hash upgraded to argon2id")
                        }
                        Err(error) => {
                            tracing::warn!(user_id = %user.id, %error, "cannot upgrade a password hash")
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(user_id = %user.id, %error, "cannot upgrade a password hash")
                }
            }
        }
        self.start_session(user.id, user.is_superuser, &client)
            .await
    }

    async fn start_session(
        &self,
        user_id: Uuid,
        is_superuser: bool,
        client: &ClientInfo,
    ) -> Result<TokenPair, Error> {
        let session_id = Uuid::new_v4();
        let now = self.clock.now();
        let spec = self.new_spec(user_id, session_id, 0, is_superuser, now);
        let pair = self.sign(&spec)?;
        let ended = self
            .sessions
            .create(&spec, client, clock::unix_millis(now))
            .await?;
        SessionMetrics::inc(&self.metrics.sessions_created);
        tracing::info!(%user_id, %session_id, "session started");
        if !ended.is_empty() {
            self.metrics.count_evicted(ended.len());
            tracing::info!(%user_id, ended = ?ended, "least recently used sessions ended: the user reached the session cap");
            for sid in ended {
                // The new session exists: a failed publication must not fail the login.
                if let Err(error) = self.publish(Revoked::Session { sid }).await {
                    tracing::error!(%user_id, session_id = %sid, %error,
                        "cannot publish an evicted session's revocation; its access tokens live until exp");
                }
            }
        }
        Ok(pair)
    }

    fn new_spec(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        generation: u64,
        is_superuser: bool,
        now: OffsetDateTime,
    ) -> PairSpec {
        let now = clock::unix_seconds(now);
        PairSpec {
            user_id,
            session_id,
            generation,
            refresh_jti: Uuid::new_v4(),
            access_jti: Uuid::new_v4(),
            issued_at: now,
            access_expires_at: now + self.lifetimes.access.as_secs(),
            refresh_expires_at: now + self.lifetimes.refresh.as_secs(),
            is_superuser,
        }
    }

    fn sign(&self, spec: &PairSpec) -> Result<TokenPair, Error> {
        self.keys
            .sign(spec)
            .map_err(|e| Error::Internal(format!("cannot sign tokens: {e}")))
    }

    /// Rotates a refresh token (see `store/lua/rotate.lua` for the rules).
    #[tracing::instrument(skip_all)]
    pub async fn refresh(&self, token: &str) -> Result<TokenPair, Error> {
        let result = self.rotate(token).await;
        match &result {
            Err(Error::Refresh(RefreshError::Reused)) => {
                SessionMetrics::inc(&self.metrics.refresh_reuse_detected)
            }
            Err(Error::Refresh(_)) => SessionMetrics::inc(&self.metrics.refresh_rejected),
            Err(Error::SessionStore(_)) => SessionMetrics::inc(&self.metrics.store_unavailable),
            _ => {}
        }
        result
    }

    async fn rotate(&self, token: &str) -> Result<TokenPair, Error> {
        let claims = tokens::verify_refresh(&self.verifier, token).await?;
        let (user_id, session_id) = (claims.sub, claims.sid);
        let standing = users::standing(&self.pg, user_id).await?;
        let Some(standing) = standing.filter(|user| user.is_active) else {
            return Err(RefreshError::InactiveUser.into());
        };
        let now = self.clock.now();
        let next = self.new_spec(
            user_id,
            session_id,
            claims.generation + 1,
            standing.is_superuser,
            now,
        );
        // Signed before the script decides, so that one round trip both rotates and
        // keeps the issued pair for the grace window.
        let pair = self.sign(&next)?;
        match self
            .sessions
            .rotate(
                claims.generation,
                claims.jti,
                &next,
                &pair,
                clock::unix_millis(now),
            )
            .await?
        {
            Rotation::Rotated => {
                SessionMetrics::inc(&self.metrics.refresh_rotations);
                Ok(pair)
            }
            Rotation::Grace(issued) => {
                SessionMetrics::inc(&self.metrics.refresh_grace_replays);
                tracing::info!(%user_id, %session_id, "refresh replayed inside the grace window");
                Ok(issued)
            }
            Rotation::GraceLapsed => Err(RefreshError::Invalid.into()),
            // The session's own lifetime equals the token's, so a token past its `exp`
            // (but inside the verification leeway) meets a session that is gone already.
            Rotation::Missing if claims.exp <= clock::unix_seconds(now) => {
                Err(RefreshError::Expired.into())
            }
            Rotation::Missing => Err(RefreshError::Revoked.into()),
            Rotation::Reused => {
                tracing::warn!(
                    target: "security",
                    %user_id,
                    %session_id,
                    generation = claims.generation,
                    "refresh token reuse detected: session revoked"
                );
                if let Err(error) = self.publish(Revoked::Session { sid: session_id }).await {
                    tracing::error!(%user_id, %session_id, %error,
                        "cannot publish a reused session's revocation; its access tokens live until exp");
                }
                Err(RefreshError::Reused.into())
            }
        }
    }

    /// Ends the session of `refresh_token` if it is the caller's; true if a live session ended.
    /// Any other token (invalid, expired, someone else's) ends nothing.
    #[tracing::instrument(skip_all, fields(user_id = %caller.user_id))]
    pub async fn logout(&self, caller: &Caller, refresh_token: &str) -> Result<bool, Error> {
        let claims = match tokens::verify_refresh(&self.verifier, refresh_token).await {
            Ok(claims) if claims.sub == caller.user_id => claims,
            _ => return Ok(false),
        };
        let revoked = self
            .sessions
            .revoke(caller.user_id, claims.sid, self.now_ms())
            .await?;
        self.metrics.count_revoked(u32::from(revoked));
        // Published even when the session had ended already: a retry after a failed
        // publication must still end the access tokens (the sid is the caller's own).
        self.publish(Revoked::Session { sid: claims.sid }).await?;
        Ok(revoked)
    }

    /// Ends every live session of the caller; returns how many.
    #[tracing::instrument(skip_all, fields(user_id = %caller.user_id))]
    pub async fn logout_all(&self, caller: &Caller) -> Result<u32, Error> {
        let revoked = end_user_sessions(
            &self.sessions,
            &self.revocations,
            &*self.clock,
            caller.user_id,
        )
        .await?;
        self.metrics.count_revoked(revoked);
        Ok(revoked)
    }

    /// Records and publishes `revoked` (see `common::revocation`).
    async fn publish(&self, revoked: Revoked) -> Result<(), Error> {
        Ok(self
            .revocations
            .publish(revoked, self.clock.unix_seconds())
            .await?)
    }

    #[tracing::instrument(skip_all, fields(user_id = %caller.user_id))]
    pub async fn list_sessions(&self, caller: &Caller) -> Result<Vec<SessionInfo>, Error> {
        self.sessions.list(caller.user_id, self.now_ms()).await
    }

    /// Ends one of the caller's sessions; NOT_FOUND if it is not a live one of theirs.
    #[tracing::instrument(skip_all, fields(user_id = %caller.user_id))]
    pub async fn revoke_session(&self, caller: &Caller, session_id: Uuid) -> Result<(), Error> {
        // The key carries the caller's own user id, so another user's session id finds nothing.
        match self
            .sessions
            .revoke(caller.user_id, session_id, self.now_ms())
            .await?
        {
            true => {
                self.metrics.count_revoked(1);
                self.publish(Revoked::Session { sid: session_id }).await
            }
            false => Err(Error::NotFound("session")),
        }
    }

    pub async fn profile(&self, caller: &Caller) -> Result<ProfileRow, Error> {
        users::profile(&self.pg, caller.user_id)
            .await?
            .ok_or(Error::NotFound("user"))
    }

    pub async fn update_profile(
        &self,
        caller: &Caller,
        update: &ProfileUpdate,
    ) -> Result<ProfileRow, Error> {
        users::update_profile(&self.pg, caller.user_id, update)
            .await?
            .ok_or(Error::NotFound("user"))
    }
}

/// Ends every session of `user_id` and every access token issued to them so far
/// (logout-all, deactivation, a changed superuser flag); returns how many sessions were
/// live.
///
/// `iat` has whole seconds, so "tokens issued before the next second" is what covers every
/// token issued until now; the answer then waits for that second to begin, so a login
/// that follows it gets tokens the revocation does not refuse.
pub async fn end_user_sessions(
    sessions: &Sessions,
    revocations: &Publisher,
    clock: &dyn Clock,
    user_id: Uuid,
) -> Result<u32, Error> {
    let revoked = sessions.revoke_all(user_id, clock.unix_millis()).await?;
    let now_ms = clock.unix_millis();
    let before = now_ms / 1000 + 1;
    revocations
        .publish(Revoked::User { user_id, before }, now_ms / 1000)
        .await?;
    let to_next_second = (before * 1000).saturating_sub(clock.unix_millis());
    tokio::time::sleep(Duration::from_millis(to_next_second.min(1000))).await;
    Ok(revoked)
}
