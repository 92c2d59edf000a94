//! Upstream SCRAM passthrough: a shard with no password in the configuration is logged in to
//! with the keys pgtenant recovers from a client's own SCRAM proof, when pgtenant's user holds
//! the same verifier as the shard's role; and the clear errors when it cannot.

mod common;
use common::*;

/// Creates login role `role` with the test clients' password (SCRAM)
/// and returns its verifier as `pg_authid` stores it.
fn role_verifier(role: &str, db: &str) -> String {
    let c = cluster();
    c.psql(
        "postgres",
        &format!(
            "SET password_encryption = 'scram-sha-256';
             CREATE ROLE {role} LOGIN PASSWORD '{CLIENT_PASSWORD}'"
        ),
    )
    .expect("create role");
    c.psql(db, &format!("GRANT SELECT ON items TO {role}"))
        .expect("grant");
    c.psql(
        "postgres",
        &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'"),
    )
    .expect("verifier")
}

/// A config whose shard `nopw` has no password: tenants `acme` (database `db`) and `initech`
/// (database `db2`) use role `{tag}_app`, tenant `globex` role `{tag}_other`. `{tag}_app`'s
/// pgtenant verifier is `app_verifier`; `{tag}_other`'s is pgtenant's own (same password,
/// another salt than the shard's).
fn config(tag: &str, db: &str, db2: &str, app_verifier: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
metrics_addr = "off"

[pool]
default_pool_size = 3
query_wait_timeout = 10

[shards.nopw]
host = "127.0.0.1"
port = {port}
user = "{tag}_app"

[users.app]
password = "{client}"

[users.{tag}_app]
password = "{app_verifier}"

[users.{tag}_other]
password = "{other}"

[tenants.acme]
placement = "database"
shard = "nopw"
database = "{db}"

[tenants.globex]
placement = "database"
shard = "nopw"
database = "{db}"
role = "{tag}_other"

[tenants.initech]
placement = "database"
shard = "nopw"
database = "{db2}"
"#,
        port = cluster().port(),
        client = verifier(),
        other = pgtenant::hash_password(CLIENT_PASSWORD),
    )
}

async fn connect_err(proxy: &pgtenant::server::Proxy, user: &str, db: &str) -> (String, String) {
    let err = try_connect(client_config(proxy, user, db))
        .await
        .err()
        .unwrap_or_else(|| panic!("{user}/{db} should be refused"));
    let message = err
        .as_db_error()
        .map(|e| e.message().to_owned())
        .unwrap_or_else(|| err.to_string());
    (sqlstate(&err), message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_without_password_is_logged_in_with_the_clients_keys() {
    let db = unique("passthrough");
    create_db(
        &db,
        "CREATE TABLE items (name text); INSERT INTO items VALUES ('acme-1'), ('acme-2');",
    );
    let db2 = unique("passthrough_initech");
    create_db(&db2, "CREATE TABLE items (name text);");
    let app_verifier = role_verifier("pt_app", &db);
    role_verifier("pt_other", &db);
    cluster()
        .psql(&db2, "GRANT SELECT ON items TO pt_app")
        .expect("grant");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pgtenant.toml");
    std::fs::write(&path, config("pt", &db, &db2, &app_verifier)).expect("write config");
    let proxy = pgtenant::server::Proxy::start_from_file(&path)
        .await
        .expect("proxy starts");

    // No password and no login of user pt_app yet: nothing to log in to the shard with.
    let (code, message) = connect_err(&proxy, "app.acme", "acme").await;
    assert_eq!(code, "08001", "{message}");
    assert!(
        message.contains("needs a password for role \"pt_app\""),
        "{message}"
    );

    // A wrong password is refused by pgtenant itself.
    let mut wrong = client_config(&proxy, "pt_app.acme", "acme");
    wrong.password("not-the-password");
    let err = try_connect(wrong)
        .await
        .expect_err("wrong password refused");
    assert_eq!(sqlstate(&err), "28P01");

    // pt_app's own login: its keys log pgtenant in to the shard as pt_app.
    let c = connect(&proxy, "pt_app.acme", "acme").await;
    let row = c
        .query_one("SELECT current_user::text, count(*) FROM items", &[])
        .await
        .expect("query through a passed-through login");
    assert_eq!(row.get::<_, String>(0), "pt_app");
    assert_eq!(row.get::<_, i64>(1), 2);

    // Every new server connection of that role uses the remembered keys: three clients at
    // once in transactions need three server connections.
    let mut clients = vec![c];
    for _ in 0..2 {
        clients.push(connect(&proxy, "app.acme", "acme").await);
    }
    for c in &clients {
        c.batch_execute("BEGIN").await.expect("begin");
        c.query_one("SELECT count(*) FROM items", &[])
            .await
            .expect("query in transaction");
    }
    let backends = cluster()
        .psql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = 'pt_app' AND datname = '{db}'"
            ),
        )
        .expect("pg_stat_activity");
    assert_eq!(backends, "3");
    for c in &clients {
        c.batch_execute("COMMIT").await.expect("commit");
    }
    drop(clients);

    // pt_other logs in to pgtenant fine, but the shard holds another verifier for it.
    let (code, message) = connect_err(&proxy, "pt_other.globex", "globex").await;
    assert_eq!(code, "08001", "{message}");
    assert!(
        message.contains("holds another SCRAM verifier for role \"pt_other\""),
        "{message}"
    );

    // A reload that gives pt_app another verifier (not the shard's) forgets its keys: a new
    // server connection (tenant initech's database, never used yet) finds none ...
    let replaced = pgtenant::hash_password(CLIENT_PASSWORD);
    std::fs::write(&path, config("pt", &db, &db2, &replaced)).expect("rewrite config");
    proxy.reload().expect("reload");
    let (code, message) = connect_err(&proxy, "app.initech", "initech").await;
    assert_eq!(code, "08001", "{message}");
    assert!(
        message.contains("needs a password for role \"pt_app\""),
        "{message}"
    );
    // ... and pt_app's next login brings keys of pgtenant's new verifier, which the shard
    // does not hold.
    let (code, message) = connect_err(&proxy, "pt_app.initech", "initech").await;
    assert_eq!(code, "08001", "{message}");
    assert!(
        message.contains("holds another SCRAM verifier for role \"pt_app\""),
        "{message}"
    );
    // The connections opened before the reload still serve acme.
    let c = connect(&proxy, "app.acme", "acme").await;
    c.query_one("SELECT count(*) FROM items", &[])
        .await
        .expect("acme still served");
}
