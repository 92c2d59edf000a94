//! Malformed and unusual frontend traffic after a valid login, over raw TCP, with real
//! PostgreSQL behind the proxy: invalid lengths, unknown tags, truncation, startup-phase
//! packets, COPY messages outside COPY, unknown statements and portals, Sync/Flush storms,
//! malformed Parse/Bind/FunctionCall, a 1 MB query, and a seeded randomized phase.
//!
//! Every test runs a transaction-mode proxy with `default_pool_size = 1` (each pool has one
//! server connection, used by every client in turn) and two healthy tokio-postgres clients of
//! other tenants (one per pool) querying in a loop alongside. After each case: a new client
//! of the attacked tenant gets its rows, the pooled connection is clean (no transaction, no
//! prepared statements but pgtenant's own, no cursors, the right tenant context), and at the
//! end the healthy clients never saw an error or a foreign row, and the proxy never panicked.
//!
//! `RUST_LOG=pgtenant=debug cargo test --test malformed -- --nocapture` shows the proxy's log.

mod common;
use common::*;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every read from the proxy must produce something within this long (or the test fails).
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The shared-placement tenant under attack, and the healthy one beside it (same pool).
const SHARED: &str = "acme";
const SHARED_PEER: &str = "globex";
/// The database-placement tenant under attack, and the healthy one beside it (same database,
/// so the same pool).
const DATABASE: &str = "initech";
const DATABASE_PEER: &str = "hooli";
const BOTH_PEERS: &[&str] = &[SHARED_PEER, DATABASE_PEER];

// ---------------------------------------------------------------------------------------
// Panics anywhere in the proxy (its tasks run on the runtime's worker threads).

static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static HOOK: Once = Once::new();

fn watch_panics() {
    HOOK.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .with_ansi(false)
            .try_init();
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            if thread
                .name()
                .is_some_and(|n| n.starts_with("tokio-runtime-worker"))
            {
                PANICS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(info.to_string());
            }
            default(info);
        }));
    });
}

fn assert_no_panics() {
    let panics = PANICS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(panics.is_empty(), "the proxy panicked: {panics:#?}");
}

// ---------------------------------------------------------------------------------------
// Frontend messages, built by hand.

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn cstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
    out.push(0);
}

fn query(sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, sql.as_bytes());
    msg(b'Q', &b)
}

fn parse(name: &str, sql: &[u8], types: &[u32]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, name.as_bytes());
    cstr(&mut b, sql);
    b.extend_from_slice(&(types.len() as i16).to_be_bytes());
    for t in types {
        b.extend_from_slice(&t.to_be_bytes());
    }
    msg(b'P', &b)
}

/// Bind with text-format parameters (no format codes) and text results.
fn bind(portal: &str, stmt: &str, params: &[Option<&[u8]>]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal.as_bytes());
    cstr(&mut b, stmt.as_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for p in params {
        match p {
            Some(v) => {
                b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                b.extend_from_slice(v);
            }
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    b.extend_from_slice(&0i16.to_be_bytes());
    msg(b'B', &b)
}

fn describe(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    cstr(&mut b, name.as_bytes());
    msg(b'D', &b)
}

fn close(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    cstr(&mut b, name.as_bytes());
    msg(b'C', &b)
}

fn execute(portal: &str, max_rows: i32) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal.as_bytes());
    b.extend_from_slice(&max_rows.to_be_bytes());
    msg(b'E', &b)
}

const SYNC: &[u8] = b"S\0\0\0\x04";
const FLUSH: &[u8] = b"H\0\0\0\x04";
const TERMINATE: &[u8] = b"X\0\0\0\x04";

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Startup-phase packets (no tag byte): SSLRequest, GSSENCRequest, CancelRequest, and a
/// StartupMessage.
fn startup_phase_packets(tenant: &str) -> Vec<(&'static str, Vec<u8>)> {
    let mut startup = BytesMut::new();
    postgres_protocol::message::frontend::startup_message(
        [
            ("user", format!("app.{tenant}").as_str()),
            ("database", tenant),
        ],
        &mut startup,
    )
    .expect("startup");
    vec![
        ("SSLRequest", vec![0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]),
        ("GSSENCRequest", vec![0, 0, 0, 8, 4, 0xd2, 0x16, 0x30]),
        (
            "CancelRequest",
            vec![0, 0, 0, 16, 4, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 0, 0, 0, 2],
        ),
        ("StartupMessage", startup.to_vec()),
    ]
}

// ---------------------------------------------------------------------------------------
// Backend messages.

/// Field types an ErrorResponse/NoticeResponse may carry (protocol docs, "Error and Notice
/// Message Fields").
const KNOWN_FIELDS: &[u8] = b"SVCMDHPpqWstcdnFLR";

#[derive(Clone)]
struct Msg {
    tag: u8,
    body: Bytes,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.tag {
            b'E' | b'N' => write!(f, "{}{:?}", self.tag as char, self.fields()),
            b'Z' => write!(f, "Z({})", self.body.first().map_or('?', |b| *b as char)),
            b'D' => write!(f, "D{:?}", self.values()),
            _ => write!(f, "{}", self.tag as char),
        }
    }
}

impl Msg {
    /// The fields of an ErrorResponse or NoticeResponse, as they parse.
    fn fields(&self) -> Vec<(char, String)> {
        let mut out = Vec::new();
        let mut b = &self.body[..];
        while let Some((&t, rest)) = b.split_first() {
            if t == 0 {
                break;
            }
            let end = rest.iter().position(|c| *c == 0).unwrap_or(rest.len());
            out.push((
                t as char,
                String::from_utf8_lossy(&rest[..end]).into_owned(),
            ));
            b = rest.get(end + 1..).unwrap_or(&[]);
        }
        out
    }

    fn field(&self, t: char) -> String {
        self.fields()
            .into_iter()
            .find(|(k, _)| *k == t)
            .map(|(_, v)| v)
            .unwrap_or_default()
    }

    fn code(&self) -> String {
        self.field('C')
    }

    fn message(&self) -> String {
        self.field('M')
    }

    fn severity(&self) -> String {
        self.field('S')
    }

    /// An ErrorResponse that parses as the protocol says: only known field types, each a
    /// C string, a severity, a 5-character SQLSTATE and a message, and nothing after the
    /// terminator.
    fn assert_well_formed_error(&self, ctx: &str) {
        assert_eq!(self.tag, b'E', "{ctx}: not an ErrorResponse: {self:?}");
        let mut b = &self.body[..];
        let mut types = Vec::new();
        loop {
            let (&t, rest) = b
                .split_first()
                .unwrap_or_else(|| panic!("{ctx}: ErrorResponse without terminator: {self:?}"));
            if t == 0 {
                assert!(
                    rest.is_empty(),
                    "{ctx}: bytes after the ErrorResponse terminator: {:?}",
                    self.body
                );
                break;
            }
            let end = rest
                .iter()
                .position(|c| *c == 0)
                .unwrap_or_else(|| panic!("{ctx}: unterminated field: {:?}", self.body));
            assert!(
                std::str::from_utf8(&rest[..end]).is_ok(),
                "{ctx}: field {} is not UTF-8: {:?}",
                t as char,
                self.body
            );
            types.push(t);
            b = &rest[end + 1..];
        }
        for t in &types {
            assert!(
                KNOWN_FIELDS.contains(t),
                "{ctx}: unknown field type {:?} in ErrorResponse {:?} (raw body {:?})",
                *t as char,
                self.fields(),
                self.body
            );
        }
        assert!(
            types.contains(&b'S') && types.contains(&b'M'),
            "{ctx}: {self:?}"
        );
        assert_eq!(self.code().len(), 5, "{ctx}: {self:?}");
    }

    fn status(&self) -> u8 {
        assert_eq!(self.tag, b'Z', "not ReadyForQuery: {self:?}");
        self.body[0]
    }

    /// The columns of a DataRow, as text.
    fn values(&self) -> Vec<Option<String>> {
        let mut b = &self.body[..];
        if b.len() < 2 {
            return Vec::new();
        }
        let n = b.get_i16();
        (0..n)
            .map(|_| {
                if b.len() < 4 {
                    return None;
                }
                let len = b.get_i32();
                if len < 0 || b.len() < len as usize {
                    return None;
                }
                let v = String::from_utf8_lossy(&b[..len as usize]).into_owned();
                b.advance(len as usize);
                Some(v)
            })
            .collect()
    }

    fn value(&self) -> String {
        assert_eq!(self.tag, b'D', "not a DataRow: {self:?}");
        self.values()
            .into_iter()
            .next()
            .flatten()
            .unwrap_or_default()
    }
}

/// The tags of `msgs`, e.g. "12DCZ".
fn tags(msgs: &[Msg]) -> String {
    msgs.iter().map(|m| m.tag as char).collect()
}

/// A raw protocol connection to the proxy, logged in.
struct Raw {
    s: TcpStream,
    buf: BytesMut,
    closed: bool,
}

impl Raw {
    async fn login(addr: std::net::SocketAddr, tenant: &str) -> Raw {
        let mut s = TcpStream::connect(addr).await.expect("tcp");
        let mut buf = BytesMut::new();
        tokio::time::timeout(
            READ_TIMEOUT,
            raw_login(&mut s, &mut buf, &format!("app.{tenant}"), Some(tenant)),
        )
        .await
        .expect("login within 5 s");
        Raw {
            s,
            buf,
            closed: false,
        }
    }

    /// Writes `bytes`; false if the proxy has closed the connection.
    async fn send(&mut self, bytes: &[u8]) -> bool {
        self.s.write_all(bytes).await.is_ok()
    }

