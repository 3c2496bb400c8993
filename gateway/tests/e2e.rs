//! End-to-end: the three real binaries (session-service, deck-service, gateway) on
//! real PostgreSQL and Redis, driven over HTTP like the browser front end, with every
//! response checked against the OpenAPI document.
//!
//! Needs the service binaries built (`make test` builds the workspace; alone:
//! `cargo build -p session-service -p deck-service`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

mod schema;

use base64::Engine;
use serde_json::{Value, json};
use test_support::{
    http::HttpResponse,
    stack::{Stack, spawn_stack},
};
use uuid::Uuid;

const PASSWORD: &str = "correct horse 42";

/// The stack plus the OpenAPI document every answer is checked against.
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

    /// Sends `method path` and checks the answer against `template`'s documentation.
    async fn call(
        &self,
        method: &str,
        template: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> HttpResponse {
        let mut request = self.stack.http.request(method, path);
        if let Some(token) = token {
            request = request.bearer(token);
        }
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await;
        schema::assert_documented(&self.doc, method, template, &response);
        response
    }

    async fn get(&self, template: &str, path: &str, token: &str) -> HttpResponse {
        self.call("GET", template, path, Some(token), None).await
    }

    /// A superuser's access token (registered, promoted, logged in again).
    async fn superuser(&self) -> String {
        let email = format!("admin-{}@example.com", Uuid::new_v4().simple());
        self.stack.register(&email, PASSWORD, "Admin").await;
        self.stack.make_superuser(&email).await;
        let tokens = self.stack.login(&email, PASSWORD).await;
        tokens["access_token"].as_str().unwrap().to_owned()
    }

    /// A normal user's TokenResponse.
    async fn user(&self) -> (String, Value) {
        let email = format!("user-{}@example.com", Uuid::new_v4().simple());
        let tokens = self
            .stack
            .register(&email, PASSWORD, "Μαρία Παπαδοπούλου")
            .await;
        (email, tokens)
    }

    /// Creates a deck with `cards` cards; returns (deck id, card ids in order).
    async fn deck_with_cards(
        &self,
        admin: &str,
        name: &str,
        cards: usize,
    ) -> (String, Vec<String>) {
        let deck = self
            .call(
                "POST",
                "/api/v1/decks",
                "/api/v1/decks",
                Some(admin),
                Some(json!({"name": name, "description": "Λέξεις", "level": "B1"})),
            )
            .await;
        assert_eq!(deck.status, 201, "{}", deck.text());
        let deck_id = deck.json()["id"].as_str().unwrap().to_owned();
        let new_cards: Vec<Value> = (0..cards)
            .map(|i| json!({"front_text": format!("λέξη {i}"), "back_text": format!("word {i}"), "difficulty": "easy", "order_index": i}))
            .collect();
        let created = self
            .call(
                "POST",
                "/api/v1/cards/bulk",
                "/api/v1/cards/bulk",
                Some(admin),
                Some(json!({"deck_id": deck_id, "cards": new_cards})),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text());
        let ids = created.json()["cards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect();
        (deck_id, ids)
    }
}

fn access(tokens: &Value) -> String {
    tokens["access_token"].as_str().unwrap().to_owned()
}

fn refresh(tokens: &Value) -> String {
    tokens["refresh_token"].as_str().unwrap().to_owned()
}

/// The `sid` claim of a token (its session id).
fn session_of(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["sid"].as_str().unwrap().to_owned()
}

/// Percent-encodes a query value (UTF-8 bytes).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn today() -> String {
    let now = time::OffsetDateTime::now_utc().date();
    format!(
        "{:04}-{:02}-{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    )
}

#[tokio::test]
async fn a_learner_registers_studies_reviews_and_manages_sessions() {
    let api = Api::start().await;
    let admin = api.superuser().await;
    let (deck, cards) = api
        .deck_with_cards(&admin, "Greetings of the journey", 3)
        .await;
    let single = api
        .call("POST", "/api/v1/cards", "/api/v1/cards", Some(&admin), Some(json!({
            "deck_id": deck, "front_text": "ευχαριστώ", "back_text": "thank you", "difficulty": "medium", "order_index": 3
        })))
        .await;
    assert_eq!(single.status, 201, "{}", single.text());

    // Register, then log in on a second device.
    let (email, registered) = api.user().await;
    assert_eq!(registered["token_type"], "bearer");
    assert_eq!(registered["expires_in"], 1800);
    let login = api
        .call(
            "POST",
            "/api/v1/auth/login",
            "/api/v1/auth/login",
            None,
            Some(json!({"email": email.to_uppercase(), "password": PASSWORD})),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.text());
    let tokens = login.json();
    let token = access(&tokens);

    // Profile.
    let me = api
        .get("/api/v1/auth/me", "/api/v1/auth/me", &token)
        .await
        .json();
    assert_eq!(me["email"], email);
    assert_eq!(me["settings"]["daily_goal"], 20);
    assert_eq!(me["settings"]["preferred_language"], Value::Null);
    let patched = api
        .call(
            "PATCH",
            "/api/v1/auth/me",
            "/api/v1/auth/me",
            Some(&token),
            Some(json!({"daily_goal": 15, "preferred_language": "el"})),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(patched.json()["settings"]["preferred_language"], "el");

    // Decks and cards.
    let decks = api
        .get(
            "/api/v1/decks",
            "/api/v1/decks?page=1&page_size=100&level=B1",
            &token,
        )
        .await
        .json();
    assert!(
        decks["decks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == deck.as_str()),
        "{decks}"
    );
    let found = api
        .get(
            "/api/v1/decks/search",
            "/api/v1/decks/search?q=JOURNEY&page_size=50",
            &token,
        )
        .await
        .json();
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["query"], "JOURNEY");
    let detail = api
        .get(
            "/api/v1/decks/{id}",
            &format!("/api/v1/decks/{deck}"),
            &token,
        )
        .await
        .json();
    assert_eq!(detail["card_count"], 4);
    let listed = api
        .get(
            "/api/v1/cards",
            &format!("/api/v1/cards?deck_id={deck}"),
            &token,
        )
        .await
        .json();
    let order: Vec<i64> = listed["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["order_index"].as_i64().unwrap())
        .collect();
    assert_eq!(order, vec![0, 1, 2, 3]);
    let searched = api
        .get(
            "/api/v1/cards/search",
            &format!(
                "/api/v1/cards/search?q={}&deck_id={deck}",
                encode("ευχαριστώ")
            ),
            &token,
        )
        .await
        .json();
    assert_eq!(searched["total"], 1, "{searched}");
    let card = api
        .get(
            "/api/v1/cards/{id}",
            &format!("/api/v1/cards/{}", cards[0]),
            &token,
        )
        .await
        .json();
    assert_eq!(card["front_text"], "λέξη 0");

    // Study: two cards, then the whole deck.
    let initialized = api
        .call(
            "POST",
            "/api/v1/study/initialize",
            "/api/v1/study/initialize",
            Some(&token),
            Some(json!({"deck_id": deck, "card_ids": [cards[0], cards[1]]})),
        )
        .await
        .json();
    assert_eq!(initialized["initialized_count"], 2);
    let rest = api
        .call(
            "POST",
            "/api/v1/study/initialize/{deck_id}",
            &format!("/api/v1/study/initialize/{deck}"),
            Some(&token),
            None,
        )
        .await
        .json();
    assert_eq!(rest["initialized_count"], 2, "{rest}");
    assert_eq!(rest["already_exists_count"], 2, "{rest}");
    let queue = api
        .get(
            "/api/v1/study/queue/{deck_id}",
            &format!("/api/v1/study/queue/{deck}?limit=100"),
            &token,
        )
        .await
        .json();
    assert_eq!(queue["total_due"], 4, "{queue}");
    assert!(
        queue["cards"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["is_new"] == false && c["status"] == "new")
    );
    let all = api
        .get(
            "/api/v1/study/queue",
            "/api/v1/study/queue?include_early_practice=true",
            &token,
        )
        .await
        .json();
    assert_eq!(all["deck_name"], "All Decks");
    assert_eq!(all["deck_id"], "00000000-0000-0000-0000-000000000000");

    // Reviews: one, then a bulk with an unknown card.
    let reviewed = api
        .call(
            "POST",
            "/api/v1/reviews",
            "/api/v1/reviews",
            Some(&token),
            Some(json!({"card_id": cards[0], "quality": 5, "time_taken": 12})),
        )
        .await
        .json();
    assert_eq!(reviewed["previous_status"], "new");
    assert_eq!(reviewed["success"], true);
    let unknown = Uuid::new_v4().to_string();
    let bulk = api
        .call("POST", "/api/v1/reviews/bulk", "/api/v1/reviews/bulk", Some(&token), Some(json!({
            "deck_id": deck, "session_id": "browser-session-1",
            "reviews": [{"card_id": cards[1], "quality": 4, "time_taken": 8}, {"card_id": unknown, "quality": 3, "time_taken": 5}]
        })))
        .await
        .json();
    assert_eq!(
        (
            bulk["total_submitted"].clone(),
            bulk["successful"].clone(),
            bulk["failed"].clone()
        ),
        (json!(2), json!(1), json!(1))
    );
    assert_eq!(bulk["results"][1]["success"], false);
    assert_eq!(bulk["results"][1]["card_id"], unknown.as_str());

    // Stats, progress, history.
    let stats = api
        .get("/api/v1/study/stats", "/api/v1/study/stats", &token)
        .await
        .json();
    assert_eq!(stats["total_reviews"], 2, "{stats}");
    assert_eq!(stats["reviews_today"], 2, "{stats}");
    let dashboard = api
        .get(
            "/api/v1/progress/dashboard",
            "/api/v1/progress/dashboard",
            &token,
        )
        .await
        .json();
    assert_eq!(
        dashboard["today"]["daily_goal"], 15,
        "the profile's goal reaches deck-service: {dashboard}"
    );
    assert_eq!(dashboard["today"]["reviews_completed"], 2);
    let progress = api
        .get("/api/v1/progress/decks", "/api/v1/progress/decks", &token)
        .await
        .json();
    assert_eq!(progress["total"], 1, "{progress}");
    assert_eq!(progress["decks"][0]["deck_id"], deck.as_str());
    let one = api
        .get(
            "/api/v1/progress/decks/{deck_id}",
            &format!("/api/v1/progress/decks/{deck}"),
            &token,
        )
        .await
        .json();
    assert_eq!(one["progress"]["total_cards"], 4, "{one}");
    let week = api
        .get("/api/v1/progress/trends", "/api/v1/progress/trends", &token)
        .await
        .json();
    assert_eq!(week["daily_stats"].as_array().unwrap().len(), 7, "{week}");
    let month = api
        .get(
            "/api/v1/progress/trends",
            &format!("/api/v1/progress/trends?period=month&deck_id={deck}"),
            &token,
        )
        .await
        .json();
    assert_eq!(month["daily_stats"].as_array().unwrap().len(), 30);
    let history = api
        .get(
            "/api/v1/reviews",
            &format!(
                "/api/v1/reviews?start_date={}&end_date={}",
                today(),
                today()
            ),
            &token,
        )
        .await
        .json();
    assert_eq!(history["total"], 2, "{history}");
    assert_eq!(
        history["reviews"][0]["card_id"],
        cards[1].as_str(),
        "newest first"
    );
    let past = api
        .get(
            "/api/v1/reviews",
            "/api/v1/reviews?end_date=2020-01-01",
            &token,
        )
        .await
        .json();
    assert_eq!(past["total"], 0);

    // Refresh rotates; a replay inside the grace window gets the identical pair.
    let rotated = api
        .call(
            "POST",
            "/api/v1/auth/refresh",
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh(&tokens)})),
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let rotated = rotated.json();
    let replay = api
        .call(
            "POST",
            "/api/v1/auth/refresh",
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh(&tokens)})),
        )
        .await
        .json();
    assert_eq!(replay, rotated);
    let token = access(&rotated);

    // Sessions: two live, the current one marked; revoke the other.
    let sessions = api
        .get("/api/v1/auth/sessions", "/api/v1/auth/sessions", &token)
        .await
        .json();
    assert_eq!(sessions["total"], 2, "{sessions}");
    let current: Vec<&Value> = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["current"] == true)
        .collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], session_of(&token).as_str());
    let other = session_of(&access(&registered));
    let revoked = api
        .call(
            "DELETE",
            "/api/v1/auth/sessions/{session_id}",
            &format!("/api/v1/auth/sessions/{other}"),
            Some(&token),
            None,
        )
        .await
        .json();
    assert_eq!(revoked["token_revoked"], true);
    let again = api
        .call(
            "DELETE",
            "/api/v1/auth/sessions/{session_id}",
            &format!("/api/v1/auth/sessions/{other}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(again.status, 404);

    // Logout ends the session of the refresh token; logout-all the rest.
    let logout = api
        .call(
            "POST",
            "/api/v1/auth/logout",
            "/api/v1/auth/logout",
            Some(&token),
            Some(json!({"refresh_token": refresh(&rotated)})),
        )
        .await
        .json();
    assert_eq!(logout["token_revoked"], true);
    let after = api
        .call(
            "POST",
            "/api/v1/auth/refresh",
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh(&rotated)})),
        )
        .await;
    assert_eq!(after.status, 401);
    let fresh = api.stack.login(&email, PASSWORD).await;
    let everything = api
        .call(
            "POST",
            "/api/v1/auth/logout-all",
            "/api/v1/auth/logout-all",
            Some(&access(&fresh)),
            None,
        )
        .await
        .json();
    assert_eq!(everything["sessions_revoked"], 1, "{everything}");
    assert_eq!(everything["message"], "Logged out from 1 session(s)");

    // The superuser edits and retires content.
    let renamed = api
        .call(
            "PATCH",
            "/api/v1/decks/{id}",
            &format!("/api/v1/decks/{deck}"),
            Some(&admin),
            Some(json!({"name": "Renamed", "description": null})),
        )
        .await
        .json();
    assert_eq!(renamed["description"], Value::Null);
    let card_patch = api
        .call(
            "PATCH",
            "/api/v1/cards/{id}",
            &format!("/api/v1/cards/{}", cards[2]),
            Some(&admin),
            Some(json!({"difficulty": "hard", "pronunciation": "léxi"})),
        )
        .await
        .json();
    assert_eq!(card_patch["difficulty"], "hard");
    let card_gone = api
        .call(
            "DELETE",
            "/api/v1/cards/{id}",
            &format!("/api/v1/cards/{}", cards[2]),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(card_gone.status, 204);
    let deck_gone = api
        .call(
            "DELETE",
            "/api/v1/decks/{id}",
            &format!("/api/v1/decks/{deck}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(deck_gone.status, 204);
    let missing = api
        .get(
            "/api/v1/decks/{id}",
            &format!("/api/v1/decks/{deck}"),
            &admin,
        )
        .await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn greek_text_round_trips_unchanged_through_create_and_read() {
    let api = Api::start().await;
    let admin = api.superuser().await;
    let greeting = "«Καλημέρα, τι κάνεις;»";

    let deck = api
        .call(
            "POST",
            "/api/v1/decks",
            "/api/v1/decks",
            Some(&admin),
            Some(
                json!({"name": greeting, "description": "Χαιρετισμοί · ΆΈΉΊΌΎΏ ΐΰ", "level": "A1"}),
            ),
        )
        .await
        .json();
    let deck_id = deck["id"].as_str().unwrap();
    let card = api
        .call(
            "POST",
            "/api/v1/cards",
            "/api/v1/cards",
            Some(&admin),
            Some(json!({
                "deck_id": deck_id, "front_text": "Καλημέρα", "back_text": "Good morning",
                "example_sentence": greeting, "pronunciation": "kaliméra", "difficulty": "easy"
            })),
        )
        .await
        .json();

    let read_deck = api
        .get(
            "/api/v1/decks/{id}",
            &format!("/api/v1/decks/{deck_id}"),
            &admin,
        )
        .await
        .json();
    let read_card = api
        .get(
            "/api/v1/cards/{id}",
            &format!("/api/v1/cards/{}", card["id"].as_str().unwrap()),
            &admin,
        )
        .await
        .json();
    let search = api
        .get(
            "/api/v1/decks/search",
            &format!("/api/v1/decks/search?q={}", encode("καλημέρα")),
            &admin,
        )
        .await
        .json();

    assert_eq!(read_deck["name"], greeting);
    assert_eq!(read_deck["description"], "Χαιρετισμοί · ΆΈΉΊΌΎΏ ΐΰ");
    assert_eq!(read_card["example_sentence"], greeting);
    assert_eq!(read_card["front_text"], "Καλημέρα");
    assert_eq!(read_card["pronunciation"], "kaliméra");
    assert_eq!(
        search["decks"][0]["name"], greeting,
        "case-insensitive Greek search: {search}"
    );
}

#[tokio::test]
async fn missing_things_are_404_and_other_peoples_things_are_not_yours() {
    let api = Api::start().await;
    let admin = api.superuser().await;
    let (deck, cards) = api.deck_with_cards(&admin, "Numbers", 2).await;
    let (_, alice) = api.user().await;
    let (_, bob) = api.user().await;
    let token = access(&alice);
    let nothing = Uuid::new_v4();

    for (template, path) in [
        ("/api/v1/decks/{id}", format!("/api/v1/decks/{nothing}")),
        ("/api/v1/cards/{id}", format!("/api/v1/cards/{nothing}")),
        ("/api/v1/cards", format!("/api/v1/cards?deck_id={nothing}")),
        (
            "/api/v1/study/queue/{deck_id}",
            format!("/api/v1/study/queue/{nothing}"),
        ),
        (
            "/api/v1/progress/decks/{deck_id}",
            format!("/api/v1/progress/decks/{nothing}"),
        ),
        (
            "/api/v1/progress/decks/{deck_id}",
            format!("/api/v1/progress/decks/{deck}"),
        ),
    ] {
        let response = api.get(template, &path, &token).await;

        assert_eq!(response.status, 404, "{path}: {}", response.text());
        assert_eq!(response.json()["code"], "NOT_FOUND");
    }
    let init = api
        .call(
            "POST",
            "/api/v1/study/initialize/{deck_id}",
            &format!("/api/v1/study/initialize/{nothing}"),
            Some(&token),
            None,
        )
        .await;
    let review = api
        .call(
            "POST",
            "/api/v1/reviews",
            "/api/v1/reviews",
            Some(&token),
            Some(json!({"card_id": nothing, "quality": 3, "time_taken": 1})),
        )
        .await;
    let bobs_session = session_of(&access(&bob));
    let steal = api
        .call(
            "DELETE",
            "/api/v1/auth/sessions/{session_id}",
            &format!("/api/v1/auth/sessions/{bobs_session}"),
            Some(&token),
            None,
        )
        .await;
    let foreign_logout = api
        .call(
            "POST",
            "/api/v1/auth/logout",
            "/api/v1/auth/logout",
            Some(&token),
            Some(json!({"refresh_token": refresh(&bob)})),
        )
        .await;
    let create = api
        .call(
            "POST",
            "/api/v1/decks",
            "/api/v1/decks",
            Some(&token),
            Some(json!({"name": "Mine", "level": "A1"})),
        )
        .await;
    let delete_card = api
        .call(
            "DELETE",
            "/api/v1/cards/{id}",
            &format!("/api/v1/cards/{}", cards[0]),
            Some(&token),
            None,
        )
        .await;

    assert_eq!(init.status, 404, "{}", init.text());
    assert_eq!(review.status, 404, "{}", review.text());
    assert_eq!(steal.status, 404, "{}", steal.text());
    assert_eq!(foreign_logout.status, 200);
    assert_eq!(
        foreign_logout.json()["token_revoked"],
        false,
        "another user's refresh token revokes nothing"
    );
    let bob_still = api
        .get(
            "/api/v1/auth/sessions",
            "/api/v1/auth/sessions",
            &access(&bob),
        )
        .await
        .json();
    assert_eq!(bob_still["total"], 1);
    assert_eq!(create.status, 403);
    assert_eq!(delete_card.status, 403);

    // The superuser's writes on things that do not exist.
    let new_card =
        json!({"deck_id": nothing, "front_text": "a", "back_text": "b", "difficulty": "easy"});
    let bulk = json!({"deck_id": nothing, "cards": [{"front_text": "a", "back_text": "b", "difficulty": "easy"}]});
    for (method, template, path, body) in [
        (
            "PATCH",
            "/api/v1/decks/{id}",
            format!("/api/v1/decks/{nothing}"),
            Some(json!({"name": "x"})),
        ),
        (
            "DELETE",
            "/api/v1/decks/{id}",
            format!("/api/v1/decks/{nothing}"),
            None,
        ),
        (
            "PATCH",
            "/api/v1/cards/{id}",
            format!("/api/v1/cards/{nothing}"),
            Some(json!({"front_text": "x"})),
        ),
        (
            "DELETE",
            "/api/v1/cards/{id}",
            format!("/api/v1/cards/{nothing}"),
            None,
        ),
        (
            "POST",
            "/api/v1/cards",
            "/api/v1/cards".to_owned(),
            Some(new_card),
        ),
        (
            "POST",
            "/api/v1/cards/bulk",
            "/api/v1/cards/bulk".to_owned(),
            Some(bulk),
        ),
        (
            "GET",
            "/api/v1/cards/search",
            format!("/api/v1/cards/search?q=x&deck_id={nothing}"),
            None,
        ),
        (
            "POST",
            "/api/v1/study/initialize",
            "/api/v1/study/initialize".to_owned(),
            Some(json!({"deck_id": nothing, "card_ids": [nothing]})),
        ),
    ] {
        let response = api.call(method, template, &path, Some(&admin), body).await;

        assert_eq!(response.status, 404, "{method} {path}: {}", response.text());
    }
}

#[tokio::test]
async fn auth_failures_have_their_documented_statuses_and_codes() {
    let api = Api::start().await;
    let (email, tokens) = api.user().await;

    let duplicate = api
        .call(
            "POST",
            "/api/v1/auth/register",
            "/api/v1/auth/register",
            None,
            Some(
                json!({"email": email.to_uppercase(), "password": PASSWORD, "full_name": "Again"}),
            ),
        )
        .await;
    let wrong_password = api
        .call(
            "POST",
            "/api/v1/auth/login",
            "/api/v1/auth/login",
            None,
            Some(json!({"email": email, "password": "wrong password 1"})),
        )
        .await;
    let unknown_user = api
        .call(
            "POST",
            "/api/v1/auth/login",
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "nobody@example.com", "password": PASSWORD})),
        )
        .await;
    let refresh_as_access = api
        .get("/api/v1/auth/me", "/api/v1/auth/me", &refresh(&tokens))
        .await;
    let garbage_refresh = api
        .call(
            "POST",
            "/api/v1/auth/refresh",
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": "garbage"})),
        )
        .await;
    let access_as_refresh = api
        .call(
            "POST",
            "/api/v1/auth/refresh",
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": access(&tokens)})),
        )
        .await;

    assert_eq!(duplicate.status, 409, "{}", duplicate.text());
    assert_eq!(duplicate.json()["code"], "CONFLICT");
    for failed in [&wrong_password, &unknown_user] {
        assert_eq!(failed.status, 401);
        assert_eq!(failed.json()["detail"], "Invalid email or password");
        assert_eq!(failed.header("www-authenticate"), Some("Bearer"));
    }
    assert_eq!(refresh_as_access.status, 401);
    assert_eq!(garbage_refresh.status, 401);
    assert_eq!(garbage_refresh.json()["code"], "TOKEN_INVALID");
    assert_eq!(access_as_refresh.status, 401);
    assert_eq!(access_as_refresh.json()["code"], "TOKEN_INVALID");
}

