//! Gateway-only tests: the HTTP edge (auth, errors, validation, request ids, rate
//! limits, CORS, OpenAPI, health) with real Redis and no real services behind it.
//! Services are either absent (calls fail UNAVAILABLE → 503, which proves a request
//! got past the edge) or a fake upstream that answers a chosen gRPC status.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

mod support;

use std::time::Duration;

use base64::Engine;
use common::auth::TokenType;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::{FakeUpstream, assert_problem, start_gateway};
use test_support::{RedisMonitor, RedisServer, TestTokens, command_names, tokens::now};
use uuid::Uuid;

const DECKS: &str = "/api/v1/decks";

fn user_token() -> String {
    TestTokens::new().access_token(Uuid::new_v4(), false)
}

// ------------------------------------------------------------------ tokens

#[tokio::test]
async fn every_token_attack_is_refused_with_401_and_a_bearer_challenge() {
    let gateway = start_gateway(&[]).await;
    let trusted = TestTokens::new();
    let kid = trusted.public_jwk().kid;
    let user = Uuid::new_v4();

    let mut expired = trusted.claims(user, false);
    expired.iat = now() - 7200;
    expired.exp = now() - 3600;
    let mut refresh = trusted.claims(user, false);
    refresh.token_type = TokenType::Refresh;
    let mut wrong_audience = trusted.claims(user, false);
    wrong_audience.aud = "someone-else".into();
    let b64 =
        |value: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
    let claims_json = serde_json::to_value(trusted.claims(user, true)).unwrap();
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
        b64(&claims_json)
    );
    let public_key = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trusted.public_jwk().x)
        .unwrap();
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    let hs256_with_public_key = jsonwebtoken::encode(
        &hs_header,
        &trusted.claims(user, true),
        &EncodingKey::from_secret(&public_key),
    )
    .unwrap();
    let hs256_with_public_jwk_x = jsonwebtoken::encode(
        &hs_header,
        &trusted.claims(user, true),
        &EncodingKey::from_secret(trusted.public_jwk().x.as_bytes()),
    )
    .unwrap();

    let attacks: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("malformed: not a JWT", Some("Bearer not.a.jwt".into())),
        ("malformed: no token", Some("Bearer".into())),
        ("malformed: basic scheme", Some("Basic dXNlcjpwYXNz".into())),
        (
            "expired",
            Some(format!("Bearer {}", trusted.sign(&expired))),
        ),
        (
            "refresh token as access token",
            Some(format!("Bearer {}", trusted.sign(&refresh))),
        ),
        (
            "wrong audience",
            Some(format!("Bearer {}", trusted.sign(&wrong_audience))),
        ),
        (
            "signed by an untrusted key",
            Some(format!(
                "Bearer {}",
                TestTokens::untrusted().access_token(user, true)
            )),
        ),
        ("alg none", Some(format!("Bearer {alg_none}"))),
        (
            "HS256 with the public key",
            Some(format!("Bearer {hs256_with_public_key}")),
        ),
        (
            "HS256 with the JWK x",
            Some(format!("Bearer {hs256_with_public_jwk_x}")),
        ),
    ];
    for (attack, authorization) in attacks {
        let mut request = gateway.http.get(DECKS);
        if let Some(value) = &authorization {
            request = request.header("Authorization", value);
        }

        let response = request.send().await;

        assert_eq!(response.status, 401, "{attack}: {}", response.text());
        assert_eq!(
            response.header("www-authenticate"),
            Some("Bearer"),
            "{attack}"
        );
        assert_problem(&response, 401, "UNAUTHORIZED");
    }
}

#[tokio::test]
async fn a_valid_token_gets_past_the_edge_to_the_service() {
    let gateway = start_gateway(&[]).await;

    let response = gateway.http.get(DECKS).bearer(&user_token()).send().await;

    // Nobody listens at the deck-service URL: the call was made and failed UNAVAILABLE.
    let body = assert_problem(&response, 503, "SERVICE_UNAVAILABLE");
    assert!(response.header("retry-after").is_some());
    assert!(
        !body["detail"].as_str().unwrap().contains("127.0.0.1"),
        "5xx hides internals: {body}"
    );
}

#[tokio::test]
async fn a_normal_user_gets_403_on_superuser_routes_and_a_superuser_does_not() {
    let gateway = start_gateway(&[]).await;
    let tokens = TestTokens::new();
    let deck = json!({"name": "Food", "level": "A1"});
    let some_id = Uuid::new_v4();

    for (method, path, body) in [
        ("POST", DECKS.to_owned(), Some(deck.clone())),
        (
            "PATCH",
            format!("{DECKS}/{some_id}"),
            Some(json!({"name": "x"})),
        ),
        ("DELETE", format!("{DECKS}/{some_id}"), None),
        (
            "POST",
            "/api/v1/cards".to_owned(),
            Some(
                json!({"deck_id": some_id, "front_text": "a", "back_text": "b", "difficulty": "easy"}),
            ),
        ),
        (
            "POST",
            "/api/v1/cards/bulk".to_owned(),
            Some(
                json!({"deck_id": some_id, "cards": [{"front_text": "a", "back_text": "b", "difficulty": "easy"}]}),
            ),
        ),
        (
            "PATCH",
            format!("/api/v1/cards/{some_id}"),
            Some(json!({"front_text": "x"})),
        ),
        ("DELETE", format!("/api/v1/cards/{some_id}"), None),
    ] {
        let send = |token: String| {
            let mut request = gateway.http.request(method, &path).bearer(&token);
            if let Some(body) = &body {
                request = request.json(body);
            }
            request.send()
        };

        let normal = send(tokens.access_token(Uuid::new_v4(), false)).await;
        let superuser = send(tokens.access_token(Uuid::new_v4(), true)).await;

        assert_problem(&normal, 403, "FORBIDDEN");
        assert_eq!(
            superuser.status,
            503,
            "{method} {path}: superuser reaches the service: {}",
            superuser.text()
        );
    }
}

