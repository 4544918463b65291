#!/usr/bin/env bash
# The local demo, end to end, as a login flow would see it: installs what is
# missing, starts DynamoDB Local and the SES v2 stand-in, creates the tables,
# seeds a demo user and an email challenge, runs the function under
# `cargo lambda watch` and sends the sample request. Then it reads the code
# from the stand-in's inbox and checks it with the library's `verify`
# (examples/verify_code), shows that a wrong code fails, asks for a second
# code and shows that both the first and the new one work (each code stays
# valid until its own expiry) while a wrong one still fails.
# Stops everything it started on exit or Ctrl-C.
#   DEMO_EVENT=events/rest-api.json ./scripts/demo.sh   # another front door
#   KEEP_RUNNING=1 ./scripts/demo.sh                    # keep the stack up to explore
set -euo pipefail
source "$(dirname "$0")/local-stack.sh"
cd "$ROOT"

DEMO_EVENT="${DEMO_EVENT:-events/http-api.json}"
# The challenge every file in events/ names (examples/seed_demo.rs).
DEMO_CHALLENGE_ID=8f4c2d1e9a7b6c5d3e2f1a0b

trap stop_stack EXIT
trap 'exit 130' INT TERM

fail() { log "DEMO FAILED: $*"; exit 1; }

# Sends the demo event; prints the answer and insists on a 200.
request_code() {
  local response status
  response=$(invoke_event "$DEMO_EVENT")
  printf '\nResponse from the function:\n'
  printf '%s\n' "$response" | sed 's/^/  /'
  status=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["statusCode"])' <<<"$response")
  [ "$status" = 200 ] || fail "expected status 200, got $status"
}

# Prints the newest email to the demo address (to stderr), and the code in it
# as six digits (to stdout). Fails unless the inbox holds exactly $1 emails
# for that address, so an old email is never taken for a new one.
code_from_inbox() { # expected number of emails
  python3 - "$AWS_ENDPOINT_URL_SESV2" "$DEMO_EMAIL" "$1" <<'PY'
import json, re, sys, urllib.request
base, address, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
emails = json.load(urllib.request.urlopen(base + "/store"))["emails"]
mine = [e for e in emails if address in e["destination"]["to"]]
if len(mine) != expected:
    sys.exit(f"expected {expected} email(s) to {address} in the inbox, found {len(mine)}")
e = mine[-1]
text = e["body"]["text"]
out = sys.stderr
print(f"\nEmail received by the SES stand-in (GET {base}/store):", file=out)
print(f"  From:    {e['from']}\n  To:      {', '.join(e['destination']['to'])}\n  Subject: {e['subject']}\n", file=out)
print("\n".join("  | " + line for line in text.splitlines()), file=out)
found = re.findall(r"\b(\d{3})-(\d{3})\b", text)
if len(found) != 1:
    sys.exit(f"expected one code written 123-456 in the email, found {len(found)}")
print("".join(found[0]))
PY
}

# Runs examples/verify_code; insists that the code verifies (want=ok) or is
# refused (want=refused).
check_code() { # want, code
  local status=0 said
  said=$(cargo run --quiet --example verify_code -- "$DEMO_CHALLENGE_ID" "$2") || status=$?
  printf '%s\n' "$said" | sed 's/^/  /'
  case "$1:$status" in
    ok:0 | refused:1) ;;
    *) fail "verify_code exited with $status for $2, expected the code to be $1" ;;
  esac
}

dashed() { echo "${1:0:3}-${1:3:3}"; }

# Prints a six-digit code that is none of the given ones.
a_wrong_code() { # code...
  local n=$(( (10#$1 + 1) % 1000000 )) candidate
  while :; do
    candidate=$(printf '%06d' "$n")
    case " $* " in *" $candidate "*) n=$(( (n + 1) % 1000000 )) ;; *) break ;; esac
  done
  echo "$candidate"
}

ensure_python_tools
start_stack
export_local_config
log "building the function and the demo's helpers with cargo (progress below): the first build takes about 5 minutes on 2 cores, later ones seconds"
cargo build --bin bootstrap --example seed_demo --example verify_code
seed_demo
start_function

log "1. a login flow asks for a code: invoking the function with $DEMO_EVENT"
request_code
first=$(code_from_inbox 1) || fail "could not read the code from the inbox"
printf '\nInbox (web): %s/\n' "$AWS_ENDPOINT_URL_SESV2"

log "2. the user types $(dashed "$first"); the login flow checks it with send_email_code::verify"
check_code ok "$(dashed "$first")"
wrong=$(a_wrong_code "$first")
log "3. a wrong code, $(dashed "$wrong"), must be refused"
check_code refused "$wrong"

log "4. the user asks for another code (a resend): invoking the function again"
request_code
second=$(code_from_inbox 2) || fail "could not read the second code from the inbox"
# One chance in a million that the new code equals the old one: then the demo
# could not tell the two apart. Ask once more.
if [ "$second" = "$first" ]; then
  log "the new code happens to equal the first; asking for a third"
  request_code
  second=$(code_from_inbox 3) || fail "could not read the third code from the inbox"
fi
log "5. the first code, $(dashed "$first"), still works after the resend (the first email may arrive last)"
check_code ok "$(dashed "$first")"
log "6. the new code, $(dashed "$second"), works too"
check_code ok "$second"
wrong=$(a_wrong_code "$first" "$second")
log "7. a wrong code, $(dashed "$wrong"), is still refused"
check_code refused "$wrong"
log "demo complete: codes sent, read from the inbox and checked with verify"

if [ -n "${KEEP_RUNNING:-}" ]; then
  log "stack is up; Ctrl-C stops everything. Invoke again with:"
  echo "  PATH=$ROOT/.venv/bin:\$PATH cargo lambda invoke bootstrap --invoke-port $FUNCTION_PORT --data-file events/rest-api.json"
  echo "  Inbox: $AWS_ENDPOINT_URL_SESV2/   (GET /store for JSON)"
  echo "  Check a code (this run's throwaway secret and fake credentials):"
  echo "  AWS_REGION=$AWS_REGION AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test CHALLENGES_TABLE=$CHALLENGES_TABLE \\"
  echo "    CODE_HMAC_SECRET=$CODE_HMAC_SECRET AWS_ENDPOINT_URL_DYNAMODB=$AWS_ENDPOINT_URL_DYNAMODB \\"
  echo "    cargo run --quiet --example verify_code -- $DEMO_CHALLENGE_ID 123-456"
  wait
fi
