//! Session parameters from the startup packet and `options` are what each client sees on
//! every transaction, whichever server connection runs it.

mod common;
use common::*;
use std::time::Duration;

async fn show(client: &tokio_postgres::Client, name: &str) -> String {
    client
        .query_one(&format!("SHOW {name}"), &[])
        .await
        .unwrap_or_else(|e| panic!("SHOW {name}: {e:?}"))
        .get(0)
}

/// Tenant `acme` in database placement on `db`, with one server connection: the clients'
/// transactions alternate on it.
async fn one_connection_proxy(db: &str) -> pgtenant::server::Proxy {
    start_proxy(&config_text(&tenant_toml(
        "acme",
        "database",
        db,
        "pool_size = 1",
    )))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_sees_its_own_startup_parameters_on_a_shared_server_connection() {
    let db = unique("params");
    create_db(
        &db,
        "CREATE SCHEMA custom; CREATE TABLE custom.only_here (x int);",
    );
    let proxy = one_connection_proxy(&db).await;
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

/// A client's `SET` of a reported setting (`TimeZone`, `application_name`) in a placement
/// without the statement guard: the next client of the same tenant that gave the same startup
/// parameters does not inherit it on the shared server connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_set_of_a_startup_parameter_stays_with_that_client() {
    let db = unique("params_set");
    create_db(&db, "SELECT 1;");
    let proxy = one_connection_proxy(&db).await;
    let default_tz = cluster()
        .psql("postgres", "SHOW TimeZone")
        .expect("server default");
    assert_ne!(default_tz, "Asia/Tokyo");
    let same = |proxy| {
        let mut c = client_config(proxy, "app.acme", "acme");
        c.application_name("worker");
        c
    };
    let a = try_connect(same(&proxy)).await.expect("client a");
    let b = try_connect(same(&proxy)).await.expect("client b");
    for round in 0..3 {
        a.batch_execute("SET TimeZone = 'Asia/Tokyo'; SET application_name = 'changed'")
            .await
            .expect("a's SET");
        assert_eq!(show(&b, "TimeZone").await, default_tz, "round {round}");
        assert_eq!(
            show(&b, "application_name").await,
            "worker",
            "round {round}"
        );
    }
    // Alone on the server connection, a keeps its own change from one transaction to the
    // next (b's transactions in between would have put b's parameters in force).
    drop(b);
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.batch_execute("SET TimeZone = 'Asia/Tokyo'")
        .await
        .expect("a's SET");
    assert_eq!(show(&a, "TimeZone").await, "Asia/Tokyo");
    // RESET ALL returns a client's settings to its startup parameters, as on a direct
    // connection, where they are the session's defaults.
    a.batch_execute("SET application_name = 'changed'; RESET ALL")
        .await
        .expect("a's RESET ALL");
    assert_eq!(show(&a, "application_name").await, "worker");
    assert_eq!(show(&a, "TimeZone").await, default_tz);
    drop(a);
    proxy.shutdown().await;
}
