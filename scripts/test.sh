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
#   4. cargo lambda build --release --arm64, and the zip within its size budget;
#      then `sam validate --lint` and `sam build --beta-features --build-in-source`
#      offline without credentials, reusing that build: SAM's bootstrap must be
#      an aarch64 ELF identical to the one in the zip
#   5. the dependency advisory scan (scripts/audit.sh, with the database in
#      ADVISORY_DB, else the live one), and proof that it fails on a crate with
#      a known advisory; SKIPPED (and said so at the end) when no database
#      can be had
# Each step prints how long it took; a table of the times closes the run.
# With arguments, runs only `cargo test <arguments>` (e.g. `--test faults`).
set -euo pipefail
source "$(dirname "$0")/local-stack.sh"
cd "$ROOT"
trap stop_stack EXIT
trap 'exit 130' INT TERM

# bootstrap.zip may grow to this before the suite fails (README, "Deploying").
ZIP_BUDGET_BYTES=$((4 * 1024 * 1024)) # issue target: the arm64 zip stays under 4 MiB

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
  "$TARGET_DIR/debug/examples/local_http" "$port" >"$STACK_DIR/local_http.log" 2>&1 &
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
  local zip="$TARGET_DIR/lambda/bootstrap/bootstrap.zip" size
  size=$(stat -c %s "$zip")
  echo "$zip: $size bytes (budget $ZIP_BUDGET_BYTES)"
  [ "$size" -le "$ZIP_BUDGET_BYTES" ] || { echo "FAIL: bootstrap.zip is over its size budget"; return 1; }
}

# The SAM path, as the README's "Build and deploy" shows it (check_template.py
# fails when the README stops showing these): run offline, with no AWS
# credentials, after check_arm64_build, so `sam build` finds the arm64 build
# in the same CARGO_TARGET_DIR and copies it instead of compiling again.
SAM_COMMANDS=("sam validate --lint" "sam build --beta-features --build-in-source")
SAM_FUNCTION=SendEmailCodeFunction

sam_offline() { # command words...
  (cd "$ROOT" && env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_PROFILE \
    AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_DEFAULT_REGION=us-east-1 \
    SAM_CLI_TELEMETRY=0 CARGO_TARGET_DIR="$TARGET_DIR" "$@")
}

# What cargo linked for arm64 (name and time of each bootstrap-<hash>):
# unchanged across `sam build` means SAM reused the build.
arm64_link_outputs() {
  find "$TARGET_DIR/aarch64-unknown-linux-gnu/release/deps" -maxdepth 1 -type f -name 'bootstrap-*' ! -name '*.d' \
    -printf '%f %T@\n' 2>/dev/null | sort
}

check_sam_build() {
  local command words started before zip="$STACK_DIR/bootstrap.zip"
  before=$(arm64_link_outputs || true)
  [ -n "$before" ] || { echo "FAIL: no arm64 build in $TARGET_DIR to reuse"; return 1; }
  # SAM's cargo lambda build writes target/lambda/bootstrap/ again and can
  # remove the zip there (it did on a first run here): compare with a copy of
  # the zip check_arm64_build just made.
  cp "$TARGET_DIR/lambda/bootstrap/bootstrap.zip" "$zip"
  rm -rf "$ROOT/.aws-sam"
  for command in "${SAM_COMMANDS[@]}"; do
    read -ra words <<<"$command"
    started=$SECONDS
    sam_offline "${words[@]}"
    echo "$command: $((SECONDS - started)) s"
  done
  [ "$(arm64_link_outputs || true)" = "$before" ] || { echo "FAIL: sam build compiled the arm64 binary again instead of reusing $TARGET_DIR"; return 1; }
  # Reads bytes only: the binary is never run here.
  python3 - "$ROOT/.aws-sam/build" "$SAM_FUNCTION" "$zip" <<'PY'
import struct, sys, zipfile
from pathlib import Path
from samtranslator.yaml_helper import yaml_parse

build, function, zip_path = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
binary = build / function / "bootstrap"
failures = []
data = binary.read_bytes() if binary.is_file() else b""
if len(data) < 20 or data[:4] != b"\x7fELF":
    failures.append(f"{binary} is missing or not an ELF file")
else:
    # 64-bit, little-endian, e_machine 0xB7 (EM_AARCH64).
    machine = struct.unpack_from("<H", data, 18)[0]
    if data[4] != 2 or data[5] != 1 or machine != 0xB7:
        failures.append(f"{binary} is not a 64-bit little-endian aarch64 ELF (class {data[4]}, data {data[5]}, machine {machine:#x})")
with zipfile.ZipFile(zip_path) as archive:
    names = archive.namelist()
    entry = archive.getinfo("bootstrap") if names == ["bootstrap"] else None
    if entry is None:
        failures.append(f"{zip_path} must hold exactly bootstrap, holds {names}")
    else:
        if not (entry.external_attr >> 16) & 0o111:
            failures.append(f"bootstrap in {zip_path} is not executable")
        # The zip came from this checkout a step earlier (cargo rebuilds on
        # any change): the same bytes make SAM's binary this commit's code.
        if archive.read(entry) != data:
            failures.append(f"{binary} differs from the bootstrap in {zip_path}")
built = yaml_parse((build / "template.yaml").read_text())
props = built.get("Resources", {}).get(function, {}).get("Properties", {})
if props.get("CodeUri") != function:
    failures.append(f"the built template's CodeUri is {props.get('CodeUri')!r}, expected {function!r}")
# sam deploy sends this template: the managed-instances choice must still be
# the deploy-time one, for AWS::LanguageExtensions to settle.
if "AWS::LanguageExtensions" not in built.get("Transform", []) or "Fn::If" not in props.get("CapacityProviderConfig", {}):
    failures.append("the built template lost AWS::LanguageExtensions or the CapacityProviderConfig !If")
for failure in failures:
    print(f"FAIL: {failure}")
if failures:
    sys.exit(1)
print(f"{binary}: aarch64 ELF, {len(data)} bytes, identical to the bootstrap in bootstrap.zip; arm64 build reused")
PY
}