    /// The next message within `wait`: `Ok(None)` if the proxy closed the connection,
    /// `Err(())` if nothing came.
    async fn next_within(&mut self, wait: Duration) -> Result<Option<Msg>, ()> {
        let deadline = Instant::now() + wait;
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                assert!(
                    (4..1 << 30).contains(&len),
                    "proxy sent an invalid message header: {:?}",
                    &self.buf[..5]
                );
                let total = len as usize + 1;
                if self.buf.len() >= total {
                    let mut m = self.buf.split_to(total);
                    let tag = m[0];
                    m.advance(5);
                    return Ok(Some(Msg {
                        tag,
                        body: m.freeze(),
                    }));
                }
            }
            if self.closed {
                assert!(
                    self.buf.is_empty(),
                    "connection closed mid-message: {:?}",
                    self.buf
                );
                return Ok(None);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.s.read_buf(&mut self.buf)).await {
                Err(_) => return Err(()),
                Ok(Ok(0)) | Ok(Err(_)) => self.closed = true,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// The next message; `None` if the connection closed. Fails the test after 5 s.
    async fn next(&mut self, ctx: &str) -> Option<Msg> {
        self.next_within(READ_TIMEOUT)
            .await
            .unwrap_or_else(|()| panic!("{ctx}: the proxy sent nothing for 5 s (hang)"))
    }

    /// Messages up to and including the next ReadyForQuery.
    async fn until_ready(&mut self, ctx: &str) -> Vec<Msg> {
        let mut out = Vec::new();
        loop {
            match self.next(ctx).await {
                Some(m) => {
                    let done = m.tag == b'Z';
                    out.push(m);
                    if done {
                        return out;
                    }
                }
                None => panic!("{ctx}: connection closed after {out:?}"),
            }
        }
    }

    /// Messages until the proxy closes the connection.
    async fn until_closed(&mut self, ctx: &str) -> Vec<Msg> {
        let mut out = Vec::new();
        while let Some(m) = self.next(ctx).await {
            out.push(m);
        }
        out
    }

    /// Nothing arrives within `wait`.
    async fn assert_silent(&mut self, wait: Duration, ctx: &str) {
        if let Ok(m) = self.next_within(wait).await {
            panic!("{ctx}: expected silence, got {m:?}");
        }
    }

    /// Sends `bytes` and returns everything up to the next ReadyForQuery, which must report
    /// `status`.
    async fn exchange(&mut self, bytes: &[u8], status: u8, ctx: &str) -> Vec<Msg> {
        assert!(self.send(bytes).await, "{ctx}: write failed");
        let out = self.until_ready(ctx).await;
        assert_eq!(out.last().map(Msg::status), Some(status), "{ctx}: {out:?}");
        out
    }
}

/// The session ended with a FATAL `08P01` from pgtenant whose message contains `fragment`,
/// and the connection is closed.
fn assert_fatal_08p01(out: &[Msg], fragment: &str, ctx: &str) {
    let last = out
        .last()
        .unwrap_or_else(|| panic!("{ctx}: closed without an error"));
    last.assert_well_formed_error(ctx);
    assert_eq!(
        (last.severity().as_str(), last.code().as_str()),
        ("FATAL", "08P01"),
        "{ctx}: {out:?}"
    );
    assert!(
        last.message().contains(fragment),
        "{ctx}: message {:?} lacks {fragment:?}",
        last.message()
    );
}

/// `out` is exactly one ErrorResponse (severity ERROR, `code`, message containing
/// `fragment`) then ReadyForQuery, after the messages `before` (tags).
fn assert_error_then_ready(out: &[Msg], before: &str, code: &str, fragment: &str, ctx: &str) {
    assert_eq!(tags(out), format!("{before}EZ"), "{ctx}: {out:?}");
    let e = &out[out.len() - 2];
    e.assert_well_formed_error(ctx);
    assert_eq!(
        (e.severity().as_str(), e.code().as_str()),
        ("ERROR", code),
        "{ctx}: {e:?}"
    );
    assert!(
        e.message().contains(fragment),
        "{ctx}: message {:?} lacks {fragment:?}",
        e.message()
    );
}

// ---------------------------------------------------------------------------------------
// The fixture: databases, proxy, healthy clients.

fn rows_of(tenant: &str) -> Vec<String> {
    match tenant {
        SHARED => vec!["acme-1".into(), "acme-2".into()],
        SHARED_PEER => vec!["globex-1".into()],
        // The two database tenants share one database.
        _ => vec!["initech-1".into(), "initech-2".into()],
    }
}

/// What `current_setting('app.current_tenant', true)` says on a tenant's connection.
fn context_of(tenant: &str) -> &str {
    match tenant {
        SHARED | SHARED_PEER => tenant,
        _ => "",
    }
}

struct Healthy {
    tenant: &'static str,
    iterations: u64,
    errors: Vec<String>,
}

struct Fixture {
    proxy: pgtenant::server::Proxy,
    shared_db: String,
    erp_db: String,
    stop: Arc<AtomicBool>,
    loops: Vec<tokio::task::JoinHandle<Healthy>>,
}

/// `healthy`: the tenants whose well-behaved clients query in a loop throughout.
async fn fixture(tag: &str, query_wait_timeout: u32, healthy: &[&'static str]) -> Fixture {
    watch_panics();
    let shared_db = unique(&format!("mal_{tag}_shared"));
    create_shared_db(
        &shared_db,
        &[
            (SHARED, "acme-1"),
            (SHARED, "acme-2"),
            (SHARED_PEER, "globex-1"),
        ],
    );
    let erp_db = unique(&format!("mal_{tag}_erp"));
    create_db(
        &erp_db,
        "CREATE TABLE items (name text); INSERT INTO items VALUES ('initech-1'), ('initech-2');
         CREATE TABLE sink (v text);",
    );
    let mut tenants = String::new();
    for t in [SHARED, SHARED_PEER] {
        tenants.push_str(&tenant_toml(t, "shared", &shared_db, ""));
    }
    for t in [DATABASE, DATABASE_PEER] {
        tenants.push_str(&tenant_toml(t, "database", &erp_db, ""));
    }
    let toml = config_text(&tenants)
        .replace(
            "default_pool_size = 5",
            "default_pool_size = 1\nmode = \"transaction\"",
        )
        .replace(
            "query_wait_timeout = 10",
            &format!("query_wait_timeout = {query_wait_timeout}"),
        );
    assert!(
        toml.contains("default_pool_size = 1")
            && toml.contains(&format!("query_wait_timeout = {query_wait_timeout}")),
        "{toml}"
    );
    let proxy = start_proxy(&toml).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut loops = Vec::new();
    for &tenant in healthy {
        let client = connect(&proxy, &format!("app.{tenant}"), tenant).await;
        loops.push(tokio::spawn(healthy_loop(client, tenant, stop.clone())));
    }
    Fixture {
        proxy,
        shared_db,
        erp_db,
        stop,
        loops,
    }
}

/// A well-behaved client of another tenant: its rows and only its rows, its own tenant
/// context, every time.
async fn healthy_loop(
    client: tokio_postgres::Client,
    tenant: &'static str,
    stop: Arc<AtomicBool>,
) -> Healthy {
    let mut h = Healthy {
        tenant,
        iterations: 0,
        errors: Vec::new(),
    };
    while !stop.load(Ordering::Relaxed) {
        let round = tokio::time::timeout(Duration::from_secs(15), async {
            let names = item_names_checked(&client).await?;
            let ctx: String = client
                .query_one(
                    "SELECT coalesce(current_setting('app.current_tenant', true), '')",
                    &[],
                )
                .await
                .map_err(|e| format!("context: {e:?}"))?
                .get(0);
            let one = client
                .simple_query("SELECT 1")
                .await
                .map_err(|e| format!("simple: {e:?}"))?;
            Ok::<_, String>((names, ctx, one.len()))
        })
        .await;
        let problem = match round {
            Err(_) => Some("no answer within 15 s".to_owned()),
            Ok(Err(e)) => Some(e),
            Ok(Ok((names, ctx, n))) => {
                if names != rows_of(tenant) || ctx != context_of(tenant) || n != 3 {
                    Some(format!(
                        "wrong answer: rows {names:?}, context {ctx:?}, {n} messages"
                    ))
                } else {
                    None
                }
            }
        };
        if let Some(p) = problem
            && h.errors.len() < 10
        {
            h.errors.push(p);
        }
        h.iterations += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h
}

async fn item_names_checked(client: &tokio_postgres::Client) -> Result<Vec<String>, String> {
    Ok(client
        .query("SELECT name FROM items ORDER BY name", &[])
        .await
        .map_err(|e| format!("items: {e:?}"))?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect())
}

/// What [`Fixture::assert_clean`] reads on the pooled connection of `tenant`'s pool: a fresh transaction, no
/// xid, the number of cursors and of prepared statements not pgtenant's, the tenant context
/// and the database. The shared-placement guard refuses `pg_prepared_statements` (the
/// server connection's statements carry other tenants' SQL), so there the count is left out.
fn clean_check(tenant: &str) -> String {
    let statements = match tenant {
        SHARED | SHARED_PEER => "",
        _ => "(SELECT count(*) FROM pg_prepared_statements WHERE name NOT LIKE 'pgt\\_%'), ",
    };
    format!(
        "SELECT now() = statement_timestamp(), \
         pg_current_xact_id_if_assigned() IS NULL, \
         {statements}(SELECT count(*) FROM pg_cursors), \
         coalesce(current_setting('app.current_tenant', true), ''), \
         current_database()"
    )
}

impl Fixture {
    fn db_of(&self, tenant: &str) -> &str {
        match tenant {
            SHARED | SHARED_PEER => &self.shared_db,
            _ => &self.erp_db,
        }
    }

    async fn raw(&self, tenant: &str) -> Raw {
        Raw::login(self.proxy.addr(), tenant).await
    }

    /// After a case: a new client of `tenant` logs in and gets its rows; the one pooled
    /// connection is not in a transaction, holds no prepared statement but pgtenant's own
    /// and no cursor, and carries `tenant`'s context; no backend of the pool's database is
    /// left idle in a transaction (a connection neither closed nor handed on).
    async fn assert_clean(&self, tenant: &str, ctx: &str) {
        let db = self.db_of(tenant).to_owned();
        let stuck = tokio::task::spawn_blocking(move || {
            let sql = format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' \
                 AND usename = 'pgtenant' AND state LIKE 'idle in transaction%'"
            );
            let mut n = String::new();
            for _ in 0..60 {
                n = cluster().psql("postgres", &sql).expect("pg_stat_activity");
                if n == "0" {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            n
        })
        .await
        .expect("psql thread");
        assert_eq!(
            stuck, "0",
            "{ctx}: a server connection stays idle in transaction"
        );
        let check = async {
            let c = connect(&self.proxy, &format!("app.{tenant}"), tenant).await;
            let msgs = c
                .simple_query(&clean_check(tenant))
                .await
                .expect("clean check");
            let row = msgs
                .iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
                    _ => None,
                })
                .expect("a row");
            let got: Vec<&str> = (0..row.len())
                .map(|i| row.get(i).unwrap_or("NULL"))
                .collect();
            let db = self.db_of(tenant);
            let mut want = vec!["t", "t", "0", "0", context_of(tenant), db];
            if matches!(tenant, SHARED | SHARED_PEER) {
                want.remove(2);
            }
            assert_eq!(
                got, want,
                "{ctx}: [fresh transaction, no xid, foreign prepared statements (not in \
                 shared placement), cursors, tenant context, database]"
            );
            c.batch_execute("BEGIN; SELECT 1; COMMIT")
                .await
                .unwrap_or_else(|e| panic!("{ctx}: BEGIN/COMMIT: {e:?}"));
            assert_eq!(item_names(&c).await, rows_of(tenant), "{ctx}: rows");
        };
        tokio::time::timeout(Duration::from_secs(15), check)
            .await
            .unwrap_or_else(|_| panic!("{ctx}: a new client was not served within 15 s"));
    }

    /// No row whose name contains `ghost` was committed in `tenant`'s database.
    fn assert_no_ghost(&self, tenant: &str, ctx: &str) {
        let n = cluster()
            .psql(
                self.db_of(tenant),
                "SELECT count(*) FROM items WHERE name LIKE '%ghost%'",
            )
            .expect("ghost count");
        assert_eq!(n, "0", "{ctx}: an abandoned transaction was committed");
    }

    /// Stops the healthy clients: each ran, and never saw an error or a foreign row.
    async fn finish(self) {
        // Let the healthy clients run a little past the last case.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.stop.store(true, Ordering::Relaxed);
        for l in self.loops {
            let h = l.await.expect("healthy client task");
            assert!(h.iterations > 0, "{} never ran", h.tenant);
            assert!(
                h.errors.is_empty(),
                "healthy client of {} was disturbed: {:?}",
                h.tenant,
                h.errors
            );
        }
        assert_no_panics();
        self.proxy.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------
// Deterministic cases.

/// Lengths no message can have, and tags no frontend sends after login: pgtenant answers
/// FATAL 08P01 naming the problem and closes; a transaction the client had open is rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_errors_get_08p01_and_end_the_session() {
    let f = fixture("framing", 10, BOTH_PEERS).await;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "negative length",
            b"Q\xff\xff\xff\xffSELECT 1\0".to_vec(),
            "invalid length",
        ),
        ("length 0", b"S\0\0\0\0".to_vec(), "invalid length 0"),
        ("length 3", b"P\0\0\0\x03".to_vec(), "invalid length 3"),
        (
            "length 0x7fffffff",
            b"Q\x7f\xff\xff\xffSELECT 1\0".to_vec(),
            "invalid length 2147483647",
        ),
        (
            "length just over 1 GB",
            b"d\x40\0\0\x05x".to_vec(),
            "invalid length 1073741829",
        ),
        (
            "unknown tag",
            b"y\0\0\0\x04".to_vec(),
            "unexpected message type 'y'",
        ),
        (
            "backend tag",
            b"Z\0\0\0\x05I".to_vec(),
            "unexpected message type 'Z'",
        ),
        (
            "password message after login",
            msg(b'p', b"client-pw\0"),
            "unexpected message type 'p'",
        ),
        (
            "valid query then an unknown tag in the same write",
            cat(&[&query("SELECT 1"), b"y\0\0\0\x04"]),
            "unexpected message type 'y'",
        ),
        (
            "Parse with an empty body",
            b"P\0\0\0\x04".to_vec(),
            "malformed 'P' message",
        ),
        (
            "Bind with an empty body",
            b"B\0\0\0\x04".to_vec(),
            "malformed 'B' message",
        ),
        (
            "Bind without the statement name's NUL",
            msg(b'B', b"\0stmt"),
            "malformed 'B' message",
        ),
        (
            "Describe with an empty body",
            b"D\0\0\0\x04".to_vec(),
            "malformed 'D' message",
        ),
        (
            "Close without the name's NUL",
            msg(b'C', b"Sname"),
            "malformed 'C' message",
        ),
    ];
    for tenant in [SHARED, DATABASE] {
        for (name, bytes, fragment) in &cases {
            let ctx = format!("{tenant}: {name}");
            let mut c = f.raw(tenant).await;
            c.send(bytes).await;
            let out = c.until_closed(&ctx).await;
            assert_fatal_08p01(&out, fragment, &ctx);
            // Anything before the error is a complete reply to the valid query before it.
            let before = tags(&out[..out.len() - 1]);
            assert!(before.is_empty() || before == "TDCZ", "{ctx}: {out:?}");
            f.assert_clean(tenant, &ctx).await;
        }
        // Inside a transaction with a write: the session ends and the write is rolled back.
        let ctx = format!("{tenant}: unknown tag inside a transaction");
        let mut c = f.raw(tenant).await;
        c.exchange(&query("BEGIN"), b'T', &ctx).await;
        let ghost = format!("INSERT INTO items (name) VALUES ('{tenant}-ghost')");
        c.exchange(&query(&ghost), b'T', &ctx).await;
        c.send(b"y\0\0\0\x04").await;
        let out = c.until_closed(&ctx).await;
        assert_fatal_08p01(&out, "unexpected message type 'y'", &ctx);
        assert_eq!(out.len(), 1, "{ctx}: {out:?}");
        f.assert_clean(tenant, &ctx).await;
        f.assert_no_ghost(tenant, &ctx);
    }
    f.finish().await;
}

/// A startup-phase packet (SSLRequest, GSSENCRequest, CancelRequest, StartupMessage) sent
/// after login starts with a zero byte, which reads as message type 0: pgtenant answers
/// FATAL 08P01, and the ErrorResponse must be well formed (its message may not contain the
/// NUL byte it complains about, which would end the field early).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn startup_phase_packets_after_login_get_a_well_formed_08p01() {
    let f = fixture("startup", 10, BOTH_PEERS).await;
    for tenant in [SHARED, DATABASE] {
        let mut packets = startup_phase_packets(tenant);
        packets.push(("tag 0 with length 0", vec![0, 0, 0, 0, 0]));
        for (name, bytes) in packets {
            let ctx = format!("{tenant}: {name} after login");
            let mut c = f.raw(tenant).await;
            c.send(&bytes).await;
            let out = c.until_closed(&ctx).await;
            assert_eq!(out.len(), 1, "{ctx}: {out:?}");
            assert_fatal_08p01(&out, "protocol violation: ", &ctx);
            let m = out[0].message();
            assert!(
                m.starts_with("protocol violation: unexpected message type ")
                    || m.starts_with("protocol violation: invalid length 0"),
                "{ctx}: {m:?}"
            );
            assert!(
                !m.ends_with('\''),
                "{ctx}: message cut short at an embedded NUL: {m:?}"
            );
            f.assert_clean(tenant, &ctx).await;
        }
    }
    f.finish().await;
}

