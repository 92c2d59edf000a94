//! An operator's day: Prometheus metrics, the admin console over psql, reload, pause and
//! suspend, idle timeouts, graceful shutdown. Real cluster, real clients.

mod common;
use common::*;

use std::time::{Duration, Instant};

/// Two tenants with a database each (`alpha`, `beta`) and one in a shared database under
/// the guard (`gamma`); `ops` is an admin, `app` is not.
async fn setup(tag: &str, server_extra: &str) -> pgtenant::server::Proxy {
    setup_dbs(tag, server_extra).await.0
}

/// [`setup`], also returning alpha's database.
async fn setup_dbs(tag: &str, server_extra: &str) -> (pgtenant::server::Proxy, String) {
    let (a, b, shared) = (
        unique(&format!("ops_a_{tag}")),
        unique(&format!("ops_b_{tag}")),
        unique(&format!("ops_s_{tag}")),
    );
    for db in [&a, &b] {
        create_db(
            db,
            "CREATE TABLE items (name text); INSERT INTO items VALUES ('row');",
        );
    }
    create_shared_db(&shared, &[("gamma", "g1")]);
    let toml = format!(
        r#"[server]
listen = "127.0.0.1:0"
{server_extra}

[pool]
default_pool_size = 3
query_wait_timeout = 10

{shard}
[users.app]
password = "{v}"

[users.ops]
password = "{v}"
admin = true

{alpha}{beta}{gamma}"#,
        shard =
            pgtenant::testing::shard_toml("main", cluster().port(), "pgtenant", UPSTREAM_PASSWORD),
        v = verifier(),
        alpha = tenant_toml("alpha", "database", &a, ""),
        beta = tenant_toml("beta", "database", &b, ""),
        gamma = tenant_toml("gamma", "shared", &shared, ""),
    );
    (start_proxy(&toml).await, a)
}

