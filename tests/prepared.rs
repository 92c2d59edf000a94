//! Prepared statements when the client drops them itself: `DEALLOCATE ALL` / `DISCARD ALL`,
//! sent as a simple Query or through the extended protocol (as psycopg and tokio-postgres do),
//! inside a transaction or not, must leave every client's statements usable afterwards.

mod common;
use common::*;

async fn world(tag: &str, pool_size: usize) -> pgtenant::server::Proxy {
    let db = unique(tag);
    create_db(
        &db,
        "CREATE TABLE kv (k int PRIMARY KEY, v text); INSERT INTO kv VALUES (1, 'one'), (2, 'two');",
    );
    start_proxy(&config_text(&tenant_toml(
        "acme",
        "database",
        &db,
        &format!("pool_size = {pool_size}"),
    )))
    .await
}

/// A client that drops all statements inside a transaction and prepares the same SQL again
/// (new name, same content) must get a working statement: the server no longer has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deallocate_all_inside_a_transaction_then_prepare_again() {
    let proxy = world("prep_dealloc_tx", 1).await;
    let mut c = connect(&proxy, "app.acme", "acme").await;
    for drop_sql in ["DEALLOCATE ALL", "DISCARD PLANS"] {
        for extended in [false, true] {
            let tx = c.transaction().await.expect("begin");
            let s = tx
                .prepare("SELECT v FROM kv WHERE k = $1")
                .await
                .expect("prepare");
            let row = tx.query_one(&s, &[&1i32]).await.expect("first");
            assert_eq!(row.get::<_, String>(0), "one");
            if extended {
                tx.execute(drop_sql, &[]).await.expect("drop (extended)");
            } else {
                tx.batch_execute(drop_sql).await.expect("drop (simple)");
            }
            let s = tx
                .prepare("SELECT v FROM kv WHERE k = $1")
                .await
                .expect("again");
            let row = tx
                .query_one(&s, &[&2i32])
                .await
                .unwrap_or_else(|e| panic!("after {drop_sql} (extended {extended}): {e}"));
            assert_eq!(row.get::<_, String>(0), "two");
            tx.commit().await.expect("commit");
        }
    }
    proxy.shutdown().await;
}

/// One client's `DEALLOCATE ALL` through the extended protocol must not break the statements
/// another client of the same tenant has on that server connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_deallocate_all_does_not_break_other_clients() {
    let proxy = world("prep_dealloc_other", 1).await;
    let a = connect(&proxy, "app.acme", "acme").await;
    let b = connect(&proxy, "app.acme", "acme").await;
    let s = b
        .prepare("SELECT v FROM kv WHERE k = $1")
        .await
        .expect("prepare");
    assert_eq!(
        b.query_one(&s, &[&1i32])
            .await
            .expect("before")
            .get::<_, String>(0),
        "one"
    );
    for drop_sql in ["DEALLOCATE ALL", "DISCARD ALL"] {
        // Pool of one: a runs on the server connection b just used.
        a.execute(drop_sql, &[]).await.expect("drop");
        let row = b
            .query_one(&s, &[&2i32])
            .await
            .unwrap_or_else(|e| panic!("b after a's {drop_sql}: {e}"));
        assert_eq!(row.get::<_, String>(0), "two");
    }
    proxy.shutdown().await;
}

/// Appends one frontend message: tag, length, body.
fn msg(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
}

/// Parse (no parameter types), Bind (no parameters, text results) and Execute.
fn parse_bind_execute(out: &mut Vec<u8>, statement: &str, sql: &str) {
    msg(out, b'P', format!("{statement}\0{sql}\0\0\0").as_bytes());
    msg(out, b'B', format!("\0{statement}\0\0\0\0\0\0\0").as_bytes());
    msg(out, b'E', b"\0\0\0\0\0");
}

