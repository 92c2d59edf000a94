//! Every error pgtenant sends itself, with its SQLSTATE, and upstream errors forwarded as-is.

mod common;
use common::*;
use std::io::{Read, Write};

async fn setup(tag: &str, extra: &str) -> pgtenant::server::Proxy {
    let db = unique(&format!("erp_{tag}"));
    create_db(
        &db,
        "CREATE TABLE items (name text); INSERT INTO items VALUES ('row');",
    );
    let toml = config_text(&format!(
        r#"
[tenants.acme]
placement = "database"
shard = "main"
database = "{db}"

[tenants.frozen]
placement = "database"
shard = "main"
database = "{db}"
status = "suspended"

[tenants.nodb]
placement = "database"
shard = "main"
database = "does_not_exist_{tag}"

[users.limited]
password = "{verifier}"
tenants = ["globex"]
{extra}"#,
        verifier = verifier()
    ));
    start_proxy(&toml).await
}

async fn connect_err(proxy: &pgtenant::server::Proxy, user: &str, db: &str) -> (String, String) {
    match try_connect(client_config(proxy, user, db)).await {
        Ok(_) => panic!("{user}/{db} should be refused"),
        Err(e) => (
            sqlstate(&e),
            e.as_db_error()
                .map(|d| d.message().to_owned())
                .unwrap_or_default(),
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_errors_have_precise_sqlstates() {
    let proxy = setup("le", "").await;
    let (code, msg) = connect_err(&proxy, "app.nobody", "nobody").await;
    assert_eq!(code, "3D000");
    assert!(msg.contains("tenant \"nobody\" does not exist"), "{msg}");

    let (code, msg) = connect_err(&proxy, "app.frozen", "frozen").await;
    assert_eq!(code, "28000");
    assert!(msg.contains("suspended"), "{msg}");

    let (code, msg) = connect_err(&proxy, "app.acme", "globex").await;
    assert_eq!(code, "28000");
    assert!(
        msg.contains("user says \"acme\"") && msg.contains("database says \"globex\""),
        "{msg}"
    );

    let mut cfg = client_config(&proxy, "app.acme", "acme");
    cfg.password("wrong");
    let e = try_connect(cfg).await.expect_err("wrong password refused");
    assert_eq!(sqlstate(&e), "28P01");

    let mut cfg = client_config(&proxy, "ghost.acme", "acme");
    cfg.password("whatever");
    let e = try_connect(cfg).await.expect_err("unknown user refused");
    assert_eq!(sqlstate(&e), "28P01");

    let (code, msg) = connect_err(&proxy, "limited.acme", "acme").await;
    assert_eq!(code, "28000");
    assert!(msg.contains("may not use tenant \"acme\""), "{msg}");

    let mut cfg = client_config(&proxy, "app.acme", "acme");
    cfg.options("-c app.current_tenant=globex");
    let e = try_connect(cfg).await.expect_err("GUC in options refused");
    assert_eq!(sqlstate(&e), "28000");

    // No tenant at all.
    let (code, _) = connect_err(&proxy, "app", "app").await;
    assert_eq!(code, "3D000");

    // The shard's own error is forwarded unchanged.
    let (code, msg) = connect_err(&proxy, "app.nodb", "nodb").await;
    assert_eq!(code, "3D000");
    assert!(
        msg.contains("database \"does_not_exist_le\" does not exist"),
        "{msg}"
    );

    // And a good login still works.
    let c = connect(&proxy, "app.acme", "acme").await;
    assert_eq!(item_names(&c).await, ["row"]);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_statement_errors_are_forwarded_and_session_goes_on() {
    let proxy = setup("ue", "").await;
    let c = connect(&proxy, "app.acme", "acme").await;
    let e = c
        .query("SELECT * FROM no_such_table", &[])
        .await
        .expect_err("fails");
    assert_eq!(sqlstate(&e), "42P01");
    let e = c.batch_execute("SELECT 1/0").await.expect_err("fails");
    assert_eq!(sqlstate(&e), "22012");
    assert_eq!(item_names(&c).await, ["row"]);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_clients_gets_53300() {
    let proxy = setup("tm", "").await;
    drop(proxy);
    let db = unique("erp_tm2");
    create_db(&db, "");
    let toml = config_text(&tenant_toml("acme", "database", &db, "")).replace(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"\nmax_client_conn = 2\nmax_tenant_clients = 1",
    );
    let proxy = start_proxy(&toml).await;
    let _a = connect(&proxy, "app.acme", "acme").await;
    let (code, msg) = connect_err(&proxy, "app.acme", "acme").await;
    assert_eq!(code, "53300");
    assert!(msg.contains("max_tenant_clients"), "{msg}");
    let _b = try_connect(client_config(&proxy, "app.nobody", "nobody")).await;
    // Two sockets are taken now (one logged in, one refused and gone); fill the second.
    let _c = std::net::TcpStream::connect(proxy.addr()).expect("tcp");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (code, msg) = connect_err(&proxy, "app.acme", "acme").await;
    assert_eq!(code, "53300");
    assert!(msg.contains("max_client_conn"), "{msg}");
    proxy.shutdown().await;
}

/// Reads one ErrorResponse from a raw socket and returns its SQLSTATE.
fn raw_error_code(stream: &mut std::net::TcpStream) -> String {
    let mut buf = Vec::new();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("timeout");
    let _ = stream.read_to_end(&mut buf);
    assert_eq!(
        buf.first(),
        Some(&b'E'),
        "expected an ErrorResponse, got {buf:?}"
    );
    let body = &buf[5..];
    let mut i = 0;
    while i < body.len() && body[i] != 0 {
        let end = i + 1 + body[i + 1..].iter().position(|b| *b == 0).expect("cstr");
        if body[i] == b'C' {
            return String::from_utf8_lossy(&body[i + 1..end]).into_owned();
        }
        i = end + 1;
    }
    panic!("no SQLSTATE in {buf:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_startup_gets_08p01() {
    let proxy = setup("ms", "").await;
    let addr = proxy.addr();
    let code = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).expect("tcp");
        // Protocol 3.0 startup whose parameter list is not terminated.
        let mut pkt = vec![0, 0, 0, 0, 0, 3, 0, 0];
        pkt.extend_from_slice(b"user\0app");
        let len = pkt.len() as u32;
        pkt[..4].copy_from_slice(&len.to_be_bytes());
        s.write_all(&pkt).expect("write");
        raw_error_code(&mut s)
    })
    .await
    .expect("join");
    assert_eq!(code, "08P01");
    let code = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).expect("tcp");
        // Protocol 2.0 is long gone.
        s.write_all(&[0, 0, 0, 8, 0, 2, 0, 0]).expect("write");
        raw_error_code(&mut s)
    })
    .await
    .expect("join");
    assert_eq!(code, "08P01");
    // The proxy still serves others.
    let c = connect(&proxy, "app.acme", "acme").await;
    assert_eq!(item_names(&c).await, ["row"]);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_shard_fails_only_its_tenants() {
    let dead_port = pgtenant::testing::free_port().expect("port");
    let proxy = setup(
        "us",
        &format!(
            r#"
{dead}
[tenants.lost]
placement = "database"
shard = "dead"
database = "lost"
"#,
            dead = pgtenant::testing::shard_toml("dead", dead_port, "pgtenant", "x")
        ),
    )
    .await;
    let (code, msg) = connect_err(&proxy, "app.lost", "lost").await;
    assert_eq!(code, "08001");
    assert!(msg.contains("shard \"dead\""), "{msg}");
    let c = connect(&proxy, "app.acme", "acme").await;
    assert_eq!(item_names(&c).await, ["row"]);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_wait_timeout_gets_57014() {
    let db = unique("erp_qw");
    create_db(&db, "");
    let toml = config_text(&tenant_toml("acme", "database", &db, "pool_size = 1"))
        .replace("query_wait_timeout = 10", "query_wait_timeout = 0.5");
    let proxy = start_proxy(&toml).await;
    let holder = connect(&proxy, "app.acme", "acme").await;
    holder.batch_execute("BEGIN").await.expect("begin");
    let waiter = connect(&proxy, "app.acme", "acme").await;
    let e = waiter
        .batch_execute("SELECT 1")
        .await
        .expect_err("times out");
    assert_eq!(sqlstate(&e), "57014");
    holder.batch_execute("COMMIT").await.expect("commit");
    let again = connect(&proxy, "app.acme", "acme").await;
    again
        .batch_execute("SELECT 1")
        .await
        .expect("pool free again");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_server_connection_fails_only_its_client() {
    let proxy = setup("term", "").await;
    let victim = connect(&proxy, "app.acme", "acme").await;
    victim.batch_execute("BEGIN").await.expect("begin");
    let pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    let bystander = connect(&proxy, "app.acme", "acme").await;
    cluster()
        .psql("postgres", &format!("SELECT pg_terminate_backend({pid})"))
        .expect("terminate");
    let e = victim
        .batch_execute("SELECT 1")
        .await
        .expect_err("the victim's session fails");
    let code = e.code().map(|c| c.code().to_owned());
    assert!(
        matches!(code.as_deref(), Some("57P01") | Some("08006") | None),
        "{e:?}"
    );
    assert_eq!(item_names(&bystander).await, ["row"]);
    let again = connect(&proxy, "app.acme", "acme").await;
    assert_eq!(item_names(&again).await, ["row"]);
    proxy.shutdown().await;
}

/// A Parse whose statement text lacks its terminator gets `08P01` from pgtenant itself, in
/// session mode as in transaction mode (PostgreSQL would end its session over it, and say
/// "invalid string in message"), and the tenant's next client is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unterminated_parse_text_gets_08p01_from_pgtenant() {
    use postgres_protocol::message::backend::Message;
    use tokio::io::AsyncWriteExt;
    for mode in ["transaction", "session"] {
        let db = unique("erp_badparse");
        create_db(&db, "");
        let extra = format!("pool_mode = \"{mode}\"\npool_size = 1");
        let proxy = start_proxy(&config_text(&tenant_toml("acme", "database", &db, &extra))).await;
        let mut s = tokio::net::TcpStream::connect(proxy.addr())
            .await
            .expect("tcp");
        let mut buf = bytes::BytesMut::new();
        raw_login(&mut s, &mut buf, "app.acme", Some("acme")).await;
        // Parse: unnamed statement, then a text without its NUL, then Sync.
        let body = b"\0SELECT 1";
        let mut msg = vec![b'P'];
        msg.extend_from_slice(&(4 + body.len() as i32).to_be_bytes());
        msg.extend_from_slice(body);
        msg.extend_from_slice(b"S\0\0\0\x04");
        s.write_all(&msg).await.expect("write");
        let (code, message) = loop {
            if let Message::ErrorResponse(e) = read_msg(&mut s, &mut buf).await {
                let mut fields = e.fields();
                let (mut code, mut message) = (String::new(), String::new());
                while let Some(f) =
                    fallible_iterator::FallibleIterator::next(&mut fields).expect("fields")
                {
                    match f.type_() {
                        b'C' => code = String::from_utf8_lossy(f.value_bytes()).into_owned(),
                        b'M' => message = String::from_utf8_lossy(f.value_bytes()).into_owned(),
                        _ => {}
                    }
                }
                break (code, message);
            }
        };
        assert_eq!(code, "08P01", "{mode}: {message}");
        assert!(
            message.contains("malformed 'P' message"),
            "{mode}: {message}"
        );
        drop(s);
        let client = connect(&proxy, "app.acme", "acme").await;
        let rows = client.simple_query("SELECT 1").await.expect("next client");
        assert!(!rows.is_empty(), "{mode}");
        proxy.shutdown().await;
    }
}
