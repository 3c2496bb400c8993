//! A small JSON-Schema check of responses against the gateway's OpenAPI document:
//! `$ref`, `type` (one or several, `null` included), `properties`, `required`,
//! `additionalProperties`, `items`, `enum`, `oneOf`, and the formats `uuid`,
//! `date-time` (RFC 3339 UTC with `Z`) and `date`. Enough to catch a renamed,
//! missing, extra or wrongly typed field.

#![allow(dead_code)]

use serde_json::Value;
use test_support::http::HttpResponse;

/// The OpenAPI document the gateway serves (the same file it includes).
pub fn document() -> Value {
    serde_json::from_str(include_str!("../../src/openapi.json")).expect("openapi.json is JSON")
}

/// Asserts that `response` to `method` `template` (e.g. `GET`, `/api/v1/decks/{id}`)
/// is documented and matches its schema.
pub fn assert_documented(doc: &Value, method: &str, template: &str, response: &HttpResponse) {
    let operation = &doc["paths"][template][method.to_ascii_lowercase()];
    assert!(
        operation.is_object(),
        "{method} {template} is not in the OpenAPI document"
    );
    let documented = &operation["responses"][response.status.to_string()];
    assert!(
        documented.is_object(),
        "{method} {template}: status {} is not documented: {}",
        response.status,
        response.text()
    );
    let Some(content) = documented["content"].as_object() else {
        assert!(
            response.body.is_empty(),
            "{method} {template}: undocumented body {}",
            response.text()
        );
        return;
    };
    let (media_type, media) = content.iter().next().expect("one media type");
    assert!(
        response
            .header("content-type")
            .is_some_and(|ct| ct.starts_with(media_type.as_str())),
        "{method} {template}: content type {:?}, documented {media_type}",
        response.header("content-type")
    );
    let errors = validate(doc, &media["schema"], &response.json(), "$");
    assert!(
        errors.is_empty(),
        "{method} {template} {}: {errors:#?}\n{}",
        response.status,
        response.text()
    );
}

/// Every mismatch between `value` and `schema`, as `path: problem`.
pub fn validate(doc: &Value, schema: &Value, value: &Value, path: &str) -> Vec<String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or_default();
        return validate(doc, &doc["components"]["schemas"][name], value, path);
    }
    if let Some(options) = schema["oneOf"].as_array() {
        let matching = options
            .iter()
            .filter(|option| validate(doc, option, value, path).is_empty())
            .count();
        return if matching == 1 {
            vec![]
        } else {
            vec![format!("{path}: matches {matching} of oneOf")]
        };
    }
    let mut errors = Vec::new();
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !types.is_empty() && !types.iter().any(|t| type_matches(t, value)) {
        return vec![format!("{path}: {value} is not {types:?}")];
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(format!("{path}: {value} not in {allowed:?}"));
    }
    if let (Some(format), Some(text)) = (schema["format"].as_str(), value.as_str())
        && !format_matches(format, text)
    {
        errors.push(format!("{path}: {text:?} is not a {format}"));
    }
    if let Some(object) = value.as_object() {
        let properties = schema["properties"].as_object();
        for required in schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !object.contains_key(required) {
                errors.push(format!("{path}: missing {required}"));
            }
        }
        for (key, item) in object {
            match properties.and_then(|p| p.get(key)) {
                Some(property) => {
                    errors.extend(validate(doc, property, item, &format!("{path}.{key}")))
                }
                None => match &schema["additionalProperties"] {
                    Value::Bool(false) => errors.push(format!("{path}: unexpected field {key}")),
                    extra @ Value::Object(_) => {
                        errors.extend(validate(doc, extra, item, &format!("{path}.{key}")))
                    }
                    _ => {}
                },
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (index, item) in array.iter().enumerate() {
            errors.extend(validate(doc, items, item, &format!("{path}[{index}]")));
        }
    }
    errors
}

fn type_matches(expected: &str, value: &Value) -> bool {
    match expected {
        "null" => value.is_null(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    }
}

fn format_matches(format: &str, text: &str) -> bool {
    match format {
        "uuid" => uuid::Uuid::parse_str(text).is_ok_and(|id| id.hyphenated().to_string() == text),
        "date" => time::Date::parse(
            text,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .is_ok(),
        "date-time" => {
            text.ends_with('Z')
                && time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .is_ok()
        }
        _ => true,
    }
}

#[test]
fn the_checker_catches_missing_extra_and_mistyped_fields() {
    let doc = document();
    let deck = serde_json::json!({
        "id": "6f9619ff-8b86-d011-b42d-00c04fc964ff", "name": "x", "description": null, "level": "A1",
        "is_active": true, "created_at": "2026-11-26T10:00:00.000000Z", "updated_at": "2026-11-26T10:00:00Z"
    });
    let schema = serde_json::json!({"$ref": "#/components/schemas/Deck"});
    assert!(validate(&doc, &schema, &deck, "$").is_empty());

    let mut extra = deck.clone();
    extra["surprise"] = 1.into();
    let mut missing = deck.clone();
    missing.as_object_mut().unwrap().remove("level");
    let mut mistyped = deck.clone();
    mistyped["level"] = "a1".into();
    let mut offset = deck.clone();
    offset["created_at"] = "2026-11-26T10:00:00+02:00".into();

    for bad in [extra, missing, mistyped, offset] {
        assert!(!validate(&doc, &schema, &bad, "$").is_empty(), "{bad}");
    }
}