/// Reads backend messages as one letter each (their tags), up to ReadyForQuery or, with
/// `until_ready` false, up to an ErrorResponse; at most 5 s.
async fn tags(
    s: &mut tokio::net::TcpStream,
    buf: &mut bytes::BytesMut,
    until_ready: bool,
) -> String {
    use postgres_protocol::message::backend::Message;
    let read = async {
        let mut seen = String::new();
        loop {
            seen.push(match read_msg(s, buf).await {
                Message::ParseComplete => '1',
                Message::BindComplete => '2',
                Message::DataRow(_) => 'D',
                Message::CommandComplete(_) => 'C',
                Message::ErrorResponse(_) => 'E',
                Message::ReadyForQuery(_) => 'Z',
                _ => '?',
            });
            if seen.ends_with(if until_ready { 'Z' } else { 'E' }) {
                return seen;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .expect("answered within 5 s")
}

/// psycopg's pipeline: the error arrives before the client sends the rest of the pipeline and
/// its Sync. The server discards the rest unanswered; pgtenant must not wait for answers to it,
/// and must answer the client's next requests (including a Parse it answers itself) in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_before_the_sync_is_sent_skips_the_rest_of_the_pipeline() {
    use tokio::io::AsyncWriteExt;
    let proxy = world("prep_skip", 1).await;
    let mut s = tokio::net::TcpStream::connect(proxy.addr())
        .await
        .expect("tcp");
    let mut buf = bytes::BytesMut::new();
    raw_login(&mut s, &mut buf, "app.acme", Some("acme")).await;
    // The statement the server already has, so that pgtenant answers its next Parse itself.
    let mut out = Vec::new();
    parse_bind_execute(&mut out, "s1", "SELECT 1");
    msg(&mut out, b'S', b"");
    s.write_all(&out).await.expect("write");
    assert_eq!(tags(&mut s, &mut buf, true).await, "12DCZ");
    // An error, flushed, before the client has sent its Sync.
    out.clear();
    parse_bind_execute(&mut out, "", "SELECT 1/0");
    msg(&mut out, b'H', b"");
    s.write_all(&out).await.expect("write");
    assert_eq!(tags(&mut s, &mut buf, false).await, "1E");
    // The rest of the pipeline: discarded by the server, answered by its Sync alone.
    out.clear();
    parse_bind_execute(&mut out, "s2", "SELECT 1");
    msg(&mut out, b'S', b"");
    s.write_all(&out).await.expect("write");
    assert_eq!(tags(&mut s, &mut buf, true).await, "Z");
    // And then everything in order again.
    out.clear();
    parse_bind_execute(&mut out, "s3", "SELECT 1");
    msg(&mut out, b'S', b"");
    s.write_all(&out).await.expect("write");
    assert_eq!(tags(&mut s, &mut buf, true).await, "12DCZ");
    proxy.shutdown().await;
}

/// With `max_prepared_statements = 2`, a client cycling through five statements on one
/// server connection gets right answers every time while the server never holds more than
/// two of pgtenant's statements; the evictions are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_recently_used_statements_are_closed_at_the_limit() {
    let db = unique("prep_lru");
    create_db(
        &db,
        "CREATE TABLE kv (k int PRIMARY KEY, v text); INSERT INTO kv VALUES (1, 'one'), (2, 'two');",
    );
    let toml = config_text(&tenant_toml("acme", "database", &db, "pool_size = 1"))
        .replace("[pool]\n", "[pool]\nmax_prepared_statements = 2\n");
    let proxy = start_proxy(&toml).await;
    let c = connect(&proxy, "app.acme", "acme").await;
    let mut statements = Vec::new();
    for i in 0..5 {
        let sql = format!("SELECT v, {i} FROM kv WHERE k = $1");
        statements.push((i, c.prepare(&sql).await.expect("prepare")));
    }
    for round in 0..3 {
        for (i, s) in &statements {
            let k = 1 + (round + i) % 2;
            let row = c.query_one(s, &[&k]).await.expect("execute");
            let want = if k == 1 { "one" } else { "two" };
            assert_eq!(row.get::<_, String>(0), want);
            assert_eq!(row.get::<_, i32>(1), *i);
            let held = c
                .simple_query("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'pgt_%'")
                .await
                .expect("count");
            let held: i64 = match &held[1] {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    r.get(0).expect("count").parse().expect("number")
                }
                other => panic!("{other:?}"),
            };
            assert!(held <= 2, "the server holds {held} statements");
        }
    }
    let metrics = scrape(&proxy).await;
    let evicted = sample(
        &metrics,
        "pgtenant_prepared_cache_evictions_total",
        &[("shard", "main")],
    );
    assert!(evicted >= 10.0, "{metrics}");
    assert!(
        !metrics.contains("pgtenant_prepared_cache_evictions_total{tenant"),
        "per pool, not per tenant"
    );
    proxy.shutdown().await;
}

