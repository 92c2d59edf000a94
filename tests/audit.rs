//! `pgtenant rls` and `pgtenant check` against a real cluster: the generated SQL is applied
//! with psql and proved as the non-superuser role `pgtenant`; `check` runs as the real binary
//! on config files written to a temp dir.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::{UPSTREAM_PASSWORD, apply_script, cluster, rls_sql, sqlstate, unique};
use hmac::{Hmac, Mac};
use pgtenant::testing::{SUPERUSER_PASSWORD, shard_toml};
use sha2::Sha256;
use tokio_postgres::{Client, NoTls};

/// A 32-byte signing key, hex.
const KEY_HEX: &str = "6b6579206f6620707974656e616e742c206b65707420736563726574212121";

fn pgtenant(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgtenant"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("pgtenant runs")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// A database owned by the superuser, with `setup` run in it as the superuser.
fn superuser_db(prefix: &str, setup: &str) -> String {
    let db = unique(prefix);
    let c = cluster();
    c.psql("postgres", &format!("CREATE DATABASE {db}"))
        .expect("create database");
    c.psql(&db, setup).expect("setup");
    db
}

/// `items(id, tenant_id TYPE, name)` with DML granted to `pgtenant`, and `rows`.
fn items_db(prefix: &str, ty: &str, rows: &[(&str, &str)]) -> String {
    let mut sql = format!(
        "CREATE TABLE items (id serial PRIMARY KEY, tenant_id {ty} NOT NULL, name text NOT NULL);
         GRANT SELECT, INSERT, UPDATE, DELETE ON items TO pgtenant;
         GRANT USAGE ON SEQUENCE items_id_seq TO pgtenant;"
    );
    for (tenant, name) in rows {
        sql.push_str(&format!(
            "INSERT INTO items (tenant_id, name) VALUES ('{tenant}', '{name}');"
        ));
    }
    superuser_db(prefix, &sql)
}

/// [`items_db`] with text tenant ids, secured by `pgtenant rls --table items --column tenant_id`.
fn secured_items_db(prefix: &str, rows: &[(&str, &str)]) -> String {
    let db = items_db(prefix, "text", rows);
    apply_script(
        &db,
        &rls_sql(&["--table", "items", "--column", "tenant_id"]),
        None,
    )
    .expect("apply");
    db
}

/// A direct connection to the cluster as the non-superuser role `pgtenant`.
async fn as_pgtenant(db: &str) -> Client {
    let (client, conn) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(cluster().port())
        .user("pgtenant")
        .password(UPSTREAM_PASSWORD)
        .dbname(db)
        .connect(NoTls)
        .await
        .expect("connect as pgtenant");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

async fn names(client: &Client) -> Vec<String> {
    client
        .query("SELECT name FROM items ORDER BY name", &[])
        .await
        .expect("select items")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// What the proxy puts in `<guc>_sig`: hex HMAC-SHA256(key, context || '/' || pid).
fn signature(key_hex: &str, context: &str, pid: i32) -> String {
    let key = hex::decode(key_hex).expect("hex key");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("hmac key");
    mac.update(format!("{context}/{pid}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn rls_scopes_reads_writes_and_defaults_to_the_tenant() {
    let db = items_db(
        "rls_plain",
        "text",
        &[("a", "a1"), ("a", "a2"), ("b", "b1")],
    );
    let sql = rls_sql(&["--table", "public.items", "--column", "tenant_id"]);
    apply_script(&db, &sql, None).expect("script applies");
    apply_script(&db, &sql, None).expect("script applies twice");
    let forced = cluster()
        .psql(
            &db,
            "SELECT relrowsecurity AND relforcerowsecurity FROM pg_class WHERE relname = 'items'",
        )
        .expect("catalog");
    assert_eq!(forced, "t");

    let c = as_pgtenant(&db).await;
    c.batch_execute("SET app.current_tenant = 'a'")
        .await
        .expect("set");
    assert_eq!(names(&c).await, ["a1", "a2"]);

    let e = c
        .execute(
            "INSERT INTO items (tenant_id, name) VALUES ('b', 'sneaky')",
            &[],
        )
        .await
        .expect_err("a row for b is refused");
    assert_eq!(sqlstate(&e), "42501", "{e:?}");
    assert!(format!("{:?}", e).contains("row-level security"), "{e:?}");
    let e = c
        .execute("UPDATE items SET tenant_id = 'b' WHERE name = 'a1'", &[])
        .await
        .expect_err("moving a row to b is refused");
    assert_eq!(sqlstate(&e), "42501");
    assert_eq!(
        c.execute("UPDATE items SET name = 'hacked' WHERE name = 'b1'", &[])
            .await
            .expect("update runs"),
        0,
        "b's rows are invisible to updates"
    );

    c.execute("INSERT INTO items (name) VALUES ('a3')", &[])
        .await
        .expect("insert without the tenant column");
    let owner = cluster()
        .psql(&db, "SELECT tenant_id FROM items WHERE name = 'a3'")
        .expect("select");
    assert_eq!(owner, "a");

    c.batch_execute("RESET app.current_tenant")
        .await
        .expect("reset");
    assert!(names(&c).await.is_empty(), "unset GUC sees nothing");
    c.batch_execute("SET app.current_tenant = ''")
        .await
        .expect("set empty");
    assert!(names(&c).await.is_empty(), "empty GUC sees nothing");
    let e = c
        .execute("INSERT INTO items (name) VALUES ('orphan')", &[])
        .await
        .expect_err("no tenant, no insert");
    assert!(["42501", "23502"].contains(&sqlstate(&e).as_str()), "{e:?}");
}

#[tokio::test]
async fn rls_with_uuid_tenant_column() {
    let a = "0b6f3c1e-5d0a-4a8e-9c3f-2e1d7b8a9c10";
    let b = "7d1e9a40-1c2b-4f3e-8a5d-6c7b8e9f0a1b";
    let db = items_db("rls_uuid", "uuid", &[(a, "a1"), (b, "b1")]);
    let sql = rls_sql(&[
        "--table",
        "items",
        "--column",
        "tenant_id",
        "--type",
        "uuid",
    ]);
    assert!(sql.contains("::uuid"), "{sql}");
    apply_script(&db, &sql, None).expect("script applies");

    let c = as_pgtenant(&db).await;
    assert!(
        names(&c).await.is_empty(),
        "unset GUC: no rows and no cast error"
    );
    c.batch_execute(&format!("SET app.current_tenant = '{a}'"))
        .await
        .expect("set");
    assert_eq!(names(&c).await, ["a1"]);
    c.execute("INSERT INTO items (name) VALUES ('a2')", &[])
        .await
        .expect("insert with the default");
    let e = c
        .execute(
            &format!("INSERT INTO items (tenant_id, name) VALUES ('{b}', 'x')"),
            &[],
        )
        .await
        .expect_err("b refused");
    assert_eq!(sqlstate(&e), "42501");
    assert_eq!(names(&c).await, ["a1", "a2"]);
}

#[tokio::test]
async fn rls_signed_trusts_only_signed_context() {
    let db = items_db("rls_signed", "text", &[("a", "a1"), ("b", "b1")]);
    let sql = rls_sql(&["--table", "items", "--column", "tenant_id", "--signed"]);

    let e = apply_script(&db, &sql, None).expect_err("no key, no setup");
    assert!(e.contains("pgtenant_key"), "{e}");
    apply_script(&db, &sql, Some(KEY_HEX)).expect("script applies with the key");
    // A second run (another key given by mistake) keeps the stored key.
    apply_script(&db, &sql, Some(&"00".repeat(32))).expect("script applies again");
    let stored = cluster()
        .psql(&db, "SELECT encode(key, 'hex') FROM pgtenant.signing_key")
        .expect("key");
    assert_eq!(stored, KEY_HEX);

    let c = as_pgtenant(&db).await;
    let pid: i32 = c
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    let good = signature(KEY_HEX, "a", pid);

    c.batch_execute(&format!(
        "SET app.current_tenant = 'a'; SET app.current_tenant_sig = '{good}'"
    ))
    .await
    .expect("set signed context");
    assert_eq!(names(&c).await, ["a1"]);
    c.execute("INSERT INTO items (name) VALUES ('a2')", &[])
        .await
        .expect("insert with the default");
    assert_eq!(names(&c).await, ["a1", "a2"]);
    let e = c
        .execute("INSERT INTO items (tenant_id, name) VALUES ('b', 'x')", &[])
        .await
        .expect_err("b refused");
    assert_eq!(sqlstate(&e), "42501");

    // Forged: b with a's signature.
    c.batch_execute("SET app.current_tenant = 'b'")
        .await
        .expect("set");
    assert!(names(&c).await.is_empty(), "forged tenant sees nothing");
    // Stale: a signature made for another server connection.
    let stale = signature(KEY_HEX, "b", pid + 1);
    c.batch_execute(&format!("SET app.current_tenant_sig = '{stale}'"))
        .await
        .expect("set");
    assert!(names(&c).await.is_empty(), "stale signature sees nothing");
    // Wrong key.
    let wrong = signature(&"11".repeat(32), "b", pid);
    c.batch_execute(&format!("SET app.current_tenant_sig = '{wrong}'"))
        .await
        .expect("set");
    assert!(names(&c).await.is_empty(), "wrong key sees nothing");
    // No signature at all.
    c.batch_execute("RESET app.current_tenant_sig")
        .await
        .expect("reset");
    assert!(names(&c).await.is_empty(), "unsigned tenant sees nothing");
    // The right signature for b works, so the failures above were the signature's.
    let b_sig = signature(KEY_HEX, "b", pid);
    c.batch_execute(&format!("SET app.current_tenant_sig = '{b_sig}'"))
        .await
        .expect("set");
    assert_eq!(names(&c).await, ["b1"]);

    let e = c
        .query("SELECT key FROM pgtenant.signing_key", &[])
        .await
        .expect_err("the key is not readable");
    assert_eq!(sqlstate(&e), "42501", "{e:?}");
    let e = c
        .execute("INSERT INTO pgtenant.signing_key VALUES ('\\x00')", &[])
        .await
        .expect_err("the key is not writable");
    assert_eq!(sqlstate(&e), "42501", "{e:?}");
    drop(c);

    // `pgtenant check` accepts policies on pgtenant.verified_tenant().
    let (code, out) = check_as_pgtenant(&db);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok: 1 table(s)"), "{out}");
    // ... and reports an upstream role that could read the key.
    cluster()
        .psql(&db, "GRANT SELECT ON pgtenant.signing_key TO pgtenant")
        .expect("grant");
    let (code, out) = check_as_pgtenant(&db);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "error: upstream role pgtenant can read or change pgtenant.signing_key: it can sign \
             any tenant's context itself"
        ),
        "{out}"
    );
    assert!(out.contains("1 finding(s)"), "{out}");
}

// ---- pgtenant check -------------------------------------------------------------------

/// A config with shard `main` logging in as `user`/`password` on `port`, plus `extra`.
fn check_config(
    user: &str,
    password: &str,
    port: u16,
    extra: &str,
) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("pgtenant.toml");
    let text = format!(
        "[pool]\nserver_connect_timeout = 3\n\n{}\n{extra}",
        shard_toml("main", port, user, password)
    );
    std::fs::write(&path, text).expect("write config");
    (dir, path)
}

fn shared_tenant(name: &str, db: &str) -> String {
    common::tenant_toml(name, "shared", db, "")
}

/// Runs `pgtenant check`; returns (exit code, stdout).
fn check(path: &std::path::Path) -> (i32, String) {
    let out = pgtenant(&["check", "--config", &path.display().to_string()]);
    let code = out.status.code().expect("exit code");
    (code, format!("{}{}", text(&out.stdout), text(&out.stderr)))
}

fn check_as_pgtenant(db: &str) -> (i32, String) {
    let (_dir, path) = check_config(
        "pgtenant",
        UPSTREAM_PASSWORD,
        cluster().port(),
        &shared_tenant("acme", db),
    );
    check(&path)
}

#[test]
fn check_passes_a_database_secured_by_rls() {
    let db = secured_items_db("check_clean", &[("a", "a1")]);
    let (code, out) = check_as_pgtenant(&db);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok: 1 table(s) with column tenant_id"),
        "{out}"
    );
    assert!(out.contains("pgtenant check: 0 finding(s)"), "{out}");
}

#[test]
fn check_reports_a_table_without_rls_and_its_fix_works() {
    let db = items_db("check_norls", "text", &[]);
    cluster()
        .psql(
            &db,
            "CREATE SCHEMA billing;
             CREATE TABLE billing.\"Invoices\" (id int, tenant_id uuid);
             CREATE TABLE public.untenanted (id int);",
        )
        .expect("tables");
    apply_script(
        &db,
        &rls_sql(&["--table", "items", "--column", "tenant_id"]),
        None,
    )
    .expect("apply");
    let (code, out) = check_as_pgtenant(&db);
    assert_eq!(code, 1, "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("billing.\"Invoices\" has the tenant column tenant_id"))
        .unwrap_or_else(|| panic!("no finding for billing.Invoices:\n{out}"));
    assert!(line.trim_start().starts_with("error:"), "{line}");
    assert!(line.contains("row-level security is not enabled"), "{line}");
    assert!(
        line.contains(
            "fix: pgtenant rls --table 'billing.\"Invoices\"' --column tenant_id --type uuid"
        ),
        "{line}"
    );
    assert!(!out.contains("untenanted"), "{out}");
    assert!(!out.contains("public.items"), "{out}");
    assert!(
        out.contains("1 finding(s) (1 error(s), 0 warning(s))"),
        "{out}"
    );

    // The printed fix, run as printed (through sh), clears the finding.
    let fix = line
        .split("fix: ")
        .nth(1)
        .expect("fix")
        .split(" | ")
        .next()
        .expect("cmd");
    let args = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "for a in {}; do printf '%s\\0' \"$a\"; done",
            &fix["pgtenant ".len()..]
        ))
        .output()
        .expect("sh");
    let args: Vec<String> = text(&args.stdout)
        .split('\0')
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(args[0], "rls", "{args:?}");
    let sql = rls_sql(&args[1..]);
    apply_script(&db, &sql, None).expect("fix applies");
    let (code, out) = check_as_pgtenant(&db);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok: 2 table(s)"), "{out}");
}

