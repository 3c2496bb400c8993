#!/usr/bin/env bash
# `make run`: the whole stack on this machine as plain processes, with working
# defaults. PostgreSQL and Redis run under .local/run on ports of their own (never
# the standard ones); the three services run on their default ports. Ctrl-C stops
# everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

work=$PWD/.local/run
mkdir -p "$work"
pids=()
cleanup() {
  trap - EXIT INT TERM
  log "stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  stop_redis
  stop_postgres
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pick_port() { if port_is_free "$1"; then echo "$1"; else free_port; fi; }
pg_port=$(pick_port "${RUN_PG_PORT:-55432}")
redis_port=$(pick_port "${RUN_REDIS_PORT:-56379}")

start_postgres "$work/pg" "$pg_port"
create_database "$pg_port" learngreek_sessions
create_database "$pg_port" learngreek_decks
# In development one Redis serves the sessions, cache and rate-limit roles.
start_redis "$work/redis" "$redis_port" --appendonly yes --appendfsync everysec

log "building"
cargo build --workspace --bins
bin=$PWD/target/debug

# A development signing key for access and refresh tokens, made once.
key=$work/jwt-ed25519.pem
[ -f "$key" ] || openssl genpkey -algorithm ed25519 -out "$key" 2>/dev/null
chmod 600 "$key"

redis_url="redis://127.0.0.1:$redis_port"
export LOG_FORMAT=${LOG_FORMAT:-pretty} RUST_LOG=${RUST_LOG:-info}

start() { # start NAME ENV... : runs a service in the background, logging to .local/run/NAME.log
  local name=$1
  shift
  env "$@" "$bin/$name" >"$work/$name.log" 2>&1 &
  pids+=($!)
}
wait_ready() { # wait_ready NAME PORT
  for _ in $(seq 300); do
    "$bin/$1" healthcheck --addr "127.0.0.1:$2" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  log "$1 did not become ready; see $work/$1.log"
  exit 1
}

start session-service GRPC_ADDR=0.0.0.0:50051 \
  DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/learngreek_sessions" \
  SESSION_REDIS_URL="$redis_url" JWT_PRIVATE_KEY_FILE="$key"
wait_ready session-service 50051

if "$bin/deck-service" --help | grep -q '^  seed'; then
  DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/learngreek_decks" CACHE_REDIS_URL="$redis_url" \
    "$bin/deck-service" seed
fi
start deck-service GRPC_ADDR=0.0.0.0:50052 \
  DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/learngreek_decks" \
  CACHE_REDIS_URL="$redis_url" SESSION_SERVICE_URL=http://127.0.0.1:50051
wait_ready deck-service 50052

start gateway HTTP_ADDR=0.0.0.0:8000 GRPC_ADDR=0.0.0.0:50050 \
  SESSION_SERVICE_URL=http://127.0.0.1:50051 DECK_SERVICE_URL=http://127.0.0.1:50052 \
  RATE_LIMIT_REDIS_URL="$redis_url"
wait_ready gateway 50050

cat <<EOF2

  Learn Greek Easy is running:
    HTTP API (gateway)     http://127.0.0.1:8000/api/v1   (health: /health, OpenAPI: /openapi.json)
    gateway health (gRPC)  127.0.0.1:50050
    session-service (gRPC) 127.0.0.1:50051
    deck-service (gRPC)    127.0.0.1:50052
    PostgreSQL             postgres://postgres@127.0.0.1:$pg_port  (databases learngreek_sessions, learngreek_decks)
    Redis                  $redis_url
  Logs: $work/*.log    Press Ctrl-C to stop everything.

EOF2
wait -n "${pids[@]}" || true
log "a service exited; see $work/*.log"