/// Messages cut short, then the socket closed (before and after a server connection is
/// attached, inside a transaction, mid-stream of a long query, before a Sync): the proxy
/// neither waits for the rest forever nor hands on the connection the bytes went to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_messages_then_close_lose_nothing() {
    let f = fixture("trunc", 10, BOTH_PEERS).await;
    let long = format!("SELECT length('{}')", "x".repeat(200_000));
    let long_q = query(&long);
    let partial_parse = {
        let p = parse("s1", b"SELECT 1", &[]);
        let mut m = p[..5].to_vec();
        m[1..5].copy_from_slice(&1000i32.to_be_bytes());
        m.extend_from_slice(&p[5..]);
        m
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("half a header", b"Q\0\0".to_vec()),
        ("Query declared 100 bytes, 6 sent", {
            let mut m = b"Q\0\0\0\x64".to_vec();
            m.extend_from_slice(b"SELECT");
            m
        }),
        (
            "Parse declared 1000 bytes, its first 15 sent",
            partial_parse,
        ),
        (
            "200 KB query, its first 70 KB sent",
            long_q[..70_000].to_vec(),
        ),
        (
            "Parse/Bind/Execute, no Sync",
            cat(&[
                &parse("", b"SELECT 1", &[]),
                &bind("", "", &[]),
                &execute("", 0),
                FLUSH,
            ]),
        ),
    ];
    for tenant in [SHARED, DATABASE] {
        for (name, bytes) in &cases {
            let ctx = format!("{tenant}: {name}");
            let mut c = f.raw(tenant).await;
            c.send(bytes).await;
            // Whatever comes back (nothing, or replies to what was complete), no error.
            while let Ok(Some(m)) = c.next_within(Duration::from_millis(200)).await {
                assert_ne!(m.tag, b'E', "{ctx}: {m:?}");
            }
            drop(c);
            f.assert_clean(tenant, &ctx).await;
        }
        let ghost = format!("INSERT INTO items (name) VALUES ('{tenant}-ghost')");
        // A write in an explicit transaction, then a truncated message, then close.
        let ctx = format!("{tenant}: truncated message inside a transaction");
        let mut c = f.raw(tenant).await;
        c.exchange(&query("BEGIN"), b'T', &ctx).await;
        c.exchange(&query(&ghost), b'T', &ctx).await;
        c.send(&long_q[..30_000]).await;
        c.assert_silent(Duration::from_millis(200), &ctx).await;
        drop(c);
        f.assert_clean(tenant, &ctx).await;
        f.assert_no_ghost(tenant, &ctx);
        // Terminate inside a transaction.
        let ctx = format!("{tenant}: Terminate inside a transaction");
        let mut c = f.raw(tenant).await;
        c.exchange(&query("BEGIN"), b'T', &ctx).await;
        c.exchange(&query(&ghost), b'T', &ctx).await;
        c.send(TERMINATE).await;
        let out = c.until_closed(&ctx).await;
        assert!(out.is_empty(), "{ctx}: {out:?}");
        f.assert_clean(tenant, &ctx).await;
        f.assert_no_ghost(tenant, &ctx);
        // An extended-protocol write executed but never synced (its implicit transaction
        // never commits), then close.
        let ctx = format!("{tenant}: unsynced extended-protocol write, then close");
        let mut c = f.raw(tenant).await;
        c.send(&cat(&[
            &parse("", ghost.as_bytes(), &[]),
            &bind("", "", &[]),
            &execute("", 0),
            FLUSH,
        ]))
        .await;
        let mut got = Vec::new();
        while got.len() < 3 {
            got.push(c.next(&ctx).await.expect("open"));
        }
        assert_eq!(tags(&got), "12C", "{ctx}: {got:?}");
        drop(c);
        f.assert_clean(tenant, &ctx).await;
        f.assert_no_ghost(tenant, &ctx);
    }
    f.finish().await;
}

