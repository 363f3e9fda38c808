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
mkdir -p "$dir/kafka-data"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT INT TERM

cat >"$dir/server.properties" <<PROPS
# docker-compose.yml's kafka service, on loopback.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:9093
listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093
advertised.listeners=PLAINTEXT://127.0.0.1:9092
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.dirs=$dir/kafka-data
PROPS
kafka() { java -Xmx512m -Dlog4j.configuration="file:$dir/log4j.properties" -cp "$KAFKA_LIBS/*" "$@"; }
printf 'log4j.rootLogger=WARN, stdout\nlog4j.appender.stdout=org.apache.log4j.ConsoleAppender\nlog4j.appender.stdout.layout=org.apache.log4j.PatternLayout\nlog4j.appender.stdout.layout.ConversionPattern=[%%d] %%p %%m (%%c)%%n\nlog4j.logger.kafka.server.KafkaRaftServer=INFO\n' >"$dir/log4j.properties"
if [ ! -f "$dir/kafka-data/meta.properties" ]; then
  kafka kafka.tools.StorageTool format -t MkU3OEVBNTcwNTJENDM2Qk -c "$dir/server.properties" >/dev/null
fi
say "starting Apache Kafka $KAFKA_VERSION on 127.0.0.1:9092 (log: $dir/kafka.log)"
kafka kafka.Kafka "$dir/server.properties" >"$dir/kafka.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do grep -q "Kafka Server started" "$dir/kafka.log" && break; sleep 0.2; done
grep -q "Kafka Server started" "$dir/kafka.log" || { tail -20 "$dir/kafka.log" >&2; echo "Kafka did not start" >&2; exit 1; }

say "starting Jaeger $JAEGER_VERSION (query API http://127.0.0.1:16686, log: $dir/jaeger.log)"
JAEGER_SAMPLING_STRATEGIES_FILE="$PWD/deploy/jaeger/sampling-strategies.json" \
  "$JAEGER_BIN" --config="$PWD/deploy/jaeger/config.yaml" >"$dir/jaeger.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -fsS http://127.0.0.1:13133/status >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS http://127.0.0.1:13133/status >/dev/null || { tail -20 "$dir/jaeger.log" >&2; echo "Jaeger did not become healthy" >&2; exit 1; }
say "both up; the services create the topics on first start. Ctrl-C stops them."
wait -n "${pids[@]}"