/// `SELECT count(*) FROM items WHERE name = …` in `db`, straight on the cluster.
fn count_rows(db: &str, name: &str) -> String {
    cluster()
        .psql(
            db,
            &format!("SELECT count(*) FROM items WHERE name = '{name}'"),
        )
        .expect("count")
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_move_for_the_right_tenant_by_the_right_amounts() {
    let proxy = setup("metrics", "").await;
    let before = scrape(&proxy).await;

    let alpha = connect(&proxy, "app", "alpha").await;
    let beta = connect(&proxy, "app", "beta").await;
    for _ in 0..20 {
        alpha.simple_query("SELECT 1").await.expect("alpha");
    }
    for _ in 0..5 {
        beta.simple_query("SELECT 1").await.expect("beta");
    }
    // Prepared statements: Parse once, Bind on every execution.
    let stmt = alpha.prepare("SELECT $1::int + 1").await.expect("prepare");
    for i in 0..3 {
        alpha.query_one(&stmt, &[&i]).await.expect("prepared");
    }
    let gamma = connect(&proxy, "app", "gamma").await;
    let refused = gamma
        .simple_query("SET app.current_tenant = 'alpha'")
        .await
        .expect_err("guard refuses");
    assert_eq!(sqlstate(&refused), "42501");
    gamma.simple_query("SELECT 1").await.expect("gamma goes on");
    // A wrong password and an unknown tenant.
    let mut bad = client_config(&proxy, "app", "alpha");
    bad.password("wrong");
    assert_eq!(
        sqlstate(&try_connect(bad).await.expect_err("refused")),
        "28P01"
    );
    let unknown = try_connect(client_config(&proxy, "app", "nosuchtenant")).await;
    assert_eq!(sqlstate(&unknown.expect_err("refused")), "3D000");
    // Without a file, RELOAD is refused and counted.
    assert!(proxy.reload().is_err());

    let after = scrape(&proxy).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        sample(&after, name, labels) - sample(&before, name, labels)
    };
    let a = [("tenant", "alpha")];
    let b = [("tenant", "beta")];
    // 20 simple queries, plus the prepared statement's Parse/Describe round (a transaction of
    // its own) and its three executions.
    assert_eq!(delta("pgtenant_transactions_total", &a), 24.0, "{after}");
    assert_eq!(delta("pgtenant_transactions_total", &b), 5.0, "{after}");
    assert_eq!(delta("pgtenant_queries_total", &a), 23.0, "{after}");
    assert_eq!(delta("pgtenant_queries_total", &b), 5.0, "{after}");
    assert_eq!(
        delta("pgtenant_transaction_duration_seconds_count", &b),
        5.0
    );
    assert_eq!(delta("pgtenant_pool_wait_seconds_count", &b), 5.0);
    assert!(delta("pgtenant_client_bytes_received_total", &b) >= 5.0 * 14.0);
    assert!(delta("pgtenant_client_bytes_sent_total", &b) > 0.0);
    let prepared = delta("pgtenant_prepared_cache_hits_total", &a)
        + delta("pgtenant_prepared_cache_misses_total", &a);
    assert_eq!(
        prepared, 4.0,
        "the Describe of prepare and one Bind per execution: {after}"
    );
    // Shared placement sets the tenant GUC once on its server connection, which then keeps
    // it; database placement needs no setup.
    assert_eq!(
        delta("pgtenant_tenant_setups_total", &[("tenant", "gamma")]),
        1.0,
        "{after}"
    );
    assert_eq!(delta("pgtenant_tenant_setups_total", &a), 0.0, "{after}");
    assert_eq!(
        delta(
            "pgtenant_errors_total",
            &[("tenant", "gamma"), ("kind", "guard_refused")]
        ),
        1.0,
        "{after}"
    );
    assert_eq!(
        delta("pgtenant_auth_failures_total", &[("reason", "password")]),
        1.0
    );
    assert_eq!(
        delta("pgtenant_tenant_rejections_total", &[("reason", "unknown")]),
        1.0
    );
    assert_eq!(
        delta("pgtenant_config_reloads_total", &[("result", "error")]),
        1.0
    );
    // Gauges: one idle client per tenant, the shard up, server connections present.
    assert_eq!(
        sample(
            &after,
            "pgtenant_client_connections",
            &[("tenant", "alpha"), ("state", "idle")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            "pgtenant_client_connections",
            &[("tenant", "alpha"), ("state", "active")]
        ),
        0.0
    );
    assert_eq!(
        sample(&after, "pgtenant_shard_up", &[("shard", "main")]),
        1.0
    );
    assert!(sample(&after, "pgtenant_server_connections", &[("state", "idle")]) >= 3.0);

    // Every metric the Grafana dashboard uses is exported.
    let listed = include_str!("../docker/grafana/metrics.txt");
    for name in listed.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if name == "pgtenant_prepared_cache_evictions_total" {
            continue; // only after an eviction: see prepared_statements_are_evicted_lru
        }
        assert!(
            after.contains(&format!("\n{name}")) || after.contains(&format!("# TYPE {name} ")),
            "{name} is not exported:\n{after}"
        );
    }
    drop((alpha, beta, gamma));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tenant_labels_metrics_have_no_tenant_label() {
    let proxy = setup("nolabels", "tenant_labels = \"none\"").await;
    let alpha = connect(&proxy, "app", "alpha").await;
    let beta = connect(&proxy, "app", "beta").await;
    for _ in 0..3 {
        alpha.simple_query("SELECT 1").await.expect("alpha");
        beta.simple_query("SELECT 1").await.expect("beta");
    }
    let text = scrape(&proxy).await;
    assert!(!text.contains("tenant=\""), "{text}");
    assert_eq!(
        sample(&text, "pgtenant_transactions_total", &[]),
        6.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "pgtenant_client_connections", &[("state", "idle")]),
        2.0
    );
    proxy.shutdown().await;
}

