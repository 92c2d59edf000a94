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
