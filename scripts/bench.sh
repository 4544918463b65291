#!/usr/bin/env bash
# The benchmark (examples/bench): cold start beside a bare lambda_http binary
# (examples/floor.rs), first and warm latency, AWS calls, rounds and request
# units for every path, the cost of a million requests, CPU per request, peak
# RSS and zip size, on the release bootstrap against the local stand-ins it
# starts here; one process at concurrency 1, 4 and 8; and cold starts over
# TLS beside plain HTTP, with and without aws-lc's jitter entropy. Writes
# tables to stdout and bench/results.json. Arguments go to the benchmark
# (e.g. --cold 30 --warm 500 --each 60).
set -euo pipefail
source "$(dirname "$0")/local-stack.sh"
cd "$ROOT"
trap stop_stack EXIT
trap 'exit 130' INT TERM

ensure_python_tools
log "building the release bootstrap and the floor for this machine, and the arm64 zip for its size"
cargo build --release --bin bootstrap
# The same code with aws-lc's CPU-jitter entropy source, which
# .cargo/config.toml turns off: in a build folder of its own (the setting
# changes aws-lc-sys, so sharing one would rebuild both each run; the first
# time is a full release build).
log "building the bootstrap with jitter entropy, for comparison"
AWS_LC_SYS_NO_JITTER_ENTROPY=0 cargo build --release --bin bootstrap --target-dir "$TARGET_DIR/jitter-entropy"
# Built apart: an example brings the dev-dependencies, whose features must
# not reach the bootstrap measured here.
cargo build --release --example floor
rustup target add aarch64-unknown-linux-gnu >/dev/null
cargo lambda build --release --arm64 --output-format zip
start_stack
log "running the benchmark"
# The binary and zip from the build folder in use (CARGO_TARGET_DIR honoured);
# options given to this script come later and win.
cargo run --quiet --profile harness --example bench -- \
  --bootstrap "$TARGET_DIR/release/bootstrap" --floor "$TARGET_DIR/release/examples/floor" \
  --jitter-bootstrap "$TARGET_DIR/jitter-entropy/release/bootstrap" \
  --zip "$TARGET_DIR/lambda/bootstrap/bootstrap.zip" "$@"
