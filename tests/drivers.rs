//! The driver matrix: psycopg 3, asyncpg, node-postgres and pgjdbc, each run as a real client
//! program (`tests/drivers/`) through pgtenant in transaction mode, against two tenants in each
//! placement (database, schema, shared), with more clients than server connections so that
//! prepared statements, pipelines and errors really move between server connections.
//!
//! The drivers are installed by `tests/drivers/install.sh` into `.drivers/` (git-ignored); a
//! missing driver fails its test with a message naming that script.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Tenants and their placements; each tenant's rows are named `<tenant>-...`.
const TENANTS: [(&str, &str); 6] = [
    ("db_one", "database"),
    ("db_two", "database"),
    ("schema_one", "schema"),
    ("schema_two", "schema"),
    ("shared_one", "shared"),
    ("shared_two", "shared"),
];
/// Server connections per tenant pool: well under the clients each script runs per tenant.
const POOL_SIZE: usize = 2;
/// Concurrent clients each script runs per tenant.
const CLIENTS: usize = 6;
/// Longest a driver script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn drivers_dir() -> PathBuf {
    repo().join(".drivers")
}

/// Seed rows of a tenant (the scripts expect exactly these before they write).
fn seed_sql(tenant: &str) -> String {
    format!("INSERT INTO items (name) VALUES ('{tenant}-seed-1'), ('{tenant}-seed-2');")
}

/// `items` for database and schema placement: `tenant_id` defaults to the tenant, as the
/// shared table's default takes it from the tenant context, so every placement answers
/// `SELECT tenant_id, name FROM items` the same way.
fn items_ddl(tenant: &str) -> String {
    format!(
        "CREATE TABLE items (id serial PRIMARY KEY, tenant_id text NOT NULL DEFAULT '{tenant}', name text NOT NULL);"
    )
}

/// Creates the databases of all three placements and starts pgtenant over them.
async fn world(tag: &str) -> pgtenant::server::Proxy {
    let schemas_db = unique(&format!("drv_schemas_{tag}"));
    let shared_db = unique(&format!("drv_shared_{tag}"));
    let mut tenants = String::new();
    let mut schema_setup = String::new();
    for (tenant, placement) in TENANTS {
        let db = match placement {
            "database" => {
                let db = unique(&format!("drv_{tenant}_{tag}"));
                create_db(&db, &format!("{}{}", items_ddl(tenant), seed_sql(tenant)));
                db
            }
            "schema" => {
                schema_setup.push_str(&format!(
                    "CREATE SCHEMA {tenant}; SET search_path = {tenant}; {}{}",
                    items_ddl(tenant),
                    seed_sql(tenant)
                ));
                schemas_db.clone()
            }
            _ => shared_db.clone(),
        };
        tenants.push_str(&tenant_toml(
            tenant,
            placement,
            &db,
            &format!("pool_size = {POOL_SIZE}\npool_mode = \"transaction\""),
        ));
    }
    create_db(&schemas_db, &schema_setup);
    create_shared_db(&shared_db, &[]);
    let mut seeds = String::new();
    for (tenant, _) in TENANTS.iter().filter(|(_, p)| *p == "shared") {
        seeds.push_str(&format!(
            "SET app.current_tenant = '{tenant}'; {}",
            seed_sql(tenant)
        ));
    }
    cluster().psql(&shared_db, &seeds).expect("shared seeds");
    start_proxy(&config_text(&tenants)).await
}

/// A driver's command line, or a failure naming the install script.
fn require(path: &Path, what: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{what} is missing ({}): run tests/drivers/install.sh",
        path.display()
    );
    path.to_owned()
}

