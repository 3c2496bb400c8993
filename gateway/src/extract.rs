//! Parsing at the edge: JSON bodies, query strings and path ids become typed values
//! here, and every failure becomes a 422 problem naming the field. Also [`Ctx`], the
//! per-request context that turns a message into a gRPC request with the caller's
//! token, the request id and the remaining deadline.

use std::{collections::HashMap, future::Future};

use axum::{
    Json,
    extract::{FromRequest, FromRequestParts, Query, Request, rejection::JsonRejection},
};
use common::auth::Caller;
use http::{StatusCode, request::Parts};
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use uuid::Uuid;

use crate::{
    error::{ApiError, FieldError},
    middleware::{Auth, ClientIp, Deadline, MAX_BODY_BYTES, REQUEST_ID, RequestId},
};

/// A JSON body whose rejections are 422 problems (413 when too large).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(error) => {
            let (field, message) = split_serde_message(&error.body_text());
            ApiError::field(&field, message)
        }
        JsonRejection::JsonSyntaxError(error) => {
            let (_, message) = split_serde_message(&error.body_text());
            ApiError::field("body", format!("invalid JSON: {message}"))
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::field(
            "body",
            "expected a JSON body with Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(error) if error.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Request body exceeds {MAX_BODY_BYTES} bytes"),
            )
        }
        other => ApiError::field("body", other.body_text()),
    }
}

/// Splits axum's serde message ("Failed to deserialize ...: cards[0].difficulty: unknown
/// variant ... at line 1 column 9") into the field and a message without positions.
fn split_serde_message(text: &str) -> (String, String) {
    let text = text
        .split_once("target type: ")
        .map_or(text, |(_, rest)| rest);
    let text = text
        .split_once("JSON body: ")
        .map_or(text, |(_, rest)| rest);
    let text = match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => text,
    };
    if let Some((path, message)) = text.split_once(": ")
        && !path.is_empty()
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']'))
    {
        return (path.to_owned(), message.to_owned());
    }
    if let Some(rest) = text.strip_prefix("missing field `")
        && let Some((field, _)) = rest.split_once('`')
    {
        return (field.to_owned(), "field required".to_owned());
    }
    ("body".to_owned(), text.to_owned())
}

/// Deserialises a field that may be absent, `null` or a value into
/// `None`, `Some(None)` and `Some(Some(value))` (PATCH semantics).
pub fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(deserializer).map(Some)
}

/// Collects field errors so one answer can name every bad field.
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// `value` must have between `min` and `max` characters (not bytes: Greek text).
    pub fn length(&mut self, field: &str, value: &str, min: usize, max: usize) {
        let count = value.chars().count();
        if count < min || count > max {
            if count < min && min == 1 {
                self.error(field, "must not be empty");
            } else if min == 0 {
                self.error(field, format!("must be at most {max} characters"));
            } else {
                self.error(field, format!("must be between {min} and {max} characters"));
            }
        }
    }

    pub fn range(&mut self, field: &str, value: i64, min: i64, max: i64) {
        if value < min || value > max {
            if max == i64::MAX {
                self.error(field, format!("must be at least {min}"));
            } else {
                self.error(field, format!("must be between {min} and {max}"));
            }
        }
    }

    pub fn uuid(&mut self, field: &str, value: &str) -> String {
        match parse_uuid(value) {
            Some(id) => id,
            None => {
                self.error(field, "must be a valid UUID");
                String::new()
            }
        }
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.errors))
        }
    }
}

/// A canonical (lowercase, hyphenated) UUID, or `None`.
pub fn parse_uuid(value: &str) -> Option<String> {
    Uuid::parse_str(value)
        .ok()
        .map(|id| id.hyphenated().to_string())
}

/// A path id; a malformed one is a 422 naming `field`.
pub fn path_id(field: &str, value: &str) -> Result<String, ApiError> {
    parse_uuid(value).ok_or_else(|| ApiError::field(field, "must be a valid UUID"))
}

/// A `YYYY-MM-DD` date.
pub fn valid_date(value: &str) -> bool {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    value.len() == 10 && time::Date::parse(value, &format).is_ok()
}

/// The query string, parsed into named values (the last of repeated names wins).
#[derive(Debug, Default)]
pub struct Params {
    values: HashMap<String, String>,
    pub check: Validator,
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::field("query", rejection.body_text()))?;
        Ok(Self {
            values: pairs.into_iter().collect(),
            check: Validator::new(),
        })
    }
}

impl Params {
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// An integer in `min..=max`, `default` when absent.
    pub fn int(&mut self, name: &str, default: i64, min: i64, max: i64) -> i64 {
        match self.values.get(name).map(|v| v.trim().parse::<i64>()) {
            None => default,
            Some(Ok(value)) => {
                self.check.range(name, value, min, max);
                value
            }
            Some(Err(_)) => {
                self.check.error(name, "must be an integer");
                default
            }
        }
    }

    /// `page` ≥ 1 (default 1) and `page_size` in `1..=max` (default `default_size`).
    pub fn page(&mut self, default_size: i64, max_size: i64) -> (u32, u32) {
        let page = self.int("page", 1, 1, i64::from(u32::MAX));
        let size = self.int("page_size", default_size, 1, max_size);
        (page as u32, size as u32)
    }

