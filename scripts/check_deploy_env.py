#!/usr/bin/env python3
"""Checks the environment that docker-compose.yml and k8s/ give each service.

Every variable set for a service must be one that service reads (a typo or a
variable meant for another service is silently ignored at run time), values
with a fixed vocabulary must be in it, the variables whose defaults point at
127.0.0.1 must be set (those defaults cannot work in a container), and URLs
must name the service and port they are meant for. docker-compose.yml is
checked as it is and as each variant deploy/*.env makes it (`docker compose
--env-file deploy/X.env up`: its variables fill the file's ${...}, its
COMPOSE_PROFILES enables services); in each, KAFKA_BROKERS must name only
running Kafka nodes, and the nodes must agree on one cluster whose replication
settings their number can carry; Jaeger's storage must be the one that runs
(its second config file cassandra.yaml only with the cassandra service, which
it waits for); and every variable a deploy/*.env sets must be one that
docker-compose.yml interpolates. Also checks the Jaeger sampling strategies
that the services' remote samplers fetch.

Usage: check_deploy_env.py [--root REPO]     (needs PyYAML)
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path
from urllib.parse import urlsplit

import yaml

PORTS = {
    "api-gateway": 3000,
    "user-service": 3001,
    "order-service": 3003,
    "inventory-service": 3004,
}


def load_variables(root: Path) -> list[dict]:
    """service-runtime/variables.tsv: every variable the services read, with
    who reads it, its default, its kind and its values."""
    rows = []
    for line in (root / "service-runtime" / "variables.tsv").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, readers, default, kind, *values = line.split("\t")
        rows.append({
            "name": name,
            "readers": set(PORTS) if readers == "*" else set(readers.split(",")),
            "default": default,
            "kind": kind,
            "values": set(values[0].split("|")) if values else set(),
        })
    return rows


VARIABLES = load_variables(Path(__file__).resolve().parent.parent)
# What each service reads (its config.rs, tracing-common's telemetry settings,
# service-runtime's edge limits, the OpenTelemetry SDK's batch processor).
READS = {service: {v["name"] for v in VARIABLES if service in v["readers"]} for service in PORTS}
COMMON = set.intersection(*READS.values())
# Defaults that point at 127.0.0.1: fine on a laptop, wrong in a container
# (Zipkin's only matters with OTEL_TRACES_EXPORTER=zipkin).
LOOPBACK_DEFAULTS = {v["name"] for v in VARIABLES if "127.0.0.1" in v["default"]} - {"OTEL_EXPORTER_ZIPKIN_ENDPOINT"}
ONE_OF = {v["name"]: v["values"] for v in VARIABLES if v["kind"] == "one-of"}
LIST_OF = {v["name"]: v["values"] for v in VARIABLES if v["kind"] == "list-of"}
WHOLE_NUMBERS = {v["name"] for v in VARIABLES if v["kind"] == "number"}

URL_TARGETS = {
    "USER_SERVICE_URL": "user-service",
    "ORDER_SERVICE_URL": "order-service",
    "INVENTORY_SERVICE_URL": "inventory-service",
}

DATABASES = {"user-service": "users", "order-service": "orders", "inventory-service": "inventory"}

# `$${...}` is compose's escape for a literal `${...}`, not an interpolation.
INTERPOLATION = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")
# Where the Kafka clients find a broker, and where a node's controller listens.
KAFKA_PORT, CONTROLLER_PORT = 9092, 9093


class Report:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}")


def check_value(report: Report, where: str, name: str, value: str) -> None:
    value = value.strip()
    if name in ONE_OF and value not in ONE_OF[name]:
        report.error(where, f"{name}={value!r} is not one of {sorted(ONE_OF[name])}")
    if name in LIST_OF:
        items = [v.strip() for v in value.split(",") if v.strip()]
        unknown = [v for v in items if v not in LIST_OF[name]]
        if unknown or not items:
            report.error(where, f"{name}={value!r}: expected a list of {sorted(LIST_OF[name])}")
    if name in WHOLE_NUMBERS and not value.isdigit():
        report.error(where, f"{name}={value!r} is not a whole number")
    if name.endswith(("_ENDPOINT", "_URL")) and name != "DATABASE_URL":
        url = urlsplit(value)
        if url.scheme not in ("http", "https") or not url.hostname:
            report.error(where, f"{name}={value!r} is not an absolute http:// or https:// URL")


def is_ratio(value: str) -> bool:
    try:
        return 0.0 <= float(value) <= 1.0
    except ValueError:
        return False


def check_service_env(report: Report, where: str, service: str, env: dict[str, str | None]) -> None:
    """The checks shared by compose and Kubernetes, on one service's final environment."""
    for name in sorted(env):
        if name not in READS[service]:
            readers = sorted(s for s, names in READS.items() if name in names)
            hint = f" (read by {', '.join(readers)})" if readers else " (no service reads it)"
            report.error(where, f"sets {name}, which {service} does not read{hint}")
    for name in sorted(LOOPBACK_DEFAULTS & READS[service]):
        if name not in env:
            report.error(where, f"does not set {name}; its default points at 127.0.0.1")
    for name, value in env.items():
        if value is not None:
            check_value(report, where, name, value)

    sampler, arg = env.get("OTEL_TRACES_SAMPLER") or "", env.get("OTEL_TRACES_SAMPLER_ARG")
    if sampler.endswith("jaeger_remote") and arg:
        keys = {pair.split("=", 1)[0].strip() for pair in arg.split(",") if pair.strip()}
        unknown = keys - {"endpoint", "pollingIntervalMs", "initialSamplingRate"}
        if unknown or any("=" not in pair for pair in arg.split(",") if pair.strip()):
            report.error(
                where, f"OTEL_TRACES_SAMPLER_ARG={arg!r}: expected endpoint=…,pollingIntervalMs=…,initialSamplingRate=…"
            )
    elif sampler.endswith("traceidratio") and arg is not None and not is_ratio(arg):
        report.error(where, f"OTEL_TRACES_SAMPLER_ARG={arg!r} is not a ratio between 0 and 1")

    if env.get("OTEL_SERVICE_NAME") not in (None, service):
        report.error(where, f"OTEL_SERVICE_NAME={env['OTEL_SERVICE_NAME']!r}, expected {service!r}")
    if env.get("PORT") not in (None, str(PORTS[service])):
        report.error(where, f"PORT={env['PORT']!r}, expected {PORTS[service]}")
    for name, target in URL_TARGETS.items():
        if name in env and env[name] is not None:
            url = urlsplit(env[name])
            if (url.hostname or "").split(".")[0] != target or url.port != PORTS[target]:
                report.error(where, f"{name}={env[name]!r} does not point at {target}:{PORTS[target]}")
    url = env.get("DATABASE_URL")
    if url is not None and service in DATABASES:
        database = urlsplit(url).path.lstrip("/")
        if database != DATABASES[service]:
            report.error(where, f"DATABASE_URL names database {database!r}, expected {DATABASES[service]!r}")