#[tokio::test]
async fn reusing_a_rotated_refresh_token_after_the_grace_window_revokes_the_session() {
    let api = Api {
        stack: test_support::stack::spawn_stack_with(test_support::stack::StackOptions {
            session_env: vec![("REFRESH_GRACE_SECONDS", "0".to_owned())],
            ..Default::default()
        })
        .await,
        doc: schema::document(),
    };
    let (_, tokens) = api.user().await;
    let first = api
        .call(
            "POST",
            "/api/v1/auth/refresh",
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh(&tokens)})),
        )
        .await
        .json();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    let reused = api
        .call(
            "POST",
            "/api/v1/auth/refresh",
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh(&tokens)})),
        )
        .await;
    let successor = api
        .call(
            "POST",
            "/api/v1/auth/refresh",
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh(&first)})),
        )
        .await;

    assert_eq!(reused.status, 401, "{}", reused.text());
    assert_eq!(reused.json()["code"], "REFRESH_TOKEN_REUSED");
    assert_eq!(successor.status, 401);
    assert_eq!(successor.json()["code"], "SESSION_REVOKED");
}

#[tokio::test]
async fn the_gateway_is_ready_and_healthy_with_both_services_and_serves_their_keys() {
    let api = Api::start().await;

    let ready = api
        .call("GET", "/health/ready", "/health/ready", None, None)
        .await;
    let health = api.call("GET", "/health", "/health", None, None).await;
    let jwks = api
        .call(
            "GET",
            "/.well-known/jwks.json",
            "/.well-known/jwks.json",
            None,
            None,
        )
        .await;
    let live = api
        .call("GET", "/health/live", "/health/live", None, None)
        .await;

    assert_eq!(ready.status, 200);
    assert_eq!(
        ready.json()["checks"],
        json!({"session_service": true, "deck_service": true})
    );
    assert_eq!(health.json()["status"], "healthy");
    assert_eq!(live.status, 200);
    assert_eq!(
        jwks.json()["keys"][0]["kid"],
        test_support::TestTokens::new().public_jwk().kid,
        "session-service signs with the fixture key"
    );
}

