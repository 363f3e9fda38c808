//! docker-compose.yml's wiring, proven without Docker: the four service
//! binaries get exactly the environment the compose file gives them, with
//! compose host names mapped to loopback (and the infrastructure the test
//! brings itself: Postgres, a Kafka-protocol cluster, an OTLP gRPC receiver
//! standing in for Jaeger's 4317, and Jaeger's remote-sampling endpoint
//! serving deploy/jaeger/sampling-strategies.json). The seed's order must go
//! through and produce the whole trace.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use axum::extract::Query;
use axum::routing::get;
use serde_json::{Value, json};
use tracectl::receiver::Receiver;
use tracectl::stack;

const SERVICES: [&str; 4] = [
    "user-service",
    "inventory-service",
    "order-service",
    "api-gateway",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `${VAR:-default}` and `${VAR}` as compose interpolates them from an
/// environment where none of the variables is set.
fn interpolate(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').map_or(rest.len(), |e| start + e);
        let inner = &rest[start + 2..end];
        out.push_str(inner.split_once(":-").map_or("", |(_, default)| default));
        rest = &rest[(end + 1).min(rest.len())..];
    }
    out.push_str(rest);
    out.replace("$$", "$")
}

/// Each service's environment from docker-compose.yml, merge keys applied.
fn compose_environments() -> BTreeMap<String, BTreeMap<String, String>> {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let mut doc: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    doc.apply_merge().unwrap();
    let mut out = BTreeMap::new();
    for service in SERVICES {
        let environment = &doc["services"][service]["environment"];
        let mut env = BTreeMap::new();
        if let Some(map) = environment.as_mapping() {
            for (k, v) in map {
                let value = match v {
                    serde_norway::Value::String(s) => s.clone(),
                    serde_norway::Value::Number(n) => n.to_string(),
                    serde_norway::Value::Bool(b) => b.to_string(),
                    other => panic!("{service}: unexpected value {other:?}"),
                };
                env.insert(k.as_str().unwrap().to_owned(), interpolate(&value));
            }
        } else if let Some(list) = environment.as_sequence() {
            for item in list {
                let (k, v) = item.as_str().unwrap().split_once('=').unwrap();
                env.insert(k.to_owned(), interpolate(v));
            }
        }
        assert!(
            !env.is_empty(),
            "{service} has an environment in docker-compose.yml"
        );
        out.insert(service.to_owned(), env);
    }
    out
}

/// Replaces each compose `host:port` with where that thing runs here.
fn map_hosts(value: &str, hosts: &[(String, String)]) -> String {
    hosts.iter().fold(value.to_owned(), |v, (from, to)| {
        v.replace(from.as_str(), to)
    })
}

/// Jaeger's `GET /sampling?service=` over the compose deployment's strategies file.
async fn serve_strategies() -> String {
    let text =
        std::fs::read_to_string(repo().join("deploy/jaeger/sampling-strategies.json")).unwrap();
    let strategies: Value = serde_json::from_str(&text).unwrap();
    let app = axum::Router::new().route(
        "/sampling",
        get(move |Query(q): Query<BTreeMap<String, String>>| {
            let strategies = strategies.clone();
            async move {
                let service = q.get("service").cloned().unwrap_or_default();
                let chosen = strategies["service_strategies"]
                    .as_array()
                    .and_then(|all| all.iter().find(|s| s["service"] == service.as_str()))
                    .unwrap_or(&strategies["default_strategy"])
                    .clone();
                axum::Json(if chosen["type"] == "ratelimiting" {
                    json!({ "strategyType": "RATE_LIMITING", "rateLimitingSampling": { "maxTracesPerSecond": chosen["param"] } })
                } else {
                    json!({ "strategyType": "PROBABILISTIC", "probabilisticSampling": { "samplingRate": chosen["param"] } })
                })
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn postgres_host_port() -> String {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let after_at = url.rsplit_once('@').map_or(url.as_str(), |(_, h)| h);
    after_at
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:5432")
        .to_owned()
}

struct Killed(Vec<tokio::process::Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.start_kill();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_wired_exactly_as_docker_compose_wires_them_serve_the_seed_order() {
    let environments = compose_environments();
    let kafka = rdkafka::mocking::MockCluster::new(1).unwrap();
    for topic in ["order-events", "inventory-events"] {
        kafka.create_topic(topic, 3, 1).unwrap();
    }
    let receiver = Receiver::start("127.0.0.1:0").await.unwrap();
    let sampling = serve_strategies().await;
    let hosts: Vec<(String, String)> = vec![
        ("postgres:5432".into(), postgres_host_port()),
        ("kafka:9092".into(), kafka.bootstrap_servers()),
        ("jaeger:4317".into(), receiver.addr.to_string()),
        ("jaeger:5778".into(), sampling),
        ("user-service:".into(), "127.0.0.1:".into()),
        ("order-service:".into(), "127.0.0.1:".into()),
        ("inventory-service:".into(), "127.0.0.1:".into()),
    ];

    let bin_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf();
    let log_dir = std::env::temp_dir().join(format!("tracectl-compose-{}", std::process::id()));
    std::fs::create_dir_all(&log_dir).unwrap();
    let mut children = Killed(Vec::new());
    let mut ports = BTreeMap::new();
    for service in SERVICES {
        let env: BTreeMap<String, String> = environments[service]
            .iter()
            .map(|(k, v)| (k.clone(), map_hosts(v, &hosts)))
            .collect();
        for (k, v) in &env {
            assert!(
                ["@postgres:", "kafka:", "jaeger:", "-service:"]
                    .iter()
                    .all(|h| !v.contains(h)),
                "{service}: {k}={v} names a compose host this test does not map"
            );
        }
        ports.insert(service, env["PORT"].clone());
        let log = std::fs::File::create(log_dir.join(format!("{service}.log"))).unwrap();
        children.0.push(
            tokio::process::Command::new(bin_dir.join(service))
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .envs(&env)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "{service}: {e}; build the binaries first (cargo build --workspace --bins)"
                    )
                }),
        );
    }

    // Ready, as compose's depends_on/healthcheck would wait.
    let http = reqwest::Client::new();
    for service in SERVICES {
        let url = format!("http://127.0.0.1:{}/readyz", ports[service]);
        let mut ready = false;
        for _ in 0..150 {
            if http
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            ready,
            "{service} not ready with the compose environment; log:\n{}",
            stack::tail(&log_dir.join(format!("{service}.log")), 30)
        );
    }

    let gateway = format!("http://127.0.0.1:{}", ports["api-gateway"]);
    let run = stack::seed_order(&gateway, &receiver.store, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        run.placed.status == 201 && run.status == "confirmed" && run.problems.is_empty(),
        "with the compose environment (spans over OTLP gRPC), the seed's order differs: {}",
        run.report()
    );
    drop(children);
}
