//! `pgtenant demo`: two throwaway shards, demo tenants in all three placements, the proxy on
//! 127.0.0.1:<port>, and a `psql` line per tenant. Ctrl-C stops and removes everything.

use crate::auth::scram::hash_password;
use crate::config::Config;
use crate::server::{Proxy, wait_for_signal};
use crate::testing::{Cluster, PgBinaries, shard_toml};

/// Password of the upstream role `pgtenant` on the demo shards.
const UPSTREAM_PASSWORD: &str = "pgtenant-demo";
/// Password of the demo client user `demo`.
const DEMO_PASSWORD: &str = "demo";

/// (tenant, placement, shard, rows) of the demo.
const TENANTS: [(&str, &str, &str); 7] = [
    ("acme", "database", "a"),
    ("globex", "database", "b"),
    ("initech", "schema", "a"),
    ("umbrella", "schema", "a"),
    ("hooli", "shared", "b"),
    ("piedpiper", "shared", "b"),
    ("stark", "shared", "b"),
];

/// The shared-placement tenant whose rows are keyed on a UUID, not on its name.
const STARK_CONTEXT: &str = "5f0c6a1e-8d4b-4f53-9a57-3c1d2e7b9a10";

fn context(tenant: &str) -> &str {
    if tenant == "stark" {
        STARK_CONTEXT
    } else {
        tenant
    }
}

/// SQL that loads the demo data into the two shards.
pub fn load(a: &Cluster, b: &Cluster) -> Result<(), String> {
    for c in [a, b] {
        c.psql(
            "postgres",
            &format!(
                "CREATE ROLE pgtenant LOGIN PASSWORD '{UPSTREAM_PASSWORD}' NOSUPERUSER NOBYPASSRLS"
            ),
        )?;
    }
    for (tenant, placement, shard) in TENANTS {
        let c = if shard == "a" { a } else { b };
        if placement == "database" {
            c.psql(
                "postgres",
                &format!("CREATE DATABASE erp_{tenant} OWNER pgtenant"),
            )?;
            c.psql(
                &format!("erp_{tenant}"),
                &format!(
                    "SET ROLE pgtenant; CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL);
                     INSERT INTO items (name) VALUES ('{tenant} widget'), ('{tenant} gadget');"
                ),
            )?;
        }
    }
    a.psql("postgres", "CREATE DATABASE schemas OWNER pgtenant")?;
    for (tenant, placement, _) in TENANTS {
        if placement == "schema" {
            a.psql(
                "schemas",
                &format!(
                    "SET ROLE pgtenant; CREATE SCHEMA {tenant};
                     CREATE TABLE {tenant}.items (id serial PRIMARY KEY, name text NOT NULL);
                     INSERT INTO {tenant}.items (name) VALUES ('{tenant} widget'), ('{tenant} gadget');"
                ),
            )?;
        }
    }
    b.psql("postgres", "CREATE DATABASE shared")?;
    b.psql("shared", &crate::testing::shared_items_ddl("pgtenant"))?;
    for (tenant, placement, _) in TENANTS {
        if placement == "shared" {
            let ctx = context(tenant);
            b.psql(
                "shared",
                &format!(
                    "INSERT INTO items (tenant_id, name) VALUES ('{ctx}', '{tenant} widget'), ('{ctx}', '{tenant} gadget');"
                ),
            )?;
        }
    }
    Ok(())
}

/// The demo configuration for shards on ports `a` and `b`.
pub fn config_toml(listen: &str, a: u16, b: u16, demo_verifier: &str) -> String {
    let shard_a = shard_toml("a", a, "pgtenant", UPSTREAM_PASSWORD);
    let shard_b = shard_toml("b", b, "pgtenant", UPSTREAM_PASSWORD);
    let mut t = format!(
        r#"[server]
listen = "{listen}"

[pool]
mode = "transaction"
default_pool_size = 5

[tenancy]
resolve = ["options", "user", "database"]

{shard_a}
{shard_b}
[users.demo]
password = "{demo_verifier}"
tenants = ["*"]
"#
    );
    for (tenant, placement, shard) in TENANTS {
        t.push_str(&format!(
            "\n[tenants.{tenant}]\nplacement = \"{placement}\"\nshard = \"{shard}\"\n"
        ));
        match placement {
            "database" => t.push_str("database = \"erp_{tenant}\"\n"),
            "schema" => t.push_str("database = \"schemas\"\nschema = \"{name}\"\n"),
            _ => t.push_str("database = \"shared\"\n"),
        }
        if tenant == "stark" {
            t.push_str(&format!("context = \"{STARK_CONTEXT}\"\n"));
        }
    }
    t
}

pub async fn run(port: u16) -> Result<(), String> {
    let bins = PgBinaries::find()?;
    eprintln!(
        "pgtenant demo: starting two PostgreSQL clusters from {}",
        bins.bin_dir.display()
    );
    let (a, b) = tokio::task::spawn_blocking(move || -> Result<(Cluster, Cluster), String> {
        let a = Cluster::start(&bins, "demo-a")?;
        let b = Cluster::start(&bins, "demo-b")?;
        load(&a, &b)?;
        Ok((a, b))
    })
    .await
    .map_err(|e| e.to_string())??;
    let listen = format!("127.0.0.1:{port}");
    let toml = config_toml(&listen, a.port(), b.port(), &hash_password(DEMO_PASSWORD));
    let config = Config::from_toml_str(&toml).map_err(|e| e.to_string())?;
    let proxy = Proxy::start(config).await.map_err(|e| e.to_string())?;
    println!(
        "\npgtenant is listening on {listen} (shards on ports {} and {}).",
        a.port(),
        b.port()
    );
    println!("Each line shows one tenant's rows and no one else's (password: {DEMO_PASSWORD}):\n");
    for (tenant, placement, shard) in TENANTS {
        println!(
            "  # {tenant}: {placement} placement on shard {shard}\n  PGPASSWORD={DEMO_PASSWORD} psql \"host=127.0.0.1 port={port} user=demo.{tenant} dbname={tenant}\" -c 'SELECT * FROM items'\n"
        );
    }
    println!(
        "Tenant in options instead of user:\n  PGPASSWORD={DEMO_PASSWORD} psql \"host=127.0.0.1 port={port} user=demo options='-c tenant=hooli'\" -c 'SELECT * FROM items'\n"
    );
    println!("The configuration used:\n\n{toml}");
    println!("Press Ctrl-C to stop; the clusters and their data are removed.");
    wait_for_signal().await;
    eprintln!("pgtenant demo: stopping");
    proxy.shutdown().await;
    drop((a, b));
    Ok(())
}
