#!/usr/bin/env bash
# What tracing costs this stack: builds in release mode, then `loadgen bench`
# starts the services (with an embedded Kafka-protocol cluster unless
# KAFKA_BROKERS is set, and an OTLP receiver) once per telemetry mode, drives
# the same load through the gateway, then counts user- and order-service's
# instructions per request under callgrind in each mode, and writes
# BENCHMARKS.md.
# Usage: scripts/bench.sh [--apache-kafka] [--requests N] [--concurrency C] [--rounds R]
#                         [--instruction-requests N (0: no callgrind)] [--out FILE]
# --apache-kafka: the services use a single-node Apache Kafka (the installed
# one, as the process-level tests run it) started here on free loopback
# ports, instead of librdkafka's mock cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
source scripts/lib.sh

ensure_postgres
extra=()
if ! command -v valgrind >/dev/null && ! apt_install valgrind; then
  say "valgrind is not installed and cannot be here: the report leaves out instructions per request"
  extra=(--instruction-requests 0)
fi
args=()
apache_kafka=false
for arg in "$@"; do
  if [ "$arg" = --apache-kafka ]; then apache_kafka=true; else args+=("$arg"); fi
done
say "building in release mode (first time: several minutes)"
cargo build --release --workspace --bins
loadgen="${CARGO_TARGET_DIR:-target}/release/loadgen"
if ! $apache_kafka; then
  exec "$loadgen" bench "${extra[@]}" "${args[@]}"
fi

ensure_kafka || exit 1
kafka_dir=$(mktemp -d)
read -r port controller < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1", 0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
trap 'kill "${KAFKA_PID:-}" 2>/dev/null || true; wait "${KAFKA_PID:-}" 2>/dev/null || true; rm -rf "$kafka_dir"' EXIT
start_kafka "$kafka_dir" "$port" "$controller" || exit 1
say "Apache Kafka $KAFKA_VERSION on 127.0.0.1:$port"
KAFKA_BROKERS="127.0.0.1:$port" "$loadgen" bench "${extra[@]}" "${args[@]}"
