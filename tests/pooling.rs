//! Transaction- and session-mode pooling: many clients over a small pool, tenants interleaving
//! on shared server connections, pipelining, prepared statements moving between server
//! connections, and clients that vanish mid-transaction.

mod common;
use common::*;
use futures_util::future::join_all;
use std::sync::Arc;

fn shared_config(db: &str, tenants: &[&str], pool_size: usize, mode: &str) -> String {
    let mut extra = String::new();
    for t in tenants {
        extra.push_str(&tenant_toml(
            t,
            "shared",
            db,
            &format!("pool_size = {pool_size}\npool_mode = \"{mode}\""),
        ));
    }
    config_text(&extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_share_a_pool_of_five() {
    let db = unique("erp_many");
    create_db(&db, "CREATE TABLE hits (client int, n int);");
    let toml = config_text(&tenant_toml("acme", "database", &db, "pool_size = 5")).replace(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"\nmax_client_conn = 500",
    );
    let proxy = Arc::new(start_proxy(&toml).await);
    let tasks = (0..200).map(|i| {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let c = connect(&proxy, "app.acme", "acme").await;
            for n in 0..5 {
                c.execute("INSERT INTO hits VALUES ($1, $2)", &[&i, &n])
                    .await
                    .expect("insert");
            }
            let tx_count: i64 = c
                .query_one("SELECT count(*) FROM hits WHERE client = $1", &[&i])
                .await
                .expect("count")
                .get(0);
            assert_eq!(tx_count, 5);
        })
    });
    for r in join_all(tasks).await {
        r.expect("client task");
    }
    let total = cluster()
        .psql(&db, "SELECT count(*) FROM hits")
        .expect("count");
    assert_eq!(total, "1000");
    // Never more than the pool size of server connections.
    let backends = cluster()
        .psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'"),
        )
        .expect("activity");
    assert!(
        backends.parse::<u32>().expect("number") <= 5,
        "{backends} backends"
    );
    Arc::into_inner(proxy).expect("sole owner").shutdown().await;
}

/// The backend serving `c`'s next transaction, which must start within 5 s. A simple query:
/// its result comes back with the ReadyForQuery that ends the transaction, so the session has
/// let go of (or kept) its server connection by then.
async fn backend_pid(c: &tokio_postgres::Client) -> i32 {
    let messages = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        c.simple_query("SELECT pg_backend_pid()"),
    )
    .await
    .expect("served within 5 s, not after query_wait_timeout")
    .expect("query");
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0)?.parse().ok(),
            _ => None,
        })
        .expect("a pid")
}

