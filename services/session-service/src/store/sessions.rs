//! Refresh-token sessions in the sessions Redis (ARCHITECTURE.md, "Tokens and sessions").
//!
//! Keys (after the deployment's prefix), hash-tagged on the user id so that every key
//! of one user lives in one Redis Cluster slot:
//! - `session:refresh:{<user_id>}:<session_id>`: hash of one session (see `lua/create.lua`);
//! - `session:user_sessions:{<user_id>}`: set of the user's session ids (at most the
//!   cap of live ones: `lua/create.lua` ends the least recently used beyond it);
//! - `session:issued:{<user_id>}:<session_id>`: the pair the session's last rotation
//!   issued, kept only for the grace window (its TTL) so that a replay gets those very
//!   tokens back (see `lua/rotate.lua`).
//!
//! Every change that touches both is one Lua script (the `lua/` files, Redis 7.0 compatible).
//!
//! Time comes from the caller (`now_ms`, the service's clock): a session lives until its
//! `expires_at`, judged by that clock, and the TTL Redis puts on the same instant only
//! removes what has ended. So tests that move the clock see sessions end at once.

use common::redis::RedisPool;
use redis::Script;
use uuid::Uuid;

use crate::{
    domain::ClientInfo,
    error::Error,
    tokens::{PairSpec, TokenPair},
};

/// How often logout-all and list re-read the set when logins keep adding sessions.
const SET_READ_ATTEMPTS: usize = 5;

static CREATE: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(include_str!("lua/create.lua")));
static ROTATE: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(include_str!("lua/rotate.lua")));
static REVOKE: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(include_str!("lua/revoke.lua")));
static REVOKE_ALL: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(include_str!("lua/revoke_all.lua")));
static LIST: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(include_str!("lua/list.lua")));

/// The key names of one deployment (its prefix) and user.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// `{prefix}session:refresh:{<user_id>}:<session_id>`: defined in common, since the
    /// gateway and deck-service look it up to check a token while revocation pushes are
    /// down.
    pub fn session(&self, user_id: Uuid, session_id: Uuid) -> String {
        common::revocation::session_key(&self.prefix, user_id, session_id)
    }

    /// `{prefix}session:issued:{<user_id>}:<session_id>`
    pub fn issued(&self, user_id: Uuid, session_id: Uuid) -> String {
        format!("{}session:issued:{{{user_id}}}:{session_id}", self.prefix)
    }

    /// `{prefix}session:user_sessions:{<user_id>}`
    pub fn user_sessions(&self, user_id: Uuid) -> String {
        format!("{}session:user_sessions:{{{user_id}}}", self.prefix)
    }

    /// The session hash of an id read from the user's set. An id that is not a UUID
    /// (never written by this service) still gets its key, so scripts can declare it.
    fn member(&self, user_id: Uuid, id: &str) -> String {
        match Uuid::parse_str(id) {
            Ok(session_id) => self.session(user_id, session_id),
            Err(_) => format!("{}session:refresh:{{{user_id}}}:{id}", self.prefix),
        }
    }

    /// The issued-pair key of an id read from the user's set (see [`Keys::member`]).
    fn member_issued(&self, user_id: Uuid, id: &str) -> String {
        match Uuid::parse_str(id) {
            Ok(session_id) => self.issued(user_id, session_id),
            Err(_) => format!("{}session:issued:{{{user_id}}}:{id}", self.prefix),
        }
    }
}

/// Lifetimes that the session scripts apply.
#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    pub session_ms: u64,
    pub grace_ms: u64,
    pub grace_max_replays: u32,
}

/// What a rotation attempt found.
#[derive(Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The new pair is now the session's.
    Rotated,
    /// A replay within the grace window: the pair issued by the rotation it replays.
    Grace(TokenPair),
    /// A replay within the grace window whose issued pair has already expired from
    /// Redis (TTLs run on Redis's clock, the window on the service's): refused, and the
    /// session goes on.
    GraceLapsed,
    /// The session does not exist (ended, or past its lifetime).
    Missing,
    /// An old token was reused; the session has been revoked.
    Reused,
}

/// One live session as listed.
#[derive(Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: Uuid,
    pub created_at_ms: i64,
    pub last_used_at_ms: i64,
    pub expires_at_ms: i64,
    pub ip_address: String,
    pub user_agent: String,
}

