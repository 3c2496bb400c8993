#!/usr/bin/env bash
# `make bench`: the benchmark report, bench/REPORT.md (docs/benchmarks.md explains it).
#
# Builds the release binaries, starts a fresh PostgreSQL, three Redis servers (the
# sessions, cache and rate-limit roles) and the three services on free ports, loads
# the fixed data set through the HTTP API (bench/load.py), then drives the gateway
# with wrk at 32 connections for BENCH_DURATION seconds per scenario, the deck
# service directly over gRPC (bench/grpc-load) and Redis with redis-benchmark.
# GET /health/live runs first and last: the report states every scenario as a ratio
# to it. Around every run it reads each process's CPU time from /proc, and its
# memory halfway. Then it runs each scenario that missed a goal once more with
# `perf record` on its busiest processes, for the report's profiles.
#
# Environment:
#   BENCH_DURATION  seconds per scenario (10)
#   BENCH_USERS     users registered with study initialised (64; at least 32)
#   BENCH_PROFILE   release (default) or debug, for quick work on the plumbing
#   BENCH_RUST_LOG  the services' RUST_LOG (warn: no per-request log lines)
#   BENCH_REPORT    where the report goes (bench/REPORT.md)
#   BENCH_NO_BUILD  set: skip the build and use the binaries already in target/<profile>
#   BENCH_PERF      misses (default): profile the scenarios that missed a goal; goals: every
#                   scenario with a goal; off: none
#   BENCH_PERF_SECONDS  seconds perf samples each profiled scenario (5)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

duration=${BENCH_DURATION:-10}
users=${BENCH_USERS:-64}
profile=${BENCH_PROFILE:-release}
report=${BENCH_REPORT:-$PWD/bench/REPORT.md}
perf_mode=${BENCH_PERF:-misses}
perf_seconds=${BENCH_PERF_SECONDS:-5}
# 499 Hz: enough samples in a few seconds, and the DWARF stack copies (16 KB a sample) stay
# tens of MB per process.
perf_freq=499
perf_stack=16384
connections=32
[[ $duration =~ ^[1-9][0-9]*$ ]] || { log "BENCH_DURATION must be a whole number of seconds, got '$duration'"; exit 64; }
if ! [[ $users =~ ^[0-9]+$ ]] || ((users < 32)); then log "BENCH_USERS must be at least 32, got '$users'"; exit 64; fi
case $profile in release | debug) ;; *) log "BENCH_PROFILE must be release or debug, got '$profile'"; exit 64 ;; esac
case $perf_mode in misses | goals | off) ;; *) log "BENCH_PERF must be misses, goals or off, got '$perf_mode'"; exit 64 ;; esac
[[ $perf_seconds =~ ^[1-9][0-9]*$ ]] || { log "BENCH_PERF_SECONDS must be a whole number of seconds, got '$perf_seconds'"; exit 64; }

# wrk comes from Debian's packages; redis-benchmark comes with redis-server.
if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    log "installing wrk from Debian's packages"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  else
    log "wrk is missing; install it with: sudo apt-get install -y wrk"
    exit 1
  fi
fi
ensure_redis
ensure_postgres
command -v python3 >/dev/null || { log "python3 is needed for the data loader and the report"; exit 1; }
# perf comes from Debian's linux-perf. When it cannot run, the report says why instead of profiling.
perf_note=""
if [ "$perf_mode" != off ] && ! command -v perf >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    log "installing perf from Debian's packages (linux-perf)"
    apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null || true
  fi
  command -v perf >/dev/null 2>&1 || perf_note="perf is missing (Debian: apt-get install linux-perf; or BENCH_PERF=off)"
fi

out=$PWD/bench/out
run=$out/run
rm -rf "$run"
mkdir -p "$run/results" "$run/data" "$run/logs"
# PostgreSQL and Redis data live under /tmp: the postgres user can always reach it.
state=$(mktemp -d /tmp/learngreek-bench.XXXXXX)
chmod 755 "$state"

