//! Error kinds and the SQLSTATE codes pgtenant itself sends (DESIGN §7).
//!
//! Every stage has its own `thiserror` enum; each implements [`ClientFacing`], which says what
//! the client may see (code + message). Nothing else in the crate spells a SQLSTATE literal.

/// `08P01` protocol_violation: malformed or unexpected client message.
pub(crate) const PROTOCOL_VIOLATION: &str = "08P01";
/// `28P01` invalid_password: wrong password / invalid token.
pub(crate) const INVALID_PASSWORD: &str = "28P01";
/// `28000` invalid_authorization_specification: user not allowed for tenant, sources disagree,
/// tenant suspended.
pub(crate) const INVALID_AUTHORIZATION: &str = "28000";
/// `3D000` invalid_catalog_name: unknown tenant or database.
pub(crate) const UNKNOWN_DATABASE: &str = "3D000";
/// `53300` too_many_connections: client limits reached.
pub(crate) const TOO_MANY_CONNECTIONS: &str = "53300";
/// `08006` connection_failure: a shard connection was lost.
pub(crate) const CONNECTION_FAILURE: &str = "08006";
/// `08001` sqlclient_unable_to_establish_sqlconnection: a shard could not be reached.
pub(crate) const UNABLE_TO_CONNECT: &str = "08001";
/// `42501` insufficient_privilege: a statement refused by the shared-placement guard.
pub(crate) const INSUFFICIENT_PRIVILEGE: &str = "42501";
/// `42601` syntax_error: a statement the shared-placement guard's parser (PostgreSQL's own)
/// rejects; not forwarded.
pub(crate) const SYNTAX_ERROR: &str = "42601";
/// `26000` invalid_sql_statement_name: a Bind or Describe of a statement this client never
/// prepared (it may exist on the server connection for another client).
pub(crate) const INVALID_STATEMENT_NAME: &str = "26000";
/// `57P01` admin_shutdown: the proxy is shutting down.
pub(crate) const ADMIN_SHUTDOWN: &str = "57P01";
/// `57014` query_canceled: `query_wait_timeout` expired, or the client cancelled a request that
/// was still waiting for a server connection.
pub(crate) const QUERY_CANCELED: &str = "57014";
/// `57P05` idle_session_timeout: a client idle longer than `client_idle_timeout`.
pub(crate) const IDLE_SESSION_TIMEOUT: &str = "57P05";
/// `25P03` idle_in_transaction_session_timeout: a client idle inside a transaction longer
/// than `idle_transaction_timeout`.
pub(crate) const IDLE_IN_TRANSACTION_TIMEOUT: &str = "25P03";
/// `25P02` in_failed_sql_transaction: a `DEALLOCATE` pgtenant answers itself, sent inside
/// a failed transaction (PostgreSQL's answer there).
pub(crate) const IN_FAILED_TRANSACTION: &str = "25P02";
/// `F0000` config_file_error: `RELOAD` found an invalid configuration (the old one stays).
pub(crate) const CONFIG_FILE_ERROR: &str = "F0000";
/// `0A000` feature_not_supported: the admin console got an extended-protocol message;
/// `LISTEN` in a transaction-mode pool. Also how pgtenant recognises PostgreSQL's "cached plan
/// must not change result type".
pub(crate) const FEATURE_NOT_SUPPORTED: &str = "0A000";
/// `55000` object_not_in_prerequisite_state: `RESUME` of something not paused or suspended.
pub(crate) const OBJECT_NOT_IN_STATE: &str = "55000";
/// `XX000` internal_error: a bug or an unexpected upstream answer.
pub(crate) const INTERNAL_ERROR: &str = "XX000";

/// What a client is told about an error: its SQLSTATE and a message meant for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientError {
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) detail: Option<String>,
}

impl ClientError {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            detail: None,
        }
    }
}

/// Implemented by every stage error: the allowlist of what a client may see.
pub(crate) trait ClientFacing {
    fn to_client(&self) -> ClientError;
}
