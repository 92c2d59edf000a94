#!/usr/bin/env bash
# Side-by-side throughput benchmark: PostgreSQL direct vs PgBouncer vs pgtenant
# (database placement and shared placement), pgbench select-only (or TPC-B-like), plus the
# memory cost of idle client connections held by pgtenant.
#
# Everything runs on loopback in a throwaway directory that is removed on exit:
# a PostgreSQL 15 cluster, PgBouncer (transaction mode; a second one in session mode for the
# pgbouncer-session target) and pgtenant (transaction mode).
#
# Usage:   benches/side_by_side.sh
# Tunables (environment variables, defaults in brackets):
#   REPEAT [3]            runs per (protocol, clients, target) cell; the median is reported
#   DURATION [10]         seconds per pgbench run
#   POOL [20]             server pool size of PgBouncer and pgtenant
#   CLIENTS ["16 100"]    pgbench client counts (-c), each run with -j THREADS
#   THREADS [2]           pgbench threads (-j)
#   PROTOCOLS ["simple extended"]  pgbench query modes (-M); "prepared" needs targets that
#                         keep named statements: not pgbouncer (1.18, transaction mode)
#   SCRIPT [select]       select: pgbench -S (select-only); tpcb: pgbench's default TPC-B-like
#                         script (writes: BEGIN, 3 UPDATEs, SELECT, INSERT, END), run on this
#                         invocation's own fresh cluster, initialised with -i at SCALE
#   TARGETS ["direct pgbouncer pgtenant-db pgtenant-shared pgtenant-shared-mix"]
#                         pgbouncer-session (not in the default list): a second PgBouncer in
#                         session mode (own port, same POOL), the PgBouncer that can run
#                         -M prepared; every client holds a server connection, so CLIENTS must
#                         not exceed POOL
#                         pgtenant-shared-mix: MIX_TENANTS tenants in shared placement (guard
#                         on) interleaving on one pool, one pgbench per tenant, tps summed
#   MIX_TENANTS [4]
#                         pgtenant-db-split (not in the default list): the same split into
#                         MIX_TENANTS pgbench processes, all as the database-placement tenant
#   SCALE [10]            pgbench -i scale factor
#   IDLE_CLIENTS [2000]   idle connections for the memory measurement (0 skips it)
#   IDLE_SLEEP [15]       seconds each idle client sleeps (must exceed the connect time)
#   PG_BIN [/usr/lib/postgresql/15/bin]
#   PGBOUNCER [/usr/sbin/pgbouncer]
#   BUILD [pgo]           how pgtenant is built (unless SKIP_BUILD=1): pgo = pgo/build.sh, the
#                         release build with the committed profile (target/pgo/release/pgtenant);
#                         plain = `cargo build --release` (target/release/pgtenant)
#   PGTENANT_BIN [the binary BUILD makes]; SKIP_BUILD=1 skips the build
#   PGTENANT_WORKERS [0]  pgtenant runtime worker threads (0 = one per CPU)
#   pgtenant-db-storm, pgbouncer-storm (not in the default list): pgtenant-db / pgbouncer while
#                         a second pgbench opens a new connection per transaction (-C) with
#                         STORM_CLIENTS [8] clients against the same target
#   forward-mio, forward-mio2, forward-tokio1, forward-tokio (not in the default list):
#                         byte-for-byte forwarders (benches/forward/, built with cargo unless
#                         SKIP_BUILD=1), one server connection per client like
#                         pgbouncer-session, on four I/O cores: one event loop, two event-loop
#                         threads, tokio's single-threaded scheduler, tokio's work-stealing
#                         scheduler with two workers. What each core costs per transaction
#                         before any pooling or protocol work; CLIENTS must not exceed
#                         PostgreSQL's 300 connections less the pools
#   BASE_BIN []           a second pgtenant binary (e.g. an older build) for the target
#   BASE_WORKERS [PGTENANT_WORKERS]  runtime worker threads of the BASE_BIN process
#   BASE_AFFINITY []      server.cpu_affinity of the BASE_BIN process (auto, on or off; unset:
#                         the key is left out, for builds that do not know it)
#                         pgtenant-db-base: the same tenant as pgtenant-db, in the same run
#   RESULTS_DIR [benches/results]
set -euo pipefail

# Tunables set explicitly (for the command line printed with the results).
EXTRA_ENV=
for v in CLIENTS THREADS PROTOCOLS SCRIPT TARGETS SCALE IDLE_CLIENTS IDLE_SLEEP BUILD PGTENANT_BIN SKIP_BUILD BASE_BIN BASE_WORKERS BASE_AFFINITY STORM_CLIENTS; do
    if [[ -v $v ]]; then printf -v EXTRA_ENV '%s%s=%q ' "$EXTRA_ENV" "$v" "${!v}"; fi
done

REPEAT=${REPEAT:-3}
DURATION=${DURATION:-10}
POOL=${POOL:-20}
CLIENTS=${CLIENTS:-"16 100"}
THREADS=${THREADS:-2}
PROTOCOLS=${PROTOCOLS:-"simple extended"}
SCRIPT=${SCRIPT:-select}
TARGETS=${TARGETS:-"direct pgbouncer pgtenant-db pgtenant-shared pgtenant-shared-mix"}
MIX_TENANTS=${MIX_TENANTS:-4}
STORM_CLIENTS=${STORM_CLIENTS:-8}
SCALE=${SCALE:-10}
IDLE_CLIENTS=${IDLE_CLIENTS:-2000}
IDLE_SLEEP=${IDLE_SLEEP:-15}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PGBOUNCER=${PGBOUNCER:-/usr/sbin/pgbouncer}
SKIP_BUILD=${SKIP_BUILD:-0}
BUILD=${BUILD:-pgo}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=benches/configs.sh
source "$REPO/benches/configs.sh"
RESULTS_DIR=${RESULTS_DIR:-$REPO/benches/results}
STAMP=$(date +%Y-%m-%d-%H%M%S)
CSV=$RESULTS_DIR/side_by_side-$STAMP.csv
REPORT=$RESULTS_DIR/side_by_side-$STAMP.md
CMDLINE="REPEAT=$REPEAT DURATION=$DURATION POOL=$POOL ${EXTRA_ENV}benches/side_by_side.sh"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '\nERROR: %s\n' "$*" >&2; exit 1; }