// ------------------------------------------------------------------ error shapes

#[tokio::test]
async fn unknown_paths_and_legacy_routes_answer_404_problems() {
    let gateway = start_gateway(&[]).await;

    for path in [
        "/nope",
        "/api/v1/xp/stats",
        "/api/v1/achievements",
        "/api/v1/notifications",
        "/api/v1/admin/stats",
    ] {
        let response = gateway.http.get(path).bearer(&user_token()).send().await;

        assert_problem(&response, 404, "NOT_FOUND");
    }
}

#[tokio::test]
async fn a_wrong_method_answers_405_with_allow() {
    let gateway = start_gateway(&[]).await;

    let response = gateway
        .http
        .request("PUT", DECKS)
        .bearer(&user_token())
        .send()
        .await;

    assert_problem(&response, 405, "METHOD_NOT_ALLOWED");
    let allow = response.header("allow").expect("Allow header");
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
}

#[tokio::test]
async fn a_body_over_64_kib_answers_413_and_one_just_under_is_read() {
    let gateway = start_gateway(&[]).await;
    let padding =
        |size: usize| format!(r#"{{"email":"a@b.cd","password":"{}"}}"#, "x".repeat(size));

    let too_large = gateway
        .http
        .post("/api/v1/auth/login")
        .header("Content-Type", "application/json")
        .body(padding(70 * 1024))
        .send()
        .await;
    let fits = gateway
        .http
        .post("/api/v1/auth/login")
        .header("Content-Type", "application/json")
        .body(padding(60 * 1024))
        .send()
        .await;

    assert_problem(&too_large, 413, "PAYLOAD_TOO_LARGE");
    assert_ne!(fits.status, 413, "{}", fits.text());
}

#[tokio::test]
async fn json_rejections_are_422_problems_naming_the_field() {
    let gateway = start_gateway(&[]).await;
    let token = user_token();
    let card = Uuid::new_v4();

    let cases: Vec<(&str, &str, String, &str)> = vec![
        ("bad JSON", "/api/v1/reviews", "{not json".into(), "body"),
        ("missing field", "/api/v1/reviews", json!({"card_id": card, "quality": 3}).to_string(), "time_taken"),
        ("wrong type", "/api/v1/reviews", json!({"card_id": card, "quality": "five", "time_taken": 1}).to_string(), "quality"),
        ("quality 6", "/api/v1/reviews", json!({"card_id": card, "quality": 6, "time_taken": 1}).to_string(), "quality"),
        ("quality -1", "/api/v1/reviews", json!({"card_id": card, "quality": -1, "time_taken": 1}).to_string(), "quality"),
        ("negative time", "/api/v1/reviews", json!({"card_id": card, "quality": 3, "time_taken": -1}).to_string(), "time_taken"),
        ("malformed card id", "/api/v1/reviews", json!({"card_id": "nope", "quality": 3, "time_taken": 1}).to_string(), "card_id"),
        ("empty bulk", "/api/v1/reviews/bulk", json!({"deck_id": card, "session_id": "s", "reviews": []}).to_string(), "reviews"),
        ("long session id", "/api/v1/reviews/bulk", json!({"deck_id": card, "session_id": "s".repeat(101), "reviews": [{"card_id": card, "quality": 3, "time_taken": 1}]}).to_string(), "session_id"),
        ("no card ids", "/api/v1/study/initialize", json!({"deck_id": card, "card_ids": []}).to_string(), "card_ids"),
        ("101 card ids", "/api/v1/study/initialize", json!({"deck_id": card, "card_ids": vec![card; 101]}).to_string(), "card_ids"),
    ];
    for (case, path, body, field) in cases {
        let response = gateway
            .http
            .post(path)
            .bearer(&token)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await;

        let problem = assert_problem(&response, 422, "VALIDATION_ERROR");
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .expect(case)
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert!(fields.contains(&field), "{case}: {problem}");
    }
}

#[tokio::test]
async fn a_bad_field_inside_a_bulk_item_is_named_by_its_full_path() {
    let gateway = start_gateway(&[]).await;
    let superuser = TestTokens::new().access_token(Uuid::new_v4(), true);
    let deck = Uuid::new_v4();
    let card = json!({"front_text": "a", "back_text": "b", "difficulty": "easy"});
    let review = json!({"card_id": deck, "quality": 3, "time_taken": 1});

    for (path, body, field) in [
        (
            "/api/v1/cards/bulk",
            json!({"deck_id": deck, "cards": [card, {"front_text": "a", "difficulty": "easy"}]}),
            "cards[1].back_text",
        ),
        (
            "/api/v1/cards/bulk",
            json!({"deck_id": deck, "cards": [card, card, {"front_text": "a", "back_text": "b", "difficulty": "easy", "order_index": "x"}]}),
            "cards[2].order_index",
        ),
        (
            "/api/v1/cards/bulk",
            json!({"deck_id": deck, "cards": [card, {"front_text": "a", "back_text": "b", "difficulty": "EASY"}]}),
            "cards[1].difficulty",
        ),
        (
            "/api/v1/reviews/bulk",
            json!({"deck_id": deck, "session_id": "s", "reviews": [{"card_id": deck, "time_taken": 1}]}),
            "reviews[0].quality",
        ),
        (
            "/api/v1/reviews/bulk",
            json!({"deck_id": deck, "session_id": "s", "reviews": [review, {"card_id": deck, "quality": 9, "time_taken": 1}]}),
            "reviews[1].quality",
        ),
    ] {
        let response = gateway
            .http
            .post(path)
            .bearer(&superuser)
            .json(&body)
            .send()
            .await;

        let problem = assert_problem(&response, 422, "VALIDATION_ERROR");
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
        assert_eq!(problem["errors"].as_array().unwrap().len(), 1, "{problem}");
    }
}

#[tokio::test]
async fn register_validation_happens_at_the_edge() {
    let gateway = start_gateway(&[]).await;

    for (body, field) in [
        (
            json!({"email": "no-at-sign", "password": "abc12345", "full_name": "A"}),
            "email",
        ),
        (
            json!({"email": "a@b.cd", "password": "short1", "full_name": "A"}),
            "password",
        ),
        (
            json!({"email": "a@b.cd", "password": "onlyletters", "full_name": "A"}),
            "password",
        ),
        (
            json!({"email": "a@b.cd", "password": "12345678", "full_name": "A"}),
            "password",
        ),
        (
            json!({"email": "a@b.cd", "password": format!("a1{}", "x".repeat(99)), "full_name": "A"}),
            "password",
        ),
        (
            json!({"email": "a@b.cd", "password": "abc12345", "full_name": ""}),
            "full_name",
        ),
        (
            json!({"email": "a@b.cd", "password": "abc12345", "full_name": "Α".repeat(256)}),
            "full_name",
        ),
        (
            json!({"email": "a@b.cd", "password": "abc12345"}),
            "full_name",
        ),
    ] {
        let response = gateway
            .http
            .post("/api/v1/auth/register")
            .json(&body)
            .send()
            .await;

        let problem = assert_problem(&response, 422, "VALIDATION_ERROR");
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
}

#[tokio::test]
async fn query_and_path_values_are_validated_before_any_call() {
    let gateway = start_gateway(&[]).await;
    let token = user_token();
    let deck = Uuid::new_v4();

    for (path, field) in [
        ("/api/v1/decks?page=0".to_owned(), "page"),
        ("/api/v1/decks?page_size=101".to_owned(), "page_size"),
        ("/api/v1/decks?page_size=0".to_owned(), "page_size"),
        ("/api/v1/decks?page=abc".to_owned(), "page"),
        ("/api/v1/decks?level=a1".to_owned(), "level"),
        ("/api/v1/decks/search".to_owned(), "q"),
        ("/api/v1/decks/search?q=".to_owned(), "q"),
        (format!("/api/v1/decks/search?q={}", "a".repeat(101)), "q"),
        (
            "/api/v1/decks/search?q=x&page_size=51".to_owned(),
            "page_size",
        ),
        ("/api/v1/decks/not-a-uuid".to_owned(), "id"),
        ("/api/v1/cards".to_owned(), "deck_id"),
        (
            format!("/api/v1/cards?deck_id={deck}&difficulty=HARD"),
            "difficulty",
        ),
        (
            format!("/api/v1/cards?deck_id={deck}&page_size=101"),
            "page_size",
        ),
        ("/api/v1/cards/search?q=x&deck_id=zzz".to_owned(), "deck_id"),
        ("/api/v1/cards/123".to_owned(), "id"),
        ("/api/v1/study/queue?limit=0".to_owned(), "limit"),
        ("/api/v1/study/queue?limit=101".to_owned(), "limit"),
        (
            "/api/v1/study/queue?new_cards_limit=51".to_owned(),
            "new_cards_limit",
        ),
        (
            "/api/v1/study/queue?early_practice_limit=-1".to_owned(),
            "early_practice_limit",
        ),
        (
            "/api/v1/study/queue?include_new=maybe".to_owned(),
            "include_new",
        ),
        ("/api/v1/study/queue/xyz".to_owned(), "deck_id"),
        ("/api/v1/study/stats?deck_id=1".to_owned(), "deck_id"),
        (
            "/api/v1/reviews?start_date=2026-13-01".to_owned(),
            "start_date",
        ),
        (
            "/api/v1/reviews?start_date=2026-11-20&end_date=2026-11-01".to_owned(),
            "end_date",
        ),
        ("/api/v1/reviews?page_size=101".to_owned(), "page_size"),
        ("/api/v1/progress/decks?page=0".to_owned(), "page"),
        ("/api/v1/progress/decks/nope".to_owned(), "deck_id"),
        ("/api/v1/progress/trends?period=decade".to_owned(), "period"),
    ] {
        let response = gateway.http.get(&path).bearer(&token).send().await;

        let problem = assert_problem(&response, 422, "VALIDATION_ERROR");
        assert_eq!(problem["errors"][0]["field"], field, "{path}: {problem}");
    }
}

#[tokio::test]
async fn profile_and_deck_patches_are_validated() {
    let gateway = start_gateway(&[]).await;
    let token = user_token();
    let superuser = TestTokens::new().access_token(Uuid::new_v4(), true);

    for (path, token, body, field) in [
        (
            "/api/v1/auth/me".to_owned(),
            &token,
            json!({"daily_goal": 0}),
            "daily_goal",
        ),
        (
            "/api/v1/auth/me".to_owned(),
            &token,
            json!({"daily_goal": 201}),
            "daily_goal",
        ),
        (
            "/api/v1/auth/me".to_owned(),
            &token,
            json!({"preferred_language": "fr"}),
            "preferred_language",
        ),
        (
            "/api/v1/auth/me".to_owned(),
            &token,
            json!({"full_name": ""}),
            "full_name",
        ),
        (
            format!("{DECKS}/{}", Uuid::new_v4()),
            &superuser,
            json!({"level": "c2"}),
            "level",
        ),
        (
            format!("{DECKS}/{}", Uuid::new_v4()),
            &superuser,
            json!({"name": ""}),
            "name",
        ),
        (
            format!("/api/v1/cards/{}", Uuid::new_v4()),
            &superuser,
            json!({"difficulty": "Easy"}),
            "difficulty",
        ),
        (
            format!("/api/v1/cards/{}", Uuid::new_v4()),
            &superuser,
            json!({"pronunciation": "p".repeat(256)}),
            "pronunciation",
        ),
    ] {
        let response = gateway
            .http
            .patch(&path)
            .bearer(token)
            .json(&body)
            .send()
            .await;

        let problem = assert_problem(&response, 422, "VALIDATION_ERROR");
        assert_eq!(
            problem["errors"][0]["field"], field,
            "{path} {body}: {problem}"
        );
    }
}

#[tokio::test]
async fn google_sign_in_answers_503_not_enabled() {
    let gateway = start_gateway(&[]).await;

    let response = gateway
        .http
        .post("/api/v1/auth/google")
        .json(&json!({"id_token": "x"}))
        .send()
        .await;

    let problem = assert_problem(&response, 503, "SERVICE_UNAVAILABLE");
    assert_eq!(problem["detail"], "Google sign-in is not enabled");
}

// ------------------------------------------------------------------ gRPC status mapping

#[tokio::test]
async fn every_grpc_status_from_a_service_maps_to_its_documented_problem() {
    let upstream = FakeUpstream::start().await;
    let gateway = start_gateway(&[("--deck-service-url", upstream.url.clone())]).await;
    let path = format!("{DECKS}/{}", Uuid::new_v4());
    use tonic::Code;

    for (code, message, status, problem_code, detail_shown) in [
        (
            Code::InvalidArgument,
            "name: must not be empty",
            422,
            "VALIDATION_ERROR",
            true,
        ),
        (
            Code::Unauthenticated,
            "token expired",
            401,
            "UNAUTHORIZED",
            true,
        ),
        (
            Code::PermissionDenied,
            "superuser required",
            403,
            "FORBIDDEN",
            true,
        ),
        (
            Code::NotFound,
            "Deck with ID 'x' not found",
            404,
            "NOT_FOUND",
            true,
        ),
        (Code::AlreadyExists, "already there", 409, "CONFLICT", true),
        (Code::Aborted, "try again", 409, "CONFLICT", true),
        (
            Code::FailedPrecondition,
            "not now",
            400,
            "BAD_REQUEST",
            true,
        ),
        (Code::OutOfRange, "too far", 400, "BAD_REQUEST", true),
        (
            Code::ResourceExhausted,
            "slow down",
            429,
            "RATE_LIMIT_EXCEEDED",
            true,
        ),
        (Code::Cancelled, "client went away", 499, "CANCELLED", true),
        // Before the request's deadline a CANCELLED is 499 whatever its message says
        // (after it, 504: the slow-service test and error.rs's unit tests).
        (Code::Cancelled, "Timeout expired", 499, "CANCELLED", true),
        (
            Code::Unimplemented,
            "secret internals",
            501,
            "NOT_IMPLEMENTED",
            false,
        ),
        (
            Code::Unavailable,
            "secret internals",
            503,
            "SERVICE_UNAVAILABLE",
            false,
        ),
        (
            Code::DeadlineExceeded,
            "secret internals",
            504,
            "TIMEOUT",
            false,
        ),
        (
            Code::Internal,
            "secret internals",
            500,
            "INTERNAL_ERROR",
            false,
        ),
        (
            Code::Unknown,
            "secret internals",
            500,
            "INTERNAL_ERROR",
            false,
        ),
        (
            Code::DataLoss,
            "secret internals",
            500,
            "INTERNAL_ERROR",
            false,
        ),
    ] {
        upstream.answer_with(code, message);

        let response = gateway.http.get(&path).bearer(&user_token()).send().await;

        let problem = assert_problem(&response, status, problem_code);
        assert_eq!(
            problem["detail"] == message,
            detail_shown,
            "{code:?}: {problem}"
        );
        if matches!(status, 429 | 503) {
            assert!(
                response.header("retry-after").is_some(),
                "{code:?} needs Retry-After"
            );
        }
        if status == 401 {
            assert_eq!(response.header("www-authenticate"), Some("Bearer"));
        }
    }
}

#[tokio::test]
async fn calls_carry_the_token_request_id_and_a_deadline_and_a_slow_service_gives_504() {
    let upstream = FakeUpstream::start().await;
    let gateway = start_gateway(&[
        ("--deck-service-url", upstream.url.clone()),
        ("--request-timeout-ms", "500".to_owned()),
    ])
    .await;
    let token = user_token();
    upstream.answer_with(tonic::Code::NotFound, "no");

    let found = gateway
        .http
        .get(&format!("{DECKS}/{}", Uuid::new_v4()))
        .bearer(&token)
        .header("X-Request-ID", "trace-me-1")
        .send()
        .await;
    upstream.delay(Duration::from_secs(3));
    let started = std::time::Instant::now();
    let slow = gateway.http.get(DECKS).bearer(&token).send().await;

    assert_eq!(found.status, 404);
    let call = &upstream.calls()[0];
    assert_eq!(call.path, "/learngreek.deck.v1.DeckService/GetDeck");
    assert_eq!(call.headers["x-request-id"], "trace-me-1");
    assert_eq!(
        call.headers["authorization"],
        format!("Bearer {token}").as_str()
    );
    let timeout = call.headers["grpc-timeout"].to_str().unwrap();
    assert!(
        timeout.ends_with('m') || timeout.ends_with('u') || timeout.ends_with('n'),
        "{timeout}"
    );
    assert_problem(&slow, 504, "TIMEOUT");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at the deadline, not after the service"
    );
}

#[tokio::test]
async fn refresh_401s_carry_the_specific_code_of_the_error_info_and_the_client_info_is_sent() {
    use common::status::{SESSION_DOMAIN, reason, refusal};
    use prost::Message;
    let upstream = FakeUpstream::start().await;
    let gateway = start_gateway(&[("--session-service-url", upstream.url.clone())]).await;

    for (status, code) in [
        (reason::TOKEN_EXPIRED, "TOKEN_EXPIRED"),
        (reason::TOKEN_INVALID, "TOKEN_INVALID"),
        (reason::SESSION_REVOKED, "SESSION_REVOKED"),
        (reason::REFRESH_TOKEN_REUSED, "REFRESH_TOKEN_REUSED"),
    ]
    .map(|(reason, code)| {
        let status = refusal(
            tonic::Code::Unauthenticated,
            "Refresh refused",
            SESSION_DOMAIN,
            reason,
            None,
        );
        (status, code)
    })
    .into_iter()
    // The message alone names nothing.
    .chain([(
        tonic::Status::unauthenticated("token expired"),
        "UNAUTHORIZED",
    )]) {
        upstream.answer_with_status(status);

        let response = gateway
            .http
            .post("/api/v1/auth/refresh")
            .header("User-Agent", "Mozilla/5.0 (test)")
            .json(&json!({"refresh_token": "abc"}))
            .send()
            .await;

        assert_problem(&response, 401, code);
        assert_eq!(response.header("www-authenticate"), Some("Bearer"));
    }
    let sent =
        proto::session::v1::RefreshRequest::decode(upstream.calls()[0].message.as_slice()).unwrap();
    let client = sent.client.expect("client info");
    assert_eq!(sent.refresh_token, "abc");
    assert_eq!(client.ip_address, "127.0.0.1");
    assert_eq!(client.user_agent, "Mozilla/5.0 (test)");
}

#[tokio::test]
async fn a_revoked_access_token_reported_by_a_service_is_token_revoked_on_any_route() {
    use common::status::{DECK_DOMAIN, reason, refusal};
    let upstream = FakeUpstream::start().await;
    let gateway = start_gateway(&[("--deck-service-url", upstream.url.clone())]).await;
    upstream.answer_with_status(refusal(
        tonic::Code::Unauthenticated,
        "Session ended",
        DECK_DOMAIN,
        reason::TOKEN_REVOKED,
        None,
    ));

    let response = gateway
        .http
        .get(&format!("{DECKS}/{}", Uuid::new_v4()))
        .bearer(&user_token())
        .send()
        .await;

    assert_problem(&response, 401, "TOKEN_REVOKED");
    assert_eq!(response.header("www-authenticate"), Some("Bearer"));
}

#[tokio::test]
async fn a_services_bad_request_is_422_with_every_field_path_as_the_service_sent_it() {
    use common::status::{Violation, invalid_fields};
    let upstream = FakeUpstream::start().await;
    let gateway = start_gateway(&[("--deck-service-url", upstream.url.clone())]).await;
    let superuser = TestTokens::new().access_token(Uuid::new_v4(), true);
    upstream.answer_with_status(invalid_fields([
        Violation::new("cards[1].back_text", "must not be empty"),
        Violation::new("cards[2].front_text", "already in the deck"),
    ]));
    let card = json!({"front_text": "a", "back_text": "b", "difficulty": "easy"});

    let response = gateway
        .http
        .post("/api/v1/cards/bulk")
        .bearer(&superuser)
        .json(&json!({"deck_id": Uuid::new_v4(), "cards": [card, card, card]}))
        .send()
        .await;

    let problem = assert_problem(&response, 422, "VALIDATION_ERROR");
    assert_eq!(
        problem["errors"],
        json!([
            {"field": "cards[1].back_text", "message": "must not be empty"},
            {"field": "cards[2].front_text", "message": "already in the deck"},
        ]),
        "{problem}"
    );
    assert_eq!(problem["detail"], "cards[1].back_text: must not be empty");
}

#[tokio::test]
async fn initialize_for_a_whole_deck_asks_for_all_cards() {
    use prost::Message;
    let upstream = FakeUpstream::start().await;
    let gateway = start_gateway(&[("--deck-service-url", upstream.url.clone())]).await;
    upstream.answer_with(tonic::Code::NotFound, "Deck not found");
    let deck = Uuid::new_v4();

    let response = gateway
        .http
        .post(&format!("/api/v1/study/initialize/{deck}"))
        .bearer(&user_token())
        .send()
        .await;

    assert_problem(&response, 404, "NOT_FOUND");
    let sent =
        proto::deck::v1::InitializeStudyRequest::decode(upstream.calls()[0].message.as_slice())
            .unwrap();
    assert!(sent.all_cards);
    assert_eq!(sent.deck_id, deck.to_string());
    assert!(sent.card_ids.is_empty());
}

// ------------------------------------------------------------------ request ids

#[tokio::test]
async fn a_plain_request_id_is_kept_and_anything_else_is_replaced() {
    let gateway = start_gateway(&[]).await;

    let kept = gateway
        .http
        .get("/nope")
        .header("X-Request-ID", "abc.DEF_123-x")
        .send()
        .await;
    let too_long = gateway
        .http
        .get("/nope")
        .header("X-Request-ID", &"a".repeat(129))
        .send()
        .await;
    let odd = gateway
        .http
        .get("/nope")
        .header("X-Request-ID", "has%20space{}")
        .send()
        .await;
    let absent = gateway.http.get("/health/live").send().await;

    assert_eq!(kept.header("x-request-id"), Some("abc.DEF_123-x"));
    assert_eq!(kept.json()["request_id"], "abc.DEF_123-x");
    for replaced in [&too_long, &odd] {
        let id = replaced.header("x-request-id").expect("generated id");
        assert!(Uuid::parse_str(id).is_ok(), "{id}");
        assert_eq!(replaced.json()["request_id"], id);
    }
    assert!(
        absent
            .header("x-request-id")
            .is_some_and(|id| Uuid::parse_str(id).is_ok())
    );
}

// ------------------------------------------------------------------ rate limits

#[tokio::test]
async fn the_eleventh_auth_call_from_one_ip_is_429_and_a_spoofed_forwarded_for_does_not_help() {
    let gateway = start_gateway(&[]).await;
    let login = || {
        gateway
            .http
            .post("/api/v1/auth/login")
            .json(&json!({"email": "a@b.cd", "password": "abc12345"}))
    };

    let mut remaining = Vec::new();
    for _ in 0..10 {
        let response = login().send().await;
        assert_ne!(response.status, 429, "{}", response.text());
        assert_eq!(response.header("x-ratelimit-limit"), Some("10"));
        assert_eq!(response.header("ratelimit-policy"), Some("10;w=60"));
        assert!(
            response
                .header("ratelimit")
                .is_some_and(|v| v.starts_with("limit=10, remaining="))
        );
        remaining.push(
            response
                .header("x-ratelimit-remaining")
                .unwrap()
                .parse::<u32>()
                .unwrap(),
        );
    }
    let eleventh = login().send().await;
    let spoofed = login()
        .header("X-Forwarded-For", "198.51.100.23")
        .send()
        .await;

    assert_eq!(remaining, (0..10).rev().collect::<Vec<_>>());
    assert_problem(&eleventh, 429, "RATE_LIMIT_EXCEEDED");
    let retry_after: u64 = eleventh
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(
        (1..=6).contains(&retry_after),
        "one call per 6 s: {retry_after}"
    );
    assert_eq!(eleventh.header("x-ratelimit-remaining"), Some("0"));
    let reset: u64 = eleventh
        .header("x-ratelimit-reset")
        .unwrap()
        .parse()
        .unwrap();
    assert!(reset > now() && reset <= now() + 61, "{reset}");
    assert_problem(&spoofed, 429, "RATE_LIMIT_EXCEEDED");
}

#[tokio::test]
async fn concurrent_calls_cannot_overdraw_a_bucket() {
    let gateway = start_gateway(&[]).await;
    let calls = (0..30).map(|_| {
        let http = gateway.http.clone();
        tokio::spawn(async move {
            http.post("/api/v1/auth/login")
                .json(&json!({"email": "a@b.cd", "password": "abc12345"}))
                .send()
                .await
                .status
        })
    });

    let mut statuses = Vec::new();
    for call in calls.collect::<Vec<_>>() {
        statuses.push(call.await.unwrap());
    }

    let allowed = statuses.iter().filter(|status| **status != 429).count();
    assert_eq!(allowed, 10, "{statuses:?}");
}

#[tokio::test]
async fn forwarded_for_from_a_trusted_proxy_selects_the_clients_bucket() {
    let gateway = start_gateway(&[("--trusted-proxies", "127.0.0.1/32".to_owned())]).await;
    let login = |ip: &str| {
        gateway
            .http
            .post("/api/v1/auth/login")
            .header("X-Forwarded-For", ip)
            .json(&json!({"email": "a@b.cd", "password": "abc12345"}))
            .send()
    };
    for _ in 0..10 {
        login("198.51.100.1").await;
    }

    let exhausted = login("198.51.100.1").await;
    let other_client = login("198.51.100.2").await;

    assert_eq!(exhausted.status, 429);
    assert_ne!(other_client.status, 429);
    assert_eq!(other_client.header("x-ratelimit-remaining"), Some("9"));
}

#[tokio::test]
async fn api_limits_are_per_user_and_endpoint() {
    let gateway = start_gateway(&[("--rate-limit-api-per-minute", "3".to_owned())]).await;
    let alice = user_token();
    let bob = user_token();
    for _ in 0..3 {
        let response = gateway.http.get(DECKS).bearer(&alice).send().await;
        assert_eq!(response.header("x-ratelimit-limit"), Some("3"));
    }

    let limited = gateway.http.get(DECKS).bearer(&alice).send().await;
    let other_endpoint = gateway
        .http
        .get("/api/v1/decks/search?q=x")
        .bearer(&alice)
        .send()
        .await;
    let other_user = gateway.http.get(DECKS).bearer(&bob).send().await;
    let health = gateway.http.get("/health/live").send().await;

    assert_problem(&limited, 429, "RATE_LIMIT_EXCEEDED");
    assert_ne!(other_endpoint.status, 429);
    assert_ne!(other_user.status, 429);
    assert_eq!(health.status, 200);
    assert!(
        health.header("x-ratelimit-limit").is_none(),
        "health is not limited"
    );
}

#[tokio::test]
async fn a_rate_limit_check_is_one_redis_round_trip() {
    // Arrange: keys under a prefix of this test's own; a first check loads the script.
    let prefix = test_support::key_prefix();
    let gateway = start_gateway(&[("--redis-key-prefix", prefix.clone())]).await;
    let login = || {
        gateway
            .http
            .post("/api/v1/auth/login")
            .json(&json!({"email": "a@b.cd", "password": "abc12345"}))
    };
    assert_eq!(
        login().send().await.header("x-ratelimit-remaining"),
        Some("9")
    );
    let mut monitor = RedisMonitor::start(&test_support::redis_url()).await;

    // Act
    let checked = login().send().await;
    let commands = monitor.commands_of(&prefix).await;

    // Assert: the check counted, in one EVALSHA (counted on every node of a cluster).
    assert_eq!(checked.header("x-ratelimit-remaining"), Some("8"));
    assert_eq!(command_names(&commands), ["EVALSHA"], "{commands:#?}");
}

#[tokio::test]
async fn with_redis_down_the_limiter_fails_open_and_counts_it() {
    let mut redis = RedisServer::start();
    let gateway = start_gateway(&[("--rate-limit-redis-url", redis.url())]).await;
    redis.kill();
    let login = || {
        gateway
            .http
            .post("/api/v1/auth/login")
            .json(&json!({"email": "a@b.cd", "password": "abc12345"}))
    };

    let started = std::time::Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..15 {
        statuses.push(login().send().await.status);
    }
    let metrics = gateway.metrics.get("/metrics").send().await.text();

    assert!(
        statuses.iter().all(|status| *status == 503),
        "calls went through to the (absent) service: {statuses:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a dead Redis costs little per call"
    );
    let counted: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("gateway_rate_limit_fail_open_total "))
        .expect("fail-open metric")
        .parse()
        .unwrap();
    assert!(counted >= 15, "{metrics}");
    assert!(
        metrics.contains("redis_rate_limit_reachable 0"),
        "Redis shown unreachable: {metrics}"
    );
}