#[tokio::test]
async fn gateway_readiness_turns_not_serving_when_a_service_stops() {
    let mut stack = spawn_stack().await;
    let grpc = stack.gateway.grpc_addr.clone();

    stack.deck.terminate();
    stack
        .deck
        .wait_exit(std::time::Duration::from_secs(20))
        .await;
    test_support::wait_for_health(
        &grpc,
        "readiness",
        test_support::ServingStatus::NotServing,
        std::time::Duration::from_secs(10),
    )
    .await;
    let ready = stack.http.get("/health/ready").send().await;
    let health = stack.http.get("/health").send().await;

    assert_eq!(ready.status, 503);
    assert_eq!(
        ready.json()["checks"],
        json!({"session_service": true, "deck_service": false})
    );
    assert_eq!(health.status, 503);
    assert_eq!(health.json()["status"], "unhealthy");
}

#[tokio::test]
async fn the_edges_of_every_bound_are_accepted_end_to_end_and_one_past_them_is_422() {
    let api = Api::start().await;
    let admin = api.superuser().await;
    let (deck, cards) = api.deck_with_cards(&admin, "Bounds", 1).await;
    let (_, tokens) = api.user().await;
    let token = access(&tokens);
    let long_query = "α".repeat(100);

    for (template, path) in [
        ("/api/v1/decks", "/api/v1/decks?page=1&page_size=100".to_owned()),
        ("/api/v1/decks", "/api/v1/decks?page=1000&page_size=1".to_owned()),
        ("/api/v1/decks/search", format!("/api/v1/decks/search?q={}&page_size=50", encode(&long_query))),
        ("/api/v1/cards", format!("/api/v1/cards?deck_id={deck}&page_size=100&difficulty=easy")),
        ("/api/v1/cards/search", format!("/api/v1/cards/search?q=x&page_size=50&deck_id={deck}")),
        ("/api/v1/study/queue", "/api/v1/study/queue?limit=100&new_cards_limit=50&include_early_practice=true&early_practice_limit=50".to_owned()),
        ("/api/v1/study/queue", "/api/v1/study/queue?limit=1&new_cards_limit=0&include_new=false&early_practice_limit=0".to_owned()),
        ("/api/v1/reviews", "/api/v1/reviews?page_size=100&start_date=2020-01-01".to_owned()),
        ("/api/v1/progress/decks", "/api/v1/progress/decks?page_size=100".to_owned()),
        ("/api/v1/progress/trends", "/api/v1/progress/trends?period=year".to_owned()),
    ] {
        let response = api.get(template, &path, &token).await;

        assert_eq!(response.status, 200, "{path}: {}", response.text());
    }
    let quality_zero = api
        .call(
            "POST",
            "/api/v1/reviews",
            "/api/v1/reviews",
            Some(&token),
            Some(json!({"card_id": cards[0], "quality": 0, "time_taken": 0})),
        )
        .await;
    assert_eq!(quality_zero.status, 200, "{}", quality_zero.text());

    for (template, path) in [
        ("/api/v1/decks", "/api/v1/decks?page=0".to_owned()),
        ("/api/v1/decks", "/api/v1/decks?page_size=101".to_owned()),
        ("/api/v1/decks", "/api/v1/decks?level=a1".to_owned()),
        (
            "/api/v1/decks/search",
            format!(
                "/api/v1/decks/search?q={}",
                encode(&format!("{long_query}α"))
            ),
        ),
        ("/api/v1/decks/{id}", "/api/v1/decks/123".to_owned()),
        (
            "/api/v1/study/queue",
            "/api/v1/study/queue?limit=101".to_owned(),
        ),
    ] {
        let response = api.get(template, &path, &token).await;

        assert_eq!(response.status, 422, "{path}: {}", response.text());
    }
    let quality_six = api
        .call(
            "POST",
            "/api/v1/reviews",
            "/api/v1/reviews",
            Some(&token),
            Some(json!({"card_id": cards[0], "quality": 6, "time_taken": 0})),
        )
        .await;
    assert_eq!(quality_six.status, 422);
}

