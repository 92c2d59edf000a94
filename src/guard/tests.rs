//! The guard's verdicts on statement texts (the real PostgreSQL parser, no server needed).

use std::sync::Arc;

use super::*;

fn guard() -> Guard {
    Guard {
        cache: Arc::new(VerdictCache::new(Policy::new("app.current_tenant"))),
        context: Arc::from("acme"),
        tenant: Arc::from("acme"),
    }
}

fn admit(sql: &str) -> Result<Allowed, String> {
    admit_as(sql, Source::SimpleQuery)
}

fn admit_as(sql: &str, source: Source) -> Result<Allowed, String> {
    match guard().admit(sql.as_bytes(), source).as_deref() {
        Ok(Verdict::Allowed(a)) => Ok(a.clone()),
        Ok(Verdict::Rejected(r)) | Err(r) => Err(match r {
            Rejection::Refused(m) => m.clone(),
            Rejection::Invalid(m) => format!("syntax: {m}"),
        }),
    }
}

#[track_caller]
fn refused(sql: &str, why: &str) {
    match admit(sql) {
        Err(reason) => assert!(
            reason.contains(why),
            "{sql}: refused, but the reason {reason:?} does not mention {why:?}"
        ),
        Ok(a) => panic!("{sql}: admitted ({a:?})"),
    }
}

#[track_caller]
fn effects(sql: &str) -> Effects {
    match admit(sql) {
        Ok(a) => a.effects,
        Err(e) => panic!("{sql}: refused: {e}"),
    }
}

#[test]
fn plain_statements_pass_without_effects() {
    for sql in [
        "SELECT * FROM items WHERE id = 1",
        "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
        "BEGIN; SELECT count(*) FROM items; COMMIT",
        "",
        "  -- only a comment",
        "SHOW app.current_tenant",
        "SELECT current_setting('app.current_tenant')",
        "SET LOCAL statement_timeout = '5s'",
        "SELECT set_config('search_path', 'public', true)",
        "DECLARE c CURSOR FOR SELECT * FROM items",
        "EXPLAIN SELECT * FROM items",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
    ] {
        assert_eq!(effects(sql), Effects::default(), "{sql}");
    }
}

#[test]
fn writes_count_as_touching_sequences() {
    for sql in [
        "INSERT INTO items (name) VALUES ('x')",
        "UPDATE items SET name = 'y'",
        "DELETE FROM items",
        "SELECT nextval('items_id_seq')",
        "COPY items FROM STDIN",
    ] {
        let e = effects(sql);
        assert!(e.sequences && !e.session_state, "{sql}: {e:?}");
    }
    assert_eq!(effects("COPY items TO STDOUT"), Effects::default());
}

#[test]
fn session_state_is_tracked() {
    for sql in [
        "SET search_path = public",
        "SET statement_timeout = 0",
        "SELECT set_config('search_path', 'x', false)",
        "CREATE TEMP TABLE t (a int)",
        "CREATE TEMPORARY TABLE items AS SELECT 1",
        "PREPARE p AS SELECT 1",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        "SELECT my_function()",
        "CALL my_procedure()",
        "DO $$ BEGIN PERFORM 1; END $$",
        "SELECT * INTO TEMP t2 FROM items",
        "DROP TABLE pg_temp.t",
    ] {
        assert!(effects(sql).session_state, "{sql}");
    }
}

#[test]
fn the_tenant_guc_may_be_set_to_the_own_value_only() {
    for sql in [
        "SET app.current_tenant = 'acme'",
        "SET LOCAL app.current_tenant TO 'acme'",
        "SELECT set_config('app.current_tenant', 'acme', true)",
        "SELECT pg_catalog.set_config('app.current_tenant'::text, 'acme'::text, false)",
        "SET \"app\".\"current_tenant\" = 'acme'",
    ] {
        assert!(admit(sql).is_ok(), "{sql}: {:?}", admit(sql));
    }
    for sql in [
        "SET app.current_tenant = 'globex'",
        "set LOCAL app.current_tenant = 'globex'",
        "SET APP.CURRENT_TENANT = 'globex'",
        "SET \"APP\".\"Current_Tenant\" = 'globex'",
        "SELECT set_config('app.current_tenant', 'globex', false)",
        "SELECT set_config('APP.Current_Tenant', 'globex', true)",
        "SELECT * FROM items WHERE set_config('app.current_tenant', 'globex', true) IS NOT NULL",
        "WITH x AS (SELECT set_config('app.current_tenant', 'globex', true)) SELECT * FROM x, items",
        "SELECT * FROM items, LATERAL (SELECT set_config('app.current_tenant', 'globex', true)) s",
        "SELECT length(set_config('app.current_tenant', 'globex', true))",
        "SELECT 1; SET app.current_tenant = 'globex'",
        "SELECT * FROM set_config('app.current_tenant', 'globex', false)",
        "SELECT set_config(E'app.current_tenant', 'glo' || 'bex', false)",
    ] {
        assert!(admit(sql).is_err(), "{sql}: admitted");
    }
}

