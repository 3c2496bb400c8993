#!/usr/bin/env bash
# `make test`: starts a PostgreSQL and a Redis of its own on free ports, runs every
# test of the workspace against them, and stops them again.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

work=$(mktemp -d /tmp/learngreek-test.XXXXXX)
chmod 755 "$work"
# Keeps the tests' exit status: nothing in the clean-up may change it.
cleanup() {
  local rc=$?
  if [ "$rc" != 0 ] && [ -n "${PG_DIR:-}" ]; then
    # A test PostgreSQL that crashed (out of disk or memory, say) fails many tests with
    # "in recovery mode"; its own log says why.
    log "test PostgreSQL's errors (from $PG_DIR/postgres.log), and the disk it wrote to:"
    grep -E 'PANIC|FATAL|terminated by signal|No space' "$PG_DIR/postgres.log" 2>/dev/null | tail -20 >&2 || true
    df -h "$PG_DIR" >&2 || true
  fi
  stop_redis
  stop_postgres
  rm -rf "$work" 2>/dev/null || true
  exit "$rc"
}
trap cleanup EXIT

pg_port=$(free_port)
redis_port=$(free_port)
# Throw-away data: no fsync, no full-page images, no WAL beyond crash safety, so the
# hundreds of databases the tests create (tests/src/lib.rs) cost little disk and time.
PG_EXTRA_OPTS="-c fsync=off -c full_page_writes=off -c synchronous_commit=off -c wal_level=minimal -c max_wal_senders=0 -c max_wal_size=256MB"
export PG_EXTRA_OPTS
start_postgres "$work/pg" "$pg_port"
start_redis "$work/redis" "$redis_port"

export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
# Tests that skip for a missing tool (outside CI only, tests/src/tools.rs) note it here.
export TEST_SKIP_LOG="$work/skipped.txt"
export TEST_REDIS_URL="redis://127.0.0.1:$redis_port"
export REDIS_SERVER_BIN
REDIS_SERVER_BIN=$(command -v redis-server)

# With no -p/--package argument, the whole workspace.
scope=(--workspace)
for arg in "$@"; do
  case $arg in -p | -p* | --package | --package=*) scope=() ;; esac
done
run_tests() {
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --no-fail-fast "$@"
  else
    cargo test --no-fail-fast "$@"
  fi
}

status=0
run_tests "${scope[@]}" "$@" || status=$?

# The session and cache suites again, with the shared Redis replaced by a local
# three-master Redis Cluster (ARCHITECTURE.md: every role may be a cluster).
# With -p, the cluster pass runs only when CLUSTER_TESTS=1, and then on exactly the tests
# the arguments name (say `CLUSTER_TESTS=1 scripts/test.sh -p deck-service -E 'test(/cache/)'`).
if [ "${SKIP_CLUSTER_TESTS:-0}" != 1 ]; then
  if [ ${#scope[@]} -gt 0 ]; then
    cluster_args=(--workspace -E 'package(session-service) | package(deck-service) | binary_id(gateway::edge) | binary_id(gateway::revocation)' "$@")
  elif [ "${CLUSTER_TESTS:-0}" = 1 ]; then
    cluster_args=("$@")
  else
    cluster_args=()
  fi
  if [ ${#cluster_args[@]} -gt 0 ]; then
    start_redis_cluster "$work/cluster"
    log "the Redis Cluster pass"
    TEST_REDIS_URL=$REDIS_CLUSTER_URL TEST_REDIS_IS_CLUSTER=1 run_tests "${cluster_args[@]}" || status=$?
  fi
fi
if [ -s "$TEST_SKIP_LOG" ]; then
  log "SKIPPED outside CI, as a tool they need is missing (with CI=1 they fail):"
  sed 's/^/    /' "$TEST_SKIP_LOG" >&2
fi
exit $status
