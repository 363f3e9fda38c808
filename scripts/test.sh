#!/usr/bin/env bash
# The whole test suite, from a fresh machine: makes sure Postgres answers,
# installs and starts a Kafka-protocol broker (tansu), then runs every test.
# Usage: scripts/test.sh [extra cargo-nextest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }
PG_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
TANSU_VERSION=0.6.0
BROKER_PORT="${TEST_BROKER_PORT:-19092}"
export TEST_KAFKA_BROKERS="127.0.0.1:${BROKER_PORT}"
export PATH="$HOME/.cargo/bin:$PATH"

pg_answers() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }

# 1. Postgres: use the one that answers; else start an installed one; else install it.
if pg_answers; then
  say "Postgres answers on 127.0.0.1:5432"
else
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    say "installing PostgreSQL from Debian packages"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n1)
  say "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  # Trust auth on loopback for the tests' postgres user.
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  if ! grep -q "^host all all 127.0.0.1/32 trust" "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  fi
  for _ in $(seq 1 30); do pg_answers && break; sleep 1; done
  pg_answers || { echo "Postgres did not start" >&2; exit 1; }
fi
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

# 4. Everything.
say "running the test suite"
cargo nextest run --workspace --no-fail-fast "$@"
