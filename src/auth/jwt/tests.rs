//! JWT verification without a network: claims, roles, algorithms, size.

use std::collections::BTreeMap;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::keys;
use super::{JwtError, JwtIdentity, JwtPolicy};

const SECRET: &[u8] = b"unit-test-only-secret-0123456789abcdef";

fn policy() -> JwtPolicy {
    JwtPolicy {
        keys: vec![keys::secret(SECRET).expect("secret")],
        algorithms: vec![Algorithm::HS256],
        issuer: None,
        audience: None,
        leeway_seconds: 0,
        tenant_claim: "org".into(),
        role_claim: Some("role".into()),
        roles: BTreeMap::from([("reader".into(), "app_ro".into())]),
        allow_plaintext_loopback: false,
        max_token_bytes: 2048,
    }
}

fn token(alg: Algorithm, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(SECRET))
        .expect("sign")
}

fn exp() -> u64 {
    jsonwebtoken::get_current_timestamp() + 600
}

#[test]
fn tenant_claim_name_is_configurable_and_roles_map() {
    let p = policy();
    let id = p
        .verify(&token(
            Algorithm::HS256,
            &json!({"org": "acme", "exp": exp()}),
        ))
        .expect("valid");
    assert_eq!(
        id,
        JwtIdentity {
            tenant: "acme".into(),
            role: None
        }
    );
    let id = p
        .verify(&token(
            Algorithm::HS256,
            &json!({"org": "acme", "role": "reader", "exp": exp()}),
        ))
        .expect("valid");
    assert_eq!(id.role.as_deref(), Some("app_ro"));
    // The upstream role name itself is not a claim value in the allowlist.
    let e = p
        .verify(&token(
            Algorithm::HS256,
            &json!({"org": "acme", "role": "app_ro", "exp": exp()}),
        ))
        .expect_err("refused");
    assert!(matches!(e, JwtError::RoleNotAllowed(_)), "{e}");
    // The default claim name means nothing here.
    let e = p
        .verify(&token(
            Algorithm::HS256,
            &json!({"tenant": "acme", "exp": exp()}),
        ))
        .expect_err("refused");
    assert!(
        matches!(e, JwtError::MissingClaim(ref c) if c == "org"),
        "{e}"
    );
    let e = p
        .verify(&token(Algorithm::HS256, &json!({"org": 7, "exp": exp()})))
        .expect_err("refused");
    assert!(matches!(e, JwtError::ClaimType(_)), "{e}");
}

#[test]
fn algorithms_outside_the_allowlist_are_refused() {
    let e = policy()
        .verify(&token(
            Algorithm::HS512,
            &json!({"org": "acme", "exp": exp()}),
        ))
        .expect_err("refused");
    assert!(matches!(e, JwtError::Algorithm(_)), "{e}");
}

#[test]
fn size_limit_is_checked_before_parsing() {
    let e = policy().verify(&"a".repeat(2049)).expect_err("refused");
    assert!(matches!(e, JwtError::TooLarge(2048)), "{e}");
}

#[test]
fn private_keys_and_short_secrets_are_not_keys() {
    assert!(keys::secret(b"short").is_err());
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    assert!(keys::pem(kp.serialize_pem().as_bytes()).is_err());
    assert!(keys::pem(kp.public_key_pem().as_bytes()).is_ok());
    assert!(keys::jwks(br#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#).is_err());
}
