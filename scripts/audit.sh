#!/usr/bin/env bash
# Scans Cargo.lock for crates with published security advisories, using
# cargo-audit (pinned; built from crates.io into .tools/ on first use).
#
# The advisory database is the RustSec git repository, kept at $ADVISORY_DB
# (default ~/.cargo/advisory-db). This script refreshes it when GitHub is
# reachable (clone, or a fast-forward pull), within 60 s. To update it on a
# machine without internet, copy a fresh clone of
# https://github.com/rustsec/advisory-db to that path from one that has it.
#
# Exit status: 1 when a dependency has a known advisory; 0 when none has. An
# unreachable database never fails the build: with no copy at all the scan is
# skipped with a warning; with an old copy it runs on that copy and says so.
# ADVISORY_NO_FETCH=1 skips the refresh (used by the script's own test).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARGO_AUDIT_VERSION=0.22.2
DB="${ADVISORY_DB:-$HOME/.cargo/advisory-db}"
AUDIT="$ROOT/.tools/bin/cargo-audit"

warn() { printf 'audit: warning: %s\n' "$*" >&2; }

if [ ! -x "$AUDIT" ] || ! "$AUDIT" audit --version 2>/dev/null | grep -q "$CARGO_AUDIT_VERSION"; then
  echo "audit: building cargo-audit $CARGO_AUDIT_VERSION into .tools/ (once)" >&2
  # An unoptimised build takes half the time (about 3 min on 2 cores) and
  # still scans the lock file in under a second.
  cargo install --quiet --locked --debug --root "$ROOT/.tools" cargo-audit --version "$CARGO_AUDIT_VERSION"
fi

if [ -z "${ADVISORY_NO_FETCH:-}" ]; then
  if [ -d "$DB/.git" ]; then
    timeout 60 git -C "$DB" pull --quiet --ff-only 2>/dev/null \
      || warn "could not refresh the advisory database; scanning with the copy from $(git -C "$DB" log -1 --format=%cs 2>/dev/null || echo '?')"
  else
    timeout 60 git clone --quiet --depth 1 https://github.com/rustsec/advisory-db "$DB" 2>/dev/null \
      || { rm -rf "$DB"; warn "advisory database unreachable and no local copy at $DB: scan skipped"; exit 0; }
  fi
fi
if [ ! -d "$DB/crates" ]; then
  warn "no advisory database at $DB: scan skipped"
  exit 0
fi
cd "$ROOT"
exec "$AUDIT" audit --db "$DB" --no-fetch --stale