#[tokio::test]
async fn a_hung_redis_costs_one_timeout_per_cooldown_not_one_per_request() {
    let redis = RedisServer::start();
    let gateway = start_gateway(&[("--rate-limit-redis-url", redis.url())]).await;
    let login = || {
        gateway
            .http
            .post("/api/v1/auth/login")
            .json(&json!({"email": "a@b.cd", "password": "abc12345"}))
    };
    assert!(
        login().send().await.header("x-ratelimit-limit").is_some(),
        "limited while Redis answers"
    );
    redis.pause();

    let started = std::time::Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(login().send().await.status);
    }
    let elapsed = started.elapsed();
    redis.resume();

    assert!(statuses.iter().all(|status| *status == 503), "{statuses:?}");
    // Each Redis call is bounded by 500 ms; without the breaker 20 calls would take ~10 s.
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
}

// ------------------------------------------------------------------ CORS

#[tokio::test]
async fn cors_allows_configured_origins_with_credentials_only() {
    let gateway =
        start_gateway(&[("--cors-allowed-origins", "https://app.example".to_owned())]).await;
    let preflight = |origin: &str| {
        gateway
            .http
            .request("OPTIONS", DECKS)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .header("Access-Control-Request-Headers", "authorization")
            .send()
    };

    let allowed = preflight("https://app.example").await;
    let refused = preflight("https://evil.example").await;
    let actual = gateway
        .http
        .get(DECKS)
        .header("Origin", "https://app.example")
        .send()
        .await;

    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        allowed.header("access-control-allow-credentials"),
        Some("true")
    );
    assert!(refused.header("access-control-allow-origin").is_none());
    let exposed = actual
        .header("access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for header in [
        "x-request-id",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "retry-after",
    ] {
        assert!(exposed.contains(header), "{header} not exposed: {exposed}");
    }
}

