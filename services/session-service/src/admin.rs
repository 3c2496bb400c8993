//! Operator subcommands that change a user's standing: `make-superuser` (admin
//! bootstrap), `remove-superuser` and `deactivate-user`.
//!
//! Each changes the user in PostgreSQL, then ends every session of the user and every
//! access token issued to them so far ([`crate::service::end_user_sessions`]): a role or
//! an account taken away must not live on in tokens until their `exp`, and a new role
//! shows in the tokens of the next login. The sessions are ended even when the flag was
//! already as asked, so running a command again after a failed Redis step completes it.

use std::sync::Arc;

use anyhow::Context;
use common::{
    clock::{Clock, SystemClock},
    redis::RedisPool,
    revocation::Publisher,
};

use crate::{
    config::{Config, database_url},
    domain::Email,
    service::end_user_sessions,
    startup::{self, MIGRATOR},
    store::users,
};

/// What an operator command changes about a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StandingChange {
    MakeSuperuser,
    RemoveSuperuser,
    Deactivate,
}

impl StandingChange {
    fn done(self) -> &'static str {
        match self {
            Self::MakeSuperuser => "is now a superuser",
            Self::RemoveSuperuser => "is no longer a superuser",
            Self::Deactivate => "is deactivated",
        }
    }
}

/// Applies `change` to the user with `email`, then ends all their sessions and tokens.
/// Errors if there is no such user or a store fails.
pub async fn change_standing(
    config: &Config,
    email: &str,
    change: StandingChange,
) -> anyhow::Result<()> {
    let email = Email::parse(email)
        .map_err(|violation| anyhow::anyhow!("{}: {}", violation.field, violation.message))?;
    let pg = common::postgres::pool(&config.postgres, database_url(&config.postgres))?;
    common::postgres::migrate(&pg, &MIGRATOR, config.postgres.database_startup_timeout)
        .await
        .context("database")?;
    let user_id = match change {
        StandingChange::MakeSuperuser => users::set_superuser(&pg, &email, true).await,
        StandingChange::RemoveSuperuser => users::set_superuser(&pg, &email, false).await,
        StandingChange::Deactivate => users::set_active(&pg, &email, false).await,
    }
    .map_err(|e| anyhow::anyhow!("{e}"))?
    .ok_or_else(|| anyhow::anyhow!("no user with e-mail {}", email.as_str()))?;

    let redis = RedisPool::new(config.session_redis_url.expose(), &config.process.redis)
        .context("SESSION_REDIS_URL")?;
    let store = startup::session_store(config, redis.clone());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ended = end_user_sessions(
        &store,
        &Publisher::new(redis, config.tokens.access_token_ttl),
        &*clock,
        user_id,
    )
    .await
    .map_err(|e| {
        anyhow::anyhow!("{e}: the user changed, but their sessions did not end; run again")
    })?;
    println!(
        "{} {}; {ended} session(s) ended",
        email.as_str(),
        change.done()
    );
    Ok(())
}
