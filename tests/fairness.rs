//! Fair checkout under saturation (issue 7, item 4): a tenant with many busy clients cannot
//! push another tenant's single client past a few transactions of wait, and a tenant capped at
//! N server connections never holds more while other tenants in the same pool proceed.

mod common;
use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const POOL_SIZE: usize = 4;
const BUSY_CLIENTS: usize = 150;
/// Each transaction sleeps this long on the server.
const TX_SLEEP: Duration = Duration::from_millis(10);

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A direct superuser connection to the test cluster (past the proxy), for watching
/// `pg_stat_activity`.
async fn superuser() -> tokio_postgres::Client {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(cluster().port())
        .user("postgres")
        .password(pgtenant::testing::SUPERUSER_PASSWORD)
        .dbname("postgres");
    try_connect(cfg).await.expect("superuser connects")
}

/// Tenant `busy` runs 150 clients doing short transactions back to back over one pool of 4
/// server connections; tenant `lone` runs one client doing the same. First come, first served
/// would make `lone` wait behind every busy client already queued: about
/// (150 - 4) / throughput per transaction. Served round-robin by tenant, `lone` waits for about
/// one server connection to come free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_tenant_cannot_starve_a_lone_client() {
    let db = unique("shared_fair");
    create_shared_db(&db, &[]);
    let tenants = tenant_toml("busy", "shared", &db, &format!("pool_size = {POOL_SIZE}"))
        + &tenant_toml("lone", "shared", &db, &format!("pool_size = {POOL_SIZE}"));
    let toml = config_text(&tenants).replace(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"\nmax_client_conn = 400",
    );
    let proxy = Arc::new(start_proxy(&toml).await);
    let sql = format!("SELECT pg_sleep({})", TX_SLEEP.as_secs_f64());

    // The busy tenant's clients log in first, then all start at once.
    let mut busy = Vec::new();
    for _ in 0..BUSY_CLIENTS {
        busy.push(connect(&proxy, "app.busy", "busy").await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let busy_done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = busy
        .into_iter()
        .map(|c| {
            let (stop, done, sql) = (stop.clone(), busy_done.clone(), sql.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    c.simple_query(&sql).await.expect("busy transaction");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let lone = connect(&proxy, "app.lone", "lone").await;
    // Let the queue fill up.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let start = Instant::now();
    let done_at_start = busy_done.load(Ordering::Relaxed);
    let mut waits = Vec::new();
    while waits.len() < 30 && start.elapsed() < Duration::from_secs(6) {
        let t = Instant::now();
        lone.simple_query(&sql).await.expect("lone transaction");
        waits.push(t.elapsed().saturating_sub(TX_SLEEP));
    }
    let elapsed = start.elapsed();
    let busy_tx = busy_done.load(Ordering::Relaxed) - done_at_start;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("busy client");
    }

    let throughput = (busy_tx + waits.len() as u64) as f64 / elapsed.as_secs_f64();
    // First come, first served: every busy client queued ahead goes first.
    let fifo_wait = (BUSY_CLIENTS - POOL_SIZE) as f64 / throughput;
    let n = waits.len();
    let max = *waits.iter().max().expect("some transactions");
    let med = median(&mut waits);
    println!(
        "fairness: pool {POOL_SIZE}, {BUSY_CLIENTS} busy clients, {throughput:.0} tx/s; \
         lone client: {n} transactions, median wait {:.1} ms, max {:.1} ms; \
         first-come-first-served would be ~{:.0} ms",
        med.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        fifo_wait * 1e3
    );
    assert!(
        n >= 10,
        "the lone client ran only {n} transactions in {elapsed:?}"
    );
    assert!(
        med.as_secs_f64() < fifo_wait / 5.0,
        "median wait {med:?} is not clearly below first-come-first-served ({fifo_wait:.3}s)"
    );
    Arc::into_inner(proxy).expect("sole owner").shutdown().await;
}

/// Tenant `capped` (max_server_connections = 1) runs 8 clients, tenant `free` 4, in one pool of
/// 4: `capped` never holds two server connections at once, `free` uses the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_tenant_never_holds_more_than_its_cap() {
    let db = unique("shared_cap");
    create_shared_db(&db, &[]);
    let tenants = tenant_toml(
        "capped",
        "shared",
        &db,
        &format!("pool_size = {POOL_SIZE}\nmax_server_connections = 1"),
    ) + &tenant_toml("free", "shared", &db, &format!("pool_size = {POOL_SIZE}"));
    let proxy = Arc::new(start_proxy(&config_text(&tenants)).await);
    let watcher = superuser().await;
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let mut tasks = Vec::new();
    for (tenant, clients, idx) in [("capped", 8, 0usize), ("free", 4, 1)] {
        for _ in 0..clients {
            let c = connect(&proxy, &format!("app.{tenant}"), tenant).await;
            let (stop, counts) = (stop.clone(), counts.clone());
            let sql = format!("SELECT pg_sleep(0.03) /* {tenant}-marker */");
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    c.simple_query(&sql).await.expect("transaction");
                    counts[idx].fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    }
    let (mut max_capped, mut max_free) = (0i64, 0i64);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        let row = watcher
            .query_one(
                "SELECT count(*) FILTER (WHERE query LIKE '%capped-marker%'),
                        count(*) FILTER (WHERE query LIKE '%free-marker%')
                   FROM pg_stat_activity
                  WHERE datname = $1 AND state = 'active'",
                &[&db],
            )
            .await
            .expect("activity");
        max_capped = max_capped.max(row.get(0));
        max_free = max_free.max(row.get(1));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("client");
    }
    let (capped_tx, free_tx) = (
        counts[0].load(Ordering::Relaxed),
        counts[1].load(Ordering::Relaxed),
    );
    println!(
        "per-tenant cap: capped ran {capped_tx} transactions on at most {max_capped} server \
         connections at once; free ran {free_tx} on at most {max_free}"
    );
    assert_eq!(
        max_capped, 1,
        "the capped tenant held {max_capped} connections"
    );
    assert!(max_free >= 2, "the other tenant never ran in parallel");
    // 3 s of 30 ms transactions on one connection is at most ~100; free has 3 connections.
    assert!(
        capped_tx >= 20 && free_tx > capped_tx,
        "{capped_tx} / {free_tx}"
    );
    Arc::into_inner(proxy).expect("sole owner").shutdown().await;
}
