//! The shape of the generated script; tests/audit.rs applies it to a real cluster.

use super::{RlsError, RlsOptions, generate};

fn script(opts: &RlsOptions) -> String {
    generate(opts).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn plain_script_enables_forces_and_filters_on_the_guc() {
    let sql = script(&RlsOptions::new("items", "tenant_id"));
    let ctx = "NULLIF(current_setting('app.current_tenant', true), '')::text";
    for line in [
        "ALTER TABLE items ENABLE ROW LEVEL SECURITY;",
        "ALTER TABLE items FORCE ROW LEVEL SECURITY;",
        "DROP POLICY IF EXISTS tenant_isolation ON items;",
        "CREATE POLICY tenant_isolation ON items",
        &format!("    USING (tenant_id = {ctx})"),
        &format!("    WITH CHECK (tenant_id = {ctx});"),
        &format!("ALTER TABLE items ALTER COLUMN tenant_id SET DEFAULT {ctx};"),
        "-- CREATE INDEX CONCURRENTLY IF NOT EXISTS items_tenant_id_idx ON items (tenant_id);",
    ] {
        assert!(
            sql.lines().any(|l| l == line),
            "missing line {line:?} in:\n{sql}"
        );
    }
    // One transaction, opened before the first statement and committed after the last.
    let begin = sql.find("\nBEGIN;").expect("BEGIN");
    let commit = sql.rfind("\nCOMMIT;").expect("COMMIT");
    assert!(
        begin < sql.find("ALTER TABLE").expect("ALTER")
            && commit > sql.rfind("SET DEFAULT").expect("DEFAULT")
    );
    assert_eq!(sql.matches("BEGIN;").count(), 1);
    assert!(!sql.contains("pgtenant.verified_tenant"), "{sql}");
    // Every line before BEGIN is a comment a person reads.
    assert!(
        sql[..begin]
            .lines()
            .all(|l| l.is_empty() || l.starts_with("--"))
    );
}

#[test]
fn names_are_folded_and_quoted_like_postgres() {
    let mut opts = RlsOptions::new("App.\"Order Lines\"", "\"TenantId\"");
    opts.guc = "my.tenant".into();
    opts.sql_type = "uuid".into();
    opts.policy_name = "user".into();
    let sql = script(&opts);
    assert!(
        sql.contains("ALTER TABLE app.\"Order Lines\" FORCE ROW LEVEL SECURITY;"),
        "{sql}"
    );
    assert!(
        sql.contains("CREATE POLICY \"user\" ON app.\"Order Lines\""),
        "{sql}"
    );
    assert!(
        sql.contains("USING (\"TenantId\" = NULLIF(current_setting('my.tenant', true), '')::uuid)"),
        "{sql}"
    );
    assert!(sql.contains("\"Order Lines_TenantId_idx\""), "{sql}");
}

#[test]
fn signed_script_sets_up_the_key_and_the_function_first() {
    let mut opts = RlsOptions::new("public.items", "tenant_id");
    opts.signed = true;
    opts.sql_type = "bigint".into();
    let sql = script(&opts);
    let setup = sql
        .find("CREATE EXTENSION IF NOT EXISTS pgcrypto")
        .expect("pgcrypto");
    let table = sql
        .find("ALTER TABLE public.items ENABLE")
        .expect("table part");
    assert!(setup < table);
    for needle in [
        "CREATE SCHEMA IF NOT EXISTS pgtenant;",
        "CREATE TABLE IF NOT EXISTS pgtenant.signing_key (key bytea NOT NULL",
        "REVOKE ALL ON TABLE pgtenant.signing_key FROM PUBLIC;",
        "REVOKE ALL ON SCHEMA pgtenant FROM PUBLIC;",
        "SELECT decode(:'pgtenant_key', 'hex')",
        "WHERE NOT EXISTS (SELECT FROM pgtenant.signing_key);",
        "CREATE OR REPLACE FUNCTION pgtenant.verified_tenant() RETURNS text",
        "LANGUAGE plpgsql STABLE SECURITY DEFINER",
        "SET search_path = pg_catalog, pgtenant, pg_temp",
        "current_setting('app.current_tenant', true)",
        "current_setting('app.current_tenant_sig', true)",
        "hmac(convert_to(ctx || '/' || pg_backend_pid()::text, 'UTF8'), k, 'sha256'), 'hex')",
        "USING (tenant_id = (SELECT pgtenant.verified_tenant())::bigint)",
        "WITH CHECK (tenant_id = (SELECT pgtenant.verified_tenant())::bigint);",
        "SET DEFAULT pgtenant.verified_tenant()::bigint;",
        "-v pgtenant_key=<hex key>",
    ] {
        assert!(sql.contains(needle), "missing {needle:?} in:\n{sql}");
    }
    assert_eq!(sql.matches("BEGIN;").count(), 1, "{sql}");
}

#[test]
fn unsafe_arguments_are_refused() {
    let bad = |f: &dyn Fn(&mut RlsOptions)| {
        let mut o = RlsOptions::new("items", "tenant_id");
        f(&mut o);
        generate(&o).expect_err("should be refused")
    };
    assert!(matches!(
        bad(&|o| o.table = "items; DROP TABLE x".into()),
        RlsError::Table { .. }
    ));
    assert!(matches!(
        bad(&|o| o.table = "a.b.c".into()),
        RlsError::Table { .. }
    ));
    assert!(matches!(
        bad(&|o| o.column = "".into()),
        RlsError::Column { .. }
    ));
    assert!(matches!(
        bad(&|o| o.guc = "tenant".into()),
        RlsError::Guc(_)
    ));
    assert!(matches!(
        bad(&|o| o.guc = "app.x'; --".into()),
        RlsError::Guc(_)
    ));
    assert!(matches!(
        bad(&|o| o.sql_type = "text; DROP TABLE x".into()),
        RlsError::Type(_)
    ));
    assert!(matches!(
        bad(&|o| o.sql_type = "text -- x".into()),
        RlsError::Type(_)
    ));
    assert!(matches!(
        bad(&|o| o.sql_type = "varchar(64".into()),
        RlsError::Type(_)
    ));
    assert!(matches!(
        bad(&|o| o.policy_name = "p\"".into()),
        RlsError::PolicyName { .. }
    ));
    let mut ok = RlsOptions::new("items", "tenant_id");
    ok.sql_type = "character varying(64)".into();
    assert!(generate(&ok).is_ok());
}
