//! Register, login, logout, profile, password hashing and the admin bootstrap.

use std::time::Duration;

use common::status::reason;
use proto::session::v1 as pb;
use test_support::{ServiceConfig, run_to_exit};
use tonic::Code;

use crate::helpers::{
    PASSWORD, assert_invalid_fields, assert_refused, assert_status, bearer, claims_of, client_info,
    spawn_app, unique_email, user_id_of,
};

const BINARY: &str = env!("CARGO_BIN_EXE_session-service");

#[tokio::test]
async fn register_login_refresh_logout_flow_works_end_to_end() {
    let app = spawn_app().await;
    let email = unique_email();

    let registered = app.register(&email).await;
    let logged_in = app.login(&email, PASSWORD).await.unwrap();
    let refreshed = app.refresh(&logged_in.refresh_token).await.unwrap();
    let logout = app
        .client
        .clone()
        .logout(bearer(
            &refreshed.access_token,
            pb::LogoutRequest {
                refresh_token: refreshed.refresh_token.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(registered.token_type, "bearer");
    assert_eq!(registered.expires_in, 1800);
    let access = claims_of(&logged_in.access_token);
    let refresh = claims_of(&logged_in.refresh_token);
    assert_eq!(access["type"], "access");
    assert_eq!(access["iss"], "learn-greek-easy");
    assert_eq!(access["aud"], "learn-greek-easy-api");
    assert_eq!(access["is_superuser"], false);
    assert_eq!(refresh["type"], "refresh");
    assert_eq!(refresh["gen"], 0);
    assert_eq!(claims_of(&refreshed.refresh_token)["gen"], 1);
    assert_eq!(
        access["sid"],
        claims_of(&refreshed.access_token)["sid"],
        "refresh keeps the session"
    );
    assert_ne!(
        claims_of(&registered.access_token)["sid"],
        access["sid"],
        "login starts a new session"
    );
    assert!(logout.token_revoked);
    assert_refused(
        app.refresh(&refreshed.refresh_token).await,
        reason::SESSION_REVOKED,
    );
    let again = app
        .client
        .clone()
        .logout(bearer(
            &refreshed.access_token,
            pb::LogoutRequest {
                refresh_token: refreshed.refresh_token,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.token_revoked, "an ended session is not ended twice");
}

#[tokio::test]
async fn registering_an_email_again_in_another_case_is_already_exists() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;

    let again = app
        .client
        .clone()
        .register(pb::RegisterRequest {
            email: format!("  {}  ", email.to_uppercase()),
            password: PASSWORD.into(),
            full_name: "Other".into(),
            client: None,
        })
        .await;

    assert_status(again, Code::AlreadyExists, "email already registered");
    assert!(
        app.login(&email.to_uppercase(), PASSWORD).await.is_ok(),
        "login ignores case too"
    );
}

#[tokio::test]
async fn invalid_registrations_are_invalid_argument_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        ("not-an-email", PASSWORD, "Name", "email"),
        ("", PASSWORD, "Name", "email"),
        ("a@example.com", "short1", "Name", "password"),
        ("a@example.com", "lettersonly", "Name", "password"),
        ("a@example.com", "1234567890", "Name", "password"),
        ("a@example.com", &"a1".repeat(51), "Name", "password"),
        ("a@example.com", PASSWORD, "   ", "full_name"),
        ("a@example.com", PASSWORD, &"x".repeat(256), "full_name"),
    ];

    for (email, password, full_name, field) in cases {
        let result = app
            .client
            .clone()
            .register(pb::RegisterRequest {
                email: email.into(),
                password: password.into(),
                full_name: full_name.into(),
                client: None,
            })
            .await;

        let status = result.as_ref().unwrap_err();
        assert!(
            status.message().starts_with(&format!("{field}: ")),
            "the message names the field too: {status:?}"
        );
        assert_invalid_fields(result, &[field]);
    }
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert_eq!(users, 0);
}

#[tokio::test]
async fn a_registration_with_several_bad_fields_names_each_of_them() {
    let app = spawn_app().await;

    let result = app
        .client
        .clone()
        .register(pb::RegisterRequest {
            email: "maria".into(),
            password: "short".into(),
            full_name: " ".into(),
            client: None,
        })
        .await;

    let status = result.as_ref().unwrap_err();
    assert_eq!(status.message(), "email: must be a valid e-mail address");
    assert_eq!(
        common::status::Details::of(status).violations,
        [
            common::status::Violation::new("email", "must be a valid e-mail address"),
            common::status::Violation::new("password", "must be 8 to 100 characters long"),
            common::status::Violation::new("full_name", "must not be empty"),
        ]
    );
}

#[tokio::test]
async fn unknown_email_wrong_password_and_inactive_user_get_the_same_answer() {
    let app = spawn_app().await;
    let active = unique_email();
    let inactive = unique_email();
    app.register(&active).await;
    app.register(&inactive).await;
    sqlx::query("UPDATE users SET is_active = false WHERE email = $1")
        .bind(&inactive)
        .execute(&app.pg)
        .await
        .unwrap();

    let unknown = app.login(&unique_email(), PASSWORD).await;
    let wrong = app.login(&active, "wrong-password-1").await;
    let deactivated = app.login(&inactive, PASSWORD).await;

    for result in [unknown, wrong, deactivated] {
        let status = result.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(status.message(), "Invalid email or password");
    }
}

#[tokio::test]
async fn unknown_email_takes_about_as_long_as_a_wrong_password() {
    let app = spawn_app().await;
    let known_email = unique_email();
    app.register(&known_email).await;
    let unknown_email = unique_email();
    let timed = |email: &str| {
        let app = &app;
        let email = email.to_owned();
        async move {
            let start = std::time::Instant::now();
            let _ = app.login(&email, "wrong-password-1").await;
            start.elapsed()
        }
    };

    // Interleaved, so load from other tests hits both sides alike.
    let (mut known, mut unknown) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..6 {
        known += timed(&known_email).await;
        unknown += timed(&unknown_email).await;
    }

    // Both verify one argon2id hash per attempt; skipping it for an unknown e-mail
    // would make that side an order of magnitude faster.
    let ratio = unknown.as_secs_f64() / known.as_secs_f64();
    assert!(
        (0.33..3.0).contains(&ratio),
        "known {known:?}, unknown {unknown:?}"
    );
}

#[tokio::test]
async fn a_legacy_bcrypt_hash_logs_in_and_is_upgraded_to_argon2id() {
    let app = spawn_app().await;
    let email = unique_email();
    let user_id = uuid::Uuid::new_v4();
    let legacy = bcrypt::hash(PASSWORD, 4).unwrap();
    assert!(legacy.starts_with("$2b$"));
    sqlx::query(
        "INSERT INTO users (id, email, password_hash, full_name) VALUES ($1, $2, $3, 'Legacy')",
    )
    .bind(user_id)
    .bind(&email)
    .bind(&legacy)
    .execute(&app.pg)
    .await
    .unwrap();
    sqlx::query("INSERT INTO user_settings (id, user_id) VALUES ($1, $2)")
        .bind(uuid::Uuid::new_v4())
        .bind(user_id)
        .execute(&app.pg)
        .await
        .unwrap();

    let first = app.login(&email, PASSWORD).await;

    assert!(first.is_ok(), "{first:?}");
    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert!(
        stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{stored}"
    );
    assert!(
        app.login(&email, PASSWORD).await.is_ok(),
        "the new hash verifies"
    );
    assert_status(
        app.login(&email, "wrong-password-1").await,
        Code::Unauthenticated,
        "Invalid email or password",
    );
}

#[tokio::test]
async fn register_stores_an_argon2id_hash_and_default_settings() {
    let app = spawn_app().await;
    let email = unique_email();
    let pair = app.register(&email).await;

    let profile = app
        .client
        .clone()
        .get_profile(bearer(&pair.access_token, pb::GetProfileRequest {}))
        .await
        .unwrap()
        .into_inner();

    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE email = $1")
        .bind(&email)
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert_eq!(profile.id, user_id_of(&pair).to_string());
    assert_eq!(profile.email, email);
    assert_eq!(profile.full_name, "Μαρία Παπαδοπούλου");
    assert!(profile.is_active && !profile.is_superuser);
    assert_eq!(profile.email_verified_at, None);
    let settings = profile.settings.unwrap();
    assert_eq!(settings.user_id, profile.id);
    assert_eq!(settings.daily_goal, 20);
    assert!(settings.email_notifications);
    assert_eq!(settings.preferred_language, None);
}

#[tokio::test]
async fn update_profile_changes_only_the_given_fields() {
    let app = spawn_app().await;
    let pair = app.register(&unique_email()).await;
    let update = |request: pb::UpdateProfileRequest| {
        let mut client = app.client.clone();
        let token = pair.access_token.clone();
        async move {
            client
                .update_profile(bearer(&token, request))
                .await
                .map(tonic::Response::into_inner)
        }
    };

    let first = update(pb::UpdateProfileRequest {
        daily_goal: Some(35),
        preferred_language: Some("el".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let second = update(pb::UpdateProfileRequest {
        full_name: Some("Νίκος".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let cleared = update(pb::UpdateProfileRequest {
        clear_preferred_language: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let invalid = update(pb::UpdateProfileRequest {
        daily_goal: Some(500),
        ..Default::default()
    })
    .await;

    assert_eq!(first.settings.as_ref().unwrap().daily_goal, 35);
    assert_eq!(
        first
            .settings
            .as_ref()
            .unwrap()
            .preferred_language
            .as_deref(),
        Some("el")
    );
    assert_eq!(second.full_name, "Νίκος");
    assert_eq!(
        second.settings.as_ref().unwrap().daily_goal,
        35,
        "absent fields stay"
    );
    assert_eq!(cleared.settings.unwrap().preferred_language, None);
    assert_invalid_fields(invalid, &["daily_goal"]);
}

#[tokio::test]
async fn make_superuser_promotes_an_existing_user_and_fails_for_an_unknown_one() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    let url = app.database_url.clone();

    let admin = ServiceConfig::new("session-service")
        .set("DATABASE_URL", url)
        .set("SESSION_REDIS_URL", test_support::redis_url())
        .set("REDIS_KEY_PREFIX", &app.prefix);
    let (promoted, stdout, stderr) = admin.run(&["make-superuser", &email.to_uppercase()]).await;
    let (unknown, _, unknown_stderr) = admin.run(&["make-superuser", "nobody@example.com"]).await;

    assert_eq!(promoted, Some(0), "{stdout}{stderr}");
    assert_eq!(unknown, Some(1));
    assert!(unknown_stderr.contains("no user"), "{unknown_stderr}");
    let pair = app.login(&email, PASSWORD).await.unwrap();
    assert_eq!(claims_of(&pair.access_token)["is_superuser"], true);
}

#[tokio::test]
async fn the_server_refuses_to_start_without_a_signing_key() {
    let (code, _, stderr) = run_to_exit(BINARY, &[], &[]).await;

    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("JWT_PRIVATE_KEY_FILE"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[tokio::test]
async fn generate_key_prints_a_key_the_server_accepts() {
    let (code, pem, _) = run_to_exit(BINARY, &["generate-key"], &[]).await;

    assert_eq!(code, Some(0));
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
    let keys = session_service::tokens::TokenKeys::new(
        &common::config::Secret::new(pem),
        "JWT_PRIVATE_KEY",
        Vec::new(),
        "iss",
        "aud",
    );
    assert!(keys.is_ok());
}

#[tokio::test]
async fn register_and_login_record_the_client_of_the_session() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    let pair = app
        .client
        .clone()
        .login(pb::LoginRequest {
            email,
            password: PASSWORD.into(),
            client: client_info("2001:db8::7"),
        })
        .await
        .unwrap()
        .into_inner();

    let sessions = app.list_sessions(&pair.access_token).await;

    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0].ip_address, "2001:db8::7", "newest first");
    assert_eq!(sessions[0].user_agent, "test-agent/1.0");
    assert!(sessions[0].current);
    assert_eq!(sessions[1].ip_address, "10.0.0.1");
    assert!(!sessions[1].current);
}
