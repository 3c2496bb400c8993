//! Parsing at the edge: JSON bodies, query strings and path ids become typed values
//! here, and every failure becomes a 422 problem naming the field. Also [`Ctx`], the
//! per-request context that turns a message into a gRPC request with the caller's
//! token, the request id and the remaining deadline.

use std::{collections::HashMap, future::Future};

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Query, Request, rejection::BytesRejection},
};
use common::auth::Caller;
use http::{HeaderMap, StatusCode, header, request::Parts};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::time::Instant;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    error::{ApiError, FieldError},
    middleware::{Auth, ClientIp, Deadline, MAX_BODY_BYTES, REQUEST_ID, RequestId},
    wire::{Choice, Spelled},
};

/// A JSON body of type `T`; a body that does not parse is a 422 naming the full path of
/// the offending field as the client sent it (`cards[1].order_index`), also for a
/// missing one (`cards[1].back_text`); a body over the limit is a 413.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + ToSchema> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(ApiError::field(
                "body",
                "expected a JSON body with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(bytes_rejection)?;
        parse_body(&bytes).map(Self)
    }
}

/// `application/json` or `application/<anything>+json`, parameters aside.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(essence) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
    else {
        return false;
    };
    let essence = essence.trim().to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn bytes_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body exceeds {MAX_BODY_BYTES} bytes"),
        )
    } else {
        ApiError::field("body", rejection.body_text())
    }
}

/// `bytes` as a `T`, or the 422 naming where it went wrong.
pub fn parse_body<T: DeserializeOwned + ToSchema>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|error| body_error::<T>(&error, bytes))?;
    deserializer
        .end()
        .map_err(|error| ApiError::field("body", format!("invalid JSON: {}", bare(&error))))?;
    Ok(value)
}

fn body_error<T: ToSchema>(
    error: &serde_path_to_error::Error<serde_json::Error>,
    bytes: &[u8],
) -> ApiError {
    let inner = error.inner();
    if !inner.is_data() {
        return ApiError::field("body", format!("invalid JSON: {}", bare(inner)));
    }
    let path = field_path(error.path());
    // serde reports a missing field at the object that lacks it; the field is the first
    // required property of that object's schema (derived from `T`) that the body lacks.
    if let Some(missing) = missing_field::<T>(error.path(), bytes) {
        let field = if path.is_empty() {
            missing
        } else {
            format!("{path}.{missing}")
        };
        return ApiError::field(&field, "field required");
    }
    let field = if path.is_empty() { "body" } else { &path };
    ApiError::field(field, bare(inner))
}

/// serde_json's message without the position it appends (" at line 1 column 9"),
/// which says nothing to a client that built the body from an object.
fn bare(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    match text.strip_suffix(&position) {
        Some(message) => message.to_owned(),
        None => text,
    }
}

/// A path as the client wrote it: `cards[1].back_text`; empty for the root.
fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut text = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => text.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    text
}

/// The first required property of `T`'s schema at `path` that the body's object at
/// `path` lacks. Only on the error path: it re-reads the body and the schema.
fn missing_field<T: ToSchema>(path: &serde_path_to_error::Path, bytes: &[u8]) -> Option<String> {
    use serde_path_to_error::Segment;
    let body: Value = serde_json::from_slice(bytes).ok()?;
    let mut components = Vec::new();
    T::schemas(&mut components);
    let components: HashMap<String, Value> = components
        .into_iter()
        .filter_map(|(name, schema)| Some((name, serde_json::to_value(schema).ok()?)))
        .collect();
    let schemas = Schemas(&components);
    let mut schema = serde_json::to_value(T::schema()).ok()?;
    let mut value = &body;
    for segment in path.iter() {
        (schema, value) = match segment {
            Segment::Seq { index } => (schemas.items(&schema)?, value.get(index)?),
            Segment::Map { key } => (schemas.property(&schema, key)?, value.get(key)?),
            Segment::Enum { .. } | Segment::Unknown => return None,
        };
    }
    let object = value.as_object()?;
    schemas
        .required(&schema)
        .into_iter()
        .find(|name| !object.contains_key(name))
}

/// Just enough of JSON Schema to follow a path: `$ref`, `allOf` (serde's `flatten`),
/// a nullable `oneOf`, `properties`, `items`, `required`.
struct Schemas<'a>(&'a HashMap<String, Value>);