#[test]
fn context_changes_the_guard_cannot_check_are_refused() {
    refused("RESET app.current_tenant", "tenant context");
    refused("SET app.current_tenant TO DEFAULT", "tenant context");
    refused(
        "SELECT set_config('app.' || 'current_tenant', 'x', false)",
        "not a constant",
    );
    refused(
        "SELECT set_config(name, 'x', false) FROM (SELECT 'app.current_tenant' AS name) s",
        "not a constant",
    );
    refused(
        "SELECT set_config('app.current_tenant', current_user, false)",
        "cannot check",
    );
    refused(
        "SELECT set_config(setting_name => 'app.current_tenant', new_value => 'x', is_local => false)",
        "named",
    );
    refused("SET app.current_tenant_sig = 'ab'", "signature");
    refused("SET ROLE postgres", "role");
    refused("RESET ROLE", "role");
    refused("SET SESSION AUTHORIZATION postgres", "role");
    refused("SELECT set_config('role', 'postgres', false)", "role");
    refused("SET standard_conforming_strings = off", "string literals");
    refused("SET client_encoding = 'SJIS'", "string literals");
    refused("SET NAMES 'SJIS'", "string literals");
    refused("SET row_security = off", "row-level security");
    refused("SET idle_session_timeout = '20ms'", "pool");
    refused("SET transaction_timeout = '1ms'", "next tenant");
    refused(
        "SELECT set_config('transaction_timeout', '1ms', false)",
        "next tenant",
    );
    refused("SET LOCAL transaction_timeout = '1ms'", "next tenant");
}

#[test]
fn bound_parameters_for_the_context_are_deferred_to_bind() {
    let a = admit_as(
        "SELECT set_config('app.current_tenant', $1, true)",
        Source::Parse,
    )
    .expect("admitted at Parse");
    assert_eq!(a.context_params, vec![1]);
    let g = guard();
    let bind = |value: &[u8]| {
        let mut b = vec![0, 0, 0, 1];
        b.extend_from_slice(&(value.len() as i32).to_be_bytes());
        b.extend_from_slice(value);
        b.extend_from_slice(&[0, 0]);
        b
    };
    assert!(g.bind(&a, &bind(b"acme")).is_ok());
    assert!(g.bind(&a, &bind(b"globex")).is_err());
    // NULL
    assert!(
        g.bind(&a, &[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 0])
            .is_err()
    );
    assert!(g.bind(&a, &[0, 0]).is_err(), "missing parameter");
    // A parameter in a simple query or inside PREPARE cannot be checked at Bind.
    assert!(admit("SELECT set_config('app.current_tenant', $1, true)").is_err());
    assert!(
        admit_as(
            "PREPARE p(text) AS SELECT set_config('app.current_tenant', $1, false)",
            Source::Parse
        )
        .is_err()
    );
}

#[test]
fn resets_are_allowed_alone_and_reported() {
    let e = effects("RESET ALL");
    assert!(e.resets_context);
    let e = effects("DISCARD ALL");
    assert!(e.resets_context && e.drops_statements);
    refused("RESET ALL; SELECT * FROM items", "last statement");
    refused("DISCARD ALL; SELECT 1", "last statement");
    // A pool's reset query (asyncpg's, for one) ends with RESET ALL.
    let e = effects("SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;");
    assert!(e.resets_context && e.session_state);
    assert!(admit_as("DISCARD ALL", Source::Parse).is_ok_and(|a| a.effects.resets_context));
    assert!(effects("DEALLOCATE ALL").drops_statements);
}

#[test]
fn do_blocks_are_checked_statement_by_statement() {
    assert!(admit("DO $$ BEGIN PERFORM count(*) FROM items; END $$").is_ok());
    for sql in [
        "DO $$ BEGIN PERFORM set_config('app.current_tenant', 'globex', false); END $$",
        "DO $$ BEGIN SET app.current_tenant = 'globex'; END $$",
        "DO $$ DECLARE v text := set_config('app.current_tenant', 'globex', false); BEGIN END $$",
        "DO $$ DECLARE v text; BEGIN v := set_config('app.current_tenant', 'globex', false); END $$",
        "DO $$ BEGIN IF set_config('app.current_tenant', 'globex', false) = '' THEN END IF; END $$",
        "DO $$ BEGIN EXECUTE 'SELECT 1'; END $$",
        "DO $$ BEGIN EXECUTE format('SET %I = %L', 'app.current_tenant', 'globex'); END $$",
        "DO $$ DECLARE r record; BEGIN FOR r IN EXECUTE 'SELECT 1' LOOP END LOOP; END $$",
        "DO $$ BEGIN CREATE TABLE t (a int); END $$",
        "DO $$ BEGIN RESET ALL; END $$",
        "DO LANGUAGE plpython3u $$ plpy.execute('select 1') $$",
        "DO $$ BEGIN SET ROLE postgres; END $$",
    ] {
        assert!(admit(sql).is_err(), "{sql}: admitted");
    }
    // Own value inside a DO block is fine.
    assert!(
        admit("DO $$ BEGIN PERFORM set_config('app.current_tenant', 'acme', true); END $$").is_ok()
    );
}

