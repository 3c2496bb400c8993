//! The JWKS files of the three binaries (`common::jwks`): the gateway's and
//! deck-service's `JWT_PUBLIC_KEYS_FILE`, session-service's
//! `JWT_ADDITIONAL_PUBLIC_KEYS_FILE`. A bad file stops the process at start with exit
//! 64 and one line naming the variable, the file and what is wrong with it; no key is
//! dropped in silence.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

use serde_json::json;
use test_support::{TestTokens, conformance::workspace_binary, run_to_exit};

/// The three binaries, each with the variable that names its JWKS file.
const BINARIES: [(&str, &str); 3] = [
    ("gateway", "JWT_PUBLIC_KEYS_FILE"),
    ("deck-service", "JWT_PUBLIC_KEYS_FILE"),
    ("session-service", "JWT_ADDITIONAL_PUBLIC_KEYS_FILE"),
];

/// Bad files, each with the words its error must contain.
fn bad_files() -> Vec<(String, &'static str)> {
    let good = serde_json::to_value(TestTokens::new().public_jwk()).unwrap();
    let with = |field: &str, value: serde_json::Value| {
        let mut key = good.clone();
        key[field] = value;
        key
    };
    let mut no_x = good.clone();
    no_x.as_object_mut().unwrap().remove("x");
    vec![
        ("{\"keys\": [".to_owned(), "not a JWKS"),
        (
            json!({"keys": [good, with("alg", json!("HS256"))]}).to_string(),
            "key 1: kid",
        ),
        (
            json!({"keys": [with("kty", json!("RSA"))]}).to_string(),
            "only OKP EdDSA Ed25519 and EC ES256 P-256",
        ),
        (
            json!({"keys": [with("use", json!("enc"))]}).to_string(),
            "has use \"enc\"",
        ),
        (
            json!({"keys": [with("x", json!("AAAA"))]}).to_string(),
            "x is not 32 bytes",
        ),
        (json!({"keys": [no_x]}).to_string(), "missing field `x`"),
        (
            json!({"keys": [good.clone(), good]}).to_string(),
            "keys 0 and 1 share the kid",
        ),
    ]
}

fn write(text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("lge-bad-jwks-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&path, text).expect("write JWKS file");
    path
}

async fn assert_refused(binary: &str, variable: &'static str, text: &str, expected: &str) {
    let path = write(text);
    let (code, _, stderr) = run_to_exit(
        &workspace_binary(binary),
        &[],
        &[(variable, path.to_string_lossy().into_owned())],
    )
    .await;
    std::fs::remove_file(&path).unwrap();

    assert_eq!(code, Some(64), "{binary} {text}: {stderr}");
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "{binary}: one line: {stderr}"
    );
    for part in [variable, path.to_str().unwrap(), expected] {
        assert!(
            stderr.contains(part),
            "{binary} {text}: {part:?} not in {stderr}"
        );
    }
}

#[tokio::test]
async fn a_bad_jwks_file_stops_each_binary_with_exit_64_naming_the_problem() {
    for (binary, variable) in BINARIES {
        for (text, expected) in bad_files() {
            assert_refused(binary, variable, &text, expected).await;
        }
    }
}

#[tokio::test]
async fn a_verification_keys_file_without_keys_is_refused_but_no_additional_keys_is_fine() {
    for (binary, variable) in &BINARIES[..2] {
        assert_refused(binary, variable, r#"{"keys": []}"#, "holds no keys").await;
    }

    // session-service goes on to its next check: the signing key it was not given.
    let path = write(r#"{"keys": []}"#);
    let (code, _, stderr) = run_to_exit(
        &workspace_binary("session-service"),
        &[],
        &[(
            "JWT_ADDITIONAL_PUBLIC_KEYS_FILE",
            path.to_string_lossy().into_owned(),
        )],
    )
    .await;
    std::fs::remove_file(&path).unwrap();
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("JWT_PRIVATE_KEY"), "{stderr}");
    assert!(
        !stderr.contains("JWT_ADDITIONAL_PUBLIC_KEYS_FILE"),
        "{stderr}"
    );
}