#[test]
fn check_reports_unforced_rls_open_policies_and_owned_tables() {
    let db = items_db("check_weak", "text", &[]);
    cluster()
        .psql(
            &db,
            "ALTER TABLE items ENABLE ROW LEVEL SECURITY;
             CREATE POLICY by_tenant ON items
               USING (tenant_id = current_setting('app.current_tenant', true));
             CREATE POLICY everything ON items USING (true);
             CREATE POLICY admins ON items TO postgres USING (true);
             CREATE TABLE audit_log (tenant_id text);
             ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
             ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
             CREATE POLICY p ON audit_log
               USING (tenant_id = current_setting('app.current_tenant', true));
             ALTER TABLE audit_log OWNER TO pgtenant;",
        )
        .expect("weak setup");
    let (code, out) = check_as_pgtenant(&db);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "error: public.items has row-level security enabled but not forced: its owner \
             bypasses it; fix: ALTER TABLE public.items FORCE ROW LEVEL SECURITY;"
        ),
        "{out}"
    );
    assert!(
        out.contains("error: policy everything on public.items is permissive and does not read current_setting('app.current_tenant')"),
        "{out}"
    );
    assert!(!out.contains("policy by_tenant"), "{out}");
    assert!(
        !out.contains("policy admins"),
        "a policy for another role is not the upstream's: {out}"
    );
    assert!(
        out.contains("warning: upstream role pgtenant owns public.audit_log"),
        "{out}"
    );
    assert!(
        out.contains("3 finding(s) (2 error(s), 1 warning(s))"),
        "{out}"
    );
}

