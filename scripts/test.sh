#!/usr/bin/env bash
# The whole test suite, against real local stand-ins (DynamoDB Local and
# aws-ses-v2-local) that it installs, starts and stops itself:
#   1. cargo test --all-targets (unit, integration, fault, log and start-up tests)
#   2. template.yaml checked offline (SAM translator + cfn-lint + IAM rules) and
#      the tests proving that check catches broken templates
#   3. every file in events/ invoked through the Lambda runtime API
#      (cargo lambda watch + cargo lambda invoke) with its documented status,
#      then schemathesis: at least 1,000 generated requests against openapi.yaml
#      through a local HTTP front (examples/local_http), no 5xx, every answer
#      as documented
#   4. cargo lambda build --release --arm64, and the zip within its size budget
#   5. the dependency advisory scan (scripts/audit.sh), and proof that it fails
#      on a crate with a known advisory
# With arguments, runs only `cargo test <arguments>` (e.g. `--test faults`).
set -euo pipefail
source "$(dirname "$0")/local-stack.sh"
cd "$ROOT"
trap stop_stack EXIT
trap 'exit 130' INT TERM

# bootstrap.zip may grow to this before the suite fails (README, "Deploying").
ZIP_BUDGET_BYTES=$((6 * 1024 * 1024))

# What each sample event must get back through the runtime, with the demo
# challenge seeded. A new file in events/ needs a line here.
declare -A EXPECTED_STATUS=(
  [rest-api.json]=200
  [http-api.json]=200
  [function-url.json]=200
  [alb.json]=200
  [http-api-base64-no-content-type.json]=200
  [http-api-form.json]=200
  [http-api-no-body.json]=400
  [http-api-invalid-json.json]=400
  [http-api-get.json]=405
)

check_events_through_runtime() {
  export_local_config
  # One seeded challenge and one caller serve several events here.
  export RATE_LIMIT_MAX=100 MAX_CODES_PER_CHALLENGE=100
  seed_demo
  start_function
  local failed=0 file name want got
  for file in events/*.json; do
    name=$(basename "$file")
    want="${EXPECTED_STATUS[$name]:-}"
    if [ -z "$want" ]; then
      echo "FAIL $name: no expected status in scripts/test.sh"; failed=1; continue
    fi
    got=$(invoke_event "$file" | python3 -c 'import json, sys; print(json.load(sys.stdin)["statusCode"])') || got="no answer"
    if [ "$got" = "$want" ]; then echo "ok   $name -> $got"; else echo "FAIL $name -> $got, expected $want"; failed=1; fi
  done
  return "$failed"
}

# Schemathesis against openapi.yaml, through examples/local_http (each HTTP
# request becomes the function URL event AWS would send). SCHEMATHESIS_SEED
# picks another sequence; the default keeps CI reproducible.
check_openapi_with_schemathesis() {
  local port log
  export RATE_LIMIT_MAX=1000000 MAX_CODES_PER_CHALLENGE=1000000
  cargo build --quiet --example local_http
  port=$(free_port)
  target/debug/examples/local_http "$port" >"$STACK_DIR/local_http.log" 2>&1 &
  local pid=$!
  STACK_PIDS+=("$pid")
  wait_for_port "$port" local_http "$pid"
  log="$STACK_DIR/schemathesis.log"
  schemathesis run openapi.yaml --url "http://127.0.0.1:$port" \
    --checks not_a_server_error,response_schema_conformance,content_type_conformance,status_code_conformance,response_headers_conformance,unsupported_method,allow_header_conformance \
    --max-examples 1000 --seed "${SCHEMATHESIS_SEED:-20261127}" \
    --generation-database none --no-color >"$log" 2>&1 || { cat "$log"; return 1; }
  local generated
  generated=$(grep -Eo '[0-9]+ generated' "$log" | grep -Eo '[0-9]+' | head -n 1)
  echo "schemathesis: ${generated:-0} generated cases, no failures"
  [ "${generated:-0}" -ge 1000 ] || { cat "$log"; echo "FAIL: fewer than 1,000 cases"; return 1; }
}

check_arm64_build() {
  rustup target add aarch64-unknown-linux-gnu >/dev/null
  cargo lambda build --release --arm64 --output-format zip
  local zip="target/lambda/bootstrap/bootstrap.zip" size
  size=$(stat -c %s "$zip")
  echo "$zip: $size bytes (budget $ZIP_BUDGET_BYTES)"
  [ "$size" -le "$ZIP_BUDGET_BYTES" ] || { echo "FAIL: bootstrap.zip is over its size budget"; return 1; }
}

# Property tests: 10,000 cases each unless the caller asks for another number.
export PROPTEST_CASES="${PROPTEST_CASES:-10000}"

# A one-advisory database of our own, against `hex` (in Cargo.lock at 0.4.x):
# with `patched` above that version the crate is vulnerable, below it is not.
synthetic_advisory_db() { # dir, patched-range
  rm -rf "$1"
  mkdir -p "$1/crates/hex"
  cat >"$1/crates/hex/RUSTSEC-2099-0001.md" <<ADVISORY
\`\`\`toml
[advisory]
id = "RUSTSEC-2099-0001"
package = "hex"
date = "2099-01-01"

[versions]
patched = ["$2"]
\`\`\`

# Synthetic advisory for the audit step's own test

Written by this project to prove that scripts/audit.sh fails on a known
vulnerable crate. Not a real vulnerability.
ADVISORY
  git -C "$1" init --quiet
  git -C "$1" add -A
  git -C "$1" -c user.name=test -c user.email=test@example.invalid commit --quiet -m advisory
}

check_advisories() {
  ./scripts/audit.sh
  local db="$STACK_DIR/advisory-db"
  synthetic_advisory_db "$db" ">= 99.0.0"
  if ADVISORY_DB="$db" ADVISORY_NO_FETCH=1 ./scripts/audit.sh >"$STACK_DIR/audit.log" 2>&1; then
    cat "$STACK_DIR/audit.log"; echo "FAIL: the scan passed a crate with a known advisory"; return 1
  fi
  grep -q "RUSTSEC-2099-0001" "$STACK_DIR/audit.log" || { cat "$STACK_DIR/audit.log"; return 1; }
  synthetic_advisory_db "$db" ">= 0.1.0"
  ADVISORY_DB="$db" ADVISORY_NO_FETCH=1 ./scripts/audit.sh >"$STACK_DIR/audit.log" 2>&1 \
    || { cat "$STACK_DIR/audit.log"; echo "FAIL: the scan refused a patched crate"; return 1; }
  echo "advisory scan: fails on a known vulnerable crate, passes a patched one"
}

start_stack
if [ $# -gt 0 ]; then
  log "cargo test $*"
  cargo test "$@"
  exit 0
fi

log "1/5 cargo test --all-targets"
cargo test --all-targets

ensure_python_tools
log "2/5 template.yaml, offline"
python3 scripts/check_template.py
python3 -m unittest discover -s tests/template 2>&1 | grep -v "unpublished metrics"

log "3/5 events/ through the Lambda runtime API, then schemathesis"
check_events_through_runtime
check_openapi_with_schemathesis

log "4/5 release build for arm64"
check_arm64_build

log "5/5 dependency advisories"
check_advisories
log "all checks passed"