/// Between transactions a client keeps its server connection while nobody else needs one;
/// the next client that does gets it at once, and the two then take turns on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_client_gives_up_its_connection_to_the_next_one() {
    let db = unique("erp_keep");
    create_db(&db, "");
    let proxy = start_proxy(&config_text(&tenant_toml(
        "acme",
        "database",
        &db,
        "pool_size = 2",
    )))
    .await;
    // Pool size 2: with one connection kept, a second client queues (nothing idle) and
    // reclaims it rather than open another.
    let a = connect(&proxy, "app.acme", "acme").await;
    let first = backend_pid(&a).await;
    assert_eq!(backend_pid(&a).await, first);
    // `a` is idle and connected: `b` must not wait for it to leave.
    let b = connect(&proxy, "app.acme", "acme").await;
    let started = std::time::Instant::now();
    assert_eq!(
        backend_pid(&b).await,
        first,
        "a's connection, not a new one"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    for _ in 0..20 {
        assert_eq!(backend_pid(&a).await, first);
        assert_eq!(backend_pid(&b).await, first);
    }
    let backends = cluster()
        .psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'"),
        )
        .expect("activity");
    assert_eq!(backends, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_tenants_each_see_their_own_rows() {
    let db = unique("shared_il");
    let tenants = ["t0", "t1", "t2", "t3", "t4", "t5"];
    let rows: Vec<(&str, String)> = tenants.iter().map(|t| (*t, format!("{t}-row"))).collect();
    let rows_ref: Vec<(&str, &str)> = rows.iter().map(|(t, n)| (*t, n.as_str())).collect();
    create_shared_db(&db, &rows_ref);
    let proxy = Arc::new(start_proxy(&shared_config(&db, &tenants, 2, "transaction")).await);
    let tasks = (0..30).map(|i| {
        let proxy = proxy.clone();
        let tenant = tenants[i % tenants.len()];
        tokio::spawn(async move {
            let c = connect(&proxy, &format!("app.{tenant}"), tenant).await;
            for j in 0..20 {
                let names = item_names(&c).await;
                assert!(
                    names.iter().all(|n| n.starts_with(&format!("{tenant}-"))),
                    "{tenant} saw {names:?}"
                );
                let ctx: String = c
                    .query_one("SELECT current_setting('app.current_tenant')", &[])
                    .await
                    .expect("guc")
                    .get(0);
                assert_eq!(ctx, tenant);
                if j % 5 == 0 {
                    c.execute(
                        "INSERT INTO items (name) VALUES ($1)",
                        &[&format!("{tenant}-w{i}-{j}")],
                    )
                    .await
                    .expect("insert");
                }
            }
        })
    });
    for r in join_all(tasks).await {
        r.expect("client task");
    }
    assert_every_row_carries_its_writers_tenant(&db);
    Arc::into_inner(proxy).expect("sole owner").shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_state_does_not_cross_tenants() {
    let db = unique("shared_reset");
    create_shared_db(&db, &[("alpha", "alpha-1"), ("beta", "beta-1")]);
    cluster()
        .psql(&db, &format!("GRANT TEMP ON DATABASE {db} TO pgtenant"))
        .expect("grant temp");
    let proxy = start_proxy(&shared_config(&db, &["alpha", "beta"], 1, "transaction")).await;
    let a = connect(&proxy, "app.alpha", "alpha").await;
    // Alpha leaves a GUC, a temp table shadowing `items`, and search_path behind.
    a.batch_execute(
        "SET statement_timeout = '4242s'; SET my.flag = 'alpha-was-here';
         CREATE TEMP TABLE items (id int, tenant_id text, name text);
         INSERT INTO items VALUES (1, 'beta', 'forged');",
    )
    .await
    .expect("alpha state");
    let b = connect(&proxy, "app.beta", "beta").await;
    let timeout: String = b
        .query_one("SHOW statement_timeout", &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(timeout, "0");
    let flag: Option<String> = b
        .query_one("SELECT current_setting('my.flag', true)", &[])
        .await
        .expect("flag")
        .get(0);
    assert!(flag.is_none() || flag.as_deref() == Some(""), "{flag:?}");
    assert_eq!(item_names(&b).await, ["beta-1"]);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_mid_transaction_never_hands_on_a_dirty_connection() {
    let db = unique("erp_dirty");
    create_db(&db, "CREATE TABLE t (v int);");
    let toml = config_text(&tenant_toml("acme", "database", &db, "pool_size = 1"));
    let proxy = start_proxy(&toml).await;
    {
        let a = connect(&proxy, "app.acme", "acme").await;
        a.batch_execute("BEGIN; INSERT INTO t VALUES (1); SET LOCAL lock_timeout = '1s';")
            .await
            .expect("open transaction");
        // `a` is dropped here: its socket closes in the middle of the transaction.
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let b = connect(&proxy, "app.acme", "acme").await;
    // a's transaction assigned an xid (it inserted); a fresh transaction has none.
    let xid: Option<i64> = b
        .query_one("SELECT txid_current_if_assigned()", &[])
        .await
        .expect("query")
        .get(0);
    assert_eq!(xid, None, "b must not run inside a's transaction");
    let n: i64 = b
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0, "a's uncommitted insert must be gone");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_and_prepared_queries_move_between_server_connections() {
    let db = unique("erp_pipe");
    create_db(
        &db,
        "CREATE TABLE kv (k int PRIMARY KEY, v text); INSERT INTO kv SELECT g, 'v' || g FROM generate_series(1, 100) g;",
    );
    let toml = config_text(&tenant_toml("acme", "database", &db, "pool_size = 2"));
    let proxy = Arc::new(start_proxy(&toml).await);
    let tasks = (0..8).map(|_| {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let c = connect(&proxy, "app.acme", "acme").await;
            let stmt = c
                .prepare("SELECT v FROM kv WHERE k = $1")
                .await
                .expect("prepare");
            for round in 0..10 {
                // Several Bind/Execute before one Sync: tokio-postgres pipelines these.
                let futs = (1..=10).map(|k| {
                    let k: i32 = round * 10 + k;
                    let c = &c;
                    let stmt = &stmt;
                    async move {
                        let row = c.query_one(stmt, &[&k]).await.expect("query");
                        assert_eq!(row.get::<_, String>(0), format!("v{k}"));
                    }
                });
                join_all(futs).await;
            }
            // An error in the middle of a pipeline fails only its own query.
            let bad = c.prepare("SELECT 1/$1::int").await.expect("prepare");
            let (r1, r2, r3) = tokio::join!(
                c.query_one(&stmt, &[&1i32]),
                c.query_one(&bad, &[&0i32]),
                c.query_one(&stmt, &[&2i32])
            );
            assert_eq!(r1.expect("first").get::<_, String>(0), "v1");
            assert_eq!(sqlstate(&r2.expect_err("division by zero")), "22012");
            assert_eq!(r3.expect("third").get::<_, String>(0), "v2");
        })
    });
    for r in join_all(tasks).await {
        r.expect("client task");
    }
    Arc::into_inner(proxy).expect("sole owner").shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_keeps_session_state_and_resets_after() {
    let db = unique("shared_sess");
    create_shared_db(&db, &[("alpha", "alpha-1")]);
    let proxy = start_proxy(&shared_config(&db, &["alpha"], 1, "session")).await;
    {
        let a = connect(&proxy, "app.alpha", "alpha").await;
        a.batch_execute("SET application_name = 'kept'")
            .await
            .expect("set");
        let v: String = a
            .query_one("SHOW application_name", &[])
            .await
            .expect("show")
            .get(0);
        assert_eq!(v, "kept");
        assert_eq!(item_names(&a).await, ["alpha-1"]);
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let b = connect(&proxy, "app.alpha", "alpha").await;
    let v: String = b
        .query_one("SHOW application_name", &[])
        .await
        .expect("show")
        .get(0);
    assert_ne!(
        v, "kept",
        "session state must be reset between session-mode clients"
    );
    assert_eq!(item_names(&b).await, ["alpha-1"]);
    proxy.shutdown().await;
}

/// A Query split across two TCP segments: the server must not be released (and re-taken)
/// while the message is incomplete. Before the fix this spun forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_split_across_segments_completes() {
    use postgres_protocol::message::backend::Message;
    use tokio::io::AsyncWriteExt;
    let db = unique("erp_split");
    create_db(&db, "");
    let proxy = start_proxy(&config_text(&tenant_toml("acme", "database", &db, ""))).await;
    let mut s = tokio::net::TcpStream::connect(proxy.addr())
        .await
        .expect("tcp");
    s.set_nodelay(true).expect("nodelay");
    let mut buf = bytes::BytesMut::new();
    raw_login(&mut s, &mut buf, "app.acme", Some("acme")).await;
    let mut q = bytes::BytesMut::new();
    postgres_protocol::message::frontend::query("SELECT 42", &mut q).expect("query");
    for cut in [2usize, 7] {
        s.write_all(&q[..cut]).await.expect("first part");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        s.write_all(&q[cut..]).await.expect("second part");
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            let mut rows = 0;
            loop {
                match read_msg(&mut s, &mut buf).await {
                    Message::DataRow(_) => rows += 1,
                    Message::ReadyForQuery(_) => return rows,
                    _ => {}
                }
            }
        })
        .await
        .expect("query answered");
        assert_eq!(got, 1, "cut at {cut}");
    }
    proxy.shutdown().await;
}

/// The tenant context is in force at the start of every transaction, even after a client of
/// the same tenant changed it (and whichever statement did so). With the guard off, pgtenant
/// notices the change (src/relay/taint.rs) and sends the setup again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_is_restored_for_every_transaction_without_the_guard() {
    let db = unique("shared_ctx");
    create_shared_db(&db, &[("alpha", "alpha-1"), ("beta", "beta-1")]);
    let toml = format!(
        "[tenancy]\nguard = false\n{}",
        shared_config(&db, &["alpha"], 1, "transaction")
    );
    let proxy = start_proxy(&toml).await;
    let a = connect(&proxy, "app.alpha", "alpha").await;
    for change in [
        "SET app.current_tenant = 'beta'",
        "SELECT set_config('app.current_tenant', 'beta', false)",
        "RESET ALL",
    ] {
        a.simple_query(change).await.expect("change");
        assert_eq!(alpha_names(&proxy).await, ["alpha-1"], "after {change}");
    }
    proxy.shutdown().await;
}

/// With the guard on, changing the context to another tenant is refused, and a `RESET ALL`
/// (allowed on its own) is followed by the setup before the next statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_is_restored_for_every_transaction() {
    let db = unique("shared_ctx");
    create_shared_db(&db, &[("alpha", "alpha-1"), ("beta", "beta-1")]);
    let proxy = start_proxy(&shared_config(&db, &["alpha"], 1, "transaction")).await;
    let a = connect(&proxy, "app.alpha", "alpha").await;
    for change in [
        "SET app.current_tenant = 'beta'",
        "SELECT set_config('app.current_tenant', 'beta', false)",
    ] {
        let err = a.simple_query(change).await.expect_err("refused");
        assert_eq!(sqlstate(&err), "42501", "{change}: {err:?}");
        assert_eq!(alpha_names(&proxy).await, ["alpha-1"], "after {change}");
    }
    a.simple_query("RESET ALL").await.expect("RESET ALL alone");
    let rows = a
        .simple_query("SELECT current_setting('app.current_tenant')")
        .await
        .expect("setting");
    let value = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    });
    assert_eq!(
        value.as_deref(),
        Some("alpha"),
        "context set again after RESET ALL"
    );
    assert_eq!(alpha_names(&proxy).await, ["alpha-1"], "after RESET ALL");
    proxy.shutdown().await;
}