// ------------------------------------------------------------------ health, OpenAPI

#[tokio::test]
async fn health_routes_report_the_missing_services() {
    let gateway = start_gateway(&[]).await;

    let live = gateway.http.get("/health/live").send().await;
    let ready = gateway.http.get("/health/ready").send().await;
    let health = gateway.http.get("/health").send().await;

    assert_eq!(live.status, 200);
    assert_eq!(live.json()["status"], "alive");
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["status"], "not_ready");
    assert_eq!(
        ready.json()["checks"],
        json!({"session_service": false, "deck_service": false})
    );
    assert_eq!(health.status, 503);
    let health = health.json();
    assert_eq!(health["status"], "unhealthy");
    assert_eq!(health["checks"]["rate_limit_redis"]["status"], "healthy");
    assert_eq!(health["checks"]["deck_service"]["status"], "unhealthy");
}

#[tokio::test]
async fn jwks_serves_the_configured_keys() {
    let gateway = start_gateway(&[]).await;

    let response = gateway.http.get("/.well-known/jwks.json").send().await;

    assert_eq!(response.status, 200);
    assert_eq!(
        response.json()["keys"][0]["kid"],
        TestTokens::new().public_jwk().kid
    );
}

/// Every (method, path) of HTTP_API.md.
const CONTRACT: &[(&str, &str)] = &[
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/google"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/logout-all"),
    ("GET", "/api/v1/auth/sessions"),
    ("DELETE", "/api/v1/auth/sessions/{session_id}"),
    ("GET", "/api/v1/auth/me"),
    ("PATCH", "/api/v1/auth/me"),
    ("GET", "/api/v1/decks"),
    ("POST", "/api/v1/decks"),
    ("GET", "/api/v1/decks/search"),
    ("GET", "/api/v1/decks/{id}"),
    ("PATCH", "/api/v1/decks/{id}"),
    ("DELETE", "/api/v1/decks/{id}"),
    ("GET", "/api/v1/cards"),
    ("POST", "/api/v1/cards"),
    ("GET", "/api/v1/cards/search"),
    ("POST", "/api/v1/cards/bulk"),
    ("GET", "/api/v1/cards/{id}"),
    ("PATCH", "/api/v1/cards/{id}"),
    ("DELETE", "/api/v1/cards/{id}"),
    ("GET", "/api/v1/study/queue"),
    ("GET", "/api/v1/study/queue/{deck_id}"),
    ("GET", "/api/v1/study/stats"),
    ("POST", "/api/v1/study/initialize"),
    ("POST", "/api/v1/study/initialize/{deck_id}"),
    ("POST", "/api/v1/reviews"),
    ("GET", "/api/v1/reviews"),
    ("POST", "/api/v1/reviews/bulk"),
    ("GET", "/api/v1/progress/dashboard"),
    ("GET", "/api/v1/progress/decks"),
    ("GET", "/api/v1/progress/decks/{deck_id}"),
    ("GET", "/api/v1/progress/trends"),
    ("GET", "/health"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/openapi.json"),
];

