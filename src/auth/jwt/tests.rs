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

#[test]
fn jwks_keys_are_chosen_by_kid() {
    use jsonwebtoken::jwk::{Jwk, JwkSet};
    let mut jwks = JwkSet { keys: Vec::new() };
    let mut signers = Vec::new();
    for kid in ["one", "two"] {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let enc = EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).expect("EC key");
        let mut jwk = Jwk::from_encoding_key(&enc, Algorithm::ES256).expect("jwk");
        jwk.common.key_id = Some(kid.into());
        jwks.keys.push(jwk);
        signers.push((kid, enc));
    }
    let text = serde_json::to_vec(&jwks).expect("json");
    let p = JwtPolicy {
        keys: keys::jwks(&text).expect("jwks"),
        algorithms: vec![Algorithm::ES256],
        ..policy()
    };
    let claims = json!({"org": "acme", "exp": exp()});
    for (kid, enc) in &signers {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some((*kid).into());
        let t = jsonwebtoken::encode(&header, &claims, enc).expect("sign");
        assert_eq!(p.verify(&t).expect("valid").tenant, "acme");
        // The same token claiming the other kid does not verify.
        let mut wrong = Header::new(Algorithm::ES256);
        wrong.kid = Some(if *kid == "one" { "two" } else { "one" }.into());
        let t = jsonwebtoken::encode(&wrong, &claims, enc).expect("sign");
        assert!(matches!(p.verify(&t), Err(JwtError::BadSignature)));
    }
    // An HS256 token is never checked against the JWKS public keys.
    let e = p
        .verify(&token(Algorithm::HS256, &claims))
        .expect_err("refused");
    assert!(matches!(e, JwtError::Algorithm(_)), "{e}");
}
