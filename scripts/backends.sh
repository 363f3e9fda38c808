#!/usr/bin/env bash
# Apache Kafka and Jaeger v2 on this machine, no Docker, for running the
# services by hand: the same versions and settings as docker-compose.yml
# (Kafka KRaft on 127.0.0.1:9092 with the two topics; Jaeger with
# deploy/jaeger/config.yaml: OTLP 4317/4318, query API 16686, sampling 5778,
# health 13133). Installs both the first time, like scripts/test.sh.
# Stays in the foreground; Ctrl-C stops both. Data and logs: target/backends/.
# Usage: scripts/backends.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_kafka || exit 1
ensure_jaeger || exit 1
dir="$PWD/target/backends"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT INT TERM

say "starting Apache Kafka $KAFKA_VERSION on 127.0.0.1:9092 (log: $dir/kafka.log)"
start_kafka "$dir" 9092 9093 || exit 1
pids+=("$KAFKA_PID")

say "starting Jaeger $JAEGER_VERSION (query API http://127.0.0.1:16686, log: $dir/jaeger.log)"
JAEGER_SAMPLING_STRATEGIES_FILE="$PWD/deploy/jaeger/sampling-strategies.json" \
  "$JAEGER_BIN" --config="$PWD/deploy/jaeger/config.yaml" >"$dir/jaeger.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -fsS http://127.0.0.1:13133/status >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS http://127.0.0.1:13133/status >/dev/null || { tail -20 "$dir/jaeger.log" >&2; echo "Jaeger did not become healthy" >&2; exit 1; }
say "both up; the services create the topics on first start. Ctrl-C stops them."
wait -n "${pids[@]}"
