#!/usr/bin/env bash
# The whole stack on this machine, no Docker: makes sure Postgres answers,
# builds the workspace, then `tracectl run` starts an embedded Kafka-protocol
# cluster (or uses KAFKA_BROKERS), an OTLP receiver (or uses
# OTEL_EXPORTER_OTLP_ENDPOINT) and the four services, sends the seed's order
# and prints its trace as a waterfall.
# Usage: scripts/run.sh [--keep]   (--keep: stay up for curl until Ctrl-C)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
source scripts/lib.sh

started=$(date +%s)
ensure_postgres
say "building the services and tracectl (first time: several minutes)"
cargo build --workspace --bins
say "built in $(( $(date +%s) - started ))s"
exec target/debug/tracectl run "$@"
