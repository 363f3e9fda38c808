//! What the process-level tests share: a broker of their own (tansu), the
//! four service binaries on fresh databases, an OTLP receiver, and ways to
//! count orders, reservations and leaks afterwards.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tracectl::proxy::Proxy;
use tracectl::receiver::Receiver;
use tracectl::stack::{LocalStack, Ports, StackOptions};

/// `target/debug`, where `cargo build --workspace --bins` put the services.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .to_path_buf()
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A tansu broker of this test's own (memory storage), so tests running side
/// by side do not share topics or consumer groups. Killed when dropped.
pub struct Broker {
    _process: tokio::process::Child,
    /// Where tansu listens.
    pub port: u16,
    /// What it tells clients to connect to (a proxy in front of it, or itself).
    pub advertised: u16,
}

impl Broker {
    /// `advertised`: the port clients must use (a proxy's), or None for its own.
    pub async fn start(advertised: Option<u16>, log: &std::path::Path) -> Broker {
        let port = free_port();
        let advertised = advertised.unwrap_or(port);
        let out = std::fs::File::create(log).unwrap();
        let process = tokio::process::Command::new("tansu")
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://127.0.0.1:{port}"),
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{advertised}"),
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .expect("tansu must be on PATH; scripts/test.sh installs it");
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "tansu did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Broker {
            _process: process,
            port,
            advertised,
        }
    }
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
    pub broker: Option<Broker>,
    pub mock:
        Option<rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>>,
    /// In front of the broker when asked for (services connect through it).
    pub kafka_proxy: Option<Proxy>,
    pub http: reqwest::Client,
}

/// How to start an [`Env`].
pub struct Setup {
    pub ports: Ports,
    pub kafka_via_proxy: bool,
    /// librdkafka's mock cluster (in this process, over TCP) instead of tansu.
    pub mock_kafka: bool,
    /// OTLP endpoint instead of the receiver (a black hole, a closed port).
    pub otlp_endpoint: Option<String>,
    pub service_env: Vec<(&'static str, String, String)>,
}

impl Setup {
    pub fn new() -> Self {
        Setup {
            ports: Ports::free().unwrap(),
            kafka_via_proxy: false,
            mock_kafka: false,
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
        let mut mock = None;
        let (broker, kafka_proxy, brokers) = if self.mock_kafka {
            let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
            for topic in ["order-events", "inventory-events"] {
                cluster.create_topic(topic, 3, 1).unwrap();
            }
            let brokers = cluster.bootstrap_servers();
            mock = Some(cluster);
            (None, None, brokers)
        } else if self.kafka_via_proxy {
            // Bind the proxy first: the broker must advertise its port.
            let proxy_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let proxy_port = proxy_listener.local_addr().unwrap().port();
            drop(proxy_listener);
            let broker = Broker::start(Some(proxy_port), &log_dir.join("tansu.log")).await;
            let proxy = Proxy::start_on(
                &format!("127.0.0.1:{proxy_port}"),
                Some(([127, 0, 0, 1], broker.port).into()),
            )
            .await
            .unwrap();
            (Some(broker), Some(proxy), format!("127.0.0.1:{proxy_port}"))
        } else {
            let broker = Broker::start(None, &log_dir.join("tansu.log")).await;
            let brokers = format!("127.0.0.1:{}", broker.port);
            (Some(broker), None, brokers)
        };
        let receiver = Receiver::start("127.0.0.1:0").await.unwrap();
        let databases = ["users", "orders", "inventory"].map(|d| format!("{d}_test_{run}"));
        let postgres = postgres_server();
        let options = StackOptions {
            bin_dir: bin_dir(),
            postgres: postgres.clone(),
            databases: databases.clone(),
            kafka_brokers: brokers.clone(),
            otlp_endpoint: self.otlp_endpoint.unwrap_or_else(|| receiver.endpoint()),
            otlp_protocol: "http/protobuf".into(),
            ports: self.ports,
            log_dir: log_dir.clone(),
            // TEST_STACK_LOG=debug,librdkafka=debug for more detail in the logs.
            extra_env: vec![(
                "RUST_LOG".into(),
                std::env::var("TEST_STACK_LOG").unwrap_or_else(|_| "info".into()),
            )],
            service_env: self.service_env,
        };
        let mut services = LocalStack::start(&options).expect("the service binaries start");
        services
            .wait_ready(Duration::from_secs(90), |_, _| {})
            .await
            .expect("all four services ready");
        Env {
            gateway: services.gateway_url(),
            receiver,
            services,
            ports: self.ports,
            postgres,
            databases,
            log_dir,
            brokers,
            broker,
            mock,
            kafka_proxy,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }
}

/// An answer: status, JSON body (Null if none), trace id from `traceparent`.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
    pub trace_id: Option<String>,
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
        let started = Instant::now();
        let response = request.send().await.ok()?;
        let status = response.status().as_u16();
        let trace_id = tracectl::stack::trace_id_of(response.headers());
        let bytes = response.bytes().await.unwrap_or_default();
        Some(Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            trace_id,
            elapsed: started.elapsed(),
        })
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
    pub fn leaks(&self) -> Vec<tracectl::scan::Leak> {
        let mut found = tracectl::scan::spans(&self.receiver.store.spans());
        for (service, path) in self.services.logs() {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            found.extend(tracectl::scan::log(service, &text));
        }
        found
    }

    /// Stops the services (SIGTERM), asserts none had to be killed, scans
    /// everything exported and logged for leaks, drops the databases.
    pub async fn finish(self) {
        let leaks = self.leaks();
        let killed = self.services.stop(Duration::from_secs(20)).await;
        assert!(killed.is_empty(), "had to kill {killed:?}");
        // The shutdown lines are logged after SIGTERM: scan them too.
        let mut late = Vec::new();
        for service in tracectl::stack::SERVICES {
            let text = std::fs::read_to_string(self.log_dir.join(format!("{service}.log")))
                .unwrap_or_default();
            late.extend(tracectl::scan::log(service, &text));
        }
        let all: Vec<String> = leaks.iter().chain(&late).map(|l| l.to_string()).collect();
        assert!(all.is_empty(), "leaks:\n{}", all.join("\n"));
        for db in &self.databases {
            let _ = tracectl::stack::drop_database(&self.postgres, db).await;
        }
    }
}

/// A valid order (the seed's shape), varying by `i`.
pub fn order_body(i: usize) -> String {
    match tracectl::bench::order_request(i) {
        tracectl::bench::Request::Post(_, body) => body,
        tracectl::bench::Request::Get(_) => unreachable!("orders are POSTs"),
    }
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