/// A fresh client of tenant alpha reads the item names it can see.
async fn alpha_names(proxy: &pgtenant::server::Proxy) -> Vec<String> {
    let b = connect(proxy, "app.alpha", "alpha").await;
    // Plain statements only: nothing for pgtenant to notice but the last change.
    let rows = b
        .simple_query("SELECT name FROM items")
        .await
        .expect("select");
    rows.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect()
}

/// The SQLSTATE and message of a failed statement.
fn code_and_message(e: &tokio_postgres::Error) -> (String, String) {
    (
        sqlstate(e),
        e.as_db_error()
            .map(|d| d.message().to_owned())
            .unwrap_or_default(),
    )
}

/// `LISTEN` in a transaction-mode pool fails with 0A000 and says why, in database and schema
/// placement, simple or extended protocol, in any spelling, inside a transaction block too;
/// `UNLISTEN` (asyncpg's reset query sends `UNLISTEN *`) and statements that merely mention
/// the word still work. Shared placement keeps the guard's 42501.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_is_refused_in_transaction_mode() {
    let db = unique("listen_db");
    create_db(&db, "");
    let schemas = unique("listen_schemas");
    create_db(&schemas, "CREATE SCHEMA beta;");
    let shared = unique("listen_shared");
    create_shared_db(&shared, &[]);
    let proxy = start_proxy(&config_text(&format!(
        "{}{}{}",
        tenant_toml("acme", "database", &db, "pool_size = 1"),
        tenant_toml("beta", "schema", &schemas, "pool_size = 1"),
        tenant_toml("gamma", "shared", &shared, "pool_size = 1"),
    )))
    .await;
    for tenant in ["acme", "beta"] {
        let mut c = connect(&proxy, &format!("app.{tenant}"), tenant).await;
        for sql in [
            "LISTEN events",
            "/* hi */ listen \"Events\";",
            "SELECT 1; LISTEN x",
        ] {
            let e = c.batch_execute(sql).await.expect_err(sql);
            let (code, message) = code_and_message(&e);
            assert_eq!(code, "0A000", "{tenant}: {sql}: {e:?}");
            assert!(
                message.contains("LISTEN is not supported in transaction pooling mode")
                    && message.contains("pool_mode = \"session\""),
                "{tenant}: {message}"
            );
        }
        let e = c
            .execute("LISTEN events", &[])
            .await
            .expect_err("extended protocol");
        assert_eq!(sqlstate(&e), "0A000", "{tenant}: extended: {e:?}");
        c.batch_execute("UNLISTEN *").await.expect("UNLISTEN");
        c.batch_execute("SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;")
            .await
            .expect("asyncpg's reset query");
        c.simple_query("SELECT 1 AS listen")
            .await
            .expect("a column named listen");
        // Inside a transaction block: the error fails the transaction, as PostgreSQL's would.
        let tx = c.transaction().await.expect("begin");
        let e = tx.batch_execute("LISTEN events").await.expect_err("in tx");
        assert_eq!(sqlstate(&e), "0A000", "{tenant}: {e:?}");
        let e = tx.batch_execute("SELECT 1").await.expect_err("failed tx");
        assert_eq!(sqlstate(&e), "25P02", "{tenant}: {e:?}");
        tx.rollback().await.expect("rollback");
        c.batch_execute("SELECT 1").await.expect("after rollback");
    }
    let c = connect(&proxy, "app.gamma", "gamma").await;
    let e = c.batch_execute("LISTEN events").await.expect_err("shared");
    assert_eq!(sqlstate(&e), "42501", "{e:?}");
    proxy.shutdown().await;
}

/// In a session-mode pool `LISTEN` works: a NOTIFY sent through pgtenant by another client
/// reaches the listening client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_works_in_session_mode() {
    use futures_util::StreamExt;
    let db = unique("listen_session");
    create_db(&db, "");
    let proxy = start_proxy(&config_text(&tenant_toml(
        "acme",
        "database",
        &db,
        "pool_size = 2\npool_mode = \"session\"",
    )))
    .await;
    let (listener, mut connection) = client_config(&proxy, "app.acme", "acme")
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(m)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = m {
                let _ = tx.send((n.channel().to_owned(), n.payload().to_owned()));
            }
        }
    });
    listener
        .batch_execute("LISTEN events")
        .await
        .expect("LISTEN");
    let notifier = connect(&proxy, "app.acme", "acme").await;
    notifier
        .batch_execute("NOTIFY events, 'hello'")
        .await
        .expect("NOTIFY");
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
        .await
        .expect("notified within 5 s");
    assert_eq!(got, Some(("events".to_owned(), "hello".to_owned())));
    proxy.shutdown().await;
}
