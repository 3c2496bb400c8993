//! GCRA rate limits in Redis (HTTP_API.md, "Rate limits"): auth routes per client IP,
//! the other authenticated routes per user and endpoint. When Redis is unavailable the
//! limiter fails open — an outage of the limiter must not become an outage of the API —
//! and counts each such call in [`RateLimiter::fail_open_total`]. After a failure the
//! limiter skips Redis for [`BREAKER_COOLDOWN`], so a Redis that hangs (rather than
//! refuses) costs one timeout per cooldown, not one per request.

use std::{
    net::{IpAddr, Ipv6Addr},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::response::Response;
use common::{redis::RedisPool, sync::MutexExt};
use http::{HeaderName, HeaderValue};
use prometheus_client::metrics::counter::Counter;

use crate::error::ApiError;

/// The window every limit is expressed in.
const WINDOW: Duration = Duration::from_secs(60);
/// How long the limiter fails open without asking Redis after Redis failed.
pub const BREAKER_COOLDOWN: Duration = Duration::from_secs(1);

/// Which limit a route falls under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// register, login, google, refresh: per client IP.
    Auth,
    /// Every other authenticated route: per user and endpoint.
    Api,
}

/// The outcome of one check, enough to write the headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    pub retry_after: Duration,
    pub reset_after: Duration,
}

#[derive(Clone)]
pub struct RateLimiter {
    pool: RedisPool,
    script: Arc<redis::Script>,
    auth_per_minute: u32,
    api_per_minute: u32,
    fail_open: Counter,
    /// Until when Redis is not asked (set after a failure).
    skip_until: Arc<std::sync::Mutex<Option<tokio::time::Instant>>>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("auth_per_minute", &self.auth_per_minute)
            .field("api_per_minute", &self.api_per_minute)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// `fail_open` counts the calls let through unchecked (registered by the caller).
    pub fn new(
        pool: RedisPool,
        auth_per_minute: u32,
        api_per_minute: u32,
        fail_open: Counter,
    ) -> Self {
        Self {
            pool,
            script: Arc::new(redis::Script::new(include_str!("rate_limit.gcra.lua"))),
            auth_per_minute,
            api_per_minute,
            fail_open,
            skip_until: Arc::new(std::sync::Mutex::new(None)),
        }
    }

    /// Calls let through without a check because Redis was unavailable.
    pub fn fail_open_total(&self) -> u64 {
        self.fail_open.get()
    }

    pub fn pool(&self) -> &RedisPool {
        &self.pool
    }

    /// `{prefix}rate:auth:{<client>}` ([`auth_client`]): the hash tag keeps the key on
    /// one cluster slot.
    pub fn auth_key(&self, ip: IpAddr) -> String {
        format!("{}rate:auth:{{{}}}", self.pool.prefix(), auth_client(ip))
    }

    /// `{prefix}rate:api:{<user_id>}:<METHOD route>`, e.g. `...:GET /decks/{id}`.
    pub fn api_key(&self, user_id: uuid::Uuid, endpoint: &str) -> String {
        format!("{}rate:api:{{{user_id}}}:{endpoint}", self.pool.prefix())
    }

    /// Checks and counts one call against `key`. `None` means Redis was unavailable
    /// and the call is let through (fail open).
    pub async fn check(&self, policy: Policy, key: String) -> Option<Decision> {
        let limit = match policy {
            Policy::Auth => self.auth_per_minute,
            Policy::Api => self.api_per_minute,
        };
        let now = tokio::time::Instant::now();
        let skipping = self
            .skip_until
            .lock_unpoisoned()
            .is_some_and(|until| now < until);
        if skipping {
            self.fail_open.inc();
            return None;
        }
        let interval_us = (WINDOW.as_micros() / u128::from(limit)).max(1) as u64;
        let script = self.script.clone();
        let outcome = self
            .pool
            .run(move |mut connection| async move {
                script
                    .key(key)
                    .arg(interval_us)
                    .arg(limit)
                    .invoke_async::<Vec<i64>>(&mut connection)
                    .await
            })
            .await;
        match outcome {
            Ok(values) if values.len() == 4 => Some(Decision {
                allowed: values[0] == 1,
                limit,
                remaining: u32::try_from(values[1].max(0))
                    .unwrap_or(u32::MAX)
                    .min(limit),
                retry_after: Duration::from_micros(values[2].max(0) as u64),
                reset_after: Duration::from_micros(values[3].max(0) as u64),
            }),
            Ok(values) => {
                self.fail_open.inc();
                tracing::error!(
                    ?values,
                    "rate-limit script returned an unexpected shape; failing open"
                );
                None
            }
            Err(error) => {
                self.fail_open.inc();
                *self.skip_until.lock_unpoisoned() =
                    Some(tokio::time::Instant::now() + BREAKER_COOLDOWN);
                tracing::warn!(%error, cooldown = ?BREAKER_COOLDOWN, "rate-limit Redis unavailable; failing open");
                None
            }
        }
    }
}

