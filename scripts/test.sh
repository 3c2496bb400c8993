#!/usr/bin/env bash
# `make test`: starts a PostgreSQL and a Redis of its own on free ports, runs every
# test of the workspace against them, and stops them again.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

work=$(mktemp -d /tmp/learngreek-test.XXXXXX)
chmod 755 "$work"
cleanup() { stop_redis; stop_postgres; rm -rf "$work"; }
trap cleanup EXIT

pg_port=$(free_port)
redis_port=$(free_port)
start_postgres "$work/pg" "$pg_port"
start_redis "$work/redis" "$redis_port"

export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
export TEST_REDIS_URL="redis://127.0.0.1:$redis_port"
export REDIS_SERVER_BIN
REDIS_SERVER_BIN=$(command -v redis-server)

# With no -p/--package argument, the whole workspace.
scope=(--workspace)
for arg in "$@"; do
  case $arg in -p | -p* | --package | --package=*) scope=() ;; esac
done
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run "${scope[@]}" --no-fail-fast "$@"
else
  cargo test "${scope[@]}" --no-fail-fast "$@"
fi
