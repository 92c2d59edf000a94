//! Throwaway real PostgreSQL clusters for the test suite and `pgtenant demo`: the system's
//! `initdb`/`pg_ctl` on a random loopback port under a temp dir; as root they run as the
//! `postgres` OS user. Never a mock of PostgreSQL.

mod binaries;
mod cluster;

pub use binaries::PgBinaries;
pub use cluster::Cluster;

/// Password of the clusters' `postgres` superuser.
pub const SUPERUSER_PASSWORD: &str = "postgres";

/// A free loopback port (bound, read, released).
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}