#[tokio::test]
async fn check_reports_views_that_bypass_rls() {
    let db = secured_items_db("check_views", &[("a", "a1"), ("b", "b1")]);
    cluster()
        .psql(
            &db,
            "CREATE VIEW all_items AS SELECT * FROM items;
             CREATE VIEW own_items WITH (security_invoker = true) AS SELECT * FROM items;
             CREATE VIEW hidden_items AS SELECT * FROM items;
             CREATE MATERIALIZED VIEW item_counts AS
               SELECT tenant_id, count(*) AS n FROM items GROUP BY tenant_id;
             GRANT SELECT ON all_items, own_items, item_counts TO pgtenant;",
        )
        .expect("views");
    // What the findings are about: the superuser-owned view shows b's rows to tenant a.
    let c = as_pgtenant(&db).await;
    c.batch_execute("SET app.current_tenant = 'a'")
        .await
        .expect("set");
    let leaked = c
        .query("SELECT name FROM all_items ORDER BY name", &[])
        .await
        .expect("select view");
    assert_eq!(leaked.len(), 2);
    let own = c
        .query("SELECT name FROM own_items", &[])
        .await
        .expect("select invoker view");
    assert_eq!(own.len(), 1);
    drop(c);

    let (code, out) = check_as_pgtenant(&db);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "error: view public.all_items has the tenant column and reads its tables as its \
             owner postgres, who bypasses row-level security"
        ),
        "{out}"
    );
    assert!(
        out.contains("fix: ALTER VIEW public.all_items SET (security_invoker = true);"),
        "{out}"
    );
    assert!(
        out.contains("error: materialized view public.item_counts has the tenant column"),
        "{out}"
    );
    assert!(!out.contains("own_items"), "security_invoker view: {out}");
    assert!(
        !out.contains("hidden_items"),
        "view pgtenant cannot read: {out}"
    );
    assert!(
        out.contains("2 finding(s) (2 error(s), 0 warning(s))"),
        "{out}"
    );
}

