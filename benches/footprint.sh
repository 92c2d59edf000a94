#!/usr/bin/env bash
# What a transaction costs inside each proxy and inside PostgreSQL, PgBouncer beside pgtenant,
# measured in ways the machine's noise does not blur the way it blurs tps:
#
#  1. callgrind (valgrind): user-space instructions per transaction, and the L1 misses of its
#     cache simulation: the cache lines a proxy touches per transaction that are not in L1 any
#     more (its hot working set). Steady state only: after a warm-up run, two measured runs
#     of SHORT and TX transactions per client, counters zeroed before and dumped after each;
#     their difference over the difference of their transactions leaves the logins out.
#  2. Exact CPU per transaction (`se.sum_exec_runtime` of every thread, from
#     /proc/PID/task/TID/sched; /proc/PID/stat counts whole ticks) of the proxy, of
#     PostgreSQL's backends and of pgbench, and their context switches per transaction
#     (voluntary: went to sleep; involuntary: preempted), over runs that alternate between the
#     two proxies.
#
# Everything runs on loopback in a throwaway directory that is removed on exit.
#
# Usage:   benches/footprint.sh            (needs valgrind: apt-get install -y valgrind)
# Tunables (environment variables, defaults in brackets):
#   CLIENTS [16]          pgbench clients (-c), with -j 2
#   PROTOCOL [extended]   pgbench -M
#   WARM [100], SHORT [200], TX [1200]  transactions per client of the callgrind runs
#   RUNS [4], RUN_SECONDS [8] alternating pgbench -T runs per proxy for the CPU part; each is
#                         sampled from its 2nd second for RUN_SECONDS-4 seconds
#   WORKERS [1]           pgtenant `server.workers`
#   CACHE ["--D1=49152,12,64 --I1=65536,8,64 --LL=2097152,16,64"]  callgrind's simulated caches
#   PGTENANT_BIN [target/release/pgtenant]  (built beforehand: cargo build --release)
#   PGBOUNCER [/usr/sbin/pgbouncer], PG_BIN [/usr/lib/postgresql/15/bin]
set -euo pipefail

CLIENTS=${CLIENTS:-16}
PROTOCOL=${PROTOCOL:-extended}
WARM=${WARM:-100}
SHORT=${SHORT:-200}
TX=${TX:-1200}
RUNS=${RUNS:-4}
SECONDS_PER_RUN=${RUN_SECONDS:-8}
WORKERS=${WORKERS:-1}
CACHE=${CACHE:-"--D1=49152,12,64 --I1=65536,8,64 --LL=2097152,16,64"}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PGBOUNCER=${PGBOUNCER:-/usr/sbin/pgbouncer}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=benches/configs.sh
source "$REPO/benches/configs.sh"
PGTENANT_BIN=${PGTENANT_BIN:-$REPO/target/release/pgtenant}

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

((SECONDS_PER_RUN >= 5)) || die "RUN_SECONDS must be at least 5"
((TX > SHORT)) || die "TX must exceed SHORT"
for tool in valgrind callgrind_control pgbench psql "$PG_BIN/initdb" "$PG_BIN/pg_ctl" "$PGBOUNCER" "$PGTENANT_BIN"; do
    command -v "$tool" >/dev/null || die "missing $tool"
done
if [[ $EUID -eq 0 ]]; then
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi

TMP=$(mktemp -d /tmp/pgtenant-footprint.XXXXXX)
chmod 755 "$TMP"
[[ $EUID -ne 0 ]] || chown postgres "$TMP"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 1
    as_pg "$PG_BIN/pg_ctl" -D "$TMP/data" stop -m fast >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # port
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.2
    done
    die "nothing listens on port $1 (logs in $TMP)"
}
PG_PORT=$(free_port); PGB_PORT=$(free_port); PGT_PORT=$(free_port)

say "cluster on port $PG_PORT"
echo postgres >"$TMP/pwfile"
as_pg "$PG_BIN/initdb" -D "$TMP/data" -U postgres --pwfile="$TMP/pwfile" --auth-host=md5 \
    --auth-local=trust -E UTF8 --no-sync >"$TMP/initdb.log"
as_pg "$PG_BIN/pg_ctl" -D "$TMP/data" -l "$TMP/postgres.log" -w start -o \
    "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$TMP -c max_connections=100 -c fsync=off -c synchronous_commit=off" >/dev/null
psql -X -q -h "$TMP" -p "$PG_PORT" -U postgres -d postgres \
    -c "CREATE ROLE pgtenant LOGIN PASSWORD 'bench'" -c "CREATE DATABASE erp_bench OWNER pgtenant"
PGPASSWORD=bench pgbench -i -q -s 10 -h 127.0.0.1 -p "$PG_PORT" -U pgtenant erp_bench >"$TMP/init.log" 2>&1

