//! Client authentication: SCRAM-SHA-256 against verifiers from config, and JWTs as cleartext
//! passwords over TLS (DESIGN §5); brute-force limits on failed logins ([`limit`]).
//!
//! Pure logic; the session stage does the message I/O.

pub(crate) mod jwt;
pub(crate) mod keys;
pub(crate) mod limit;
pub(crate) mod scram;

use crate::error::{
    ClientError, ClientFacing, INVALID_AUTHORIZATION, INVALID_PASSWORD, PROTOCOL_VIOLATION,
};
use jwt::JwtError;
use thiserror::Error;

#[derive(Debug, Error)]
pub(crate) enum AuthError {
    #[error("password authentication failed for user \"{0}\"")]
    Failed(String),
    #[error(
        "channel binding does not match pgtenant's TLS certificate for user \"{0}\" (is something relaying the connection?)"
    )]
    ChannelBinding(String),
    #[error("malformed SASL exchange: {0}")]
    Protocol(String),
    #[error("SASL mechanism {0:?} is not supported: use SCRAM-SHA-256")]
    Mechanism(String),
    #[error("user \"{user}\" may not use tenant \"{tenant}\"")]
    TenantNotAllowed { user: String, tenant: String },
    #[error(transparent)]
    Jwt(#[from] JwtError),
    #[error("too many failed logins from this address: try again in {0} s (auth.lockout)")]
    LockedOut(u64),
    #[error("user \"{0}\" may not use the admin console (set admin = true for it)")]
    NotAdmin(String),
}

impl AuthError {
    /// The `reason` label of `pgtenant_auth_failures_total`, or `None` when this is not a
    /// failed credential (a refusal of a tenant counts as a tenant rejection instead).
    pub(crate) fn failure_reason(&self) -> Option<&'static str> {
        match self {
            AuthError::Failed(_) => Some("password"),
            AuthError::ChannelBinding(_) => Some("channel_binding"),
            AuthError::Protocol(_) | AuthError::Mechanism(_) => Some("protocol"),
            AuthError::Jwt(_) => Some("token"),
            AuthError::LockedOut(_) => Some("locked_out"),
            AuthError::NotAdmin(_) => Some("not_admin"),
            AuthError::TenantNotAllowed { .. } => None,
        }
    }
}

impl ClientFacing for AuthError {
    fn to_client(&self) -> ClientError {
        let code = match self {
            AuthError::Failed(_) | AuthError::ChannelBinding(_) => INVALID_PASSWORD,
            AuthError::Protocol(_) | AuthError::Mechanism(_) => PROTOCOL_VIOLATION,
            AuthError::TenantNotAllowed { .. }
            | AuthError::LockedOut(_)
            | AuthError::NotAdmin(_) => INVALID_AUTHORIZATION,
            AuthError::Jwt(e) => return e.to_client(),
        };
        ClientError::new(code, self.to_string())
    }
}