#[test]
fn ddl_and_escapes_around_rls_are_refused() {
    for (sql, why) in [
        ("CREATE TABLE t (a int)", "shared schema"),
        (
            "ALTER TABLE items DISABLE ROW LEVEL SECURITY",
            "ALTER TABLE",
        ),
        (
            "ALTER TABLE items NO FORCE ROW LEVEL SECURITY",
            "ALTER TABLE",
        ),
        ("CREATE POLICY p ON items USING (true)", "policy"),
        ("DROP POLICY tenant_isolation ON items", "DROP"),
        (
            "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$ SELECT 1 $$",
            "FUNCTION",
        ),
        ("CREATE OR REPLACE VIEW v AS SELECT * FROM items", "VIEW"),
        (
            "CREATE TRIGGER t BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION f()",
            "TRIGGER",
        ),
        (
            "CREATE RULE r AS ON INSERT TO items DO ALSO NOTIFY x",
            "RULE",
        ),
        (
            "ALTER ROLE CURRENT_USER SET app.current_tenant = 'globex'",
            "ALTER ROLE",
        ),
        (
            "ALTER DATABASE shared SET app.current_tenant = 'globex'",
            "DATABASE",
        ),
        ("ALTER SYSTEM SET row_security = off", "ALTER SYSTEM"),
        ("GRANT ALL ON items TO public", "GRANT"),
        ("TRUNCATE items", "row-level security does not apply"),
        ("LISTEN events", "notification channels"),
        ("PREPARE TRANSACTION 'x'", "two-phase"),
        ("COPY items TO '/tmp/x'", "server file"),
        ("COPY items FROM PROGRAM 'id'", "server file"),
        ("SELECT * INTO loot FROM items", "SELECT INTO"),
        ("CREATE MATERIALIZED VIEW m AS SELECT 1", "MATERIALIZED"),
        ("SELECT query FROM pg_stat_activity", "every tenant"),
        ("SELECT * FROM pg_catalog.pg_stat_activity", "every tenant"),
        ("SELECT pg_terminate_backend(1)", "server connections"),
        ("SELECT lo_get(1234)", "large objects"),
        (
            "SELECT * FROM dblink('dbname=x', 'select 1') AS t(a int)",
            "connection",
        ),
        (
            "SELECT query_to_xml('SELECT set_config(''app.current_tenant'', ''globex'', false)', true, false, '')",
            "tenant",
        ),
        (
            "SELECT query_to_xml(current_user, true, false, '')",
            "not a constant",
        ),
        ("SELEC 1", "syntax: syntax error"),
        ("DROP TABLE items", "DROP"),
        ("EXECUTE pgt_0123456789abcdef01234567('beta')", "pgt_"),
        ("DEALLOCATE pgt_0123456789abcdef01234567", "pgt_"),
        ("PREPARE PGT_x AS SELECT 1", "pgt_"),
    ] {
        refused(sql, why);
    }
    assert!(admit("SELECT query_to_xml('SELECT * FROM items', true, false, '')").is_ok());
}

#[test]
fn invalid_utf8_is_refused() {
    assert!(matches!(
        check(
            &Policy::new("app.current_tenant"),
            b"SELECT '\xff'",
            Source::SimpleQuery
        ),
        Verdict::Rejected(Rejection::Refused(_))
    ));
}

#[test]
fn verdicts_are_cached_by_text() {
    let g = guard();
    let a = g.cache.verdict(b"SELECT 1", Source::SimpleQuery);
    let b = g.cache.verdict(b"SELECT 1", Source::SimpleQuery);
    assert!(Arc::ptr_eq(&a, &b));
    let c = g.cache.verdict(b"SELECT 1", Source::Parse);
    assert!(!Arc::ptr_eq(&a, &c));
}

#[test]
fn deeply_nested_statements_are_refused_not_fatal() {
    // Run on a stack the size of a tokio worker's (2 MiB).
    let handle = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(|| {
            let mut results = Vec::new();
            for depth in [20usize, 200, 5_000, 100_000] {
                let parens = format!("SELECT {}1{}", "(".repeat(depth), ")".repeat(depth));
                let calls = format!("SELECT {}1{}", "abs(".repeat(depth), ")".repeat(depth));
                let subqueries =
                    format!("SELECT {}1{}", "(SELECT ".repeat(depth), ")".repeat(depth));
                let ok = [parens, calls, subqueries].map(|sql| admit(&sql).is_ok());
                results.push((depth, ok == [true; 3]));
            }
            results
        })
        .expect("thread");
    let results = handle.join().expect("no stack overflow");
    assert_eq!(results[0], (20, true), "{results:?}");
    assert!(!results[3].1, "{results:?}");
}