def as_env_dict(environment: object) -> dict[str, str | None]:
    """Compose allows a mapping or a list of KEY=VALUE (or bare KEY) strings."""
    if environment is None:
        return {}
    if isinstance(environment, dict):
        return {str(k): None if v is None else str(v) for k, v in environment.items()}
    out: dict[str, str | None] = {}
    for item in environment:
        key, sep, value = str(item).partition("=")
        out[key] = value if sep else None
    return out


def read_env_file(report: Report, path: Path) -> dict[str, str]:
    """A compose env file: KEY=VALUE lines, `#` comments, optional quotes."""
    out: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()):
            report.error(f"{path.name}:{number}", f"not a KEY=VALUE line: {line!r}")
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:+alt}, ${VAR+alt}."""

    def one(m: re.Match) -> str:
        name, op, arg = m.group("name"), m.group("op") or "", m.group("arg") or ""
        present, non_empty = name in variables, bool(variables.get(name))
        if op in (":-", "-"):
            return variables[name] if (non_empty if op == ":-" else present) else arg
        if op in (":+", "+"):
            return arg if (non_empty if op == ":+" else present) else ""
        return variables.get(name, "")

    return INTERPOLATION.sub(one, value).replace("$$", "$")


class Variant:
    """docker-compose.yml as `docker compose` sees it: plain, or with an env file."""

    def __init__(self, label: str, variables: dict[str, str]) -> None:
        self.label = label
        self.variables = variables
        self.profiles = {p.strip() for p in variables.get("COMPOSE_PROFILES", "").split(",") if p.strip()}

    def enabled(self, spec: dict) -> bool:
        profiles = spec.get("profiles") or []
        return not profiles or bool(self.profiles & set(profiles)) or "*" in self.profiles

    def env(self, spec: dict) -> dict[str, str | None]:
        return {
            k: None if v is None else interpolate(v, self.variables)
            for k, v in as_env_dict(spec.get("environment")).items()
        }


def compose_variants(report: Report, root: Path) -> list[Variant]:
    """The plain file, then one variant per deploy/*.env."""
    variants = [Variant("", {})]
    for path in sorted((root / "deploy").glob("*.env")):
        variants.append(Variant(f" with deploy/{path.name}", read_env_file(report, path)))
    return variants


def kafka_nodes(services: dict, variant: Variant) -> dict[str, dict[str, str | None]]:
    """The running Kafka brokers/controllers of a variant: service name to environment."""
    return {
        name: variant.env(spec)
        for name, spec in services.items()
        if str(spec.get("image", "")).startswith("apache/kafka:")
        and "KAFKA_PROCESS_ROLES" in as_env_dict(spec.get("environment"))
        and variant.enabled(spec)
    }


def kafka_summary(root: Path, env_file: str | None = None) -> dict[str, object]:
    """What one variant runs: the Kafka nodes, the replication settings and the
    services' KAFKA_BROKERS (for scripts/validate-deploy.sh)."""
    report = Report()
    variables = read_env_file(report, root / env_file) if env_file else {}
    variant = Variant(f" with {env_file}" if env_file else "", variables)
    services = yaml.safe_load((root / "docker-compose.yml").read_text())["services"]
    nodes = kafka_nodes(services, variant)
    first = next(iter(nodes.values()), {})
    return {
        "nodes": sorted(nodes),
        "default.replication.factor": first.get("KAFKA_DEFAULT_REPLICATION_FACTOR"),
        "min.insync.replicas": first.get("KAFKA_MIN_INSYNC_REPLICAS"),
        "unclean.leader.election.enable": first.get("KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"),
        "brokers": {
            s: variant.env(services[s]).get("KAFKA_BROKERS")
            for s in PORTS
            if "KAFKA_BROKERS" in as_env_dict(services[s].get("environment"))
        },
    }


def check_compose_kafka(report: Report, path: Path, services: dict, variant: Variant) -> None:
    """One cluster: ids, quorum, listeners and replication that fit the nodes running."""
    where = f"{path.name}{variant.label}"
    nodes = kafka_nodes(services, variant)
    if not nodes:
        report.error(where, "runs no Kafka node")
        return
    ids: dict[str, str] = {}
    for name, env in nodes.items():
        node_id = env.get("KAFKA_NODE_ID") or ""
        if node_id in ids.values():
            report.error(f"{where} {name}", f"KAFKA_NODE_ID {node_id} is also another node's")
        ids[name] = node_id
        advertised = f"PLAINTEXT://{name}:{KAFKA_PORT}"
        if env.get("KAFKA_ADVERTISED_LISTENERS") != advertised:
            report.error(f"{where} {name}", f"advertises {env.get('KAFKA_ADVERTISED_LISTENERS')!r}, expected {advertised!r}")
    voters = sorted(f"{ids[n]}@{n}:{CONTROLLER_PORT}" for n in nodes)
    for name, env in nodes.items():
        w = f"{where} {name}"
        got = sorted(v.strip() for v in (env.get("KAFKA_CONTROLLER_QUORUM_VOTERS") or "").split(",") if v.strip())
        if got != voters:
            report.error(w, f"KAFKA_CONTROLLER_QUORUM_VOTERS {','.join(got)!r}, expected the running nodes {','.join(voters)!r}")
        for other in ("CLUSTER_ID", "KAFKA_DEFAULT_REPLICATION_FACTOR", "KAFKA_MIN_INSYNC_REPLICAS"):
            if env.get(other) != next(iter(nodes.values())).get(other):
                report.error(w, f"{other} differs between the nodes")
        numbers = {}
        for setting in (
            "KAFKA_DEFAULT_REPLICATION_FACTOR",
            "KAFKA_MIN_INSYNC_REPLICAS",
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
        ):
            value = str(env.get(setting) or "")
            if not value.isdigit() or int(value) < 1:
                report.error(w, f"{setting}={value!r} is not a whole number of at least 1")
                continue
            numbers[setting] = int(value)
            if setting.endswith("REPLICATION_FACTOR") and numbers[setting] > len(nodes):
                report.error(w, f"{setting}={value} needs more than the {len(nodes)} node(s) running")
        for factor, isr in (
            ("KAFKA_DEFAULT_REPLICATION_FACTOR", "KAFKA_MIN_INSYNC_REPLICAS"),
            ("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"),
        ):
            rf, min_isr = numbers.get(factor), numbers.get(isr)
            if rf and min_isr and (min_isr > rf or (rf > 1 and min_isr == rf)):
                report.error(w, f"{isr}={min_isr} with {factor}={rf}: one node down would stop writes")
    init = services.get("kafka-init", {})
    depends = init.get("depends_on") or {}
    for name in nodes:
        condition = depends.get(name, {}).get("condition") if isinstance(depends, dict) else None
        if condition != "service_healthy":
            report.error(f"{where} kafka-init", f"does not wait for {name} to be healthy")


def jaeger_command(services: dict, variant: Variant) -> list[str]:
    """Jaeger's arguments as compose passes them (a string is split like a shell's words)."""
    command = services.get("jaeger", {}).get("command") or []
    if isinstance(command, str):
        return shlex.split(interpolate(command, variant.variables))
    return [interpolate(str(c), variant.variables) for c in command]


def check_compose_jaeger(report: Report, path: Path, services: dict, variant: Variant) -> None:
    """Memory storage; or Cassandra (deploy/jaeger/cassandra.yaml) with the
    cassandra service running; or that and adaptive sampling
    (deploy/jaeger/adaptive-sampling.yaml) with jaeger-adaptive running too,
    which runs exactly as jaeger does and starts first."""
    where = f"{path.name}{variant.label} jaeger"
    args = jaeger_command(services, variant)
    if not args or args[0] != "--config=/etc/jaeger/config.yaml":
        report.error(where, f"runs {args}, expected --config=/etc/jaeger/config.yaml first")
    extra = args[1:]
    known = [[], ["--config=/etc/jaeger/cassandra.yaml"],
             ["--config=/etc/jaeger/cassandra.yaml", "--config=/etc/jaeger/adaptive-sampling.yaml"]]
    running = lambda name: name in services and variant.enabled(services[name])
    if extra not in known:
        report.error(where, f"runs with {extra} after config.yaml; known: {known[1:]}")
    elif extra and not running("cassandra"):
        report.error(where, "stores its traces in Cassandra, but the cassandra service does not run (COMPOSE_PROFILES=cassandra)")
    elif running("cassandra") and not extra and variant.label:
        report.error(where, "keeps its traces in memory although this variant runs the cassandra service")
    adaptive = "--config=/etc/jaeger/adaptive-sampling.yaml" in extra
    if adaptive != running("jaeger-adaptive"):
        report.error(where, "adaptive sampling needs jaeger-adaptive running (COMPOSE_PROFILES=...,adaptive-sampling), and jaeger-adaptive needs it")
    if "jaeger-adaptive" in services:
        twin = services["jaeger-adaptive"]
        for key in ("image", "command", "environment", "volumes"):
            if twin.get(key) != services["jaeger"].get(key):
                report.error(where, f"jaeger-adaptive's {key} differs from jaeger's")
        if twin.get("ports"):
            report.error(where, "jaeger-adaptive publishes ports: nothing is to send to it")
    depends = services["jaeger"].get("depends_on") or {}
    for name in ("cassandra", "jaeger-adaptive"):
        if name not in services:
            continue
        entry = depends.get(name) if isinstance(depends, dict) else None
        if not entry or entry.get("condition") != "service_healthy" or entry.get("required", True) is not False:
            report.error(where, f"must wait for {name} to be healthy, with required: false (it runs only with its profile)")


def check_variables_used(report: Report, path: Path, variants: list[Variant]) -> None:
    """A variable an env file sets that docker-compose.yml never interpolates
    nor passes on (an `environment` entry without a value) is a typo."""
    text = path.read_text()
    used = {m.group("name") for m in INTERPOLATION.finditer(text)}
    for service in (yaml.safe_load(text).get("services") or {}).values():
        environment = service.get("environment") or {}
        if isinstance(environment, dict):
            used |= {name for name, value in environment.items() if value is None}
        else:
            used |= {entry for entry in environment if "=" not in entry}
    for variant in variants:
        for name in sorted(variant.variables):
            if not name.startswith("COMPOSE_") and name not in used:
                report.error(f"deploy/{variant.label.split('/')[-1]}", f"sets {name}, which {path.name} does not interpolate")


def check_brokers(report: Report, where: str, value: str | None, services: dict, variant: Variant) -> None:
    """KAFKA_BROKERS names only Kafka nodes that run in this variant, and all of them."""
    if value is None:
        return
    nodes = kafka_nodes(services, variant)
    named = set()
    for entry in (e.strip() for e in value.split(",")):
        host, _, port = entry.rpartition(":")
        if host not in nodes or port != str(KAFKA_PORT):
            report.error(where, f"KAFKA_BROKERS names {entry!r}, not a running Kafka node's {KAFKA_PORT}: {sorted(nodes)}")
        named.add(host)
    if set(nodes) - named:
        report.error(where, f"KAFKA_BROKERS leaves out {sorted(set(nodes) - named)}: the clients could not start without them")


def check_compose(report: Report, path: Path, variants: list[Variant]) -> int:
    doc = yaml.safe_load(path.read_text())
    services = doc.get("services") or {}
    for service in PORTS:
        if service not in services:
            report.error(path.name, f"has no service {service}")
    # Variables the variants set: knobs of docker-compose.yml, not a service's own.
    knobs = {k for v in variants for k in v.variables if not k.startswith("COMPOSE_")}
    for variant in variants:
        check_compose_kafka(report, path, services, variant)
        check_compose_jaeger(report, path, services, variant)
    check_variables_used(report, path, variants)
    for service in PORTS:
        spec = services.get(service)
        if spec is None:
            continue
        where = f"{path.name} {service}"
        for name, value in as_env_dict(spec.get("environment")).items():
            # ${VAR} comes from the host or a variant's env file: a variable
            # this service reads, passed through, or a variant's knob, which
            # needs a default for the plain file.
            for match in INTERPOLATION.finditer(value or ""):
                var = match.group("name")
                if var in READS[service]:
                    continue
                if var not in knobs:
                    report.error(where, f"{name} interpolates ${{{var}}}, which {service} does not read and no deploy/*.env sets")
                elif match.group("op") != ":-":
                    report.error(where, f"{name} interpolates ${{{var}}} without a :- default")
        if "env_file" in spec:
            report.error(where, "uses env_file, whose variables this check cannot see")
        plain: set[str] = set()
        for variant in variants:
            if not variant.enabled(spec):
                report.error(f"{where}{variant.label}", "is not enabled")
                continue
            # Unset variables stand in as their defaults (or empty).
            env = variant.env(spec)
            sub = Report()
            check_service_env(sub, f"{where}{variant.label}", service, env)
            check_brokers(sub, f"{where}{variant.label}", env.get("KAFKA_BROKERS"), services, variant)
            for line in sub.errors:
                message = line.split(": ", 1)[1]
                if not variant.label:
                    plain.add(message)
                if variant.label and message in plain:
                    continue
                report.errors.append(line)
    return len([s for s in PORTS if s in services])


def load_kustomization(report: Report, k8s: Path) -> list[tuple[str, dict]]:
    kustomization = yaml.safe_load((k8s / "kustomization.yaml").read_text())
    objects: list[tuple[str, dict]] = []
    for resource in kustomization.get("resources", []):
        file = k8s / resource
        if not file.is_file():
            report.error("k8s/kustomization.yaml", f"resource {resource} is not a file")
            continue
        for obj in yaml.safe_load_all(file.read_text()):
            if obj:
                objects.append((f"k8s/{resource}", obj))
    return objects


def check_k8s(report: Report, k8s: Path) -> int:
    objects = load_kustomization(report, k8s)

    def keys_of(kind: str, namespace: str, name: str) -> set[str] | None:
        for _, obj in objects:
            meta = obj.get("metadata", {})
            if obj.get("kind") == kind and meta.get("name") == name and meta.get("namespace") == namespace:
                return set(obj.get("data") or {}) | set(obj.get("stringData") or {})
        return None

    values: dict[tuple[str, str, str], dict[str, str]] = {}
    for _, obj in objects:
        if obj.get("kind") == "ConfigMap":
            meta = obj["metadata"]
            values[("ConfigMap", meta.get("namespace"), meta["name"])] = {
                k: str(v) for k, v in (obj.get("data") or {}).items()
            }

    seen = 0
    for source, obj in objects:
        if obj.get("kind") != "Deployment":
            continue
        namespace = obj["metadata"].get("namespace")
        for container in obj["spec"]["template"]["spec"].get("containers", []):
            service = container["name"]
            if service not in PORTS:
                continue
            seen += 1
            where = f"{source} {service}"
            env: dict[str, str | None] = {}
            for ref in container.get("envFrom", []):
                kind, target = (
                    ("ConfigMap", ref["configMapRef"]) if "configMapRef" in ref else ("Secret", ref["secretRef"])
                )
                keys = keys_of(kind, namespace, target["name"])
                if keys is None:
                    report.error(where, f"envFrom {kind} {target['name']} is not among the resources")
                    continue
                for key in keys:
                    if kind == "Secret":
                        env[key] = secret_value(objects, namespace, target["name"], key)
                    else:
                        env[key] = values[(kind, namespace, target["name"])].get(key)
            for item in container.get("env", []):
                env[item["name"]] = item.get("value")
            ports = [p["containerPort"] for p in container.get("ports", [])]
            if ports != [PORTS[service]]:
                report.error(where, f"containerPort {ports}, expected [{PORTS[service]}]")
            check_service_env(report, where, service, env)
    missing = set(PORTS) - {
        c["name"]
        for _, o in objects
        if o.get("kind") == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    for service in sorted(missing):
        report.error("k8s/", f"has no Deployment for {service}")
    return seen


def secret_value(objects: list[tuple[str, dict]], namespace: str, name: str, key: str) -> str | None:
    for _, obj in objects:
        meta = obj.get("metadata", {})
        if obj.get("kind") == "Secret" and meta.get("name") == name and meta.get("namespace") == namespace:
            return (obj.get("stringData") or {}).get(key)
    return None


def check_strategies(report: Report, root: Path, path: Path) -> None:
    where = str(path.relative_to(root))
    doc = json.loads(path.read_text())
    strategies = [("default_strategy", doc.get("default_strategy"))]
    strategies += [(s.get("service", "?"), s) for s in doc.get("service_strategies", [])]
    if strategies[0][1] is None:
        report.error(where, "has no default_strategy")
    for label, strategy in strategies:
        if strategy is None:
            continue
        kind, param = strategy.get("type"), strategy.get("param")
        if kind == "probabilistic" and not (isinstance(param, (int, float)) and 0 <= param <= 1):
            report.error(where, f"{label}: probabilistic param {param!r} is not between 0 and 1")
        elif kind == "ratelimiting" and not (isinstance(param, (int, float)) and param >= 0):
            report.error(where, f"{label}: ratelimiting param {param!r} is not a rate >= 0")
        elif kind not in ("probabilistic", "ratelimiting"):
            report.error(where, f"{label}: type {kind!r} is not probabilistic or ratelimiting")
        if label != "default_strategy" and label not in PORTS:
            report.error(where, f"strategy for {label!r}, which is no service of this stack")


def check_list_matches_sources(report: Report, root: Path) -> None:
    """Keeps READS honest: compares it with what the Rust sources read."""
    read_call = re.compile(r"env_(?:or|url|millis|database_url)\(\s*\"([A-Z][A-Z0-9_]*)\"")
    for service in PORTS:
        config = root / service / "src" / "config.rs"
        if not config.is_file():
            report.error(str(config.relative_to(root)), "not found; cannot compare the variable list with it")
            continue
        source = config.read_text()
        found = set(read_call.findall(source))
        # service_runtime::faults::Faults::from_env reads FAULTS.
        if "Faults::from_env" in source:
            found.add("FAULTS")
        for name in sorted(found - READS[service]):
            report.error(f"{service}/src/config.rs", f"reads {name}, missing for {service} in service-runtime/variables.tsv")
        for name in sorted(READS[service] - COMMON - found):
            report.error("service-runtime/variables.tsv", f"lists {name} for {service}, whose config.rs does not read it")
    sources = ""
    for crate in ("tracing-common", "service-runtime"):
        src = root / crate / "src"
        if not src.is_dir():
            report.error(f"{crate}/src", "not found; cannot compare the variable list with it")
            return
        sources += "\n".join(p.read_text() for p in sorted(src.glob("**/*.rs")))
    literals = set(
        re.findall(
            r"\"((?:OTEL_[A-Z_]+)|RUST_LOG|LOG_FORMAT|TELEMETRY_STATS_FILE|SERVER_REQUEST_TIMEOUT_MS|MAX_REQUEST_HEADER_BYTES)\"",
            sources,
        )
    )
    # The batch processor's variables are read inside the SDK, not by our code.
    ours = {n for n in COMMON if not n.startswith("OTEL_BSP_")} - {"PORT"}
    for name in sorted(literals - COMMON):
        report.error("tracing-common/src, service-runtime/src", f"read {name}, missing (for every service) from service-runtime/variables.tsv")
    for name in sorted(ours - literals):
        report.error("service-runtime/variables.tsv", f"lists {name}, which neither tracing-common nor service-runtime reads")


