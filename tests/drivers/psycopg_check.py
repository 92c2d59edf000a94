"""psycopg 3 through pgtenant in transaction mode (run by tests/drivers.rs).

Environment: PGT_HOST, PGT_PORT, PGT_PASSWORD, PGT_TENANTS ("name:placement,..."),
PGT_CLIENTS (concurrent clients per tenant). Every tenant's `items` starts with exactly
`<tenant>-seed-1` and `<tenant>-seed-2`; user `app.<tenant>`, database `<tenant>`.

Each client prepares every statement on first use (prepare_threshold=0), in a client-specific
order so that the same statement name (`_pg3_0`, ...) means different SQL on different clients,
and runs: autocommit statements, transaction blocks, pipelines with several Syncs, an error in
the middle of a pipeline (the rest skipped, then recovery), executemany, an empty query, a
notice, DEALLOCATE ALL / DISCARD ALL, and statement-cache eviction (prepared_max). Every row
read must be the tenant's own; at the end each tenant's clients must have run on more than one
server connection, and each tenant's table must hold exactly the seeds and what its clients
committed. Prints `ok psycopg <checks>` on success, exits 1 otherwise.

With PGT_SQL_DEALLOCATE=1 (and PSYCOPG_IMPL=python over a libpq older than 17) psycopg evicts
statements from its cache with SQL `DEALLOCATE name` instead of a protocol Close; the script
checks that this is so before it runs.
"""

import faulthandler
import os
import sys
import threading

import psycopg
from psycopg import errors

HOST = os.environ.get("PGT_HOST", "127.0.0.1")
PORT = int(os.environ["PGT_PORT"])
PASSWORD = os.environ["PGT_PASSWORD"]
PLACEMENTS = dict(t.split(":") for t in os.environ["PGT_TENANTS"].split(","))
TENANTS = list(PLACEMENTS)
CLIENTS = int(os.environ.get("PGT_CLIENTS", "6"))
ROUNDS = 4

ALL_ROWS = "SELECT tenant_id, name FROM items ORDER BY name"
OWN_ROWS = "SELECT name FROM items WHERE name LIKE %s ORDER BY name"
INSERT = "INSERT INTO items (name) VALUES (%s) RETURNING tenant_id"


class Mismatch(Exception):
    pass


_lock = threading.Lock()
_checks = 0
# Server backends each tenant's clients ran on: more than one shows that statements moved.
backends = {}


def check(cond, what):
    global _checks
    if not cond:
        raise Mismatch(what)
    with _lock:
        _checks += 1


def connect(tenant, **kw):
    kw.setdefault("prepare_threshold", 0)
    kw.setdefault("autocommit", True)
    return psycopg.connect(
        host=HOST,
        port=PORT,
        user=f"app.{tenant}",
        dbname=tenant,
        password=PASSWORD,
        connect_timeout=10,
        **kw,
    )


def check_rows(tenant, rows, must_have, where):
    bad = [r for r in rows if r[0] != tenant or not r[1].startswith(tenant + "-")]
    check(not bad, f"{tenant} {where}: rows of another tenant: {bad}")
    names = {r[1] for r in rows}
    missing = set(must_have) - names
    check(not missing, f"{tenant} {where}: missing {sorted(missing)} in {sorted(names)}")