#[tokio::test]
async fn a_bad_field_of_a_bulk_item_is_named_by_its_full_path_by_the_edge_and_by_deck_service() {
    let api = Api::start().await;
    let admin = api.superuser().await;
    let (deck, cards) = api.deck_with_cards(&admin, "Paths", 1).await;
    let (_, tokens) = api.user().await;
    let token = access(&tokens);
    let card = json!({"front_text": "λέξη", "back_text": "word", "difficulty": "easy"});

    // A missing field is refused at the edge; a blank one only deck-service refuses (it
    // trims), and its BadRequest path reaches the client unchanged.
    for (path, token, body, field) in [
        (
            "/api/v1/cards/bulk",
            &admin,
            json!({"deck_id": deck, "cards": [card, {"front_text": "λέξη", "difficulty": "easy"}]}),
            "cards[1].back_text",
        ),
        (
            "/api/v1/cards/bulk",
            &admin,
            json!({"deck_id": deck, "cards": [card, card, {"front_text": "λέξη", "back_text": "   ", "difficulty": "easy"}]}),
            "cards[2].back_text",
        ),
        (
            "/api/v1/reviews/bulk",
            &token,
            json!({"deck_id": deck, "session_id": "s", "reviews": [{"card_id": cards[0], "quality": 4, "time_taken": 3}, {"card_id": cards[0], "time_taken": 3}]}),
            "reviews[1].quality",
        ),
    ] {
        let response = api.call("POST", path, path, Some(token), Some(body)).await;

        assert_eq!(response.status, 422, "{field}: {}", response.text());
        let problem = response.json();
        assert_eq!(problem["code"], "VALIDATION_ERROR", "{problem}");
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("{field}: no errors[] in {problem}"))
            .iter()
            .filter_map(|error| error["field"].as_str())
            .collect();
        assert_eq!(fields, [field], "{problem}");
    }
    let listed = api
        .get(
            "/api/v1/cards",
            &format!("/api/v1/cards?deck_id={deck}"),
            &token,
        )
        .await;
    assert_eq!(listed.json()["total"], 1, "a refused bulk creates nothing");
}

