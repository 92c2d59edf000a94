//! Shared helpers for the integration tests: one real PostgreSQL cluster per test binary, one
//! database per test, the proxy started in-process, and client helpers.
#![allow(dead_code)]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use pgtenant::config::Config;
use pgtenant::server::Proxy;
use pgtenant::testing::{Cluster, PgBinaries};
use tokio_postgres::{Client, NoTls};

/// Password of the upstream role `pgtenant` on the test cluster.
pub const UPSTREAM_PASSWORD: &str = "upstream-pw";
/// Password of every client test user.
pub const CLIENT_PASSWORD: &str = "client-pw";

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static VERIFIER: OnceLock<String> = OnceLock::new();
static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The test binary's cluster, started on first use, with roles `pgtenant` (SCRAM) and
/// `pgtenant_md5` (md5 password).
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let bins = PgBinaries::find().expect("PostgreSQL binaries");
        let c = Cluster::start(&bins, "test").expect("cluster starts");
        c.psql(
            "postgres",
            &format!(
                "SET password_encryption = 'scram-sha-256';
                 CREATE ROLE pgtenant LOGIN NOSUPERUSER NOBYPASSRLS CREATEDB PASSWORD '{UPSTREAM_PASSWORD}';
                 SET password_encryption = 'md5';
                 CREATE ROLE pgtenant_md5 LOGIN NOSUPERUSER PASSWORD '{UPSTREAM_PASSWORD}';"
            ),
        )
        .expect("roles");
        // initdb --auth-host=md5 makes md5 the cluster's default password encryption.
        assert!(
            c.psql("postgres", "SELECT rolpassword FROM pg_authid WHERE rolname = 'pgtenant'")
                .expect("verifier")
                .starts_with("SCRAM-SHA-256$"),
            "role pgtenant must log in with SCRAM"
        );
        c
    })
}

pub fn verifier() -> &'static str {
    VERIFIER.get_or_init(|| pgtenant::hash_password(CLIENT_PASSWORD))
}

/// A fresh, unique name for a test database.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates database `db` owned by `pgtenant` and runs `setup` in it as `pgtenant`.
pub fn create_db(db: &str, setup: &str) {
    let c = cluster();
    c.psql("postgres", &format!("CREATE DATABASE {db} OWNER pgtenant"))
        .expect("create database");
    if !setup.is_empty() {
        c.psql(db, &format!("SET ROLE pgtenant; {setup}"))
            .expect("setup sql");
    }
}

/// Creates a shared database with an `items` table under FORCEd RLS on `app.current_tenant`.
pub fn create_shared_db(db: &str, rows: &[(&str, &str)]) {
    let c = cluster();
    c.psql("postgres", &format!("CREATE DATABASE {db}"))
        .expect("create database");
    let mut sql = pgtenant::testing::shared_items_ddl("pgtenant, pgtenant_md5");
    for (tenant, name) in rows {
        sql.push_str(&format!(
            "INSERT INTO items (tenant_id, name) VALUES ('{tenant}', '{name}');"
        ));
    }
    c.psql(db, &sql).expect("shared setup");
}

/// The `[shards.main]` + `[users.app]` part of a config; `extra` adds sections.
pub fn config_text(extra: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"

[pool]
default_pool_size = 5
query_wait_timeout = 10

{shard}
[users.app]
password = "{verifier}"

{extra}"#,
        shard =
            pgtenant::testing::shard_toml("main", cluster().port(), "pgtenant", UPSTREAM_PASSWORD),
        verifier = verifier(),
    )
}

/// A `[tenants.NAME]` section on shard `main`; `extra` adds lines such as `pool_size = 1`.
pub fn tenant_toml(name: &str, placement: &str, db: &str, extra: &str) -> String {
    format!(
        "[tenants.{name}]\nplacement = \"{placement}\"\nshard = \"main\"\ndatabase = \"{db}\"\n{extra}\n"
    )
}