const ADMIN: &str = "user=ops dbname=pgtenant";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn console_lists_pools_clients_servers_tenants_shards_stats_config() {
    let proxy = setup("console", "").await;
    let alpha = connect(&proxy, "app", "alpha").await;
    for _ in 0..4 {
        alpha.simple_query("SELECT 1").await.expect("alpha");
    }

    // Only admins reach the console; a wrong password is still a wrong password.
    let (ok, _, err) = psql(&proxy, "user=app dbname=pgtenant", "SHOW POOLS");
    assert!(
        !ok && err.contains("may not use the admin console"),
        "{err}"
    );

    let show = |what: &str| {
        let (ok, out, err) = psql(&proxy, ADMIN, &format!("SHOW {what}"));
        assert!(ok, "SHOW {what}: {err}");
        out
    };
    assert!(show("VERSION").starts_with("pgtenant "));
    let pools = show("POOLS");
    let alpha_db = pools
        .lines()
        .find(|l| l.contains("ops_a_console"))
        .unwrap_or_else(|| panic!("alpha's pool in SHOW POOLS: {pools}"));
    // database|user|shard|cl_active|cl_waiting|cl_idle|sv_active|sv_idle|maxwait|maxwait_us|pool_mode|pool_size
    let cols: Vec<&str> = alpha_db.split('|').collect();
    assert_eq!(cols[1..3], ["pgtenant", "main"], "{alpha_db}");
    assert_eq!(cols[5], "1", "one idle client: {alpha_db}");
    assert_eq!(cols[10..12], ["transaction", "3"], "{alpha_db}");
    let clients = show("CLIENTS");
    assert!(
        clients
            .lines()
            .any(|l| l.starts_with("C|app|alpha|") && l.contains("|idle|127.0.0.1|")),
        "{clients}"
    );
    let servers = show("SERVERS");
    assert!(
        servers
            .lines()
            .any(|l| l.starts_with("S|pgtenant|ops_a_console")),
        "{servers}"
    );
    let tenants = show("TENANTS");
    assert!(
        tenants
            .lines()
            .any(|l| l.starts_with("alpha|database|main|") && l.contains("|active|1|")),
        "{tenants}"
    );
    assert!(
        tenants.lines().any(|l| l.starts_with("gamma|shared|main|")),
        "{tenants}"
    );
    let shards = show("SHARDS");
    assert!(shards.starts_with("main|127.0.0.1|"), "{shards}");
    let stats = show("STATS");
    let row = stats
        .lines()
        .find(|l| l.starts_with("alpha|"))
        .unwrap_or_else(|| panic!("{stats}"));
    assert_eq!(row.split('|').nth(3), Some("4"), "4 transactions: {row}");
    let config = show("CONFIG");
    assert!(
        config.lines().any(|l| l == "default_pool_size|3"),
        "{config}"
    );
    assert!(
        !config.contains("SCRAM-SHA-256"),
        "no secrets in SHOW CONFIG"
    );

    let (ok, _, err) = psql(&proxy, ADMIN, "SHOW DATABASES");
    assert!(
        !ok && err.contains("SHOW POOLS") && err.contains("SUSPEND TENANT"),
        "{err}"
    );
    let (ok, _, err) = psql(&proxy, ADMIN, "RESUME alpha");
    assert!(!ok && err.contains("not paused"), "{err}");
    drop(alpha);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn suspend_kill_pause_resume_from_the_console() {
    let proxy = setup("holds", "").await;

    // SUSPEND TENANT: the idle client is closed, new ones refused; RESUME TENANT lifts it.
    let (beta, beta_conn) = connect_watched(&proxy, "app", "beta").await;
    beta.simple_query("SELECT 1").await.expect("beta");
    let (ok, _, err) = psql(&proxy, ADMIN, "SUSPEND TENANT beta");
    assert!(ok, "{err}");
    assert_eq!(ended_with(beta_conn, 5).await, "57P01");
    let refused = try_connect(client_config(&proxy, "app", "beta")).await;
    let e = refused.expect_err("suspended");
    assert_eq!(sqlstate(&e), "28000");
    assert!(format!("{e:?}").contains("suspended"), "{e:?}");
    assert!(psql(&proxy, ADMIN, "RESUME TENANT beta").0);
    let beta = connect(&proxy, "app", "beta").await;
    beta.simple_query("SELECT 1").await.expect("beta again");

    // KILL: a client inside a transaction is closed now; its transaction is rolled back.
    let (alpha, alpha_conn) = connect_watched(&proxy, "app", "alpha").await;
    alpha
        .batch_execute("BEGIN; INSERT INTO items VALUES ('killed')")
        .await
        .expect("open transaction");
    assert!(psql(&proxy, ADMIN, "KILL alpha").0);
    assert_eq!(ended_with(alpha_conn, 5).await, "57P01");
    let alpha = connect(&proxy, "app", "alpha").await;
    let n: i64 = alpha
        .query_one("SELECT count(*) FROM items WHERE name = 'killed'", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0, "the killed transaction was rolled back");
    beta.simple_query("SELECT 1")
        .await
        .expect("beta unaffected by KILL alpha");

    // PAUSE alpha waits for alpha's running transaction, then holds new ones until RESUME.
    let alpha2 = connect(&proxy, "app", "alpha").await;
    alpha.batch_execute("BEGIN").await.expect("begin");
    let pause = psql_async(&proxy, ADMIN, "PAUSE alpha");
    tokio::pin!(pause);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut pause)
            .await
            .is_err(),
        "PAUSE returned while alpha's transaction ran"
    );
    alpha.batch_execute("COMMIT").await.expect("commit");
    let (ok, _, err) = tokio::time::timeout(Duration::from_secs(5), pause)
        .await
        .expect("PAUSE returns once the transaction ended");
    assert!(ok, "{err}");
    let held = tokio::spawn(async move {
        let t = Instant::now();
        alpha.simple_query("SELECT 1").await.expect("after resume");
        t.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !held.is_finished(),
        "a paused tenant's transaction did not wait"
    );
    beta.simple_query("SELECT 1")
        .await
        .expect("beta is not paused");
    let tenants = psql(&proxy, ADMIN, "SHOW TENANTS").1;
    assert!(
        tenants
            .lines()
            .any(|l| l.starts_with("alpha|") && l.contains("|paused|")),
        "{tenants}"
    );
    // A cancel reaches a request that PAUSE holds: it fails at once, the others still wait.
    let token = alpha2.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let asked = Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(5), alpha2.simple_query("SELECT 1"))
        .await
        .expect("the cancel answered the held request")
        .expect_err("cancelled while paused");
    assert_eq!(sqlstate(&e), "57014", "{e:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
    canceller.await.expect("join").expect("cancel sent");
    assert!(!held.is_finished(), "the cancel released another request");
    assert!(psql(&proxy, ADMIN, "RESUME alpha").0);
    let waited = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("resumed")
        .expect("task");
    assert!(waited >= Duration::from_millis(450), "{waited:?}");
    alpha2
        .simple_query("SELECT 1")
        .await
        .expect("the cancelled client carries on");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_lets_transactions_finish_then_closes_with_57p01() {
    let (proxy, db) = setup_dbs("shutdown", "shutdown_timeout = 10").await;
    let addr = proxy.addr();
    let (idle, idle_conn) = connect_watched(&proxy, "app", "alpha").await;
    idle.simple_query("SELECT 1").await.expect("idle client");
    let (busy, busy_conn) = connect_watched(&proxy, "app", "alpha").await;
    busy.batch_execute("BEGIN; INSERT INTO items VALUES ('finished')")
        .await
        .expect("transaction");

    let started = Instant::now();
    let stopping = tokio::spawn(proxy.shutdown());
    // The idle client is told at once; new clients are not accepted.
    assert_eq!(ended_with(idle_conn, 5).await, "57P01");
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(addr.port())
        .user("app")
        .password(CLIENT_PASSWORD)
        .dbname("alpha")
        .connect_timeout(Duration::from_secs(2));
    assert!(try_connect(cfg).await.is_err(), "accepted during shutdown");
    // The running transaction finishes, then its client is closed too.
    busy.simple_query("SELECT 1")
        .await
        .expect("inside the transaction");
    busy.batch_execute("COMMIT")
        .await
        .expect("commit goes through");
    assert_eq!(ended_with(busy_conn, 5).await, "57P01");
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("shutdown returns once clients are gone")
        .expect("task");
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(
        count_rows(&db, "finished"),
        "1",
        "the committed row is there"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_timeout_closes_open_transactions_and_rolls_them_back() {
    let (proxy, db) = setup_dbs("stuck", "fast_shutdown_timeout = 1").await;
    let (stuck, stuck_conn) = connect_watched(&proxy, "app", "alpha").await;
    stuck
        .batch_execute("BEGIN; INSERT INTO items VALUES ('stuck')")
        .await
        .expect("transaction");
    let started = Instant::now();
    proxy.shutdown_fast().await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(ended_with(stuck_conn, 5).await, "57P01");
    assert_eq!(
        count_rows(&db, "stuck"),
        "0",
        "the open transaction was rolled back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_clients_and_idle_transactions_time_out() {
    let proxy = setup(
        "idle",
        "client_idle_timeout = 1\nidle_transaction_timeout = 1",
    )
    .await;
    let (idle, idle_conn) = connect_watched(&proxy, "app", "alpha").await;
    idle.simple_query("SELECT 1").await.expect("query");
    let (open, open_conn) = connect_watched(&proxy, "app", "alpha").await;
    open.batch_execute("BEGIN; INSERT INTO items VALUES ('idle')")
        .await
        .expect("transaction");
    assert_eq!(ended_with(open_conn, 5).await, "25P03");
    assert_eq!(ended_with(idle_conn, 5).await, "57P05");
    // A busy client is not idle.
    let busy = connect(&proxy, "app", "beta").await;
    for _ in 0..4 {
        busy.simple_query("SELECT pg_sleep(0.4)")
            .await
            .expect("busy");
    }
    let alpha = connect(&proxy, "app", "alpha").await;
    let n: i64 = alpha
        .query_one("SELECT count(*) FROM items WHERE name = 'idle'", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0, "the idle transaction was rolled back");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_max_clients_caps_only_that_tenant() {
    let db = unique("ops_cap");
    create_db(&db, "CREATE TABLE items (name text);");
    let toml = config_text(&format!(
        "{}{}",
        tenant_toml("capped", "database", &db, "max_clients = 2"),
        tenant_toml("free", "database", &db, ""),
    ));
    let proxy = start_proxy(&toml).await;
    let _a = connect(&proxy, "app", "capped").await;
    let _b = connect(&proxy, "app", "capped").await;
    let third = try_connect(client_config(&proxy, "app", "capped")).await;
    let e = third.expect_err("over the tenant's cap");
    assert_eq!(sqlstate(&e), "53300");
    assert!(format!("{e:?}").contains("capped"), "{e:?}");
    let mut others = Vec::new();
    for _ in 0..4 {
        others.push(connect(&proxy, "app", "free").await);
    }
    drop(_a);
    // The slot comes back when a client leaves.
    let deadline = Instant::now() + Duration::from_secs(5);
    while try_connect(client_config(&proxy, "app", "capped"))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "slot not returned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_shutdown_asks_the_process_to_stop() {
    let proxy = setup("console_stop", "").await;
    let requested = tokio::time::timeout(Duration::from_millis(300), proxy.shutdown_requested());
    assert!(requested.await.is_err(), "no shutdown asked yet");
    let (ok, out, err) = psql(&proxy, ADMIN, "SHOW VERSION; SHUTDOWN");
    assert!(ok && out.starts_with("pgtenant "), "{out} {err}");
    tokio::time::timeout(Duration::from_secs(5), proxy.shutdown_requested())
        .await
        .expect("SHUTDOWN from the console reaches the process");
    proxy.shutdown().await;
}
