//! Throwaway real PostgreSQL clusters for the test suite and `pgtenant demo`: the system's
//! `initdb`/`pg_ctl` on a random loopback port under a temp dir; as root they run as the
//! `postgres` OS user. Never a mock of PostgreSQL.

mod binaries;
mod cluster;

pub use binaries::PgBinaries;
pub use cluster::Cluster;

/// Password of the clusters' `postgres` superuser.
pub const SUPERUSER_PASSWORD: &str = "postgres";

/// DDL for a shared-placement table `items` whose rows carry `tenant_id`, filtered by forced
/// row-level security on `current_setting('app.current_tenant')`; `{roles}` get DML rights.
pub fn shared_items_ddl(roles: &str) -> String {
    format!(
        "CREATE TABLE items (id serial PRIMARY KEY,
                             tenant_id text NOT NULL DEFAULT current_setting('app.current_tenant'),
                             name text NOT NULL);
         ALTER TABLE items ENABLE ROW LEVEL SECURITY;
         ALTER TABLE items FORCE ROW LEVEL SECURITY;
         CREATE POLICY tenant_isolation ON items
           USING (tenant_id = current_setting('app.current_tenant', true))
           WITH CHECK (tenant_id = current_setting('app.current_tenant', true));
         GRANT SELECT, INSERT, UPDATE, DELETE ON items TO {roles};
         GRANT USAGE ON SEQUENCE items_id_seq TO {roles};"
    )
}

/// A `[shards.NAME]` config section for a loopback cluster.
pub fn shard_toml(name: &str, port: u16, user: &str, password: &str) -> String {
    format!(
        "[shards.{name}]\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"{user}\"\npassword = \"{password}\"\n"
    )
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}
