//! What every handler shares: the service clients, the token verifier, the limiters.

use std::{sync::Arc, time::Duration};

use common::{auth::AccessVerifier, balance::BalancedChannel};
use proto::{
    deck::v1::deck_service_client::DeckServiceClient,
    session::v1::session_service_client::SessionServiceClient,
};
use tokio::time::Instant;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{
    client_ip::TrustedProxies,
    rate_limit::{RateLimiter, api::ApiLimiter},
};

/// The state every handler and layer shares, behind one `Arc`: extracting it costs a
/// reference count, not a copy of every client.
pub type SharedState = Arc<AppState>;

#[derive(Debug)]
pub struct AppState {
    pub session: SessionServiceClient<BalancedChannel>,
    pub deck: DeckServiceClient<BalancedChannel>,
    /// grpc.health.v1 of each service, over the same channels as the calls.
    pub session_health: ServiceHealth,
    pub deck_health: ServiceHealth,
    pub verifier: AccessVerifier,
    /// The key set of `JWT_PUBLIC_KEYS_FILE`, served as the JWKS when configured.
    pub static_jwks: Option<Arc<Vec<common::auth::PublicJwk>>>,
    /// The auth routes' exact limit in Redis.
    pub limiter: RateLimiter,
    /// The other authenticated routes' limit, local and reconciled in the background.
    pub api_limiter: ApiLimiter,
    pub trusted_proxies: Arc<TrustedProxies>,
    pub request_timeout: Duration,
    pub started: Instant,
    pub metrics: crate::metrics::HttpMetrics,
}

impl AppState {
    /// A session-service client (clients are cheap clones of one balanced channel).
    pub fn session(&self) -> SessionServiceClient<BalancedChannel> {
        self.session.clone()
    }

    pub fn deck(&self) -> DeckServiceClient<BalancedChannel> {
        self.deck.clone()
    }
}

/// A service's `readiness` over the gateway's long-lived channel to it: a check is one
/// call on an open HTTP/2 connection, not a new connection (dialling per check left a
/// TIME-WAIT socket behind each time `/health` or the readiness probe ran).
#[derive(Clone, Debug)]
pub struct ServiceHealth(HealthClient<BalancedChannel>);

impl ServiceHealth {
    pub fn new(channel: BalancedChannel) -> Self {
        Self(HealthClient::new(channel))
    }

    /// `Ok` while the service reports `readiness` SERVING within `timeout`.
    pub async fn require_ready(self, timeout: Duration) -> Result<(), String> {
        let mut client = self.0;
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: common::health::READINESS.to_owned(),
        });
        request.set_timeout(timeout);
        let check = tokio::time::timeout(timeout, client.check(request))
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?
            .map_err(|status| format!("{}: {}", status.code(), status.message()))?;
        match check.into_inner().status() {
            ServingStatus::Serving => Ok(()),
            other => Err(format!("reports readiness {}", other.as_str_name())),
        }
    }
}