#[test]
fn check_reports_a_superuser_upstream_role() {
    let db = secured_items_db("check_super", &[]);
    let (_dir, path) = check_config(
        "postgres",
        SUPERUSER_PASSWORD,
        cluster().port(),
        &shared_tenant("acme", &db),
    );
    let (code, out) = check(&path);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "error: upstream role postgres is a superuser: row-level security never applies to it"
        ),
        "{out}"
    );
    // Superusers own everything; that is not reported a second time per table.
    assert!(!out.contains("owns"), "{out}");
}

#[test]
fn check_reports_bypassrls_and_a_per_tenant_role_in_the_config() {
    let db = secured_items_db("check_bypass", &[]);
    let role = unique("bypass");
    cluster()
        .psql(
            "postgres",
            &format!("CREATE ROLE {role} LOGIN BYPASSRLS PASSWORD '{UPSTREAM_PASSWORD}'"),
        )
        .expect("role");
    let tenants = format!(
        "{}{}",
        shared_tenant("acme", &db),
        common::tenant_toml("globex", "shared", &db, &format!("role = \"{role}\""))
    );
    let (_dir, path) = check_config("pgtenant", UPSTREAM_PASSWORD, cluster().port(), &tenants);
    let (code, out) = check(&path);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("error: upstream role {role} has BYPASSRLS")),
        "{out}"
    );
    assert!(!out.contains("upstream role pgtenant"), "{out}");
}

