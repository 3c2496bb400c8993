//! deck-service through gRPC on real PostgreSQL and Redis: auth, validation, the
//! documented NOT_FOUND fixes, SM-2 results, the study queue as the clock moves, and
//! read-your-writes across every cached view.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

mod support;

use common::status::Details;
use proto::deck::v1::{self as pb, bulk_review_item::Outcome};
use support::{TestApp, auth, get_deck, initialize_all, list_cards, queue, review};
use time::macros::datetime;
use tonic::Code;
use uuid::Uuid;

#[tokio::test]
async fn calls_without_a_valid_token_are_unauthenticated_and_writes_need_a_superuser() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();

    let missing = client
        .list_decks(pb::ListDecksRequest::default())
        .await
        .unwrap_err();
    let untrusted = test_support::TestTokens::untrusted().access_token(Uuid::new_v4(), true);
    let forged = client
        .list_decks(auth(&untrusted, pb::ListDecksRequest::default()))
        .await
        .unwrap_err();
    let create = pb::CreateDeckRequest {
        name: "x".into(),
        description: None,
        level: pb::Level::A1 as i32,
    };
    let as_user = client
        .create_deck(auth(&app.user, create.clone()))
        .await
        .unwrap_err();
    let as_admin = client.create_deck(auth(&app.admin, create)).await;

    assert_eq!(missing.code(), Code::Unauthenticated);
    assert_eq!(forged.code(), Code::Unauthenticated);
    assert_eq!(as_user.code(), Code::PermissionDenied);
    assert!(as_admin.is_ok());
}