/// CopyData, CopyDone and CopyFail outside COPY: PostgreSQL ignores them, and so does the
/// proxy's bookkeeping: the next request gets exactly its own reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_messages_outside_copy_are_ignored() {
    let f = fixture("copy", 10, BOTH_PEERS).await;
    let copy_data = msg(b'd', b"1\tstray\n");
    let copy_done = msg(b'c', b"");
    let copy_fail = msg(b'f', b"never mind\0");
    for tenant in [SHARED, DATABASE] {
        let mut c = f.raw(tenant).await;
        let ctx = format!("{tenant}: CopyData then a query");
        let out = c
            .exchange(&cat(&[&copy_data, &query("SELECT 1")]), b'I', &ctx)
            .await;
        assert_eq!(tags(&out), "TDCZ", "{ctx}: {out:?}");
        assert_eq!(out[1].value(), "1", "{ctx}");
        let ctx = format!("{tenant}: CopyDone then Sync");
        let out = c.exchange(&cat(&[&copy_done, SYNC]), b'I', &ctx).await;
        assert_eq!(tags(&out), "Z", "{ctx}: {out:?}");
        let ctx = format!("{tenant}: CopyFail alone, then a query");
        c.send(&copy_fail).await;
        c.assert_silent(Duration::from_millis(200), &ctx).await;
        let out = c.exchange(&query("SELECT 2"), b'I', &ctx).await;
        assert_eq!(tags(&out), "TDCZ", "{ctx}: {out:?}");
        assert_eq!(out[1].value(), "2", "{ctx}");
        let ctx = format!("{tenant}: COPY messages inside an extended-protocol batch");
        let out = c
            .exchange(
                &cat(&[
                    &copy_data,
                    &parse("", b"SELECT 3", &[]),
                    &copy_data,
                    &copy_done,
                    &bind("", "", &[]),
                    &copy_fail,
                    &execute("", 0),
                    SYNC,
                ]),
                b'I',
                &ctx,
            )
            .await;
        assert_eq!(tags(&out), "12DCZ", "{ctx}: {out:?}");
        assert_eq!(out[2].value(), "3", "{ctx}");
        drop(c);
        f.assert_clean(tenant, &format!("{tenant}: COPY messages"))
            .await;
    }
    f.finish().await;
}

/// Bind, Execute, Describe and Close of statements and portals that do not exist: 26000 for
/// statements (from pgtenant, which never forwards them), 34000 for portals (from
/// PostgreSQL), CloseComplete for Close (as PostgreSQL), PostgreSQL's 08P01 for a bad
/// Describe/Close kind; the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_statements_and_portals() {
    let f = fixture("unknown", 10, BOTH_PEERS).await;
    for tenant in [SHARED, DATABASE] {
        let mut c = f.raw(tenant).await;
        let cases: Vec<(&str, Vec<u8>, &str, &str, &str)> = vec![
            (
                "Bind of an unknown statement",
                cat(&[&bind("", "nope", &[]), &execute("", 0), SYNC]),
                "",
                "26000",
                "prepared statement \"nope\" does not exist",
            ),
            (
                "Bind of the unnamed statement, never parsed",
                cat(&[&bind("", "", &[]), &execute("", 0), SYNC]),
                "",
                "26000",
                "unnamed prepared statement does not exist",
            ),
            (
                "Execute of an unknown portal",
                cat(&[&execute("nope", 0), SYNC]),
                "",
                "34000",
                "portal \"nope\" does not exist",
            ),
            (
                "Execute of the unnamed portal, never bound",
                cat(&[&execute("", 0), SYNC]),
                "",
                "34000",
                "portal \"\" does not exist",
            ),
            (
                "Describe of an unknown statement",
                cat(&[&describe(b'S', "nope"), SYNC]),
                "",
                "26000",
                "prepared statement \"nope\" does not exist",
            ),
            (
                "Describe of the unnamed statement, never parsed",
                cat(&[&describe(b'S', ""), SYNC]),
                "",
                "26000",
                "unnamed prepared statement does not exist",
            ),
            (
                "Describe of an unknown portal",
                cat(&[&describe(b'P', "nope"), SYNC]),
                "",
                "34000",
                "portal \"nope\" does not exist",
            ),
            (
                "Describe of kind X",
                cat(&[&describe(b'X', "nope"), SYNC]),
                "",
                "08P01",
                "invalid DESCRIBE message subtype 88",
            ),
            (
                "Close of kind X",
                cat(&[&close(b'X', "nope"), SYNC]),
                "",
                "08P01",
                "invalid CLOSE message subtype 88",
            ),
            (
                "error mid-batch: the rest up to Sync is skipped",
                cat(&[
                    &parse("", b"SELECT 1", &[]),
                    &bind("", "nope", &[]),
                    &bind("", "", &[]),
                    &execute("", 0),
                    &close(b'S', "nope"),
                    SYNC,
                ]),
                "1",
                "26000",
                "prepared statement \"nope\" does not exist",
            ),
        ];
        for (name, bytes, before, code, fragment) in &cases {
            let ctx = format!("{tenant}: {name}");
            let out = c.exchange(bytes, b'I', &ctx).await;
            assert_error_then_ready(&out, before, code, fragment, &ctx);
        }
        // The server connection holds a statement another client prepared, under pgtenant's
        // content-addressed name: this client may not use it by that name. (The other client
        // is of another tenant in shared placement; in database placement of the same tenant,
        // since a server connection passing to another tenant there is reset with DISCARD ALL.)
        let peer = if tenant == SHARED {
            SHARED_PEER
        } else {
            DATABASE
        };
        let internal = server_name(b"SELECT 41\0\0\0");
        let ctx = format!("{tenant}: {peer}'s statement {internal} is on the server connection");
        // The healthy client of the other tenant may take the connection between the two
        // (its reset drops the statement): the peer prepares it again then.
        let mut on_server = String::new();
        for _ in 0..20 {
            let mut p = f.raw(peer).await;
            let out = p
                .exchange(
                    &cat(&[&parse("a", b"SELECT 41", &[]), SYNC]),
                    b'I',
                    "peer Parse",
                )
                .await;
            assert_eq!(tags(&out), "1Z", "peer Parse: {out:?}");
            drop(p);
            let out = c
                .exchange(
                    &query(&format!(
                        "SELECT count(*) FROM pg_prepared_statements WHERE name = '{internal}'"
                    )),
                    b'I',
                    &ctx,
                )
                .await;
            if tenant == SHARED {
                // The guard keeps a shared-placement tenant from reading the server
                // connection's statements at all; the Binds below are refused by pgtenant
                // before they reach the server.
                assert_error_then_ready(&out, "", "42501", "pg_prepared_statements", &ctx);
                break;
            }
            assert_eq!(tags(&out), "TDCZ", "{ctx}: {out:?}");
            on_server = out[1].value();
            if on_server == "1" {
                break;
            }
        }
        if tenant != SHARED {
            assert_eq!(on_server, "1", "{ctx}");
        }
        let ctx = format!("{tenant}: Bind of {peer}'s statement by its server name");
        let out = c
            .exchange(
                &cat(&[&bind("", &internal, &[]), &execute("", 0), SYNC]),
                b'I',
                &ctx,
            )
            .await;
        let not_found = format!("prepared statement \"{internal}\" does not exist");
        assert_error_then_ready(&out, "", "26000", &not_found, &ctx);
        let ctx = format!("{tenant}: Describe of {peer}'s statement by its server name");
        let out = c
            .exchange(&cat(&[&describe(b'S', &internal), SYNC]), b'I', &ctx)
            .await;
        assert_error_then_ready(&out, "", "26000", &not_found, &ctx);
        for kind in [b'S', b'P'] {
            let ctx = format!("{tenant}: Close {} of an unknown name", kind as char);
            let out = c
                .exchange(&cat(&[&close(kind, "nope"), SYNC]), b'I', &ctx)
                .await;
            assert_eq!(tags(&out), "3Z", "{ctx}: {out:?}");
        }
        let ctx = format!("{tenant}: a valid statement afterwards");
        let out = c
            .exchange(
                &cat(&[
                    &parse("s1", b"SELECT 'after'", &[]),
                    &bind("p1", "s1", &[]),
                    &execute("p1", 0),
                    SYNC,
                ]),
                b'I',
                &ctx,
            )
            .await;
        assert_eq!(tags(&out), "12DCZ", "{ctx}: {out:?}");
        assert_eq!(out[2].value(), "after", "{ctx}");
        drop(c);
        f.assert_clean(tenant, &format!("{tenant}: unknown names"))
            .await;
    }
    f.finish().await;
}

