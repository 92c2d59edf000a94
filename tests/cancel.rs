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
