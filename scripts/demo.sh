#!/usr/bin/env bash
# The local demo, end to end: installs what is missing, starts DynamoDB Local
# and the SES v2 stand-in, creates the tables, seeds a demo user and
# challenge, runs the function under `cargo lambda watch`, sends the sample
# request, and prints the answer and the email that arrived. Stops everything
# it started on exit or Ctrl-C.
#   DEMO_EVENT=events/rest-api.json ./scripts/demo.sh   # another front door
#   KEEP_RUNNING=1 ./scripts/demo.sh                    # keep the stack up to explore
set -euo pipefail
source "$(dirname "$0")/local-stack.sh"
cd "$ROOT"

CARGO_LAMBDA_VERSION=1.9.2
DEMO_EVENT="${DEMO_EVENT:-events/http-api.json}"
export DEMO_EMAIL="${DEMO_EMAIL:-ana@example.com}"

cleanup() { stop_stack; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# cargo-lambda comes from PyPI into the project's own venv; its bin goes
# first on PATH so cargo-lambda finds the zig it installs.
if [ ! -x "$ROOT/.venv/bin/cargo-lambda" ] \
   || ! "$ROOT/.venv/bin/cargo-lambda" lambda --version 2>/dev/null | grep -q "$CARGO_LAMBDA_VERSION"; then
  log "installing cargo-lambda $CARGO_LAMBDA_VERSION into .venv"
  python3 -m venv "$ROOT/.venv"
  "$ROOT/.venv/bin/pip" install --quiet --disable-pip-version-check "cargo-lambda==$CARGO_LAMBDA_VERSION"
fi
export PATH="$ROOT/.venv/bin:$PATH"

start_stack

# The function's configuration (CONTRACT.md section 6), local values.
export CHALLENGES_TABLE=demo-challenges USERS_TABLE=demo-users RATE_LIMIT_TABLE=demo-rate-limits
export SENDER_EMAIL="Rocket.Chat <no-reply@chat.example.com>"
CODE_HMAC_SECRET="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
export CODE_HMAC_SECRET

log "creating tables and seeding the demo user and challenge"
cargo run --quiet --example seed_demo

port=$(free_port)
log "starting the function: cargo lambda watch on port $port (log: $STACK_DIR/watch.log)"
cargo lambda watch --invoke-port "$port" >"$STACK_DIR/watch.log" 2>&1 &
STACK_PIDS+=($!)
wait_for_port "$port" watch "$!"

log "invoking with $DEMO_EVENT (the first call compiles the function)"
response=$(cargo lambda invoke bootstrap --invoke-port "$port" --data-file "$DEMO_EVENT")
printf '\nResponse from the function:\n%s\n' "$response" | sed 's/^/  /'

printf '\nEmail received by the SES stand-in:\n'
python3 - "$AWS_ENDPOINT_URL_SESV2" "$DEMO_EMAIL" <<'PY'
import json, sys, urllib.request
base, address = sys.argv[1], sys.argv[2]
emails = json.load(urllib.request.urlopen(base + "/store"))["emails"]
mine = [e for e in emails if address in e["destination"]["to"]]
if not mine:
    print("  (none)")
for e in mine[-1:]:
    print(f"  From:    {e['from']}\n  To:      {', '.join(e['destination']['to'])}\n  Subject: {e['subject']}\n")
    print("\n".join("  | " + line for line in e["body"]["text"].splitlines()))
PY
printf '\nInbox (web): %s/\n' "$AWS_ENDPOINT_URL_SESV2"

if [ -n "${KEEP_RUNNING:-}" ]; then
  log "stack is up; Ctrl-C stops everything. Invoke again with:"
  echo "  PATH=$ROOT/.venv/bin:\$PATH cargo lambda invoke bootstrap --invoke-port $port --data-file events/rest-api.json"
  wait
fi
