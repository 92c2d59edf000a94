# shellcheck shell=bash
# Sourced by the bench scripts: the configurations they run PgBouncer and pgtenant with, in
# front of a bench cluster on 127.0.0.1 (role `pgtenant`, password `bench`, database
# `erp_bench`).

# pgbouncer_config DIR LISTEN_PORT PG_PORT POOL: writes DIR/pgbouncer.ini (transaction mode,
# POOL server connections, SCRAM, log and pidfile in DIR) and DIR/userlist.txt.
pgbouncer_config() {
    local dir=$1 port=$2 pg_port=$3 pool=$4
    echo '"pgtenant" "bench"' >"$dir/userlist.txt"
    cat >"$dir/pgbouncer.ini" <<CONFIG
[databases]
erp_bench = host=127.0.0.1 port=$pg_port dbname=erp_bench

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir = $dir
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
pool_mode = transaction
default_pool_size = $pool
max_client_conn = 1000
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
CONFIG
}

# pgtenant_config BIN LISTEN_PORT PG_PORT POOL WORKERS: prints a pgtenant configuration:
# transaction mode, POOL server connections, WORKERS lanes; client user `pgtenant` (password
# `bench`, hashed with BIN) may name tenant `bench` (database placement) or `benchs` (shared
# placement). Fails if BIN prints no SCRAM verifier.
pgtenant_config() {
    local bin=$1 port=$2 pg_port=$3 pool=$4 workers=$5 verifier
    verifier=$(printf bench | "$bin" hash-password 2>/dev/null | tail -1)
    if [[ $verifier != SCRAM-SHA-256\$* ]]; then
        echo "pgtenant hash-password printed no verifier (got '$verifier')" >&2
        return 1
    fi
    cat <<CONFIG
[server]
listen = "127.0.0.1:$port"
max_client_conn = 5000
shutdown_timeout = 1
workers = $workers
# Its own metrics port: a pgtenant already running on the default 9930 must not stop the run.
metrics_addr = "127.0.0.1:0"

[pool]
mode = "transaction"
default_pool_size = $pool

[tenancy]
resolve = ["user", "database"]

[shards.main]
host = "127.0.0.1"
port = $pg_port
user = "pgtenant"
password = "bench"

[users.pgtenant]
password = "$verifier"
tenants = ["*"]

[tenants.bench]
placement = "database"
shard = "main"
database = "erp_bench"

[tenants.benchs]
placement = "shared"
shard = "main"
database = "erp_bench"
CONFIG
}
