//! The stack under test: the four service binaries on fresh databases, an
//! Apache Kafka broker of the test's own, an OTLP receiver (or Jaeger), and
//! ways to count orders, reservations and leaks afterwards.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tracectl::receiver::Receiver;
use tracectl::stack::{LocalStack, Ports, StackOptions};
use tracing_common::ExportStats;
use tracing_common::config::STATS_FILE_VARIABLE;

use crate::jaeger::{Jaeger, JaegerOptions};
use crate::kafka::Kafka;
use crate::otlp::Tee;
use crate::proxy::{Fault, Proxy};

/// `target/debug`, where `cargo build --workspace --bins` put the services
/// (the test binary runs from `target/debug/deps`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// Runs the `tracectl` binary as a user would (on a blocking thread, so the
/// test's own servers keep answering): whether it succeeded, its stdout and
/// its stderr.
pub async fn try_tracectl(args: &[&str]) -> (bool, String, String) {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new(bin_dir().join("tracectl"))
            .args(&args)
            .output()
            .expect("target/debug/tracectl runs (cargo build --workspace --bins)");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .expect("the tracectl thread")
}

/// Runs the `tracectl` binary; its stdout, or a failure with both streams.
pub async fn tracectl(args: &[&str]) -> String {
    let (ok, stdout, stderr) = try_tracectl(args).await;
    assert!(ok, "tracectl {args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

/// `postgres://user@host:port`, from DATABASE_URL without its database.
pub fn postgres_server() -> String {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    url.rsplit_once('/')
        .map_or(url.clone(), |(s, _)| s.to_owned())
}

/// `host:port` of the Postgres server.
pub fn postgres_addr() -> std::net::SocketAddr {
    let server = postgres_server();
    let host_port = server.rsplit_once('@').map_or(server.as_str(), |(_, h)| h);
    let host_port = host_port.trim_start_matches("postgres://");
    let host_port = host_port.replace("localhost", "127.0.0.1");
    host_port
        .parse()
        .unwrap_or_else(|_| format!("{host_port}:5432").parse().unwrap())
}

pub fn run_id() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    format!(
        "{}_{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// One stack under test.
pub struct Env {
    pub receiver: Receiver,
    pub services: LocalStack,
    pub gateway: String,
    pub ports: Ports,
    pub postgres: String,
    pub databases: [String; 3],
    pub log_dir: PathBuf,
    /// `host:port` the services use for Kafka.
    pub brokers: String,
    pub kafka: Kafka,
    /// In front of the broker when asked for (services connect through it).
    pub kafka_proxy: Option<Proxy>,
    /// Where the services export (through a tee that also fills `receiver`),
    /// when [`Setup::jaeger`] asked for it.
    pub jaeger: Option<Jaeger>,
    pub http: reqwest::Client,
    /// Set by [`Env::finish`], whose [`Scratch`] then owns the directory.
    logs_handed_over: bool,
}

/// A passing test leaves nothing behind; a failing one keeps its logs
/// (Kafka's, Jaeger's, the services') in `log_dir` for reading.
impl Drop for Env {
    fn drop(&mut self) {
        if !self.logs_handed_over && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.log_dir);
        }
    }
}

/// A directory of one test's own under the system's temporary directory
/// (its backends' data and logs), removed when dropped unless the test is
/// failing: a failed run keeps what it needs for reading. Also what
/// [`Env::finish`] hands over: the services' logs and export stats as they
/// stopped.
pub struct Scratch(PathBuf);

impl Scratch {
    /// `tracectl-<name>-<run id>`, created.
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("tracectl-{name}-{}", run_id()));
        std::fs::create_dir_all(&dir).expect("create the test's directory");
        Scratch(dir)
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// How to start an [`Env`].
pub struct Setup {
    /// Kafka nodes: 1 (compose's single broker) or 3 (`deploy/k8s-kafka-cluster`).
    pub kafka_nodes: usize,
    pub kafka_via_proxy: bool,
    /// Set on the Kafka proxy before the services start (needs
    /// `kafka_via_proxy`): a broker that is not up yet.
    pub kafka_fault_at_start: Fault,
    /// Wait until every service's `/readyz` answers 200 before returning.
    pub wait_ready: bool,
    /// Export to a Jaeger of this test's own (OTLP gRPC) instead of the receiver.
    pub jaeger: Option<JaegerOptions>,
    /// OTLP endpoint instead of the receiver (a black hole, a closed port).
    pub otlp_endpoint: Option<String>,
    pub service_env: Vec<(&'static str, String, String)>,
}

impl Default for Setup {
    fn default() -> Self {
        Self::new()
    }
}

impl Setup {
    pub fn new() -> Self {
        Setup {
            kafka_nodes: 1,
            kafka_via_proxy: false,
            kafka_fault_at_start: Fault::None,
            wait_ready: true,
            jaeger: None,
            otlp_endpoint: None,
            service_env: Vec::new(),
        }
    }

    pub fn env(mut self, service: &'static str, name: &str, value: impl Into<String>) -> Self {
        self.service_env
            .push((service, name.to_owned(), value.into()));
        self
    }

    pub async fn start(self, name: &str) -> Env {
        let run = run_id();
        let log_dir = std::env::temp_dir().join(format!("tracectl-{name}-{run}"));
        std::fs::create_dir_all(&log_dir).unwrap();
        let (kafka, kafka_proxy, brokers) = if self.kafka_via_proxy {
            // The proxy listens first: the broker must advertise its port.
            let proxy = Proxy::start_on("127.0.0.1:0", None).await.unwrap();
            let kafka = Kafka::start(&log_dir, Some(proxy.addr().port()))
                .await
                .expect("Apache Kafka starts");
            proxy.forward_to(([127, 0, 0, 1], kafka.port()).into());
            kafka.create_topics().await.expect("the topics are created");
            proxy.set(self.kafka_fault_at_start);
            let brokers = kafka.bootstrap();
            (kafka, Some(proxy), brokers)
        } else {
            let kafka = if self.kafka_nodes > 1 {
                Kafka::cluster(&log_dir, self.kafka_nodes).await
            } else {
                Kafka::start(&log_dir, None).await
            }
            .expect("Apache Kafka starts");
            kafka.create_topics().await.expect("the topics are created");
            let brokers = kafka.bootstrap();
            (kafka, None, brokers)
        };
        let receiver = Receiver::start("127.0.0.1:0").await.unwrap();
        let jaeger = match &self.jaeger {
            Some(options) => Some(
                Jaeger::start(&log_dir, options)
                    .await
                    .expect("Jaeger starts"),
            ),
            None => None,
        };
        // With Jaeger, the services export OTLP gRPC to it through a tee that
        // also keeps every span in the receiver's store.
        let tee = match &jaeger {
            Some(j) => Some(
                Tee::start(&j.otlp_grpc_endpoint(), receiver.store.clone())
                    .await
                    .unwrap(),
            ),
            None => None,
        };
        let (otlp_endpoint, otlp_protocol) = match (&tee, self.otlp_endpoint) {
            (Some(tee), _) => (tee.endpoint(), "grpc"),
            (None, Some(endpoint)) => (endpoint, "http/protobuf"),
            (None, None) => (receiver.endpoint(), "http/protobuf"),
        };
        let databases = ["users", "orders", "inventory"].map(|d| format!("{d}_test_{run}"));
        let postgres = postgres_server();
        let options = StackOptions {
            bin_dir: bin_dir(),
            postgres: postgres.clone(),
            databases: databases.clone(),
            kafka_brokers: brokers.clone(),
            otlp_endpoint,
            otlp_protocol: otlp_protocol.into(),
            ports: Ports::EPHEMERAL,
            log_dir: log_dir.clone(),
            // TEST_STACK_LOG=debug,librdkafka=debug for more detail in the logs.
            extra_env: vec![(
                "RUST_LOG".into(),
                std::env::var("TEST_STACK_LOG").unwrap_or_else(|_| "info".into()),
            )],
            // Each service's span counts at shutdown, in a file (see
            // `export_stats`); a test's own settings come after, and win.
            service_env: tracectl::stack::SERVICES
                .iter()
                .map(|s| {
                    let path = stats_file(&log_dir, s).display().to_string();
                    (*s, STATS_FILE_VARIABLE.to_owned(), path)
                })
                .chain(self.service_env)
                .collect(),
        };
        let mut services = LocalStack::start(&options)
            .await
            .expect("the service binaries start");
        if self.wait_ready {
            services
                .wait_ready(Duration::from_secs(90), |_, _| {})
                .await
                .expect("all four services ready");
        }
        Env {
            gateway: services.gateway_url(),
            ports: services.ports,
            receiver,
            services,
            postgres,
            databases,
            log_dir,
            brokers,
            kafka,
            kafka_proxy,
            jaeger,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            logs_handed_over: false,
        }
    }
}

/// The file `service`'s telemetry writes its span counts to when it shuts
/// down (`TELEMETRY_STATS_FILE`), in an [`Env`]'s `log_dir`.
pub fn stats_file(log_dir: &Path, service: &str) -> PathBuf {
    log_dir.join(format!("{service}.stats.json"))
}

/// What `service` counted (spans ended, exported, lost) when its telemetry
/// last shut down; `None` if it has not written its stats file.
pub fn export_stats(log_dir: &Path, service: &str) -> Option<ExportStats> {
    ExportStats::read_file(&stats_file(log_dir, service)).ok()
}

/// An answer: status, JSON body (Null if none), trace id from `traceparent`.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
    pub trace_id: Option<String>,
    /// The answer's `traceparent` header as sent (its flags say whether the
    /// gateway's span was sampled).
    pub traceparent: Option<String>,
    pub elapsed: Duration,
}

impl Env {
    pub async fn db(&self, which: usize) -> PgPool {
        PgPool::connect(&format!("{}/{}", self.postgres, self.databases[which]))
            .await
            .unwrap()
    }

    pub async fn orders_db(&self) -> PgPool {
        self.db(1).await
    }

    pub async fn inventory_db(&self) -> PgPool {
        self.db(2).await
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Option<Answer> {
        send(request).await
    }

    /// POSTs an order body to the gateway.
    pub async fn order(&self, body: &str) -> Option<Answer> {
        self.send(
            self.http
                .post(format!("{}/api/orders", self.gateway))
                .header("content-type", "application/json")
                .body(body.to_owned()),
        )
        .await
    }

    /// Waits until none of `ids` is pending (or `timeout`); the count of each
    /// status, `pending` included when some never settled, and `missing` for
    /// ids without a row.
    pub async fn settle(&self, ids: &[uuid::Uuid], timeout: Duration) -> BTreeMap<String, i64> {
        let db = self.orders_db().await;
        let started = Instant::now();
        loop {
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT status, count(*) FROM orders WHERE id = ANY($1) GROUP BY status",
            )
            .bind(ids)
            .fetch_all(&db)
            .await
            .unwrap();
            let mut counts: BTreeMap<String, i64> = rows.into_iter().collect();
            let found: i64 = counts.values().sum();
            if found < ids.len() as i64 {
                counts.insert("missing".into(), ids.len() as i64 - found);
            }
            if !counts.contains_key("pending") || started.elapsed() > timeout {
                db.close().await;
                return counts;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Stock taken from each product minus what its reservations add up to:
    /// 0 everywhere unless some order was reserved twice (or lost its rows).
    pub async fn reservation_mismatch(&self) -> Vec<(String, i64)> {
        let db = self.inventory_db().await;
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT s.product_id, \
                    (1000000 - s.available)::BIGINT - COALESCE((SELECT SUM(r.quantity) FROM reservations r WHERE r.product_id = s.product_id), 0)::BIGINT \
             FROM stock s WHERE s.product_id IN ('prod1', 'prod2') ORDER BY 1",
        )
        .fetch_all(&db)
        .await
        .unwrap();
        db.close().await;
        rows.into_iter().filter(|(_, d)| *d != 0).collect()
    }

    /// Orders with no items or no outbox event: half-written.
    pub async fn half_written_orders(&self) -> i64 {
        let db = self.orders_db().await;
        let (n,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM orders o \
             WHERE NOT EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.id) \
                OR NOT EXISTS (SELECT 1 FROM outbox x WHERE x.message_key = o.id::text)",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        db.close().await;
        n
    }

    pub async fn order_count(&self) -> i64 {
        let db = self.orders_db().await;
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM orders")
            .fetch_one(&db)
            .await
            .unwrap();
        db.close().await;
        n
    }

    /// Every leak in the spans received and in the services' logs.
    pub fn leaks(&self) -> Vec<crate::scan::Leak> {
        let mut found = crate::scan::spans(&self.receiver.store.spans());
        for (service, path) in self.services.logs() {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            found.extend(crate::scan::log(service, &text));
        }
        found
    }

    /// Stops the services (SIGTERM), asserts none had to be killed, scans
    /// everything exported and logged for leaks, drops the databases; the
    /// logs and export stats the services left, for reading.
    pub async fn finish(mut self) -> Scratch {
        let leaks = self.leaks();
        let killed = self.services.stop(Duration::from_secs(20)).await;
        assert!(killed.is_empty(), "had to kill {killed:?}");
        // The shutdown lines are logged after SIGTERM: scan them too.
        let mut late = Vec::new();
        for service in tracectl::stack::SERVICES {
            let text = std::fs::read_to_string(self.log_dir.join(format!("{service}.log")))
                .unwrap_or_default();
            late.extend(crate::scan::log(service, &text));
        }
        let all: Vec<String> = leaks.iter().chain(&late).map(|l| l.to_string()).collect();
        assert!(all.is_empty(), "leaks:\n{}", all.join("\n"));
        for db in &self.databases {
            let _ = tracectl::stack::drop_database(&self.postgres, db).await;
        }
        self.logs_handed_over = true;
        Scratch(self.log_dir.clone())
    }
}

/// Sends `request`; the answer, or `None` when none came.
pub async fn send(request: reqwest::RequestBuilder) -> Option<Answer> {
    let started = Instant::now();
    let response = request.send().await.ok()?;
    let status = response.status().as_u16();
    let trace_id = tracectl::stack::trace_id_of(response.headers());
    let traceparent = response
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = response.bytes().await.unwrap_or_default();
    Some(Answer {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        trace_id,
        traceparent,
        elapsed: started.elapsed(),
    })
}

/// A valid order (the seed's shape), varying by `i`.
pub fn order_body(i: usize) -> String {
    order_contract::http::OrderRequest::sample(i).to_json()
}

/// Sends `n` orders, `concurrency` at a time; the answers in order of `i`.
pub async fn orders(env: &Env, n: usize, concurrency: usize) -> Vec<Option<Answer>> {
    use futures::StreamExt;
    futures::stream::iter(0..n)
        .map(|i| async move { env.order(&order_body(i)).await })
        .buffered(concurrency)
        .collect()
        .await
}

/// Order ids of the 201 answers.
pub fn accepted(answers: &[Option<Answer>]) -> Vec<uuid::Uuid> {
    answers
        .iter()
        .flatten()
        .filter(|a| a.status == 201)
        .filter_map(|a| a.body["orderId"].as_str()?.parse().ok())
        .collect()
}

/// `status -> count` of the answers, `none` for no answer.
pub fn statuses(answers: &[Option<Answer>]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for a in answers {
        let key = a
            .as_ref()
            .map_or("none".to_owned(), |a| a.status.to_string());
        *out.entry(key).or_default() += 1;
    }
    out
}
