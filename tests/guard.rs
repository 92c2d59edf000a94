//! The shared-placement guard under attack (DESIGN §4): tenant `alpha` tries every way we know
//! to read or change tenant `beta`'s rows. Each attack must be refused (42501 from pgtenant) or
//! harmless, and after each one beta's rows, the table's row-level security and the schema are
//! exactly as before, and alpha's session still sees only alpha's rows.
//!
//! The upstream role owns the table (FORCEd RLS still applies to it), so DDL such as
//! `ALTER TABLE items DISABLE ROW LEVEL SECURITY` would succeed if it were forwarded: only
//! the guard stands in the way. `attacks_succeed_without_the_guard` shows the attacks are real.

mod common;

use std::sync::Arc;

use common::*;
use futures_util::future::join_all;
use pgtenant::server::Proxy;
use tokio_postgres::{Client, SimpleQueryMessage};

const ALPHA_ROWS: [&str; 2] = ["alpha-1", "alpha-2"];

/// A shared database owned by the upstream role, rows for alpha and beta (beta's are secret).
fn shared_db() -> String {
    let db = unique("guard");
    create_db(&db, &pgtenant::testing::shared_items_ddl("pgtenant"));
    cluster()
        .psql(
            &db,
            "INSERT INTO items (tenant_id, name) VALUES
               ('alpha', 'alpha-1'), ('alpha', 'alpha-2'),
               ('beta', 'beta-secret-1'), ('beta', 'beta-secret-2');",
        )
        .expect("rows");
    db
}

fn config(db: &str, tenants: &[&str], pool_size: usize, extra_tenancy: &str) -> String {
    let mut extra = String::new();
    for t in tenants {
        extra.push_str(&tenant_toml(
            t,
            "shared",
            db,
            &format!("pool_size = {pool_size}"),
        ));
    }
    format!(
        "[tenancy]\n{extra_tenancy}\n{}",
        config_text(&extra).replace(
            "listen = \"127.0.0.1:0\"",
            "listen = \"127.0.0.1:0\"\nmax_client_conn = 400"
        )
    )
}

/// Everything an attack could have changed, read as the superuser (which bypasses RLS).
fn fingerprint(db: &str) -> String {
    cluster()
        .psql(
            db,
            "SELECT (SELECT string_agg(tenant_id || ':' || name, ',' ORDER BY id) FROM items)
               || ' | rls=' || (SELECT relrowsecurity::text || relforcerowsecurity::text
                                FROM pg_class WHERE relname = 'items')
               || ' | policies=' || (SELECT string_agg(policyname || ':' || coalesce(qual, ''), ',')
                                     FROM pg_policies)
               || ' | objects=' || (SELECT count(*) FROM pg_class c JOIN pg_namespace n
                                      ON n.oid = c.relnamespace WHERE n.nspname = 'public')
               || ' | functions=' || (SELECT count(*) FROM pg_proc p JOIN pg_namespace n
                                        ON n.oid = p.pronamespace WHERE n.nspname = 'public')
               || ' | role_settings=' || (SELECT count(*) FROM pg_db_role_setting)",
        )
        .expect("fingerprint")
}

/// All values of all rows a simple query returned, or its error as "SQLSTATE: message".
async fn run(client: &Client, sql: &str) -> Result<Vec<String>, (String, String)> {
    match client.simple_query(sql).await {
        Ok(msgs) => Ok(msgs
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(
                    (0..r.len())
                        .filter_map(|i| r.get(i).map(str::to_owned))
                        .collect::<Vec<_>>()
                        .join("|"),
                ),
                _ => None,
            })
            .collect()),
        Err(e) => {
            let msg = e
                .as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned());
            Err((sqlstate(&e), msg))
        }
    }
}

async fn names(client: &Client) -> Vec<String> {
    run(client, "SELECT name FROM items ORDER BY name")
        .await
        .expect("select")
}

/// What an attack must end in.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// pgtenant refuses it (42501, message from pgtenant).
    Refused,
    /// PostgreSQL itself stops it or it has no effect; either way no foreign row is seen.
    Harmless,
    /// Not SQL: a syntax error (42601) from PostgreSQL's parser in pgtenant, not forwarded.
    Syntax,
}