/// The document is generated from the router (utoipa-axum), so a route cannot be served
/// without being documented; this holds both to the contract and checks that every
/// documented operation is served and every other method of its path is 405.
#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_the_router_serves() {
    let gateway = start_gateway(&[]).await;
    let token = TestTokens::new().access_token(Uuid::new_v4(), true);
    let document = gateway.http.get("/openapi.json").send().await.json();
    let methods = ["get", "post", "patch", "put", "delete"];

    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in methods.iter().filter(|m| item.get(**m).is_some()) {
            documented.push((method.to_ascii_uppercase(), path.clone()));
        }
    }
    let mut routes: Vec<(String, String)> = CONTRACT
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    documented.sort();
    routes.sort();

    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(documented, routes);
    for (path, item) in document["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{id}", &Uuid::new_v4().to_string())
            .replace("{deck_id}", &Uuid::new_v4().to_string())
            .replace("{session_id}", &Uuid::new_v4().to_string());
        for method in methods {
            let response = gateway
                .http
                .request(&method.to_ascii_uppercase(), &concrete)
                .bearer(&token)
                .send()
                .await;
            if item.get(method).is_some() {
                let unrouted = response.status == 405
                    || (response.status == 404 && response.json()["detail"] == "Not found");
                assert!(
                    !unrouted,
                    "{method} {path} is documented but not served: {}",
                    response.text()
                );
            } else {
                assert_eq!(
                    response.status, 405,
                    "{method} {path} is served but not documented"
                );
            }
        }
    }
}
