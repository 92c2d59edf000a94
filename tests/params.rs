//! Session parameters from the startup packet and `options` are what each client sees on
//! every transaction, whichever server connection runs it.

mod common;
use common::*;

async fn show(client: &tokio_postgres::Client, name: &str) -> String {
    client
        .query_one(&format!("SHOW {name}"), &[])
        .await
        .unwrap_or_else(|e| panic!("SHOW {name}: {e:?}"))
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_sees_its_own_startup_parameters_on_a_shared_server_connection() {
    let db = unique("params");
    create_db(
        &db,
        "CREATE SCHEMA custom; CREATE TABLE custom.only_here (x int);",
    );
    // One server connection: the two clients' transactions alternate on it.
    let proxy = start_proxy(&config_text(&tenant_toml(
        "acme",
        "database",
        &db,
        "pool_size = 1",
    )))
    .await;
    let mut a = client_config(&proxy, "app.acme", "acme");
    a.application_name("alpha").options(
        "-c TimeZone=Asia/Tokyo -c DateStyle=SQL,DMY -c statement_timeout=1500 -c search_path=custom,public",
    );
    let a = try_connect(a).await.expect("client a");
    let b = connect(&proxy, "app.acme", "acme").await;
    let default_tz = cluster()
        .psql("postgres", "SHOW TimeZone")
        .expect("server default");
    assert_ne!(default_tz, "Asia/Tokyo");
    for _ in 0..3 {
        assert_eq!(show(&a, "TimeZone").await, "Asia/Tokyo");
        assert_eq!(show(&a, "DateStyle").await, "SQL, DMY");
        assert_eq!(show(&a, "application_name").await, "alpha");
        assert_eq!(show(&a, "statement_timeout").await, "1500ms");
        a.simple_query("SELECT count(*) FROM only_here")
            .await
            .expect("search_path=custom,public reaches custom");

        assert_eq!(show(&b, "TimeZone").await, default_tz);
        assert_eq!(show(&b, "DateStyle").await, "ISO, MDY");
        assert_eq!(show(&b, "application_name").await, "");
        assert_eq!(show(&b, "statement_timeout").await, "0");
        let e = b
            .simple_query("SELECT count(*) FROM only_here")
            .await
            .expect_err("b's search_path is the default");
        assert_eq!(sqlstate(&e), "42P01");
    }
    let d: String = a
        .query_one("SELECT DATE '2024-01-02'::text", &[])
        .await
        .expect("date")
        .get(0);
    assert_eq!(d, "02/01/2024", "DateStyle SQL, DMY");
    proxy.shutdown().await;
}