    pub fn boolean(&mut self, name: &str, default: bool) -> bool {
        match self.values.get(name).map(|v| v.to_ascii_lowercase()) {
            None => default,
            Some(value) => match value.as_str() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" => false,
                _ => {
                    self.check.error(name, "must be true or false");
                    default
                }
            },
        }
    }

    pub fn optional_uuid(&mut self, name: &str) -> Option<String> {
        let value = self.values.get(name)?.clone();
        Some(self.check.uuid(name, &value))
    }

    pub fn required_uuid(&mut self, name: &str) -> String {
        match self.values.get(name).cloned() {
            Some(value) => self.check.uuid(name, &value),
            None => {
                self.check.error(name, "field required");
                String::new()
            }
        }
    }

    /// A required text of `min..=max` characters.
    pub fn text(&mut self, name: &str, min: usize, max: usize) -> String {
        match self.values.get(name).cloned() {
            Some(value) => {
                self.check.length(name, &value, min, max);
                value
            }
            None => {
                self.check.error(name, "field required");
                String::new()
            }
        }
    }

    pub fn optional_date(&mut self, name: &str) -> Option<String> {
        let value = self.values.get(name)?.clone();
        if !valid_date(&value) {
            self.check.error(name, "must be a date YYYY-MM-DD");
        }
        Some(value)
    }

    /// A value parsed by `parse`, which names the accepted values on failure.
    pub fn choice<T>(
        &mut self,
        name: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        let value = self.values.get(name)?.clone();
        match parse(&value) {
            Ok(parsed) => Some(parsed),
            Err(message) => {
                self.check.error(name, message);
                None
            }
        }
    }

    pub fn finish(self) -> Result<(), ApiError> {
        self.check.finish()
    }
}

/// The context a handler needs to call a service on behalf of this request.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub request_id: String,
    pub deadline: Instant,
    pub client_ip: std::net::IpAddr,
    pub user_agent: String,
    pub auth: Option<Auth>,
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map(|id| id.0.clone())
            .unwrap_or_default();
        let deadline = parts.extensions.get::<Deadline>().map_or_else(
            || Instant::now() + std::time::Duration::from_secs(10),
            |deadline| deadline.0,
        );
        let client_ip = parts
            .extensions
            .get::<ClientIp>()
            .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |ip| ip.0);
        let user_agent: String = parts
            .headers
            .get(http::header::USER_AGENT)
            .map(|value| {
                String::from_utf8_lossy(value.as_bytes())
                    .chars()
                    .take(512)
                    .collect()
            })
            .unwrap_or_default();
        let auth = parts.extensions.get::<Auth>().cloned();
        Ok(Self {
            request_id,
            deadline,
            client_ip,
            user_agent,
            auth,
        })
    }
}

impl Ctx {
    /// The verified caller (every route behind `authenticate` has one).
    pub fn caller(&self) -> Result<Caller, ApiError> {
        self.auth
            .as_ref()
            .map(|auth| auth.caller)
            .ok_or_else(|| ApiError::unauthorized("Not authenticated"))
    }

    /// 403 unless the caller is a superuser.
    pub fn require_superuser(&self) -> Result<(), ApiError> {
        if self.caller()?.is_superuser {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }

    pub fn client_info(&self) -> proto::session::v1::ClientInfo {
        proto::session::v1::ClientInfo {
            ip_address: self.client_ip.to_string(),
            user_agent: self.user_agent.clone(),
        }
    }

    /// `message` as a gRPC request carrying the token, the request id and the time left.
    pub fn grpc<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.deadline.saturating_duration_since(Instant::now()));
        let metadata = request.metadata_mut();
        if let Ok(value) = self.request_id.parse() {
            metadata.insert(REQUEST_ID, value);
        }
        if let Some(auth) = &self.auth
            && let Ok(value) = format!("Bearer {}", auth.token).parse()
        {
            metadata.insert("authorization", value);
        }
        request
    }

    /// Awaits a service call, bounded by the deadline (a backstop for `grpc-timeout`,
    /// which a service may not honour), mapping its status to an [`ApiError`].
    pub async fn call<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, ApiError> {
        let grace = std::time::Duration::from_millis(50);
        match tokio::time::timeout_at(self.deadline + grace, call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(ApiError::from(status)),
            Err(_) => Err(ApiError::timeout()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_name_the_field_without_positions() {
        assert_eq!(
            split_serde_message(
                "Failed to deserialize the JSON body into the target type: quality: invalid type: string \"x\", expected i64 at line 1 column 20"
            ),
            (
                "quality".to_owned(),
                "invalid type: string \"x\", expected i64".to_owned()
            )
        );
        assert_eq!(
            split_serde_message(
                "Failed to deserialize the JSON body into the target type: missing field `email` at line 1 column 2"
            ),
            ("email".to_owned(), "field required".to_owned())
        );
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        let mut check = Validator::new();

        check.length("name", "Καλημέρα", 1, 8);

        assert!(check.finish().is_ok());
    }

    #[test]
    fn dates_and_uuids_are_strict() {
        assert!(valid_date("2026-11-26"));
        assert!(!valid_date("2026-13-01"));
        assert!(!valid_date("26-11-2026"));
        assert_eq!(
            parse_uuid("6F9619FF-8B86-D011-B42D-00C04FC964FF").as_deref(),
            Some("6f9619ff-8b86-d011-b42d-00c04fc964ff")
        );
        assert_eq!(parse_uuid("not-a-uuid"), None);
    }
}