/// Who an auth bucket belongs to: an IPv4 address, or the /64 of an IPv6 one
/// (`2001:db8:1:2::/64`). One IPv6 subscriber gets a whole /64 and picks addresses in
/// it at will, so keying by the address would give it 2^64 buckets.
pub fn auth_client(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let network = Ipv6Addr::from(u128::from(v6) & !(u128::MAX >> 64));
                format!("{network}/64")
            }
        },
    }
}

impl Decision {
    /// Whole seconds to wait before a retry conforms (at least 1).
    pub fn retry_after_seconds(&self) -> u64 {
        ceil_seconds(self.retry_after).max(1)
    }

    /// The rejection: 429 with `Retry-After`.
    pub fn rejection(&self) -> ApiError {
        ApiError::new(
            http::StatusCode::TOO_MANY_REQUESTS,
            "Rate limit exceeded. Please try again later.",
        )
        .with_retry_after(self.retry_after_seconds())
    }

    /// Writes `X-RateLimit-*`, `RateLimit-Policy` and `RateLimit` on `response`.
    pub fn write_headers(&self, response: &mut Response) {
        let reset_seconds = ceil_seconds(self.reset_after);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let headers = response.headers_mut();
        let mut set = |name: &'static str, value: String| {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        };
        set("x-ratelimit-limit", self.limit.to_string());
        set("x-ratelimit-remaining", self.remaining.to_string());
        set("x-ratelimit-reset", (now + reset_seconds).to_string());
        set(
            "ratelimit-policy",
            format!("{};w={}", self.limit, WINDOW.as_secs()),
        );
        set(
            "ratelimit",
            format!(
                "limit={}, remaining={}, reset={}",
                self.limit, self.remaining, reset_seconds
            ),
        );
    }
}

fn ceil_seconds(duration: Duration) -> u64 {
    duration.as_micros().div_ceil(1_000_000) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_is_never_zero() {
        let decision = |micros| Decision {
            allowed: false,
            limit: 10,
            remaining: 0,
            retry_after: Duration::from_micros(micros),
            reset_after: Duration::ZERO,
        };

        assert_eq!(decision(0).retry_after_seconds(), 1);
        assert_eq!(decision(5_000_001).retry_after_seconds(), 6);
        assert_eq!(decision(6_000_000).retry_after_seconds(), 6);
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_and_ipv4_ones_by_their_address() {
        let client = |ip: &str| auth_client(ip.parse().unwrap());

        assert_eq!(client("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(
            client("2001:db8:1:2:ffff:ffff:ffff:ffff"),
            "2001:db8:1:2::/64"
        );
        assert_eq!(client("2001:db8:1:3::1"), "2001:db8:1:3::/64");
        assert_eq!(client("::1"), "::/64");
        assert_eq!(client("203.0.113.9"), "203.0.113.9");
        assert_eq!(client("::ffff:203.0.113.9"), "203.0.113.9");
    }

    #[test]
    fn headers_follow_the_decision() {
        let decision = Decision {
            allowed: true,
            limit: 100,
            remaining: 42,
            retry_after: Duration::ZERO,
            reset_after: Duration::from_millis(34_200),
        };
        let mut response = Response::new(axum::body::Body::empty());

        decision.write_headers(&mut response);

        let headers = response.headers();
        assert_eq!(headers["x-ratelimit-limit"], "100");
        assert_eq!(headers["x-ratelimit-remaining"], "42");
        assert_eq!(headers["ratelimit-policy"], "100;w=60");
        assert_eq!(headers["ratelimit"], "limit=100, remaining=42, reset=35");
    }
}
