//! Request values parsed once at the edge into types that are valid by construction.
//! Each field parser's error is a [`Violation`] naming the field as the client sent it
//! (HTTP_API.md, Errors); a request parser reports every bad field of the request at once.

use common::{config::Secret, status::Violation};
use proto::session::v1 as pb;
use uuid::Uuid;

use crate::error::Error;

/// The violations among `checks` (those that failed), as one error.
fn refused(checks: impl IntoIterator<Item = Option<Violation>>) -> Error {
    Error::InvalidArgument(checks.into_iter().flatten().collect())
}

/// A syntactically plausible e-mail address, trimmed and lower-cased (addresses are
/// compared case-insensitively everywhere).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, Violation> {
        let email = raw.trim().to_lowercase();
        let invalid = || Violation::new("email", "must be a valid e-mail address");
        if email.is_empty() {
            return Err(Violation::new("email", "must not be empty"));
        }
        if email.chars().count() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid());
        }
        let (local, domain) = email.rsplit_once('@').ok_or_else(invalid)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !domain.contains('@');
        if local.is_empty() || local.chars().count() > 64 || !domain_ok {
            return Err(invalid());
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password as submitted; never logged.
pub type Password = Secret<String>;

/// A new password that meets the rules: 8–100 characters, at least one letter and one digit.
pub fn new_password(raw: &str) -> Result<Password, Violation> {
    let length = raw.chars().count();
    if !(8..=100).contains(&length) {
        return Err(Violation::new(
            "password",
            "must be 8 to 100 characters long",
        ));
    }
    if !raw.chars().any(char::is_alphabetic) || !raw.chars().any(|c| c.is_ascii_digit()) {
        return Err(Violation::new(
            "password",
            "must contain a letter and a digit",
        ));
    }
    Ok(Secret::new(raw.to_owned()))
}

/// A login password: only bounded, so a megabyte "password" never reaches argon2.
pub fn login_password(raw: &str) -> Result<Password, Violation> {
    if raw.is_empty() {
        return Err(Violation::new("password", "must not be empty"));
    }
    if raw.len() > 1024 {
        return Err(Violation::new("password", "is too long"));
    }
    Ok(Secret::new(raw.to_owned()))
}

/// A display name of 1–255 characters (surrounding white space removed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FullName(String);

impl FullName {
    pub fn parse(raw: &str) -> Result<Self, Violation> {
        let name = raw.trim();
        match name.chars().count() {
            0 => Err(Violation::new("full_name", "must not be empty")),
            1..=255 => Ok(Self(name.to_owned())),
            _ => Err(Violation::new(
                "full_name",
                "must be at most 255 characters long",
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Cards per day the user aims for: 1–200.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DailyGoal(i32);

impl DailyGoal {
    pub fn parse(raw: u32) -> Result<Self, Violation> {
        match raw {
            1..=200 => Ok(Self(raw as i32)),
            _ => Err(Violation::new("daily_goal", "must be between 1 and 200")),
        }
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

/// Interface language: "en" or "el".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    En,
    El,
}

impl Language {
    pub fn parse(raw: &str) -> Result<Self, Violation> {
        match raw {
            "en" => Ok(Self::En),
            "el" => Ok(Self::El),
            _ => Err(Violation::new(
                "preferred_language",
                "must be \"en\" or \"el\"",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::El => "el",
        }
    }
}

/// A session id sent by a client.
pub fn session_id(raw: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(raw.trim()).map_err(|_| Error::invalid("session_id", "must be a UUID"))
}

/// A Register request, valid.
#[derive(Debug)]
pub struct Registration {
    pub email: Email,
    pub password: Password,
    pub full_name: FullName,
    pub client: ClientInfo,
}

impl Registration {
    pub fn from_proto(request: pb::RegisterRequest) -> Result<Self, Error> {
        match (
            Email::parse(&request.email),
            new_password(&request.password),
            FullName::parse(&request.full_name),
        ) {
            (Ok(email), Ok(password), Ok(full_name)) => Ok(Self {
                email,
                password,
                full_name,
                client: ClientInfo::from_proto(request.client),
            }),
            (email, password, full_name) => {
                Err(refused([email.err(), password.err(), full_name.err()]))
            }
        }
    }
}

/// A Login request, valid (as far as its shape goes: the password is checked later).
#[derive(Debug)]
pub struct Credentials {
    pub email: Email,
    pub password: Password,
    pub client: ClientInfo,
}

impl Credentials {
    pub fn from_proto(request: pb::LoginRequest) -> Result<Self, Error> {
        match (
            Email::parse(&request.email),
            login_password(&request.password),
        ) {
            (Ok(email), Ok(password)) => Ok(Self {
                email,
                password,
                client: ClientInfo::from_proto(request.client),
            }),
            (email, password) => Err(refused([email.err(), password.err()])),
        }
    }
}

/// Where a login or refresh comes from, bounded so Redis never stores a novel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub ip_address: String,
    pub user_agent: String,
}

impl ClientInfo {
    pub fn from_proto(client: Option<pb::ClientInfo>) -> Self {
        let client = client.unwrap_or_default();
        Self {
            ip_address: truncate(client.ip_address.trim(), 64),
            user_agent: truncate(&client.user_agent, 512),
        }
    }
}

fn truncate(value: &str, max_chars: usize) -> String {
    value
        .chars()
        .filter(|c| !c.is_control())
        .take(max_chars)
        .collect()
}

/// The changes of an UpdateProfile call, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfileUpdate {
    pub full_name: Option<FullName>,
    pub daily_goal: Option<DailyGoal>,
    pub email_notifications: Option<bool>,
    /// `Some(None)` clears the language.
    pub preferred_language: Option<Option<Language>>,
}

impl ProfileUpdate {
    pub fn from_proto(request: pb::UpdateProfileRequest) -> Result<Self, Error> {
        let preferred_language = match (
            request.clear_preferred_language,
            request.preferred_language.as_deref(),
        ) {
            (true, Some(_)) => Err(Violation::new(
                "preferred_language",
                "cannot be set and cleared in the same request",
            )),
            (true, None) => Ok(Some(None)),
            (false, language) => language
                .map(Language::parse)
                .transpose()
                .map(|l| l.map(Some)),
        };
        match (
            request
                .full_name
                .as_deref()
                .map(FullName::parse)
                .transpose(),
            request.daily_goal.map(DailyGoal::parse).transpose(),
            preferred_language,
        ) {
            (Ok(full_name), Ok(daily_goal), Ok(preferred_language)) => Ok(Self {
                full_name,
                daily_goal,
                email_notifications: request.email_notifications,
                preferred_language,
            }),
            (full_name, daily_goal, preferred_language) => Err(refused([
                full_name.err(),
                daily_goal.err(),
                preferred_language.err(),
            ])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(violation: Violation) -> String {
        violation.field
    }

    /// The fields named by a request parser's error, in order.
    fn fields_of(error: Error) -> Vec<String> {
        match error {
            Error::InvalidArgument(violations) => violations
                .into_iter()
                .map(|violation| violation.field)
                .collect(),
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(
            Email::parse("  Maria@Example.COM ").unwrap().as_str(),
            "maria@example.com"
        );
    }

    #[test]
    fn malformed_emails_are_rejected_naming_the_field() {
        for raw in [
            "",
            "maria",
            "maria@",
            "@example.com",
            "maria@example",
            "ma ria@example.com",
            "a@b@.com",
        ] {
            assert_eq!(field_of(Email::parse(raw).unwrap_err()), "email", "{raw:?}");
        }
    }

    #[test]
    fn passwords_need_eight_characters_a_letter_and_a_digit() {
        assert!(new_password("abcdefg1").is_ok());
        assert!(new_password("καλημέρα1").is_ok());
        for raw in ["abc1", "abcdefgh", "12345678", &"a1".repeat(51)] {
            assert_eq!(
                field_of(new_password(raw).unwrap_err()),
                "password",
                "{raw:?}"
            );
        }
    }

    #[test]
    fn full_names_must_have_one_to_255_characters() {
        assert_eq!(FullName::parse(" Μαρία ").unwrap().as_str(), "Μαρία");
        assert_eq!(field_of(FullName::parse("   ").unwrap_err()), "full_name");
        assert_eq!(
            field_of(FullName::parse(&"x".repeat(256)).unwrap_err()),
            "full_name"
        );
    }

    #[test]
    fn profile_updates_validate_every_given_field() {
        let request = |f: fn(&mut pb::UpdateProfileRequest)| {
            let mut request = pb::UpdateProfileRequest::default();
            f(&mut request);
            ProfileUpdate::from_proto(request)
        };
        assert_eq!(
            fields_of(request(|r| r.daily_goal = Some(0)).unwrap_err()),
            ["daily_goal"]
        );
        assert_eq!(
            fields_of(request(|r| r.daily_goal = Some(201)).unwrap_err()),
            ["daily_goal"]
        );
        assert_eq!(
            fields_of(request(|r| r.preferred_language = Some("fr".into())).unwrap_err()),
            ["preferred_language"]
        );
        assert_eq!(
            fields_of(
                request(|r| {
                    r.preferred_language = Some("en".into());
                    r.clear_preferred_language = true;
                })
                .unwrap_err()
            ),
            ["preferred_language"]
        );
        assert_eq!(
            fields_of(
                request(|r| {
                    r.full_name = Some(" ".into());
                    r.daily_goal = Some(0);
                    r.preferred_language = Some("fr".into());
                })
                .unwrap_err()
            ),
            ["full_name", "daily_goal", "preferred_language"],
            "every bad field at once"
        );
        let clear = request(|r| r.clear_preferred_language = true).unwrap();
        assert_eq!(clear.preferred_language, Some(None));
        assert_eq!(request(|_| {}).unwrap(), ProfileUpdate::default());
    }

    #[test]
    fn a_registration_reports_every_bad_field_in_request_order() {
        let registration = Registration::from_proto(pb::RegisterRequest {
            email: "maria".into(),
            password: "short".into(),
            full_name: String::new(),
            client: None,
        });

        assert_eq!(
            fields_of(registration.unwrap_err()),
            ["email", "password", "full_name"]
        );
        let login = Credentials::from_proto(pb::LoginRequest {
            email: "maria@example.com".into(),
            password: String::new(),
            client: None,
        });
        assert_eq!(fields_of(login.unwrap_err()), ["password"]);
    }

    #[test]
    fn client_info_is_truncated_and_stripped_of_control_characters() {
        let info = ClientInfo::from_proto(Some(pb::ClientInfo {
            ip_address: " 10.0.0.1 ".into(),
            user_agent: format!("a\nb{}", "x".repeat(600)),
        }));
        assert_eq!(info.ip_address, "10.0.0.1");
        assert!(info.user_agent.starts_with("ab"));
        assert_eq!(info.user_agent.chars().count(), 512);
    }
}