/// Hundreds of Syncs in one write, Flush-only traffic, Flush behind a Parse, empty queries,
/// Sync and Flush with a body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_flushes_and_empty_queries() {
    let f = fixture("sync", 10, BOTH_PEERS).await;
    for tenant in [SHARED, DATABASE] {
        let mut c = f.raw(tenant).await;
        let ctx = format!("{tenant}: 500 Syncs in one write");
        c.send(&SYNC.repeat(500)).await;
        for i in 0..500 {
            let m = c.next(&ctx).await.expect("open");
            assert_eq!((m.tag, m.body.as_ref()), (b'Z', &b"I"[..]), "{ctx}: #{i}");
        }
        c.assert_silent(Duration::from_millis(200), &ctx).await;
        let ctx = format!("{tenant}: Flush only");
        c.send(&FLUSH.repeat(20)).await;
        c.assert_silent(Duration::from_millis(300), &ctx).await;
        let out = c.exchange(&query("SELECT 1"), b'I', &ctx).await;
        assert_eq!(tags(&out), "TDCZ", "{ctx}: {out:?}");
        let ctx = format!("{tenant}: Parse then Flush");
        c.send(&cat(&[&parse("", b"SELECT 4", &[]), FLUSH])).await;
        let m = c.next(&ctx).await.expect("open");
        assert_eq!(m.tag, b'1', "{ctx}: {m:?}");
        let out = c
            .exchange(
                &cat(&[&bind("", "", &[]), &execute("", 0), SYNC]),
                b'I',
                &ctx,
            )
            .await;
        assert_eq!(tags(&out), "2DCZ", "{ctx}: {out:?}");
        assert_eq!(out[1].value(), "4", "{ctx}");
        // A statement the server already holds: pgtenant answers ParseComplete itself, and
        // a Flush must bring it.
        let ctx = format!("{tenant}: second Parse of known text, then Flush");
        let out = c
            .exchange(&cat(&[&parse("a", b"SELECT 41", &[]), SYNC]), b'I', &ctx)
            .await;
        assert_eq!(tags(&out), "1Z", "{ctx}: {out:?}");
        c.send(&cat(&[&parse("b", b"SELECT 41", &[]), FLUSH])).await;
        let m = c.next(&ctx).await.expect("open");
        assert_eq!(m.tag, b'1', "{ctx}: {m:?}");
        let out = c
            .exchange(
                &cat(&[&bind("", "b", &[]), &execute("", 0), SYNC]),
                b'I',
                &ctx,
            )
            .await;
        assert_eq!(tags(&out), "2DCZ", "{ctx}: {out:?}");
        assert_eq!(out[1].value(), "41", "{ctx}");
        for (name, sql) in [("empty", ""), ("blank", "  "), ("comment", "-- nothing")] {
            let ctx = format!("{tenant}: {name} query");
            let out = c.exchange(&query(sql), b'I', &ctx).await;
            assert_eq!(tags(&out), "IZ", "{ctx}: {out:?}");
        }
        let ctx = format!("{tenant}: Query without a body");
        let out = c.exchange(b"Q\0\0\0\x04", b'I', &ctx).await;
        assert_error_then_ready(&out, "", "08P01", "invalid string in message", &ctx);
        let ctx = format!("{tenant}: Sync with a body");
        let out = c.exchange(&msg(b'S', b"abc"), b'I', &ctx).await;
        assert_error_then_ready(&out, "", "08P01", "invalid message format", &ctx);
        let ctx = format!("{tenant}: Flush with a body, then Sync");
        let out = c
            .exchange(&cat(&[&msg(b'H', b"abc"), SYNC]), b'I', &ctx)
            .await;
        assert_error_then_ready(&out, "", "08P01", "invalid message format", &ctx);
        // After an extended-protocol error PostgreSQL ignores everything up to Sync, a Query
        // included: no reply to it, and the Sync's ReadyForQuery.
        let ctx = format!("{tenant}: Query while the server skips to Sync");
        c.send(&cat(&[&parse("", b"SELEC 1", &[]), FLUSH])).await;
        let m = c.next(&ctx).await.expect("open");
        m.assert_well_formed_error(&ctx);
        assert_eq!(m.code(), "42601", "{ctx}: {m:?}");
        c.send(&query("SELECT 7")).await;
        c.assert_silent(Duration::from_millis(300), &ctx).await;
        let out = c.exchange(SYNC, b'I', &ctx).await;
        assert_eq!(tags(&out), "Z", "{ctx}: {out:?}");
        let ctx = format!("{tenant}: after all that");
        let out = c.exchange(&query("SELECT 5"), b'I', &ctx).await;
        assert_eq!(tags(&out), "TDCZ", "{ctx}: {out:?}");
        drop(c);
        f.assert_clean(tenant, &format!("{tenant}: syncs and flushes"))
            .await;
    }
    f.finish().await;
}

/// Parse with invalid UTF-8, without its terminator, without its parameter count; Bind whose
/// parameters do not match; FunctionCall with garbage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_parse_bind_and_function_call() {
    let f = fixture("parse", 10, BOTH_PEERS).await;
    for tenant in [SHARED, DATABASE] {
        let shared = tenant == SHARED;
        let mut c = f.raw(tenant).await;
        let ctx = format!("{tenant}: Parse with invalid UTF-8");
        let out = c
            .exchange(
                &cat(&[&parse("", b"SELECT '\xff\xfe'", &[]), SYNC]),
                b'I',
                &ctx,
            )
            .await;
        if shared {
            assert_error_then_ready(&out, "", "42501", "not valid UTF-8", &ctx);
        } else {
            assert_error_then_ready(&out, "", "22021", "invalid byte sequence", &ctx);
        }
        let ctx = format!("{tenant}: Query with invalid UTF-8");
        let out = c
            .exchange(&query_bytes(b"SELECT '\xc3\x28'"), b'I', &ctx)
            .await;
        if shared {
            assert_error_then_ready(&out, "", "42501", "not valid UTF-8", &ctx);
        } else {
            assert_error_then_ready(&out, "", "22021", "invalid byte sequence", &ctx);
        }
        let ctx = format!("{tenant}: Parse without its parameter count");
        let mut body = Vec::new();
        cstr(&mut body, b"");
        cstr(&mut body, b"SELECT 1");
        let out = c
            .exchange(&cat(&[&msg(b'P', &body), SYNC]), b'I', &ctx)
            .await;
        assert_error_then_ready(&out, "", "08P01", "insufficient data left in message", &ctx);
        let ctx = format!("{tenant}: Parse announcing 3 parameter types, giving 1");
        let mut body = Vec::new();
        cstr(&mut body, b"");
        cstr(&mut body, b"SELECT $1::int");
        body.extend_from_slice(&3i16.to_be_bytes());
        body.extend_from_slice(&23u32.to_be_bytes());
        let out = c
            .exchange(&cat(&[&msg(b'P', &body), SYNC]), b'I', &ctx)
            .await;
        assert_error_then_ready(&out, "", "08P01", "insufficient data left in message", &ctx);
        let ctx = format!("{tenant}: Bind with fewer parameters than the statement has");
        let out = c
            .exchange(
                &cat(&[
                    &parse("", b"SELECT $1::int + 1", &[23]),
                    &bind("", "", &[]),
                    &execute("", 0),
                    SYNC,
                ]),
                b'I',
                &ctx,
            )
            .await;
        assert_error_then_ready(
            &out,
            "1",
            "08P01",
            "bind message supplies 0 parameters, but prepared statement \"\" requires 1",
            &ctx,
        );
        let ctx = format!("{tenant}: Bind with more parameters than the statement has");
        let out = c
            .exchange(
                &cat(&[
                    &parse("s2", b"SELECT 2", &[]),
                    &bind("", "s2", &[Some(b"1"), Some(b"2")]),
                    &execute("", 0),
                    SYNC,
                ]),
                b'I',
                &ctx,
            )
            .await;
        assert_error_then_ready(
            &out,
            "1",
            "08P01",
            "bind message supplies 2 parameters",
            &ctx,
        );
        let ctx = format!("{tenant}: Bind whose parameter value is cut short");
        let mut b = bind("", "", &[Some(b"12")]);
        let at = b.len() - 2 - 2 - 4;
        b[at..at + 4].copy_from_slice(&100i32.to_be_bytes());
        let out = c
            .exchange(
                &cat(&[
                    &parse("", b"SELECT $1::int", &[23]),
                    &b,
                    &execute("", 0),
                    SYNC,
                ]),
                b'I',
                &ctx,
            )
            .await;
        assert_error_then_ready(
            &out,
            "1",
            "08P01",
            "insufficient data left in message",
            &ctx,
        );
        let ctx = format!("{tenant}: Bind with 2 format codes for 1 parameter");
        let mut body = Vec::new();
        cstr(&mut body, b"");
        cstr(&mut body, b"");
        body.extend_from_slice(&2i16.to_be_bytes());
        body.extend_from_slice(&[0, 0, 0, 0]);
        body.extend_from_slice(&1i16.to_be_bytes());
        body.extend_from_slice(&1i32.to_be_bytes());
        body.push(b'7');
        body.extend_from_slice(&0i16.to_be_bytes());
        let out = c
            .exchange(
                &cat(&[
                    &parse("", b"SELECT $1::int", &[23]),
                    &msg(b'B', &body),
                    &execute("", 0),
                    SYNC,
                ]),
                b'I',
                &ctx,
            )
            .await;
        assert_error_then_ready(
            &out,
            "1",
            "08P01",
            "bind message has 2 parameter formats but 1 parameters",
            &ctx,
        );
        let ctx = format!("{tenant}: FunctionCall with garbage");
        let out = c.exchange(&msg(b'F', b"\xde\xad"), b'I', &ctx).await;
        if shared {
            assert_error_then_ready(&out, "", "42501", "fast-path function call", &ctx);
        } else {
            assert_error_then_ready(&out, "", "08P01", "insufficient data left in message", &ctx);
        }
        let ctx = format!("{tenant}: FunctionCall of function OID 0");
        let mut body = Vec::new();
        body.extend_from_slice(&0u32.to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes());
        let out = c.exchange(&msg(b'F', &body), b'I', &ctx).await;
        if shared {
            assert_error_then_ready(&out, "", "42501", "fast-path function call", &ctx);
        } else {
            assert_error_then_ready(
                &out,
                "",
                "42883",
                "function with OID 0 does not exist",
                &ctx,
            );
        }
        let ctx = format!("{tenant}: still in sync");
        let out = c.exchange(&query("SELECT 6"), b'I', &ctx).await;
        assert_eq!(tags(&out), "TDCZ", "{ctx}: {out:?}");
        assert_eq!(out[1].value(), "6", "{ctx}");
        drop(c);
        f.assert_clean(tenant, &format!("{tenant}: malformed Parse/Bind"))
            .await;
        // A Parse whose statement text lacks its terminator, named and unnamed: pgtenant
        // refuses it itself (PostgreSQL would end the session).
        for name in ["", "s1"] {
            let ctx = format!("{tenant}: Parse {name:?} without the text's NUL");
            let mut c = f.raw(tenant).await;
            let mut body = Vec::new();
            cstr(&mut body, name.as_bytes());
            body.extend_from_slice(b"SELECT 1");
            c.send(&cat(&[&msg(b'P', &body), SYNC])).await;
            let out = c.until_closed(&ctx).await;
            assert_eq!(out.len(), 1, "{ctx}: {out:?}");
            assert_fatal_08p01(&out, "malformed 'P' message", &ctx);
            f.assert_clean(tenant, &ctx).await;
        }
    }
    f.finish().await;
}

