//! pgbench through the proxy in transaction mode: select-only runs with zero errors in the
//! simple, extended and prepared protocols, with more clients than server connections.

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_select_only_has_zero_errors() {
    let db = unique("erp_bench");
    create_db(&db, "");
    let (ok, text) = pgbench(
        &["-i", "-s", "1", "-q"],
        cluster().port(),
        "pgtenant",
        &db,
        UPSTREAM_PASSWORD,
    );
    assert!(ok, "pgbench -i: {text}");
    let tenants = tenant_toml("bench", "database", &db, "pool_size = 4")
        + &tenant_toml("benchs", "shared", &db, "pool_size = 4");
    let proxy = start_proxy(&config_text(&tenants)).await;
    let port = proxy.addr().port();
    for (tenant, mode) in [
        ("bench", "simple"),
        ("bench", "extended"),
        ("bench", "prepared"),
        ("benchs", "extended"),
        ("benchs", "prepared"),
    ] {
        let user = format!("app.{tenant}");
        let (ok, text) = tokio::task::spawn_blocking(move || {
            pgbench(
                &["-n", "-S", "-T", "3", "-c", "8", "-j", "2", "-M", mode],
                port,
                &user,
                tenant,
                CLIENT_PASSWORD,
            )
        })
        .await
        .expect("join");
        assert!(ok, "pgbench {tenant} -M {mode}: {text}");
        assert!(text.contains("number of failed transactions: 0"), "{text}");
        let tx: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
            .and_then(|v| v.split('/').next())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no transaction count in {text}"));
        assert!(tx > 100, "only {tx} transactions: {text}");
    }
    proxy.shutdown().await;
}