/// Runs a driver program against the proxy with the tenant matrix in its environment, bounded
/// by [`SCRIPT_TIMEOUT`]; asserts exit status 0 and the final `ok <driver>` line.
fn run_driver(port: u16, driver: &str, mut cmd: Command) {
    let tenants: Vec<String> = TENANTS.iter().map(|(t, p)| format!("{t}:{p}")).collect();
    cmd.env("PGT_HOST", "127.0.0.1")
        .env("PGT_PORT", port.to_string())
        .env("PGT_PASSWORD", CLIENT_PASSWORD)
        .env("PGT_TENANTS", tenants.join(","))
        .env("PGT_CLIENTS", CLIENTS.to_string())
        .env("PGT_POOL_SIZE", POOL_SIZE.to_string())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!("{driver}: cannot start {cmd:?}: {e}; run tests/drivers/install.sh")
    });
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if started.elapsed() > SCRIPT_TIMEOUT {
            // Our own child, by its pid.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let report = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
    let status = status.unwrap_or_else(|| {
        panic!("{driver}: no result within {SCRIPT_TIMEOUT:?}\n{report}");
    });
    assert!(status.success(), "{driver} failed: {status}\n{report}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("ok {driver} ")),
        "{driver}: last line is not `ok {driver} <checks>`\n{report}"
    );
}

/// Sets up the tenants, starts pgtenant, runs the driver program off the runtime that serves
/// the proxy, and stops the proxy.
async fn drive(driver: &'static str, cmd: Command) {
    let proxy = world(&driver.replace('-', "")).await;
    let port = proxy.addr().port();
    let run = tokio::task::spawn_blocking(move || run_driver(port, driver, cmd)).await;
    proxy.shutdown().await;
    if let Err(e) = run {
        std::panic::resume_unwind(e.into_panic());
    }
}

fn python() -> PathBuf {
    require(
        &drivers_dir().join("venv/bin/python"),
        "the drivers' Python venv",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg3_prepared_and_pipelined() {
    let python = python();
    let mut cmd = Command::new(python);
    cmd.arg(repo().join("tests/drivers/psycopg_check.py"));
    drive("psycopg", cmd).await;
}

/// psycopg's pure-Python implementation over the system's libpq (15 on Debian 12): without
/// libpq 17's protocol Close it evicts statements from its cache (`prepared_max`) with SQL
/// `DEALLOCATE name`, which pgtenant answers for the client's own statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg3_system_libpq_deallocates_with_sql() {
    let python = python();
    let mut cmd = Command::new(python);
    cmd.arg(repo().join("tests/drivers/psycopg_check.py"))
        .env("PSYCOPG_IMPL", "python")
        .env("PGT_SQL_DEALLOCATE", "1");
    drive("psycopg", cmd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_statement_cache_and_executemany() {
    let python = python();
    let mut cmd = Command::new(python);
    cmd.arg(repo().join("tests/drivers/asyncpg_check.py"));
    drive("asyncpg", cmd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres_named_queries() {
    let modules = require(
        &drivers_dir().join("node/node_modules/pg"),
        "node-postgres (pg)",
    );
    let mut cmd = Command::new("node");
    cmd.arg(repo().join("tests/drivers/node_pg_check.js"))
        .env("NODE_PATH", modules.parent().expect("node_modules"));
    drive("node-postgres", cmd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc_prepare_threshold_and_batches() {
    let jar = require(Path::new("/usr/share/java/postgresql.jar"), "pgjdbc");
    let classes = tempfile::tempdir().expect("temp dir");
    let javac = Command::new("javac")
        .arg("-d")
        .arg(classes.path())
        .arg("-cp")
        .arg(&jar)
        .arg(repo().join("tests/drivers/JdbcCheck.java"))
        .output()
        .unwrap_or_else(|e| panic!("javac: {e}; run tests/drivers/install.sh"));
    assert!(
        javac.status.success(),
        "javac JdbcCheck.java: {}",
        String::from_utf8_lossy(&javac.stderr)
    );
    let mut cmd = Command::new("java");
    cmd.arg("-cp")
        .arg(format!("{}:{}", classes.path().display(), jar.display()))
        .arg("JdbcCheck");
    drive("pgjdbc", cmd).await;
}
