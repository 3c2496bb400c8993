//! Round trips to the sessions Redis, counted on the server (MONITOR, every node of a
//! cluster): a refresh is one EVALSHA; a login four commands.

use test_support::{RedisMonitor, command_names, redis_url};

use crate::helpers::{PASSWORD, spawn_app_with, unique_email};

#[tokio::test]
async fn a_refresh_is_one_redis_round_trip_and_a_login_four() {
    // Arrange: readiness pings Redis once at start only, so the monitor sees the calls
    // alone; a first refresh and login have loaded every script they use.
    let app = spawn_app_with(&[("READINESS_INTERVAL_MS", "600000")], None).await;
    let email = unique_email();
    let registered = app.register(&email).await;
    let rotated = app.refresh(&registered.refresh_token).await.unwrap();
    app.login(&email, PASSWORD).await.unwrap();
    let mut monitor = RedisMonitor::start(&redis_url()).await;

    // Act
    app.refresh(&rotated.refresh_token).await.unwrap();
    let refresh = monitor.commands_of(&app.prefix).await;
    app.login(&email, PASSWORD).await.unwrap();
    let login = monitor.commands_of(&app.prefix).await;

    // Assert: the rotation script alone; a login counts the attempt (script), forgets the
    // failures (DEL), reads the user's sessions (SMEMBERS) and creates one (script). On a
    // cluster the throttle key and the user's keys may sit on different nodes, whose
    // commands are collected node by node: compare them as a set.
    assert_eq!(command_names(&refresh), ["EVALSHA"], "{refresh:#?}");
    let mut login_names = command_names(&login);
    login_names.sort();
    assert_eq!(
        login_names,
        ["DEL", "EVALSHA", "EVALSHA", "SMEMBERS"],
        "{login:#?}"
    );
}