#[tokio::test]
async fn invalid_input_is_invalid_argument_naming_the_field() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let (deck, cards) = app.deck_with_cards("Validation", 1).await;

    let cases = [
        client
            .list_decks(auth(
                &app.user,
                pb::ListDecksRequest {
                    page_size: 101,
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err(),
        client
            .get_deck(auth(&app.user, get_deck("not-a-uuid")))
            .await
            .unwrap_err(),
        client
            .submit_review(auth(&app.user, review(&cards[0].id, 6)))
            .await
            .unwrap_err(),
        client
            .list_reviews(auth(
                &app.user,
                pb::ListReviewsRequest {
                    start_date: Some("2026-02-30".into()),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err(),
        client
            .search_decks(auth(
                &app.user,
                pb::SearchDecksRequest {
                    query: String::new(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err(),
        client
            .get_study_queue(auth(
                &app.user,
                pb::GetStudyQueueRequest {
                    limit: 101,
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err(),
        client
            .create_card(auth(
                &app.admin,
                pb::CreateCardRequest {
                    deck_id: deck.id.clone(),
                    card: Some(pb::NewCard {
                        front_text: "a".into(),
                        back_text: "b".into(),
                        pronunciation: Some("p".repeat(256)),
                        difficulty: pb::Difficulty::Easy as i32,
                        ..Default::default()
                    }),
                },
            ))
            .await
            .unwrap_err(),
        client
            .get_trends(auth(
                &app.user,
                pb::GetTrendsRequest {
                    period: "decade".into(),
                    deck_id: None,
                },
            ))
            .await
            .unwrap_err(),
    ];
    let fields = [
        "page_size",
        "deck_id",
        "quality",
        "start_date",
        "query",
        "limit",
        "pronunciation",
        "period",
    ];

    for (status, field) in cases.iter().zip(fields) {
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            status.message().starts_with(&format!("{field}:")),
            "{field}: {}",
            status.message()
        );
    }
}

/// The fields of a status's `BadRequest`, in order.
fn violated_fields(status: &tonic::Status) -> Vec<String> {
    Details::of(status)
        .violations
        .into_iter()
        .map(|violation| violation.field)
        .collect()
}

fn new_card(front: &str, back: &str) -> pb::NewCard {
    pb::NewCard {
        front_text: front.into(),
        back_text: back.into(),
        difficulty: pb::Difficulty::Easy as i32,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_bulk_create_with_a_missing_back_text_in_item_one_names_cards_1_back_text() {
    let app = TestApp::spawn().await;
    let (deck, _) = app.deck_with_cards("Bulk errors", 0).await;
    let mut client = app.client.clone();
    let bulk = |cards| pb::CreateCardsRequest {
        deck_id: deck.id.clone(),
        cards,
    };

    let one_bad = client
        .create_cards(auth(
            &app.admin,
            bulk(vec![new_card("ένα", "one"), new_card("δύο", "")]),
        ))
        .await
        .unwrap_err();
    let several_bad = client
        .create_cards(auth(
            &app.admin,
            bulk(vec![
                new_card("", "one"),
                new_card("δύο", "two"),
                new_card("τρία", "   "),
            ]),
        ))
        .await
        .unwrap_err();

    assert_eq!(one_bad.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&one_bad), ["cards[1].back_text"]);
    assert_eq!(
        one_bad.message(),
        "cards[1].back_text: is required (1–1000 characters)"
    );
    assert_eq!(
        violated_fields(&several_bad),
        ["cards[0].front_text", "cards[2].back_text"],
        "every bad item is reported, with its index"
    );
    let listed = client
        .list_cards(auth(&app.user, list_cards(&deck.id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.total, 0, "all or nothing");
}

#[tokio::test]
async fn a_bulk_review_with_a_bad_quality_in_item_zero_names_reviews_0_quality() {
    let app = TestApp::spawn().await;
    let (deck, cards) = app.deck_with_cards("Review errors", 2).await;

    let status = app
        .client
        .clone()
        .submit_reviews(auth(
            &app.user,
            pb::SubmitReviewsRequest {
                deck_id: deck.id.clone(),
                session_id: "s".into(),
                reviews: vec![review(&cards[0].id, 7), review(&cards[1].id, 4)],
            },
        ))
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["reviews[0].quality"]);
    assert_eq!(
        Details::of(&status).violations[0].message,
        "must be between 0 and 5"
    );
}

#[tokio::test]
async fn a_bad_page_size_names_page_size() {
    let app = TestApp::spawn().await;

    let status = app
        .client
        .clone()
        .list_decks(auth(
            &app.user,
            pb::ListDecksRequest {
                page_size: 101,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["page_size"]);
    assert_eq!(status.message(), "page_size: must be between 1 and 100");
}

#[tokio::test]
async fn unknown_decks_and_cards_are_not_found_and_bulk_review_keeps_the_known_cards() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let (deck, cards) = app.deck_with_cards("Bulk", 2).await;
    let unknown = Uuid::new_v4().to_string();

    let initialize = client
        .initialize_study(auth(&app.user, initialize_all(&unknown)))
        .await
        .unwrap_err();
    let one_review = client
        .submit_review(auth(&app.user, review(&unknown, 4)))
        .await
        .unwrap_err();
    let not_started = client
        .get_deck_progress(auth(
            &app.user,
            pb::GetDeckProgressRequest {
                deck_id: deck.id.clone(),
            },
        ))
        .await
        .unwrap_err();
    let bulk = client
        .submit_reviews(auth(
            &app.user,
            pb::SubmitReviewsRequest {
                deck_id: deck.id.clone(),
                session_id: "session-1".into(),
                reviews: vec![
                    review(&cards[0].id, 5),
                    review(&unknown, 4),
                    review(&cards[1].id, 3),
                ],
            },
        ))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(initialize.code(), Code::NotFound);
    assert_eq!(one_review.code(), Code::NotFound);
    assert_eq!(not_started.code(), Code::NotFound);
    assert_eq!(
        (bulk.total_submitted, bulk.successful, bulk.failed),
        (3, 2, 1)
    );
    assert_eq!(bulk.session_id, "session-1");
    assert!(
        matches!(&bulk.results[0].outcome, Some(Outcome::Result(r)) if r.card_id == cards[0].id)
    );
    assert!(matches!(&bulk.results[1].outcome, Some(Outcome::Failure(f)) if f.card_id == unknown));
    assert!(
        matches!(&bulk.results[2].outcome, Some(Outcome::Result(r)) if r.message.as_deref() == Some("Good start!"))
    );
    let progress = client
        .get_deck_progress(auth(
            &app.user,
            pb::GetDeckProgressRequest {
                deck_id: deck.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(progress.progress.unwrap().cards_studied, 2);
}

#[tokio::test]
async fn reviews_through_grpc_match_the_sm2_vectors_bit_for_bit() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let (_, cards) = app.deck_with_cards("SM-2", 3).await;
    let expected = [
        (2.6, 1, 1, pb::CardStatus::Learning),
        (2.7, 6, 2, pb::CardStatus::Learning),
        (2.8000000000000003, 17, 3, pb::CardStatus::Review),
        (2.9000000000000004, 49, 4, pb::CardStatus::Mastered),
        (3.0000000000000004, 147, 5, pb::CardStatus::Mastered),
        (2.4600000000000004, 1, 0, pb::CardStatus::Learning),
    ];

    let mut results = Vec::new();
    for quality in [5, 5, 5, 5, 5, 1] {
        results.push(
            client
                .submit_review(auth(&app.user, review(&cards[0].id, quality)))
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let q3 = client
        .submit_review(auth(&app.user, review(&cards[1].id, 3)))
        .await
        .unwrap()
        .into_inner();
    let q0 = client
        .submit_review(auth(&app.user, review(&cards[2].id, 0)))
        .await
        .unwrap()
        .into_inner();

    for (result, (ef, interval, repetitions, status)) in results.iter().zip(expected) {
        assert_eq!(
            result.easiness_factor.to_bits(),
            f64::to_bits(ef),
            "{result:?}"
        );
        assert_eq!(
            (result.interval, result.repetitions, result.new_status),
            (interval, repetitions, status as i32)
        );
    }
    assert_eq!(
        results[3].message.as_deref(),
        Some("Congratulations! Card mastered!")
    );
    assert_eq!(
        results[5].message.as_deref(),
        Some("Card needs more practice.")
    );
    assert_eq!(q3.easiness_factor.to_bits(), 2.36_f64.to_bits());
    assert_eq!(
        (q3.interval, q3.repetitions, q3.message.as_deref()),
        (1, 1, Some("Good start!"))
    );
    assert_eq!(
        q0.easiness_factor.to_bits(),
        1.7000000000000002_f64.to_bits()
    );
    assert_eq!((q0.interval, q0.repetitions, q0.message), (1, 0, None));
}

#[tokio::test]
async fn the_sql_sm2_of_the_review_statement_matches_the_rust_sm2_bit_for_bit() {
    // Arrange: thousands of random states and qualities, plus the vectors' edge cases
    // (the ef floor, ties of round-half-to-even, the interval cap).
    use deck_service::domain::sm2::{self, Quality, SrsState, Status};
    use rand::{Rng, SeedableRng};
    let app = TestApp::spawn().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let mut states: Vec<(f64, i32, i32, i16)> = (0..5000)
        .map(|_| {
            (
                rng.gen_range(1.3..4.5),
                rng.gen_range(0..=36_500),
                rng.gen_range(0..=30),
                rng.gen_range(0..=5),
            )
        })
        .collect();
    states.extend([
        (2.5, 0, 0, 5),
        (2.5, 5, 2, 4),
        (2.5, 7, 2, 4),
        (2.5, 6, 2, 3),
        (1.3, 10, 4, 0),
        (1.3, 10, 4, 3),
        (3.0, 36_500, 9, 5),
        (100.0, 36_000, 40, 5),
    ]);
    let today = time::macros::date!(2026 - 11 - 26);

    // Act: `sm2_next` (what `apply_review` computes with) on every state, in one query.
    let rows: Vec<(f64, i32, i32, String)> = sqlx::query_as(
        "SELECT n.easiness_factor, n.interval_days, n.repetitions, n.status \
         FROM unnest($1::float8[], $2::int4[], $3::int4[], $4::int2[]) WITH ORDINALITY \
              AS s(ef, days, reps, q, ord) \
         CROSS JOIN LATERAL sm2_next(s.ef, s.days, s.reps, s.q) n ORDER BY s.ord",
    )
    .bind(states.iter().map(|s| s.0).collect::<Vec<_>>())
    .bind(states.iter().map(|s| s.1).collect::<Vec<_>>())
    .bind(states.iter().map(|s| s.2).collect::<Vec<_>>())
    .bind(states.iter().map(|s| s.3).collect::<Vec<_>>())
    .fetch_all(&app.handles.pool)
    .await
    .unwrap();

    // Assert: the same state as the Rust function, bit for bit.
    assert_eq!(rows.len(), states.len());
    for (&(ef, interval, repetitions, q), sql) in states.iter().zip(&rows) {
        let previous = SrsState {
            easiness_factor: ef,
            interval,
            repetitions,
            status: Status::Review,
            next_review_date: today,
        };
        let rust = sm2::review(previous, Quality::new(i64::from(q)).unwrap(), today);
        let state = (ef, interval, repetitions, q);
        assert_eq!(
            sql.0.to_bits(),
            rust.easiness_factor.to_bits(),
            "ef of {state:?}: SQL {} Rust {}",
            sql.0,
            rust.easiness_factor
        );
        assert_eq!(
            (sql.1, sql.2, sql.3.as_str()),
            (rust.interval, rust.repetitions, rust.status.as_str()),
            "{state:?}"
        );
    }
}

#[tokio::test]
async fn study_queue_lists_due_then_new_then_early_practice_as_the_clock_moves() {
    let app = TestApp::spawn_with(support::Spawn {
        now: datetime!(2030-01-10 12:00 UTC),
        ..Default::default()
    })
    .await;
    let mut client = app.client.clone();
    let (deck, cards) = app.deck_with_cards("Queue", 5).await;
    fn ids(q: &pb::StudyQueue) -> Vec<&str> {
        q.cards.iter().map(|c| c.card_id.as_str()).collect()
    }
    // Card 0 and 1 studied (due tomorrow, learning); card 2 initialised (due today); 3 and 4 new.
    client
        .submit_review(auth(&app.user, review(&cards[0].id, 4)))
        .await
        .unwrap();
    client
        .submit_review(auth(&app.user, review(&cards[1].id, 4)))
        .await
        .unwrap();
    client
        .initialize_study(auth(
            &app.user,
            pb::InitializeStudyRequest {
                deck_id: deck.id.clone(),
                card_ids: vec![cards[2].id.clone()],
                all_cards: false,
            },
        ))
        .await
        .unwrap();
    let ask = |early: bool| pb::GetStudyQueueRequest {
        deck_id: Some(deck.id.clone()),
        include_early_practice: early,
        ..Default::default()
    };

    let today = client
        .get_study_queue(auth(&app.user, ask(true)))
        .await
        .unwrap()
        .into_inner();
    app.clock.advance(time::Duration::days(1));
    let tomorrow = client
        .get_study_queue(auth(&app.user, ask(false)))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(
        ids(&today),
        [
            &cards[2].id,
            &cards[3].id,
            &cards[4].id,
            &cards[0].id,
            &cards[1].id
        ]
        .map(String::as_str)
    );
    assert_eq!(
        (
            today.total_due,
            today.total_new,
            today.total_early_practice,
            today.total_in_queue
        ),
        (1, 2, 2, 5)
    );
    assert!(today.cards[1].is_new && today.cards[1].due_date.is_none());
    assert!(
        today.cards[3].is_early_practice
            && today.cards[3].due_date.as_deref() == Some("2030-01-11")
    );
    // A day later: cards 0 and 1 are due too (the cached due list of yesterday is not reused).
    assert_eq!(
        ids(&tomorrow),
        [
            &cards[2].id,
            &cards[0].id,
            &cards[1].id,
            &cards[3].id,
            &cards[4].id
        ]
        .map(String::as_str)
    );
    assert_eq!(
        (
            tomorrow.total_due,
            tomorrow.total_new,
            tomorrow.total_early_practice
        ),
        (3, 2, 0)
    );
    assert_eq!(tomorrow.deck_name, "Queue");
}

#[tokio::test]
async fn the_queue_limit_bounds_due_and_new_cards_together() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let (deck, _) = app.deck_with_cards("Limits", 6).await;
    client
        .initialize_study(auth(
            &app.user,
            pb::InitializeStudyRequest {
                deck_id: deck.id.clone(),
                card_ids: Vec::new(),
                all_cards: true,
            },
        ))
        .await
        .unwrap();
    let (_, other) = app.other_user();

    let mine = client
        .get_study_queue(auth(
            &app.user,
            pb::GetStudyQueueRequest {
                limit: 4,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let theirs = client
        .get_study_queue(auth(
            &other,
            pb::GetStudyQueueRequest {
                limit: 4,
                new_cards_limit: Some(3),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(
        (mine.total_due, mine.total_new, mine.deck_name.as_str()),
        (4, 0, "All Decks")
    );
    assert_eq!(mine.deck_id, "00000000-0000-0000-0000-000000000000");
    assert_eq!((theirs.total_due, theirs.total_new), (0, 3));
}

#[tokio::test]
async fn every_write_is_visible_in_the_next_read_of_each_affected_view() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let (deck, cards) = app.deck_with_cards("Before", 2).await;
    let id = deck.id.clone();
    // Warm every cached view.
    let warm = |mut client: support::Client, user: String, id: String| async move {
        let deck = client
            .get_deck(auth(&user, get_deck(&id)))
            .await
            .map(|r| r.into_inner());
        let cards = client
            .list_cards(auth(&user, list_cards(&id)))
            .await
            .map(|r| r.into_inner());
        let queue = client
            .get_study_queue(auth(&user, queue(Some(&id))))
            .await
            .map(|r| r.into_inner());
        let progress = client
            .list_deck_progress(auth(&user, pb::ListDeckProgressRequest::default()))
            .await
            .map(|r| r.into_inner());
        (deck, cards, queue, progress)
    };
    let (d, c, q, p) = warm(client.clone(), app.user.clone(), id.clone()).await;
    assert!(d.is_ok() && c.is_ok() && q.unwrap().total_due == 0 && p.unwrap().decks.is_empty());

    // InitializeStudy: due cards and progress.
    client
        .initialize_study(auth(&app.user, initialize_all(&id)))
        .await
        .unwrap();
    let (_, _, q, p) = warm(client.clone(), app.user.clone(), id.clone()).await;
    assert_eq!(q.unwrap().total_due, 2);
    assert_eq!(p.unwrap().decks[0].deck_name, "Before");

    // UpdateDeck: deck, progress.
    client
        .update_deck(auth(
            &app.admin,
            pb::UpdateDeckRequest {
                deck_id: id.clone(),
                name: Some("After".into()),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let (d, _, _, p) = warm(client.clone(), app.user.clone(), id.clone()).await;
    assert_eq!(d.unwrap().name, "After");
    assert_eq!(p.unwrap().decks[0].deck_name, "After");

    // CreateCard: card count, card list, progress totals.
    let created = client
        .create_card(auth(
            &app.admin,
            pb::CreateCardRequest {
                deck_id: id.clone(),
                card: Some(pb::NewCard {
                    front_text: "καινούργιο".into(),
                    back_text: "new".into(),
                    difficulty: pb::Difficulty::Hard as i32,
                    order_index: 9,
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let (d, c, _, p) = warm(client.clone(), app.user.clone(), id.clone()).await;
    assert_eq!(d.unwrap().card_count, Some(3));
    assert_eq!(c.unwrap().cards.last().unwrap().front_text, "καινούργιο");
    assert_eq!(p.unwrap().decks[0].total_cards, 3);

    // UpdateCard: card list and the due cards' text.
    client
        .update_card(auth(
            &app.admin,
            pb::UpdateCardRequest {
                card_id: cards[0].id.clone(),
                front_text: Some("edited".into()),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let (_, c, q, _) = warm(client.clone(), app.user.clone(), id.clone()).await;
    assert_eq!(c.unwrap().cards[0].front_text, "edited");
    assert_eq!(q.unwrap().cards[0].front_text, "edited");

    // SubmitReview: due cards and progress.
    client
        .submit_review(auth(&app.user, review(&cards[0].id, 5)))
        .await
        .unwrap();
    let (_, _, q, p) = warm(client.clone(), app.user.clone(), id.clone()).await;
    let q = q.unwrap();
    assert_eq!(q.total_due, 1);
    assert!(q.cards.iter().all(|card| card.card_id != cards[0].id));
    assert_eq!(p.unwrap().decks[0].cards_studied, 1);

    // DeleteCard: count, list, due cards.
    client
        .delete_card(auth(
            &app.admin,
            pb::DeleteCardRequest {
                card_id: cards[1].id.clone(),
            },
        ))
        .await
        .unwrap();
    let (d, c, q, _) = warm(client.clone(), app.user.clone(), id.clone()).await;
    assert_eq!(d.unwrap().card_count, Some(2));
    assert!(c.unwrap().cards.iter().all(|card| card.id != cards[1].id));
    assert_eq!(q.unwrap().total_due, 0);
    assert!(created.id != cards[1].id);

    // DeleteDeck: every view of the deck is gone.
    client
        .delete_deck(auth(
            &app.admin,
            pb::DeleteDeckRequest {
                deck_id: id.clone(),
            },
        ))
        .await
        .unwrap();
    let (d, c, q, p) = warm(client.clone(), app.user.clone(), id.clone()).await;
    assert_eq!(d.unwrap_err().code(), Code::NotFound);
    assert_eq!(c.unwrap_err().code(), Code::NotFound);
    assert_eq!(q.unwrap_err().code(), Code::NotFound);
    assert!(p.unwrap().decks.is_empty());
    // Deleting twice is fine.
    client
        .delete_deck(auth(
            &app.admin,
            pb::DeleteDeckRequest {
                deck_id: id.clone(),
            },
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn decks_list_newest_first_with_totals_and_search_is_case_insensitive() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    for name in ["Food", "Family", "Travel Words"] {
        app.deck_with_cards(name, 0).await;
        app.clock.advance(time::Duration::seconds(1));
    }

    let page = client
        .list_decks(auth(
            &app.user,
            pb::ListDecksRequest {
                page: 1,
                page_size: 2,
                level: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let found = client
        .search_decks(auth(
            &app.user,
            pb::SearchDecksRequest {
                query: "travel".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();

    assert_eq!((page.total, page.page, page.page_size), (3, 1, 2));
    assert_eq!(
        page.decks
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>(),
        ["Travel Words", "Family"]
    );
    assert_eq!((found.total, found.query.as_str()), (1, "travel"));
}

#[tokio::test]
async fn progress_dashboard_and_trends_count_todays_reviews() {
    let app = TestApp::spawn_with(support::Spawn {
        now: datetime!(2030-03-05 09:00 UTC),
        ..Default::default()
    })
    .await;
    let mut client = app.client.clone();
    let (first, cards) = app.deck_with_cards("One", 2).await;
    let (second, more) = app.deck_with_cards("Two", 1).await;
    client
        .submit_review(auth(&app.user, review(&cards[0].id, 5)))
        .await
        .unwrap();
    client
        .submit_review(auth(&app.user, review(&cards[1].id, 2)))
        .await
        .unwrap();
    client
        .submit_review(auth(&app.user, review(&more[0].id, 4)))
        .await
        .unwrap();

    let decks = client
        .list_deck_progress(auth(&app.user, pb::ListDeckProgressRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let dashboard = client
        .get_dashboard(auth(
            &app.user,
            pb::GetDashboardRequest {
                daily_goal: Some(10),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let trends = client
        .get_trends(auth(&app.user, pb::GetTrendsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let stats = client
        .get_study_stats(auth(
            &app.user,
            pb::GetStudyStatsRequest {
                deck_id: Some(first.id.clone()),
            },
        ))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(decks.total, 2, "both started decks are listed");
    assert!(decks.decks.iter().any(|d| d.deck_id == second.id));
    let today = dashboard.today.unwrap();
    assert_eq!(
        (
            today.reviews_completed,
            today.daily_goal,
            today.goal_progress_percentage
        ),
        (3, 10, 30.0)
    );
    assert_eq!(dashboard.overview.unwrap().total_decks_started, 2);
    assert_eq!(dashboard.streak.unwrap().current_streak, 1);
    assert_eq!(dashboard.recent_activity.len(), 7);
    assert_eq!(
        (
            trends.period.as_str(),
            trends.daily_stats.len(),
            trends.end_date.as_str()
        ),
        ("week", 7, "2030-03-05")
    );
    let last = trends.daily_stats.last().unwrap();
    assert_eq!((last.reviews_count, last.vocab_accuracy), (3, 66.7));
    assert_eq!(
        trends.summary.unwrap().best_day.as_deref(),
        Some("2030-03-05")
    );
    assert_eq!(
        (
            stats.total_reviews,
            stats.reviews_today,
            stats.by_status.unwrap().learning
        ),
        (2, 2, 2)
    );
}

#[tokio::test]
async fn seed_loads_the_greek_decks_once() {
    let database_url = test_support::fresh_database().await;
    let config = test_support::ServiceConfig::new("deck-service")
        .set("DATABASE_URL", &database_url)
        .set("REDIS_KEY_PREFIX", test_support::key_prefix());

    let (first, out1, err1) = config.run(&["seed"]).await;
    let (second, out2, _) = config.run(&["seed"]).await;

    assert_eq!(first, Some(0), "{out1} {err1}");
    assert!(out1.contains("2 new deck(s)"), "{out1}");
    assert_eq!(second, Some(0));
    assert!(out2.contains("0 new deck(s), 0 new card(s)"), "{out2}");
    let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
    let (a1,): (i64,) = sqlx::query_as("SELECT count(*) FROM cards c JOIN decks d ON d.id = c.deck_id WHERE d.level = 'A1' AND d.name LIKE '%Essential%'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(a1 >= 100, "{a1}");
}

#[tokio::test]
async fn reviews_list_only_the_callers_own_newest_first_within_inclusive_dates() {
    let app = TestApp::spawn_with(support::Spawn {
        now: datetime!(2030-01-01 10:00 UTC),
        ..Default::default()
    })
    .await;
    let mut client = app.client.clone();
    let (_, cards) = app.deck_with_cards("Log", 2).await;
    let (_, other) = app.other_user();
    client
        .submit_review(auth(&app.user, review(&cards[0].id, 3)))
        .await
        .unwrap();
    app.clock.advance(time::Duration::days(1));
    client
        .submit_review(auth(&app.user, review(&cards[1].id, 4)))
        .await
        .unwrap();
    client
        .submit_review(auth(&other, review(&cards[1].id, 5)))
        .await
        .unwrap();

    let all = client
        .list_reviews(auth(&app.user, pb::ListReviewsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let second_day = client
        .list_reviews(auth(
            &app.user,
            pb::ListReviewsRequest {
                start_date: Some("2030-01-02".into()),
                end_date: Some("2030-01-02".into()),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let backwards = client
        .list_reviews(auth(
            &app.user,
            pb::ListReviewsRequest {
                start_date: Some("2030-01-02".into()),
                end_date: Some("2030-01-01".into()),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();

    assert_eq!((all.total, all.page, all.page_size), (2, 1, 50));
    assert_eq!(
        all.reviews.iter().map(|r| r.quality).collect::<Vec<_>>(),
        [4, 3]
    );
    assert!(
        all.reviews
            .iter()
            .all(|r| r.user_id == app.user_id.to_string())
    );
    assert_eq!(
        (second_day.total, second_day.reviews[0].card_id.as_str()),
        (1, cards[1].id.as_str())
    );
    assert_eq!(backwards.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn moving_a_card_to_another_deck_moves_its_progress_with_it() {
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let (from, cards) = app.deck_with_cards("From", 2).await;
    let (to, _) = app.deck_with_cards("To", 1).await;
    client
        .submit_review(auth(&app.user, review(&cards[0].id, 5)))
        .await
        .unwrap();
    client
        .list_deck_progress(auth(&app.user, pb::ListDeckProgressRequest::default()))
        .await
        .unwrap();

    client
        .update_card(auth(
            &app.admin,
            pb::UpdateCardRequest {
                card_id: cards[0].id.clone(),
                deck_id: Some(to.id.clone()),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let progress = client
        .list_deck_progress(auth(&app.user, pb::ListDeckProgressRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let to_cards = client
        .list_cards(auth(&app.user, list_cards(&to.id)))
        .await
        .unwrap()
        .into_inner();

    let studied = |id: &str| {
        progress
            .decks
            .iter()
            .find(|d| d.deck_id == id)
            .map(|d| (d.cards_studied, d.total_cards))
    };
    assert_eq!(studied(&from.id), Some((0, 1)));
    assert_eq!(studied(&to.id), Some((1, 2)));
    assert_eq!(to_cards.total, 2);
}

#[tokio::test]
async fn cards_of_a_deleted_deck_are_not_found_for_reading_studying_and_reviewing() {
    // Arrange: a started deck whose cards were read, queued and reviewed, so every
    // cached view of them is warm, and a second deck that stays.
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let (deck, cards) = app.deck_with_cards("Doomed", 2).await;
    let (_, kept_cards) = app.deck_with_cards("Kept", 1).await;
    client
        .initialize_study(auth(&app.user, initialize_all(&deck.id)))
        .await
        .unwrap();
    client
        .get_card(auth(
            &app.user,
            pb::GetCardRequest {
                card_id: cards[0].id.clone(),
            },
        ))
        .await
        .unwrap();
    client
        .submit_review(auth(&app.user, review(&cards[1].id, 4)))
        .await
        .unwrap();
    let all_decks = || pb::GetStudyQueueRequest {
        include_early_practice: true,
        ..queue(None)
    };
    let before = client
        .get_study_queue(auth(&app.user, all_decks()))
        .await
        .unwrap()
        .into_inner();
    assert!(before.cards.iter().any(|card| card.card_id == cards[0].id));
    let search = |deck_id: Option<String>| pb::SearchCardsRequest {
        query: "card".into(),
        deck_id,
        ..Default::default()
    };

    // Act: soft-delete the deck, then try every path to its cards.
    client
        .delete_deck(auth(
            &app.admin,
            pb::DeleteDeckRequest {
                deck_id: deck.id.clone(),
            },
        ))
        .await
        .unwrap();
    let read = client
        .get_card(auth(
            &app.user,
            pb::GetCardRequest {
                card_id: cards[0].id.clone(),
            },
        ))
        .await
        .unwrap_err();
    let reviewed = client
        .submit_review(auth(&app.user, review(&cards[0].id, 4)))
        .await
        .unwrap_err();
    let bulk = client
        .submit_reviews(auth(
            &app.user,
            pb::SubmitReviewsRequest {
                deck_id: deck.id.clone(),
                session_id: "s".into(),
                reviews: vec![review(&cards[0].id, 4)],
            },
        ))
        .await
        .unwrap_err();
    let initialized = client
        .initialize_study(auth(&app.user, initialize_all(&deck.id)))
        .await
        .unwrap_err();
    let searched_in_deck = client
        .search_cards(auth(&app.user, search(Some(deck.id.clone()))))
        .await
        .unwrap_err();
    let searched = client
        .search_cards(auth(&app.user, search(None)))
        .await
        .unwrap()
        .into_inner();
    let queued_deck = client
        .get_study_queue(auth(&app.user, queue(Some(&deck.id))))
        .await
        .unwrap_err();
    let queued = client
        .get_study_queue(auth(&app.user, all_decks()))
        .await
        .unwrap()
        .into_inner();

    // Assert: NOT_FOUND naming what is gone, and the other paths show only the kept deck.
    let card_gone = format!("Card with ID '{}' not found", cards[0].id);
    let deck_gone = format!("Deck with ID '{}' not found", deck.id);
    assert_eq!(
        (read.code(), read.message()),
        (Code::NotFound, card_gone.as_str())
    );
    assert_eq!(
        (reviewed.code(), reviewed.message()),
        (Code::NotFound, card_gone.as_str())
    );
    for (call, status) in [
        ("bulk review", &bulk),
        ("initialize", &initialized),
        ("search in the deck", &searched_in_deck),
        ("queue of the deck", &queued_deck),
    ] {
        assert_eq!(
            (status.code(), status.message()),
            (Code::NotFound, deck_gone.as_str()),
            "{call}"
        );
    }
    assert_eq!(
        searched.cards.iter().map(|c| &c.id).collect::<Vec<_>>(),
        vec![&kept_cards[0].id]
    );
    assert!(
        queued
            .cards
            .iter()
            .all(|card| card.card_id == kept_cards[0].id),
        "queue after the delete: {queued:?}"
    );
    assert_eq!(queued.total_in_queue, 1, "the kept deck's new card");
}

#[tokio::test]
async fn study_stats_and_the_dashboard_leave_out_the_cards_of_a_deleted_deck() {
    // Arrange: two started decks, one card of the doomed one reviewed, then deleted.
    let app = TestApp::spawn().await;
    let mut client = app.client.clone();
    let (doomed, cards) = app.deck_with_cards("Doomed", 2).await;
    let (kept, _) = app.deck_with_cards("Kept", 1).await;
    for deck in [&doomed, &kept] {
        client
            .initialize_study(auth(&app.user, initialize_all(&deck.id)))
            .await
            .unwrap();
    }
    client
        .submit_review(auth(&app.user, review(&cards[0].id, 4)))
        .await
        .unwrap();
    client
        .delete_deck(auth(
            &app.admin,
            pb::DeleteDeckRequest {
                deck_id: doomed.id.clone(),
            },
        ))
        .await
        .unwrap();

    // Act
    let stats = |deck_id: Option<String>| {
        let mut client = app.client.clone();
        let token = app.user.clone();
        async move {
            client
                .get_study_stats(auth(&token, pb::GetStudyStatsRequest { deck_id }))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let all = stats(None).await;
    let of_doomed = stats(Some(doomed.id.clone())).await;
    let dashboard = client
        .get_dashboard(auth(&app.user, pb::GetDashboardRequest::default()))
        .await
        .unwrap()
        .into_inner();

    // Assert: only the kept deck's card counts by status and as due; the review log
    // keeps the review made before the delete.
    let by_status = all.by_status.unwrap();
    assert_eq!(
        (
            by_status.new,
            by_status.learning,
            by_status.due,
            all.due_today
        ),
        (1, 0, 1, 1)
    );
    assert_eq!(all.total_reviews, 1);
    assert_eq!(of_doomed.by_status.unwrap(), pb::StatusCounts::default());
    assert_eq!(dashboard.today.unwrap().cards_due, 1);
    let cards_by_status = dashboard.cards_by_status.unwrap();
    assert_eq!((cards_by_status.new, cards_by_status.learning), (1, 0));
    assert_eq!(dashboard.overview.unwrap().total_decks_started, 1);
}