#[test]
fn check_exits_2_when_a_shard_is_unreachable() {
    let port = pgtenant::testing::free_port().expect("port");
    let (_dir, path) = check_config(
        "pgtenant",
        UPSTREAM_PASSWORD,
        port,
        &shared_tenant("acme", "saas"),
    );
    let (code, out) = check(&path);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!(
            "unreachable: shard main (127.0.0.1:{port}), database saas as pgtenant: cannot connect"
        )),
        "{out}"
    );
    assert!(out.contains("; 1 unreachable"), "{out}");
}

#[test]
fn check_exits_2_on_a_config_error() {
    let (_dir, path) = check_config(
        "pgtenant",
        UPSTREAM_PASSWORD,
        cluster().port(),
        "[tenancy]\ntenant_column = \"\"\n",
    );
    let (code, out) = check(&path);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("tenancy.tenant_column"), "{out}");
}

#[test]
fn check_points_out_schema_placement_with_one_role() {
    let shared_role = format!(
        "{}{}",
        common::tenant_toml("initech", "schema", "tenants", ""),
        common::tenant_toml("umbrella", "schema", "tenants", "")
    );
    let (_dir, path) = check_config(
        "pgtenant",
        UPSTREAM_PASSWORD,
        cluster().port(),
        &shared_role,
    );
    let (code, out) = check(&path);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "warning: schema placement: initech, umbrella in database tenants on shard main \
             share the upstream role pgtenant, so search_path is the only separation"
        ),
        "{out}"
    );

    let own_roles = format!(
        "{}{}",
        common::tenant_toml("initech", "schema", "tenants", "role = \"tenant_{tenant}\""),
        common::tenant_toml(
            "umbrella",
            "schema",
            "tenants",
            "role = \"tenant_{tenant}\""
        )
    );
    let (_dir, path) = check_config("pgtenant", UPSTREAM_PASSWORD, cluster().port(), &own_roles);
    let (code, out) = check(&path);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("places no tenant in a shared database"),
        "{out}"
    );
}

#[test]
fn check_reports_a_default_for_the_tenant_setting() {
    let db = secured_items_db("check_default", &[]);
    let (_dir, path) = check_config(
        "pgtenant",
        UPSTREAM_PASSWORD,
        cluster().port(),
        &shared_tenant("acme", &db),
    );
    let (code, out) = check(&path);
    assert_eq!(code, 0, "clean before: {out}");
    cluster()
        .psql(
            "postgres",
            &format!("ALTER ROLE pgtenant IN DATABASE {db} SET app.current_tenant = 'acme'"),
        )
        .expect("role default");
    let (code, out) = check(&path);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "error: role pgtenant in database {db} sets a default app.current_tenant=acme"
        )),
        "{out}"
    );
    cluster()
        .psql(
            "postgres",
            &format!("ALTER ROLE pgtenant IN DATABASE {db} RESET app.current_tenant"),
        )
        .expect("reset default");
}
