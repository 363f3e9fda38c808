# Shared by scripts/run.sh and scripts/test.sh.

say() { printf '==> %s\n' "$*"; }

pg_answers() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }

# Postgres on 127.0.0.1:5432: use the one that answers; else start an
# installed one; else install it from Debian's packages.
ensure_postgres() {
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
}

# The real backends the tests run against, installed once per machine into a
# cache outside the work tree (a fresh clone reuses them). The versions are
# the ones docker-compose.yml and k8s/ pin; they must stay
# in step (scripts/validate-deploy.sh checks).
KAFKA_VERSION=4.4.0
# Jaeger's trace store in the cassandra profile (tools/cassandra/pom.xml).
CASSANDRA_VERSION=5.0.6
JAEGER_VERSION=2.12.0
# Jaeger tags every release twice; the Go module version of 2.12.0 is v1.75.0.
JAEGER_MODULE_VERSION=v1.75.0
PROMETHEUS_VERSION=3.16.0
# Docker Compose's CLI, for `docker compose config` in scripts/validate-deploy.sh.
COMPOSE_VERSION=5.6.0
# Prometheus 3.x's Go module versions are v0.3MM.P for release 3.MM.P.
PROMETHEUS_MODULE_VERSION=v0.316.0
CACHE_DIR="${TRACING_REFERENCE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tracing-reference}"

apt_install() {
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    say "installing $* from Debian packages"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    return 1
  fi
}

java_major() { java -version 2>&1 | sed -nE '1s/.*version "([0-9]+).*/\1/p'; }

# maven_jars NAME TOOL VERSION: a Java program's jars from Maven Central
# into $CACHE_DIR/TOOL-VERSION/libs, resolved by tools/TOOL/pom.xml (which
# reads -DTOOL.version), once per machine; Java 17 and Maven from Debian's
# packages if missing. Prints the libs directory; returns 1 (with the reason
# on stderr) when it cannot.
maven_jars() {
  local name=$1 tool=$2 version=$3
  local dir="$CACHE_DIR/$tool-$version"
  if ! command -v java >/dev/null || [ "$(java_major)" -lt 17 ] 2>/dev/null; then
    apt_install openjdk-17-jre-headless >&2 || { echo "$name needs Java 17 or later (java not found or too old)" >&2; return 1; }
  fi
  if [ ! -f "$dir/.complete" ]; then
    command -v mvn >/dev/null || apt_install maven >&2 || { echo "$name's jars are resolved with Maven (mvn not found)" >&2; return 1; }
    say "installing $name $version from Maven Central into $dir (first time only)" >&2
    local started=$SECONDS
    rm -rf "$dir.tmp"
    mvn -q -B -Dstyle.color=never -f "tools/$tool/pom.xml" -D"$tool.version=$version" \
      dependency:copy-dependencies -DoutputDirectory="$dir.tmp/libs" >&2 || { echo "resolving $name $version with Maven failed" >&2; return 1; }
    rm -rf "$dir" && mv "$dir.tmp" "$dir" && touch "$dir/.complete"
    say "$name $version installed in $(( SECONDS - started ))s ($(ls "$dir/libs" | wc -l) jars)" >&2
  fi
  printf '%s\n' "$dir/libs"
}

# Apache Kafka's jars. Sets KAFKA_LIBS.
ensure_kafka() { KAFKA_LIBS=$(maven_jars "Apache Kafka" kafka "$KAFKA_VERSION"); }

# Apache Cassandra's jars (Jaeger's scalable store). Sets CASSANDRA_LIBS.
ensure_cassandra() { CASSANDRA_LIBS=$(maven_jars "Apache Cassandra" cassandra "$CASSANDRA_VERSION"); }

