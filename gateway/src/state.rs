//! What every handler shares: the service clients, the token verifier, the limiter.

use std::{sync::Arc, time::Duration};

use common::{auth::AccessVerifier, balance::BalancedChannel};
use proto::{
    deck::v1::deck_service_client::DeckServiceClient,
    session::v1::session_service_client::SessionServiceClient,
};
use tokio::time::Instant;

use crate::{client_ip::TrustedProxies, rate_limit::RateLimiter};

#[derive(Clone, Debug)]
pub struct AppState {
    pub session: SessionServiceClient<BalancedChannel>,
    pub deck: DeckServiceClient<BalancedChannel>,
    pub verifier: AccessVerifier,
    /// The key set of `JWT_PUBLIC_KEYS_FILE`, served as the JWKS when configured.
    pub static_jwks: Option<Arc<Vec<common::auth::PublicJwk>>>,
    pub limiter: RateLimiter,
    pub trusted_proxies: Arc<TrustedProxies>,
    pub request_timeout: Duration,
    pub session_service_url: Arc<str>,
    pub deck_service_url: Arc<str>,
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