/// Runs the attacks one by one as alpha and checks the outcome and the aftermath of each.
async fn assert_attacks(proxy: &Proxy, db: &str, attacks: &[(&str, Expect)]) {
    let before = fingerprint(db);
    let alpha = connect(proxy, "app.alpha", "alpha").await;
    for (sql, expect) in attacks {
        let result = run(&alpha, sql).await;
        match (&result, expect) {
            (Err((code, msg)), Expect::Refused) => {
                assert_eq!(code, "42501", "{sql}: {msg}");
                assert!(msg.contains("pgtenant refused"), "{sql}: {msg}");
            }
            (Err((code, msg)), Expect::Syntax) => assert_eq!(code, "42601", "{sql}: {msg}"),
            (Ok(rows), Expect::Refused | Expect::Syntax) => {
                panic!("{sql}: not refused, returned {rows:?}")
            }
            (Ok(rows), Expect::Harmless) => {
                assert!(
                    rows.iter().all(|r| !r.contains("beta")),
                    "{sql}: returned {rows:?}"
                );
            }
            (Err((_, msg)), Expect::Harmless) => {
                assert!(!msg.contains("beta-secret"), "{sql}: {msg}");
            }
        }
        let _ = alpha.simple_query("ROLLBACK").await;
        assert_eq!(names(&alpha).await, ALPHA_ROWS, "alpha's view after {sql}");
        let fresh = connect(proxy, "app.alpha", "alpha").await;
        assert_eq!(
            names(&fresh).await,
            ALPHA_ROWS,
            "a new alpha client after {sql}"
        );
        assert_eq!(fingerprint(db), before, "database changed by {sql}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_context_cannot_be_changed_by_sql() {
    use Expect::*;
    let db = shared_db();
    let proxy = start_proxy(&config(&db, &["alpha", "beta"], 1, "")).await;
    let attacks = [
        (
            "SET app.current_tenant = 'beta'; SELECT name FROM items",
            Refused,
        ),
        ("SET SESSION app.current_tenant = 'beta'", Refused),
        (
            "BEGIN; SET LOCAL app.current_tenant = 'beta'; SELECT name FROM items",
            Refused,
        ),
        ("RESET app.current_tenant", Refused),
        ("SET app.current_tenant TO DEFAULT", Refused),
        ("RESET ALL; SELECT name FROM items", Refused),
        ("DISCARD ALL; SELECT name FROM items", Refused),
        (
            "SELECT set_config('app.current_tenant', 'beta', false)",
            Refused,
        ),
        (
            "SELECT name FROM items WHERE set_config('app.current_tenant', 'beta', true) <> ''",
            Refused,
        ),
        (
            "SELECT s.v FROM items, LATERAL (SELECT set_config('app.current_tenant', 'beta', true) v) s",
            Refused,
        ),
        (
            "WITH c AS (SELECT set_config('app.current_tenant', 'beta', true)) SELECT name FROM c, items",
            Refused,
        ),
        (
            "SELECT length(set_config('app.current_tenant', 'beta', false))",
            Refused,
        ),
        (
            "SELECT (SELECT set_config('app.current_tenant', 'beta', false)), name FROM items",
            Refused,
        ),
        ("SET \"APP\".\"CURRENT_TENANT\" = 'beta'", Refused),
        ("SET U&\"app\\002ecurrent_tenant\" = 'beta'", Refused),
        (
            "SELECT set_config('APP.Current_Tenant', 'beta', false)",
            Refused,
        ),
        (
            "SELECT set_config(E'app\\x2ecurrent_tenant', 'beta', false)",
            Refused,
        ),
        (
            "SELECT set_config('app.' || 'current_tenant', 'beta', false)",
            Refused,
        ),
        (
            "SELECT pg_catalog.set_config('app.current_tenant'::text, 'beta'::text, false)",
            Refused,
        ),
        (
            "SELECT set_config(setting_name => 'app.current_tenant', new_value => 'beta', is_local => false)",
            Refused,
        ),
        ("SET app.current_tenant = $$beta$$", Refused),
        ("SELECT 1 /* ; */; SET app.current_tenant = 'beta'", Refused),
        (
            "SELECT * FROM set_config('app.current_tenant', 'beta', false)",
            Refused,
        ),
        (
            "COPY (SELECT set_config('app.current_tenant', 'beta', false)) TO STDOUT",
            Refused,
        ),
        (
            "EXPLAIN ANALYZE SELECT set_config('app.current_tenant', 'beta', false)",
            Refused,
        ),
        (
            "PREPARE p(text) AS SELECT set_config('app.current_tenant', $1, false); EXECUTE p('beta')",
            Refused,
        ),
        (
            "SELECT query_to_xml('SELECT set_config(''app.current_tenant'', ''beta'', false)', true, false, '')",
            Refused,
        ),
        ("SET app.current_tenant_sig = 'forged'", Refused),
    ];
    assert_attacks(&proxy, &db, &attacks).await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_the_guard_cannot_see_into_is_refused() {
    use Expect::*;
    let db = shared_db();
    let proxy = start_proxy(&config(&db, &["alpha", "beta"], 1, "")).await;
    let attacks = [
        (
            "DO $$ BEGIN PERFORM set_config('app.current_tenant', 'beta', false); END $$",
            Refused,
        ),
        (
            "DO $$ BEGIN SET app.current_tenant = 'beta'; END $$",
            Refused,
        ),
        (
            "DO $$ DECLARE t text := 'beta'; BEGIN PERFORM set_config('app.current_tenant', t, false); END $$",
            Refused,
        ),
        (
            "DO $$ BEGIN EXECUTE 'SET app.current_tenant = ''beta'''; END $$",
            Refused,
        ),
        (
            "DO $$ BEGIN EXECUTE format('SET %I = %L', 'app.current_tenant', 'beta'); END $$",
            Refused,
        ),
        (
            "DO $$ DECLARE r record; BEGIN FOR r IN EXECUTE 'SELECT 1' LOOP END LOOP; END $$",
            Refused,
        ),
        (
            "DO LANGUAGE plpython3u $$ plpy.execute('SET app.current_tenant = beta') $$",
            Refused,
        ),
        (
            "CREATE FUNCTION evil() RETURNS text LANGUAGE sql AS $$ SELECT set_config('app.current_tenant', 'beta', false) $$",
            Refused,
        ),
        (
            "CREATE FUNCTION evil2() RETURNS text LANGUAGE sql SECURITY DEFINER AS $$ SELECT name FROM items $$",
            Refused,
        ),
        (
            "CREATE VIEW leak AS SELECT set_config('app.current_tenant', 'beta', false), name FROM items",
            Refused,
        ),
        (
            "ALTER FUNCTION current_setting(text) SET app.current_tenant = 'beta'",
            Refused,
        ),
        (
            "CREATE RULE r AS ON SELECT TO items DO INSTEAD SELECT * FROM items",
            Refused,
        ),
        (
            "CREATE TRIGGER t BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()",
            Refused,
        ),
    ];
    assert_attacks(&proxy, &db, &attacks).await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_level_security_and_role_cannot_be_dodged() {
    use Expect::*;
    let db = shared_db();
    let proxy = start_proxy(&config(&db, &["alpha", "beta"], 1, "")).await;
    let attacks = [
        ("SET ROLE postgres", Refused),
        ("SET SESSION AUTHORIZATION postgres", Refused),
        ("SELECT set_config('role', 'postgres', false)", Refused),
        ("RESET ROLE", Refused),
        ("SET row_security = off", Refused),
        ("SET standard_conforming_strings = off", Refused),
        ("SET client_encoding = 'SJIS'", Refused),
        ("ALTER TABLE items DISABLE ROW LEVEL SECURITY", Refused),
        ("ALTER TABLE items NO FORCE ROW LEVEL SECURITY", Refused),
        ("CREATE POLICY open ON items USING (true)", Refused),
        ("DROP POLICY tenant_isolation ON items", Refused),
        (
            "ALTER POLICY tenant_isolation ON items USING (true)",
            Refused,
        ),
        (
            "ALTER ROLE CURRENT_USER SET app.current_tenant = 'beta'",
            Refused,
        ),
        (
            "ALTER DATABASE CURRENT SET app.current_tenant = 'beta'",
            Refused,
        ),
        ("TRUNCATE items", Refused),
        ("DROP TABLE items", Refused),
        ("GRANT SELECT ON items TO PUBLIC", Refused),
        ("CREATE TABLE loot AS SELECT * FROM items", Refused),
        ("SELECT * INTO loot FROM items", Refused),
        ("SELECT query FROM pg_stat_activity", Refused),
        (
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
            Refused,
        ),
        ("SELECT lo_create(0)", Refused),
        ("LISTEN beta_events", Refused),
        ("PREPARE TRANSACTION 'x'", Refused),
        ("EXECUTE pgt_0123456789abcdef01234567('beta')", Refused),
        ("DEALLOCATE pgt_0123456789abcdef01234567", Refused),
        ("COPY items TO '/tmp/pgtenant-loot'", Refused),
        (
            "INSERT INTO items (tenant_id, name) VALUES ('beta', 'planted')",
            Harmless,
        ),
        (
            "UPDATE items SET tenant_id = 'beta' WHERE name = 'alpha-1'",
            Harmless,
        ),
        (
            "UPDATE items SET name = 'overwritten' WHERE tenant_id = 'beta'",
            Harmless,
        ),
        ("DELETE FROM items WHERE tenant_id = 'beta'", Harmless),
        ("SELECT name FROM items WHERE tenant_id = 'beta'", Harmless),
        (
            "SELECT count(*) FROM items WHERE name LIKE 'beta%'",
            Harmless,
        ),
        (
            "CREATE TEMP TABLE items AS SELECT 'beta' AS tenant_id, 'fake' AS name; DROP TABLE pg_temp.items",
            Harmless,
        ),
        (
            "SELECT query_to_xml('SELECT name FROM items', true, false, '')",
            Harmless,
        ),
        ("SELEC name FROM items", Syntax),
    ];
    assert_attacks(&proxy, &db, &attacks).await;
    proxy.shutdown().await;
}

/// The extended protocol: the parameter a client gives `set_config` for the tenant GUC is
/// checked at Bind; statements are checked at Parse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_attacks_are_refused() {
    let db = shared_db();
    let proxy = start_proxy(&config(&db, &["alpha", "beta"], 1, "")).await;
    let before = fingerprint(&db);
    let alpha = connect(&proxy, "app.alpha", "alpha").await;
    // The application pattern from seed 000: its own id as a parameter works.
    let own = alpha
        .query(
            "SELECT set_config('app.current_tenant', $1, true)",
            &[&"alpha"],
        )
        .await
        .expect("own tenant as a parameter");
    assert_eq!(own.len(), 1);
    let attempts: [(&str, &str); 4] = [
        ("SELECT set_config('app.current_tenant', $1, false)", "beta"),
        (
            "SELECT name FROM items WHERE set_config('app.current_tenant', $1::text, true) <> ''",
            "beta",
        ),
        ("SELECT set_config('app.current_tenant', $1, true)", "ALPHA"),
        ("SELECT set_config('role', $1, false)", "postgres"),
    ];
    for (sql, value) in attempts {
        let err = alpha
            .query(sql, &[&value])
            .await
            .expect_err("refused at Bind");
        assert_eq!(sqlstate(&err), "42501", "{sql} with {value}: {err}");
        assert_eq!(names(&alpha).await, ALPHA_ROWS, "after {sql}");
    }
    // A named statement prepared with a harmless value cannot be re-bound to another tenant.
    let stmt = alpha
        .prepare("SELECT set_config('app.current_tenant', $1, true), count(*) FROM items")
        .await
        .expect("prepare");
    alpha.query(&stmt, &[&"alpha"]).await.expect("own value");
    let err = alpha
        .query(&stmt, &[&"beta"])
        .await
        .expect_err("another tenant");
    assert_eq!(sqlstate(&err), "42501");
    // Refused at Parse, inside an explicit transaction: the transaction is failed, as it
    // would be on the server.
    alpha.simple_query("BEGIN").await.expect("begin");
    let err = alpha
        .prepare("SELECT set_config('app.current_tenant', 'beta', false)")
        .await
        .expect_err("refused at Parse");
    assert_eq!(sqlstate(&err), "42501");
    let err = alpha
        .simple_query("SELECT 1")
        .await
        .expect_err("transaction is failed");
    assert_eq!(sqlstate(&err), "25P02", "{err}");
    alpha.simple_query("ROLLBACK").await.expect("rollback");
    assert_eq!(names(&alpha).await, ALPHA_ROWS);
    assert_eq!(fingerprint(&db), before);
    proxy.shutdown().await;
}

/// Below the SQL: startup options, the fast-path FunctionCall message, and binding a statement
/// that another client left on the server connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_level_attacks_are_refused() {
    use bytes::{BufMut, BytesMut};
    use postgres_protocol::message::backend::Message;
    use postgres_protocol::message::frontend;
    use tokio::io::AsyncWriteExt;

    let db = shared_db();
    let proxy = start_proxy(&config(&db, &["alpha", "beta"], 1, "")).await;
    let before = fingerprint(&db);

    // Startup options naming the GUC.
    let mut cfg = client_config(&proxy, "app.alpha", "alpha");
    cfg.options("-c app.current_tenant=beta");
    let Err(err) = try_connect(cfg).await else {
        panic!("logged in with options naming the tenant GUC");
    };
    assert_eq!(sqlstate(&err), "28000", "{err}");
    let (ok, _, stderr) = psql(
        &proxy,
        "user=app.alpha dbname=alpha options='-c app.current_tenant=beta'",
        "SELECT name FROM items",
    );
    assert!(!ok && stderr.contains("app.current_tenant"), "{stderr}");

    // set_config by its OID over the fast-path protocol.
    let mut s = tokio::net::TcpStream::connect(proxy.addr())
        .await
        .expect("tcp");
    let mut buf = BytesMut::new();
    raw_login(&mut s, &mut buf, "app.alpha", Some("alpha")).await;
    let mut out = BytesMut::new();
    set_config_call(&mut out, "app.current_tenant", "beta");
    s.write_all(&out).await.expect("write");
    let mut refused = false;
    loop {
        match read_msg(&mut s, &mut buf).await {
            Message::ErrorResponse(e) => {
                let mut fields = e.fields();
                while let Some(f) =
                    fallible_iterator::FallibleIterator::next(&mut fields).expect("fields")
                {
                    if f.type_() == b'C' {
                        refused = f.value_bytes() == b"42501";
                    }
                }
            }
            Message::ReadyForQuery(_) => break,
            _ => {}
        }
    }
    assert!(refused, "FunctionCall refused with 42501");

    // Client 1 leaves an unnamed statement that sets the context from a parameter; client
    // 2 (beta's server connection is the same: pool of 1) binds it without a Parse.
    out.clear();
    frontend::parse(
        "",
        "SELECT set_config('app.current_tenant', $1, false)",
        [],
        &mut out,
    )
    .expect("parse");
    frontend::bind(
        "",
        "",
        [0],
        [&b"alpha"[..]],
        |v, buf| {
            buf.put_slice(v);
            Ok(postgres_protocol::IsNull::No)
        },
        [0],
        &mut out,
    )
    .map_err(|_| "bind")
    .expect("bind");
    frontend::execute("", 0, &mut out).expect("execute");
    frontend::sync(&mut out);
    s.write_all(&out).await.expect("write");
    loop {
        match read_msg(&mut s, &mut buf).await {
            Message::ErrorResponse(_) => panic!("own value refused"),
            Message::ReadyForQuery(_) => break,
            _ => {}
        }
    }
    let mut s2 = tokio::net::TcpStream::connect(proxy.addr())
        .await
        .expect("tcp");
    let mut buf2 = BytesMut::new();
    raw_login(&mut s2, &mut buf2, "app.beta", Some("beta")).await;
    // beta binds the leftover unnamed statement with alpha's id.
    out.clear();
    frontend::bind(
        "",
        "",
        [0],
        [&b"alpha"[..]],
        |v, buf| {
            buf.put_slice(v);
            Ok(postgres_protocol::IsNull::No)
        },
        [0],
        &mut out,
    )
    .map_err(|_| "bind")
    .expect("bind");
    frontend::execute("", 0, &mut out).expect("execute");
    frontend::sync(&mut out);
    s2.write_all(&out).await.expect("write");
    let mut code = None;
    loop {
        match read_msg(&mut s2, &mut buf2).await {
            Message::ErrorResponse(e) => {
                let mut fields = e.fields();
                while let Some(f) =
                    fallible_iterator::FallibleIterator::next(&mut fields).expect("fields")
                {
                    if f.type_() == b'C' {
                        code = Some(String::from_utf8_lossy(f.value_bytes()).into_owned());
                    }
                }
            }
            Message::DataRow(_) => panic!("another client's unnamed statement was executed"),
            Message::ReadyForQuery(_) => break,
            _ => {}
        }
    }
    assert_eq!(code.as_deref(), Some("26000"));
    assert_eq!(fingerprint(&db), before);
    proxy.shutdown().await;
}

/// Control: without the guard, the same attacks work, so the suite can fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_succeed_without_the_guard() {
    let db = shared_db();
    let proxy = start_proxy(&config(&db, &["alpha", "beta"], 1, "guard = false")).await;
    let alpha = connect(&proxy, "app.alpha", "alpha").await;
    let rows = run(
        &alpha,
        "SET app.current_tenant = 'beta'; SELECT name FROM items ORDER BY name",
    )
    .await
    .expect("unguarded");
    assert_eq!(rows, ["beta-secret-1", "beta-secret-2"]);
    proxy.shutdown().await;
}

/// Poisoned pool: alpha leaves state on the only server connection; beta's transactions on
/// it must not see any of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_left_by_one_tenant_never_reaches_the_next() {
    let db = shared_db();
    let proxy = start_proxy(&config(&db, &["alpha", "beta"], 1, "")).await;
    let alpha = connect(&proxy, "app.alpha", "alpha").await;
    let beta = connect(&proxy, "app.beta", "beta").await;
    let beta_rows = ["beta-secret-1", "beta-secret-2"];
    let poison: [(&str, &str, Result<&str, &str>); 9] = [
        (
            "CREATE TEMP TABLE items AS SELECT 'beta' AS tenant_id, 'poison' AS name",
            "SELECT string_agg(name, ',' ORDER BY name) FROM items",
            Ok("beta-secret-1,beta-secret-2"),
        ),
        (
            "SET statement_timeout = '1ms'",
            "SHOW statement_timeout",
            Ok("0"),
        ),
        (
            "SET myapp.flag = 'alpha-was-here'",
            "SELECT coalesce(current_setting('myapp.flag', true), '')",
            Ok(""),
        ),
        (
            "SET search_path = pg_temp, public",
            "SHOW search_path",
            Ok("\"$user\", public"),
        ),
        (
            "PREPARE leftover AS SELECT name FROM items",
            "EXECUTE leftover",
            Err("26000"),
        ),
        (
            "BEGIN; DECLARE held CURSOR WITH HOLD FOR SELECT name FROM items; COMMIT",
            "FETCH ALL FROM held",
            Err("34000"),
        ),
        (
            "SELECT pg_advisory_lock(4242)",
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
            Ok("0"),
        ),
        (
            "INSERT INTO items (name) VALUES ('alpha-3') RETURNING id",
            "SELECT currval('items_id_seq')",
            Err("55000"),
        ),
        (
            "SELECT set_config('search_path', 'pg_catalog', false)",
            "SHOW search_path",
            Ok("\"$user\", public"),
        ),
    ];
    for (left, probe, expected) in poison {
        run(&alpha, left)
            .await
            .unwrap_or_else(|e| panic!("{left}: {e:?}"));
        let got = run(&beta, probe).await;
        match expected {
            Ok(v) => assert_eq!(got, Ok(vec![v.to_owned()]), "{probe} after {left}"),
            Err(code) => assert_eq!(
                got.map_err(|(c, _)| c),
                Err(code.to_owned()),
                "{probe} after {left}"
            ),
        }
        assert_eq!(names(&beta).await, beta_rows, "beta after {left}");
        let _ = run(&alpha, "DELETE FROM items WHERE name = 'alpha-3'").await;
    }
    proxy.shutdown().await;
}