# PgBouncer runs as `postgres` (it refuses to run as root): its files are handed over below.
pgbouncer_config "$TMP" "$PGB_PORT" "$PG_PORT" 20
pgtenant_config "$PGTENANT_BIN" "$PGT_PORT" "$PG_PORT" 20 "$WORKERS" >"$TMP/pgtenant.toml" \
    || die "no pgtenant configuration"
[[ $EUID -ne 0 ]] || chown postgres "$TMP"/*.txt "$TMP"/*.ini

port_of() { case $1 in pgbouncer) echo "$PGB_PORT" ;; pgtenant) echo "$PGT_PORT" ;; esac; }
db_of() { case $1 in pgbouncer) echo erp_bench ;; pgtenant) echo bench ;; esac; }
# Starts a proxy, under `valgrind` with the given options if any; prints its pid.
start() { # target [valgrind options...]
    local t=$1; shift
    local run=()
    (($# == 0)) || run=(valgrind "$@")
    case $t in
        pgbouncer) as_pg setsid "${run[@]}" "$PGBOUNCER" "$TMP/pgbouncer.ini" >>"$TMP/$t.out" 2>&1 & ;;
        pgtenant) NO_COLOR=1 RUST_LOG=warn setsid "${run[@]}" "$PGTENANT_BIN" run --config "$TMP/pgtenant.toml" >>"$TMP/$t.out" 2>&1 & ;;
    esac
    wait_port "$(port_of "$t")"
    # The proxy's own pid (runuser and valgrind's launcher are not it).
    pgrep -n -f "$(case $t in pgbouncer) echo "$TMP/pgbouncer.ini" ;; pgtenant) echo "$TMP/pgtenant.toml" ;; esac)"
}
bench() { # target pgbench-args...
    local t=$1; shift
    PGPASSWORD=bench pgbench --no-vacuum -S -M "$PROTOCOL" -c "$CLIENTS" -j 2 "$@" \
        -h 127.0.0.1 -p "$(port_of "$t")" -U pgtenant "$(db_of "$t")"
}

# ------------------------------------------------------------ 1. callgrind
declare -A IR D1R D1W I1R
# callgrind_control as the proxy's own user.
control() { # target pid option
    if [[ $1 == pgbouncer ]]; then as_pg callgrind_control "$3" "$2"; else callgrind_control "$3" "$2"; fi >/dev/null
}
for t in pgbouncer pgtenant; do
    say "$t under callgrind: $WARM, then $SHORT and $TX transactions per client"
    # shellcheck disable=SC2086 # CACHE is a list of options
    pid=$(start "$t" --tool=callgrind --cache-sim=yes $CACHE --callgrind-out-file="$TMP/cg-$t")
    PIDS+=("$pid")
    bench "$t" -t "$WARM" >"$TMP/$t-warm.log" 2>&1 || die "warm-up run against $t failed ($TMP/$t-warm.log)"
    for n in "$SHORT" "$TX"; do
        control "$t" "$pid" -z
        bench "$t" -t "$n" >"$TMP/$t-$n.log" 2>&1 || die "run against $t failed ($TMP/$t-$n.log)"
        control "$t" "$pid" -d
    done
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    # events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw; dumps .1 (SHORT) and .2 (TX)
    read -r ir i1 d1r d1w < <(paste <(awk '/^summary:/ {print $2, $5, $6, $7}' "$TMP/cg-$t.1") \
        <(awk '/^summary:/ {print $2, $5, $6, $7}' "$TMP/cg-$t.2") |
        awk -v n=$((CLIENTS * (TX - SHORT))) 'function per(d) { d /= n; return d < 0.005 && d > -0.005 ? 0 : d }
            {printf "%.0f %.2f %.2f %.2f\n", per($5 - $1), per($6 - $2), per($7 - $3), per($8 - $4)}')
    IR[$t]=$ir; I1R[$t]=$i1; D1R[$t]=$d1r; D1W[$t]=$d1w
done

# ------------------------------------------------------------ 2. exact CPU
sched_totals() { # pid... -> "ns voluntary involuntary": se.sum_exec_runtime (in ns) and the
    # context switches of their threads, summed
    local p
    for p in "$@"; do cat /proc/"$p"/task/*/sched 2>/dev/null || true; done |
        awk '/^se.sum_exec_runtime/ {s += $3} /^nr_voluntary_switches/ {v += $3}
             /^nr_involuntary_switches/ {i += $3} END {printf "%.0f %d %d", s * 1e6, v, i}'
}
backends() { pgrep -u postgres -f "postgres: pgtenant erp_bench" || true; }
declare -A CPU_PROXY CPU_PG CPU_BENCH VOL_PROXY VOL_PG VOL_BENCH INVOL_PROXY INVOL_PG INVOL_BENCH TPS
for t in pgbouncer pgtenant; do PIDS+=("$(start "$t")"); done
declare -A PROXY=([pgbouncer]=${PIDS[-2]} [pgtenant]=${PIDS[-1]})
window=$((SECONDS_PER_RUN - 4))
# per BEFORE AFTER FIELD: of two sched_totals samples, FIELD 1 (CPU, µs) or 2, 3 (switches)
# per transaction of a run of $tps over $window seconds
per() { awk -v a="$1" -v b="$2" -v f="$3" -v t="$tps" -v w="$window" 'BEGIN {
    split(a, x, " "); split(b, y, " "); d = (y[f] - x[f]) / (t * w)
    if (f == 1) printf "%.1f", d / 1e3; else printf "%.3f", d }'; }
