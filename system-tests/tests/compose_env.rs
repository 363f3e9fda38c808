//! docker-compose.yml's wiring, proven without Docker: the four service
//! binaries get exactly the environment the compose file gives them, with
//! compose host names mapped to loopback and the infrastructure compose runs
//! run here as processes: Postgres, Apache Kafka 4.4.0 and Jaeger 2.12.0 with
//! the compose file's own deploy/jaeger/config.yaml (OTLP gRPC on its 4317,
//! through a tee that keeps the spans; remote sampling on its 5778). Each
//! service's `PORT` becomes 0 (it takes a free port and logs it) so runs side
//! by side never collide; its callers get that port. The seed's order must go
//! through, produce the whole trace, and be in Jaeger.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use testkit::env::bin_dir;
use testkit::jaeger::{Jaeger, JaegerOptions};
use testkit::kafka::Kafka;
use testkit::otlp::Tee;
use tracectl::receiver::Store;
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
    let log_dir = testkit::env::Scratch::new("compose");
    let kafka = Kafka::start(&log_dir, None).await.unwrap();
    kafka.create_topics().await.unwrap();
    let jaeger = Jaeger::start(&log_dir, &JaegerOptions::default())
        .await
        .unwrap();
    let store = Store::default();
    let tee = Tee::start(&jaeger.otlp_grpc_endpoint(), store.clone())
        .await
        .unwrap();
    let mut hosts: Vec<(String, String)> = vec![
        ("postgres:5432".into(), postgres_host_port()),
        ("kafka:9092".into(), kafka.bootstrap()),
        ("jaeger:4317".into(), tee.addr.to_string()),
        (
            "jaeger:5778".into(),
            format!("127.0.0.1:{}", jaeger.ports.sampling_http),
        ),
    ];

    let mut children = Killed(Vec::new());
    let mut ports = BTreeMap::new();
    // Callees first (the order of SERVICES), so each caller's URLs can name
    // the ports its callees took.
    for service in SERVICES {
        let mut env: BTreeMap<String, String> = environments[service]
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
        let compose_port = env.insert("PORT".into(), "0".into()).unwrap();
        let log = log_dir.join(format!("{service}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let mut child = tokio::process::Command::new(bin_dir().join(service))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(&env)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{service}: {e}; build the binaries first (cargo build --workspace --bins)")
            });
        let port = stack::listening_port(service, &log, &mut child, Duration::from_secs(90))
            .await
            .unwrap();
        children.0.push(child);
        hosts.push((
            format!("{service}:{compose_port}"),
            format!("127.0.0.1:{port}"),
        ));
        ports.insert(service, port);
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
    let run = testkit::seed::seed_order(&gateway, &store, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        run.placed.status == 201 && run.status == "confirmed" && run.problems.is_empty(),
        "with the compose environment (spans over OTLP gRPC to Jaeger), the seed's order differs: {}",
        run.report()
    );
    // And Jaeger holds it whole (its own batch processor writes it a moment
    // after the tee has seen it).
    let query = tracectl::jaeger::Jaeger::new(&jaeger.query_url()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let in_jaeger = loop {
        let found = query.trace(&run.trace.trace_id).await.unwrap();
        let complete = found
            .as_ref()
            .is_some_and(|t| tracectl::check::problems(t, tracectl::check::ORDER_TRACE).is_empty());
        if complete || std::time::Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    .expect("the trace is in Jaeger");
    let problems = tracectl::check::problems(&in_jaeger, tracectl::check::ORDER_TRACE);
    assert!(
        problems.is_empty(),
        "{problems:?}\n{}",
        tracectl::waterfall::render(&in_jaeger)
    );
    drop(children);
}