/// 100 clients of 10 tenants over a pool of 5 server connections, interleaving writes and
/// reads: every row each client reads or writes is its own tenant's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_clients_of_ten_tenants_each_see_only_their_own_rows() {
    let db = unique("guard_many");
    create_db(&db, &pgtenant::testing::shared_items_ddl("pgtenant"));
    let tenants: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    let names: Vec<&str> = tenants.iter().map(String::as_str).collect();
    let proxy = Arc::new(start_proxy(&config(&db, &names, 5, "")).await);
    let tasks = (0..100).map(|i| {
        let proxy = proxy.clone();
        let tenant = format!("t{}", i % 10);
        tokio::spawn(async move {
            let c = connect(&proxy, &format!("app.{tenant}"), &tenant).await;
            for n in 0..5 {
                let tx_rows = run(
                    &c,
                    &format!(
                        "BEGIN; INSERT INTO items (name) VALUES ('{tenant}-{i}-{n}') RETURNING tenant_id;
                         SELECT tenant_id || ':' || name FROM items; COMMIT"
                    ),
                )
                .await
                .unwrap_or_else(|e| panic!("client {i}: {e:?}"));
                for r in &tx_rows {
                    let own = r == &tenant || r.starts_with(&format!("{tenant}:{tenant}-"));
                    assert!(own, "client {i} of {tenant} saw {r}");
                }
                let read = run(&c, "SELECT tenant_id FROM items").await.expect("read");
                assert!(read.iter().all(|t| t == &tenant), "client {i}: {read:?}");
            }
        })
    });
    for r in join_all(tasks).await {
        r.expect("client task");
    }
    assert_every_row_carries_its_writers_tenant(&db);
    let total = cluster()
        .psql(&db, "SELECT count(*) FROM items")
        .expect("count");
    assert_eq!(total, "500");
    match Arc::try_unwrap(proxy) {
        Ok(p) => p.shutdown().await,
        Err(_) => panic!("proxy still shared"),
    }
}