# A single-node Apache Kafka in KRaft mode with docker-compose.yml's
# settings, in the background: start_kafka DIR PORT CONTROLLER_PORT. Data,
# configuration and log (DIR/kafka.log) in DIR; storage formatted the first
# time. Waits (at most 90 s) until it says it started; sets KAFKA_PID. Needs
# KAFKA_LIBS (ensure_kafka).
start_kafka() {
  local dir=$1 port=$2 controller=$3
  mkdir -p "$dir/kafka-data"
  cat >"$dir/server.properties" <<PROPS
# docker-compose.yml's kafka service, on loopback.
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
auto.create.topics.enable=false
log.dirs=$dir/kafka-data
PROPS
  printf '%s\n' 'status = error' 'appender.out.type = Console' 'appender.out.name = OUT' \
    'appender.out.layout.type = PatternLayout' 'appender.out.layout.pattern = [%d] %p %m (%c)%n' \
    'rootLogger.level = warn' 'rootLogger.appenderRef.out.ref = OUT' \
    'logger.server.name = kafka.server.KafkaRaftServer' 'logger.server.level = info' >"$dir/log4j2.properties"
  local java=(java -Xmx1g -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$KAFKA_LIBS/*")
  if [ ! -f "$dir/kafka-data/meta.properties" ]; then
    "${java[@]}" kafka.tools.StorageTool format -t MkU3OEVBNTcwNTJENDM2Qk -c "$dir/server.properties" >/dev/null \
      || { echo "formatting Kafka's storage in $dir failed" >&2; return 1; }
  fi
  "${java[@]}" kafka.Kafka "$dir/server.properties" >"$dir/kafka.log" 2>&1 &
  KAFKA_PID=$!
  local _
  for _ in $(seq 1 450); do
    grep -q "Kafka Server started" "$dir/kafka.log" && return 0
    kill -0 "$KAFKA_PID" 2>/dev/null || break
    sleep 0.2
  done
  tail -20 "$dir/kafka.log" >&2
  echo "Kafka did not start on 127.0.0.1:$port (log: $dir/kafka.log)" >&2
  return 1
}

go_at_least() { # go_at_least 1.24.6
  local have
  have=$(go env GOVERSION 2>/dev/null | sed 's/^go//') || return 1
  [ "$(printf '%s\n%s\n' "$1" "$have" | sort -V | head -n1)" = "$1" ]
}

# go_tool NAME VERSION MODULE_VERSION GO_MIN MODULE_DIR PACKAGE BIN [go build args...]:
# builds PACKAGE from the Go module proxy through the tool module in
# MODULE_DIR into BIN, once (the cache outside the work tree keeps it). An
# older Go 1.21+ fetches the toolchain the module's go.mod asks for. Returns
# 1 (with the reason on stderr) when it cannot.
go_tool() {
  local name=$1 version=$2 module_version=$3 go_min=$4 dir=$5 package=$6 bin=$7
  shift 7
  [ -x "$bin" ] && return 0
  command -v go >/dev/null || { echo "$name is built with Go $go_min or later (go not found; https://go.dev/dl)" >&2; return 1; }
  go_at_least 1.21 || { echo "$name needs Go $go_min or later (found $(go env GOVERSION))" >&2; return 1; }
  say "building $name $version ($module_version) from the Go module proxy into $(dirname "$bin") (first time only, several minutes)"
  local started=$SECONDS
  mkdir -p "$(dirname "$bin")"
  (cd "$dir" && go build "$@" -o "$bin.tmp" "$package") || { echo "building $name failed" >&2; return 1; }
  mv "$bin.tmp" "$bin"
  say "$name built in $(( SECONDS - started ))s"
}

# Jaeger v2, through tools/go.mod (Jaeger's own go.mod has a replace
# directive, so `go install pkg@version` refuses it). Sets JAEGER_BIN.
ensure_jaeger() {
  local bin="$CACHE_DIR/jaeger-$JAEGER_VERSION/jaeger"
  go_tool Jaeger "$JAEGER_VERSION" "$JAEGER_MODULE_VERSION" 1.24.6 tools \
    github.com/jaegertracing/jaeger/cmd/jaeger "$bin" || return 1
  JAEGER_BIN="$bin"
}

# Prometheus, through tools/prometheus/go.mod (a module of its own: it needs
# newer modules than Jaeger v1.75.0 builds with), with the version stamped in
# as release builds have it; about ten minutes the first time on two cores.
# Sets PROMETHEUS_BIN.
ensure_prometheus() {
  local bin="$CACHE_DIR/prometheus-$PROMETHEUS_VERSION/prometheus"
  go_tool Prometheus "$PROMETHEUS_VERSION" "$PROMETHEUS_MODULE_VERSION" 1.26.7 tools/prometheus \
    github.com/prometheus/prometheus/cmd/prometheus "$bin" \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION -X github.com/prometheus/common/version.Revision=$PROMETHEUS_MODULE_VERSION" || return 1
  PROMETHEUS_BIN="$bin"
}

# Docker Compose's CLI (the docker-compose plugin binary), through
# tools/compose/go.mod (its own go.mod has exclude directives, which `go
# install pkg@version` refuses), with its version stamped in as release
# builds have it. It loads compose files without a container engine.
# Sets COMPOSE_BIN.
ensure_compose() {
  local bin="$CACHE_DIR/compose-$COMPOSE_VERSION/docker-compose"
  go_tool "Docker Compose" "$COMPOSE_VERSION" "v$COMPOSE_VERSION" 1.26.8 tools/compose \
    github.com/docker/compose/v5/cmd "$bin" \
    -trimpath -ldflags "-w -X github.com/docker/compose/v5/internal.Version=v$COMPOSE_VERSION" || return 1
  COMPOSE_BIN="$bin"
}