#[tokio::test]
async fn the_request_id_reaches_the_services_logs() {
    let logs = std::env::temp_dir().join(format!("lge-stack-logs-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&logs).unwrap();
    let service_log = ("RUST_LOG", "info,tower_http=debug".to_owned());
    let stack = test_support::stack::spawn_stack_with(test_support::stack::StackOptions {
        session_env: vec![service_log.clone()],
        deck_env: vec![service_log],
        log_dir: Some(logs.clone()),
        ..Default::default()
    })
    .await;
    let email = format!("trace-{}@example.com", Uuid::new_v4().simple());
    let tokens = stack.register(&email, PASSWORD, "Trace").await;

    let answered = stack
        .http
        .get("/api/v1/decks")
        .bearer(&access(&tokens))
        .header("X-Request-ID", "e2e-trace-4711")
        .send()
        .await;
    let profile = stack
        .http
        .get("/api/v1/auth/me")
        .bearer(&access(&tokens))
        .header("X-Request-ID", "e2e-trace-4712")
        .send()
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    assert_eq!(answered.header("x-request-id"), Some("e2e-trace-4711"));
    assert_eq!(profile.header("x-request-id"), Some("e2e-trace-4712"));
    let deck_log = std::fs::read_to_string(logs.join("deck-service.log")).unwrap();
    let session_log = std::fs::read_to_string(logs.join("session-service.log")).unwrap();
    assert!(
        deck_log.contains("e2e-trace-4711"),
        "deck-service log lacks the request id:\n{deck_log}"
    );
    assert!(
        session_log.contains("e2e-trace-4712"),
        "session-service log lacks the request id:\n{session_log}"
    );
}

/// Not a check: prints the latency of a few routes through the whole (debug) stack.
/// `scripts/test.sh -p gateway --run-ignored only -E 'test(/latency/)' --no-capture`
#[tokio::test]
#[ignore = "measurement, not a check"]
async fn latency_through_the_stack() {
    let api = Api::start().await;
    let admin = api.superuser().await;
    let (deck, _) = api.deck_with_cards(&admin, "Latency", 20).await;
    let (_, tokens) = api.user().await;
    let token = access(&tokens);
    for (name, path) in [
        ("GET /health/live", "/health/live".to_owned()),
        ("GET /decks", "/api/v1/decks".to_owned()),
        ("GET /decks/{id}", format!("/api/v1/decks/{deck}")),
        (
            "GET /cards?deck_id",
            format!("/api/v1/cards?deck_id={deck}"),
        ),
    ] {
        let mut samples = Vec::new();
        for _ in 0..90 {
            let started = std::time::Instant::now();
            let response = api.stack.http.get(&path).bearer(&token).send().await;
            samples.push(started.elapsed());
            assert_eq!(response.status, 200, "{}", response.text());
        }
        samples.sort();
        let at =
            |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1000.0;
        println!(
            "{name:<22} p50 {:>6.2} ms  p95 {:>6.2} ms  p99 {:>6.2} ms",
            at(0.5),
            at(0.95),
            at(0.99)
        );
    }
}
