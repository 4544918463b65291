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

DEMO_EVENT="${DEMO_EVENT:-events/http-api.json}"

trap stop_stack EXIT
trap 'exit 130' INT TERM

ensure_python_tools
start_stack
export_local_config
seed_demo
start_function

log "invoking with $DEMO_EVENT (the first call compiles the function)"
response=$(invoke_event "$DEMO_EVENT")
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
  echo "  PATH=$ROOT/.venv/bin:\$PATH cargo lambda invoke bootstrap --invoke-port $FUNCTION_PORT --data-file events/rest-api.json"
  wait
fi
