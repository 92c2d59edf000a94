//! Reload while clients run: a tenant added, one moved to another shard and database, one
//! removed; an invalid file refused with the old configuration kept. And the binary itself:
//! SIGHUP reloads, SIGTERM stops, logs are JSON lines without secrets.

mod common;
use common::*;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Config text: shards `main` and `second` (the same cluster under two names, so a move
/// changes shard and pool), users `app` and admin `ops`, and `tenants`.
fn config(tenants: &str, pool_size: u32) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"

[pool]
default_pool_size = {pool_size}
query_wait_timeout = 10

{main}
{second}
[users.app]
password = "{v}"

[users.ops]
password = "{v}"
admin = true

{tenants}"#,
        main =
            pgtenant::testing::shard_toml("main", cluster().port(), "pgtenant", UPSTREAM_PASSWORD),
        second = pgtenant::testing::shard_toml(
            "second",
            cluster().port(),
            "pgtenant",
            UPSTREAM_PASSWORD
        ),
        v = verifier(),
    )
}

fn database_tenant(name: &str, shard: &str, db: &str) -> String {
    format!(
        "[tenants.{name}]\nplacement = \"database\"\nshard = \"{shard}\"\ndatabase = \"{db}\"\n"
    )
}

fn db_with_row(prefix: &str, row: &str) -> String {
    let db = unique(prefix);
    create_db(
        &db,
        &format!("CREATE TABLE items (name text); INSERT INTO items VALUES ('{row}');"),
    );
    db
}

