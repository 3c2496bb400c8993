//! Accounts in PostgreSQL: users and their settings.

use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    domain::{Email, FullName, ProfileUpdate},
    error::{Error, is_unique_violation},
};

/// What login needs of a user.
#[derive(Debug, sqlx::FromRow)]
pub struct Credentials {
    pub id: Uuid,
    pub password_hash: String,
    pub is_active: bool,
    pub is_superuser: bool,
}

/// What refresh needs of a user.
#[derive(Debug, sqlx::FromRow)]
pub struct Standing {
    pub is_active: bool,
    pub is_superuser: bool,
}

/// A user with settings, as GetProfile returns it.
#[derive(Debug, sqlx::FromRow)]
pub struct ProfileRow {
    pub id: Uuid,
    pub email: String,
    pub full_name: String,
    pub is_active: bool,
    pub is_superuser: bool,
    pub email_verified_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub settings_id: Uuid,
    pub daily_goal: i32,
    pub email_notifications: bool,
    pub preferred_language: Option<String>,
    pub settings_created_at: OffsetDateTime,
    pub settings_updated_at: OffsetDateTime,
}

/// Creates a user with default settings in one transaction; a taken e-mail (in any
/// case) is [`Error::EmailTaken`].
pub async fn create(
    pool: &PgPool,
    email: &Email,
    password_hash: &str,
    full_name: &FullName,
) -> Result<Uuid, Error> {
    let id = Uuid::new_v4();
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO users (id, email, password_hash, full_name) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(email.as_str())
    .bind(password_hash)
    .bind(full_name.as_str())
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(error) if is_unique_violation(&error) => return Err(Error::EmailTaken),
        other => other?,
    };
    sqlx::query("INSERT INTO user_settings (id, user_id) VALUES ($1, $2)")
        .bind(Uuid::new_v4())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(id)
}

pub async fn credentials(pool: &PgPool, email: &Email) -> Result<Option<Credentials>, Error> {
    Ok(sqlx::query_as(
        "SELECT id, password_hash, is_active, is_superuser FROM users WHERE lower(email) = lower($1)",
    )
    .bind(email.as_str())
    .fetch_optional(pool)
    .await?)
}

/// Replaces a password hash, but only if it is still `old` (a concurrent password
/// change must not be overwritten by an upgrade of the hash it replaced).
pub async fn upgrade_password_hash(
    pool: &PgPool,
    user_id: Uuid,
    old: &str,
    new: &str,
) -> Result<bool, Error> {
    let result =
        sqlx::query("UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2")
            .bind(user_id)
            .bind(old)
            .bind(new)
            .execute(pool)
            .await?;
    Ok(result.rows_affected() == 1)
}

/// The statement of [`standing`]: one constant text with a bind, so sqlx prepares it
/// once per connection and every later refresh on that connection only executes it.
pub const STANDING: &str = "SELECT is_active, is_superuser FROM users WHERE id = $1";

/// Whether the user may go on refreshing (every refresh asks): one prepared statement.
pub async fn standing(pool: &PgPool, user_id: Uuid) -> Result<Option<Standing>, Error> {
    Ok(sqlx::query_as(STANDING)
        .bind(user_id)
        .fetch_optional(pool)
        .await?)
}

const PROFILE: &str = "SELECT u.id, u.email, u.full_name, u.is_active, u.is_superuser, u.email_verified_at,
        u.created_at, u.updated_at, s.id AS settings_id, s.daily_goal, s.email_notifications,
        s.preferred_language, s.created_at AS settings_created_at, s.updated_at AS settings_updated_at
    FROM users u JOIN user_settings s ON s.user_id = u.id
    WHERE u.id = $1";

pub async fn profile(pool: &PgPool, user_id: Uuid) -> Result<Option<ProfileRow>, Error> {
    Ok(sqlx::query_as(PROFILE)
        .bind(user_id)
        .fetch_optional(pool)
        .await?)
}

/// Applies the given changes (absent fields stay) and returns the new profile.
pub async fn update_profile(
    pool: &PgPool,
    user_id: Uuid,
    update: &ProfileUpdate,
) -> Result<Option<ProfileRow>, Error> {
    let mut tx = pool.begin().await?;
    let user = sqlx::query(
        "UPDATE users SET full_name = coalesce($2, full_name),
             updated_at = CASE WHEN $2 IS NULL THEN updated_at ELSE now() END
         WHERE id = $1",
    )
    .bind(user_id)
    .bind(update.full_name.as_ref().map(FullName::as_str))
    .execute(&mut *tx)
    .await?;
    if user.rows_affected() == 0 {
        return Ok(None);
    }
    let settings_changed = update.daily_goal.is_some()
        || update.email_notifications.is_some()
        || update.preferred_language.is_some();
    if settings_changed {
        sqlx::query(
            "UPDATE user_settings SET daily_goal = coalesce($2, daily_goal),
                 email_notifications = coalesce($3, email_notifications),
                 preferred_language = CASE WHEN $4 THEN $5 ELSE preferred_language END,
                 updated_at = now()
             WHERE user_id = $1",
        )
        .bind(user_id)
        .bind(update.daily_goal.map(|goal| goal.get()))
        .bind(update.email_notifications)
        .bind(update.preferred_language.is_some())
        .bind(
            update
                .preferred_language
                .flatten()
                .map(|language| language.as_str()),
        )
        .execute(&mut *tx)
        .await?;
    }
    let profile = sqlx::query_as(PROFILE)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(profile)
}

/// Sets `is_superuser` for the user with this e-mail; their id, or `None` when there is
/// no such user.
pub async fn set_superuser(
    pool: &PgPool,
    email: &Email,
    is_superuser: bool,
) -> Result<Option<Uuid>, Error> {
    Ok(sqlx::query_scalar(
        "UPDATE users SET is_superuser = $2, updated_at = now() WHERE lower(email) = lower($1) RETURNING id",
    )
    .bind(email.as_str())
    .bind(is_superuser)
    .fetch_optional(pool)
    .await?)
}

/// Sets `is_active` for the user with this e-mail; their id, or `None` when there is no
/// such user.
pub async fn set_active(
    pool: &PgPool,
    email: &Email,
    is_active: bool,
) -> Result<Option<Uuid>, Error> {
    Ok(sqlx::query_scalar(
        "UPDATE users SET is_active = $2, updated_at = now() WHERE lower(email) = lower($1) RETURNING id",
    )
    .bind(email.as_str())
    .bind(is_active)
    .fetch_optional(pool)
    .await?)
}
