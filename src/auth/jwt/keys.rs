//! JWT verification keys from what `[jwt]` points to: an HMAC secret, PEM public keys (RSA,
//! EC), or a JWKS document. Parsing only; the config stage reads the files.

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{AlgorithmFamily, DecodingKey};

/// Shortest HMAC secret accepted: 256 bits, as RFC 7518 §3.2 requires for HS256.
pub(crate) const MIN_SECRET_BYTES: usize = 32;

/// One verification key.
#[derive(Clone)]
pub(crate) struct Key {
    /// The JWKS `kid`, if the key came from a JWKS file with one.
    pub(crate) kid: Option<String>,
    pub(crate) key: DecodingKey,
}

impl Key {
    pub(crate) fn family(&self) -> AlgorithmFamily {
        self.key.family()
    }
}

/// An HMAC secret (HS256/384/512).
pub(crate) fn secret(bytes: &[u8]) -> Result<Key, String> {
    if bytes.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "the secret must be at least {MIN_SECRET_BYTES} bytes (e.g. openssl rand -base64 48)"
        ));
    }
    Ok(Key {
        kid: None,
        key: DecodingKey::from_secret(bytes),
    })
}

/// A PEM public key: RSA (RS*/PS*) or EC (ES*). Private keys are not accepted.
pub(crate) fn pem(text: &[u8]) -> Result<Key, String> {
    let s = std::str::from_utf8(text).map_err(|_| "not a PEM file".to_owned())?;
    if s.contains("PRIVATE KEY") {
        return Err("this is a private key: give pgtenant only the public key".into());
    }
    let key = DecodingKey::from_rsa_pem(text)
        .or_else(|_| DecodingKey::from_ec_pem(text))
        .map_err(|_| "not an RSA or EC public key in PEM form".to_owned())?;
    Ok(Key { kid: None, key })
}

/// The RSA and EC keys of a JWKS document; symmetric (`oct`) keys are refused.
pub(crate) fn jwks(text: &[u8]) -> Result<Vec<Key>, String> {
    let set: JwkSet =
        serde_json::from_slice(text).map_err(|e| format!("not a JWKS document: {e}"))?;
    if set.keys.is_empty() {
        return Err("the JWKS document has no keys".into());
    }
    set.keys
        .iter()
        .enumerate()
        .map(|(i, jwk)| {
            match &jwk.algorithm {
                AlgorithmParameters::RSA(_) | AlgorithmParameters::EllipticCurve(_) => {}
                _ => return Err(format!("keys[{i}]: only RSA and EC keys are accepted")),
            }
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("keys[{i}]: {e}"))?;
            Ok(Key {
                kid: jwk.common.key_id.clone(),
                key,
            })
        })
        .collect()
}
