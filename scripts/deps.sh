# shellcheck shell=bash
# Local PostgreSQL and Redis as plain processes, for `make run` and `make test`.
# Sourced by scripts/run.sh and scripts/test.sh; never touches servers on the
# standard ports: every server here gets a port that was free when it started.

PG_BIN_DIR=${PG_BIN_DIR:-/usr/lib/postgresql/15/bin}
export PG_BIN_DIR

log() { printf '==> %s\n' "$*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# port_is_free PORT: true when nothing listens on 127.0.0.1:PORT.
port_is_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# ensure_redis: installs Debian's redis-server when it is missing (as root), or
# says exactly what to run.
ensure_redis() {
  command -v redis-server >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ]; then
    log "installing redis-server from Debian's packages"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    # The package starts a system service on 6379; this project never uses it.
  else
    log "redis-server is missing; install it with: sudo apt-get install -y redis-server"
    exit 1
  fi
}

# ensure_haproxy: installs Debian's haproxy when it is missing (as root), or says exactly
# what to run; sets HAPROXY_BIN. Only `REPLICAS=N make run` with N > 1 needs it.
ensure_haproxy() {
  HAPROXY_BIN=$(command -v haproxy || true)
  [ -z "$HAPROXY_BIN" ] && [ -x /usr/sbin/haproxy ] && HAPROXY_BIN=/usr/sbin/haproxy
  [ -n "$HAPROXY_BIN" ] && return 0
  if [ "$(id -u)" = 0 ]; then
    log "installing haproxy from Debian's packages"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null
    # The package may start a system service; its default configuration listens nowhere,
    # and this project never uses it.
    HAPROXY_BIN=$(command -v haproxy || echo /usr/sbin/haproxy)
  else
    log "haproxy is missing; install it with: sudo apt-get install -y haproxy"
    exit 1
  fi
}

ensure_postgres() {
  if [ ! -x "$PG_BIN_DIR/initdb" ]; then
    log "PostgreSQL 15 binaries not found in $PG_BIN_DIR (set PG_BIN_DIR, or: sudo apt-get install -y postgresql-15)"
    exit 1
  fi
}

as_pg_user() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# pg_home BASE: a folder the PostgreSQL user can use: BASE when it can reach it,
# else one under /tmp (a clone under /root, say, is closed to the postgres user).
pg_home() {
  local base=$1
  mkdir -p "$base"
  if [ "$(id -u)" = 0 ]; then
    chown postgres:postgres "$base"
    if ! runuser -u postgres -- test -w "$base"; then
      base=/tmp/learngreek-pg-$(printf '%s' "$base" | md5sum | cut -c1-12)
      mkdir -p "$base" && chown postgres:postgres "$base"
    fi
  fi
  printf '%s' "$base"
}

# start_postgres DIR PORT: initdb (once) and start a cluster with trust auth.
start_postgres() {
  local dir port=$2
  ensure_postgres
  dir=$(pg_home "$1")
  PG_DIR=$dir
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_pg_user "$PG_BIN_DIR/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
  fi
  as_pg_user "$PG_BIN_DIR/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -o \
    "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir -c max_connections=400 ${PG_EXTRA_OPTS:-}" \
    start >/dev/null
  log "PostgreSQL on 127.0.0.1:$port (data in $dir/data)"
}

stop_postgres() {
  [ -n "${PG_DIR:-}" ] && [ -f "$PG_DIR/data/postmaster.pid" ] &&
    as_pg_user "$PG_BIN_DIR/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1
  return 0
}

# create_database PORT NAME: creates NAME unless it exists.
create_database() {
  local port=$1 name=$2
  if ! "$PG_BIN_DIR/psql" -h 127.0.0.1 -p "$port" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$name'" | grep -q 1; then
    "$PG_BIN_DIR/createdb" -h 127.0.0.1 -p "$port" -U postgres "$name"
  fi
}

# drop_test_databases PORT: drops the databases tests made (t_<uuid>, tests/src/lib.rs).
drop_test_databases() {
  local port=$1 name
  for name in $("$PG_BIN_DIR/psql" -h 127.0.0.1 -p "$port" -U postgres -tAc \
    "SELECT datname FROM pg_database WHERE datname LIKE 't\\_%'"); do
    "$PG_BIN_DIR/psql" -h 127.0.0.1 -p "$port" -U postgres -qc "DROP DATABASE \"$name\" WITH (FORCE)" >/dev/null
  done
}

# start_redis DIR PORT [ARGS...]: a redis-server in the background.
start_redis() {
  local dir=$1 port=$2
  shift 2
  ensure_redis
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" "$@" >/dev/null
  for _ in $(seq 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.05
  done
  REDIS_PIDFILES="${REDIS_PIDFILES:-} $dir/redis.pid"
  log "Redis on 127.0.0.1:$port"
}

# stop_redis: stops every Redis started here and waits (up to 5 s) until each has
# exited, so its folder can be removed without racing its last writes.
stop_redis() {
  local pidfile pids=() pid
  for pidfile in ${REDIS_PIDFILES:-}; do
    [ -f "$pidfile" ] && pids+=("$(cat "$pidfile")")
  done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for _ in $(seq 100); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.05
  done
  return 0
}

# cluster_port: a free port whose cluster bus port (port + 10000) is free and valid too.
cluster_port() {
  python3 - <<'PY'
import random, socket
def free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
while True:
    port = random.randint(20000, 55000)
    if free(port) and free(port + 10000):
        print(port)
        break
PY
}

# start_redis_cluster DIR: three masters joined into a Redis Cluster on free ports;
# sets REDIS_CLUSTER_URL to their comma-separated seed URLs.
start_redis_cluster() {
  local dir=$1 port nodes=() urls=()
  for i in 1 2 3; do
    port=$(cluster_port)
    start_redis "$dir/node$i" "$port" --cluster-enabled yes \
      --cluster-config-file "$dir/node$i/nodes.conf" --cluster-node-timeout 2000 2>/dev/null
    nodes+=("127.0.0.1:$port")
    urls+=("redis://127.0.0.1:$port")
  done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
  for _ in $(seq 100); do
    redis-cli -p "${nodes[0]##*:}" cluster info 2>/dev/null | grep -q 'cluster_state:ok' && break
    sleep 0.1
  done
  REDIS_CLUSTER_URL=$(IFS=,; echo "${urls[*]}")
  log "Redis Cluster of three masters: $REDIS_CLUSTER_URL"
}
