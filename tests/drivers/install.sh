#!/usr/bin/env bash
# Installs the client drivers that tests/drivers.rs runs through pgtenant, each at a pinned
# version, into .drivers/ at the repository root (git-ignored): a Python venv with psycopg 3 and
# asyncpg, node-postgres, and (Debian packages) pgjdbc plus a JDK if `javac` is missing.
# Idempotent: installs only what is missing or at another version. Safe to run as often as you
# like; `.ci/run` runs it before the tests.
set -euo pipefail
cd "$(dirname "$0")/../.."

PSYCOPG_VERSION=3.3.9
ASYNCPG_VERSION=0.32.0
NODE_PG_VERSION=8.23.1
DRIVERS=.drivers

# --- Debian packages: pgjdbc, a JDK, node/npm and venv support if absent -------------------
apt_missing=()
[ -f /usr/share/java/postgresql.jar ] || apt_missing+=(libpostgresql-jdbc-java)
command -v javac >/dev/null 2>&1 || apt_missing+=(default-jdk-headless)
command -v node >/dev/null 2>&1 || apt_missing+=(nodejs)
command -v npm >/dev/null 2>&1 || apt_missing+=(npm)
command -v python3 >/dev/null 2>&1 || apt_missing+=(python3)
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  apt_missing+=(python3-venv)
fi
if [ ${#apt_missing[@]} -gt 0 ]; then
  echo "drivers: apt installing ${apt_missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq "${apt_missing[@]}" >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq "${apt_missing[@]}" >/dev/null
  fi
fi

# --- Python: psycopg 3 (binary) and asyncpg in .drivers/venv --------------------------------
py="$DRIVERS/venv/bin/python"
py_ok() {
  "$py" - "$PSYCOPG_VERSION" "$ASYNCPG_VERSION" <<'PY' >/dev/null 2>&1
import sys, psycopg, asyncpg
assert psycopg.__version__ == sys.argv[1], psycopg.__version__
assert psycopg.pq.__impl__ in ("binary", "c"), psycopg.pq.__impl__
assert asyncpg.__version__ == sys.argv[2], asyncpg.__version__
PY
}
if ! [ -x "$py" ] || ! py_ok; then
  echo "drivers: pip installing psycopg[binary]==$PSYCOPG_VERSION asyncpg==$ASYNCPG_VERSION"
  [ -x "$py" ] || python3 -m venv "$DRIVERS/venv"
  "$py" -m pip install -q --disable-pip-version-check \
    "psycopg[binary]==$PSYCOPG_VERSION" "asyncpg==$ASYNCPG_VERSION"
  py_ok || { echo "drivers: python drivers still not importable at the pinned versions" >&2; exit 1; }
fi

# --- node-postgres in .drivers/node ---------------------------------------------------------
node_dir="$DRIVERS/node"
node_ok() {
  [ "$(node -p "require('./$node_dir/node_modules/pg/package.json').version" 2>/dev/null)" = "$NODE_PG_VERSION" ]
}
if ! node_ok; then
  echo "drivers: npm installing pg@$NODE_PG_VERSION"
  mkdir -p "$node_dir"
  cat >"$node_dir/package.json" <<JSON
{ "name": "pgtenant-driver-checks", "private": true, "dependencies": { "pg": "$NODE_PG_VERSION" } }
JSON
  npm install --prefix "$node_dir" --no-audit --no-fund --loglevel=error --save-exact >/dev/null
  node_ok || { echo "drivers: pg@$NODE_PG_VERSION not installed" >&2; exit 1; }
fi

echo "drivers: ready (psycopg $PSYCOPG_VERSION, asyncpg $ASYNCPG_VERSION, pg $NODE_PG_VERSION, pgjdbc $(dpkg-query -W -f='${Version}' libpostgresql-jdbc-java 2>/dev/null || echo '?'), $(javac -version 2>&1))"