def client(tenant, i, written, step):
    seeds = [f"{tenant}-seed-1", f"{tenant}-seed-2"]
    prefix = f"{tenant}-c{i}-"
    mine = []
    notices = []
    with connect(tenant) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))

        def own():
            return [r[0] for r in conn.execute(OWN_ROWS, (prefix + "%",)).fetchall()]

        def insert(name):
            tid = conn.execute(INSERT, (name,)).fetchone()[0]
            check(tid == tenant, f"{tenant}: insert of {name} tagged {tid}")

        # A client-specific order: `_pg3_0` is different SQL on odd and even clients.
        step[0] = 'first reads'
        if i % 2:
            check(own() == [], f"{tenant}: fresh client sees own rows")
            check_rows(tenant, conn.execute(ALL_ROWS).fetchall(), seeds, "first read")
        else:
            check_rows(tenant, conn.execute(ALL_ROWS).fetchall(), seeds, "first read")
            check(own() == [], f"{tenant}: fresh client sees own rows")

        for r in range(ROUNDS):
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            with _lock:
                backends.setdefault(tenant, set()).add(pid)
            # Autocommit: each statement its own transaction, so likely another server.
            step[0] = 'autocommit'
            insert(f"{prefix}a{r}")
            mine.append(f"{prefix}a{r}")
            check(own() == sorted(mine), f"{tenant}: own rows after autocommit insert {r}")

            # A transaction block.
            step[0] = 'transaction'
            with conn.transaction():
                insert(f"{prefix}t{r}")
                mine.append(f"{prefix}t{r}")
                check_rows(tenant, conn.execute(ALL_ROWS).fetchall(), seeds + mine, "in tx")
            # A rolled-back transaction leaves nothing.
            step[0] = 'rollback'
            try:
                with conn.transaction():
                    insert(f"{prefix}rb{r}")
                    raise psycopg.Rollback()
            except psycopg.Rollback:
                pass
            check(own() == sorted(mine), f"{tenant}: own rows after rollback {r}")

            # A pipeline with several Syncs.
            step[0] = 'pipeline'
            with conn.pipeline() as p:
                c1 = conn.execute(INSERT, (f"{prefix}p{r}",))
                p.sync()
                c2 = conn.execute(OWN_ROWS, (prefix + "%",))
                c3 = conn.execute(ALL_ROWS)
                c4 = conn.execute("SELECT count(*) FROM items WHERE name = %s", (f"{prefix}p{r}",))
            mine.append(f"{prefix}p{r}")
            check(c1.fetchone()[0] == tenant, f"{tenant}: pipelined insert tag")
            check([x[0] for x in c2.fetchall()] == sorted(mine), f"{tenant}: pipelined own rows")
            check_rows(tenant, c3.fetchall(), seeds + mine, "pipelined read")
            check(c4.fetchone()[0] == 1, f"{tenant}: pipelined count")

            # An error in the middle of a pipeline: what follows it up to the Sync is skipped.
            step[0] = 'pipeline error'
            try:
                with conn.pipeline() as p:
                    conn.execute(INSERT, (f"{prefix}k{r}",))
                    p.sync()
                    conn.execute(INSERT, (f"{prefix}lost{r}",))
                    conn.execute("SELECT 1 / %s::int", (0,))
                    conn.execute(INSERT, (f"{prefix}skipped{r}",))
                check(False, f"{tenant}: division by zero in a pipeline did not raise")
            except errors.DivisionByZero:
                pass
            mine.append(f"{prefix}k{r}")
            check(own() == sorted(mine), f"{tenant}: own rows after pipeline error {r}")

            # executemany (pipelined by psycopg).
            step[0] = 'executemany'
            batch = [f"{prefix}m{r}-{k}" for k in range(3)]
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO items (name) VALUES (%s)", [(n,) for n in batch])
            mine.extend(batch)
            check(own() == sorted(mine), f"{tenant}: own rows after executemany {r}")

        # An empty query and a notice (WARNING: no transaction in progress).
        step[0] = 'empty query, notice'
        with conn.cursor() as cur:
            try:
                cur.execute("")
            except psycopg.ProgrammingError:
                pass
        conn.execute("ROLLBACK")
        check(any("no transaction in progress" in n for n in notices), f"{tenant}: notice {notices}")

        # The client drops its statements: psycopg re-prepares them.
        step[0] = 'DEALLOCATE ALL / DISCARD ALL'
        conn.execute("DEALLOCATE ALL")
        check(own() == sorted(mine), f"{tenant}: own rows after DEALLOCATE ALL")
        with conn.transaction():
            check(own() == sorted(mine), f"{tenant}: own rows in tx before DEALLOCATE ALL")
            conn.execute("DEALLOCATE ALL")
            check(own() == sorted(mine), f"{tenant}: own rows in tx after DEALLOCATE ALL")
        # In shared placement pgtenant may refuse DISCARD ALL (it would reset the tenant
        # context); either way the session goes on with the tenant's own rows.
        try:
            conn.execute("DISCARD ALL")
        except errors.InsufficientPrivilege:
            check(PLACEMENTS[tenant] == "shared", f"{tenant}: DISCARD ALL refused")
        check_rows(tenant, conn.execute(ALL_ROWS).fetchall(), seeds + mine, "after DISCARD ALL")

    # A small statement cache: psycopg evicts (deallocates) statements as it goes.
    step[0] = 'evicting cache'
    with connect(tenant) as conn:
        conn.prepared_max = 2
        for r in range(3):
            for k in range(4):
                got = conn.execute(
                    f"SELECT count(*) FROM items WHERE name LIKE %s AND {k} = {k}", (prefix + "%",)
                ).fetchone()[0]
                check(got == len(mine), f"{tenant}: evicting cache round {r}.{k}: {got}")
    written.extend(mine)


def main():
    # A hang shows where every thread is waiting, before the harness's own time limit.
    faulthandler.dump_traceback_later(100, exit=True)
    if os.environ.get("PGT_SQL_DEALLOCATE") == "1":
        from psycopg import _connection_base

        libpq = psycopg.pq.version()
        if psycopg.pq.__impl__ != "python" or libpq >= 170000 or _connection_base._HAS_SEND_CLOSE:
            print(
                f"FAIL psycopg would not deallocate with SQL: implementation "
                f"{psycopg.pq.__impl__}, libpq {libpq}",
                file=sys.stderr,
            )
            sys.exit(1)
        print(f"psycopg {psycopg.pq.__impl__} implementation, libpq {libpq}: SQL DEALLOCATE")
    failures = []
    written = {t: [] for t in TENANTS}

    def run(t, i):
        step = ["connect"]
        try:
            client(t, i, written[t], step)
        except Exception as e:  # noqa: BLE001 - every failure is reported
            failures.append(f"{t} client {i} at {step[0]!r}: {type(e).__name__}: {e}")

    threads = [
        threading.Thread(target=run, args=(t, i)) for t in TENANTS for i in range(CLIENTS)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if not failures:
        for t in TENANTS:
            with connect(t) as conn:
                rows = conn.execute(ALL_ROWS).fetchall()
            expected = sorted([f"{t}-seed-1", f"{t}-seed-2"] + written[t])
            if [r[1] for r in rows] != expected or any(r[0] != t for r in rows):
                failures.append(f"{t}: final rows {rows} != expected {expected}")
            else:
                check(True, "final")
    # Statements moved between server connections: at least one tenant's clients ran on more
    # than one (with six clients over a pool of two, all of them do almost always; requiring it
    # of every tenant would make the test depend on scheduling).
    if not failures and max(len(b) for b in backends.values()) < 2:
        failures.append(f"every tenant's clients ran on a single server connection: {backends}")
    if failures:
        for f in failures:
            print("FAIL", f, file=sys.stderr)
        sys.exit(1)
    print(f"ok psycopg {_checks}")


if __name__ == "__main__":
    main()