# Property tests: 10,000 cases each unless the caller asks for another number.
export PROPTEST_CASES="${PROPTEST_CASES:-10000}"

# A one-advisory database of our own, against `hex` (in Cargo.lock at 0.4.x):
# with `patched` above that version the crate is vulnerable, below it is not.
# A plain folder, like the snapshot CI scans: cargo-audit reads it with
# --no-fetch without any git history.
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
}

# Runs scripts/audit.sh with the given database and ignore file; its output
# goes to $STACK_DIR/audit.log. Prints nothing; returns the script's status.
audit_with() { # db, ignore-file
  AUDIT_IGNORE_FILE="$2" ./scripts/audit.sh "$1" >"$STACK_DIR/audit.log" 2>&1
}

expect_audit() { # want: pass|fail, what, db, ignore-file
  local status=0
  audit_with "$3" "$4" || status=$?
  if { [ "$1" = pass ] && [ "$status" -ne 0 ]; } || { [ "$1" = fail ] && [ "$status" -ne 1 ]; }; then
    cat "$STACK_DIR/audit.log"; echo "FAIL: the scan should $1 $2 (exit status $status)"; return 1
  fi
}

# The scan of this repository, then the proof that the scan can fail.
AUDIT_RESULT="not run"
check_advisories() {
  local status=0
  ./scripts/audit.sh || status=$?
  case "$status" in
    0) AUDIT_RESULT="scanned" ;;
    75) AUDIT_RESULT="SKIPPED" ;;
    *) echo "FAIL: the advisory scan found an advisory or could not run"; return 1 ;;
  esac

  local db="$STACK_DIR/advisory-db" ignores="$STACK_DIR/audit-ignore.toml" none="$STACK_DIR/no-ignores.toml"
  : >"$none"
  synthetic_advisory_db "$db" ">= 99.0.0"
  expect_audit fail "a crate with a known advisory" "$db" "$none"
  grep -q "RUSTSEC-2099-0001" "$STACK_DIR/audit.log" || { cat "$STACK_DIR/audit.log"; echo "FAIL: the advisory id is not in the report"; return 1; }
  printf '[[ignore]]\nid = "RUSTSEC-2099-0001"\nreason = "synthetic, for the test"\n' >"$ignores"
  expect_audit pass "an advisory the ignore file lists with a reason" "$db" "$ignores"
  printf '[[ignore]]\nid = "RUSTSEC-2099-0001"\n' >"$ignores"
  expect_audit fail "an ignore entry that gives no reason" "$db" "$ignores"
  synthetic_advisory_db "$db" ">= 0.1.0"
  expect_audit pass "a patched crate" "$db" "$none"
  expect_audit fail "a database path that does not exist" "$STACK_DIR/no-such-db" "$none"
  echo "advisory scan: fails on a known vulnerable crate, on an ignore without a reason and on a missing database; passes a patched crate and a reviewed ignore"
}

# Runs one numbered step and records how long it took.
STEP_TIMES=()
step() { # title, command...
  local title="$1" started=$SECONDS
  shift
  log "$title"
  "$@"
  STEP_TIMES+=("$(printf '%6ss  %s' $((SECONDS - started)) "$title")")
  log "$title: done in $((SECONDS - started)) s"
}

run_template_checks() {
  python3 scripts/check_template.py
  python3 -m unittest discover -s tests/template 2>&1 | grep -v "unpublished metrics"
}

run_runtime_checks() {
  check_events_through_runtime
  check_openapi_with_schemathesis
}

SUITE_STARTED=$SECONDS
step "stand-ins: install and start" start_stack
if [ $# -gt 0 ]; then
  step "cargo test $*" cargo test "$@"
  exit 0
fi

step "1/5 cargo test --all-targets" cargo test --all-targets
step "Python tools (requirements-dev.txt)" ensure_python_tools
step "2/5 template.yaml, offline" run_template_checks
step "3/5 events/ through the Lambda runtime API, then schemathesis" run_runtime_checks
step "4/5 release build for arm64" check_arm64_build
step "4/5 sam validate --lint, sam build (offline, reusing the arm64 build)" check_sam_build
step "5/5 dependency advisories" check_advisories

printf '\nTime per step:\n' >&2
printf '%s\n' "${STEP_TIMES[@]}" >&2
printf '%6ss  total\n\n' $((SECONDS - SUITE_STARTED)) >&2
if [ "$AUDIT_RESULT" = SKIPPED ]; then
  log "all checks passed, but the advisory scan was SKIPPED: no advisory database (pass one with ADVISORY_DB=DIR)"
else
  log "all checks passed (advisory scan: $AUDIT_RESULT)"
fi