pids=()
cleanup() {
  trap - EXIT INT TERM
  log "stopping the stack"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  stop_redis
  stop_postgres
  rm -rf "$state"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Can perf attach to a running process here? (kernel.perf_event_paranoid above 1 stops a
# non-root user; a container may forbid perf_event_open altogether.)
if [ "$perf_mode" != off ] && [ -z "$perf_note" ]; then
  sleep 2 &
  if ! perf record -q -N -F "$perf_freq" -o "$state/perf-check.data" -p $! -- sleep 0.3 >"$state/perf-check.txt" 2>&1; then
    perf_note="perf cannot record here ($(grep -m1 -v '^$' "$state/perf-check.txt" | tr -d '"\134' | cut -c1-160); kernel.perf_event_paranoid = $(cat /proc/sys/kernel/perf_event_paranoid)). Run as root or set kernel.perf_event_paranoid to 1 or lower"
  fi
  wait $! 2>/dev/null || true
fi
[ -n "$perf_note" ] && log "no profiles: $perf_note"

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
build=(cargo build --bins)
[ "$profile" = release ] && build+=(--release)
bin=$PWD/target/$profile
if [ -n "${BENCH_NO_BUILD:-}" ]; then
  log "BENCH_NO_BUILD: using the binaries already in $bin"
  for name in session-service deck-service gateway grpc-load; do
    [ -x "$bin/$name" ] || { log "$bin/$name is missing; run: ${build[*]}"; exit 1; }
  done
else
  log "building $profile binaries"
  "${build[@]}"
fi
built_at=$(date -u -r "$bin/gateway" +%Y-%m-%dT%H:%M:%SZ)

# ---------------------------------------------------------------- the stack
pg_port=$(free_port)
start_postgres "$state/pg" "$pg_port"
pg_pid=$(head -1 "$PG_DIR/data/postmaster.pid")
create_database "$pg_port" learngreek_sessions
create_database "$pg_port" learngreek_decks

declare -A redis_port redis_pid
start_role_redis() { # start_role_redis ROLE ARGS...
  local role=$1
  shift
  redis_port[$role]=$(free_port)
  start_redis "$state/redis-$role" "${redis_port[$role]}" "$@"
  redis_pid[$role]=$(cat "$state/redis-$role/redis.pid")
}
# The roles as ARCHITECTURE.md configures them.
start_role_redis sessions --appendonly yes --appendfsync everysec --maxmemory-policy noeviction
start_role_redis cache --maxmemory 128mb --maxmemory-policy allkeys-lru
start_role_redis ratelimit

key=$state/jwt-ed25519.pem
"$bin/session-service" generate-key >"$key"
chmod 600 "$key"

session_grpc=$(free_port)
deck_grpc=$(free_port)
gateway_http=$(free_port)
gateway_grpc=$(free_port)
sessions_db="postgres://postgres@127.0.0.1:$pg_port/learngreek_sessions"
decks_db="postgres://postgres@127.0.0.1:$pg_port/learngreek_decks"
export LOG_FORMAT=json RUST_LOG=${BENCH_RUST_LOG:-warn}

declare -A pid_of
start() { # start NAME ENV... : a service in the background, logging to the run folder
  local name=$1
  shift
  env METRICS_ADDR="127.0.0.1:$(free_port)" "$@" "$bin/$name" >"$run/logs/$name.log" 2>&1 &
  pid_of[$name]=$!
  pids+=($!)
}
wait_ready() { # wait_ready NAME PORT
  for _ in $(seq 300); do
    "$bin/$1" healthcheck --addr "127.0.0.1:$2" >/dev/null 2>&1 && return 0
    kill -0 "${pid_of[$1]}" 2>/dev/null || break
    sleep 0.2
  done
  log "$1 did not become ready; its log:"
  tail -20 "$run/logs/$1.log" >&2
  exit 1
}

start session-service GRPC_ADDR="127.0.0.1:$session_grpc" DATABASE_URL="$sessions_db" \
  SESSION_REDIS_URL="redis://127.0.0.1:${redis_port[sessions]}" JWT_PRIVATE_KEY_FILE="$key"
wait_ready session-service "$session_grpc"
start deck-service GRPC_ADDR="127.0.0.1:$deck_grpc" DATABASE_URL="$decks_db" \
  CACHE_REDIS_URL="redis://127.0.0.1:${redis_port[cache]}" SESSION_SERVICE_URL="http://127.0.0.1:$session_grpc" \
  SESSION_REDIS_URL="redis://127.0.0.1:${redis_port[sessions]}"
wait_ready deck-service "$deck_grpc"
# Rate limits at their maximum, so the runs measure the services, not the limiter
# (which still does its Redis call on every request).
start gateway HTTP_ADDR="127.0.0.1:$gateway_http" GRPC_ADDR="127.0.0.1:$gateway_grpc" \
  SESSION_SERVICE_URL="http://127.0.0.1:$session_grpc" DECK_SERVICE_URL="http://127.0.0.1:$deck_grpc" \
  RATE_LIMIT_REDIS_URL="redis://127.0.0.1:${redis_port[ratelimit]}" \
  SESSION_REDIS_URL="redis://127.0.0.1:${redis_port[sessions]}" \
  RATE_LIMIT_AUTH_PER_MINUTE=1000000 RATE_LIMIT_API_PER_MINUTE=1000000
wait_ready gateway "$gateway_grpc"
base="http://127.0.0.1:$gateway_http"

# ---------------------------------------------------------------- measuring
# Process CPU in clock ticks: utime + stime (+ reaped children's). PostgreSQL is the
# postmaster plus every backend, and backends that exited are in its cutime/cstime.
ticks() { awk '{ print $14 + $15 + $16 + $17 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# shellcheck disable=SC2046 # one pid per word, on purpose
pg_pids() { echo "$pg_pid" $(pgrep -P "$pg_pid" || true); }
processes() { # NAME PID... lines
  echo "gateway ${pid_of[gateway]}"
  echo "session-service ${pid_of[session-service]}"
  echo "deck-service ${pid_of[deck-service]}"
  echo "redis-sessions ${redis_pid[sessions]}"
  echo "redis-cache ${redis_pid[cache]}"
  echo "redis-ratelimit ${redis_pid[ratelimit]}"
  echo "postgres $(pg_pids)"
}
cpu_snapshot() { # "NAME TICKS" per process, plus the machine's busy and total ticks
  local name pids total pid
  while read -r name pids; do
    total=0
    for pid in $pids; do total=$((total + $(ticks "$pid"))); done
    echo "$name $total"
  done < <(processes)
  awk '/^cpu / { busy = $2 + $3 + $4 + $7 + $8 + $9; print "machine_busy " busy; print "machine_total " busy + $5 + $6 }' /proc/stat
}
mem_snapshot() { # "NAME KB": VmRSS; for PostgreSQL the PSS of all its processes (RSS would count shared buffers once per backend)
  local name pids total pid
  while read -r name pids; do
    total=0
    if [ "$name" = postgres ]; then
      for pid in $pids; do
        total=$((total + $(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)))
      done
    else
      total=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pids/status" 2>/dev/null || echo 0)
    fi
    echo "$name $total"
  done < <(processes)
}

export BENCH_WRK_DIR=$PWD/bench/wrk BENCH_DATA=$run/data

log_lines() { # "NAME LINES" per service log: the report reads the warnings each run added
  local name
  for name in gateway session-service deck-service; do echo "$name $(wc -l <"$run/logs/$name.log")"; done
}

# measure NAME COMMAND...: runs COMMAND with CPU snapshots around it, memory halfway,
# and the client's own CPU; results in $run/results/NAME/.
measure() {
  local name=$1 dir=$run/results/$1
  shift
  mkdir -p "$dir"
  (sleep "$(awk -v d="$duration" 'BEGIN { print d / 2 }')" && mem_snapshot >"$dir/mem_load") &
  local sampler=$!
  log_lines >"$dir/log_before"
  cpu_snapshot >"$dir/cpu_before"
  BENCH_RESULT=$dir/result.json /usr/bin/time -f '%U %S' -o "$dir/client_cpu" "$@" >"$dir/output.txt" 2>&1 ||
    log "$name: the load tool failed; see $dir/output.txt"
  cpu_snapshot >"$dir/cpu_after"
  log_lines >"$dir/log_after"
  wait "$sampler" || true
}
# wrk_cmd NAME SECONDS: sets cmd to scenario NAME's wrk command for SECONDS (its result
# goes to $BENCH_RESULT).
wrk_cmd() {
  local script=$1.lua threads=2 path=/
  case $1 in
    health_live | health_live_end) script=health_live.lua path=/health/live ;;
    refresh) threads=32 ;; # one connection per thread: each chains its own session
  esac
  cmd=(wrk -t"$threads" -c"$connections" -d"$2s" --timeout 10s -s "$BENCH_WRK_DIR/$script" "$base$path")
}
scenario() { # scenario NAME
  log "scenario $1: ${duration}s, $connections connections"
  wrk_cmd "$1" "$duration"
  measure "$1" "${cmd[@]}"
}
# start_storm SECONDS DIR: 64 clients logging in, in the background for SECONDS + 2 s
# (from 1 s before to 1 s after the run beside it); sets storm_pid.
start_storm() {
  BENCH_RESULT=$2/login.json wrk -t2 -c64 -d"$(($1 + 2))s" --timeout 10s -s "$BENCH_WRK_DIR/login.lua" "$base/" \
    >"$2/login_output.txt" 2>&1 &
  storm_pid=$!
  sleep 1
}

# ---------------------------------------------------------------- data set
log "loading the data set: 10 decks x 50 cards, $users users"
python3 bench/load.py --base "$base" --out "$run/data" --users "$users" \
  --make-superuser "env DATABASE_URL=$sessions_db SESSION_REDIS_URL=redis://127.0.0.1:${redis_port[sessions]} $bin/session-service make-superuser"
sleep 1
mem_snapshot >"$run/results/mem_idle"
# How busy the machine is with the stack idle: other users' work that every scenario competes with.
machine_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
read -r busy0 total0 < <(machine_busy)
sleep 3
read -r busy1 total1 < <(machine_busy)
idle_busy_pct=$(awk -v b=$((busy1 - busy0)) -v t=$((total1 - total0)) 'BEGIN { printf "%.0f", t ? 100 * b / t : 0 }')
# The busiest other processes then (the stack's own are left out).
stack_pids=" $(processes | cut -d' ' -f2- | tr '\n' ' ') "
top -b -n 2 -d 1 -w 200 | awk '/^top -/ { n++ } n == 2' | sed -n '/PID/,$p' |
  awk -v skip="$stack_pids" 'NR == 1 || index(skip, " " $1 " ") == 0' | head -8 >"$run/results/top_idle.txt" || true
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- scenarios
# The reference first (and again last, so it is taken under the run's conditions at both
# ends), then reads (reviews change the study queues), refresh and login last.
scenario health_live
scenario deck_get
scenario deck_list
scenario cards_list
scenario study_queue
scenario review
scenario refresh
scenario login

# Login storm: 64 clients hammer login while the cached deck read runs as in deck_get.
log "scenario login_storm: 64 login clients alongside the cached deck read"
storm=$run/results/login_storm
mkdir -p "$storm"
start_storm "$duration" "$storm"
wrk_cmd deck_get "$duration"
measure login_storm "${cmd[@]}"
wait "$storm_pid" || log "login_storm: the login load failed; see $storm/login_output.txt"

# The cached deck read straight at deck-service over gRPC (no gateway, no rate limit).
log "scenario grpc_deck_get: ${duration}s, $connections tasks"
first_deck=$(head -1 "$run/data/decks.txt")
grpc_load=("$bin/grpc-load" --url "http://127.0.0.1:$deck_grpc" --deck-id "$first_deck"
  --tokens "$run/data/access.txt" --concurrency "$connections")
"${grpc_load[@]}" --duration 1 >/dev/null
# shellcheck disable=SC2016 # expanded by the inner sh
measure grpc_deck_get sh -c '"$@" >"$BENCH_RESULT"' grpc-load "${grpc_load[@]}" --duration "$duration"

# The ceiling: Redis GET of a 4 KB value, 32 clients, on the cache Redis.
log "scenario redis_get: redis-benchmark GET 4 KB, 32 clients"
redis-cli -p "${redis_port[cache]}" SET key:__rand_int__ "$(head -c 4096 /dev/zero | tr '\0' x)" >/dev/null
redis_requests=$((duration * 40000))
# shellcheck disable=SC2016 # expanded by the inner sh
measure redis_get sh -c 'redis-benchmark -p "$1" -t get -d 4096 -c 32 -n "$2" --csv >"$BENCH_RESULT.csv"' \
  redis-benchmark "${redis_port[cache]}" "$redis_requests"
echo "$redis_requests" >"$run/results/redis_get/requests"

scenario health_live_end
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
cat >"$run/results/meta.json" <<EOF
{"duration_s": $duration, "users": $users, "connections": $connections, "profile": "$profile",
 "rust_log": "$RUST_LOG", "clk_tck": $(getconf CLK_TCK), "cpus": $(nproc),
 "cpu_model": "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)",
 "kernel": "$(uname -r)", "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
 "commit": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo ' + uncommitted changes')",
 "built_at": "$built_at", "no_build": $([ -n "${BENCH_NO_BUILD:-}" ] && echo true || echo false), "load_before": "$load_before", "load_start": "$load_start", "load_after": "$load_after",
 "idle_busy_pct": $idle_busy_pct,
 "perf_mode": "$perf_mode", "perf_seconds": $perf_seconds, "perf_freq": $perf_freq, "perf_stack": $perf_stack,
 "perf_note": "$perf_note",
 "wrk": "$(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)", "redis": "$(redis-server --version | cut -d' ' -f3)"}