/// pgtenant's server-side name of a statement: `pgt_` + 12 bytes of the SHA-256 of the Parse
/// body after the name (text, NUL, parameter types).
fn server_name(after_name: &[u8]) -> String {
    use sha2::Digest;
    format!(
        "pgt_{}",
        hex::encode(&sha2::Sha256::digest(after_name)[..12])
    )
}

fn query_bytes(sql: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, sql);
    msg(b'Q', &b)
}

/// A 1 MB simple Query and a 1 MB Parse go through whole and answer correctly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_megabyte_query() {
    let f = fixture("big", 10, BOTH_PEERS).await;
    let sql = format!("SELECT length('{}')", "x".repeat(1 << 20));
    for tenant in [SHARED, DATABASE] {
        let mut c = f.raw(tenant).await;
        let ctx = format!("{tenant}: 1 MB Query");
        let out = c.exchange(&query(&sql), b'I', &ctx).await;
        assert_eq!(tags(&out), "TDCZ", "{ctx}: {out:?}");
        assert_eq!(out[1].value(), "1048576", "{ctx}");
        let ctx = format!("{tenant}: 1 MB Parse");
        let out = c
            .exchange(
                &cat(&[
                    &parse("big", sql.as_bytes(), &[]),
                    &bind("", "big", &[]),
                    &execute("", 0),
                    SYNC,
                ]),
                b'I',
                &ctx,
            )
            .await;
        assert_eq!(tags(&out), "12DCZ", "{ctx}: {out:?}");
        assert_eq!(out[2].value(), "1048576", "{ctx}");
        drop(c);
        f.assert_clean(tenant, &format!("{tenant}: 1 MB")).await;
    }
    f.finish().await;
}

/// COPY FROM STDIN interrupted: stray Syncs inside the copy are ignored (as PostgreSQL does),
/// CopyFail gets PostgreSQL's 57014, a Query in the middle of the copy gets PostgreSQL's
/// 08P01 and ends the session, a client that leaves mid-copy commits nothing. (Shared
/// placement: PostgreSQL refuses COPY FROM under row-level security, 0A000.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_interrupted() {
    let f = fixture("copyin", 10, BOTH_PEERS).await;
    let ctx = "acme: COPY FROM STDIN under RLS";
    let mut c = f.raw(SHARED).await;
    let out = c
        .exchange(&query("COPY items (name) FROM STDIN"), b'I', ctx)
        .await;
    assert_error_then_ready(
        &out,
        "",
        "0A000",
        "COPY FROM not supported with row-level security",
        ctx,
    );
    drop(c);
    f.assert_clean(SHARED, ctx).await;

    let sink_count = || {
        cluster()
            .psql(&f.erp_db, "SELECT count(*) FROM sink")
            .expect("sink count")
    };
    let copy = query("COPY sink FROM STDIN");
    let ctx = "initech: Syncs inside COPY, then CopyDone";
    let mut c = f.raw(DATABASE).await;
    c.send(&copy).await;
    let m = c.next(ctx).await.expect("open");
    assert_eq!(m.tag, b'G', "{ctx}: {m:?}");
    let out = c
        .exchange(
            &cat(&[
                SYNC,
                &msg(b'd', b"a\n"),
                SYNC,
                &msg(b'd', b"b\n"),
                &msg(b'c', b""),
            ]),
            b'I',
            ctx,
        )
        .await;
    assert_eq!(tags(&out), "CZ", "{ctx}: {out:?}");
    assert_eq!(sink_count(), "2", "{ctx}");
    let out = c
        .exchange(&cat(&[&msg(b'c', b""), &query("SELECT 1")]), b'I', ctx)
        .await;
    assert_eq!(tags(&out), "TDCZ", "{ctx}: {out:?}");
    let ctx = "initech: CopyFail";
    c.send(&copy).await;
    assert_eq!(c.next(ctx).await.expect("open").tag, b'G', "{ctx}");
    let out = c
        .exchange(
            &cat(&[&msg(b'd', b"c\n"), &msg(b'f', b"changed my mind\0")]),
            b'I',
            ctx,
        )
        .await;
    assert_error_then_ready(&out, "", "57014", "changed my mind", ctx);
    assert_eq!(sink_count(), "2", "{ctx}");
    drop(c);
    f.assert_clean(DATABASE, ctx).await;

    let ctx = "initech: a Query in the middle of COPY";
    let mut c = f.raw(DATABASE).await;
    c.send(&cat(&[&copy, &msg(b'd', b"d\n"), &query("SELECT 1")]))
        .await;
    let out = c.until_closed(ctx).await;
    assert_eq!(out.first().map(|m| m.tag), Some(b'G'), "{ctx}: {out:?}");
    let first_error = out
        .iter()
        .find(|m| m.tag == b'E')
        .unwrap_or_else(|| panic!("{ctx}: no error: {out:?}"));
    first_error.assert_well_formed_error(ctx);
    assert_eq!(first_error.code(), "08P01", "{ctx}: {out:?}");
    assert!(
        first_error
            .message()
            .contains("unexpected message type 0x51 during COPY from stdin"),
        "{ctx}: {out:?}"
    );
    // PostgreSQL follows with a FATAL ("protocol synchronization was lost") that says why
    // the session ends: pgtenant adds no "connection lost" after it.
    let errors: Vec<String> = out
        .iter()
        .filter(|m| m.tag == b'E')
        .map(|m| m.code())
        .collect();
    assert_eq!(errors, ["08P01", "08P01"], "{ctx}: {out:?}");
    assert_eq!(sink_count(), "2", "{ctx}");
    f.assert_clean(DATABASE, ctx).await;

    let ctx = "initech: client leaves mid-COPY";
    let mut c = f.raw(DATABASE).await;
    c.send(&cat(&[&copy, &msg(b'd', b"e\n")])).await;
    assert_eq!(c.next(ctx).await.expect("open").tag, b'G', "{ctx}");
    drop(c);
    f.assert_clean(DATABASE, ctx).await;
    assert_eq!(sink_count(), "2", "{ctx}");
    f.finish().await;
}

