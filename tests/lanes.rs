//! Worker threads ("lanes", `server.workers`): sessions dealt out to several single-threaded
//! runtimes, sharing pools across them (a server connection moves to the lane of the session
//! it is handed to).

mod common;
use common::*;
use futures_util::future::join_all;
use std::sync::Arc;

/// Names of this process's threads that are pgtenant worker lanes.
fn lane_threads() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .filter(|n| n.starts_with("pgtenant-lane"))
        .collect();
    names.sort();
    names
}

/// `server.workers = 4`: the proxy's own runtime and three worker threads take sessions in
/// turn, and server connections opened on one serve sessions on the others. 24 clients of
/// two tenants sharing a pool of two connections see only their own rows, a cancel reaches a
/// query wherever its session runs, and the threads end with the proxy. (The only test of
/// this binary: the others' proxies would start and stop lane threads of their own.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_on_four_worker_threads_share_the_pools() {
    let db = unique("shared_lanes");
    create_shared_db(&db, &[("t0", "t0-row"), ("t1", "t1-row")]);
    let tenants = ["t0", "t1"].map(|t| tenant_toml(t, "shared", &db, "pool_size = 2"));
    let toml = format!(
        "{}\n[users.ops]\npassword = \"{}\"\nadmin = true\n",
        config_text(&tenants.concat()).replace(
            "listen = \"127.0.0.1:0\"",
            "listen = \"127.0.0.1:0\"\nworkers = 4",
        ),
        verifier()
    );
    let before = lane_threads().len();
    let proxy = Arc::new(start_proxy(&toml).await);
    assert_eq!(lane_threads().len(), before + 3, "{:?}", lane_threads());
    let tasks = (0..24).map(|i| {
        let proxy = proxy.clone();
        let tenant = ["t0", "t1"][i % 2];
        tokio::spawn(async move {
            let c = connect(&proxy, &format!("app.{tenant}"), tenant).await;
            for j in 0..15 {
                let names = item_names(&c).await;
                assert_eq!(
                    names,
                    vec![format!("{tenant}-row")],
                    "client {i}, round {j}"
                );
            }
        })
    });
    for r in join_all(tasks).await {
        r.expect("client task");
    }
    // The pool's two connections served sessions of every lane: they moved between lanes'
    // event loops (and answered there, above).
    let (ok, pools, err) = psql(&proxy, "user=ops dbname=pgtenant", "SHOW POOLS");
    assert!(ok, "{err}");
    let row = pools
        .lines()
        .find(|l| l.starts_with(&format!("{db}|")))
        .unwrap_or_else(|| panic!("the pool in SHOW POOLS: {pools}"));
    let moves: u64 = row
        .rsplit('|')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("lane_moves in {row}"));
    assert!(moves > 0, "connections moved between lanes: {row}");
    // Four clients in a row, one on each lane: each cancels its own query, which runs on
    // whichever server connection it got.
    for i in 0..4 {
        let tenant = ["t0", "t1"][i % 2];
        let c = connect(&proxy, &format!("app.{tenant}"), tenant).await;
        assert_eq!(item_names(&c).await, vec![format!("{tenant}-row")]);
        let token = c.cancel_token();
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            token.cancel_query(tokio_postgres::NoTls).await
        });
        let started = std::time::Instant::now();
        let e = c
            .simple_query("SELECT pg_sleep(20)")
            .await
            .expect_err("canceled");
        assert_eq!(sqlstate(&e), "57014", "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        canceller.await.expect("join").expect("cancel sent");
    }
    Arc::into_inner(proxy).expect("sole owner").shutdown().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while lane_threads().len() > before && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(lane_threads().len(), before, "{:?}", lane_threads());
}
