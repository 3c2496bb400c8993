#!/usr/bin/env bash
# `make run`: the whole stack on this machine as plain processes, with working
# defaults. PostgreSQL and Redis run under .local/run on ports of their own (never
# the standard ones); the services run on their default ports.
#
# `REPLICAS=N make run` (N from 1 to 9, default 1) runs N of each service and N
# gateways. Every gRPC client then balances over all replicas (comma-separated
# service URLs), and haproxy on :8000 spreads HTTP over the gateways. With one
# replica the gateway itself answers on :8000, as it always did. Internal gRPC and
# metrics ports bind 127.0.0.1. Every process's addresses are printed and written to
# .local/run/stack.json. Ctrl-C (or SIGTERM) stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

replicas=${REPLICAS:-1}
if ! [[ $replicas =~ ^[1-9]$ ]]; then
  log "REPLICAS must be a whole number from 1 to 9, not '$replicas'"
  exit 64
fi

work=$PWD/.local/run
mkdir -p "$work"
stack_file=$work/stack.json
rm -f "$stack_file"
pids=()
cleanup() {
  trap - EXIT INT TERM
  log "stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -f "$stack_file"
  stop_redis
  stop_postgres
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pick_port() { if port_is_free "$1"; then echo "$1"; else free_port; fi; }
pg_port=$(pick_port "${RUN_PG_PORT:-55432}")
redis_port=$(pick_port "${RUN_REDIS_PORT:-56379}")
# Checked before anything starts, so a missing haproxy costs no wait.
[ "$replicas" = 1 ] || ensure_haproxy

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

start() { # start NAME REPLICA ENV... : runs a service in the background, logging to .local/run/NAME[-REPLICA].log
  local name=$1 log=$1
  [ "$replicas" = 1 ] || log=$1-$2
  shift 2
  env "$@" "$bin/$name" >"$work/$log.log" 2>&1 &
  pids+=($!)
}
wait_ready() { # wait_ready NAME PORT
  for _ in $(seq 300); do
    "$bin/$1" healthcheck --addr "127.0.0.1:$2" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  log "$1 on port $2 did not become ready; see $work/$1*.log"
  exit 1
}
http_ok() { # http_ok PORT PATH : true when a GET answers 200
  python3 -c 'import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=2).status == 200 else 1)
except Exception:
    sys.exit(1)' "http://127.0.0.1:$1$2"
}

# Replica i of each process has its ports shifted by 100 * (i - 1): session-service
# 50051, 50151, ...; deck-service 50052, 50152, ...; the gateways' gRPC health 50050,
# 50150, ... Metrics listen on the gRPC port + 1000 (the services' default).
port_of() { echo $(($1 + 100 * ($2 - 1))); } # port_of BASE REPLICA
entries=()
record() { # record NAME REPLICA GRPC_PORT [HTTP_ADDR] : one entry of stack.json
  local entry="{\"name\": \"$1\", \"replica\": $2, \"grpc\": \"127.0.0.1:$3\", \"metrics\": \"127.0.0.1:$(($3 + 1000))\""
  [ -z "${4:-}" ] || entry+=", \"http\": \"$4\""
  entries+=("$entry}")
}
url_list() { # url_list BASE : every replica's URL, comma-separated
  local urls=() i
  for i in $(seq "$replicas"); do urls+=("http://127.0.0.1:$(port_of "$1" "$i")"); done
  (IFS=,; echo "${urls[*]}")
}
session_url=$(url_list 50051)
deck_url=$(url_list 50052)

# Replicas of one service start together: each runs the migrations (advisory-locked,
# so only one applies them) before it serves.
for i in $(seq "$replicas"); do
  port=$(port_of 50051 "$i")
  start session-service "$i" GRPC_ADDR="127.0.0.1:$port" \
    DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/learngreek_sessions" \
    SESSION_REDIS_URL="$redis_url" JWT_PRIVATE_KEY_FILE="$key"
  record session-service "$i" "$port"
done
for i in $(seq "$replicas"); do wait_ready session-service "$(port_of 50051 "$i")"; done

if "$bin/deck-service" --help | grep -q '^  seed'; then
  DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/learngreek_decks" CACHE_REDIS_URL="$redis_url" \
    "$bin/deck-service" seed
fi
for i in $(seq "$replicas"); do
  port=$(port_of 50052 "$i")
  start deck-service "$i" GRPC_ADDR="127.0.0.1:$port" \
    DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/learngreek_decks" \
    CACHE_REDIS_URL="$redis_url" SESSION_REDIS_URL="$redis_url" SESSION_SERVICE_URL="$session_url"
  record deck-service "$i" "$port"
done
for i in $(seq "$replicas"); do wait_ready deck-service "$(port_of 50052 "$i")"; done

for i in $(seq "$replicas"); do
  port=$(port_of 50050 "$i")
  if [ "$replicas" = 1 ]; then
    http_addr=0.0.0.0:8000
    proxy=()
  else
    # Behind haproxy, whose X-Forwarded-For names the real client (rate limits, logs).
    http_addr=127.0.0.1:$((8000 + i))
    proxy=(TRUSTED_PROXIES=127.0.0.1)
  fi
  start gateway "$i" HTTP_ADDR="$http_addr" GRPC_ADDR="127.0.0.1:$port" \
    SESSION_SERVICE_URL="$session_url" DECK_SERVICE_URL="$deck_url" \
    RATE_LIMIT_REDIS_URL="$redis_url" SESSION_REDIS_URL="$redis_url" "${proxy[@]}"
  record gateway "$i" "$port" "$http_addr"
done
for i in $(seq "$replicas"); do wait_ready gateway "$(port_of 50050 "$i")"; done

if [ "$replicas" -gt 1 ]; then
  cfg=$work/haproxy.cfg
  {
    cat <<EOF
# Written by scripts/run.sh for REPLICAS=$replicas at each start; edits are lost.
global
  maxconn 4096
defaults
  mode http
  option forwardfor
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  timeout http-request 10s
frontend api
  bind 0.0.0.0:8000
  default_backend gateways
backend gateways
  balance roundrobin
  # A gateway leaves the rotation while it is not ready (a service it needs is down).
  option httpchk GET /health/ready
  http-check expect status 200
EOF
    for i in $(seq "$replicas"); do
      echo "  server gateway-$i 127.0.0.1:$((8000 + i)) check inter 1s fall 2 rise 1"
    done
  } >"$cfg"
  "$HAPROXY_BIN" -c -q -f "$cfg"
  "$HAPROXY_BIN" -db -f "$cfg" >"$work/haproxy.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    http_ok 8000 /health/ready && break
    sleep 0.2
  done
  http_ok 8000 /health/ready || {
    log "haproxy on :8000 does not answer; see $work/haproxy.log"
    exit 1
  }
fi

{
  echo "["
  last=$((${#entries[@]} - 1))
  for index in "${!entries[@]}"; do
    if [ "$index" = "$last" ]; then echo "  ${entries[$index]}"; else echo "  ${entries[$index]},"; fi
  done
  echo "]"
} >"$stack_file.tmp"
mv "$stack_file.tmp" "$stack_file"

if [ "$replicas" = 1 ]; then
  cat <<EOF

  Learn Greek Easy is running:
    HTTP API (gateway)     http://127.0.0.1:8000/api/v1   (health: /health, OpenAPI: /openapi.json)
    gateway health (gRPC)  127.0.0.1:50050
    session-service (gRPC) 127.0.0.1:50051
    deck-service (gRPC)    127.0.0.1:50052
EOF
else
  cat <<EOF

  Learn Greek Easy is running, $replicas replicas of each process:
    HTTP API (haproxy)     http://127.0.0.1:8000/api/v1   (health: /health, OpenAPI: /openapi.json)
EOF
  for i in $(seq "$replicas"); do
    printf '    gateway %s              http://127.0.0.1:%s, health (gRPC) 127.0.0.1:%s\n' \
      "$i" $((8000 + i)) "$(port_of 50050 "$i")"
  done
  for i in $(seq "$replicas"); do
    printf '    session-service %s      gRPC 127.0.0.1:%s\n' "$i" "$(port_of 50051 "$i")"
  done
  for i in $(seq "$replicas"); do
    printf '    deck-service %s         gRPC 127.0.0.1:%s\n' "$i" "$(port_of 50052 "$i")"
  done
fi
cat <<EOF
    metrics                each process's gRPC port + 1000
    PostgreSQL             postgres://postgres@127.0.0.1:$pg_port  (databases learngreek_sessions, learngreek_decks)
    Redis                  $redis_url
  Logs: $work/*.log    Addresses: $stack_file
  Press Ctrl-C to stop everything.

EOF
wait -n "${pids[@]}" || true
log "a process exited; see $work/*.log"