case $BUILD in
    pgo) BUILT_BIN=$REPO/target/pgo/release/pgtenant ;;
    plain) BUILT_BIN=$REPO/target/release/pgtenant ;;
    *) die "BUILD must be pgo or plain (got '$BUILD')" ;;
esac
PGTENANT_BIN=${PGTENANT_BIN:-$BUILT_BIN}

for v in REPEAT DURATION POOL THREADS SCALE IDLE_CLIENTS IDLE_SLEEP; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
((REPEAT >= 1 && DURATION >= 1 && POOL >= 1)) || die "REPEAT, DURATION and POOL must be >= 1"
case $SCRIPT in
    select) SCRIPT_ARGS=(-S); SCRIPT_DESC="pgbench -S (select-only)" ;;
    tpcb) SCRIPT_ARGS=(); SCRIPT_DESC="pgbench TPC-B-like (default script: BEGIN, 3 UPDATEs, SELECT, INSERT, END)" ;;
    *) die "SCRIPT must be select or tpcb (got '$SCRIPT')" ;;
esac
for t in $TARGETS; do
    case $t in
        pgbouncer-session)
            for c in $CLIENTS; do ((c <= POOL)) || die "pgbouncer-session holds a server connection per client: CLIENTS ($c) must not exceed POOL ($POOL)"; done ;;
        direct|pgbouncer|pgtenant-db|pgtenant-shared|pgtenant-shared-mix|pgtenant-db-split|pgtenant-db-storm|pgbouncer-storm) ;;
        forward-mio|forward-mio2|forward-tokio1|forward-tokio) ;;
        pgtenant-db-base) [[ -x ${BASE_BIN:-} ]] || die "pgtenant-db-base needs BASE_BIN=<a pgtenant binary>" ;;
        *) die "unknown target '$t'";; esac
done

# ---------------------------------------------------------------- prerequisites
for tool in pgbench psql python3 "$PG_BIN/initdb" "$PG_BIN/pg_ctl"; do
    command -v "$tool" >/dev/null || die "missing $tool (PostgreSQL 15 server and client packages)"
