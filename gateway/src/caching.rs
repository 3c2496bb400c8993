//! What browsers and CDNs need to cache the API's answers correctly (HTTP_API.md,
//! Conventions):
//!
//! - [`conditional_get`]: a strong `ETag` on the GETs of a deck, a card and their lists,
//!   derived from the body, so any change a client could see changes it; `If-None-Match`
//!   naming it answers `304 Not Modified` with no body;
//! - [`coded_etag`]: a compressed answer's `ETag` names its coding (`"<digest>-br"`): a
//!   strong validator stands for one representation, and the br bytes are not the
//!   identity bytes. `If-None-Match` is compared on the digest, so either form matches;
//! - `Cache-Control`: [`PRIVATE_NO_CACHE`] on authenticated answers (one user's data,
//!   revalidated on each use), [`NO_STORE`] on the answers that carry tokens;
//! - `Vary: Accept-Encoding` on every answer (compression is tower-http's
//!   `CompressionLayer`, from [`COMPRESS_MIN_BYTES`]).

use axum::{
    body::Body,
    extract::Request,
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, StatusCode, header, response::Parts};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// `Cache-Control` of authenticated answers.
pub const PRIVATE_NO_CACHE: &str = "private, no-cache";
/// `Cache-Control` of the answers that carry tokens (RFC 6749 §5.1).
pub const NO_STORE: &str = "no-store";
/// Bodies of at least this many bytes are compressed when the client accepts it.
pub const COMPRESS_MIN_BYTES: u16 = 1024;
/// The content codings the gateway compresses with, as they appear in a coded `ETag`.
const CODINGS: [&str; 3] = ["zstd", "br", "gzip"];

/// Tags a `200` with the digest of its body and answers `304` when `If-None-Match`
/// names it. Route layer of the tagged GET routes, inside authentication, so the 304
/// still gets the caching, rate-limit and request-id headers of the 200.
pub async fn conditional_get(request: Request, next: Next) -> Response {
    let if_none_match: Vec<HeaderValue> = request
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .cloned()
        .collect();
    let response = next.run(request).await;
    if response.status() != StatusCode::OK {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // The handlers answer with bodies in memory: this only takes them out.
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(%error, "cannot read a response body to tag it");
            return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
                .into_response();
        }
    };
    let digest = digest(&body);
    if let Some(current) = named_by(&if_none_match, &digest) {
        return not_modified(parts, current);
    }
    parts
        .headers
        .insert(header::ETAG, entity_tag(&digest, None));
    Response::from_parts(parts, Body::from(body))
}

/// After compression: the `ETag` of a compressed answer names its coding.
pub fn coded_etag<B>(mut response: Response<B>) -> Response<B> {
    let headers = response.headers_mut();
    let coding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .filter(|coding| CODINGS.contains(coding));
    let digest = headers
        .get(header::ETAG)
        .and_then(|value| value.to_str().ok())
        .and_then(|tag| tag.strip_prefix('"')?.strip_suffix('"'));
    if let (Some(coding), Some(digest)) = (coding, digest) {
        let coded = entity_tag(digest, Some(coding));
        headers.insert(header::ETAG, coded);
    }
    response
}

/// The first 16 bytes of the body's SHA-256, in hex (written into one string, not one
/// per byte).
fn digest(body: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(32);
    for byte in &Sha256::digest(body)[..16] {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    hex
}

#[allow(
    clippy::expect_used,
    reason = "visible ASCII (hex digits, or a header's own text) in quotes, and a coding from \
              CODINGS: always a valid header value"
)]
fn entity_tag(digest: &str, coding: Option<&str>) -> HeaderValue {
    let tag = match coding {
        Some(coding) => format!("\"{digest}-{coding}\""),
        None => format!("\"{digest}\""),
    };
    HeaderValue::from_str(&tag).expect("hex digits and a coding name are a valid header value")
}

/// The tag in `If-None-Match` that names a representation with `digest`, as it goes on
/// the 304 (strong). The comparison is weak, as RFC 9110 §13.1.2 has it: `W/` is ignored.
fn named_by(if_none_match: &[HeaderValue], digest: &str) -> Option<HeaderValue> {
    let candidates = if_none_match
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim);
    for candidate in candidates {
        if candidate == "*" {
            return Some(entity_tag(digest, None));
        }
        let opaque = candidate.strip_prefix("W/").unwrap_or(candidate);
        let Some(inner) = opaque
            .strip_prefix('"')
            .and_then(|rest| rest.strip_suffix('"'))
        else {
            continue;
        };
        let (tagged, coding) = match inner.split_once('-') {
            Some((tagged, coding)) => (tagged, Some(coding)),
            None => (inner, None),
        };
        if tagged == digest && coding.is_none_or(|coding| CODINGS.contains(&coding)) {
            return Some(entity_tag(digest, coding));
        }
    }
    None
}

/// The 304 for a 200's `parts`: its headers but the body's own (RFC 9110 §15.4.5), and no body.
fn not_modified(mut parts: Parts, etag: HeaderValue) -> Response {
    parts.status = StatusCode::NOT_MODIFIED;
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::ETAG, etag);
    Response::from_parts(parts, Body::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn if_none_match(value: &str) -> Vec<HeaderValue> {
        vec![HeaderValue::from_str(value).unwrap()]
    }

    #[test]
    fn the_digest_changes_with_any_byte_of_the_body() {
        let one = digest(br#"{"name":"Food"}"#);

        assert_eq!(one.len(), 32);
        assert_eq!(one, digest(br#"{"name":"Food"}"#));
        assert_ne!(one, digest(br#"{"name":"Fool"}"#));
        // SHA-256("abc") starts ba7816bf…: the tag is the first 16 bytes in lowercase hex.
        assert_eq!(digest(b"abc"), "ba7816bf8f01cfea414140de5dae2223");
    }

    #[test]
    fn if_none_match_matches_the_digest_in_any_coding_weak_or_strong() {
        let digest = digest(b"body");

        for (sent, answered) in [
            (format!("\"{digest}\""), format!("\"{digest}\"")),
            (format!("W/\"{digest}\""), format!("\"{digest}\"")),
            (format!("\"{digest}-br\""), format!("\"{digest}-br\"")),
            (
                format!("\"other\", \"{digest}-zstd\""),
                format!("\"{digest}-zstd\""),
            ),
            ("*".to_owned(), format!("\"{digest}\"")),
        ] {
            assert_eq!(
                named_by(&if_none_match(&sent), &digest),
                Some(HeaderValue::from_str(&answered).unwrap()),
                "{sent}"
            );
        }
        for sent in [
            "\"other\"".to_owned(),
            format!("\"{digest}-deflate\""),
            digest.clone(),
        ] {
            assert_eq!(named_by(&if_none_match(&sent), &digest), None, "{sent}");
        }
    }

    #[test]
    fn a_compressed_answer_names_its_coding_in_the_etag() {
        let mut response = Response::new(());
        response
            .headers_mut()
            .insert(header::ETAG, HeaderValue::from_static("\"abc\""));
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));

        let response = coded_etag(response);

        assert_eq!(response.headers()[header::ETAG], "\"abc-gzip\"");
        let plain = coded_etag(Response::new(()));
        assert!(plain.headers().get(header::ETAG).is_none());
    }
}
