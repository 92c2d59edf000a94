//! One authenticated server connection and what pgtenant knows about its session state.

use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpStream;

/// Where to send a CancelRequest for this server connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CancelTarget {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) pid: i32,
    pub(crate) secret: Vec<u8>,
}

/// What the previous user of a server connection may have left on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionState {
    /// Fresh, or reset since.
    Clean,
    /// Used by this tenant; others need a reset first.
    UsedBy(Arc<str>),
}

#[derive(Debug)]
pub(crate) struct ServerConn {
    pub(crate) stream: TcpStream,
    /// Shared so that recording "who serves this client now" costs no allocation.
    pub(crate) cancel: Arc<CancelTarget>,
    pub(crate) created: Instant,
    pub(crate) last_used: Instant,
    pub(crate) state: SessionState,
    /// Set when a session-mode client left: reset before anyone's next use.
    pub(crate) needs_reset: bool,
    /// Names of the statements pgtenant prepared on this connection (content-addressed).
    pub(crate) prepared: super::statements::ServerStatements,
    /// The tenant setup statement in force on this connection, if pgtenant can trust it still.
    pub(crate) context: Option<Arc<str>>,
    /// Whose session parameters are in force (`relay::params`: a client's key, or UNKNOWN).
    pub(crate) params_key: u64,
    /// A client ran something that may have dropped statements (`DISCARD`/`DEALLOCATE`): the
    /// server may still hold statements not in `prepared` (so pgtenant Closes a name before it
    /// Parses it again) until the next reset (`DEALLOCATE ALL`) makes `prepared` exact again.
    pub(crate) prepared_unknown: bool,
    /// A client may have left session state (settings, temp objects, held cursors...):
    /// `DISCARD ALL` before another tenant. Always set by unguarded sessions.
    pub(crate) dirty_session: bool,
    /// A client may have used sequences: `DISCARD SEQUENCES` before another tenant.
    pub(crate) dirty_sequences: bool,
}