pub async fn start_proxy(toml: &str) -> Proxy {
    let toml = with_free_metrics_port(toml);
    let config = Config::from_toml_str(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    Proxy::start(config).await.expect("proxy starts")
}

/// Tests run many proxies at once: each serves `/metrics` on a free port unless the test
/// says where.
pub fn with_free_metrics_port(toml: &str) -> String {
    let mut doc: toml::Table = toml.parse().unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let server = doc
        .entry("server")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(server) = server {
        server
            .entry("metrics_addr")
            .or_insert_with(|| toml::Value::String("127.0.0.1:0".into()));
    }
    doc.to_string()
}

/// A tokio-postgres client config for the proxy.
pub fn client_config(proxy: &Proxy, user: &str, dbname: &str) -> tokio_postgres::Config {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(proxy.addr().port())
        .user(user)
        .password(CLIENT_PASSWORD)
        .dbname(dbname);
    cfg
}

/// Connects through the proxy; the connection task runs in the background.
pub async fn connect(proxy: &Proxy, user: &str, dbname: &str) -> Client {
    try_connect(client_config(proxy, user, dbname))
        .await
        .unwrap_or_else(|e| panic!("connect as {user}/{dbname}: {e:?}"))
}

pub async fn try_connect(cfg: tokio_postgres::Config) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = cfg.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Connects through the proxy and hands back the connection task, whose result carries a
/// FATAL error the proxy sends while the client is idle (shutdown, KILL, idle timeouts).
pub async fn connect_watched(
    proxy: &Proxy,
    user: &str,
    dbname: &str,
) -> (
    Client,
    tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
) {
    let (client, conn) = client_config(proxy, user, dbname)
        .connect(NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect as {user}/{dbname}: {e:?}"));
    (client, tokio::spawn(conn))
}

/// The SQLSTATE a watched connection ended with (see [`connect_watched`]), waiting up to
/// `secs` seconds for it to end.
pub async fn ended_with(
    conn: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
    secs: u64,
) -> String {
    match tokio::time::timeout(std::time::Duration::from_secs(secs), conn).await {
        Err(_) => "still open".to_owned(),
        Ok(Err(e)) => format!("task failed: {e}"),
        Ok(Ok(Ok(()))) => "closed without error".to_owned(),
        Ok(Ok(Err(e))) => sqlstate(&e),
    }
}

/// `GET /metrics` on the proxy's metrics address: the exposition text.
pub async fn scrape(proxy: &Proxy) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = proxy.metrics_addr().expect("metrics served");
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("metrics port");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: pgtenant\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("response");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// The value of the sample `name{labels}` (labels in any order, all given ones must match),
/// summed over samples that match; 0 if none.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let (n, rest) = match key.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (key, ""),
            };
            if n != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| rest.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
            all.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// Runs `psql` on a blocking thread (for commands that wait, such as `PAUSE`).
pub fn psql_async(
    proxy: &Proxy,
    conninfo: &str,
    sql: &str,
) -> impl std::future::Future<Output = (bool, String, String)> + 'static {
    let (port, conninfo, sql) = (proxy.addr().port(), conninfo.to_owned(), sql.to_owned());
    let task = tokio::task::spawn_blocking(move || psql_port(port, &conninfo, &sql));
    async move { task.await.expect("psql thread") }
}

/// The SQLSTATE of a failed connect or query.
pub fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_owned())
        .unwrap_or_else(|| format!("no sqlstate: {e}"))
}