/// Reads backend messages up to ReadyForQuery (at most 5 s), one short token each:
/// `1` `2` `3` `n` `t` `T` as their tags, `D(first column)`, `C(command tag)`, `E(SQLSTATE)`,
/// `Z(status)`.
async fn replies(s: &mut tokio::net::TcpStream, buf: &mut bytes::BytesMut) -> String {
    use fallible_iterator::FallibleIterator;
    use postgres_protocol::message::backend::Message;
    let read = async {
        let mut seen = String::new();
        loop {
            let token = match read_msg(s, buf).await {
                Message::ParseComplete => "1".to_owned(),
                Message::BindComplete => "2".to_owned(),
                Message::CloseComplete => "3".to_owned(),
                Message::NoData => "n".to_owned(),
                Message::ParameterDescription(_) => "t".to_owned(),
                Message::RowDescription(_) => "T".to_owned(),
                Message::DataRow(row) => {
                    let range = row.ranges().next().expect("row").flatten();
                    let v = range.map(|r| String::from_utf8_lossy(&row.buffer()[r]).into_owned());
                    format!("D({})", v.unwrap_or_default())
                }
                Message::CommandComplete(c) => format!("C({})", c.tag().expect("tag")),
                Message::ErrorResponse(e) => {
                    let mut fields = e.fields();
                    let mut code = String::new();
                    while let Some(f) = fields.next().expect("fields") {
                        if f.type_() == b'C' {
                            code = String::from_utf8_lossy(f.value_bytes()).into_owned();
                        }
                    }
                    format!("E({code})")
                }
                Message::ReadyForQuery(r) => {
                    seen.push_str(&format!("Z({})", r.status() as char));
                    return seen;
                }
                Message::NoticeResponse(_) => continue,
                other => format!("?{}", message_name(&other)),
            };
            seen.push_str(&token);
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .expect("answered within 5 s")
}

fn message_name(m: &postgres_protocol::message::backend::Message) -> &'static str {
    use postgres_protocol::message::backend::Message;
    match m {
        Message::EmptyQueryResponse => "EmptyQuery",
        Message::ParameterStatus(_) => "ParameterStatus",
        Message::NotificationResponse(_) => "Notification",
        _ => "other",
    }
}

/// Sends `out` and reads the replies up to the next ReadyForQuery.
async fn exchange(s: &mut tokio::net::TcpStream, buf: &mut bytes::BytesMut, out: &[u8]) -> String {
    use tokio::io::AsyncWriteExt;
    s.write_all(out).await.expect("write");
    replies(s, buf).await
}

fn query(sql: &str) -> Vec<u8> {
    let mut out = Vec::new();
    msg(&mut out, b'Q', format!("{sql}\0").as_bytes());
    out
}

/// Parse of `statement`, Bind, Execute, Sync.
fn prepare_and_run(statement: &str, sql: &str) -> Vec<u8> {
    let mut out = Vec::new();
    parse_bind_execute(&mut out, statement, sql);
    msg(&mut out, b'S', b"");
    out
}

/// Bind of `statement` (no Parse), Execute, Sync.
fn run(statement: &str) -> Vec<u8> {
    let mut out = Vec::new();
    msg(
        &mut out,
        b'B',
        format!("\0{statement}\0\0\0\0\0\0\0").as_bytes(),
    );
    msg(&mut out, b'E', b"\0\0\0\0\0");
    msg(&mut out, b'S', b"");
    out
}

/// Tenant `acme` in `placement`, transaction mode, pool of `pool_size`.
async fn placement_world(tag: &str, placement: &str, pool_size: usize) -> pgtenant::server::Proxy {
    let db = unique(tag);
    match placement {
        "database" => create_db(&db, ""),
        "schema" => create_db(&db, "CREATE SCHEMA acme;"),
        _ => create_shared_db(&db, &[]),
    }
    start_proxy(&config_text(&tenant_toml(
        "acme",
        placement,
        &db,
        &format!("pool_size = {pool_size}"),
    )))
    .await
}

async fn raw_client(proxy: &pgtenant::server::Proxy) -> (tokio::net::TcpStream, bytes::BytesMut) {
    let mut s = tokio::net::TcpStream::connect(proxy.addr())
        .await
        .expect("tcp");
    let mut buf = bytes::BytesMut::new();
    raw_login(&mut s, &mut buf, "app.acme", Some("acme")).await;
    (s, buf)
}

/// SQL `DEALLOCATE name` of a protocol-level statement (psycopg with libpq < 17 evicts its
/// cache that way) behaves as on a direct connection, in every placement: the client's name is
/// gone (a Bind gets 26000) while another client's statement of the same name, on the same
/// server connection, still works; inside a transaction block too; in a failed transaction
/// PostgreSQL's 25P02 and the statement stays; names the client never prepared with the
/// protocol (SQL-level PREPARE, or unknown) go to the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_deallocate_of_a_protocol_statement() {
    for placement in ["database", "schema", "shared"] {
        let proxy = placement_world(&format!("prep_sqldealloc_{placement}"), placement, 1).await;
        let (mut a, mut abuf) = raw_client(&proxy).await;
        let (mut b, mut bbuf) = raw_client(&proxy).await;
        let ctx = |what: &str| format!("{placement}: {what}");
        let step = async |s: &mut tokio::net::TcpStream,
                          buf: &mut bytes::BytesMut,
                          out: Vec<u8>,
                          want: &str,
                          what: &str| {
            assert_eq!(exchange(s, buf, &out).await, want, "{}", ctx(what));
        };
        step(
            &mut a,
            &mut abuf,
            prepare_and_run("s1", "SELECT 1"),
            "12D(1)C(SELECT 1)Z(I)",
            "a prepares s1",
        )
        .await;
        step(
            &mut b,
            &mut bbuf,
            prepare_and_run("s1", "SELECT 2"),
            "12D(2)C(SELECT 1)Z(I)",
            "b prepares s1",
        )
        .await;
        step(
            &mut a,
            &mut abuf,
            query("DEALLOCATE s1"),
            "C(DEALLOCATE)Z(I)",
            "a deallocates s1",
        )
        .await;
        step(
            &mut a,
            &mut abuf,
            run("s1"),
            "E(26000)Z(I)",
            "a's s1 is gone",
        )
        .await;
        step(
            &mut b,
            &mut bbuf,
            run("s1"),
            "2D(2)C(SELECT 1)Z(I)",
            "b's s1 stays",
        )
        .await;
        step(
            &mut a,
            &mut abuf,
            prepare_and_run("s1", "SELECT 3"),
            "12D(3)C(SELECT 1)Z(I)",
            "a prepares s1 again",
        )
        .await;
        // Any spelling the grammar allows; inside a transaction block.
        step(&mut a, &mut abuf, query("BEGIN"), "C(BEGIN)Z(T)", "begin").await;
        step(
            &mut a,
            &mut abuf,
            query("/* evict */ deallocate PREPARE \"s1\";"),
            "C(DEALLOCATE)Z(T)",
            "deallocate in a transaction",
        )
        .await;
        step(
            &mut a,
            &mut abuf,
            run("s1"),
            "E(26000)Z(E)",
            "gone in the transaction",
        )
        .await;
        step(
            &mut a,
            &mut abuf,
            query("ROLLBACK"),
            "C(ROLLBACK)Z(I)",
            "rollback",
        )
        .await;
        step(
            &mut a,
            &mut abuf,
            run("s1"),
            "E(26000)Z(I)",
            "still gone after rollback",
        )
        .await;
        // In a failed transaction: PostgreSQL refuses it and the statement stays.
        step(
            &mut a,
            &mut abuf,
            prepare_and_run("S2", "SELECT 4"),
            "12D(4)C(SELECT 1)Z(I)",
            "a prepares S2",
        )
        .await;
        step(&mut a, &mut abuf, query("BEGIN"), "C(BEGIN)Z(T)", "begin").await;
        step(
            &mut a,
            &mut abuf,
            query("SELECT 1/0"),
            "E(22012)Z(E)",
            "fail the transaction",
        )
        .await;
        step(
            &mut a,
            &mut abuf,
            query("DEALLOCATE \"S2\""),
            "E(25P02)Z(E)",
            "deallocate in a failed transaction",
        )
        .await;
        step(
            &mut a,
            &mut abuf,
            query("ROLLBACK"),
            "C(ROLLBACK)Z(I)",
            "rollback",
        )
        .await;
        step(
            &mut a,
            &mut abuf,
            run("S2"),
            "2D(4)C(SELECT 1)Z(I)",
            "S2 stays",
        )
        .await;
        // Unquoted names fold to lower case, as in PostgreSQL: "S2" is not s2.
        step(
            &mut a,
            &mut abuf,
            query("DEALLOCATE S2"),
            "E(26000)Z(I)",
            "s2 is not S2",
        )
        .await;
        // Pipelined behind a running query: answered after it, with its status.
        step(
            &mut a,
            &mut abuf,
            prepare_and_run("s3", "SELECT 5"),
            "12D(5)C(SELECT 1)Z(I)",
            "a prepares s3",
        )
        .await;
        let mut out = query("SELECT 6");
        out.extend(query("DEALLOCATE s3"));
        step(
            &mut a,
            &mut abuf,
            out,
            "TD(6)C(SELECT 1)Z(I)",
            "the query before",
        )
        .await;
        assert_eq!(
            replies(&mut a, &mut abuf).await,
            "C(DEALLOCATE)Z(I)",
            "{}",
            ctx("pipelined deallocate")
        );
        step(&mut a, &mut abuf, run("s3"), "E(26000)Z(I)", "s3 is gone").await;
        // SQL-level statements are the server's business.
        step(
            &mut a,
            &mut abuf,
            query("PREPARE q AS SELECT 7"),
            "C(PREPARE)Z(I)",
            "SQL PREPARE",
        )
        .await;
        step(
            &mut a,
            &mut abuf,
            query("EXECUTE q"),
            "TD(7)C(SELECT 1)Z(I)",
            "SQL EXECUTE",
        )
        .await;
        step(
            &mut a,
            &mut abuf,
            query("DEALLOCATE q"),
            "C(DEALLOCATE)Z(I)",
            "SQL DEALLOCATE",
        )
        .await;
        step(
            &mut a,
            &mut abuf,
            query("DEALLOCATE nosuch"),
            "E(26000)Z(I)",
            "unknown name",
        )
        .await;
        step(
            &mut b,
            &mut bbuf,
            run("s1"),
            "2D(2)C(SELECT 1)Z(I)",
            "b's s1 still there",
        )
        .await;
        proxy.shutdown().await;
    }
}

