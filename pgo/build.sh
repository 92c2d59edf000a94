#!/usr/bin/env bash
# Builds pgtenant's release binary with profile-guided optimization, from the profile in this
# folder (pgo/pgtenant.profdata, made by pgo/profile.sh), into target/pgo/release/pgtenant.
#
# Usage:   pgo/build.sh            (prints the binary's path last)
#
# The profile tells the compiler which branches and calls the relay takes per transaction, so
# it lays out the hot paths together and inlines along them. A function changed since the
# profile was made is compiled as without a profile: the build stays correct, and is as fast
# as a plain `cargo build --release` where the code moved on. Regenerate the profile after
# changing the relay or the pool (pgo/profile.sh).
#
# The profile's format follows LLVM's major version: a rustc whose LLVM is older than the one
# that wrote it cannot read it, and this script says so instead of building.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PROFILE=$REPO/pgo/pgtenant.profdata
INFO=$REPO/pgo/profile.txt

die() { printf 'pgo/build.sh: %s\n' "$*" >&2; exit 1; }

[[ -f $PROFILE ]] || die "no profile at $PROFILE: make one with pgo/profile.sh"
made_with=$(sed -n 's/^llvm-major: *//p' "$INFO" 2>/dev/null || true)
[[ -n $made_with ]] || die "$INFO does not say which LLVM wrote the profile (line 'llvm-major: N')"
ours=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
[[ -n $ours ]] || die "could not read rustc's LLVM version from 'rustc -vV'"
if ((ours < made_with)); then
    die "the profile was written by LLVM $made_with and $(rustc --version) has LLVM $ours, which cannot read it: make a profile with this toolchain (pgo/profile.sh) or build without one (cargo build --release)"
fi

made_at=$(sed -n 's/^commit: *\([0-9a-f]*\).*/\1/p' "$INFO")
if [[ -n $made_at ]] && git rev-parse -q --verify "$made_at^{commit}" >/dev/null 2>&1 \
    && ! git diff --quiet "$made_at" -- src Cargo.lock; then
    printf 'pgo/build.sh: src/ or Cargo.lock changed since the profile was made (at %s): what changed is built without it; pgo/profile.sh makes a fresh one\n' "$made_at" >&2
fi

# -no-pgo-warn-mismatch: functions changed since the profile are compiled without it, quietly.
CARGO_TARGET_DIR=$REPO/target/pgo \
    RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$PROFILE -Cllvm-args=-no-pgo-warn-mismatch" \
    cargo build --quiet --release --locked --bin pgtenant >&2
echo "$REPO/target/pgo/release/pgtenant"
