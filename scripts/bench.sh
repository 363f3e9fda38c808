#!/usr/bin/env bash
# What tracing costs this stack: builds in release mode, then `loadgen bench`
# starts the services (with an embedded Kafka-protocol cluster unless
# KAFKA_BROKERS is set, and an OTLP receiver) once per telemetry mode, drives
# the same load through the gateway, then counts user- and order-service's
# instructions per request under callgrind in each mode, and writes
# BENCHMARKS.md.
# Usage: scripts/bench.sh [--requests N] [--concurrency C] [--rounds R]
#                         [--instruction-requests N (0: no callgrind)] [--out FILE]
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
say "building in release mode (first time: several minutes)"
cargo build --release --workspace --bins
exec "${CARGO_TARGET_DIR:-target}/release/loadgen" bench "${extra[@]}" "$@"
