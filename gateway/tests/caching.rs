//! What a browser and a CDN need (HTTP_API.md, Conventions): compression by
//! `Accept-Encoding` with `Vary`, strong `ETag`s and 304s on the deck and card GETs, and
//! `Cache-Control` on authenticated and token answers. Compression runs against the
//! gateway alone (its OpenAPI document is large, `/health/live` small); the rest against
//! the three real binaries.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

mod schema;
mod support;

use std::io::Read;

use serde_json::{Value, json};
use support::start_gateway;
use test_support::{
    http::HttpResponse,
    stack::{Stack, spawn_stack},
};
use uuid::Uuid;

const PASSWORD: &str = "correct horse 42";

fn varies_on_accept_encoding(response: &HttpResponse) -> bool {
    response
        .headers
        .iter()
        .filter(|(name, _)| name == "vary")
        .any(|(_, value)| value.to_ascii_lowercase().contains("accept-encoding"))
}

/// The body decoded from `coding` (none: as is).
fn decoded(coding: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        None => out.extend_from_slice(body),
        Some("zstd") => out = zstd::stream::decode_all(body).expect("zstd body"),
        Some("br") => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .expect("br body");
        }
        Some("gzip") => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .expect("gzip body");
        }
        Some(other) => panic!("unexpected coding {other}"),
    }
    out
}

// ------------------------------------------------------------------ compression

#[tokio::test]
async fn large_answers_are_compressed_as_the_client_prefers_and_small_ones_are_not() {
    // Arrange
    let gateway = start_gateway(&[]).await;
    let plain = gateway.http.get("/openapi.json").send().await;
    assert!(plain.body.len() >= 1024, "the document is large");
    let cases = [
        ("zstd", Some("zstd")),
        ("br", Some("br")),
        ("gzip", Some("gzip")),
        ("x-gzip", Some("gzip")),
        ("gzip, br;q=0.5", Some("gzip")),
        ("br;q=0.2, gzip;q=0.9, zstd;q=0.1", Some("gzip")),
        ("zstd;q=0, br", Some("br")),
        ("gzip;q=0.5, zstd;q=0.8", Some("zstd")),
        ("identity", None),
        ("deflate", None),
        ("gzip;q=0", None),
    ];

    for (accept, expected) in cases {
        // Act
        let response = gateway
            .http
            .get("/openapi.json")
            .header("Accept-Encoding", accept)
            .send()
            .await;

        // Assert
        assert_eq!(response.status, 200);
        assert_eq!(response.header("content-encoding"), expected, "{accept}");
        assert!(varies_on_accept_encoding(&response), "{accept}: no Vary");
        assert_eq!(
            decoded(expected, &response.body),
            plain.body,
            "{accept}: the body"
        );
        if expected.is_some() {
            assert!(response.body.len() < plain.body.len(), "{accept}: smaller");
        }
    }
    let small = gateway
        .http
        .get("/health/live")
        .header("Accept-Encoding", "zstd, br, gzip")
        .send()
        .await;
    assert!(small.body.len() < 1024);
    assert_eq!(small.header("content-encoding"), None);
    assert!(varies_on_accept_encoding(&small));
    assert!(varies_on_accept_encoding(&plain));
    assert_eq!(small.json()["status"], "alive");
}

// ------------------------------------------------------------------ ETags and 304s

struct Api {
    stack: Stack,
    doc: Value,
}

impl Api {
    async fn start() -> Self {
        Self {
            stack: spawn_stack().await,
            doc: schema::document(),
        }
    }

    /// `GET path` (documented as `template`) with `headers`, checked against the document.
    async fn get(
        &self,
        template: &str,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
    ) -> HttpResponse {
        let mut request = self.stack.http.get(path).bearer(token);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await;
        if response.header("content-encoding").is_none() {
            schema::assert_documented(&self.doc, "GET", template, &response);
        }
        response
    }

    async fn write(&self, method: &str, path: &str, token: &str, body: Value) -> Value {
        let response = self
            .stack
            .http
            .request(method, path)
            .bearer(token)
            .json(&body)
            .send()
            .await;
        assert!(
            [200, 201].contains(&response.status),
            "{method} {path}: {}",
            response.text()
        );
        response.json()
    }

    async fn superuser(&self) -> String {
        let email = format!("admin-{}@example.com", Uuid::new_v4().simple());
        self.stack.register(&email, PASSWORD, "Admin").await;
        self.stack.make_superuser(&email).await;
        let tokens = self.stack.login(&email, PASSWORD).await;
        tokens["access_token"].as_str().unwrap().to_owned()
    }
}

