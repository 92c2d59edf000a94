//! COPY in and out through pgtenant (psql `\copy`, 100 MB each way), a COPY failed half way
//! with CopyFail, and a 1 GB result to a client that stops reading: pgtenant's memory stays
//! bounded (backpressure) and other tenants are not slowed.

mod common;
use common::*;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use futures_util::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// This process's resident memory in KiB (the proxy runs in it).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The tests that measure this process's memory run one at a time.
static MEMORY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// SHA-256 of a file, read in chunks (the files are too big to hold while measuring memory).
fn file_digest(path: &std::path::Path) -> Vec<u8> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path).expect("open");
    let mut h = sha2::Sha256::new();
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut chunk).expect("read");
        if n == 0 {
            return h.finalize().to_vec();
        }
        h.update(&chunk[..n]);
    }
}

/// Samples RSS every 20 ms until stopped; returns the highest value seen.
fn watch_rss() -> (Arc<AtomicBool>, std::thread::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut peak = 0;
        while !s.load(Ordering::Relaxed) {
            peak = peak.max(rss_kib());
            std::thread::sleep(Duration::from_millis(20));
        }
        peak
    });
    (stop, handle)
}

async fn world(tag: &str) -> (pgtenant::server::Proxy, String) {
    let db = unique(tag);
    create_db(&db, "CREATE TABLE blob (id int, payload text);");
    let other = unique(&format!("{tag}_other"));
    create_db(&other, "");
    let toml = config_text(&format!(
        "{}{}",
        tenant_toml("acme", "database", &db, "pool_size = 2"),
        tenant_toml("globex", "database", &other, "pool_size = 2"),
    ));
    (start_proxy(&toml).await, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn psql_copy_100_mb_in_and_out() {
    let _one_at_a_time = MEMORY.lock().await;
    let (proxy, _db) = world("copy_big").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.tsv");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).expect("file"));
        let payload = "p".repeat(1000);
        for i in 0..100_000 {
            writeln!(f, "{i}\t{payload}").expect("write");
        }
    }
    let size = std::fs::metadata(&input).expect("size").len();
    assert!(size > 100_000_000, "{size}");
    let output = dir.path().join("out.tsv");
    let before = rss_kib();
    let (stop, peak) = watch_rss();
    let copy_in = format!("\\copy blob FROM '{}'", input.display());
    let (ok, _, err) = psql_async(&proxy, "user=app dbname=acme", &copy_in).await;
    assert!(ok, "{err}");
    let copy_out = format!(
        "\\copy (SELECT * FROM blob ORDER BY id) TO '{}'",
        output.display()
    );
    let (ok, _, err) = psql_async(&proxy, "user=app dbname=acme", &copy_out).await;
    assert!(ok, "{err}");
    stop.store(true, Ordering::Relaxed);
    let grew = peak.join().expect("watcher").saturating_sub(before);
    assert_eq!(
        file_digest(&output),
        file_digest(&input),
        "what came out is what went in"
    );
    println!("copy 2 x {size} bytes: RSS grew {grew} KiB");
    assert!(
        grew < 64 * 1024,
        "RSS grew {grew} KiB while copying 2 x {size} bytes"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_failed_half_way_leaves_nothing_and_the_session_goes_on() {
    let (proxy, _db) = world("copy_fail").await;
    let client = connect(&proxy, "app", "acme").await;
    {
        let sink = client
            .copy_in("COPY blob FROM STDIN")
            .await
            .expect("copy in");
        futures_util::pin_mut!(sink);
        for i in 0..1000 {
            sink.send(bytes::Bytes::from(format!("{i}\tpartial\n")))
                .await
                .expect("row");
        }
        // Dropped without finish(): tokio-postgres sends CopyFail.
    }
    let n: i64 = client
        .query_one("SELECT count(*) FROM blob", &[])
        .await
        .expect("the session goes on after CopyFail")
        .get(0);
    assert_eq!(n, 0, "a failed COPY leaves no rows");
    // And a COPY that finishes works on the same session.
    let sink = client
        .copy_in("COPY blob FROM STDIN")
        .await
        .expect("copy in");
    futures_util::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"1\tkept\n"))
        .await
        .expect("row");
    assert_eq!(sink.finish().await.expect("finish"), 1);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_1_gb_result_to_a_client_that_stops_reading_keeps_memory_bounded() {
    let _one_at_a_time = MEMORY.lock().await;
    let (proxy, _db) = world("copy_slow").await;
    // A raw client: it asks for ~1 GB and then does not read for a while.
    let mut s = tokio::net::TcpStream::connect(proxy.addr())
        .await
        .expect("tcp");
    let mut buf = BytesMut::new();
    raw_login(&mut s, &mut buf, "app", Some("acme")).await;
    let mut q = BytesMut::new();
    postgres_protocol::message::frontend::query(
        "SELECT repeat('x', 1000) FROM generate_series(1, 1000000)",
        &mut q,
    )
    .expect("query");
    s.write_all(&q).await.expect("send");
    let before = rss_kib();
    let (stop, peak) = watch_rss();

    // Meanwhile another tenant's queries go on at their usual pace.
    let other = connect(&proxy, "app", "globex").await;
    let slowest = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        let q = Instant::now();
        other.simple_query("SELECT 1").await.expect("other tenant");
        slowest.fetch_max(q.elapsed().as_micros() as u64, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stalled_grew = rss_kib().saturating_sub(before);

    // Now read it all.
    let mut total = buf.len() as u64;
    let mut chunk = vec![0u8; 1 << 20];
    let mut tail = BytesMut::new();
    tail.extend_from_slice(&buf);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = s.read(&mut chunk).await.expect("read");
        assert!(n > 0, "closed before ReadyForQuery");
        total += n as u64;
        // Keep only the last bytes to spot ReadyForQuery ('Z', len 5, 'I').
        tail.extend_from_slice(&chunk[..n]);
        if tail.len() > 16 {
            let cut = tail.len() - 16;
            tail.advance(cut);
        }
        if tail.ends_with(&[b'Z', 0, 0, 0, 5, b'I']) {
            break;
        }
        assert!(Instant::now() < deadline, "result not read within 120 s");
    }
    stop.store(true, Ordering::Relaxed);
    let grew = peak.join().expect("watcher").saturating_sub(before);
    println!(
        "{total} bytes read; RSS grew {stalled_grew} KiB while stalled, {grew} KiB at peak; \
         other tenant's slowest query {} µs",
        slowest.load(Ordering::Relaxed)
    );
    assert!(total > 1_000_000_000, "{total}");
    assert!(grew < 64 * 1024, "RSS grew {grew} KiB streaming 1 GB");
    assert!(
        slowest.load(Ordering::Relaxed) < 500_000,
        "another tenant waited {} µs",
        slowest.load(Ordering::Relaxed)
    );
    proxy.shutdown().await;
}
