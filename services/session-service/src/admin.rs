//! Operator subcommand `make-superuser` (admin bootstrap).

use anyhow::Context;

use crate::{config::database_url, domain::Email, startup::MIGRATOR, store::users};

/// Makes the existing user with `email` a superuser. Errors if there is no such user.
pub async fn make_superuser(
    postgres: &common::config::PostgresConfig,
    email: &str,
) -> anyhow::Result<()> {
    let email = Email::parse(email)
        .map_err(|violation| anyhow::anyhow!("{}: {}", violation.field, violation.message))?;
    let pg = common::postgres::pool(postgres, database_url(postgres))?;
    common::postgres::migrate(&pg, &MIGRATOR, postgres.database_startup_timeout)
        .await
        .context("database")?;
    if users::make_superuser(&pg, &email)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
    {
        println!("{} is now a superuser", email.as_str());
        Ok(())
    } else {
        anyhow::bail!("no user with e-mail {}", email.as_str())
    }
}