/// The protocol-level name tokio-postgres gave `s` (`s0`, `s1`...; shown only by `Debug`).
fn statement_name(s: &tokio_postgres::Statement) -> String {
    let debug = format!("{s:?}");
    let start = debug.find("name: \"").expect("name field") + "name: \"".len();
    let len = debug[start..].find('"').expect("end of name");
    debug[start..start + len].to_owned()
}

/// The same with a real client: tokio-postgres prepares, deallocates with SQL (simple
/// protocol), and its statement is gone; inside a transaction block too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_deallocate_with_tokio_postgres() {
    let proxy = world("prep_sqldealloc_tp", 2).await;
    let mut c = connect(&proxy, "app.acme", "acme").await;
    let other = connect(&proxy, "app.acme", "acme").await;
    let theirs = other
        .prepare("SELECT v FROM kv WHERE k = $1")
        .await
        .expect("prepare");
    let s = c
        .prepare("SELECT v FROM kv WHERE k = $1")
        .await
        .expect("prepare");
    assert_eq!(
        c.query_one(&s, &[&1i32])
            .await
            .expect("run")
            .get::<_, String>(0),
        "one"
    );
    c.batch_execute(&format!("DEALLOCATE {}", statement_name(&s)))
        .await
        .expect("DEALLOCATE of the client's statement");
    let e = c.query_one(&s, &[&1i32]).await.expect_err("deallocated");
    assert_eq!(sqlstate(&e), "26000", "{e}");
    let tx = c.transaction().await.expect("begin");
    let s = tx
        .prepare("SELECT v FROM kv WHERE k = $1")
        .await
        .expect("prepare");
    tx.batch_execute(&format!("DEALLOCATE PREPARE {}", statement_name(&s)))
        .await
        .expect("DEALLOCATE in a transaction");
    let e = tx.query_one(&s, &[&2i32]).await.expect_err("deallocated");
    assert_eq!(sqlstate(&e), "26000", "{e}");
    tx.rollback().await.expect("rollback");
    assert_eq!(
        other
            .query_one(&theirs, &[&2i32])
            .await
            .expect("the other client's statement")
            .get::<_, String>(0),
        "two"
    );
    proxy.shutdown().await;
}

