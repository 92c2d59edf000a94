//! SCRAM-SHA-256 (RFC 5802/7677) as PostgreSQL stores it: verifiers of the form
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`. The exchange itself is pgwire's
//! verifier-based server state machine.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use pgwire::api::auth::sasl::scram::{
    ScramSecret, ScramServerAuth, ScramServerAuthWaitingForClientFinal, gen_salted_password,
};
use rand::RngCore;

use super::AuthError;
use super::keys::ScramKeys;

pub(crate) const MECHANISM: &str = "SCRAM-SHA-256";
/// SCRAM with channel binding (`tls-server-end-point`), offered to TLS clients.
pub(crate) const MECHANISM_PLUS: &str = "SCRAM-SHA-256-PLUS";
const ITERATIONS: usize = 4096;

/// A parsed SCRAM-SHA-256 verifier.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Verifier {
    iterations: usize,
    salt: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(<redacted>)")
    }
}

impl Verifier {
    pub(crate) fn parse(s: &str) -> Result<Verifier, String> {
        let rest = s
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or("not a SCRAM-SHA-256 verifier")?;
        let (params, keys) = rest.split_once('$').ok_or("missing '$' before the keys")?;
        let (iter, salt) = params
            .split_once(':')
            .ok_or("missing ':' after iterations")?;
        let (stored, server) = keys.split_once(':').ok_or("missing ':' between the keys")?;
        let iterations: usize = iter
            .parse()
            .map_err(|_| "iteration count is not a number")?;
        if iterations == 0 {
            return Err("iteration count must be positive".into());
        }
        let b64 = |what: &str, v: &str| {
            STANDARD
                .decode(v)
                .map_err(|_| format!("{what} is not valid base64"))
        };
        let v = Verifier {
            iterations,
            salt: b64("salt", salt)?,
            stored_key: b64("StoredKey", stored)?,
            server_key: b64("ServerKey", server)?,
        };
        if v.stored_key.len() != 32 || v.server_key.len() != 32 {
            return Err("StoredKey and ServerKey must be 32 bytes".into());
        }
        Ok(v)
    }

    /// True if `keys` are this verifier's (same salt, iteration count and keys).
    pub(crate) fn holds(&self, keys: &ScramKeys) -> bool {
        keys.salt == self.salt
            && keys.iterations == self.iterations
            && keys.stored_key()[..] == self.stored_key[..]
            && keys.server_key()[..] == self.server_key[..]
    }

    fn secret(&self) -> ScramSecret {
        ScramSecret::Verifier {
            salt: self.salt.clone(),
            iterations: self.iterations,
            stored_key: self.stored_key.clone(),
            server_key: self.server_key.clone(),
        }
    }
}

/// Prints a PostgreSQL-compatible verifier for `password` with a fresh random salt.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salted = gen_salted_password(password, &salt, ITERATIONS);
    match ScramSecret::verifier_from_salted_password(salt.to_vec(), salted, ITERATIONS) {
        ScramSecret::Verifier {
            salt,
            iterations,
            stored_key,
            server_key,
        } => format!(
            "SCRAM-SHA-256${iterations}:{}${}:{}",
            STANDARD.encode(salt),
            STANDARD.encode(stored_key),
            STANDARD.encode(server_key)
        ),
        ScramSecret::SaltedPassword { .. } => unreachable!("verifier_from_salted_password"),
    }
}

/// SCRAM bound to the TLS certificate in `cert_pem` (the first one): a `-PLUS` exchange proves
/// the client saw this certificate, so no one in between could relay the login.
pub(crate) fn channel_binding(cert_pem: &[u8]) -> Result<ScramServerAuth, String> {
    let mut auth = ScramServerAuth::new();
    auth.configure_certificate(cert_pem)
        .map_err(|e| e.to_string())?;
    Ok(auth)
}

/// Server side of one exchange, between client-first and client-final.
pub(crate) struct Exchange {
    user: String,
    waiting: ScramServerAuthWaitingForClientFinal,
    verifier: Verifier,
    /// `client-first-bare + "," + server-first`: the start of the `AuthMessage`.
    auth_message_start: String,
}

impl Exchange {
    /// Handles client-first; returns the server-first message to send. `binding` is the
    /// channel-bound authenticator when the client is on TLS and `-PLUS` was offered: then a
    /// client claiming the server cannot bind (`y`) is refused as a downgrade, and a client
    /// that binds must bind to pgtenant's certificate.
    pub(crate) fn start(
        user: &str,
        verifier: &Verifier,
        client_first: &[u8],
        binding: Option<&ScramServerAuth>,
    ) -> Result<(Exchange, String), AuthError> {
        let plain = ScramServerAuth::new();
        let (server_first, waiting) = binding
            .unwrap_or(&plain)
            .on_client_first_message_with_secret(client_first, verifier.secret())
            .map_err(|e| AuthError::Protocol(e.to_string()))?;
        // The gs2 header is the first two comma-separated fields; the rest is client-first-bare.
        let bare = client_first
            .splitn(3, |b| *b == b',')
            .nth(2)
            .unwrap_or_default();
        let auth_message_start = format!("{},{server_first}", String::from_utf8_lossy(bare));
        Ok((
            Exchange {
                user: user.to_owned(),
                waiting,
                verifier: verifier.clone(),
                auth_message_start,
            },
            server_first,
        ))
    }

    /// Handles client-final; on success returns the server-final message and the keys the
    /// client proved it holds (`ClientKey` recovered from its proof), for upstream passthrough.
    pub(crate) fn finish(
        self,
        client_final: &[u8],
    ) -> Result<(String, Option<ScramKeys>), AuthError> {
        let keys = self.recover_keys(client_final);
        let server_final =
            self.waiting
                .on_client_final_message(client_final)
                .map_err(|e| match e {
                    pgwire::error::PgWireError::InvalidPassword(_) => AuthError::Failed(self.user),
                    // The client bound the exchange to a certificate other than pgtenant's.
                    pgwire::error::PgWireError::InvalidScramMessage(m)
                        if m.starts_with("Channel binding") =>
                    {
                        AuthError::ChannelBinding(self.user)
                    }
                    other => AuthError::Protocol(other.to_string()),
                })?;
        Ok((server_final, keys))
    }

    /// `ClientKey` from the proof in client-final (the last attribute, `p=`), checked against
    /// the verifier's `StoredKey`.
    fn recover_keys(&self, client_final: &[u8]) -> Option<ScramKeys> {
        let client_final = std::str::from_utf8(client_final).ok()?;
        let (without_proof, proof) = client_final.rsplit_once(",p=")?;
        let proof = STANDARD.decode(proof).ok()?;
        let auth_message = format!("{},{without_proof}", self.auth_message_start);
        let v = &self.verifier;
        ScramKeys::recover(
            &v.salt,
            v.iterations,
            &v.stored_key,
            &v.server_key,
            auth_message.as_bytes(),
            &proof,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_password_parses_back() {
        let v = hash_password("s3cret");
        assert!(v.starts_with("SCRAM-SHA-256$4096:"));
        let parsed = Verifier::parse(&v).expect("parses");
        assert_eq!(parsed.iterations, 4096);
        assert_eq!(parsed.salt.len(), 16);
    }

    #[test]
    fn plaintext_is_not_a_verifier() {
        assert!(Verifier::parse("s3cret").is_err());
        assert!(Verifier::parse("SCRAM-SHA-256$x:c2FsdA==$a:b").is_err());
    }
}
