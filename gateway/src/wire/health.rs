//! Health and the key set (no auth, outside `/api/v1`).

use serde::Serialize;
use utoipa::ToSchema;

use super::Timestamp;

/// `GET /health/live`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Live {
    pub status: Alive,
    pub timestamp: Timestamp,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Alive {
    Alive,
}

/// `GET /health/ready`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ready {
    pub status: Readiness,
    pub timestamp: Timestamp,
    #[schema(inline)]
    pub checks: ReadyChecks,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    Ready,
    NotReady,
}

/// Whether each service reports `readiness` SERVING.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadyChecks {
    pub session_service: bool,
    pub deck_service: bool,
}

/// `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub status: Overall,
    pub version: &'static str,
    pub timestamp: Timestamp,
    pub uptime_seconds: u64,
    #[schema(inline)]
    pub checks: HealthChecks,
}

/// `healthy`; `degraded` while the rate-limit Redis is down (the limiter fails open);
/// `unhealthy` (503) while a service is down.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Overall {
    Healthy,
    Degraded,
    Unhealthy,
}

/// One check per dependency.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthChecks {
    pub session_service: Check,
    pub deck_service: Check,
    pub rate_limit_redis: Check,
}

/// The outcome of one dependency check.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub status: CheckStatus,
    pub latency_ms: u64,
    /// Why it failed (never internals); `null` when healthy.
    #[schema(required = true)]
    pub message: Option<&'static str>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Healthy,
    Unhealthy,
}

/// `GET /.well-known/jwks.json`: the public keys that verify access tokens.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// One public key (RFC 7517).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Jwk {
    pub kid: String,
    pub kty: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub key_use: String,
    pub crv: String,
    pub x: String,
    /// EC keys only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
}

impl From<common::auth::PublicJwk> for Jwk {
    fn from(key: common::auth::PublicJwk) -> Self {
        Self {
            kid: key.kid,
            kty: key.kty,
            alg: key.alg,
            key_use: key.key_use,
            crv: key.crv,
            x: key.x,
            y: key.y,
        }
    }
}