/// Signed mode: policies from `pgtenant rls --signed` trust the GUC only with pgtenant's
/// signature for the server connection. Through pgtenant every tenant sees its rows; a GUC
/// forged past the guard (here: the guard switched off) matches nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_context_holds_even_without_the_guard() {
    let key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let db = unique("signed");
    cluster()
        .psql("postgres", &format!("CREATE DATABASE {db}"))
        .expect("db");
    cluster()
        .psql(
            &db,
            "CREATE TABLE items (id serial PRIMARY KEY, tenant_id text NOT NULL, name text NOT NULL);
             GRANT SELECT, INSERT, UPDATE, DELETE ON items TO pgtenant;
             GRANT USAGE ON SEQUENCE items_id_seq TO pgtenant;
             INSERT INTO items (tenant_id, name) VALUES
               ('alpha', 'alpha-1'), ('alpha', 'alpha-2'),
               ('beta', 'beta-secret-1'), ('beta', 'beta-secret-2');",
        )
        .expect("table");
    apply_script(
        &db,
        &rls_sql(&["--table", "items", "--column", "tenant_id", "--signed"]),
        Some(key),
    )
    .expect("signed rls");
    let dir = tempfile::tempdir().expect("dir");
    let key_file = dir.path().join("key.hex");
    std::fs::write(&key_file, key).expect("key file");
    for guard in ["true", "false"] {
        let tenancy = format!(
            "guard = {guard}\nsigning_key_file = \"{}\"",
            key_file.display()
        );
        let proxy = start_proxy(&config(&db, &["alpha", "beta"], 1, &tenancy)).await;
        let alpha = connect(&proxy, "app.alpha", "alpha").await;
        let beta = connect(&proxy, "app.beta", "beta").await;
        for _ in 0..3 {
            assert_eq!(names(&alpha).await, ALPHA_ROWS, "guard = {guard}");
            assert_eq!(
                names(&beta).await,
                ["beta-secret-1", "beta-secret-2"],
                "guard = {guard}"
            );
        }
        let forged = run(
            &alpha,
            "SET app.current_tenant = 'beta'; SELECT name FROM items",
        )
        .await;
        if guard == "true" {
            assert_eq!(forged.map_err(|(c, _)| c), Err("42501".to_owned()));
        } else {
            assert_eq!(forged, Ok(vec![]), "a forged context sees nothing");
        }
        proxy.shutdown().await;
    }
}

/// The same guard through a Python driver: psycopg 3 with server-side prepared statements
/// and pipeline mode (installed by tests/drivers/install.sh).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_attacks_are_refused() {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".drivers/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run tests/drivers/install.sh",
        python.display()
    );
    let db = shared_db();
    let before = fingerprint(&db);
    let proxy = start_proxy(&config(&db, &["alpha", "beta"], 1, "")).await;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guard/psycopg_attacks.py");
    let dsn = format!(
        "host=127.0.0.1 port={} user=app.alpha dbname=alpha password={CLIENT_PASSWORD}",
        proxy.addr().port()
    );
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        tokio::process::Command::new(&python)
            .arg(&script)
            .env("PGTENANT_DSN", dsn)
            .output(),
    )
    .await
    .expect("script finishes")
    .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ok psycopg-guard 10"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fingerprint(&db), before);
    proxy.shutdown().await;
}
