//! Two replicas of everything (issue 14): two session-services, two deck-services and two
//! gateways, every gateway balancing over both replicas of each service, as
//! `REPLICAS=2 make run` starts them. Calls go through both front doors in turn, so
//! consecutive calls land on different gateways and, round robin, on different service
//! replicas; which replica served a call is read from its own `/metrics`.
//!
//! A replica *added* at run time is reached through DNS re-resolution, which a test cannot
//! drive with real names (no DNS server here): `balance.rs` covers it with a resolver table.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use test_support::{
    ServingStatus, TestTokens, health_status,
    http::HttpClient,
    replicas::{
        GET_DECK, ReplicaOptions, served, spawn_replicated_stack, spawn_replicated_stack_with,
    },
};
use tokio::time::{Instant, sleep};
use uuid::Uuid;

fn superuser() -> String {
    TestTokens::new().access_token(Uuid::new_v4(), true)
}

async fn create_deck(front: &HttpClient, token: &str, name: &str) -> String {
    let created = front
        .post("/api/v1/decks")
        .bearer(token)
        .json(&json!({"name": name, "level": "A1"}))
        .send()
        .await;
    assert_eq!(created.status, 201, "create deck: {}", created.text());
    created.json()["id"].as_str().expect("deck id").to_owned()
}

async fn get_json(front: &HttpClient, token: &str, path: &str) -> Value {
    let response = front.get(path).bearer(token).send().await;
    assert_eq!(response.status, 200, "GET {path}: {}", response.text());
    response.json()
}

#[tokio::test]
async fn two_hundred_cached_reads_through_both_front_doors_spread_over_both_deck_service_replicas()
{
    let stack = spawn_replicated_stack(2).await;
    let token = superuser();
    let deck_id = create_deck(&stack.fronts[0], &token, "Spread").await;

    for i in 0..200 {
        let front = &stack.fronts[i % 2];
        get_json(front, &token, &format!("/api/v1/decks/{deck_id}")).await;
    }

    let mut counts = Vec::new();
    for i in 0..2 {
        counts.push(served(stack.deck(i), GET_DECK).await);
    }
    println!("GetDeck calls per deck-service replica after 200 reads: {counts:?}");
    for (i, count) in counts.iter().enumerate() {
        assert!(
            *count >= 50,
            "deck-service replica {i} served {count} of 200 reads (all: {counts:?})"
        );
    }
}

