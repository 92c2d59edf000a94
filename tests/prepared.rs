//! Prepared statements when the client drops them itself: `DEALLOCATE ALL` / `DISCARD ALL`,
//! sent as a simple Query or through the extended protocol (as psycopg and tokio-postgres do),
//! inside a transaction or not, must leave every client's statements usable afterwards.

mod common;
use common::*;

async fn world(tag: &str, pool_size: usize) -> pgtenant::server::Proxy {
    let db = unique(tag);
    create_db(
        &db,
        "CREATE TABLE kv (k int PRIMARY KEY, v text); INSERT INTO kv VALUES (1, 'one'), (2, 'two');",
    );
    start_proxy(&config_text(&tenant_toml(
        "acme",
        "database",
        &db,
        &format!("pool_size = {pool_size}"),
    )))
    .await
}

/// A client that drops all statements inside a transaction and prepares the same SQL again
/// (new name, same content) must get a working statement: the server no longer has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deallocate_all_inside_a_transaction_then_prepare_again() {
    let proxy = world("prep_dealloc_tx", 1).await;
    let mut c = connect(&proxy, "app.acme", "acme").await;
    for drop_sql in ["DEALLOCATE ALL", "DISCARD PLANS"] {
        for extended in [false, true] {
            let tx = c.transaction().await.expect("begin");
            let s = tx.prepare("SELECT v FROM kv WHERE k = $1").await.expect("prepare");
            let row = tx.query_one(&s, &[&1i32]).await.expect("first");
            assert_eq!(row.get::<_, String>(0), "one");
            if extended {
                tx.execute(drop_sql, &[]).await.expect("drop (extended)");
            } else {
                tx.batch_execute(drop_sql).await.expect("drop (simple)");
            }
            let s = tx.prepare("SELECT v FROM kv WHERE k = $1").await.expect("again");
            let row = tx
                .query_one(&s, &[&2i32])
                .await
                .unwrap_or_else(|e| panic!("after {drop_sql} (extended {extended}): {e}"));
            assert_eq!(row.get::<_, String>(0), "two");
            tx.commit().await.expect("commit");
        }
    }
    proxy.shutdown().await;
}

/// One client's `DEALLOCATE ALL` through the extended protocol must not break the statements
/// another client of the same tenant has on that server connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_deallocate_all_does_not_break_other_clients() {
    let proxy = world("prep_dealloc_other", 1).await;
    let a = connect(&proxy, "app.acme", "acme").await;
    let b = connect(&proxy, "app.acme", "acme").await;
    let s = b
        .prepare("SELECT v FROM kv WHERE k = $1")
        .await
        .expect("prepare");
    assert_eq!(
        b.query_one(&s, &[&1i32]).await.expect("before").get::<_, String>(0),
        "one"
    );
    for drop_sql in ["DEALLOCATE ALL", "DISCARD ALL"] {
        // Pool of one: a runs on the server connection b just used.
        a.execute(drop_sql, &[]).await.expect("drop");
        let row = b
            .query_one(&s, &[&2i32])
            .await
            .unwrap_or_else(|e| panic!("b after a's {drop_sql}: {e}"));
        assert_eq!(row.get::<_, String>(0), "two");
    }
    proxy.shutdown().await;
}
