#!/usr/bin/env bash
# Runs the whole test suite against real local stand-ins (DynamoDB Local and
# aws-ses-v2-local), which it installs, starts and stops itself.
# Arguments replace the default `--all-targets` (e.g. `--test faults`).
set -euo pipefail
source "$(dirname "$0")/local-stack.sh"
trap stop_stack EXIT
trap 'exit 130' INT TERM

start_stack
export DYNAMODB_PID SES_PID
log "cargo test"
cd "$ROOT"
[ $# -gt 0 ] || set -- --all-targets
cargo test "$@"