declare -A BEFORE AFTER
for ((r = 1; r <= RUNS; r++)); do
    for t in pgbouncer pgtenant; do
        bench "$t" -T "$SECONDS_PER_RUN" >"$TMP/$t-cpu-$r.log" 2>&1 &
        bp=$!
        sleep 2
        mapfile -t be < <(backends)
        pb=$(pgrep -P "$bp" -x pgbench || echo "$bp") # the function's subshell runs pgbench
        BEFORE=([PROXY]=$(sched_totals "${PROXY[$t]}") [PG]=$(sched_totals "${be[@]}") [BENCH]=$(sched_totals "$pb"))
        sleep "$window"
        AFTER=([PROXY]=$(sched_totals "${PROXY[$t]}") [PG]=$(sched_totals "${be[@]}") [BENCH]=$(sched_totals "$pb"))
        wait "$bp" || die "pgbench against $t failed ($TMP/$t-cpu-$r.log)"
        tps=$(awk '/^tps = / {print $3; exit}' "$TMP/$t-cpu-$r.log")
        for who in PROXY PG BENCH; do
            declare -n cpu=CPU_$who vol=VOL_$who invol=INVOL_$who
            cpu[$t]+="$(per "${BEFORE[$who]}" "${AFTER[$who]}" 1) "
            vol[$t]+="$(per "${BEFORE[$who]}" "${AFTER[$who]}" 2) "
            invol[$t]+="$(per "${BEFORE[$who]}" "${AFTER[$who]}" 3) "
            unset -n cpu vol invol
        done
        TPS[$t]+="${tps%.*} "
        say "$t run $r: ${tps%.*} tps"
    done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

echo "### Per-transaction footprint: pgbench -S -M $PROTOCOL -c $CLIENTS -j 2, pgtenant workers = $WORKERS"
echo
echo "Command: \`CLIENTS=$CLIENTS PROTOCOL=$PROTOCOL WARM=$WARM SHORT=$SHORT TX=$TX RUNS=$RUNS RUN_SECONDS=$SECONDS_PER_RUN WORKERS=$WORKERS benches/footprint.sh\`; pgtenant $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?'), PgBouncer $("$PGBOUNCER" --version | head -1 | awk '{print $2}'), kernel $(uname -r), sched_autogroup_enabled=$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo n/a)."
echo
echo "| | PgBouncer | pgtenant |"
echo "|---|---:|---:|"
echo "| user-space instructions (callgrind) | ${IR[pgbouncer]} | ${IR[pgtenant]} |"
echo "| L1 data lines missed, read + written (cache simulation: $CACHE) | ${D1R[pgbouncer]} + ${D1W[pgbouncer]} | ${D1R[pgtenant]} + ${D1W[pgtenant]} |"
echo "| L1 instruction lines missed | ${I1R[pgbouncer]} | ${I1R[pgtenant]} |"
for pair in "proxy PROXY" "PostgreSQL backends PG" "pgbench BENCH"; do
    name=${pair% *}; var=${pair##* }
    declare -n arr=CPU_$var vol=VOL_$var invol=INVOL_$var
    echo "| $name, CPU µs (median of $RUNS; runs) | $(median <<<"${arr[pgbouncer]}") (${arr[pgbouncer]% }) | $(median <<<"${arr[pgtenant]}") (${arr[pgtenant]% }) |"
    echo "| $name, context switches, voluntary + involuntary (medians) | $(median <<<"${vol[pgbouncer]}") + $(median <<<"${invol[pgbouncer]}") | $(median <<<"${vol[pgtenant]}") + $(median <<<"${invol[pgtenant]}") |"
    unset -n arr vol invol
done
echo "| tps (median; runs) | $(median <<<"${TPS[pgbouncer]}") (${TPS[pgbouncer]% }) | $(median <<<"${TPS[pgtenant]}") (${TPS[pgtenant]% }) |"
