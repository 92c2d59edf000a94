//! Cancel requests reach only the server connection serving the cancelling client, at that
//! moment; psql's Ctrl-C works through the proxy.

mod common;
use common::*;
use std::time::{Duration, Instant};
use tokio_postgres::NoTls;

async fn proxy_with_pool_of_one() -> pgtenant::server::Proxy {
    let db = unique("erp_cancel");
    create_db(&db, "");
    start_proxy(&config_text(&tenant_toml(
        "acme",
        "database",
        &db,
        "pool_size = 1",
    )))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_running_query() {
    let proxy = proxy_with_pool_of_one().await;
    let c = connect(&proxy, "app.acme", "acme").await;
    let token = c.cancel_token();
    let started = Instant::now();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(NoTls).await
    });
    let e = c
        .batch_execute("SELECT pg_sleep(30)")
        .await
        .expect_err("canceled");
    assert_eq!(sqlstate(&e), "57014");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    canceller.await.expect("join").expect("cancel sent");
    // The session and its server connection are fine afterwards.
    c.batch_execute("SELECT 1").await.expect("usable");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_clients_cancel_does_not_hit_the_next_user_of_its_server() {
    let proxy = proxy_with_pool_of_one().await;
    let b = connect(&proxy, "app.acme", "acme").await;
    b.batch_execute("SELECT 1")
        .await
        .expect("b used the only server connection");
    let b_token = b.cancel_token();
    let a = connect(&proxy, "app.acme", "acme").await;
    let a_query = tokio::spawn(async move { a.batch_execute("SELECT pg_sleep(1.5)").await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    // b has no query running: its cancel must not reach a's query on the same server.
    b_token.cancel_query(NoTls).await.expect("cancel sent");
    // A forged key goes nowhere either.
    let addr = proxy.addr();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(addr).expect("tcp");
        let mut pkt = vec![0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e];
        pkt.extend_from_slice(&1i32.to_be_bytes());
        pkt.extend_from_slice(&12345i32.to_be_bytes());
        s.write_all(&pkt).expect("write");
    })
    .await
    .expect("join");
    a_query
        .await
        .expect("join")
        .expect("a's query must finish uncanceled");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_ctrl_c_cancels_within_a_second() {
    let proxy = proxy_with_pool_of_one().await;
    let mut child = std::process::Command::new("psql")
        .args(["-X", "-v", "ON_ERROR_STOP=1"])
        .arg(format!(
            "host=127.0.0.1 port={} user=app.acme dbname=acme",
            proxy.addr().port()
        ))
        .args(["-c", "SELECT pg_sleep(30)"])
        .env("PGPASSWORD", CLIENT_PASSWORD)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("psql");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent = Instant::now();
    // SAFETY: sending SIGINT to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = tokio::task::spawn_blocking(move || {
        let status = child.wait().expect("wait");
        let mut err = String::new();
        use std::io::Read;
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status, err)
    })
    .await
    .expect("join");
    let took = sent.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "psql took {took:?} after Ctrl-C"
    );
    assert!(!out.0.success());
    assert!(
        out.1.contains("canceling statement due to user request"),
        "{}",
        out.1
    );
    proxy.shutdown().await;
}

