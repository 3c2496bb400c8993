//! The service's own Prometheus series (besides the per-RPC ones every process has).

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use crate::password::HasherCounts;

/// Counts of what logins and refreshes did, read by the `/metrics` endpoint.
#[derive(Debug, Default)]
pub struct SessionMetrics {
    pub logins: AtomicU64,
    pub login_failures: AtomicU64,
    pub login_throttled: AtomicU64,
    pub refresh_rotations: AtomicU64,
    pub refresh_grace_replays: AtomicU64,
    pub refresh_reuse_detected: AtomicU64,
    pub refresh_rejected: AtomicU64,
    pub password_hash_upgrades: AtomicU64,
    pub store_unavailable: AtomicU64,
    pub sessions_created: AtomicU64,
    pub sessions_revoked: AtomicU64,
    pub sessions_evicted: AtomicU64,
}

impl SessionMetrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Sessions ended by logout, logout-all or revoke (reuse detection is counted apart).
    pub fn count_revoked(&self, sessions: u32) {
        self.sessions_revoked
            .fetch_add(u64::from(sessions), Ordering::Relaxed);
    }

    /// Sessions a new login ended because the user reached the session cap: counted in
    /// `session_revoked_total` like every other early end, and on their own.
    pub fn count_evicted(&self, sessions: usize) {
        let sessions = sessions as u64;
        self.sessions_revoked.fetch_add(sessions, Ordering::Relaxed);
        self.sessions_evicted.fetch_add(sessions, Ordering::Relaxed);
    }

    /// Registers every counter (each is exported with the `_total` suffix).
    pub fn register(self: &Arc<Self>, registry: &common::metrics::Metrics) {
        registry.register_atomic_counters(self, &[
            (
                "session_logins",
                "Successful logins (new sessions, registrations excluded)",
                |m| &m.logins,
            ),
            (
                "session_login_failures",
                "Logins refused as invalid credentials",
                |m| &m.login_failures,
            ),
            (
                "session_login_throttled",
                "Logins refused unchecked because their e-mail address had too many failures",
                |m| &m.login_throttled,
            ),
            ("session_refresh_rotations", "Refresh tokens rotated", |m| {
                &m.refresh_rotations
            }),
            (
                "session_refresh_grace_replays",
                "Refreshes answered with the identical pair inside the grace window",
                |m| &m.refresh_grace_replays,
            ),
            (
                "session_refresh_reuse_detected",
                "Old refresh tokens replayed outside the grace window (the session was revoked)",
                |m| &m.refresh_reuse_detected,
            ),
            (
                "session_refresh_rejected",
                "Refreshes refused as expired, invalid or revoked (reuse not included)",
                |m| &m.refresh_rejected,
            ),
            (
                "session_password_hash_upgrades",
                "Legacy or outdated password hashes replaced by argon2id at login",
                |m| &m.password_hash_upgrades,
            ),
            (
                "session_created",
                "Sessions started by registration or login",
                |m| &m.sessions_created,
            ),
            (
                "session_revoked",
                "Live sessions ended by logout, logout-all, revoke or the per-user session cap",
                |m| &m.sessions_revoked,
            ),
            (
                "session_evicted",
                "Least recently used sessions ended by a new login beyond the per-user cap",
                |m| &m.sessions_evicted,
            ),
            (
                "session_store_unavailable",
                "Calls answered UNAVAILABLE because the sessions Redis failed or timed out",
                |m| &m.store_unavailable,
            ),
        ]);
    }

    /// Registers the password hasher's counters.
    pub fn register_hasher(counts: &Arc<HasherCounts>, registry: &common::metrics::Metrics) {
        registry.register_atomic_counters(counts, &[
            (
                "session_password_hashes",
                "Password hashes computed (registrations, logins, upgrades)",
                |c| &c.computed,
            ),
            (
                "session_password_hash_rejected",
                "Calls answered RESOURCE_EXHAUSTED (OVERLOADED) because the hashing queue was full",
                |c| &c.rejected,
            ),
            (
                "session_password_hash_abandoned",
                "Queued password hashes skipped because their caller had gone",
                |c| &c.abandoned,
            ),
        ]);
    }
}
