//! Each placement returns only its tenant's rows, through tokio-postgres and psql, with each
//! tenant source (user, database, options), over SCRAM and md5 upstream credentials.

mod common;
use common::*;

/// A database per tenant, a schema per tenant, and a shared RLS database, in one config.
struct World {
    proxy: pgtenant::server::Proxy,
}

async fn world(tag: &str) -> World {
    let acme_db = unique(&format!("erp_acme_{tag}"));
    let globex_db = unique(&format!("erp_globex_{tag}"));
    let schemas_db = unique(&format!("schemas_{tag}"));
    let shared_db = unique(&format!("shared_{tag}"));
    create_db(
        &acme_db,
        "CREATE TABLE items (name text); INSERT INTO items VALUES ('acme-1'), ('acme-2');",
    );
    create_db(
        &globex_db,
        "CREATE TABLE items (name text); INSERT INTO items VALUES ('globex-1');",
    );
    create_db(
        &schemas_db,
        "CREATE SCHEMA initech; CREATE TABLE initech.items (name text); INSERT INTO initech.items VALUES ('initech-1');
         CREATE SCHEMA umbrella; CREATE TABLE umbrella.items (name text); INSERT INTO umbrella.items VALUES ('umbrella-1');",
    );
    create_shared_db(
        &shared_db,
        &[
            ("hooli", "hooli-1"),
            ("hooli", "hooli-2"),
            ("piedpiper", "piedpiper-1"),
            ("7d1c0a52-0000-4000-8000-000000000001", "stark-1"),
        ],
    );
    let toml = config_text(&format!(
        r#"
{second}
[tenants.acme]
placement = "database"
shard = "main"
database = "{acme_db}"

[tenants.globex]
placement = "database"
shard = "second"
database = "{globex_db}"

[tenants.initech]
placement = "schema"
shard = "main"
database = "{schemas_db}"

[tenants.umbrella]
placement = "schema"
shard = "main"
database = "{schemas_db}"

[tenants.hooli]
placement = "shared"
shard = "main"
database = "{shared_db}"

[tenants.piedpiper]
placement = "shared"
shard = "second"
database = "{shared_db}"

[tenants.stark]
placement = "shared"
shard = "main"
database = "{shared_db}"
context = "7d1c0a52-0000-4000-8000-000000000001"
"#,
        second = pgtenant::testing::shard_toml(
            "second",
            cluster().port(),
            "pgtenant_md5",
            UPSTREAM_PASSWORD
        )
    ));
    // The md5 role must be able to read the per-tenant database too.
    cluster()
        .psql(&globex_db, "GRANT SELECT ON items TO pgtenant_md5")
        .expect("grant");
    World {
        proxy: start_proxy(&toml).await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_placement_sees_only_its_own_rows() {
    let w = world("tp").await;
    let expect: [(&str, &[&str]); 7] = [
        ("acme", &["acme-1", "acme-2"]),
        ("globex", &["globex-1"]),
        ("initech", &["initech-1"]),
        ("umbrella", &["umbrella-1"]),
        ("hooli", &["hooli-1", "hooli-2"]),
        ("piedpiper", &["piedpiper-1"]),
        ("stark", &["stark-1"]),
    ];
    for (tenant, rows) in expect {
        let c = connect(&w.proxy, &format!("app.{tenant}"), tenant).await;
        assert_eq!(item_names(&c).await, rows, "tenant {tenant}");
    }
    // Writes in shared placement are tagged with the tenant's context.
    let c = connect(&w.proxy, "app.stark", "stark").await;
    c.execute("INSERT INTO items (name) VALUES ('stark-2')", &[])
        .await
        .expect("insert");
    let tag: String = c
        .query_one("SELECT tenant_id FROM items WHERE name = 'stark-2'", &[])
        .await
        .expect("row")
        .get(0);
    assert_eq!(tag, "7d1c0a52-0000-4000-8000-000000000001");
    let h = connect(&w.proxy, "app.hooli", "hooli").await;
    assert_eq!(item_names(&h).await, ["hooli-1", "hooli-2"]);
    w.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_sees_only_its_own_rows() {
    let w = world("psql").await;
    for (tenant, rows) in [
        ("acme", "acme-1\nacme-2"),
        ("umbrella", "umbrella-1"),
        ("piedpiper", "piedpiper-1"),
    ] {
        let (ok, out, err) = psql(
            &w.proxy,
            &format!("user=app.{tenant} dbname={tenant}"),
            "SELECT name FROM items ORDER BY name",
        );
        assert!(ok, "psql for {tenant}: {err}");
        assert_eq!(out, rows);
    }
    w.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tenant_source_names_the_tenant() {
    let w = world("src").await;
    // user only (libpq's default database = user name is ignored)
    let (ok, out, err) = psql(
        &w.proxy,
        "user=app.hooli",
        "SELECT string_agg(name, ',' ORDER BY name) FROM items",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "hooli-1,hooli-2");
    // database only
    let c = connect(&w.proxy, "app", "initech").await;
    assert_eq!(item_names(&c).await, ["initech-1"]);
    // options only
    let mut cfg = client_config(&w.proxy, "app", "app");
    cfg.options("-c tenant=piedpiper");
    let c = try_connect(cfg).await.expect("options tenant");
    assert_eq!(item_names(&c).await, ["piedpiper-1"]);
    // --tenant= form, agreeing with the user
    let mut cfg = client_config(&w.proxy, "app.acme", "acme");
    cfg.options("--tenant=acme");
    let c = try_connect(cfg).await.expect("all three agree");
    assert_eq!(item_names(&c).await, ["acme-1", "acme-2"]);
    w.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_placement_sets_search_path_every_transaction() {
    let w = world("sp").await;
    let c = connect(&w.proxy, "app.initech", "initech").await;
    let path: String = c
        .query_one("SHOW search_path", &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(path, "initech");
    let c2 = connect(&w.proxy, "app.umbrella", "umbrella").await;
    for _ in 0..5 {
        assert_eq!(item_names(&c).await, ["initech-1"]);
        assert_eq!(item_names(&c2).await, ["umbrella-1"]);
    }
    w.proxy.shutdown().await;
}

/// Tenants not listed are placed by the default rule: a database per tenant from the
/// template, on the shard rendezvous hashing picks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_tenants_follow_the_default_rule() {
    let prefix = unique("auto");
    for t in ["zeta", "omega"] {
        create_db(
            &format!("{prefix}_{t}"),
            &format!("CREATE TABLE items (name text); INSERT INTO items VALUES ('{t}-auto');"),
        );
    }
    let toml = config_text(&format!(
        r#"
{twin}
[tenancy]
unlisted = "place"

[tenancy.default]
placement = "database"
database = "{prefix}_{{tenant}}"
"#,
        twin =
            pgtenant::testing::shard_toml("twin", cluster().port(), "pgtenant", UPSTREAM_PASSWORD)
    ));
    let proxy = start_proxy(&toml).await;
    for t in ["zeta", "omega"] {
        let c = connect(&proxy, &format!("app.{t}"), t).await;
        assert_eq!(item_names(&c).await, [format!("{t}-auto")]);
    }
    // A name that cannot be a tenant is refused before any template sees it.
    let e = try_connect(client_config(&proxy, "app", "bad;name"))
        .await
        .expect_err("refused");
    assert_eq!(sqlstate(&e), "3D000");
    proxy.shutdown().await;
}