async fn only_row(client: &tokio_postgres::Client) -> Result<String, tokio_postgres::Error> {
    Ok(client
        .query_one("SELECT name FROM items", &[])
        .await?
        .get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reload_adds_moves_and_removes_tenants_while_clients_run() {
    let (one, two, steady_db, gone_db) = (
        db_with_row("rl_one", "one"),
        db_with_row("rl_two", "two"),
        db_with_row("rl_steady", "steady"),
        db_with_row("rl_gone", "gone"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pgtenant.toml");
    let write = |text: &str| std::fs::write(&path, with_free_metrics_port(text)).expect("write");
    write(&config(
        &[
            database_tenant("mover", "main", &one),
            database_tenant("steady", "main", &steady_db),
            database_tenant("gone", "main", &gone_db),
        ]
        .concat(),
        3,
    ));
    let proxy = pgtenant::server::Proxy::start_from_file(&path)
        .await
        .expect("starts from the file");

    // A tenant keeps working through every reload.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let steady = connect(&proxy, "app", "steady").await;
    let worker = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match only_row(&steady).await {
                    Ok(r) if r == "steady" => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };

    let mover = connect(&proxy, "app", "mover").await;
    assert_eq!(only_row(&mover).await.expect("before"), "one");
    let (gone, gone_conn) = connect_watched(&proxy, "app", "gone").await;
    assert_eq!(only_row(&gone).await.expect("before"), "gone");
    let refused = try_connect(client_config(&proxy, "app", "newbie")).await;
    assert_eq!(sqlstate(&refused.expect_err("not yet listed")), "3D000");

    // Move `mover` to shard `second` and another database, add `newbie`, remove `gone`.
    write(&config(
        &[
            database_tenant("mover", "second", &two),
            database_tenant("steady", "main", &steady_db),
            database_tenant("newbie", "second", &steady_db),
        ]
        .concat(),
        3,
    ));
    proxy.reload().expect("valid configuration reloads");
    // The same connection, at its next transaction, is served from the new place.
    assert_eq!(only_row(&mover).await.expect("after"), "two");
    let newbie = connect(&proxy, "app", "newbie").await;
    assert_eq!(only_row(&newbie).await.expect("newbie"), "steady");
    assert_eq!(ended_with(gone_conn, 5).await, "57P01");
    let tenants = psql(&proxy, "user=ops dbname=pgtenant", "SHOW TENANTS").1;
    assert!(
        tenants
            .lines()
            .any(|l| l.starts_with(&format!("mover|database|second|{two}|"))),
        "{tenants}"
    );
    let servers = psql(&proxy, "user=ops dbname=pgtenant", "SHOW SERVERS").1;
    assert!(
        servers.contains(&format!("S|pgtenant|{two}|second|")),
        "{servers}"
    );

    // An invalid file is refused, named, and the configuration in force stays.
    std::fs::write(&path, "[pool]\ndefault_pool_size = 0\n").expect("write");
    let err = proxy.reload().expect_err("invalid configuration refused");
    assert!(err.to_string().contains("default_pool_size"), "{err}");
    let (ok_console, _, console_err) = psql(&proxy, "user=ops dbname=pgtenant", "RELOAD");
    assert!(
        !ok_console && console_err.contains("default_pool_size"),
        "{console_err}"
    );
    assert_eq!(only_row(&mover).await.expect("still moved"), "two");
    let newbie2 = connect(&proxy, "app", "newbie").await;
    assert_eq!(
        only_row(&newbie2).await.expect("newbie still listed"),
        "steady"
    );
    let metrics = scrape(&proxy).await;
    assert_eq!(
        sample(
            &metrics,
            "pgtenant_config_reloads_total",
            &[("result", "ok")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            "pgtenant_config_reloads_total",
            &[("result", "error")]
        ),
        2.0
    );

    // RELOAD from the console puts a valid file in force too.
    write(&config(
        &[
            database_tenant("mover", "main", &one),
            database_tenant("steady", "main", &steady_db),
        ]
        .concat(),
        3,
    ));
    let (ok_console, _, console_err) = psql(&proxy, "user=ops dbname=pgtenant", "RELOAD");
    assert!(ok_console, "{console_err}");
    assert_eq!(only_row(&mover).await.expect("moved back"), "one");

    stop.store(true, Ordering::Relaxed);
    worker.await.expect("worker");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "steady saw errors during reloads"
    );
    assert!(ok.load(Ordering::Relaxed) > 10);
    drop((mover, newbie, newbie2));
    proxy.shutdown().await;
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn signal(pid: u32, sig: libc::c_int) {
    // The child this test started, by its pid.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reloads_on_sighup_stops_on_sigterm_and_logs_json_without_secrets() {
    let db = db_with_row("rl_bin", "bin");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pgtenant.toml");
    let port = free_port();
    let text = |tenants: &str| {
        config(tenants, 2).replace(
            "listen = \"127.0.0.1:0\"",
            &format!(
                "listen = \"127.0.0.1:{port}\"\nlog_format = \"json\"\nmetrics_addr = \"off\""
            ),
        )
    };
    std::fs::write(&path, text(&database_tenant("acme", "main", &db))).expect("write");
    let log = dir.path().join("stderr.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pgtenant"))
        .args(["run", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("pgtenant starts");
    let pid = child.id();

    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1").port(port).user("app").dbname("acme");
    let deadline = Instant::now() + Duration::from_secs(20);
    let client = loop {
        let mut c = cfg.clone();
        c.password(CLIENT_PASSWORD);
        match try_connect(c).await {
            Ok(client) => break client,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("pgtenant did not come up: {e:?}"),
        }
    };
    assert_eq!(only_row(&client).await.expect("query"), "bin");
    let wrong = "hunter2-wrong-password";
    let mut bad = cfg.clone();
    bad.password(wrong);
    assert!(try_connect(bad).await.is_err());

    // SIGHUP: a new tenant appears without a restart.
    std::fs::write(
        &path,
        text(
            &[
                database_tenant("acme", "main", &db),
                database_tenant("newco", "main", &db),
            ]
            .concat(),
        ),
    )
    .expect("write");
    signal(pid, libc::SIGHUP);
    let mut newco = cfg.clone();
    newco.dbname("newco").password(CLIENT_PASSWORD);
    let deadline = Instant::now() + Duration::from_secs(10);
    let newco = loop {
        match try_connect(newco.clone()).await {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("SIGHUP did not add the tenant: {e:?}"),
        }
    };
    assert_eq!(only_row(&newco).await.expect("newco"), "bin");
    drop((client, newco));

    // SIGTERM: a clean exit.
    signal(pid, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "pgtenant did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");

    let logs = std::fs::read_to_string(&log).expect("logs");
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let find = |message: &str| {
        lines
            .iter()
            .find(|l| l["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} line in:\n{logs}"))
    };
    let login = find("client logged in");
    assert_eq!(login["tenant"], "acme");
    assert_eq!(login["user"], "app");
    assert_eq!(login["shard"], "main");
    assert!(
        login["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:"))
    );
    let bye = find("client disconnected");
    assert!(
        bye["duration_s"].as_f64().is_some() && bye["bytes_received"].as_u64() > Some(0),
        "{bye}"
    );
    find("login refused");
    find("configuration reloaded");
    assert!(
        !logs.contains(wrong)
            && !logs.contains(CLIENT_PASSWORD)
            && !logs.contains(UPSTREAM_PASSWORD)
    );
}