/// Runs pgbench with `args` against `port`; returns (success, stdout and stderr).
pub fn pgbench(args: &[&str], port: u16, user: &str, db: &str, password: &str) -> (bool, String) {
    let out = std::process::Command::new("pgbench")
        .args(args)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", user, db])
        .env("PGPASSWORD", password)
        .output()
        .expect("pgbench runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs `psql` against the proxy; returns (success, stdout, stderr).
pub fn psql(proxy: &Proxy, conninfo: &str, sql: &str) -> (bool, String, String) {
    psql_port(proxy.addr().port(), conninfo, sql)
}

fn psql_port(port: u16, conninfo: &str, sql: &str) -> (bool, String, String) {
    let out = std::process::Command::new("psql")
        .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
        .arg(format!("host=127.0.0.1 port={port} {conninfo}"))
        .arg("-c")
        .arg(sql)
        .env("PGPASSWORD", CLIENT_PASSWORD)
        .output()
        .expect("psql runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

/// Rows of `SELECT name FROM items ORDER BY name` as strings.
pub async fn item_names(client: &Client) -> Vec<String> {
    client
        .query("SELECT name FROM items ORDER BY name", &[])
        .await
        .expect("select items")
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

/// Appends a fast-path FunctionCall message: `set_config(name, value, false)` (function oid
/// 2078), text arguments, text result.
pub fn set_config_call(out: &mut bytes::BytesMut, name: &str, value: &str) {
    use bytes::BufMut;
    let args: [&[u8]; 3] = [name.as_bytes(), value.as_bytes(), b"false"];
    let mut body = bytes::BytesMut::new();
    body.put_i32(2078); // set_config(text, text, boolean)
    body.put_i16(0);
    body.put_i16(3);
    for arg in args {
        body.put_i32(arg.len() as i32);
        body.put_slice(arg);
    }
    body.put_i16(0);
    out.put_u8(b'F');
    out.put_i32(4 + body.len() as i32);
    out.put_slice(&body);
}

/// Reads one backend message from a raw stream.
pub async fn read_msg<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut bytes::BytesMut,
) -> postgres_protocol::message::backend::Message {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(m) =
            postgres_protocol::message::backend::Message::parse(buf).expect("valid message")
        {
            return m;
        }
        let n = s.read_buf(buf).await.expect("read");
        assert!(n > 0, "connection closed");
    }
}

/// Logs in over a raw stream with SCRAM (CLIENT_PASSWORD), up to the first ReadyForQuery;
/// returns the BackendKeyData (process id, secret key).
pub async fn raw_login<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    buf: &mut bytes::BytesMut,
    user: &str,
    database: Option<&str>,
) -> (i32, i32) {
    use postgres_protocol::message::frontend;
    use tokio::io::AsyncWriteExt;
    let mut out = bytes::BytesMut::new();
    let mut params = vec![("user", user)];
    if let Some(db) = database {
        params.push(("database", db));
    }
    frontend::startup_message(params, &mut out).expect("startup");
    s.write_all(&out).await.expect("write");
    raw_login_after_startup(s, buf).await
}

/// The rest of [`raw_login`] once the startup packet is sent: SCRAM with CLIENT_PASSWORD, up to
/// the first ReadyForQuery; returns the BackendKeyData (process id, secret key).
pub async fn raw_login_after_startup<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    buf: &mut bytes::BytesMut,
) -> (i32, i32) {
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    use postgres_protocol::message::{backend::Message, frontend};
    use tokio::io::AsyncWriteExt;
    let mut out = bytes::BytesMut::new();
    let Message::AuthenticationSasl(_) = read_msg(s, buf).await else {
        panic!("expected SASL");
    };
    let mut scram = ScramSha256::new(CLIENT_PASSWORD.as_bytes(), ChannelBinding::unsupported());
    out.clear();
    frontend::sasl_initial_response("SCRAM-SHA-256", scram.message(), &mut out).expect("sasl");
    s.write_all(&out).await.expect("write");
    let Message::AuthenticationSaslContinue(body) = read_msg(s, buf).await else {
        panic!("expected SASL continue");
    };
    scram.update(body.data()).expect("server-first");
    out.clear();
    frontend::sasl_response(scram.message(), &mut out).expect("sasl");
    s.write_all(&out).await.expect("write");
    let Message::AuthenticationSaslFinal(body) = read_msg(s, buf).await else {
        panic!("expected SASL final");
    };
    scram.finish(body.data()).expect("server signature");
    let Message::AuthenticationOk = read_msg(s, buf).await else {
        panic!("expected AuthenticationOk");
    };
    let mut key = None;
    loop {
        match read_msg(s, buf).await {
            Message::BackendKeyData(k) => key = Some((k.process_id(), k.secret_key())),
            Message::ReadyForQuery(_) => break,
            _ => {}
        }
    }
    key.expect("BackendKeyData before ReadyForQuery")
}

/// Applies a script with `psql -f` as the superuser; `key` becomes `-v pgtenant_key=`.
pub fn apply_script(db: &str, sql: &str, key: Option<&str>) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("rls.sql");
    std::fs::write(&file, sql).expect("write script");
    let mut cmd = std::process::Command::new("psql");
    cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", "127.0.0.1", "-p", &cluster().port().to_string()])
        .args(["-U", "postgres", "-d", db])
        .env("PGPASSWORD", pgtenant::testing::SUPERUSER_PASSWORD);
    if let Some(k) = key {
        cmd.arg("-v").arg(format!("pgtenant_key={k}"));
    }
    let out = cmd.arg("-f").arg(&file).output().expect("psql runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Runs `pgtenant rls` with `args` and returns the SQL it prints.
pub fn rls_sql(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgtenant"))
        .arg("rls")
        .args(args)
        .output()
        .expect("pgtenant rls runs");
    assert!(
        out.status.success(),
        "rls {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every row of `items` in `db` was written by its own tenant: its name starts with the
/// `tenant_id` the row carries (read as the superuser, past row-level security).
pub fn assert_every_row_carries_its_writers_tenant(db: &str) {
    let bad = cluster()
        .psql(
            db,
            "SELECT count(*) FROM items WHERE name NOT LIKE tenant_id || '-%'",
        )
        .expect("check");
    assert_eq!(bad, "0", "rows in {db} carry another tenant's id");
}
