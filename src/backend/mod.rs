//! Connecting and authenticating to shards (the upstream side), and the server connection type
//! the pools hold.

pub(crate) mod conn;
pub(crate) mod connect;
pub(crate) mod credentials;
pub(crate) mod scram;
pub(crate) mod statements;

use crate::error::{CONNECTION_FAILURE, ClientError, ClientFacing, UNABLE_TO_CONNECT};
use bytes::Bytes;
use thiserror::Error;

#[derive(Debug, Error)]
pub(crate) enum BackendError {
    #[error("could not connect to shard \"{shard}\" ({addr}): {reason}")]
    Unreachable {
        shard: String,
        addr: String,
        reason: String,
    },
    #[error("shard \"{shard}\" refused the connection: {code} {message}")]
    Rejected {
        shard: String,
        code: String,
        message: String,
        /// The shard's `ErrorResponse`, forwarded to the client byte for byte.
        raw: Bytes,
    },
    #[error(
        "shard \"{shard}\" asks for an authentication method pgtenant does not support ({method})"
    )]
    AuthMethod { shard: String, method: String },
    #[error(
        "shard \"{shard}\" needs a password for role \"{role}\": set password, password_env or password_file for the shard, or (SCRAM passthrough) give pgtenant's user \"{role}\" the role's verifier and let that user log in first"
    )]
    NoPassword { shard: String, role: String },
    #[error(
        "shard \"{shard}\" holds another SCRAM verifier for role \"{role}\" than pgtenant's user \"{role}\" (salt or iteration count differ), so the client's keys cannot pass through: copy the role's verifier from pg_authid into [users.{role}], or set a password for the shard"
    )]
    OtherVerifier { shard: String, role: String },
    #[error("connection to shard \"{shard}\" lost: {reason}")]
    Lost { shard: String, reason: String },
}

impl BackendError {
    /// The shard's own error message, to forward unchanged.
    pub(crate) fn upstream_raw(&self) -> Option<&Bytes> {
        match self {
            BackendError::Rejected { raw, .. } => Some(raw),
            _ => None,
        }
    }
}

impl ClientFacing for BackendError {
    fn to_client(&self) -> ClientError {
        let code = match self {
            BackendError::Lost { .. } => CONNECTION_FAILURE,
            _ => UNABLE_TO_CONNECT,
        };
        ClientError::new(code, self.to_string())
    }
}