/// The four tagged GETs of a deck and its first card.
fn tagged_routes(deck: &str, card: &str) -> [(&'static str, String); 4] {
    [
        ("/api/v1/decks", "/api/v1/decks?page_size=100".to_owned()),
        ("/api/v1/decks/{id}", format!("/api/v1/decks/{deck}")),
        ("/api/v1/cards", format!("/api/v1/cards?deck_id={deck}")),
        ("/api/v1/cards/{id}", format!("/api/v1/cards/{card}")),
    ]
}

#[tokio::test]
async fn deck_and_card_gets_answer_304_to_their_etag_until_the_resource_changes() {
    // Arrange: a deck of 30 cards (its card list is compressible).
    let api = Api::start().await;
    let admin = api.superuser().await;
    let deck = api
        .write(
            "POST",
            "/api/v1/decks",
            &admin,
            json!({"name": "Κουζίνα", "level": "A2"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cards: Vec<Value> = (0..30)
        .map(|i| json!({"front_text": format!("λέξη {i}"), "back_text": format!("word {i}"), "difficulty": "easy", "order_index": i}))
        .collect();
    let created = api
        .write(
            "POST",
            "/api/v1/cards/bulk",
            &admin,
            json!({"deck_id": deck, "cards": cards}),
        )
        .await;
    let card = created["cards"][0]["id"].as_str().unwrap().to_owned();
    let user = api
        .stack
        .register(
            &format!("user-{}@example.com", Uuid::new_v4().simple()),
            PASSWORD,
            "Νίκος",
        )
        .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut tags = Vec::new();
    for (template, path) in tagged_routes(&deck, &card) {
        // Act
        let first = api.get(template, &path, &user, &[]).await;
        let etag = first.header("etag").expect("ETag").to_owned();
        let unchanged = api
            .get(template, &path, &user, &[("If-None-Match", &etag)])
            .await;
        let weak = api
            .get(
                template,
                &path,
                &user,
                &[("If-None-Match", &format!("\"stale\", W/{etag}"))],
            )
            .await;
        let stale = api
            .get(template, &path, &user, &[("If-None-Match", "\"stale\"")])
            .await;

        // Assert
        assert_eq!(first.status, 200, "{template}");
        assert!(
            etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
            "{template}: a strong tag {etag}"
        );
        assert_eq!(first.header("cache-control"), Some("private, no-cache"));
        assert_eq!(unchanged.status, 304, "{template}: {}", unchanged.text());
        assert!(unchanged.body.is_empty(), "{template}: 304 has no body");
        assert_eq!(unchanged.header("etag"), Some(etag.as_str()), "{template}");
        assert_eq!(
            unchanged.header("cache-control"),
            Some("private, no-cache"),
            "{template}"
        );
        assert!(varies_on_accept_encoding(&unchanged), "{template}: Vary");
        assert!(
            unchanged.header("x-ratelimit-limit").is_some(),
            "{template}"
        );
        assert_eq!(weak.status, 304, "{template}: weak comparison");
        assert_eq!(stale.status, 200, "{template}");
        assert_eq!(stale.header("etag"), Some(etag.as_str()), "{template}");
        assert_eq!(stale.body, first.body, "{template}");
        tags.push(etag);
    }

    // A compressed answer's tag names its coding; sent back, it still matches.
    let (template, cards_path) = &tagged_routes(&deck, &card)[2];
    let gzipped = api
        .get(template, cards_path, &user, &[("Accept-Encoding", "gzip")])
        .await;
    let gzip_tag = gzipped.header("etag").unwrap().to_owned();
    let revalidated = api
        .get(
            template,
            cards_path,
            &user,
            &[("Accept-Encoding", "gzip"), ("If-None-Match", &gzip_tag)],
        )
        .await;
    assert_eq!(gzipped.header("content-encoding"), Some("gzip"));
    assert_eq!(
        gzip_tag,
        format!("{}-gzip\"", tags[2].trim_end_matches('"'))
    );
    assert_eq!(revalidated.status, 304);
    assert_eq!(revalidated.header("etag"), Some(gzip_tag.as_str()));

    // Act: change the deck and the card as the superuser.
    api.write(
        "PATCH",
        &format!("/api/v1/decks/{deck}"),
        &admin,
        json!({"name": "Κουζίνα και φαγητό"}),
    )
    .await;
    api.write(
        "PATCH",
        &format!("/api/v1/cards/{card}"),
        &admin,
        json!({"back_text": "word zero"}),
    )
    .await;

    // Assert: every tag changed, and the old one no longer answers 304.
    for ((template, path), old) in tagged_routes(&deck, &card).into_iter().zip(&tags) {
        let after = api
            .get(template, &path, &user, &[("If-None-Match", old)])
            .await;
        assert_eq!(after.status, 200, "{template} after the change");
        assert_ne!(after.header("etag"), Some(old.as_str()), "{template}");
    }
}

// ------------------------------------------------------------------ Cache-Control

#[tokio::test]
async fn token_answers_are_no_store_and_authenticated_json_is_private_no_cache() {
    // Arrange
    let api = Api::start().await;
    let email = format!("user-{}@example.com", Uuid::new_v4().simple());
    let post = |path: &'static str, body: Value| {
        let http = api.stack.http.clone();
        async move { http.post(path).json(&body).send().await }
    };

    // Act
    let registered = post(
        "/api/v1/auth/register",
        json!({"email": email, "password": PASSWORD, "full_name": "Ελένη"}),
    )
    .await;
    let login = post(
        "/api/v1/auth/login",
        json!({"email": email, "password": PASSWORD}),
    )
    .await;
    let refresh_token = login.json()["refresh_token"].as_str().unwrap().to_owned();
    let refreshed = post(
        "/api/v1/auth/refresh",
        json!({"refresh_token": refresh_token}),
    )
    .await;
    let google = post("/api/v1/auth/google", json!({"id_token": "x"})).await;
    let token = refreshed.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let me = api
        .stack
        .http
        .get("/api/v1/auth/me")
        .bearer(&token)
        .send()
        .await;
    let sessions = api
        .stack
        .http
        .get("/api/v1/auth/sessions")
        .bearer(&token)
        .send()
        .await;

    // Assert
    for (name, response, status) in [
        ("register", &registered, 201),
        ("login", &login, 200),
        ("refresh", &refreshed, 200),
        ("google", &google, 503),
    ] {
        assert_eq!(response.status, status, "{name}: {}", response.text());
        assert_eq!(response.header("cache-control"), Some("no-store"), "{name}");
        assert_eq!(response.header("pragma"), Some("no-cache"), "{name}");
    }
    for (name, response) in [("me", &me), ("sessions", &sessions)] {
        assert_eq!(response.status, 200, "{name}: {}", response.text());
        assert_eq!(
            response.header("cache-control"),
            Some("private, no-cache"),
            "{name}"
        );
    }
}
