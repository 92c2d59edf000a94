//! The client side of SCRAM-SHA-256 towards a shard (no channel binding), working from
//! [`ScramKeys`] rather than a password: the keys come from the derivation cache or from a
//! client's own login (passthrough). postgres-protocol's `ScramSha256` only takes a password
//! and derives it anew for every connection, which is why this exchange is pgtenant's own;
//! the cryptography is the `hmac`, `sha2` and `pbkdf2` crates'.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::auth::keys::{Key, ScramKeys};

/// `base64("n,,")`: no channel binding, no authorization identity.
const GS2_HEADER_B64: &str = "biws";

/// Client-first sent; waiting for server-first.
pub(crate) struct Started {
    nonce: String,
    bare: String,
}

/// Server-first as the shard sent it.
pub(crate) struct ServerFirst {
    raw: String,
    nonce: String,
    pub(crate) salt: Vec<u8>,
    pub(crate) iterations: usize,
}

/// Client-final sent; the server signature to expect in server-final.
pub(crate) struct Finishing {
    expected: Key,
}

impl Started {
    /// Starts an exchange; returns the client-first message. PostgreSQL takes the user from
    /// the startup packet, so the SCRAM user name is empty, as libpq sends it.
    pub(crate) fn new() -> (Started, String) {
        let nonce = STANDARD.encode(rand::random::<[u8; 18]>());
        let bare = format!("n=,r={nonce}");
        let message = format!("n,,{bare}");
        (Started { nonce, bare }, message)
    }

    /// Parses server-first: the combined nonce must extend ours.
    pub(crate) fn server_first(&self, body: &[u8]) -> Result<ServerFirst, String> {
        let raw = std::str::from_utf8(body)
            .map_err(|_| "server-first is not UTF-8")?
            .to_owned();
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for attr in raw.split(',') {
            match attr.split_at_checked(2) {
                Some(("r=", v)) => nonce = Some(v.to_owned()),
                Some(("s=", v)) => {
                    salt = Some(STANDARD.decode(v).map_err(|_| "salt is not base64")?)
                }
                Some(("i=", v)) => {
                    iterations = Some(v.parse().map_err(|_| "iteration count is not a number")?)
                }
                _ => {}
            }
        }
        let nonce = nonce.ok_or("server-first has no nonce")?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err("server nonce does not extend the client's".into());
        }
        Ok(ServerFirst {
            raw,
            nonce,
            salt: salt.ok_or("server-first has no salt")?,
            iterations: iterations
                .filter(|i| *i > 0)
                .ok_or("server-first has no iteration count")?,
        })
    }

    /// Client-final, proving `keys` (which must be for the server's salt and iterations).
    pub(crate) fn finish(self, server: &ServerFirst, keys: &ScramKeys) -> (Finishing, String) {
        let without_proof = format!("c={GS2_HEADER_B64},r={}", server.nonce);
        let auth_message = format!("{},{},{without_proof}", self.bare, server.raw);
        let proof = keys.client_proof(auth_message.as_bytes());
        let message = format!("{without_proof},p={}", STANDARD.encode(proof));
        let expected = keys.server_signature(auth_message.as_bytes());
        (Finishing { expected }, message)
    }
}

impl Finishing {
    /// Checks server-final: the shard must prove it holds the verifier too.
    pub(crate) fn check(&self, body: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(body).map_err(|_| "server-final is not UTF-8")?;
        if let Some(e) = text.strip_prefix("e=") {
            return Err(format!("server refused the exchange: {e}"));
        }
        let v = text
            .split(',')
            .find_map(|a| a.strip_prefix("v="))
            .ok_or("server-final has no signature")?;
        let got = STANDARD.decode(v).map_err(|_| "signature is not base64")?;
        if got[..] != self.expected[..] {
            return Err(
                "server signature does not match: the shard does not hold this verifier".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plays the server's side with the same keys: a full exchange checks out, and a server
    /// with other keys is caught.
    #[test]
    fn exchange_against_a_server_with_the_same_keys() {
        let keys = ScramKeys::from_password("pw", b"0123456789abcdef", 4096);
        let (start, first) = Started::new();
        let client_nonce = first
            .strip_prefix("n,,n=,r=")
            .expect("client-first")
            .to_owned();
        let server_first = format!(
            "r={client_nonce}SRV,s={},i=4096",
            STANDARD.encode(b"0123456789abcdef")
        );
        let parsed = start.server_first(server_first.as_bytes()).expect("parses");
        assert_eq!(parsed.iterations, 4096);
        let (finishing, client_final) = start.finish(&parsed, &keys);
        let (without_proof, proof) = client_final.rsplit_once(",p=").expect("proof");
        let auth = format!("n=,r={client_nonce},{server_first},{without_proof}");
        let recovered = ScramKeys::recover(
            &keys.salt,
            4096,
            &keys.stored_key(),
            keys.server_key(),
            auth.as_bytes(),
            &STANDARD.decode(proof).expect("base64"),
        );
        assert_eq!(
            recovered.as_ref(),
            Some(&keys),
            "the server accepts the proof"
        );
        let good = format!(
            "v={}",
            STANDARD.encode(keys.server_signature(auth.as_bytes()))
        );
        assert!(finishing.check(good.as_bytes()).is_ok());
        let other = ScramKeys::from_password("other", b"0123456789abcdef", 4096);
        let forged = format!(
            "v={}",
            STANDARD.encode(other.server_signature(auth.as_bytes()))
        );
        assert!(finishing.check(forged.as_bytes()).is_err());
        assert!(finishing.check(b"e=invalid-proof").is_err());
    }

    #[test]
    fn a_server_nonce_that_does_not_extend_ours_is_refused() {
        let (start, _) = Started::new();
        let err = start
            .server_first(b"r=someoneelse,s=c2FsdA==,i=4096")
            .err()
            .expect("refused");
        assert!(err.contains("nonce"), "{err}");
        assert!(start.server_first(b"r=x").is_err());
    }
}