done
[[ -x $PGBOUNCER ]] || die "missing $PGBOUNCER (apt-get install -y pgbouncer)"
if [[ $EUID -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root needs an OS user 'postgres' to run PostgreSQL and PgBouncer"
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi

# Many clients (pgbench -c 2000, poolers with 1000+ sockets) need file descriptors;
# children (pgbench, pgbouncer, pgtenant) inherit this limit.
if ! ulimit -n 8192 2>/dev/null; then
    log "warning: could not raise the open-file limit to 8192 (now $(ulimit -n)); large client counts may fail"
fi

if [[ $SKIP_BUILD != 1 ]]; then
    if [[ $BUILD == pgo ]]; then
        build=("$REPO/pgo/build.sh")
    else
        build=(cargo build --release)
    fi
    log "building pgtenant (${build[*]#"$REPO/"})"
    (cd "$REPO" && "${build[@]}") >"${TMPDIR:-/tmp}/pgtenant-bench-build.$$.log" 2>&1 \
        || { tail -40 "${TMPDIR:-/tmp}/pgtenant-bench-build.$$.log" >&2; die "building pgtenant failed"; }
    rm -f "${TMPDIR:-/tmp}/pgtenant-bench-build.$$.log"
fi
[[ -x $PGTENANT_BIN ]] || die "pgtenant binary not found at $PGTENANT_BIN"
FORWARD_BIN=$REPO/benches/forward/target/release/forward
if [[ " $TARGETS " == *" forward-"* ]]; then
    if [[ $SKIP_BUILD != 1 || ! -x $FORWARD_BIN ]]; then
        log "building the forwarders (benches/forward)"
        cargo build --release --manifest-path "$REPO/benches/forward/Cargo.toml" >"${TMPDIR:-/tmp}/forward-build.$$.log" 2>&1 \
            || { tail -40 "${TMPDIR:-/tmp}/forward-build.$$.log" >&2; die "building benches/forward failed"; }
        rm -f "${TMPDIR:-/tmp}/forward-build.$$.log"
    fi
fi

# ---------------------------------------------------------------- cleanup
TMP=$(mktemp -d -t pgtenant-bench.XXXXXX)
PGDATA=$TMP/data
PGTENANT_PID=
BASE_PID=
IDLE_PID=
declare -A FWD_PID=() FWD_PORT=()
PG_STARTED=0

stop_pid() { # pid [seconds]: TERM, wait, then KILL
    local pid=$1 wait=${2:-10} i
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < wait * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    set +e
    stop_pid "$IDLE_PID" 2
    stop_pid "$PGTENANT_PID" 5
    stop_pid "$BASE_PID" 5
    for pid in "${FWD_PID[@]}"; do stop_pid "$pid" 2; done
    if [[ -f $TMP/pgbouncer.pid ]]; then stop_pid "$(cat "$TMP/pgbouncer.pid")" 5; fi
    if [[ -f $TMP/pgbouncer-session.pid ]]; then stop_pid "$(cat "$TMP/pgbouncer-session.pid")" 5; fi
    if ((PG_STARTED)); then as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1; fi
    if ((rc != 0)) && [[ -d $TMP ]]; then
        local keep="$RESULTS_DIR/failed-$STAMP-logs"
        mkdir -p "$keep" && cp "$TMP"/*.log "$keep"/ 2>/dev/null && cp -r "$TMP"/runs "$keep"/ 2>/dev/null
        printf 'logs of the failed run kept in %s\n' "$keep" >&2
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

chmod 755 "$TMP"
mkdir -p "$TMP/runs" "$RESULTS_DIR"
[[ $EUID -eq 0 ]] && chown postgres:postgres "$TMP"

read -r PGPORT PGB_PORT PGT_PORT BASE_PORT PGBS_PORT FWD_MIO FWD_MIO2 FWD_TOKIO1 FWD_TOKIO < <(python3 - <<'EOF'
import socket
socks = []
for _ in range(9):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*[s.getsockname()[1] for s in socks])
EOF
)

wait_port() { # port name pid-or-empty
    local port=$1 name=$2 pid=${3:-} i
    for ((i = 0; i < 200; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then die "$name exited during startup"; fi
        sleep 0.1
    done
    die "$name did not listen on 127.0.0.1:$port within 20 s"
}

# ---------------------------------------------------------------- PostgreSQL
log "PostgreSQL 15 on 127.0.0.1:$PGPORT (dir $TMP)"
echo postgres >"$TMP/pwfile"
[[ $EUID -eq 0 ]] && chown postgres:postgres "$TMP/pwfile"
as_pg "$PG_BIN/initdb" -D "$PGDATA" -U postgres --pwfile="$TMP/pwfile" \
    --auth-host=md5 --auth-local=trust -E UTF8 --no-sync >"$TMP/initdb.log" 2>&1 \
    || { cat "$TMP/initdb.log" >&2; die "initdb failed"; }
as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$TMP/postgres.log" -w -t 60 start -o \
    "-p $PGPORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$TMP -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    >/dev/null || { cat "$TMP/postgres.log" >&2; die "PostgreSQL did not start"; }
PG_STARTED=1

psql -X -q -v ON_ERROR_STOP=1 -h "$TMP" -p "$PGPORT" -U postgres -d postgres >/dev/null <<'EOF' || die "creating role/database failed"
CREATE ROLE pgtenant LOGIN PASSWORD 'bench' NOSUPERUSER;
CREATE DATABASE erp_bench OWNER pgtenant;
EOF
log "pgbench -i -s $SCALE into erp_bench ($SCRIPT_DESC)"
PGPASSWORD=bench pgbench -i -q -s "$SCALE" -h 127.0.0.1 -p "$PGPORT" -U pgtenant erp_bench >"$TMP/pgbench-init.log" 2>&1 \
    || { cat "$TMP/pgbench-init.log" >&2; die "pgbench -i failed"; }
psql -X -q -h "$TMP" -p "$PGPORT" -U postgres -d erp_bench -c "VACUUM ANALYZE" >/dev/null

# ---------------------------------------------------------------- PgBouncer
pgbouncer_config "$TMP" "$PGB_PORT" "$PGPORT" "$POOL"
[[ $EUID -eq 0 ]] && chown postgres:postgres "$TMP/userlist.txt" "$TMP/pgbouncer.ini"
log "PgBouncer $("$PGBOUNCER" --version | head -1 | awk '{print $2}') on 127.0.0.1:$PGB_PORT"
# runuser's PAM session resets the soft open-file limit (to 1024): raise it again.
as_pg sh -c 'ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"' "$PGBOUNCER" -d "$TMP/pgbouncer.ini" >"$TMP/pgbouncer-start.log" 2>&1 \
    || { cat "$TMP/pgbouncer-start.log" "$TMP/pgbouncer.log" >&2 2>/dev/null; die "PgBouncer did not start"; }
for _ in $(seq 50); do [[ -s $TMP/pgbouncer.pid ]] && break; sleep 0.1; done
[[ -s $TMP/pgbouncer.pid ]] || die "PgBouncer wrote no pidfile"
wait_port "$PGB_PORT" PgBouncer "$(cat "$TMP/pgbouncer.pid")"
if [[ " $TARGETS " == *" pgbouncer-session "* ]]; then
    # The same PgBouncer in session mode, on its own port.
    sed -e "s/^listen_port = .*/listen_port = $PGBS_PORT/" -e "s/^pool_mode = .*/pool_mode = session/" \
        -e "s|^logfile = .*|logfile = $TMP/pgbouncer-session.log|" -e "s|^pidfile = .*|pidfile = $TMP/pgbouncer-session.pid|" \
        "$TMP/pgbouncer.ini" >"$TMP/pgbouncer-session.ini"
    [[ $EUID -eq 0 ]] && chown postgres:postgres "$TMP/pgbouncer-session.ini"
    as_pg sh -c 'ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"' "$PGBOUNCER" -d "$TMP/pgbouncer-session.ini" >"$TMP/pgbouncer-session-start.log" 2>&1 \
        || { cat "$TMP/pgbouncer-session-start.log" "$TMP/pgbouncer-session.log" >&2 2>/dev/null; die "PgBouncer (session mode) did not start"; }
    for _ in $(seq 50); do [[ -s $TMP/pgbouncer-session.pid ]] && break; sleep 0.1; done
    [[ -s $TMP/pgbouncer-session.pid ]] || die "PgBouncer (session mode) wrote no pidfile"
    wait_port "$PGBS_PORT" "PgBouncer (session mode)" "$(cat "$TMP/pgbouncer-session.pid")"
    log "PgBouncer in session mode on 127.0.0.1:$PGBS_PORT"
fi

# ---------------------------------------------------------------- pgtenant
pgtenant_config "$PGTENANT_BIN" "$PGT_PORT" "$PGPORT" "$POOL" "${PGTENANT_WORKERS:-0}" >"$TMP/pgtenant.toml" \
    || die "no pgtenant configuration"
# pgtenant-shared-mix: MIX_TENANTS tenants in shared placement on one pool, interleaving.
for ((i = 1; i <= MIX_TENANTS; i++)); do
    printf '\n[tenants.mix%d]\nplacement = "shared"\nshard = "main"\ndatabase = "erp_bench"\n' "$i" >>"$TMP/pgtenant.toml"
done

# pgtenant runs in a session of its own (setsid), as PgBouncer (-d) and PostgreSQL (pg_ctl) do.
# With the kernel's autogroup scheduling (sched_autogroup_enabled=1) every session is one
# scheduling group: a proxy left in this script's session would share one group's CPU share
# with pgbench and wait behind it, which the daemons do not.
start_pgtenant() {
    NO_COLOR=1 RUST_LOG=${PGTENANT_LOG:-warn} setsid "$PGTENANT_BIN" run --config "$TMP/pgtenant.toml" >>"$TMP/pgtenant.log" 2>&1 &
    PGTENANT_PID=$!
    wait_port "$PGT_PORT" pgtenant "$PGTENANT_PID"
}
PGTENANT_DESC="$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$REPO" && git diff --quiet HEAD -- src Cargo.toml Cargo.lock pgo 2>/dev/null || echo '+uncommitted changes')"
if [[ $PGTENANT_BIN -ef $BUILT_BIN ]]; then
    PGTENANT_DESC="$PGTENANT_DESC, $BUILD build"
else
    PGTENANT_DESC="binary $PGTENANT_BIN (repo at $PGTENANT_DESC)"
fi
log "pgtenant $PGTENANT_DESC on 127.0.0.1:$PGT_PORT"
start_pgtenant
if [[ " $TARGETS " == *" pgtenant-db-base "* ]]; then
    # The same configuration on its own port, without the keys an older build may not know.
    sed -e "s/^listen = .*/listen = \"127.0.0.1:$BASE_PORT\"/" \
        -e "s/^workers = .*/workers = ${BASE_WORKERS:-${PGTENANT_WORKERS:-0}}/" "$TMP/pgtenant.toml" >"$TMP/pgtenant-base.toml"
    if [[ -n ${BASE_AFFINITY:-} ]]; then
        sed -i "s/^workers = .*/&\ncpu_affinity = \"$BASE_AFFINITY\"/" "$TMP/pgtenant-base.toml"
    fi
    NO_COLOR=1 RUST_LOG=${PGTENANT_LOG:-warn} setsid "$BASE_BIN" run --config "$TMP/pgtenant-base.toml" >>"$TMP/pgtenant-base.log" 2>&1 &
    BASE_PID=$!
    wait_port "$BASE_PORT" "pgtenant (BASE_BIN)" "$BASE_PID"
    log "BASE_BIN $BASE_BIN on 127.0.0.1:$BASE_PORT"
fi

for t in $TARGETS; do
    [[ $t == forward-* ]] || continue
    case $t in
        forward-mio) FWD_PORT[$t]=$FWD_MIO ;;
        forward-mio2) FWD_PORT[$t]=$FWD_MIO2 ;;
        forward-tokio1) FWD_PORT[$t]=$FWD_TOKIO1 ;;
        forward-tokio) FWD_PORT[$t]=$FWD_TOKIO ;;
    esac
    setsid "$FORWARD_BIN" "${t#forward-}" "${FWD_PORT[$t]}" "$PGPORT" >>"$TMP/$t.log" 2>&1 &
    FWD_PID[$t]=$!
    wait_port "${FWD_PORT[$t]}" "$t" "${FWD_PID[$t]}"
    log "$t on 127.0.0.1:${FWD_PORT[$t]}"