/// Sync, Flush, Execute, Describe and Close longer than PostgreSQL accepts for those types
/// (10,000 bytes, `PQ_SMALL_MESSAGE_LIMIT`): malformed client messages, so 08P01. pgtenant
/// forwards them; PostgreSQL drops the connection without a word; the client is told 08006
/// "server connection to shard lost" instead, and the pool loses its server connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn oversized_small_messages_get_08p01() {
    let f = fixture("oversized", 10, BOTH_PEERS).await;
    let name = [vec![b'x'; 20_000], vec![0]].concat();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("Sync with a 20,000-byte body", msg(b'S', &name)),
        (
            "Flush with a 20,000-byte body",
            cat(&[&msg(b'H', &name), SYNC]),
        ),
        (
            "Execute of a 20,000-byte portal name",
            cat(&[&msg(b'E', &[&name[..], &[0, 0, 0, 0]].concat()), SYNC]),
        ),
        (
            "Describe of a 20,000-byte portal name",
            cat(&[&msg(b'D', &[&b"P"[..], &name[..]].concat()), SYNC]),
        ),
        (
            "Close of a 20,000-byte portal name",
            cat(&[&msg(b'C', &[&b"P"[..], &name[..]].concat()), SYNC]),
        ),
    ];
    for tenant in [SHARED, DATABASE] {
        for (name, bytes) in &cases {
            let ctx = format!("{tenant}: {name}");
            let mut c = f.raw(tenant).await;
            c.send(bytes).await;
            let mut out = Vec::new();
            while let Some(m) = c.next(&ctx).await {
                let ready = m.tag == b'Z';
                out.push(m);
                if ready {
                    break;
                }
            }
            let e = out
                .iter()
                .find(|m| m.tag == b'E')
                .unwrap_or_else(|| panic!("{ctx}: no error: {out:?}"));
            e.assert_well_formed_error(&ctx);
            assert_eq!(e.code(), "08P01", "{ctx}: {out:?}");
            drop(c);
            f.assert_clean(tenant, &ctx).await;
        }
    }
    f.finish().await;
}

/// A named statement whose Parse failed does not exist: Bind and Describe of it get 26000
/// naming the client's statement, as from PostgreSQL, whether sent after the error came
/// back or pipelined behind the Parse's Sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_whose_parse_failed_does_not_exist() {
    let f = fixture("failedparse", 10, BOTH_PEERS).await;
    for tenant in [SHARED, DATABASE] {
        let mut c = f.raw(tenant).await;
        let ctx = format!("{tenant}: Parse s1 with a syntax error");
        let out = c
            .exchange(&cat(&[&parse("s1", b"SELEC 1", &[]), SYNC]), b'I', &ctx)
            .await;
        assert_error_then_ready(&out, "", "42601", "syntax error", &ctx);
        let ctx = format!("{tenant}: Bind of s1 afterwards");
        let out = c
            .exchange(
                &cat(&[&bind("", "s1", &[]), &execute("", 0), SYNC]),
                b'I',
                &ctx,
            )
            .await;
        assert_error_then_ready(
            &out,
            "",
            "26000",
            "prepared statement \"s1\" does not exist",
            &ctx,
        );
        let ctx = format!("{tenant}: Describe of s1 afterwards");
        let out = c
            .exchange(&cat(&[&describe(b'S', "s1"), SYNC]), b'I', &ctx)
            .await;
        assert_error_then_ready(
            &out,
            "",
            "26000",
            "prepared statement \"s1\" does not exist",
            &ctx,
        );
        let ctx = format!("{tenant}: Parse s2 with a syntax error, Bind of s2 pipelined");
        c.send(&cat(&[
            &parse("s2", b"SELEC 2", &[]),
            SYNC,
            &bind("", "s2", &[]),
            &execute("", 0),
            SYNC,
        ]))
        .await;
        let out = c.until_ready(&ctx).await;
        assert_error_then_ready(&out, "", "42601", "syntax error", &ctx);
        let out = c.until_ready(&ctx).await;
        assert_error_then_ready(
            &out,
            "",
            "26000",
            "prepared statement \"s2\" does not exist",
            &ctx,
        );
        // A Close the server skips (sent after an error, before the Sync) closes nothing,
        // as on PostgreSQL: the statement still runs afterwards.
        let ctx = format!("{tenant}: Close of s3 skipped after an error");
        let out = c
            .exchange(&cat(&[&parse("s3", b"SELECT 3", &[]), SYNC]), b'I', &ctx)
            .await;
        assert_eq!(tags(&out), "1Z", "{ctx}: {out:?}");
        c.send(&cat(&[
            &parse("", b"SELECT 1/0", &[]),
            &bind("", "", &[]),
            &execute("", 0),
            FLUSH,
        ]))
        .await;
        let mut out = Vec::new();
        while out.last().is_none_or(|m: &Msg| m.tag != b'E') {
            out.push(c.next(&ctx).await.expect("the division's error"));
        }
        // (The constant division fails while the Bind plans it.)
        assert_eq!(tags(&out), "1E", "{ctx}: {out:?}");
        let out = c
            .exchange(&cat(&[&close(b'S', "s3"), SYNC]), b'I', &ctx)
            .await;
        assert_eq!(tags(&out), "Z", "{ctx}: {out:?}");
        let out = c
            .exchange(
                &cat(&[&bind("", "s3", &[]), &execute("", 0), SYNC]),
                b'I',
                &ctx,
            )
            .await;
        assert_eq!(tags(&out), "2DCZ", "{ctx}: {out:?}");
        assert_eq!(out[1].value(), "3", "{ctx}");
        drop(c);
        f.assert_clean(tenant, &format!("{tenant}: failed Parse"))
            .await;
    }
    f.finish().await;
}

/// A malformed message from a client between transactions needs no server connection to be
/// diagnosed: it gets 08P01 even while the pool is busy (not 57014 after query_wait_timeout).
/// The healthy client of the other pool carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn malformed_message_while_the_pool_is_busy_gets_08p01() {
    let f = fixture("busy", 2, &[SHARED_PEER]).await;
    let holder = connect(&f.proxy, &format!("app.{DATABASE_PEER}"), DATABASE_PEER).await;
    holder.batch_execute("BEGIN").await.expect("begin");
    let ctx = "initech: unknown tag while hooli holds the pool's connection";
    let mut c = f.raw(DATABASE).await;
    c.send(b"y\0\0\0\x04").await;
    let out = c.until_closed(ctx).await;
    holder.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(out.len(), 1, "{ctx}: {out:?}");
    assert_fatal_08p01(&out, "unexpected message type 'y'", ctx);
    f.assert_clean(DATABASE, ctx).await;
    f.finish().await;
}

/// An extended-protocol batch ended by a simple Query instead of a Sync: PostgreSQL runs the
/// Query, commits, and reports idle (`Z I`). The client is not in a transaction, so while it
/// sits idle the pool's only server connection must serve other clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn an_extended_batch_ended_by_a_query_lets_the_connection_go() {
    let f = fixture("unsynced", 10, BOTH_PEERS).await;
    for (tenant, peer) in [(SHARED, SHARED_PEER), (DATABASE, DATABASE_PEER)] {
        for (name, batch, want) in [
            (
                "Parse/Bind/Execute then Query",
                cat(&[
                    &parse("", b"SELECT 1", &[]),
                    &bind("", "", &[]),
                    &execute("", 0),
                    &query("SELECT 2"),
                ]),
                "12DCTDCZ",
            ),
            (
                "Parse then Query",
                cat(&[&parse("s1", b"SELECT 1", &[]), &query("SELECT 2")]),
                "1TDCZ",
            ),
        ] {
            let ctx = format!("{tenant}: {name}, then idle");
            let mut c = f.raw(tenant).await;
            let out = c.exchange(&batch, b'I', &ctx).await;
            assert_eq!(tags(&out), want, "{ctx}: {out:?}");
            // The client stays connected and idle; a client of another tenant of the same
            // pool must be served.
            let other = connect(&f.proxy, &format!("app.{peer}"), peer).await;
            let served =
                tokio::time::timeout(Duration::from_secs(3), other.simple_query("SELECT 1")).await;
            assert!(
                matches!(served, Ok(Ok(_))),
                "{ctx}: {peer} not served while the idle client keeps the connection: {served:?}"
            );
            drop(c);
            f.assert_clean(tenant, &ctx).await;
        }
    }
    f.finish().await;
}

// ---------------------------------------------------------------------------------------
// Seeded randomized sessions.

const SEED: u64 = 0x5eed_f00d;
const SESSIONS: usize = 200;

