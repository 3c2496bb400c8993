//! JWKS files (`{"keys": [...]}`): the verification keys of `JWT_PUBLIC_KEYS_FILE`
//! (gateway, deck-service) and the older keys session-service keeps publishing
//! (`JWT_ADDITIONAL_PUBLIC_KEYS_FILE`).
//!
//! A file is read and checked while the configuration is parsed ([`verification_keys`]
//! and [`published_keys`] are clap value parsers), so a bad one stops the process at
//! start with exit 64 and one line naming the variable, the file and what is wrong
//! with it: unreadable, not a JWKS, a key that lacks a field or is not one of the
//! pinned kinds (EdDSA over Ed25519, ES256 over P-256, for signatures), malformed
//! coordinates, or two keys with one `kid`. Nothing unusable is dropped in silence.

use std::path::{Path, PathBuf};

use base64::Engine;

use crate::{auth::PublicJwk, balance::BalancedChannel, config::TokenVerifyConfig};

/// A checked JWKS file: where it came from and its keys, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwksFile {
    path: PathBuf,
    keys: Vec<PublicJwk>,
}

impl JwksFile {
    /// Reads and checks the JWKS at `path`; it may hold no keys.
    pub fn read(path: &Path) -> Result<Self, JwksError> {
        let text = std::fs::read_to_string(path).map_err(JwksError::Read)?;
        Ok(Self {
            path: path.to_owned(),
            keys: parse(&text)?,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn keys(&self) -> &[PublicJwk] {
        &self.keys
    }
}

/// What is wrong with a JWKS file.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot be read: {0}")]
    Read(std::io::Error),
    #[error(r#"not a JWKS ({{"keys": [...]}}): {0}"#)]
    NotJwks(serde_json::Error),
    #[error("holds no keys")]
    Empty,
    #[error("key {index}: {problem}")]
    Key { index: usize, problem: KeyProblem },
    #[error("keys {first} and {second} share the kid {kid:?}")]
    DuplicateKid {
        kid: String,
        first: usize,
        second: usize,
    },
}

/// What is wrong with one key of a JWKS.
#[derive(Debug, thiserror::Error)]
pub enum KeyProblem {
    #[error("not a JWK: {0}")]
    NotJwk(serde_json::Error),
    #[error("empty kid")]
    EmptyKid,
    #[error("kid {kid:?} has use {key_use:?}; verification keys have use \"sig\"")]
    NotForSignatures { kid: String, key_use: String },
    #[error(
        "kid {kid:?} is kty {kty:?} alg {alg:?} crv {crv:?}; only OKP EdDSA Ed25519 and EC ES256 P-256 keys are accepted"
    )]
    Unsupported {
        kid: String,
        kty: String,
        alg: String,
        crv: String,
    },
    #[error("kid {kid:?}: {coordinate} is not 32 bytes of unpadded base64url")]
    BadCoordinate {
        kid: String,
        coordinate: &'static str,
    },
}

/// Parses and checks the text of a JWKS.
pub fn parse(text: &str) -> Result<Vec<PublicJwk>, JwksError> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document = serde_json::from_str(text).map_err(JwksError::NotJwks)?;
    let mut keys: Vec<PublicJwk> = Vec::with_capacity(document.keys.len());
    for (index, value) in document.keys.into_iter().enumerate() {
        let key = check_key(value).map_err(|problem| JwksError::Key { index, problem })?;
        if let Some(first) = keys.iter().position(|seen| seen.kid == key.kid) {
            return Err(JwksError::DuplicateKid {
                kid: key.kid,
                first,
                second: index,
            });
        }
        keys.push(key);
    }
    Ok(keys)
}

