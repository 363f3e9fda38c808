//! The four service binaries as child processes, wired to one Postgres
//! server, one Kafka cluster and one OTLP endpoint, exactly as a user would
//! run them (environment variables only).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Ports of the four services.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub gateway: u16,
    pub users: u16,
    pub orders: u16,
    pub inventory: u16,
}

impl Ports {
    /// The documented defaults (README, "Configuration"), which its `curl` uses.
    pub const DEFAULT: Ports = Ports {
        gateway: 3000,
        users: 3001,
        orders: 3003,
        inventory: 3004,
    };

    /// Every service takes a free port when it binds (see [`LocalStack::start`]).
    pub const EPHEMERAL: Ports = Ports {
        gateway: 0,
        users: 0,
        orders: 0,
        inventory: 0,
    };
}

#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Where the service binaries are (`target/debug`).
    pub bin_dir: PathBuf,
    /// `postgres://user@host:port`, without a database name.
    pub postgres: String,
    /// Database names for user-, order- and inventory-service.
    pub databases: [String; 3],
    pub kafka_brokers: String,
    pub otlp_endpoint: String,
    pub otlp_protocol: String,
    pub ports: Ports,
    /// Each service's output goes to `<log_dir>/<service>.log`.
    pub log_dir: PathBuf,
    /// Added to every service's environment (after the defaults above).
    pub extra_env: Vec<(String, String)>,
    /// Added to one service's environment, last: `(service, name, value)`.
    pub service_env: Vec<(&'static str, String, String)>,
}

pub const SERVICES: [&str; 4] = [
    "user-service",
    "inventory-service",
    "order-service",
    "api-gateway",
];

/// One service of a [`LocalStack`]: its process and how it was started.
pub struct Service {
    pub name: &'static str,
    pub process: tokio::process::Child,
    pub port: u16,
    /// Its stdout and stderr.
    pub log: PathBuf,
    pub binary: PathBuf,
    /// Its whole environment, the port it took included.
    pub env: Vec<(String, String)>,
}

/// The running services.
pub struct LocalStack {
    children: Vec<Service>,
    pub ports: Ports,
}

