//! Pure PostgreSQL wire-protocol codec: no I/O, no config, no tenants.
//!
//! - [`header`]: the 5-byte message header the relay reads (and nothing more).
//! - [`startup`]: the untyped first packets (SSLRequest, CancelRequest, StartupMessage).
//! - [`messages`]: the few backend and frontend messages pgtenant generates itself.
//!
//! See <https://www.postgresql.org/docs/current/protocol-message-formats.html>.

pub(crate) mod header;
pub(crate) mod messages;
pub(crate) mod startup;

#[cfg(test)]
mod tests;
