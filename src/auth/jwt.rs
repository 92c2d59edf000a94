//! JWT as the password (DESIGN §2, §5): signature (HS/RS/ES families, each only with a key of its
//! own family), `exp`, `nbf`, `iss`, `aud`, then the tenant claim and the optional role claim
//! mapped through the configured allowlist.
//!
//! Pure logic, no I/O: the config stage loads the keys ([`keys`]), the session stage reads the
//! token off the wire and calls [`JwtPolicy::verify`] on a blocking thread. Nothing here logs or
//! echoes a token.

pub(crate) mod keys;

use std::collections::BTreeMap;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::error::{ClientError, ClientFacing, INVALID_AUTHORIZATION, INVALID_PASSWORD};
use keys::Key;

/// Everything `[jwt]` configures, validated.
pub(crate) struct JwtPolicy {
    /// Verification keys; a token is checked only against keys of its algorithm's family.
    pub(crate) keys: Vec<Key>,
    /// Algorithms accepted in a token's header (never `none`).
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) issuer: Option<String>,
    pub(crate) audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub(crate) leeway_seconds: u64,
    pub(crate) tenant_claim: String,
    pub(crate) role_claim: Option<String>,
    /// Role claim value → upstream role. A value not listed is refused.
    pub(crate) roles: BTreeMap<String, String>,
    /// Accept a token over plain TCP from a loopback address (development only).
    pub(crate) allow_plaintext_loopback: bool,
    /// Largest token accepted, in bytes.
    pub(crate) max_token_bytes: usize,
}

impl std::fmt::Debug for JwtPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtPolicy")
            .field("keys", &self.keys.len())
            .field("algorithms", &self.algorithms)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_seconds", &self.leeway_seconds)
            .field("tenant_claim", &self.tenant_claim)
            .field("role_claim", &self.role_claim)
            .field("roles", &self.roles)
            .field("allow_plaintext_loopback", &self.allow_plaintext_loopback)
            .field("max_token_bytes", &self.max_token_bytes)
            .finish()
    }
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JwtIdentity {
    /// The tenant named by the tenant claim.
    pub(crate) tenant: String,
    /// The upstream role the role claim maps to, if the claim is configured and present.
    pub(crate) role: Option<String>,
}

/// Why a token was refused. Messages never contain the token.
#[derive(Debug, Error)]
pub(crate) enum JwtError {
    #[error(
        "a JWT is a password: connect with TLS (sslmode=require) to authenticate as user \"{0}\""
    )]
    NeedsTls(String),
    #[error("invalid token: larger than {0} bytes (jwt.max_token_bytes)")]
    TooLarge(usize),
    #[error("invalid token: not a JWT")]
    Malformed,
    #[error("invalid token: algorithm {0} is not accepted")]
    Algorithm(String),
    #[error("invalid token: no configured key for algorithm {0}")]
    NoKey(String),
    #[error("invalid token: signature does not verify")]
    BadSignature,
    #[error("invalid token: wrong issuer")]
    Issuer,
    #[error("invalid token: wrong audience")]
    Audience,
    #[error("invalid token: claim \"{0}\" is missing")]
    MissingClaim(String),
    #[error("invalid token: claim \"{0}\" must be a string")]
    ClaimType(String),
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet (nbf)")]
    NotYetValid,
    #[error("token role \"{0}\" is not allowed (jwt.roles)")]
    RoleNotAllowed(String),
    #[error("token verification failed to run")]
    Internal,
}

impl ClientFacing for JwtError {
    fn to_client(&self) -> ClientError {
        let code = match self {
            JwtError::NeedsTls(_)
            | JwtError::Expired
            | JwtError::NotYetValid
            | JwtError::RoleNotAllowed(_) => INVALID_AUTHORIZATION,
            JwtError::TooLarge(_)
            | JwtError::Malformed
            | JwtError::Algorithm(_)
            | JwtError::NoKey(_)
            | JwtError::BadSignature
            | JwtError::Issuer
            | JwtError::Audience
            | JwtError::MissingClaim(_)
            | JwtError::ClaimType(_)
            | JwtError::Invalid(_)
            | JwtError::Internal => INVALID_PASSWORD,
        };
        ClientError::new(code, self.to_string())
    }
}

impl JwtPolicy {
    /// Verifies `token` and reads the tenant and role out of it. CPU-bound (RSA/ECDSA): call it
    /// off the async worker threads.
    pub(crate) fn verify(&self, token: &str) -> Result<JwtIdentity, JwtError> {
        if token.len() > self.max_token_bytes {
            return Err(JwtError::TooLarge(self.max_token_bytes));
        }
        // `alg: none` and unknown algorithms do not parse as a header at all.
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
        let alg = header.alg;
        if !self.algorithms.contains(&alg) {
            return Err(JwtError::Algorithm(format!("{alg:?}")));
        }
        let family = alg.family();
        let of_family = || self.keys.iter().filter(move |k| k.family() == family);
        let by_kid: Vec<&Key> = match &header.kid {
            Some(kid) => of_family()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect(),
            None => Vec::new(),
        };
        let candidates: Vec<&Key> = if by_kid.is_empty() {
            of_family().collect()
        } else {
            by_kid
        };
        if candidates.is_empty() {
            return Err(JwtError::NoKey(format!("{alg:?}")));
        }
        let validation = self.validation(alg);
        let mut claims = None;
        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => {
                    claims = Some(data.claims);
                    break;
                }
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => continue,
                Err(e) => return Err(map_error(e.kind())),
            }
        }
        let claims = claims.ok_or(JwtError::BadSignature)?;
        let tenant = string_claim(&claims, &self.tenant_claim)?
            .ok_or_else(|| JwtError::MissingClaim(self.tenant_claim.clone()))?;
        let role = match &self.role_claim {
            Some(name) => match string_claim(&claims, name)? {
                Some(value) => Some(
                    self.roles
                        .get(&value)
                        .cloned()
                        .ok_or(JwtError::RoleNotAllowed(value))?,
                ),
                None => None,
            },
            None => None,
        };
        Ok(JwtIdentity { tenant, role })
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.leeway_seconds;
        v.validate_exp = true;
        v.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        match &self.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&required);
        v
    }
}

fn string_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, JwtError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(JwtError::ClaimType(name.to_owned())),
    }
}

fn map_error(kind: &ErrorKind) -> JwtError {
    match kind {
        ErrorKind::ExpiredSignature => JwtError::Expired,
        ErrorKind::ImmatureSignature => JwtError::NotYetValid,
        ErrorKind::InvalidIssuer => JwtError::Issuer,
        ErrorKind::InvalidAudience => JwtError::Audience,
        ErrorKind::InvalidSignature => JwtError::BadSignature,
        ErrorKind::MissingRequiredClaim(c) => JwtError::MissingClaim(c.clone()),
        ErrorKind::InvalidClaimFormat(c) => {
            JwtError::Invalid(format!("claim \"{c}\" is malformed"))
        }
        ErrorKind::InvalidAlgorithm => JwtError::Algorithm("of this key".into()),
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => JwtError::Malformed,
        _ => JwtError::Invalid("cannot be verified".into()),
    }
}

#[cfg(test)]
mod tests;
