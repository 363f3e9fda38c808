#!/usr/bin/env bash
# What tracing costs this stack: builds in release mode, then `loadgen bench`
# starts the services (with an embedded Kafka-protocol cluster unless
# KAFKA_BROKERS is set, and an OTLP receiver) once per telemetry mode, drives
# the same load through the gateway, and writes BENCHMARKS.md.
# Usage: scripts/bench.sh [--requests N] [--concurrency C] [--rounds R] [--out FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
source scripts/lib.sh

ensure_postgres
say "building in release mode (first time: several minutes)"
cargo build --release --workspace --bins
exec "${CARGO_TARGET_DIR:-target}/release/loadgen" bench "$@"