/// PostgreSQL refuses a prepared `SELECT *` after the table's columns change (`0A000` "cached
/// plan must not change result type"); a driver then prepares the same SQL again and it works.
/// Through pgtenant the client sees that error, and the statement prepared again works on
/// every server connection, including one that holds the stale plan but never reported it;
/// statements prepared before the change keep failing, as on PostgreSQL.
async fn stale_plan_is_reported_once_then_parsed_again(pool_size: usize) {
    let db = unique(&format!("prep_stale_{pool_size}"));
    create_db(&db, "CREATE TABLE t (a int); INSERT INTO t VALUES (1);");
    let proxy = start_proxy(&config_text(&tenant_toml(
        "acme",
        "database",
        &db,
        &format!("pool_size = {pool_size}"),
    )))
    .await;
    let sql = "SELECT * FROM t";
    let clients = [
        connect(&proxy, "app.acme", "acme").await,
        connect(&proxy, "app.acme", "acme").await,
    ];
    // Every server connection prepares the statement: with two, the clients' transactions
    // overlap (with one, they take turns).
    let overlapping = if pool_size >= 2 { 2 } else { 0 };
    let mut old = Vec::new();
    for c in &clients[..overlapping] {
        c.batch_execute("BEGIN").await.expect("begin");
    }
    for c in &clients {
        let s = c.prepare(sql).await.expect("prepare");
        assert_eq!(c.query(&s, &[]).await.expect("run")[0].len(), 1);
        old.push(s);
    }
    for c in &clients[..overlapping] {
        c.batch_execute("COMMIT").await.expect("commit");
    }
    cluster()
        .psql(&db, "ALTER TABLE t ADD COLUMN b int DEFAULT 2")
        .expect("alter table");
    // The first client's old statement: PostgreSQL's error, once.
    let e = clients[0]
        .query(&old[0], &[])
        .await
        .expect_err("the plan changed");
    assert_eq!(sqlstate(&e), "0A000", "{e}");
    assert_eq!(
        e.as_db_error().map(|d| d.message()),
        Some("cached plan must not change result type"),
        "{e:?}"
    );
    // Prepared again (as drivers do), it works, on every server connection.
    for round in 0..3 {
        for c in &clients[..overlapping] {
            c.batch_execute("BEGIN").await.expect("begin");
        }
        for (i, c) in clients.iter().enumerate() {
            let s = c
                .prepare(sql)
                .await
                .unwrap_or_else(|e| panic!("client {i} round {round}: prepare again: {e:?}"));
            let rows = c
                .query(&s, &[])
                .await
                .unwrap_or_else(|e| panic!("client {i} round {round}: run again: {e:?}"));
            assert_eq!(rows[0].len(), 2, "the new column is there");
            assert_eq!(rows[0].get::<_, i32>(1), 2);
        }
        for c in &clients[..overlapping] {
            c.batch_execute("COMMIT").await.expect("commit");
        }
    }
    // Statements prepared before the change still fail, as on PostgreSQL (the clients' result
    // descriptions are out of date): the first client's again, the second client's although
    // the server statement behind it was parsed again meanwhile.
    for (i, (c, s)) in clients.iter().zip(&old).enumerate() {
        let e = c
            .query(s, &[])
            .await
            .expect_err("prepared before the change");
        assert_eq!(sqlstate(&e), "0A000", "client {i}: {e:?}");
        assert_eq!(
            e.as_db_error().and_then(|d| d.routine()),
            Some("RevalidateCachedQuery"),
            "client {i}: drivers recognise it by its routine: {e:?}"
        );
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_plan_one_server_connection() {
    stale_plan_is_reported_once_then_parsed_again(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_plan_two_server_connections() {
    stale_plan_is_reported_once_then_parsed_again(2).await;
}

/// A Close of a statement in a batch where an earlier message fails is skipped by the server
/// (it skips to the Sync), so it closes nothing: the statement still runs afterwards, as on a
/// direct connection. A Close that runs closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_skipped_after_an_error_closes_nothing() {
    let proxy = placement_world("prep_close_skipped", "database", 1).await;
    let (mut s, mut buf) = raw_client(&proxy).await;
    let prepared = exchange(&mut s, &mut buf, &prepare_and_run("s1", "SELECT 1")).await;
    assert_eq!(prepared, "12D(1)C(SELECT 1)Z(I)");
    // One write: a Parse the server rejects, a Close of s1, Sync.
    let mut out = Vec::new();
    msg(&mut out, b'P', b"\0SELEC 1\0\0\0");
    msg(&mut out, b'C', b"Ss1\0");
    msg(&mut out, b'S', b"");
    assert_eq!(exchange(&mut s, &mut buf, &out).await, "E(42601)Z(I)");
    assert_eq!(
        exchange(&mut s, &mut buf, &run("s1")).await,
        "2D(1)C(SELECT 1)Z(I)",
        "the skipped Close closed nothing"
    );
    let mut out = Vec::new();
    msg(&mut out, b'C', b"Ss1\0");
    msg(&mut out, b'S', b"");
    assert_eq!(exchange(&mut s, &mut buf, &out).await, "3Z(I)");
    assert_eq!(exchange(&mut s, &mut buf, &run("s1")).await, "E(26000)Z(I)");
    proxy.shutdown().await;
}