done

# ---------------------------------------------------------------- targets
target_conn() { # target -> "port user dbname"
    case $1 in
        direct) echo "$PGPORT pgtenant erp_bench" ;;
        pgbouncer) echo "$PGB_PORT pgtenant erp_bench" ;;
        pgbouncer-session) echo "$PGBS_PORT pgtenant erp_bench" ;;
        pgtenant-db) echo "$PGT_PORT pgtenant.bench bench" ;;
        pgtenant-shared) echo "$PGT_PORT pgtenant.benchs benchs" ;;
        pgtenant-shared-mix) echo "$PGT_PORT pgtenant.mix1 mix1" ;;
        pgtenant-db-split) echo "$PGT_PORT pgtenant.bench bench" ;;
        pgtenant-db-base) echo "$BASE_PORT pgtenant.bench bench" ;;
        pgtenant-db-storm) echo "$PGT_PORT pgtenant.bench bench" ;;
        pgbouncer-storm) echo "$PGB_PORT pgtenant erp_bench" ;;
        forward-*) echo "${FWD_PORT[$1]} pgtenant erp_bench" ;;
    esac
}

target_pid() { # target -> pid of the proxy process serving it (nothing for direct)
    case $1 in
        direct) ;;
        pgbouncer | pgbouncer-storm) cat "$TMP/pgbouncer.pid" ;;
        pgbouncer-session) cat "$TMP/pgbouncer-session.pid" ;;
        pgtenant-db-base) echo "$BASE_PID" ;;
        forward-*) echo "${FWD_PID[$1]}" ;;
        *) echo "$PGTENANT_PID" ;;
    esac
}

cpu_ticks() { # pid -> user + system CPU of the process (all its threads) in clock ticks
    local s f
    s=$(<"/proc/$1/stat")
    read -r -a f <<<"${s##*) }"
    echo $((f[11] + f[12]))
}
CLK_TCK=$(getconf CLK_TCK)

machine_ticks() { # -> CPU time the whole machine spent busy (user, nice, system, irq, softirq), in clock ticks
    awk '/^cpu / {print $2 + $3 + $4 + $7 + $8; exit}' /proc/stat
}