#[tokio::test]
async fn a_deck_service_replica_killed_under_read_load_fails_no_read_and_gets_calls_again_after_restart()
 {
    let mut stack = spawn_replicated_stack(2).await;
    let token = superuser();
    let deck_id = create_deck(&stack.fronts[0], &token, "Killed").await;
    let path = format!("/api/v1/decks/{deck_id}");

    // Act: readers through both gateways; SIGKILL replica 0 while they read.
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for front in stack.fronts.clone() {
        for _ in 0..2 {
            let (front, token, path, stop) =
                (front.clone(), token.clone(), path.clone(), stop.clone());
            readers.push(tokio::spawn(async move {
                let (mut ok, mut failed) = (0u32, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let response = front.get(&path).bearer(&token).send().await;
                    if response.status == 200 {
                        ok += 1;
                    } else {
                        failed.push(format!("{} {}", response.status, response.text()));
                    }
                }
                (ok, failed)
            }));
        }
    }
    sleep(Duration::from_millis(500)).await;
    stack.kill_deck(0);
    // Readiness of every gateway stays SERVING while one replica is gone.
    let watch_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch_until {
        for gateway in &stack.gateways {
            let status = health_status(&gateway.grpc_addr, "readiness").await;
            assert_eq!(
                status,
                Ok(ServingStatus::Serving),
                "gateway {} readiness with one deck-service replica killed",
                gateway.grpc_addr
            );
        }
        sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for reader in readers {
        let (reader_ok, reader_failed) = reader.await.expect("reader task");
        ok += reader_ok;
        failed.extend(reader_failed);
    }

    // Assert: no read failed, and the restarted replica gets calls again within 15 s.
    assert!(ok > 0, "no read answered at all");
    assert!(
        failed.is_empty(),
        "{} of {} reads failed: {failed:?}",
        failed.len(),
        ok as usize + failed.len()
    );
    stack.restart_deck(0).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        for i in 0..2 {
            get_json(&stack.fronts[i], &token, &path).await;
        }
        if served(stack.deck(0), GET_DECK).await > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted replica got no call within 15 s"
        );
        sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn writes_of_decks_and_cards_are_read_back_through_the_other_replicas_at_once() {
    let stack = spawn_replicated_stack(2).await;
    let token = superuser();
    let deck_id = create_deck(&stack.fronts[0], &token, "Coherent 0").await;
    let deck_path = format!("/api/v1/decks/{deck_id}");
    let cards_path = format!("/api/v1/cards?deck_id={deck_id}");
    // Warm every cache of every replica first, so a stale copy would be there to find.
    for i in 0..4 {
        get_json(&stack.fronts[i % 2], &token, &deck_path).await;
        get_json(&stack.fronts[i % 2], &token, &cards_path).await;
    }

    for round in 1..=10 {
        let (writer, reader) = (&stack.fronts[round % 2], &stack.fronts[(round + 1) % 2]);
        let name = format!("Coherent {round}");
        let updated = writer
            .patch(&deck_path)
            .bearer(&token)
            .json(&json!({"name": name}))
            .send()
            .await;
        assert_eq!(updated.status, 200, "{}", updated.text());
        // Two reads through the other front door: round robin puts them on both replicas.
        for _ in 0..2 {
            let deck = get_json(reader, &token, &deck_path).await;
            assert_eq!(deck["name"], name, "round {round}: a stale deck was served");
        }

        let card = writer
            .post("/api/v1/cards")
            .bearer(&token)
            .json(&json!({
                "deck_id": deck_id, "front_text": format!("λέξη {round}"),
                "back_text": format!("word {round}"), "difficulty": "easy", "order_index": round,
            }))
            .send()
            .await;
        assert_eq!(card.status, 201, "{}", card.text());
        let card_id = card.json()["id"].as_str().expect("card id").to_owned();
        for _ in 0..2 {
            let list = get_json(reader, &token, &cards_path).await;
            assert_eq!(
                list["total"], round,
                "round {round}: a stale card list was served"
            );
            let deck = get_json(reader, &token, &deck_path).await;
            assert_eq!(
                deck["card_count"], round,
                "round {round}: a stale card_count"
            );
        }

        let back = format!("word {round}, edited");
        let edited = reader
            .patch(&format!("/api/v1/cards/{card_id}"))
            .bearer(&token)
            .json(&json!({"back_text": back}))
            .send()
            .await;
        assert_eq!(edited.status, 200, "{}", edited.text());
        for _ in 0..2 {
            let card = get_json(writer, &token, &format!("/api/v1/cards/{card_id}")).await;
            assert_eq!(
                card["back_text"], back,
                "round {round}: a stale card was served"
            );
        }
    }
}

async fn refresh(front: &HttpClient, refresh_token: &str) -> (u16, Value) {
    let response = front
        .post("/api/v1/auth/refresh")
        .json(&json!({"refresh_token": refresh_token}))
        .send()
        .await;
    let body = response.json();
    (response.status, body)
}

#[tokio::test]
async fn refresh_rotation_grace_and_reuse_behave_as_with_one_replica_across_replicas() {
    // A short grace window, so the reuse case needs no long sleep.
    let stack = spawn_replicated_stack_with(
        2,
        ReplicaOptions {
            session_env: vec![("REFRESH_GRACE_SECONDS", "1".to_owned())],
            ..ReplicaOptions::default()
        },
    )
    .await;
    let email = format!("replicas-{}@example.com", Uuid::new_v4().simple());
    let registered = stack.fronts[0]
        .post("/api/v1/auth/register")
        .json(&json!({"email": email, "password": "correct horse 1", "full_name": "Replica"}))
        .send()
        .await;
    assert_eq!(registered.status, 201, "{}", registered.text());
    let first = registered.json()["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_owned();

    // Rotation through one front door; replays within grace through the other (and so
    // through both session-service replicas) get the identical pair.
    let (status, rotated) = refresh(&stack.fronts[0], &first).await;
    assert_eq!(status, 200, "rotation: {rotated}");
    for i in 0..4 {
        let (status, replayed) = refresh(&stack.fronts[(i + 1) % 2], &first).await;
        assert_eq!(status, 200, "replay {i} within grace: {replayed}");
        assert_eq!(
            replayed, rotated,
            "replay {i} within grace got another pair"
        );
    }

    // The rotated token rotates again on either replica.
    let second = rotated["refresh_token"].as_str().expect("refresh token");
    let (status, third) = refresh(&stack.fronts[1], second).await;
    assert_eq!(status, 200, "second rotation: {third}");

    // After the grace window, the first token is reuse: 401, and the whole session ends,
    // so the newest token is refused too, through either front door.
    sleep(Duration::from_millis(2_500)).await;
    let (status, reused) = refresh(&stack.fronts[0], &first).await;
    assert_eq!(status, 401, "reuse after grace: {reused}");
    assert_eq!(reused["code"], "REFRESH_TOKEN_REUSED", "{reused}");
    let newest = third["refresh_token"].as_str().expect("refresh token");
    let (status, refused) = refresh(&stack.fronts[1], newest).await;
    assert_eq!(
        status, 401,
        "the session's newest token after reuse: {refused}"
    );
}