impl Schemas<'_> {
    /// `schema` with `$ref`s followed and a nullable `oneOf [null, X]` taken as `X`.
    fn resolve(&self, schema: &Value) -> Option<Value> {
        if let Some(reference) = schema["$ref"].as_str() {
            let name = reference.rsplit('/').next()?;
            return self.resolve(self.0.get(name)?);
        }
        if let Some(options) = schema["oneOf"].as_array() {
            let mut concrete = options.iter().filter(|option| option["type"] != "null");
            if let (Some(only), None) = (concrete.next(), concrete.next()) {
                return self.resolve(only);
            }
        }
        Some(schema.clone())
    }

    /// `schema` and the members of its `allOf`, resolved.
    fn parts(&self, schema: &Value) -> Vec<Value> {
        let Some(schema) = self.resolve(schema) else {
            return Vec::new();
        };
        let mut parts: Vec<Value> = schema["allOf"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|member| self.parts(member))
            .collect();
        parts.push(schema);
        parts
    }

    fn property(&self, schema: &Value, key: &str) -> Option<Value> {
        self.parts(schema)
            .into_iter()
            .find_map(|part| part["properties"].get(key).cloned())
    }

    fn items(&self, schema: &Value) -> Option<Value> {
        self.parts(schema)
            .into_iter()
            .find_map(|part| part.get("items").cloned())
    }

    fn required(&self, schema: &Value) -> Vec<String> {
        self.parts(schema)
            .iter()
            .flat_map(|part| part["required"].as_array().cloned().unwrap_or_default())
            .filter_map(|name| name.as_str().map(str::to_owned))
            .collect()
    }
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

    /// The value of an enum field; `None` (and an error naming `field`) when unknown.
    pub fn choice<T: Spelled>(&mut self, field: &str, value: &Choice<T>) -> Option<T> {
        match value {
            Choice::Known(value) => Some(*value),
            Choice::Unknown => {
                self.error(field, T::EXPECTED);
                None
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

    /// An enum value spelled as the contract says; an error naming the accepted values
    /// otherwise.
    pub fn choice<T: Spelled>(&mut self, name: &str) -> Option<T> {
        let value = self.values.get(name)?;
        match T::parse(value) {
            Some(parsed) => Some(parsed),
            None => {
                self.check.error(name, T::EXPECTED);
                None
            }
        }
    }

    pub fn finish(self) -> Result<(), ApiError> {
        self.check.finish()
    }
}

/// The most of a `User-Agent` a session records, in characters.
pub const MAX_USER_AGENT_CHARS: usize = 512;

/// The context a handler needs to call a service on behalf of this request. Taking it
/// copies nothing but reference counts: the request id and the token are already in
/// their gRPC form ([`RequestId`], [`Auth`]), and the `User-Agent` is only read by
/// the few routes that record it ([`Ctx::client_info`]).
#[derive(Clone, Debug)]
pub struct Ctx {
    pub request_id: RequestId,
    pub deadline: Instant,
    pub client_ip: std::net::IpAddr,
    pub user_agent: Option<http::HeaderValue>,
    pub auth: Option<Auth>,
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId::of(None));
        let deadline = parts.extensions.get::<Deadline>().map_or_else(
            || Instant::now() + std::time::Duration::from_secs(10),
            |deadline| deadline.0,
        );
        let client_ip = parts
            .extensions
            .get::<ClientIp>()
            .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |ip| ip.0);
        let user_agent = parts.headers.get(http::header::USER_AGENT).cloned();
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

    /// The client's address and `User-Agent` (at most [`MAX_USER_AGENT_CHARS`]), as a
    /// session records them.
    pub fn client_info(&self) -> proto::session::v1::ClientInfo {
        let user_agent = self
            .user_agent
            .as_ref()
            .map(|value| {
                String::from_utf8_lossy(value.as_bytes())
                    .chars()
                    .take(MAX_USER_AGENT_CHARS)
                    .collect()
            })
            .unwrap_or_default();
        proto::session::v1::ClientInfo {
            ip_address: self.client_ip.to_string(),
            user_agent,
        }
    }

    /// `message` as a gRPC request carrying the token, the request id and the time left.
    pub fn grpc<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.deadline.saturating_duration_since(Instant::now()));
        let metadata = request.metadata_mut();
        metadata.insert(REQUEST_ID, self.request_id.metadata());
        if let Some(auth) = &self.auth {
            metadata.insert("authorization", auth.authorization.clone());
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
            Ok(Err(status)) => Err(ApiError::from_call(status, Instant::now() >= self.deadline)),
            Err(_) => Err(ApiError::timeout()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
    #[allow(dead_code)]
    struct Item {
        front: String,
        back: String,
        #[serde(default)]
        order: i64,
        note: Option<String>,
    }

    #[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
    #[allow(dead_code)]
    struct Bulk {
        deck: String,
        items: Vec<Item>,
    }

    #[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
    #[allow(dead_code)]
    struct Flat {
        deck: String,
        #[serde(flatten)]
        item: Item,
    }

    fn rejected<T: DeserializeOwned + ToSchema + std::fmt::Debug>(body: &str) -> FieldError {
        let error = parse_body::<T>(body.as_bytes()).unwrap_err();
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.errors.len(), 1, "{error:?}");
        error.errors[0].clone()
    }

    #[test]
    fn a_missing_field_is_named_by_its_full_path_also_inside_a_list() {
        assert_eq!(
            rejected::<Bulk>(
                r#"{"deck": "d", "items": [{"front": "a", "back": "b"}, {"front": "a"}]}"#
            ),
            FieldError::new("items[1].back", "field required")
        );
        assert_eq!(
            rejected::<Bulk>(r#"{"items": []}"#),
            FieldError::new("deck", "field required")
        );
        assert_eq!(
            rejected::<Flat>(r#"{"deck": "d", "back": "b"}"#),
            FieldError::new("front", "field required")
        );
    }

    #[test]
    fn a_wrong_type_is_named_by_its_full_path_without_positions() {
        assert_eq!(
            rejected::<Bulk>(
                r#"{"deck": "d", "items": [{"front": "a", "back": "b", "order": "x"}]}"#
            ),
            FieldError::new("items[0].order", "invalid type: string \"x\", expected i64")
        );
        assert_eq!(
            rejected::<Bulk>(r#"{"deck": 1, "items": []}"#).field,
            "deck"
        );
    }

    fn ctx(deadline: Instant) -> Ctx {
        Ctx {
            request_id: RequestId::of(None),
            deadline,
            client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            user_agent: None,
            auth: None,
        }
    }

    /// The `Ctx` a request with these headers and extensions gets.
    async fn ctx_of(request: http::Request<()>) -> Ctx {
        let (mut parts, ()) = request.into_parts();
        Ctx::from_request_parts(&mut parts, &()).await.unwrap()
    }

    #[tokio::test]
    async fn each_service_call_carries_the_request_id_and_the_callers_bearer_token() {
        let caller = Caller {
            user_id: Uuid::new_v4(),
            session_id: Uuid::new_v4(),
            is_superuser: false,
            issued_at: 0,
            expires_at: 0,
        };
        let mut request = http::Request::new(());
        let id = http::HeaderValue::from_static("client-id-7");
        request.extensions_mut().insert(RequestId::of(Some(&id)));
        request
            .extensions_mut()
            .insert(Auth::new(caller, "aaa.bbb.ccc").unwrap());
        let ctx = ctx_of(request).await;

        for call in [ctx.grpc(()), ctx.grpc(())] {
            let metadata = call.metadata();
            assert_eq!(metadata.get(REQUEST_ID).unwrap(), "client-id-7");
            let authorization = metadata.get("authorization").unwrap();
            assert_eq!(authorization, "Bearer aaa.bbb.ccc");
            assert!(authorization.is_sensitive());
        }
        assert!(
            ctx_of(http::Request::new(()))
                .await
                .grpc(())
                .metadata()
                .get("authorization")
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_session_records_at_most_512_characters_of_the_user_agent() {
        let long = "Ω".repeat(MAX_USER_AGENT_CHARS + 10);
        let request = http::Request::builder()
            .header(http::header::USER_AGENT, long.as_str())
            .body(())
            .unwrap();

        let info = ctx_of(request).await.client_info();

        assert_eq!(info.user_agent.chars().count(), MAX_USER_AGENT_CHARS);
        assert!(long.starts_with(&info.user_agent));
        assert_eq!(
            ctx_of(http::Request::new(()))
                .await
                .client_info()
                .user_agent,
            ""
        );
    }

    async fn cancelled() -> Result<tonic::Response<()>, tonic::Status> {
        Err(tonic::Status::cancelled("Timeout expired"))
    }

    #[tokio::test]
    async fn a_cancelled_call_is_504_once_the_requests_deadline_passed_and_499_before() {
        let now = Instant::now();
        let passed = ctx(now - std::time::Duration::from_millis(1));
        let ahead = ctx(now + std::time::Duration::from_secs(30));

        let after = passed.call(cancelled()).await.unwrap_err();
        let before = ahead.call(cancelled()).await.unwrap_err();

        assert_eq!(after.status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(before.status.as_u16(), 499);
    }

    #[tokio::test]
    async fn a_call_that_never_answers_is_504_soon_after_the_requests_deadline() {
        let soon = ctx(Instant::now() + std::time::Duration::from_millis(100));
        let never = std::future::pending::<Result<tonic::Response<()>, tonic::Status>>();

        let answer = tokio::time::timeout(std::time::Duration::from_secs(10), soon.call(never))
            .await
            .expect("the backstop ends the call at the request's deadline");

        assert_eq!(answer.unwrap_err().status, StatusCode::GATEWAY_TIMEOUT);
    }

    #[test]
    fn bad_json_is_a_body_error() {
        for body in ["{not json", r#"{"deck": "d", "items": []} trailing"#, "[]"] {
            assert_eq!(rejected::<Bulk>(body).field, "body", "{body}");
        }
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