switches() { # pid -> voluntary + involuntary context switches of its live threads
    # A thread may exit between the glob and the read: not an error here.
    { cat /proc/"$1"/task/*/status 2>/dev/null || true; } |
        awk '/^(non)?voluntary_ctxt_switches:/ {n += $2} END {print n + 0}'
}

# Sanity: every target answers, and shared placement really sets the tenant GUC.
for t in $TARGETS; do
    read -r port user db < <(target_conn "$t")
    out=$(PGPASSWORD=bench psql -X -At -h 127.0.0.1 -p "$port" -U "$user" -d "$db" \
        -c "SELECT current_database() || '|' || coalesce(current_setting('app.current_tenant', true), '')" 2>&1) \
        || { echo "$out" >&2; tail -20 "$TMP/pgtenant.log" >&2; die "target $t does not answer"; }
    case $t in
        pgtenant-shared) [[ $out == "erp_bench|benchs" ]] || die "pgtenant-shared: expected 'erp_bench|benchs', got '$out'" ;;
        pgtenant-shared-mix) [[ $out == "erp_bench|mix1" ]] || die "pgtenant-shared-mix: expected 'erp_bench|mix1', got '$out'" ;;
        *) [[ $out == erp_bench\|* ]] || die "$t: expected database erp_bench, got '$out'" ;;
    esac
done
log "all targets answer; shared placement sets app.current_tenant"

# ---------------------------------------------------------------- throughput matrix
echo "stamp,script,protocol,clients,threads,target,rep,duration_s,tps,latency_avg_ms,transactions,failed,proxy_cpu_us_per_tx,proxy_switches_per_tx,machine_cpu_us_per_tx" >"$CSV"
declare -A TPS # key "proto clients target" -> space-separated tps list
declare -A STORM_TPS # the same for the -C pgbench beside *-storm targets
declare -A CPU # the same key -> space-separated list of the proxy's CPU µs per transaction
declare -A CSW # the same key -> the proxy threads' context switches per transaction
declare -A MCPU # the same key -> the whole machine's busy CPU µs per transaction

fail_run() { # logfile message [target]
    {
        printf '\n----- pgbench output (%s) -----\n' "$1"
        cat "$1"
        if [[ ${3:-} == pgtenant* ]] && kill -0 "$PGTENANT_PID" 2>/dev/null; then
            printf -- '----- pgtenant process after the run -----\n'
            ps -o pid,stat,pcpu,rss,nlwp,etime -p "$PGTENANT_PID"
            printf -- '----- pgtenant client sockets (state / Recv-Q) -----\n'
            ss -Htn "( sport = :$PGT_PORT )" | awk '{print $1, "recvq=" $2}' | sort | uniq -c | sort -rn | head
            if command -v gdb >/dev/null; then
                printf -- '----- pgtenant threads (gdb, pgtenant frames only) -----\n'
                timeout 60 gdb -p "$PGTENANT_PID" -batch -ex 'thread apply all bt 30' 2>/dev/null \
                    | grep -E '^Thread|^#[0-9]+ +(0x[0-9a-f]+ in )?pgtenant::' | sed -E 's/ \(\) at / at /' | cut -c1-160 | head -40
            fi
        fi
        printf -- '----- pgtenant log (last 40 lines) -----\n'
        tail -40 "$TMP/pgtenant.log" 2>/dev/null
        printf -- '----- pgbouncer log (last 10 lines) -----\n'
        tail -10 "$TMP/pgbouncer.log" 2>/dev/null
        printf -- '----- postgres log (last 10 lines) -----\n'
        tail -10 "$TMP/postgres.log" 2>/dev/null
    } >&2
    die "$2"
}

# pgtenant-shared-mix: MIX_TENANTS pgbench processes at once, one per tenant, clients split
# between them; their outputs are merged into one log whose tps is the sum.
# pgtenant-db-split: the same split into MIX_TENANTS pgbench processes, all as the one
# database-placement tenant: the baseline for shared-mix (same client-side shape).
run_mix() { # proto clients out split -> rc
    local proto=$1 c=$2 out=$3 split=${4:-} per pids=() rc=0 i tenant
    per=$(( c / MIX_TENANTS )); ((per > 0)) || per=1
    for ((i = 1; i <= MIX_TENANTS; i++)); do
        tenant=mix$i
        [[ -z $split ]] || tenant=bench
        PGPASSWORD=bench timeout -k 5 $((DURATION + 30)) \
            pgbench --no-vacuum "${SCRIPT_ARGS[@]}" -M "$proto" -c "$per" -j 1 -T "$DURATION" \
            -h 127.0.0.1 -p "$PGT_PORT" -U "pgtenant.$tenant" "$tenant" >"$out.$i" 2>&1 &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || rc=$?; done
    awk '/^tps = / {t += $3} /^latency average = / {l += $4; n++}
         /^number of transactions actually processed/ {split($0, a, ": "); split(a[2], b, "/"); x += b[1]}
         /^number of failed transactions/ {f += $5}
         END {printf "tps = %f (merged)\nlatency average = %f ms\nnumber of transactions actually processed: %d\nnumber of failed transactions: %d (0.000%%)\n", t, l / n, x, f}' \
        "$out".* >"$out"
    cat "$out".* >>"$out"
    return "$rc"
}

run_one() { # proto clients target rep
    local proto=$1 c=$2 t=$3 rep=$4 port user db rc=0
    read -r port user db < <(target_conn "$t")
    local out="$TMP/runs/$proto-$c-$t-$rep.log"
    local pid ticks0= switches0=
    pid=$(target_pid "$t")
    [[ -z $pid ]] || { ticks0=$(cpu_ticks "$pid"); switches0=$(switches "$pid"); }
    local machine0
    machine0=$(machine_ticks)
    if [[ $t == pgtenant-shared-mix ]]; then
        run_mix "$proto" "$c" "$out" || rc=$?
    elif [[ $t == pgtenant-db-split ]]; then
        run_mix "$proto" "$c" "$out" split || rc=$?
    else
        local storm_pid=
        if [[ $t == *-storm ]]; then
            # New connection per transaction, beside the measured run.
            PGPASSWORD=bench timeout -k 5 $((DURATION + 30)) \
                pgbench --no-vacuum -S -C -c "$STORM_CLIENTS" -j 1 -T "$DURATION" \
                -h 127.0.0.1 -p "$port" -U "$user" "$db" >"$out.storm" 2>&1 &
            storm_pid=$!
        fi
        PGPASSWORD=bench timeout -k 5 $((DURATION + 30)) \
            pgbench --no-vacuum "${SCRIPT_ARGS[@]}" -M "$proto" -c "$c" -j "$THREADS" -T "$DURATION" \
            -h 127.0.0.1 -p "$port" -U "$user" "$db" >"$out" 2>&1 || rc=$?
        if [[ -n $storm_pid ]]; then
            wait "$storm_pid" || fail_run "$out.storm" "the connection storm against $t failed" "$t"
            STORM_TPS["$proto $c $t"]+="$(awk '/^tps = / {print $3; exit}' "$out.storm") "
        fi
    fi
    ((rc != 124 && rc != 137)) || fail_run "$out" "pgbench against $t hung (killed after $((DURATION + 30)) s): $proto c=$c rep=$rep" "$t"
    ((rc == 0)) || fail_run "$out" "pgbench against $t exited with $rc: $proto c=$c rep=$rep" "$t"
    local tps lat n failed
    tps=$(awk '/^tps = / {print $3; exit}' "$out")
    lat=$(awk '/^latency average = / {print $4; exit}' "$out")
    n=$(awk -F': ' '/^number of transactions actually processed/ {print $2; exit}' "$out")
    failed=$(awk '/^number of failed transactions/ {print $5; exit}' "$out")
    [[ -n $tps && -n $n ]] || fail_run "$out" "could not parse pgbench output for $t $proto c=$c rep=$rep" "$t"
    [[ ${failed:-0} == 0 ]] || fail_run "$out" "$failed failed transactions against $t: $proto c=$c rep=$rep" "$t"
    grep -qi 'aborted' "$out" && fail_run "$out" "pgbench reports aborted clients against $t: $proto c=$c rep=$rep" "$t"
    [[ -n ${n%%/*} && ${n%%/*} -gt 0 ]] || fail_run "$out" "no transactions processed against $t" "$t"
    # The proxy's CPU time and its threads' context switches (each a wake-up or a
    # preemption) per transaction over the whole pgbench run, logins included: figures less
    # exposed to the machine's drift than tps.
    # The whole machine's busy CPU per transaction (PostgreSQL, pgbench, the proxy and
    # anything else running): with both CPUs busy, tps is about 2 s divided by it, so it
    # shows how much of a tps difference the proxy's own figure accounts for.
    local mcpu
    mcpu=$(awk -v d=$(($(machine_ticks) - machine0)) -v hz="$CLK_TCK" -v n="${n%%/*}" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
    MCPU["$proto $c $t"]+="$mcpu "
    local cpu= csw=
    if [[ -n $ticks0 ]]; then
        cpu=$(awk -v d=$(($(cpu_ticks "$pid") - ticks0)) -v hz="$CLK_TCK" -v n="${n%%/*}" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
        csw=$(awk -v d=$(($(switches "$pid") - switches0)) -v n="${n%%/*}" 'BEGIN {printf "%.2f", d / n}')
        CPU["$proto $c $t"]+="$cpu "
        CSW["$proto $c $t"]+="$csw "
    fi
    echo "$STAMP,$SCRIPT,$proto,$c,$THREADS,$t,$rep,$DURATION,$tps,$lat,${n%%/*},${failed:-0},$cpu,$csw,$mcpu" >>"$CSV"
    TPS["$proto $c $t"]+="$tps "
    log "$(printf '%-8s c=%-3s rep %d/%d  %-16s %10.0f tps  (%s ms avg)' "$proto" "$c" "$rep" "$REPEAT" "$t" "$tps" "$lat")"
}

n_targets=$(wc -w <<<"$TARGETS"); n_cells=$(( $(wc -w <<<"$PROTOCOLS") * $(wc -w <<<"$CLIENTS") ))
log "matrix: $n_cells cells x $n_targets targets x $REPEAT reps x ${DURATION}s ≈ $(( n_cells * n_targets * REPEAT * DURATION / 60 + 1 )) min"
for proto in $PROTOCOLS; do
    for c in $CLIENTS; do
        for ((rep = 1; rep <= REPEAT; rep++)); do
            # Every other repetition runs the targets in reverse order, so that no target
            # always runs right after the same neighbour (or first in a cell).
            order=$TARGETS
            ((rep % 2)) || order=$(tr ' ' '\n' <<<"$TARGETS" | awk 'NF' | tac | tr '\n' ' ')
            for t in $order; do run_one "$proto" "$c" "$t" "$rep"; done
        done
    done
done

# Leftover errors in pgtenant's log are worth knowing about even when pgbench was happy.
PGT_ERRORS=$(grep -cE '(WARN|ERROR)' "$TMP/pgtenant.log" 2>/dev/null || true)

# ---------------------------------------------------------------- idle-connection memory
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
established() { # clients connected to pgtenant's listen port
    ss -Htn state established "( sport = :$PGT_PORT )" 2>/dev/null | wc -l
}
MEM_LINES=()
if ((IDLE_CLIENTS > 0)); then
    log "memory: restarting pgtenant, then $IDLE_CLIENTS idle clients (pgbench \\sleep $IDLE_SLEEP s)"
    stop_pid "$PGTENANT_PID" 5
    start_pgtenant
    # One short session so the pool and its server connection exist in the baseline.
    PGPASSWORD=bench psql -X -At -h 127.0.0.1 -p "$PGT_PORT" -U pgtenant.bench -d bench -c 'SELECT 1' >/dev/null \
        || die "pgtenant does not answer after restart"
    sleep 1
    RSS_BEFORE=$(rss_kib "$PGTENANT_PID")
    printf '\\sleep %s s\n' "$IDLE_SLEEP" >"$TMP/idle.sql"
    # -t 1, not -T: pgbench's -T clock includes the connection phase (2,000 SCRAM logins
    # take seconds), while with -t 1 every client connects, waits for all the others
    # (pgbench's start barrier), sleeps IDLE_SLEEP s and leaves.
    PGPASSWORD=bench timeout -k 5 $((IDLE_SLEEP + 300)) pgbench --no-vacuum -c "$IDLE_CLIENTS" -j 4 -t 1 -f "$TMP/idle.sql" \
        -h 127.0.0.1 -p "$PGT_PORT" -U pgtenant.bench bench >"$TMP/runs/idle.log" 2>&1 &
    IDLE_PID=$!
    # pgbench (15) connects all clients first, then starts every client's script together
    # (a barrier), so once all are connected they all sleep for IDLE_SLEEP s: sample then.
    t0=$SECONDS peak=0 last=-1
    while kill -0 "$IDLE_PID" 2>/dev/null && ((SECONDS - t0 < 180)); do
        n=$(established); ((n > peak)) && peak=$n
        ((n >= IDLE_CLIENTS)) && break
        if ((SECONDS - t0 >= last + 5)); then last=$((SECONDS - t0)); log "  $n/$IDLE_CLIENTS clients connected after ${last}s"; fi
        sleep 0.5
    done
    CONNECT_S=$((SECONDS - t0))
    sleep 2
    if kill -0 "$IDLE_PID" 2>/dev/null; then
        CONNECTED=$(established)
        RSS_DURING=$(rss_kib "$PGTENANT_PID")
        THREADS_PGT=$(awk '/^Threads:/ {print $2}' "/proc/$PGTENANT_PID/status")
        FDS_PGT=$(find "/proc/$PGTENANT_PID/fd" -mindepth 1 | wc -l)
        log "  sampled: $CONNECTED clients connected, RSS $RSS_DURING KiB (baseline $RSS_BEFORE KiB)"
    else
        CONNECTED=0 RSS_DURING=
    fi
    idle_rc=0
    wait "$IDLE_PID" || idle_rc=$?
    IDLE_PID=
    sleep 1
    RSS_AFTER=$(rss_kib "$PGTENANT_PID")
    # Freed but retained by the allocator, or still in use? Ask glibc to give free memory back.
    RSS_TRIM=
    if command -v gdb >/dev/null; then
        timeout 60 gdb -p "$PGTENANT_PID" -batch -ex 'call (int)malloc_trim(0)' >/dev/null 2>&1 \
            && RSS_TRIM=$(rss_kib "$PGTENANT_PID")
    fi
    if ((CONNECTED > 0)) && [[ -n $RSS_DURING ]]; then
        PER=$(awk -v a="$RSS_BEFORE" -v b="$RSS_DURING" -v n="$CONNECTED" 'BEGIN {printf "%.1f", (b - a) / n}')
        MEM_LINES+=("| pgtenant RSS before (1 session served, pool warm) | $RSS_BEFORE KiB |")
        MEM_LINES+=("| pgtenant RSS with $CONNECTED idle clients connected | $RSS_DURING KiB |")
        MEM_LINES+=("| RSS delta per idle client | **$PER KiB** |")
        MEM_LINES+=("| pgtenant RSS after the clients left | $RSS_AFTER KiB |")
        [[ -z $RSS_TRIM ]] || MEM_LINES+=("| … then after \`malloc_trim(0)\` (called with gdb) | $RSS_TRIM KiB |")
        CONN_MS=$(awk '/^initial connection time = / {printf "%.1f s", $5 / 1000; exit}' "$TMP/runs/idle.log")
        MEM_LINES+=("| time to connect all clients (SCRAM each; pgbench initial connection time) | ${CONN_MS:-~${CONNECT_S} s} |")
        MEM_LINES+=("| pgtenant threads / open fds at the sample | $THREADS_PGT / $FDS_PGT |")
    fi
    if ((idle_rc != 0)) || ((CONNECTED < IDLE_CLIENTS)); then
        MEM_NOTE="pgbench -c $IDLE_CLIENTS exited $idle_rc with $CONNECTED/$IDLE_CLIENTS clients connected at the sample (peak $peak); its output:"$'\n'"$(grep -v '^pgbench (' "$TMP/runs/idle.log" | head -20)"$'\n'"pgtenant log tail:"$'\n'"$(tail -10 "$TMP/pgtenant.log")"
    else
        MEM_NOTE=
    fi
fi

# ---------------------------------------------------------------- report
median() { # [printf format] < space-separated values
    tr ' ' '\n' | awk 'NF' | sort -g | awk -v fmt="${1:-%.0f}" '{a[NR] = $1} END {if (NR == 0) exit; if (NR % 2) printf fmt, a[(NR + 1) / 2]; else printf fmt, (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "" || b == "" || b == 0) print "-"; else printf "%.2f", a / b}'; }
# The median of the per-repetition ratios of two tps lists (same order: repetition 1, 2, ...).
# Both runs of a repetition are at most a few minutes apart, so this ratio is less exposed
# than the ratio of medians to the machine's drift over the whole run.
paired() {
    local -a a b
    local i
    read -r -a a <<<"$1"
    read -r -a b <<<"$2"
    ((${#a[@]} > 0 && ${#a[@]} == ${#b[@]})) || { echo "-"; return; }
    for ((i = 0; i < ${#a[@]}; i++)); do echo "${a[i]} ${b[i]}"; done |
        awk '$2 > 0 {printf "%.6f\n", $1 / $2}' | sort -g |
        awk '{v[NR] = $1} END {if (NR == 0) print "-"; else printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
# One ratio cell of the report: numerator target, denominator target, for the row's $proto and
# $c, with the row's medians in M.
cell() { echo "$(ratio "${M[$1]}" "${M[$2]}") ($(paired "${TPS["$proto $c $1"]:-}" "${TPS["$proto $c $2"]:-}"))"; }

{
    echo "### $SCRIPT_DESC TPS, median of $REPEAT x ${DURATION}s runs"
    echo
    echo "Command: \`$CMDLINE\`  "
    echo "Each run: \`pgbench --no-vacuum ${SCRIPT_ARGS[*]:+${SCRIPT_ARGS[*]} }-M <protocol> -c <clients> -j $THREADS -T $DURATION\` (scale $SCALE); PgBouncer and pgtenant in transaction mode (pgbouncer-session: PgBouncer in session mode) with $POOL server connections; targets interleaved within each repetition, in reverse order every other repetition.  "
    echo "Ratios: of the medians, and in brackets the median of the per-repetition ratios.  "
    echo "Machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), everything on one host over loopback; PostgreSQL $(as_pg "$PG_BIN/postgres" --version | awk '{print $3}'), PgBouncer $("$PGBOUNCER" --version | head -1 | awk '{print $2}'), pgtenant $PGTENANT_DESC; kernel $(uname -r), sched_autogroup_enabled=$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo n/a)."
    echo
    header="| protocol | clients |"; sep="|---|---:|"
    for t in $TARGETS; do header+=" $t |"; sep+="---:|"; done
    has() { [[ " $TARGETS " == *" $1 "* ]]; }
    if has pgbouncer && has pgtenant-db; then header+=" db / pgbouncer |"; sep+="---:|"; fi
    if has pgbouncer-session && has pgtenant-db; then header+=" db / pgbouncer-session |"; sep+="---:|"; fi
    if has pgbouncer-session && has pgtenant-shared; then header+=" shared / pgbouncer-session |"; sep+="---:|"; fi
    if has pgbouncer && has pgtenant-shared; then header+=" shared / pgbouncer |"; sep+="---:|"; fi
    if has pgtenant-db && has pgtenant-shared; then header+=" shared / db |"; sep+="---:|"; fi
    if has pgtenant-db && has pgtenant-shared-mix; then header+=" shared-mix / db |"; sep+="---:|"; fi
    if has pgtenant-db-split && has pgtenant-shared-mix; then header+=" shared-mix / db-split |"; sep+="---:|"; fi
    if has pgtenant-db && has pgtenant-db-base; then header+=" db / db-base |"; sep+="---:|"; fi
    if has pgtenant-db && has pgtenant-db-storm; then header+=" db-storm / db |"; sep+="---:|"; fi
    if has pgbouncer && has pgbouncer-storm; then header+=" pgbouncer-storm / pgbouncer |"; sep+="---:|"; fi
    echo "$header"; echo "$sep"
    for proto in $PROTOCOLS; do
        for c in $CLIENTS; do
            declare -A M=()
            row="| $proto | $c |"
            for t in $TARGETS; do M[$t]=$(median <<<"${TPS["$proto $c $t"]:-}"); row+=" ${M[$t]} |"; done
            if has pgbouncer && has pgtenant-db; then row+=" $(cell pgtenant-db pgbouncer) |"; fi
            if has pgbouncer-session && has pgtenant-db; then row+=" $(cell pgtenant-db pgbouncer-session) |"; fi
            if has pgbouncer-session && has pgtenant-shared; then row+=" $(cell pgtenant-shared pgbouncer-session) |"; fi
            if has pgbouncer && has pgtenant-shared; then row+=" $(cell pgtenant-shared pgbouncer) |"; fi
            if has pgtenant-db && has pgtenant-shared; then row+=" $(cell pgtenant-shared pgtenant-db) |"; fi
            if has pgtenant-db && has pgtenant-shared-mix; then row+=" $(cell pgtenant-shared-mix pgtenant-db) |"; fi
            if has pgtenant-db-split && has pgtenant-shared-mix; then row+=" $(cell pgtenant-shared-mix pgtenant-db-split) |"; fi
            if has pgtenant-db && has pgtenant-db-base; then row+=" $(cell pgtenant-db pgtenant-db-base) |"; fi
            if has pgtenant-db && has pgtenant-db-storm; then row+=" $(cell pgtenant-db-storm pgtenant-db) |"; fi
            if has pgbouncer && has pgbouncer-storm; then row+=" $(cell pgbouncer-storm pgbouncer) |"; fi
            echo "$row"
            unset M
        done
    done
    echo
    echo "CPU per transaction, µs: the proxy's, then the whole machine's; in brackets the proxy threads' context switches per transaction (medians; user + system time of the proxy process, busy time of all CPUs from /proc/stat, and the voluntary + involuntary switches of the proxy's threads, over each whole run, logins included, divided by the transactions of the run):"
    echo
    header="| protocol | clients |"; sep="|---|---:|"
    for t in $TARGETS; do header+=" $t |"; sep+="---:|"; done
    echo "$header"; echo "$sep"
    for proto in $PROTOCOLS; do
        for c in $CLIENTS; do
            row="| $proto | $c |"
            for t in $TARGETS; do
                machine=$(median %.1f <<<"${MCPU["$proto $c $t"]:-}")
                if [[ $t == direct ]]; then
                    row+=" - / $machine |"
                else
                    row+=" $(median %.1f <<<"${CPU["$proto $c $t"]:-}") / $machine ($(median %.2f <<<"${CSW["$proto $c $t"]:-}")) |"
                fi
            done
            echo "$row"
        done
    done
    if [[ " $PROTOCOLS " == *" prepared "* && " $PROTOCOLS " == *" extended "* ]]; then
        echo
        echo "\`-M prepared\` / \`-M extended\`, same target and clients:"
        for c in $CLIENTS; do
            line="- c=$c:"
            for t in $TARGETS; do
                line+=" $t $(ratio "$(median <<<"${TPS["prepared $c $t"]:-}")" "$(median <<<"${TPS["extended $c $t"]:-}")"),"
            done
            echo "${line%,}"
        done
    fi
    if has pgbouncer-session; then
        echo
        echo "pgbouncer-session: PgBouncer in session mode (each client keeps one server connection; the PgBouncer that can run \`-M prepared\`)."
    fi
    echo
    echo "pgtenant-db: tenant in its own database (no per-transaction SQL); pgtenant-shared: shared placement, every statement checked by the guard, and pgtenant sends \`SET app.current_tenant = '<tenant>'\` with a transaction's first message whenever the server connection does not already carry it."
    if has pgtenant-shared-mix; then
        echo
        echo "pgtenant-shared-mix: $MIX_TENANTS shared-placement tenants at once on one pool (one pgbench per tenant, clients split evenly, tps summed), so server connections change tenant all the time; pgtenant-db-split: the same split, all as the database-placement tenant."
    fi
    if has pgtenant-db-storm || has pgbouncer-storm; then
        echo
        echo "*-storm: the same target while a second pgbench (\`-S -C -c $STORM_CLIENTS -j 1\`) logs in anew for every transaction; its connections per second (median):"
        for proto in $PROTOCOLS; do for c in $CLIENTS; do for t in pgtenant-db-storm pgbouncer-storm; do
            if has "$t"; then echo "- $proto c=$c $t: $(median <<<"${STORM_TPS["$proto $c $t"]:-}") connections/s"; fi
        done; done; done
    fi
    if has pgtenant-db-base; then
        echo
        echo "pgtenant-db-base: the same tenant through BASE_BIN ($BASE_BIN), a second pgtenant process on its own port${BASE_AFFINITY:+, with cpu_affinity = \"$BASE_AFFINITY\"}."
    fi
    if [[ " $TARGETS " == *" forward-"* ]]; then
        echo
        echo "forward-*: byte-for-byte forwarders (benches/forward/), one server connection per client: forward-mio one event loop (mio), forward-mio2 two event-loop threads, forward-tokio1 tokio's single-threaded scheduler, forward-tokio tokio's work-stealing scheduler with two workers."
        if has pgbouncer-session; then
            for proto in $PROTOCOLS; do for c in $CLIENTS; do
                line="- $proto c=$c, tps / pgbouncer-session:"
                for t in $TARGETS; do
                    [[ $t == forward-* ]] || continue
                    line+=" $t $(ratio "$(median <<<"${TPS["$proto $c $t"]:-}")" "$(median <<<"${TPS["$proto $c pgbouncer-session"]:-}")"),"
                done
                echo "${line%,}"
            done; done
        fi
    fi
    if ((PGT_ERRORS > 0)); then
        echo
        echo "Note: pgtenant logged $PGT_ERRORS WARN/ERROR lines during the throughput runs (first 5):"
        echo '```'
        grep -E '(WARN|ERROR)' "$TMP/pgtenant.log" | head -5
        echo '```'
    fi
    if ((IDLE_CLIENTS > 0)); then
        echo
        echo "### pgtenant memory with $IDLE_CLIENTS idle clients"
        echo
        echo "\`pgbench --no-vacuum -c $IDLE_CLIENTS -j 4 -t 1 -f idle.sql\` with idle.sql = \`\\sleep $IDLE_SLEEP s\` (clients authenticate, then hold the connection without a transaction); RSS from /proc/PID/status VmRSS, fresh pgtenant process."
        echo
        if ((${#MEM_LINES[@]})); then
            echo "| measure | value |"; echo "|---|---:|"
            printf '%s\n' "${MEM_LINES[@]}"
        fi
        if [[ -n $MEM_NOTE ]]; then
            echo
            echo '```'
            echo "$MEM_NOTE"
            echo '```'
        fi
    fi
    echo
    echo "Raw results: \`${CSV#"$REPO"/}\`"
} | tee "$REPORT"