fn port_in(env: &[(String, String)]) -> u16 {
    env.iter()
        .find(|(k, _)| k == "PORT")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

impl Service {
    async fn listening_port(&mut self, timeout: Duration) -> anyhow::Result<u16> {
        listening_port(self.name, &self.log, &mut self.process, timeout).await
    }
}

/// Waits (bounded) for service `name`'s `<name> listening` line in its JSON
/// log and returns the port it names (what a service with `PORT=0` took);
/// fails with the log's end if the process exits first.
pub async fn listening_port(
    name: &str,
    log: &Path,
    process: &mut tokio::process::Child,
    timeout: Duration,
) -> anyhow::Result<u16> {
    let started = Instant::now();
    let announced = format!("{name} listening");
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let port = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["message"] == announced.as_str())
            .and_then(|l| l["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok());
        if let Some(port) = port {
            return Ok(port);
        }
        if let Some(status) = process.try_wait()? {
            bail!(
                "{name} exited ({status}) before it listened; its log ({}):\n{}",
                log.display(),
                tail(log, 30)
            );
        }
        if started.elapsed() > timeout {
            bail!(
                "{name} did not log {announced:?} within {timeout:?} (LOG_FORMAT=json and RUST_LOG at info are needed to read a port of 0); see {}",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl StackOptions {
    /// The environment a service gets: what docker-compose.yml gives it,
    /// with loopback addresses.
    pub fn env_for(&self, service: &str) -> Vec<(String, String)> {
        let p = self.ports;
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        let mut env: Vec<(String, String)> = vec![
            ("OTEL_SERVICE_NAME".into(), service.into()),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                self.otlp_endpoint.clone(),
            ),
            (
                "OTEL_EXPORTER_OTLP_PROTOCOL".into(),
                self.otlp_protocol.clone(),
            ),
            // Short batches so a trace shows up within a fraction of a second.
            ("OTEL_BSP_SCHEDULE_DELAY".into(), "200".into()),
            ("LOG_FORMAT".into(), "json".into()),
        ];
        let (port, db) = match service {
            "user-service" => (p.users, Some(&self.databases[0])),
            "order-service" => (p.orders, Some(&self.databases[1])),
            "inventory-service" => (p.inventory, Some(&self.databases[2])),
            _ => (p.gateway, None),
        };
        env.push(("PORT".into(), port.to_string()));
        if let Some(db) = db {
            env.push(("DATABASE_URL".into(), format!("{}/{db}", self.postgres)));
        }
        if matches!(service, "order-service" | "inventory-service") {
            env.push(("KAFKA_BROKERS".into(), self.kafka_brokers.clone()));
        }
        if matches!(service, "order-service" | "api-gateway") {
            env.push(("USER_SERVICE_URL".into(), url(p.users)));
            env.push(("INVENTORY_SERVICE_URL".into(), url(p.inventory)));
        }
        if service == "api-gateway" {
            env.push(("ORDER_SERVICE_URL".into(), url(p.orders)));
        }
        env.extend(self.extra_env.iter().cloned());
        env.extend(
            self.service_env
                .iter()
                .filter(|(s, _, _)| *s == service)
                .map(|(_, k, v)| (k.clone(), v.clone())),
        );
        env
    }
}

impl LocalStack {
    /// Starts the four binaries; does not wait for readiness. A port of 0 in
    /// `options.ports` lets that service take a free one: it is then started
    /// before the services that call it, and its port is read from its
    /// `listening` log line, so tests running side by side never race for a
    /// port chosen free and bound later.
    pub async fn start(options: &StackOptions) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&options.log_dir)
            .with_context(|| format!("creating {}", options.log_dir.display()))?;
        let mut stack = LocalStack {
            children: Vec::new(),
            ports: options.ports,
        };
        // Callees first: a caller's environment names their ports.
        for stage in [
            &["user-service", "inventory-service"][..],
            &["order-service"],
            &["api-gateway"],
        ] {
            let options = StackOptions {
                ports: stack.ports,
                ..options.clone()
            };
            for &name in stage {
                let binary = options.bin_dir.join(name);
                if !binary.exists() {
                    bail!(
                        "{} is missing; build the services first (cargo build --workspace --bins)",
                        binary.display()
                    );
                }
                let env = options.env_for(name);
                let log = options.log_dir.join(format!("{name}.log"));
                let process = spawn(&binary, &env, &log, false)?;
                stack.children.push(Service {
                    name,
                    process,
                    port: port_in(&env),
                    log,
                    binary,
                    env,
                });
            }
            for child in stack.children.iter_mut().filter(|c| c.port == 0) {
                child.port = child.listening_port(Duration::from_secs(90)).await?;
                // A restart must come back on the port its callers know.
                for (k, v) in child.env.iter_mut() {
                    if k == "PORT" {
                        *v = child.port.to_string();
                    }
                }
                let slot = match child.name {
                    "user-service" => &mut stack.ports.users,
                    "order-service" => &mut stack.ports.orders,
                    "inventory-service" => &mut stack.ports.inventory,
                    _ => &mut stack.ports.gateway,
                };
                *slot = child.port;
            }
        }
        Ok(stack)
    }

    pub fn gateway_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.gateway)
    }

    /// Polls every service's `/readyz` until all answer 200, calling
    /// `progress` with each service as it becomes ready. Fails early with the
    /// end of its log when a service exits.
    pub async fn wait_ready(
        &mut self,
        timeout: Duration,
        mut progress: impl FnMut(&str, Duration),
    ) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let started = Instant::now();
        let mut ready = vec![false; self.children.len()];
        while ready.iter().any(|r| !r) {
            for (i, child) in self.children.iter_mut().enumerate() {
                if ready[i] {
                    continue;
                }
                if let Some(status) = child.process.try_wait()? {
                    bail!(
                        "{} exited ({status}) before it was ready; its log ({}):\n{}",
                        child.name,
                        child.log.display(),
                        tail(&child.log, 30)
                    );
                }
                let url = format!("http://127.0.0.1:{}/readyz", child.port);
                if let Ok(r) = client.get(&url).send().await
                    && r.status().is_success()
                {
                    ready[i] = true;
                    progress(child.name, started.elapsed());
                }
            }
            if started.elapsed() > timeout {
                let waiting: Vec<&str> = self
                    .children
                    .iter()
                    .zip(&ready)
                    .filter(|(_, r)| !**r)
                    .map(|(c, _)| c.name)
                    .collect();
                bail!(
                    "not ready after {timeout:?}: {}; see the logs in {}",
                    waiting.join(", "),
                    self.children[0]
                        .log
                        .parent()
                        .map_or(String::new(), |p| p.display().to_string())
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    /// SIGTERM to every service (gateway first), then waits up to `grace`
    /// for each before killing it. Returns the names that had to be killed.
    pub async fn stop(&mut self, grace: Duration) -> Vec<&'static str> {
        let mut killed = Vec::new();
        for child in self.children.iter_mut().rev() {
            if let Some(pid) = child.process.id() {
                let _ = tokio::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
        }
        for child in self.children.iter_mut().rev() {
            if tokio::time::timeout(grace, child.process.wait())
                .await
                .is_err()
            {
                let _ = child.process.kill().await;
                killed.push(child.name);
            }
        }
        killed
    }

    /// Starts one more process of `service` (a replica) with the first
    /// one's environment plus `overrides`, on a port of its own, its log in
    /// `<service>-<n>.log` beside the first one's; returns its port once it
    /// listens. [`LocalStack::service_mut`] and friends keep naming the first.
    pub async fn add_replica(
        &mut self,
        service: &str,
        overrides: &[(&str, String)],
    ) -> anyhow::Result<u16> {
        let n = 1 + self.children.iter().filter(|c| c.name == service).count();
        let first = self.service_mut(service)?;
        let (name, binary) = (first.name, first.binary.clone());
        let mut env = first.env.clone();
        let log = first.log.with_file_name(format!("{name}-{n}.log"));
        for (key, value) in [("PORT", "0".to_owned())]
            .into_iter()
            .chain(overrides.iter().map(|(k, v)| (*k, v.clone())))
        {
            env.retain(|(k, _)| k != key);
            env.push((key.to_owned(), value));
        }
        let mut child = Service {
            name,
            process: spawn(&binary, &env, &log, false)?,
            port: 0,
            log,
            binary,
            env,
        };
        child.port = child.listening_port(Duration::from_secs(90)).await?;
        for (k, v) in child.env.iter_mut() {
            if k == "PORT" {
                *v = child.port.to_string();
            }
        }
        let port = child.port;
        self.children.push(child);
        Ok(port)
    }

    /// One service, by name, to inspect or control (the test harness
    /// signals, awaits and restarts services through it).
    pub fn service_mut(&mut self, service: &str) -> anyhow::Result<&mut Service> {
        self.children
            .iter_mut()
            .find(|c| c.name == service)
            .with_context(|| format!("no service named {service}"))
    }

    /// The process id of each service.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        self.children
            .iter()
            .filter_map(|c| c.process.id().map(|pid| (c.name, pid)))
            .collect()
    }

    /// The log file of each service.
    pub fn logs(&self) -> Vec<(&'static str, &Path)> {
        self.children
            .iter()
            .map(|c| (c.name, c.log.as_path()))
            .collect()
    }
}

/// Drops `database` on the Postgres server `postgres` (no database name in
/// the URL) if it exists, disconnecting whoever still uses it.
/// librdkafka's mock cluster with the order flow's topics, for running the
/// stack without a broker; the cluster serves while the value lives.
pub fn mock_kafka()
-> anyhow::Result<rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>>
{
    let cluster =
        rdkafka::mocking::MockCluster::new(1).context("starting the embedded Kafka cluster")?;
    for topic in order_contract::topics::ALL {
        cluster.create_topic(topic, order_contract::topics::PARTITIONS, 1)?;
    }
    Ok(cluster)
}

pub async fn drop_database(postgres: &str, database: &str) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    anyhow::ensure!(
        database
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "refusing to drop a database named {database:?}"
    );
    let mut conn = sqlx::PgConnection::connect(&format!("{postgres}/postgres"))
        .await
        .with_context(|| format!("connecting to {postgres}"))?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        r#"DROP DATABASE IF EXISTS "{database}" WITH (FORCE)"#
    )))
    .execute(&mut conn)
    .await
    .with_context(|| format!("dropping database {database}"))?;
    Ok(())
}

