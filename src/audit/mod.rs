//! The two audit aids that ship with the binary (DESIGN §4): `pgtenant rls` prints the SQL that
//! makes a table tenant-safe under shared placement, `pgtenant check` connects to the shards
//! and reports what is not.
//!
//! Nothing here runs in the proxy: the audit reads the validated config and talks to PostgreSQL
//! with an ordinary client.

pub mod check;
mod ident;
mod plan;
pub mod rls;