/// A valid frontend message, drawn at random.
fn random_valid(rng: &mut StdRng) -> Vec<u8> {
    const STATEMENTS: [&str; 4] = ["", "s1", "s2", "nope"];
    const PORTALS: [&str; 2] = ["", "p1"];
    let pick = |rng: &mut StdRng, xs: &[&'static str]| xs[rng.random_range(0..xs.len())];
    match rng.random_range(0..16) {
        0 => query("SELECT 1"),
        1 => query("SELECT 'ctx:' || coalesce(current_setting('app.current_tenant', true), '')"),
        2 => query("SELECT 'rows:' || string_agg(name, ',' ORDER BY name) FROM items"),
        3 => query("BEGIN"),
        4 => query("SELECT 1/0"),
        5 | 6 => {
            let (sql, types): (&[u8], &[u32]) = match rng.random_range(0..4) {
                0 => (b"SELECT $1::int + 1", &[23]),
                1 => (
                    b"SELECT 'rows:' || string_agg(name, ',' ORDER BY name) FROM items",
                    &[],
                ),
                2 => (b"SELEC broken", &[]),
                _ => (
                    b"SELECT 'ctx:' || coalesce(current_setting('app.current_tenant', true), '')",
                    &[],
                ),
            };
            parse(pick(rng, &STATEMENTS[..3]), sql, types)
        }
        7 | 8 => {
            let params: Vec<Option<&[u8]>> = match rng.random_range(0..3) {
                0 => vec![],
                1 => vec![Some(b"41")],
                _ => vec![None],
            };
            bind(pick(rng, &PORTALS), pick(rng, &STATEMENTS), &params)
        }
        9 => {
            if rng.random_bool(0.5) {
                describe(b'S', pick(rng, &STATEMENTS))
            } else {
                describe(b'P', pick(rng, &PORTALS))
            }
        }
        10 | 11 => execute(pick(rng, &PORTALS), rng.random_range(0..2)),
        12 => {
            if rng.random_bool(0.5) {
                close(b'S', pick(rng, &STATEMENTS))
            } else {
                close(b'P', pick(rng, &PORTALS))
            }
        }
        13 => SYNC.to_vec(),
        14 => FLUSH.to_vec(),
        _ => match rng.random_range(0..4) {
            0 => msg(b'd', b"stray copy data"),
            1 => msg(b'c', b""),
            2 => msg(b'f', b"oops\0"),
            _ => msg(b'F', b"\xde\xad"),
        },
    }
}

/// What the proxy's framing makes of a byte stream (mirrors the relay: header checks, then
/// the name fields of the messages it reads whole).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Framing {
    /// Every message complete and acceptable to the proxy.
    Complete,
    /// A length or tag the proxy refuses, or a Parse/Bind/Describe/Close whose names do not
    /// parse: FATAL 08P01.
    Violation,
    /// The stream ends inside a message: the proxy waits for the rest.
    Incomplete,
    /// A Terminate: the proxy ends the session quietly.
    Terminated,
}

fn framing(stream: &[u8]) -> Framing {
    fn cstr(b: &[u8]) -> Option<&[u8]> {
        let end = b.iter().position(|c| *c == 0)?;
        Some(&b[end + 1..])
    }
    let mut i = 0;
    while i < stream.len() {
        if stream.len() - i < 5 {
            return Framing::Incomplete;
        }
        let tag = stream[i];
        let len = u32::from_be_bytes([stream[i + 1], stream[i + 2], stream[i + 3], stream[i + 4]]);
        if !(4..=1 << 30).contains(&len) {
            return Framing::Violation;
        }
        if !b"QFSXPBDEHCdcf".contains(&tag) {
            return Framing::Violation;
        }
        // PostgreSQL's limit for messages without statement text, parameters or data.
        if len > 10_000 && !b"QFPBd".contains(&tag) {
            return Framing::Violation;
        }
        if tag == b'X' {
            return Framing::Terminated;
        }
        let end = i + 1 + len as usize;
        if matches!(tag, b'P' | b'B' | b'D' | b'C') {
            if end > stream.len() {
                return Framing::Incomplete;
            }
            let body = &stream[i + 5..end];
            let ok = match tag {
                b'P' | b'B' => cstr(body).and_then(cstr).is_some(),
                _ => body.split_first().and_then(|(_, r)| cstr(r)).is_some(),
            };
            if !ok {
                return Framing::Violation;
            }
        }
        if end > stream.len() {
            return Framing::Incomplete;
        }
        i = end;
    }
    Framing::Complete
}

/// One randomized session: valid messages with mutations; returns (framing, how it ended).
async fn random_session(
    f: &Fixture,
    rng: &mut StdRng,
    n: usize,
    tenant: &str,
) -> (Framing, String) {
    let ctx = format!("session {n} ({tenant})");
    let mut msgs: Vec<Vec<u8>> = (0..rng.random_range(1..8))
        .map(|_| random_valid(rng))
        .collect();
    let mut abrupt = rng.random_bool(0.15);
    let mut cut: Option<usize> = None;
    if rng.random_bool(0.6) {
        for _ in 0..rng.random_range(1..3) {
            let k = rng.random_range(0..msgs.len());
            let m = &mut msgs[k];
            match rng.random_range(0..6) {
                0 => {
                    let byte = rng.random_range(1..5);
                    m[byte] ^= 1 << rng.random_range(0..8);
                }
                1 => m[0] = rng.random(),
                2 => {
                    let len: i32 = match rng.random_range(0..3) {
                        0 => rng.random_range(-5..4),
                        1 => rng.random_range(4..64),
                        _ => rng.random(),
                    };
                    m[1..5].copy_from_slice(&len.to_be_bytes());
                }
                3 => {
                    let garbage: Vec<u8> =
                        (0..rng.random_range(1..8)).map(|_| rng.random()).collect();
                    m.splice(0..0, garbage);
                }
                4 if m.len() > 5 => {
                    let at = rng.random_range(5..m.len());
                    m[at] = rng.random();
                }
                _ => {
                    abrupt = true;
                    cut = Some(rng.random_range(0..msgs.iter().map(Vec::len).sum::<usize>()));
                }
            }
        }
    }
    let mut stream = msgs.concat();
    if let Some(at) = cut {
        stream.truncate(at.min(stream.len()));
    }
    let marker = format!("marker-{n}");
    if !abrupt {
        stream.extend_from_slice(SYNC);
        stream.extend_from_slice(&query(&format!("ROLLBACK; SELECT '{marker}'")));
    }
    let kind = framing(&stream);
    let mut c = f.raw(tenant).await;
    c.send(&stream).await;
    let own_rows = format!("rows:{}", rows_of(tenant).join(","));
    let own_ctx = format!("ctx:{}", context_of(tenant));
    // Reads until the marker's ReadyForQuery, the close, or (for a stream the proxy cannot
    // finish, or one the client abandons) a short quiet spell.
    let quiet = if kind == Framing::Complete && !abrupt {
        READ_TIMEOUT
    } else {
        Duration::from_millis(100)
    };
    let mut seen_marker = false;
    let mut nul_defects = 0;
    let mut fatal: Option<Msg> = None;
    let ending = loop {
        match c.next_within(quiet).await {
            Err(()) if quiet == READ_TIMEOUT => {
                panic!("{ctx}: the proxy sent nothing for 5 s (hang); stream {stream:?}")
            }
            Err(()) => break "abandoned".to_owned(),
            Ok(None) => {
                break match &fatal {
                    Some(e) => format!("closed with {}", e.code()),
                    None => "closed quietly".to_owned(),
                };
            }
            Ok(Some(m)) => match m.tag {
                b'E' => {
                    // Known defect, asserted in
                    // `startup_phase_packets_after_login_get_a_well_formed_08p01`.
                    if has_nul_tag_defect(&m) {
                        nul_defects += 1;
                    } else {
                        m.assert_well_formed_error(&ctx);
                    }
                    if m.severity() == "FATAL" {
                        fatal = Some(m);
                    }
                }
                b'D' => {
                    let v = m.value();
                    if v == marker {
                        seen_marker = true;
                    }
                    assert!(
                        !v.starts_with("rows:") || v == own_rows,
                        "{ctx}: foreign rows {v:?}; stream {stream:?}"
                    );
                    assert!(
                        !v.starts_with("ctx:") || v == own_ctx,
                        "{ctx}: foreign tenant context {v:?}; stream {stream:?}"
                    );
                }
                b'Z' if seen_marker => break "completed".to_owned(),
                _ => {}
            },
        }
    };
    match (kind, abrupt, ending.as_str()) {
        (Framing::Complete, false, "completed") => {}
        // PostgreSQL ends a session over a message beyond its own size limits; pgtenant
        // reports the lost server connection.
        (Framing::Complete, _, "closed with 08006") => {}
        (Framing::Complete, true, "abandoned" | "completed") => {}
        (Framing::Violation, _, "closed with 08P01") => {}
        (Framing::Violation, _, "closed with 08006") => {}
        (Framing::Terminated, _, "closed quietly") => {}
        (Framing::Incomplete, _, "abandoned" | "closed with 08006") => {}
        other => panic!("{ctx}: unexpected ending {other:?}; stream {stream:?}"),
    }
    if nul_defects > 0 {
        return (
            kind,
            format!("{ending} (message type 0: NUL in the message)"),
        );
    }
    (kind, ending)
}

/// pgtenant's 08P01 for message type 0 formats the tag as a char: a NUL inside the message
/// field, which ends the field early.
fn has_nul_tag_defect(m: &Msg) -> bool {
    let b = &m.body[..];
    [&b"message type '\0'"[..], &b"in message '\0'"[..]]
        .iter()
        .any(|pat| b.windows(pat.len()).any(|w| w == *pat))
}

/// 200 short sessions of valid and mutated messages (fixed seed): every reply well formed,
/// no foreign row or context, no hang, no panic; the pooled connections stay clean and the
/// healthy clients undisturbed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_sessions_with_a_fixed_seed() {
    let f = fixture("random", 10, BOTH_PEERS).await;
    let mut rng = StdRng::seed_from_u64(SEED);
    let started = Instant::now();
    let mut endings: std::collections::BTreeMap<String, usize> = Default::default();
    for n in 0..SESSIONS {
        let tenant = if n % 2 == 0 { SHARED } else { DATABASE };
        let (kind, ending) = random_session(&f, &mut rng, n, tenant).await;
        *endings.entry(format!("{kind:?} / {ending}")).or_default() += 1;
        if n % 20 == 19 {
            f.assert_clean(SHARED, &format!("after session {n}")).await;
            f.assert_clean(DATABASE, &format!("after session {n}"))
                .await;
        }
    }
    eprintln!(
        "{SESSIONS} randomized sessions in {:?}: {endings:#?}",
        started.elapsed()
    );
    // The mix exercised what it is meant to.
    for k in ["Complete / completed", "Violation / closed with 08P01"] {
        assert!(endings.get(k).copied().unwrap_or(0) >= 10, "{endings:#?}");
    }
    f.finish().await;
}