/// The sessions store.
#[derive(Clone, Debug)]
pub struct Sessions {
    redis: RedisPool,
    keys: Keys,
    lifetimes: Lifetimes,
    max_per_user: u32,
}

impl Sessions {
    pub fn new(redis: RedisPool, lifetimes: Lifetimes, max_per_user: u32) -> Self {
        let keys = Keys::new(redis.prefix());
        Self {
            redis,
            keys,
            lifetimes,
            max_per_user: max_per_user.max(1),
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Stores a new session whose current pair is `spec` (generation 0). When the user
    /// already has `max_per_user` live sessions, the least recently used ones end to make
    /// room; returns their ids. Ids of expired sessions leave the user's set.
    ///
    /// Two round trips: the set is read first, because a script must be given every key
    /// it touches (the hashes of the user's sessions).
    pub async fn create(
        &self,
        spec: &PairSpec,
        client: &ClientInfo,
        now_ms: u64,
    ) -> Result<Vec<Uuid>, Error> {
        let ids = self.members(spec.user_id).await?;
        let mut invocation = CREATE.prepare_invoke();
        invocation
            .key(self.keys.session(spec.user_id, spec.session_id))
            .key(self.keys.user_sessions(spec.user_id))
            .arg(spec.session_id.to_string())
            .arg(now_ms)
            .arg(self.lifetimes.session_ms)
            .arg(spec.refresh_jti.to_string())
            .arg(spec.access_jti.to_string())
            .arg(spec.issued_at)
            .arg(spec.access_expires_at)
            .arg(spec.refresh_expires_at)
            .arg(u8::from(spec.is_superuser))
            .arg(&client.ip_address)
            .arg(&client.user_agent)
            .arg(self.max_per_user);
        for id in &ids {
            invocation.key(self.keys.member(spec.user_id, id));
            invocation.arg(id.as_str());
        }
        let ended: Vec<String> = self
            .redis
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        // Ids come from our own set; one that is not a UUID ended all the same.
        Ok(ended
            .iter()
            .filter_map(|id| Uuid::parse_str(id).ok())
            .collect())
    }

    /// Makes `next` (signed as `issued`) the session's pair if the token (`generation`,
    /// `jti`) is its current one; see `lua/rotate.lua` for the other outcomes.
    pub async fn rotate(
        &self,
        generation: u64,
        jti: Uuid,
        next: &PairSpec,
        issued: &TokenPair,
        now_ms: u64,
    ) -> Result<Rotation, Error> {
        let mut invocation = ROTATE.prepare_invoke();
        invocation
            .key(self.keys.session(next.user_id, next.session_id))
            .key(self.keys.user_sessions(next.user_id))
            .key(self.keys.issued(next.user_id, next.session_id))
            .arg(next.session_id.to_string())
            .arg(generation)
            .arg(jti.to_string())
            .arg(now_ms)
            .arg(self.lifetimes.session_ms)
            .arg(self.lifetimes.grace_ms)
            .arg(self.lifetimes.grace_max_replays)
            .arg(next.refresh_jti.to_string())
            .arg(next.access_jti.to_string())
            .arg(next.issued_at)
            .arg(next.access_expires_at)
            .arg(next.refresh_expires_at)
            .arg(u8::from(next.is_superuser))
            .arg(&issued.access_token)
            .arg(&issued.refresh_token)
            .arg(issued.expires_in);
        let mut reply: Vec<String> = self
            .redis
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        // Never the reply itself in an error: a grace reply holds live tokens.
        let bad_reply = |reply: &[String]| {
            Error::Internal(format!(
                "unexpected rotate reply ({} items, first {:?})",
                reply.len(),
                reply.first().filter(|first| first.len() <= 16)
            ))
        };
        match reply.first().map(String::as_str) {
            Some("rotated") => Ok(Rotation::Rotated),
            Some("missing") => Ok(Rotation::Missing),
            Some("reused") => Ok(Rotation::Reused),
            Some("gone") => Ok(Rotation::GraceLapsed),
            Some("grace") if reply.len() == 4 => {
                let expires_in = reply[3].parse::<u64>().map_err(|_| bad_reply(&reply))?;
                let refresh_token = std::mem::take(&mut reply[2]);
                let access_token = std::mem::take(&mut reply[1]);
                Ok(Rotation::Grace(TokenPair {
                    access_token,
                    refresh_token,
                    expires_in,
                }))
            }
            _ => Err(bad_reply(&reply)),
        }
    }

    /// Ends one session; true if it was live.
    pub async fn revoke(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        now_ms: u64,
    ) -> Result<bool, Error> {
        let mut invocation = REVOKE.prepare_invoke();
        invocation
            .key(self.keys.session(user_id, session_id))
            .key(self.keys.user_sessions(user_id))
            .key(self.keys.issued(user_id, session_id))
            .arg(session_id.to_string())
            .arg(now_ms);
        let ended: i64 = self
            .redis
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        Ok(ended == 1)
    }

    /// Ends every session of the user; returns how many were live.
    pub async fn revoke_all(&self, user_id: Uuid, now_ms: u64) -> Result<u32, Error> {
        for _ in 0..SET_READ_ATTEMPTS {
            let ids = self.members(user_id).await?;
            let mut invocation = REVOKE_ALL.prepare_invoke();
            invocation.key(self.keys.user_sessions(user_id)).arg(now_ms);
            for id in &ids {
                invocation.key(self.keys.member(user_id, id));
                invocation.key(self.keys.member_issued(user_id, id));
                invocation.arg(id.as_str());
            }
            let ended: i64 = self
                .redis
                .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
                .await?;
            if ended >= 0 {
                return Ok(u32::try_from(ended).unwrap_or(u32::MAX));
            }
        }
        Err(Error::Internal(
            "logout-all: the session set kept changing".into(),
        ))
    }

    /// The user's live sessions, newest first.
    pub async fn list(&self, user_id: Uuid, now_ms: u64) -> Result<Vec<SessionInfo>, Error> {
        for _ in 0..SET_READ_ATTEMPTS {
            let ids = self.members(user_id).await?;
            let invocation = self.over_members(&LIST, user_id, &ids, now_ms);
            let reply: redis::Value = self
                .redis
                .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
                .await?;
            if let redis::Value::Int(-1) = reply {
                continue;
            }
            let fields: Vec<String> = redis::FromRedisValue::from_redis_value(reply)
                .map_err(|e| Error::Internal(format!("unexpected list reply: {e}")))?;
            let mut sessions = fields
                .chunks_exact(6)
                .filter_map(|s| {
                    Some(SessionInfo {
                        id: Uuid::parse_str(&s[0]).ok()?,
                        created_at_ms: s[1].parse().ok()?,
                        last_used_at_ms: s[2].parse().ok()?,
                        expires_at_ms: s[3].parse().ok()?,
                        ip_address: s[4].clone(),
                        user_agent: s[5].clone(),
                    })
                })
                .collect::<Vec<_>>();
            sessions.sort_by(|a, b| b.created_at_ms.cmp(&a.created_at_ms).then(b.id.cmp(&a.id)));
            return Ok(sessions);
        }
        Err(Error::Internal(
            "list sessions: the session set kept changing".into(),
        ))
    }

    async fn members(&self, user_id: Uuid) -> Result<Vec<String>, Error> {
        let key = self.keys.user_sessions(user_id);
        Ok(self
            .redis
            .run(|mut connection| async move {
                redis::cmd("SMEMBERS")
                    .arg(key)
                    .query_async::<Vec<String>>(&mut connection)
                    .await
            })
            .await?)
    }

    /// An invocation of a script that takes the user's set and the hashes of `ids`, at
    /// `now_ms`.
    fn over_members(
        &self,
        script: &'static Script,
        user_id: Uuid,
        ids: &[String],
        now_ms: u64,
    ) -> redis::ScriptInvocation<'static> {
        let mut invocation = script.prepare_invoke();
        invocation.key(self.keys.user_sessions(user_id)).arg(now_ms);
        for id in ids {
            invocation.key(self.keys.member(user_id, id));
            invocation.arg(id.as_str());
        }
        invocation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_namespace_with_the_user_id_as_hash_tag() {
        let keys = Keys::new("t1:");
        let user = Uuid::nil();
        let session = Uuid::max();

        assert_eq!(
            keys.session(user, session),
            "t1:session:refresh:{00000000-0000-0000-0000-000000000000}:ffffffff-ffff-ffff-ffff-ffffffffffff"
        );
        assert_eq!(
            keys.user_sessions(user),
            "t1:session:user_sessions:{00000000-0000-0000-0000-000000000000}"
        );
    }
}
