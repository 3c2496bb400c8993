# Operator and developer commands. See README.md.
.PHONY: run test lint fmt build bench up down

## run: the whole stack as local processes (PostgreSQL, Redis, three services); Ctrl-C stops it
run:
	scripts/run.sh

## test: every test of the workspace against a PostgreSQL and a Redis started for the run
test:
	scripts/test.sh

## lint: formatting and clippy, warnings are errors
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

build:
	cargo build --workspace --bins

## bench: the benchmark report (bench/REPORT.md)
bench:
	@if [ -x scripts/bench.sh ]; then scripts/bench.sh; else echo "make bench is not built yet (issue 7)"; exit 1; fi

## up / down: the stack in Docker Compose (needs a Docker engine)
up:
	@# The dev signing key compose mounts as a secret; readable by the containers' uid 10001.
	@mkdir -p deploy/dev-secrets
	@test -f deploy/dev-secrets/jwt-ed25519.pem || openssl genpkey -algorithm ed25519 -out deploy/dev-secrets/jwt-ed25519.pem
	@chmod 0644 deploy/dev-secrets/jwt-ed25519.pem
	docker compose up --build -d

down:
	docker compose down