/// Starts `binary` with exactly `env` (and `PATH`), its output to `log`
/// (appended to, or truncated first); killed when the handle is dropped.
pub fn spawn(
    binary: &Path,
    env: &[(String, String)],
    log: &Path,
    append: bool,
) -> anyhow::Result<tokio::process::Child> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .open(log)?;
    tokio::process::Command::new(binary)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))
}

/// The last `lines` lines of a file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The seed's order, verbatim as the README's `curl` sends it
/// (`order_contract::http::OrderRequest::seed()`, as the test below checks).
pub const SEED_ORDER: &str = r#"{
  "userId": "user123",
  "items": [{"productId": "prod1", "quantity": 2, "price": 25.99},
            {"productId": "prod2", "quantity": 1, "price": 15.50}],
  "totalAmount": 67.48 }"#;

/// What the gateway answered to an order.
#[derive(Debug)]
pub struct Placed {
    pub status: u16,
    pub body: serde_json::Value,
    /// From the `traceparent` response header.
    pub trace_id: Option<String>,
}

/// The trace id of a `traceparent` response header.
pub fn trace_id_of(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split('-').nth(1))
        .map(str::to_owned)
}

/// Posts `body` to the gateway's `/api/orders`.
pub async fn place_order(gateway: &str, body: &str) -> anyhow::Result<Placed> {
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?
        .post(format!("{gateway}/api/orders"))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .with_context(|| format!("POST {gateway}/api/orders"))?;
    let status = response.status().as_u16();
    let trace_id = trace_id_of(response.headers());
    let text = response.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    Ok(Placed {
        status,
        body,
        trace_id,
    })
}

/// Polls `GET /api/orders/{id}` until it leaves `pending` (bounded).
pub async fn settled_status(gateway: &str, order_id: &str, timeout: Duration) -> String {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    loop {
        let status = match client
            .get(format!("{gateway}/api/orders/{order_id}"))
            .send()
            .await
        {
            Ok(r) => r
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|b| b["order"]["status"].as_str().map(str::to_owned))
                .unwrap_or_default(),
            Err(_) => String::new(),
        };
        if (!status.is_empty() && status != "pending") || Instant::now() >= deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod seed_tests {
    #[test]
    fn the_seed_order_is_the_contracts_seed() {
        let verbatim: serde_json::Value = serde_json::from_str(super::SEED_ORDER).unwrap();
        let typed: serde_json::Value =
            serde_json::from_str(&order_contract::http::OrderRequest::seed().to_json()).unwrap();
        assert_eq!(verbatim, typed);
    }
}