def check_docs_list_the_variables(report: Report, root: Path) -> None:
    """docs/configuration.md's table names every variable of the list, and
    only those."""
    path = root / "docs" / "configuration.md"
    text = path.read_text()
    section = text.split("## Configuration (environment only)", 1)[-1].split("\n## ", 1)[0]
    documented = set()
    for row in section.splitlines():
        if row.startswith("| `"):
            documented |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1]))
    listed = {v["name"] for v in VARIABLES}
    # One row covers the batch processor's four.
    if "OTEL_BSP_MAX_QUEUE_SIZE" in documented:
        documented |= {n for n in listed if n.startswith("OTEL_BSP_")}
    # Each OTEL_EXPORTER_OTLP_* has a TRACES_ form, said once below the table.
    documented |= {
        n.replace("OTEL_EXPORTER_OTLP_", "OTEL_EXPORTER_OTLP_TRACES_")
        for n in documented
        if n.startswith("OTEL_EXPORTER_OTLP_") and "_TRACES_" not in n
    }
    for name in sorted(listed - documented):
        report.error("docs/configuration.md", f"the configuration table does not name {name} (service-runtime/variables.tsv)")
    for name in sorted(documented - listed):
        report.error("docs/configuration.md", f"names {name}, which service-runtime/variables.tsv does not list")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args()
    root: Path = args.root

    report = Report()
    check_list_matches_sources(report, root)
    check_docs_list_the_variables(report, root)
    variants = compose_variants(report, root)
    compose = check_compose(report, root / "docker-compose.yml", variants)
    k8s = check_k8s(report, root / "k8s")
    for strategies in (root / "deploy/jaeger/sampling-strategies.json", root / "k8s/jaeger/sampling-strategies.json"):
        check_strategies(report, root, strategies)

    for line in report.errors:
        print(f"  {line}")
    print(
        f"checked the environment of {compose} compose services (plain and with {len(variants) - 1} deploy/*.env) "
        f"and {k8s} Kubernetes containers: "
        f"{len(report.errors)} problem(s)"
    )
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
