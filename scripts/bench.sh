#!/usr/bin/env bash
# The benchmark (examples/bench): cold start, warm latency per path, AWS calls
# per invocation, CPU per request, peak RSS and zip size, on the release
# bootstrap against the local stand-ins it starts here. Writes a table to
# stdout and bench/results.json. Arguments go to the benchmark
# (e.g. --cold 30 --warm 500).
set -euo pipefail
source "$(dirname "$0")/local-stack.sh"
cd "$ROOT"
trap stop_stack EXIT
trap 'exit 130' INT TERM

ensure_python_tools
log "building the release bootstrap for this machine, and the arm64 zip for its size"
cargo build --release --bin bootstrap
rustup target add aarch64-unknown-linux-gnu >/dev/null
cargo lambda build --release --arm64 --output-format zip
start_stack
log "running the benchmark"
# The binary and zip from the build folder in use (CARGO_TARGET_DIR honoured);
# options given to this script come later and win.
cargo run --quiet --profile harness --example bench -- \
  --bootstrap "$TARGET_DIR/release/bootstrap" --zip "$TARGET_DIR/lambda/bootstrap/bootstrap.zip" "$@"
