//! `/api/v1/auth`: tokens, sessions, the profile (session-service).

use proto::session::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Breach, Timestamp};
use crate::extract::{Validator, nullable};

// ------------------------------------------------------------------ requests

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = RegisterRequest)]
pub struct Register {
    #[schema(format = Email, max_length = 255)]
    pub email: String,
    /// 8-100 characters with at least one letter and one digit
    #[schema(min_length = 8, max_length = 100)]
    pub password: String,
    #[schema(min_length = 1, max_length = 255)]
    pub full_name: String,
}

impl Register {
    pub fn validate(&self, check: &mut Validator) {
        check_email(check, &self.email);
        check.length("password", &self.password, 8, 100);
        if !(self.password.chars().any(char::is_alphabetic)
            && self.password.chars().any(|c| c.is_ascii_digit()))
        {
            check.error("password", "must contain at least one letter and one digit");
        }
        check.length("full_name", &self.full_name, 1, 255);
    }
}

/// A plausible e-mail address; session-service decides the rest (and uniqueness).
fn check_email(check: &mut Validator, email: &str) {
    let plausible = email.len() <= 255
        && !email.chars().any(char::is_whitespace)
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
    if !plausible {
        check.error("email", "must be a valid e-mail address");
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = LoginRequest)]
pub struct Login {
    #[schema(min_length = 1, max_length = 255)]
    pub email: String,
    #[schema(min_length = 1, max_length = 1000)]
    pub password: String,
}

impl Login {
    pub fn validate(&self, check: &mut Validator) {
        check.length("email", &self.email, 1, 255);
        check.length("password", &self.password, 1, 1000);
    }
}

/// Google sign-in's body (the route is not enabled: it never reads it).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = GoogleRequest)]
pub struct Google {
    pub id_token: String,
}

/// The body of refresh and logout.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = RefreshRequest)]
pub struct Refresh {
    #[schema(min_length = 1, max_length = 8192)]
    pub refresh_token: String,
}

impl Refresh {
    pub fn validate(&self, check: &mut Validator) {
        check.length("refresh_token", &self.refresh_token, 1, 8192);
    }
}

/// `PATCH /auth/me`: any of the fields; `preferred_language: null` clears it.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ProfileUpdate)]
pub struct ProfilePatch {
    #[schema(min_length = 1, max_length = 255)]
    pub full_name: Option<String>,
    #[schema(minimum = 1, maximum = 200)]
    pub daily_goal: Option<i64>,
    pub email_notifications: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Language>)]
    pub preferred_language: Option<Option<String>>,
}

/// A language of the interface.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    En,
    El,
}

impl ProfilePatch {
    pub fn validate(&self, check: &mut Validator) {
        if let Some(name) = &self.full_name {
            check.length("full_name", name, 1, 255);
        }
        if let Some(goal) = self.daily_goal {
            check.range("daily_goal", goal, 1, 200);
        }
        if let Some(Some(language)) = &self.preferred_language
            && !matches!(language.as_str(), "en" | "el")
        {
            check.error("preferred_language", "must be \"en\" or \"el\"");
        }
    }

    pub fn into_proto(self) -> pb::UpdateProfileRequest {
        pb::UpdateProfileRequest {
            full_name: self.full_name,
            // Validated to 1..=200.
            daily_goal: self.daily_goal.map(|goal| goal as u32),
            email_notifications: self.email_notifications,
            clear_preferred_language: matches!(self.preferred_language, Some(None)),
            preferred_language: self.preferred_language.flatten(),
        }
    }
}

// ------------------------------------------------------------------ responses

/// The token pair of register, login and refresh.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: TokenType,
    /// Seconds until the access token expires.
    pub expires_in: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    Bearer,
}

impl From<pb::TokenPair> for TokenResponse {
    fn from(pair: pb::TokenPair) -> Self {
        Self {
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
            token_type: TokenType::Bearer,
            expires_in: pair.expires_in,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutResponse {
    pub success: bool,
    pub message: &'static str,
    /// True only if a live session of the caller was ended.
    pub token_revoked: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutAllResponse {
    pub success: bool,
    pub message: String,
    /// Live sessions ended.
    pub sessions_revoked: u32,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeSessionResponse {
    pub success: bool,
    pub message: &'static str,
    pub token_revoked: bool,
}

/// One of the caller's live sessions.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Session {
    /// Equals the `sid` claim of the session's tokens.
    #[schema(format = Uuid)]
    pub id: String,
    pub created_at: Timestamp,
    pub last_used_at: Timestamp,
    pub expires_at: Timestamp,
    #[schema(required = true)]
    pub ip_address: Option<String>,
    #[schema(required = true)]
    pub user_agent: Option<String>,
    /// The session of the access token used for this call.
    pub current: bool,
}

impl TryFrom<pb::Session> for Session {
    type Error = Breach;

    fn try_from(session: pb::Session) -> Result<Self, Breach> {
        Ok(Self {
            id: session.id,
            created_at: Timestamp::required(session.created_at.as_ref(), "session.created_at")?,
            last_used_at: Timestamp::required(
                session.last_used_at.as_ref(),
                "session.last_used_at",
            )?,
            expires_at: Timestamp::required(session.expires_at.as_ref(), "session.expires_at")?,
            ip_address: non_empty(session.ip_address),
            user_agent: non_empty(session.user_agent),
            current: session.current,
        })
    }
}

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionList {
    pub sessions: Vec<Session>,
    pub total: usize,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[schema(format = Uuid)]
    pub id: String,
    #[schema(format = Uuid)]
    pub user_id: String,
    pub daily_goal: u32,
    pub email_notifications: bool,
    #[schema(required = true, value_type = Option<Language>)]
    pub preferred_language: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[schema(format = Uuid)]
    pub id: String,
    pub email: String,
    pub full_name: String,
    pub is_active: bool,
    pub is_superuser: bool,
    #[schema(required = true)]
    pub email_verified_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub settings: Settings,
}

impl TryFrom<pb::Profile> for Profile {
    type Error = Breach;

    fn try_from(profile: pb::Profile) -> Result<Self, Breach> {
        let settings = profile.settings.ok_or(Breach("profile.settings"))?;
        Ok(Self {
            id: profile.id,
            email: profile.email,
            full_name: profile.full_name,
            is_active: profile.is_active,
            is_superuser: profile.is_superuser,
            email_verified_at: Timestamp::of(profile.email_verified_at.as_ref()),
            created_at: Timestamp::required(profile.created_at.as_ref(), "profile.created_at")?,
            updated_at: Timestamp::required(profile.updated_at.as_ref(), "profile.updated_at")?,
            settings: Settings {
                id: settings.id,
                user_id: settings.user_id,
                daily_goal: settings.daily_goal,
                email_notifications: settings.email_notifications,
                preferred_language: settings.preferred_language,
                created_at: Timestamp::required(
                    settings.created_at.as_ref(),
                    "settings.created_at",
                )?,
                updated_at: Timestamp::required(
                    settings.updated_at.as_ref(),
                    "settings.updated_at",
                )?,
            },
        })
    }
}
