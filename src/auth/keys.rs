//! SCRAM-SHA-256 key material (RFC 5802 §3): the `ClientKey` and `ServerKey` a login proves
//! knowledge of, derived from a password (PBKDF2) or recovered from a client's proof, and the
//! signatures both sides compute over the `AuthMessage`.
//!
//! The client side's `ClientProof` is `ClientKey XOR HMAC(StoredKey, AuthMessage)`; a server
//! that knows `StoredKey` (the verifier) can therefore recover `ClientKey` from a valid proof.
//! That is what lets pgtenant log in to a shard holding the same verifier without ever knowing
//! the password (upstream passthrough).

use hmac::{Hmac, Mac};
use pgwire::api::auth::sasl::scram::gen_salted_password;
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// A SHA-256 sized key or signature.
pub(crate) type Key = [u8; 32];

/// The keys one verifier (salt, iteration count) stands for, with `ClientKey` known.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ScramKeys {
    pub(crate) salt: Vec<u8>,
    pub(crate) iterations: usize,
    client_key: Key,
    server_key: Key,
}

impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramKeys(<redacted>)")
    }
}

impl ScramKeys {
    /// Derives the keys from a password (SASLprep, then PBKDF2): milliseconds of CPU, so
    /// callers run it on a blocking thread.
    pub(crate) fn from_password(password: &str, salt: &[u8], iterations: usize) -> ScramKeys {
        let salted = gen_salted_password(password, salt, iterations);
        ScramKeys {
            salt: salt.to_vec(),
            iterations,
            client_key: hmac(&salted, b"Client Key"),
            server_key: hmac(&salted, b"Server Key"),
        }
    }

    /// Recovers `ClientKey` from a client's `proof` over `auth_message`, given the verifier's
    /// `StoredKey` and `ServerKey`. `None` when the proof does not match the verifier.
    pub(crate) fn recover(
        salt: &[u8],
        iterations: usize,
        stored_key: &[u8],
        server_key: &[u8],
        auth_message: &[u8],
        proof: &[u8],
    ) -> Option<ScramKeys> {
        let signature = hmac(stored_key, auth_message);
        let client_key = xor(proof.try_into().ok()?, &signature);
        if sha256(&client_key)[..] != *stored_key {
            return None;
        }
        Some(ScramKeys {
            salt: salt.to_vec(),
            iterations,
            client_key,
            server_key: server_key.try_into().ok()?,
        })
    }

    /// `StoredKey`, the half of a verifier that checks proofs.
    pub(crate) fn stored_key(&self) -> Key {
        sha256(&self.client_key)
    }

    /// `ServerKey`, the half of a verifier that signs the server's final message.
    pub(crate) fn server_key(&self) -> &Key {
        &self.server_key
    }

    /// The client's proof of knowing `ClientKey`, over `auth_message`.
    pub(crate) fn client_proof(&self, auth_message: &[u8]) -> Key {
        xor(&self.client_key, &hmac(&self.stored_key(), auth_message))
    }

    /// The signature a server holding this verifier sends in its final message.
    pub(crate) fn server_signature(&self, auth_message: &[u8]) -> Key {
        hmac(&self.server_key, auth_message)
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Key {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn sha256(data: &[u8]) -> Key {
    Sha256::digest(data).into()
}

fn xor(a: &Key, b: &Key) -> Key {
    std::array::from_fn(|i| a[i] ^ b[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_made_with_the_keys_gives_them_back() {
        let keys = ScramKeys::from_password("pencil", b"salt-of-16-bytes", 4096);
        let message = b"n=,r=abc,r=abcdef,s=c2FsdA==,i=4096,c=biws,r=abcdef";
        let proof = keys.client_proof(message);
        let back = ScramKeys::recover(
            &keys.salt,
            keys.iterations,
            &keys.stored_key(),
            keys.server_key(),
            message,
            &proof,
        )
        .expect("recovers");
        assert_eq!(back, keys);
        // A proof over another message, or a flipped bit, does not.
        let mut bad = proof;
        bad[0] ^= 1;
        let recover = |m: &[u8], p: &[u8]| {
            ScramKeys::recover(
                &keys.salt,
                keys.iterations,
                &keys.stored_key(),
                keys.server_key(),
                m,
                p,
            )
        };
        assert!(recover(message, &bad).is_none());
        assert!(recover(b"another message", &proof).is_none());
        assert!(recover(message, &proof[..31]).is_none());
    }

    #[test]
    fn keys_match_rfc7677_test_vector() {
        // RFC 7677 §3: user "user", password "pencil".
        let salt = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            "W22ZaJ0SNY7soEsUEjb6gQ==",
        )
        .expect("base64");
        let keys = ScramKeys::from_password("pencil", &salt, 4096);
        let auth = b"n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let b64 = |k: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, k);
        assert_eq!(
            b64(&keys.client_proof(auth)),
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(
            b64(&keys.server_signature(auth)),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }
}
