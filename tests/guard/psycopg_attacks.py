"""Attacks on the shared-placement guard through psycopg 3 (extended protocol, server-side
prepared statements, pipeline mode). Run by tests/guard.rs with PGTENANT_DSN (tenant alpha of a
shared database whose other tenant is beta). Exits non-zero on the first attack that is neither
refused (42501) nor harmless; prints "ok psycopg-guard <n>" at the end."""

import os
import sys

import psycopg
from psycopg import errors

DSN = os.environ["PGTENANT_DSN"]
ALPHA = ["alpha-1", "alpha-2"]
checks = 0


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def names(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT name FROM items ORDER BY name")
        return [r[0] for r in cur.fetchall()]


def expect_refused(conn, sql, params=None, prepare=None):
    """The statement must fail with 42501 from pgtenant; alpha's view must be intact after."""
    global checks
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params, prepare=prepare)
            rows = cur.fetchall() if cur.description else []
        fail(f"{sql!r} with {params!r}: not refused, returned {rows!r}")
    except errors.InsufficientPrivilege as e:
        if "pgtenant refused" not in str(e):
            fail(f"{sql!r}: 42501 but not from pgtenant: {e}")
    conn.rollback()
    got = names(conn)
    if got != ALPHA:
        fail(f"after {sql!r}: alpha sees {got!r}")
    conn.rollback()
    checks += 1


def main():
    with psycopg.connect(DSN, prepare_threshold=0) as conn:
        # The application pattern: its own tenant id as a parameter, in its transaction.
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('app.current_tenant', %s, true)", ("alpha",))
            cur.execute("SELECT name FROM items ORDER BY name")
            if [r[0] for r in cur.fetchall()] != ALPHA:
                fail("own tenant as parameter")
        conn.rollback()
        expect_refused(conn, "SELECT set_config('app.current_tenant', %s, false)", ("beta",))
        expect_refused(conn, "SELECT set_config('app.current_tenant', %s, true)", ("beta",), prepare=True)
        expect_refused(
            conn,
            "SELECT name FROM items WHERE set_config('app.current_tenant', %s::text, true) <> ''",
            ("beta",),
        )
        expect_refused(conn, "SET app.current_tenant = 'beta'")
        expect_refused(conn, "SELECT set_config('role', %s, false)", ("postgres",))
        expect_refused(conn, "DO $$ BEGIN PERFORM set_config('app.current_tenant', 'beta', false); END $$")
        expect_refused(conn, "ALTER TABLE items DISABLE ROW LEVEL SECURITY")
        expect_refused(conn, "TRUNCATE items")
        # Pipeline mode: the refused statement fails the pipeline's transaction, nothing runs.
        try:
            with conn.pipeline():
                with conn.cursor() as cur:
                    cur.execute("SELECT name FROM items")
                    cur.execute("SELECT set_config('app.current_tenant', %s, false)", ("beta",))
                    cur.execute("SELECT name FROM items WHERE tenant_id = 'beta'")
            fail("pipeline with a refused statement succeeded")
        except errors.InsufficientPrivilege:
            pass
        conn.rollback()
        if names(conn) != ALPHA:
            fail("after the pipeline")
        conn.rollback()
        global checks
        checks += 1
        # Writing rows for beta: row-level security refuses (42501 from PostgreSQL).
        try:
            with conn.cursor() as cur:
                cur.execute("INSERT INTO items (tenant_id, name) VALUES (%s, %s)", ("beta", "planted"))
            fail("insert for beta succeeded")
        except errors.InsufficientPrivilege:
            pass
        conn.rollback()
        checks += 1
    print(f"ok psycopg-guard {checks}")


main()