EOF

# ---------------------------------------------------------------- profiles
# profile NAME PROCESS...: scenario NAME's load once more, with perf sampling each PROCESS
# (all its pids: PostgreSQL's backends too) for perf_seconds in the middle of it.
profile() {
  local name=$1 dir=$run/results/$1/profile proc pids
  shift
  mkdir -p "$dir"
  log "profile $name: perf on $* for ${perf_seconds}s"
  local refresh_file=refresh.txt
  if [ "$name" = refresh ]; then
    # The measured run used up refresh.txt's sessions (resending them would be replays).
    refresh_file=refresh_profile.txt
    python3 bench/load.py --base "$base" --out "$run/data" --refresh-sessions "$refresh_file"
  fi
  if [ "$name" = login_storm ]; then
    start_storm "$((perf_seconds + 2))" "$dir"
    wrk_cmd deck_get "$((perf_seconds + 2))"
  else
    wrk_cmd "$name" "$((perf_seconds + 2))"
  fi
  BENCH_RESULT=$dir/load.json BENCH_REFRESH_FILE=$refresh_file "${cmd[@]}" >"$dir/load_output.txt" 2>&1 &
  local loader=$! perfs=()
  sleep 1
  for proc; do
    pids=$(processes | awk -v n="$proc" '$1 == n { $1 = ""; print }' | xargs | tr ' ' ,)
    perf record -q -N -F "$perf_freq" --call-graph "dwarf,$perf_stack" -p "$pids" -o "$dir/$proc.data" -- sleep "$perf_seconds" \
      >"$dir/$proc.record.txt" 2>&1 &
    perfs+=($!)
  done
  for pid in "${perfs[@]}"; do wait "$pid" || true; done
  wait "$loader" || log "profile $name: the load failed; see $dir/load_output.txt"
  [ "$name" = login_storm ] && { wait "$storm_pid" || true; }
  # --no-inline: resolving inlined frames runs addr2line per address, minutes instead of a second.
  for proc; do
    perf report -i "$dir/$proc.data" --stdio --no-inline --children --sort dso,sym -g none --percent-limit 0.5 \
      >"$dir/$proc.txt" 2>"$dir/$proc.report-errors.txt" || true
    perf report -i "$dir/$proc.data" --stdio --no-inline --no-children --sort dso -g none \
      >"$dir/$proc.objects.txt" 2>>"$dir/$proc.report-errors.txt" || true
    rm -f "$dir/$proc.data" # DWARF stacks: tens of MB, and the reports above are what counts
  done
}
if [ "$perf_mode" != off ] && [ -z "$perf_note" ]; then
  targets=()
  [ "$perf_mode" = goals ] && targets+=(--all)
  python3 bench/report.py --profile-targets "${targets[@]}" "$run/results" >"$run/results/profiled"
  while read -r name procs; do
    # shellcheck disable=SC2086 # one process name per word, on purpose
    profile "$name" $procs
  done <"$run/results/profiled"
fi

python3 bench/report.py "$run/results" >"$report"
log "report written to $report"
cat "$report"
