//! Apache Kafka as a process: a single-node KRaft broker of one test's own,
//! with docker-compose.yml's settings (auto topic creation off, replication
//! factor 1, no initial rebalance delay), its topics created the way
//! compose's `kafka-init` does. The jars come from `KAFKA_LIBS`, else from
//! where `scripts/test.sh` installed them from Maven Central ([`crate::installed`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::process::send_signal as signal;

/// A running broker; killed when dropped.
pub struct Kafka {
    process: Option<tokio::process::Child>,
    /// The PLAINTEXT listener.
    pub port: u16,
    /// What the broker tells clients to connect to: its own port, or the
    /// port of a proxy in front of it.
    pub advertised: u16,
    controller: u16,
    dir: PathBuf,
    libs: PathBuf,
}

/// The directory of Kafka's jars (`KAFKA_LIBS`, else the one installation
/// `scripts/test.sh` made), with a clear failure when there is none.
pub fn libs() -> PathBuf {
    let dir =
        crate::installed::find("KAFKA_LIBS", "kafka-", "libs").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        dir.join(format!("kafka_2.13-{}.jar", version(&dir)))
            .exists(),
        "KAFKA_LIBS={} holds no Kafka broker jar",
        dir.display()
    );
    dir
}

/// The Kafka version of the jars in `libs` (from `kafka-clients-<v>.jar`).
fn version(libs: &Path) -> String {
    std::fs::read_dir(libs)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .find_map(|n| {
            n.strip_prefix("kafka-clients-")?
                .strip_suffix(".jar")
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Kafka {
    /// Formats a data directory under `dir` and starts a broker on it, with
    /// no topics yet ([`Kafka::create_topics`]).
    /// `advertised`: the port clients must use (a proxy's), or None for the
    /// broker's own. A port taken between choosing and binding it makes the
    /// broker exit with a bind error; it is then started again on new ports.
    pub async fn start(dir: &Path, advertised: Option<u16>) -> anyhow::Result<Kafka> {
        let libs = libs();
        let mut last = None;
        for attempt in 0..5 {
            let port = free_port();
            let mut kafka = Kafka {
                process: None,
                port,
                advertised: advertised.unwrap_or(port),
                controller: free_port(),
                dir: dir.join(format!("kafka-{attempt}")),
                libs: libs.clone(),
            };
            kafka.format().await?;
            match kafka.launch().await {
                Ok(()) => return Ok(kafka),
                Err(e) if kafka.log().contains("Address already in use") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap()).context("Kafka found its ports taken five times")
    }

    /// `127.0.0.1:<advertised>`, for `KAFKA_BROKERS`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.advertised)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("kafka.log")
    }

    /// The broker's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn java(&self, main: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("java");
        command
            .arg("-Xms128m")
            .arg("-Xmx512m")
            .arg(format!(
                "-Dlog4j.configuration=file:{}",
                self.dir.join("log4j.properties").display()
            ))
            .arg("-cp")
            .arg(format!("{}/*", self.libs.display()))
            .arg(main)
            .stdin(std::process::Stdio::null());
        command
    }

    async fn format(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(self.dir.join("data"))?;
        std::fs::write(
            self.dir.join("server.properties"),
            format!(
                "# docker-compose.yml's kafka service, on loopback ports of this test's own.\n\
                 process.roles=broker,controller\n\
                 node.id=1\n\
                 controller.quorum.voters=1@127.0.0.1:{controller}\n\
                 listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
                 advertised.listeners=PLAINTEXT://127.0.0.1:{advertised}\n\
                 listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n\
                 controller.listener.names=CONTROLLER\n\
                 inter.broker.listener.name=PLAINTEXT\n\
                 offsets.topic.replication.factor=1\n\
                 transaction.state.log.replication.factor=1\n\
                 transaction.state.log.min.isr=1\n\
                 group.initial.rebalance.delay.ms=0\n\
                 auto.create.topics.enable=false\n\
                 log.dirs={data}\n",
                controller = self.controller,
                port = self.port,
                advertised = self.advertised,
                data = self.dir.join("data").display(),
            ),
        )?;
        std::fs::write(
            self.dir.join("log4j.properties"),
            "log4j.rootLogger=WARN, stdout\n\
             log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n\
             log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n\
             log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n\
             log4j.logger.kafka.server.KafkaRaftServer=INFO\n\
             log4j.logger.kafka.coordinator.group=INFO\n\
             log4j.logger.org.apache.kafka.coordinator.group=INFO\n",
        )?;
        let output = self
            .java("kafka.tools.StorageTool")
            .args(["format", "-t", "MkU3OEVBNTcwNTJENDM2Qk", "-c"])
            .arg(self.dir.join("server.properties"))
            .output()
            .await
            .context("running java (Kafka needs Java 17 or later on PATH)")?;
        if !output.status.success() {
            bail!(
                "formatting Kafka's storage failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// Starts the broker on its data directory and waits (bounded) until it
    /// says it started; appends to its log.
    async fn launch(&mut self) -> anyhow::Result<()> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let before = self.log().matches("Kafka Server started").count();
        let mut process = self
            .java("kafka.Kafka")
            .arg(self.dir.join("server.properties"))
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .context("starting Kafka")?;
        let started = Instant::now();
        loop {
            if self.log().matches("Kafka Server started").count() > before {
                self.process = Some(process);
                return Ok(());
            }
            if let Some(status) = process.try_wait()? {
                bail!(
                    "Kafka exited ({status}) while starting; its log ({}):\n{}",
                    self.log_path().display(),
                    tail(&self.log(), 20)
                );
            }
            if started.elapsed() > Duration::from_secs(90) {
                bail!(
                    "Kafka did not start within 90 s; see {}",
                    self.log_path().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Creates the topics (`order_contract::topics`) as compose's `kafka-init` does. Clients bootstrap
    /// through the advertised port, so a proxy there must forward first.
    pub async fn create_topics(&self) -> anyhow::Result<()> {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        use rdkafka::client::DefaultClientContext;
        let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", format!("127.0.0.1:{}", self.port))
            .create()?;
        let topics: Vec<NewTopic> = order_contract::topics::ALL
            .iter()
            .map(|t| {
                NewTopic::new(
                    t,
                    order_contract::topics::PARTITIONS,
                    TopicReplication::Fixed(1),
                )
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for result in admin.create_topics(&topics, &options).await? {
            result.map_err(|(topic, code)| anyhow::anyhow!("creating {topic}: {code}"))?;
        }
        Ok(())
    }

    /// For each partition of `topic`: the offset `group` committed (-1 if
    /// none) and the partition's end, read without joining the group.
    pub fn lag(&self, group: &str, topic: &str) -> anyhow::Result<Vec<(i32, i64, i64)>> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", format!("127.0.0.1:{}", self.port))
            .set("group.id", group)
            .create()?;
        let timeout = Duration::from_secs(5);
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        let mut partitions = rdkafka::TopicPartitionList::new();
        for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
            partitions.add_partition(topic, p.id());
        }
        let committed = consumer.committed_offsets(partitions, timeout)?;
        let mut out = Vec::new();
        for e in committed.elements() {
            let (_, high) = consumer.fetch_watermarks(topic, e.partition(), timeout)?;
            out.push((e.partition(), e.offset().to_raw().unwrap_or(-1), high));
        }
        Ok(out)
    }

    fn pid(&self) -> anyhow::Result<u32> {
        self.process
            .as_ref()
            .and_then(tokio::process::Child::id)
            .context("Kafka is not running")
    }

    /// SIGSTOP: the broker keeps its connections open and answers nothing.
    pub async fn freeze(&self) -> anyhow::Result<()> {
        signal(self.pid()?, "STOP").await
    }

    /// SIGCONT after [`Kafka::freeze`].
    pub async fn thaw(&self) -> anyhow::Result<()> {
        signal(self.pid()?, "CONT").await
    }

    /// SIGKILL (no shutdown, no flush by the broker), then waits for it to exit.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        let mut process = self.process.take().context("Kafka is not running")?;
        process.kill().await?;
        Ok(())
    }

    /// Starts the broker again on the same ports and data directory. The
    /// killed broker's listening sockets may linger a moment, so a bind
    /// failure is retried for up to 30 s.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.process.is_none(), "Kafka is still running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let binds_failed = self.log().matches("Address already in use").count();
            match self.launch().await {
                Ok(()) => return Ok(()),
                Err(_)
                    if Instant::now() < deadline
                        && self.log().matches("Address already in use").count() > binds_failed =>
                {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
