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
cat > "$kafka_dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
log.dirs=$kafka_dir/data
PROPS
kafka_java() { java -Xms256m -Xmx1g -cp "$KAFKA_LIBS/*" "$@"; }
kafka_java kafka.tools.StorageTool format -t MkU3OEVBNTcwNTJENDM2Qk -c "$kafka_dir/server.properties" >"$kafka_dir/format.log" 2>&1 \
  || { cat "$kafka_dir/format.log" >&2; exit 1; }
kafka_java kafka.Kafka "$kafka_dir/server.properties" >"$kafka_dir/kafka.log" 2>&1 &
kafka_pid=$!
trap 'kill $kafka_pid 2>/dev/null; wait $kafka_pid 2>/dev/null; rm -rf "$kafka_dir"' EXIT
broker_answers() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }
for _ in $(seq 1 90); do
  broker_answers && break
  kill -0 $kafka_pid 2>/dev/null || { tail -20 "$kafka_dir/kafka.log" >&2; exit 1; }
  sleep 1
done
broker_answers || { echo "Kafka did not listen on 127.0.0.1:$port within 90 s" >&2; exit 1; }
say "Apache Kafka $KAFKA_VERSION on 127.0.0.1:$port"
KAFKA_BROKERS="127.0.0.1:$port" "$loadgen" bench "${extra[@]}" "${args[@]}"
