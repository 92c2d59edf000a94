//! Which tenant a connection belongs to: the unverified hint from startup parameters and TLS
//! ([`hint`]), the agreement rule across sources, and the directory lookup ([`directory`]).

pub(crate) mod directory;
pub(crate) mod hint;
pub(crate) mod holds;
pub(crate) mod name;

use crate::error::{
    ClientError, ClientFacing, INVALID_AUTHORIZATION, PROTOCOL_VIOLATION, UNKNOWN_DATABASE,
};
use thiserror::Error;

#[derive(Debug, Error)]
pub(crate) enum TenantError {
    #[error(
        "tenant sources disagree: {first} says \"{first_value}\" but {second} says \"{second_value}\""
    )]
    Disagree {
        first: &'static str,
        first_value: String,
        second: &'static str,
        second_value: String,
    },
    #[error("no tenant given: name it with {0}")]
    Missing(String),
    #[error("tenant \"{0}\" does not exist")]
    Unknown(String),
    #[error("tenant \"{0}\" is suspended")]
    Suspended(String),
    #[error(
        "the startup packet may not set \"{0}\" (a parameter or in options): pgtenant sets the tenant context itself"
    )]
    ForbiddenOption(String),
    #[error("invalid startup options: {0}")]
    BadOptions(String),
}

impl TenantError {
    /// The `reason` label of `pgtenant_tenant_rejections_total`.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            TenantError::Disagree { .. } => "sources_disagree",
            TenantError::Missing(_) => "missing",
            TenantError::Unknown(_) => "unknown",
            TenantError::Suspended(_) => "suspended",
            TenantError::ForbiddenOption(_) => "forbidden_option",
            TenantError::BadOptions(_) => "bad_options",
        }
    }
}

impl ClientFacing for TenantError {
    fn to_client(&self) -> ClientError {
        let code = match self {
            TenantError::Disagree { .. }
            | TenantError::Suspended(_)
            | TenantError::ForbiddenOption(_) => INVALID_AUTHORIZATION,
            TenantError::Missing(_) | TenantError::Unknown(_) => UNKNOWN_DATABASE,
            TenantError::BadOptions(_) => PROTOCOL_VIOLATION,
        };
        ClientError::new(code, self.to_string())
    }
}