/// Every server connection is busy, so a request waits in the pool queue: a cancel reaches it
/// there. The client gets PostgreSQL's `57014` at once (not `query_wait_timeout` later) for a
/// simple and for an extended-protocol request, and its session carries on. A cancel sent
/// while the client waits for nothing does not cancel its next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_a_request_waiting_for_a_server_connection() {
    let proxy = proxy_with_pool_of_one().await;
    let waiter = connect(&proxy, "app.acme", "acme").await;
    let holder = connect(&proxy, "app.acme", "acme").await;
    holder
        .batch_execute("BEGIN")
        .await
        .expect("holder takes the only server connection");
    for extended in [false, true] {
        let token = waiter.cancel_token();
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            token.cancel_query(NoTls).await
        });
        let started = Instant::now();
        let e = if extended {
            waiter.query_one("SELECT $1::int", &[&1]).await.map(drop)
        } else {
            waiter.batch_execute("SELECT 1").await
        }
        .expect_err("the waiting request is canceled");
        assert_eq!(sqlstate(&e), "57014", "extended: {extended}: {e:?}");
        let took = started.elapsed();
        // query_wait_timeout is 10 s in these tests.
        assert!(
            took < Duration::from_secs(3),
            "extended: {extended}: {took:?}"
        );
        canceller.await.expect("join").expect("cancel sent");
    }
    holder.batch_execute("COMMIT").await.expect("commit");
    let row = waiter
        .query_one("SELECT $1::int + 1", &[&41])
        .await
        .expect("the session carries on (extended)");
    assert_eq!(row.get::<_, i32>(0), 42);
    let rows = waiter
        .simple_query("SELECT 'still here'")
        .await
        .expect("the session carries on (simple)");
    let text: Vec<_> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(text, ["still here"]);

    // Now a cancel while the waiter waits for nothing: it must not stick to its next request.
    holder.batch_execute("BEGIN").await.expect("begin again");
    waiter
        .cancel_token()
        .cancel_query(NoTls)
        .await
        .expect("cancel sent");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let next = tokio::spawn(async move {
        let row = waiter.query_one("SELECT $1::int", &[&7]).await?;
        Ok::<i32, tokio_postgres::Error>(row.get(0))
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    holder.batch_execute("COMMIT").await.expect("commit again");
    assert_eq!(
        next.await
            .expect("join")
            .expect("the next request is not canceled"),
        7
    );
    proxy.shutdown().await;
}

/// The cancelled request is dropped message by message as it arrives, and only it: a simple
/// Query whose text is still arriving when the cancel comes, then an extended-protocol batch
/// and a Query pipelined behind it, which run once a server connection is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_waiting_request_is_dropped_and_only_it() {
    use bytes::BytesMut;
    use postgres_protocol::message::{backend::Message, frontend};
    use tokio::io::AsyncWriteExt;

    let proxy = proxy_with_pool_of_one().await;
    let mut s = tokio::net::TcpStream::connect(proxy.addr())
        .await
        .expect("connect");
    let mut buf = BytesMut::new();
    let (pid, secret) = raw_login(&mut s, &mut buf, "app.acme", Some("acme")).await;
    let holder = connect(&proxy, "app.acme", "acme").await;
    holder
        .batch_execute("BEGIN")
        .await
        .expect("holder takes the only server connection");

    let mut first = BytesMut::new();
    frontend::query("SELECT 'cancelled'", &mut first).expect("query");
    let mut rest = BytesMut::new();
    frontend::parse("", "SELECT 'extended'", [], &mut rest).expect("parse");
    frontend::bind(
        "",
        "",
        [],
        [],
        |_: (),
         _: &mut BytesMut|
         -> Result<postgres_protocol::IsNull, Box<dyn std::error::Error + Sync + Send>> {
            unreachable!()
        },
        [],
        &mut rest,
    )
    .map_err(|_| ())
    .expect("bind");
    frontend::execute("", 0, &mut rest).expect("execute");
    frontend::sync(&mut rest);
    frontend::query("SELECT 'simple'", &mut rest).expect("query");

    // The Query's header and part of its text: enough to wait for a server connection.
    s.write_all(&first[..8]).await.expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut cancel = BytesMut::new();
    frontend::cancel_request(pid, secret, &mut cancel);
    let mut c = tokio::net::TcpStream::connect(proxy.addr())
        .await
        .expect("connect for cancel");
    c.write_all(&cancel).await.expect("cancel");
    drop(c);
    let Message::ErrorResponse(e) = read_msg(&mut s, &mut buf).await else {
        panic!("expected the cancel's ErrorResponse");
    };
    let mut fields = e.fields();
    let mut code = Vec::new();
    while let Some(f) = fallible_iterator::FallibleIterator::next(&mut fields).expect("fields") {
        if f.type_() == b'C' {
            code = f.value_bytes().to_vec();
        }
    }
    assert_eq!(code, b"57014");
    // The rest of the cancelled Query arrives with the requests behind it.
    let mut tail = BytesMut::from(&first[8..]);
    tail.extend_from_slice(&rest);
    s.write_all(&tail).await.expect("write");
    let Message::ReadyForQuery(_) = read_msg(&mut s, &mut buf).await else {
        panic!("expected ReadyForQuery after the cancelled Query");
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    holder.batch_execute("COMMIT").await.expect("commit");
    let mut rows = Vec::new();
    let mut ready = 0;
    while ready < 2 {
        match read_msg(&mut s, &mut buf).await {
            Message::DataRow(r) => {
                let body = r.buffer();
                // One column: its length, then its text.
                rows.push(String::from_utf8_lossy(&body[4..]).into_owned());
            }
            Message::ReadyForQuery(_) => ready += 1,
            Message::ErrorResponse(_) => panic!("a pipelined request failed"),
            _ => {}
        }
    }
    assert_eq!(rows, ["extended", "simple"]);
    proxy.shutdown().await;
}