fn check_key(value: serde_json::Value) -> Result<PublicJwk, KeyProblem> {
    let key: PublicJwk = serde_json::from_value(value).map_err(KeyProblem::NotJwk)?;
    if key.kid.is_empty() {
        return Err(KeyProblem::EmptyKid);
    }
    if key.key_use != "sig" {
        return Err(KeyProblem::NotForSignatures {
            kid: key.kid,
            key_use: key.key_use,
        });
    }
    let coordinates: &[(&'static str, Option<&str>)] =
        match (key.kty.as_str(), key.alg.as_str(), key.crv.as_str()) {
            ("OKP", "EdDSA", "Ed25519") => &[("x", Some(key.x.as_str()))],
            ("EC", "ES256", "P-256") => &[("x", Some(key.x.as_str())), ("y", key.y.as_deref())],
            _ => {
                return Err(KeyProblem::Unsupported {
                    kid: key.kid.clone(),
                    kty: key.kty.clone(),
                    alg: key.alg.clone(),
                    crv: key.crv.clone(),
                });
            }
        };
    for &(coordinate, value) in coordinates {
        let bytes = value.and_then(|value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(value)
                .ok()
        });
        if bytes.is_none_or(|bytes| bytes.len() != 32) {
            return Err(KeyProblem::BadCoordinate {
                kid: key.kid.clone(),
                coordinate,
            });
        }
    }
    Ok(key)
}

/// Clap value parser of `JWT_PUBLIC_KEYS_FILE`: a JWKS with at least one key, since
/// with none every token would be refused.
pub fn verification_keys(value: &str) -> Result<JwksFile, String> {
    let file = read_for_config(value)?;
    if file.keys.is_empty() {
        return Err(format!("{value}: {}", JwksError::Empty));
    }
    Ok(file)
}

/// Clap value parser of `JWT_ADDITIONAL_PUBLIC_KEYS_FILE`: a JWKS, possibly empty.
pub fn published_keys(value: &str) -> Result<JwksFile, String> {
    read_for_config(value)
}

fn read_for_config(value: &str) -> Result<JwksFile, String> {
    JwksFile::read(Path::new(value)).map_err(|error| format!("{value}: {error}"))
}

/// The access-token verifier of a process that only checks tokens: the fixed keys of
/// `JWT_PUBLIC_KEYS_FILE` when set, else session-service's published keys, fetched
/// over the channel `session_service` opens (only called when it is needed).
pub fn access_verifier(
    config: &TokenVerifyConfig,
    session_service: impl FnOnce() -> BalancedChannel,
) -> crate::auth::AccessVerifier {
    use crate::auth::AccessVerifier;
    match &config.jwt_public_keys_file {
        Some(file) => AccessVerifier::with_keys(
            file.keys().to_vec(),
            &config.jwt_issuer,
            &config.jwt_audience,
        ),
        None => AccessVerifier::from_session_service(
            session_service(),
            &config.jwt_issuer,
            &config.jwt_audience,
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    fn ed25519(kid: &str) -> serde_json::Value {
        json!({"kid": kid, "kty": "OKP", "alg": "EdDSA", "use": "sig", "crv": "Ed25519", "x": X})
    }

    fn problem(keys: serde_json::Value) -> String {
        parse(&json!({ "keys": keys }).to_string())
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn ed25519_and_p256_signature_keys_are_read_in_file_order() {
        let p256 = json!({"kid": "b", "kty": "EC", "alg": "ES256", "use": "sig", "crv": "P-256", "x": X, "y": Y});

        let keys = parse(&json!({ "keys": [ed25519("a"), p256] }).to_string()).unwrap();

        let kids: Vec<_> = keys.iter().map(|key| key.kid.as_str()).collect();
        assert_eq!(kids, ["a", "b"]);
        assert_eq!(keys[1].y.as_deref(), Some(Y));
    }

    #[test]
    fn a_file_that_is_not_a_jwks_is_refused_saying_so() {
        for text in ["", "not json", "[]", r#"{"key": []}"#, r#"{"keys": {}}"#] {
            let error = parse(text).expect_err(text).to_string();
            assert!(error.starts_with("not a JWKS"), "{text:?}: {error}");
        }
    }

    #[test]
    fn a_key_missing_a_field_is_refused_naming_its_index_and_the_field() {
        let mut key = ed25519("a");
        key.as_object_mut().unwrap().remove("crv");

        let error = problem(json!([ed25519("first"), key]));

        assert!(
            error.starts_with("key 1: not a JWK: missing field `crv`"),
            "{error}"
        );
    }

    #[test]
    fn keys_of_other_kinds_or_uses_are_refused_naming_the_kid() {
        let mut rsa = ed25519("rsa");
        rsa["kty"] = json!("RSA");
        rsa["alg"] = json!("RS256");
        let mut hmac = ed25519("hmac");
        hmac["alg"] = json!("HS256");
        let mut encryption = ed25519("enc");
        encryption["use"] = json!("enc");

        assert!(problem(json!([rsa])).contains(r#"kid "rsa" is kty "RSA" alg "RS256""#));
        assert!(problem(json!([hmac])).contains(r#"kid "hmac" is kty "OKP" alg "HS256""#));
        assert!(problem(json!([encryption])).contains(r#"kid "enc" has use "enc""#));
    }

    #[test]
    fn malformed_coordinates_are_refused() {
        let mut short = ed25519("short");
        short["x"] = json!("AAAA");
        let mut padded = ed25519("padded");
        padded["x"] = json!(format!("{X}="));
        let no_y = json!({"kid": "no-y", "kty": "EC", "alg": "ES256", "use": "sig", "crv": "P-256", "x": X});

        assert!(problem(json!([short])).contains(r#"kid "short": x is not 32 bytes"#));
        assert!(problem(json!([padded])).contains(r#"kid "padded": x is not 32 bytes"#));
        assert!(problem(json!([no_y])).contains(r#"kid "no-y": y is not 32 bytes"#));
    }

    #[test]
    fn two_keys_with_one_kid_or_an_empty_kid_are_refused() {
        assert_eq!(
            problem(json!([ed25519("a"), ed25519("b"), ed25519("a")])),
            r#"keys 0 and 2 share the kid "a""#
        );
        assert_eq!(problem(json!([ed25519("")])), "key 0: empty kid");
    }

    #[test]
    fn the_config_parsers_name_the_file_and_only_verification_keys_must_be_non_empty() {
        let dir = std::env::temp_dir();
        let empty = dir.join(format!("lge-jwks-empty-{}.json", uuid::Uuid::new_v4()));
        std::fs::write(&empty, r#"{"keys": []}"#).unwrap();
        let missing = dir.join(format!("lge-jwks-missing-{}.json", uuid::Uuid::new_v4()));
        let empty_name = empty.to_string_lossy().into_owned();
        let missing_name = missing.to_string_lossy().into_owned();

        let refused = verification_keys(&empty_name).expect_err("no keys");
        let published = published_keys(&empty_name).expect("no older keys is fine");
        let unreadable = published_keys(&missing_name).expect_err("no file");
        std::fs::remove_file(&empty).unwrap();

        assert_eq!(refused, format!("{empty_name}: holds no keys"));
        assert!(published.keys().is_empty());
        assert_eq!(published.path(), empty.as_path());
        assert!(
            unreadable.starts_with(&format!("{missing_name}: cannot be read:")),
            "{unreadable}"
        );
    }
}
