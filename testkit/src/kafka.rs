//! Apache Kafka as processes of one test's own: a single KRaft node with
//! docker-compose.yml's settings, or a cluster of three combined
//! broker/controller nodes with `deploy/k8s-kafka-cluster`'s (replication factor 3,
//! `min.insync.replicas=2`, unclean leader election off). Topics are created
//! the way compose's `kafka-init` does, with the cluster's default
//! replication factor. The jars come from `KAFKA_LIBS`, else from where
//! `scripts/test.sh` installed them from Maven Central ([`crate::installed`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::process::send_signal as signal;

/// Running Kafka nodes; killed when dropped.
pub struct Kafka {
    nodes: Vec<Node>,
    libs: PathBuf,
}

/// One KRaft node (broker and controller in one process).
struct Node {
    /// `node.id`, from 1.
    id: i32,
    process: Option<tokio::process::Child>,
    /// The PLAINTEXT listener.
    port: u16,
    /// What the broker tells clients to connect to: its own port, or the
    /// port of a proxy in front of it.
    advertised: u16,
    controller: u16,
    dir: PathBuf,
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

use tracing_common_testing::free_port;

/// Log4j 2 settings for the broker: warnings, plus the lines the tests
/// wait for or read (started, controller elections, group changes).
const LOG4J2: &str = "\
status = error
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = OUT
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = info
logger.group.name = org.apache.kafka.coordinator.group
logger.group.level = info
logger.quorum.name = org.apache.kafka.raft.QuorumState
logger.quorum.level = info
";

impl Kafka {
    /// One node, with no topics yet ([`Kafka::create_topics`]).
    /// `advertised`: the port clients must use (a proxy's), or None for the
    /// broker's own.
    pub async fn start(dir: &Path, advertised: Option<u16>) -> anyhow::Result<Kafka> {
        Self::start_nodes(dir, 1, advertised).await
    }

    /// `size` combined broker/controller nodes forming one cluster, with
    /// replication factor `size` and `min.insync.replicas` `size - 1`.
    pub async fn cluster(dir: &Path, size: usize) -> anyhow::Result<Kafka> {
        anyhow::ensure!(size >= 3, "a cluster needs three nodes or more");
        Self::start_nodes(dir, size, None).await
    }

    /// Chooses free ports, formats every node's storage and starts them all
    /// (a KRaft quorum elects its leader only once a majority runs). A port
    /// taken between choosing and binding it makes a node exit with a bind
    /// error; the whole cluster is then started again on new ports.
    async fn start_nodes(
        dir: &Path,
        size: usize,
        advertised: Option<u16>,
    ) -> anyhow::Result<Kafka> {
        let libs = libs();
        let mut last = None;
        for attempt in 0..5 {
            let mut kafka = Kafka {
                nodes: (1..=size as i32)
                    .map(|id| {
                        let port = free_port();
                        Node {
                            id,
                            process: None,
                            port,
                            advertised: advertised.unwrap_or(port),
                            controller: free_port(),
                            dir: dir.join(format!("kafka-{attempt}-node{id}")),
                        }
                    })
                    .collect(),
                libs: libs.clone(),
            };
            for i in 0..size {
                kafka.format(i).await?;
            }
            match kafka.launch_all().await {
                Ok(()) => return Ok(kafka),
                Err(e)
                    if kafka
                        .nodes
                        .iter()
                        .any(|n| n.log().contains("Address already in use")) =>
                {
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap()).context("Kafka found its ports taken five times")
    }

    /// Every node's `127.0.0.1:<advertised>`, for `KAFKA_BROKERS`.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.advertised))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The first node's own PLAINTEXT port (what a proxy forwards to).
    pub fn port(&self) -> u16 {
        self.nodes[0].port
    }

    /// Every node's output so far.
    pub fn log(&self) -> String {
        self.nodes.iter().map(Node::log).collect()
    }

    /// The node ids, from 1.
    pub fn node_ids(&self) -> Vec<i32> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    fn node(&self, id: i32) -> anyhow::Result<&Node> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .with_context(|| format!("no Kafka node {id}"))
    }

    fn java(&self, node: &Node, main: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("java");
        command
            .arg("-Xms128m")
            .arg("-Xmx512m")
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                node.dir.join("log4j2.properties").display()
            ))
            .arg("-cp")
            .arg(format!("{}/*", self.libs.display()))
            .arg(main)
            .stdin(std::process::Stdio::null());
        command
    }

    async fn format(&self, i: usize) -> anyhow::Result<()> {
        let node = &self.nodes[i];
        let size = self.nodes.len();
        let voters = self
            .nodes
            .iter()
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller))
            .collect::<Vec<_>>()
            .join(",");
        let (replication, min_isr) = if size == 1 { (1, 1) } else { (size, size - 1) };
        std::fs::create_dir_all(node.dir.join("data"))?;
        std::fs::write(
            node.dir.join("server.properties"),
            format!(
                "# docker-compose.yml's kafka service (one node) or deploy/k8s-kafka-cluster's\n\
                 # (three), on loopback ports of this test's own.\n\
                 process.roles=broker,controller\n\
                 node.id={id}\n\
                 controller.quorum.voters={voters}\n\
                 listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
                 advertised.listeners=PLAINTEXT://127.0.0.1:{advertised}\n\
                 listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n\
                 controller.listener.names=CONTROLLER\n\
                 inter.broker.listener.name=PLAINTEXT\n\
                 default.replication.factor={replication}\n\
                 min.insync.replicas={min_isr}\n\
                 offsets.topic.replication.factor={replication}\n\
                 transaction.state.log.replication.factor={replication}\n\
                 transaction.state.log.min.isr={min_isr}\n\
                 unclean.leader.election.enable=false\n\
                 group.initial.rebalance.delay.ms=0\n\
                 auto.create.topics.enable=false\n\
                 log.dirs={data}\n",
                id = node.id,
                port = node.port,
                controller = node.controller,
                advertised = node.advertised,
                data = node.dir.join("data").display(),
            ),
        )?;
        std::fs::write(node.dir.join("log4j2.properties"), LOG4J2)?;
        let output = self
            .java(node, "kafka.tools.StorageTool")
            .args(["format", "-t", "MkU3OEVBNTcwNTJENDM2Qk", "-c"])
            .arg(node.dir.join("server.properties"))
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

    /// Starts every node, then waits (bounded) until each says it started.
    async fn launch_all(&mut self) -> anyhow::Result<()> {
        let mut before = Vec::new();
        for i in 0..self.nodes.len() {
            before.push(self.nodes[i].log().matches(STARTED).count());
            self.spawn(i)?;
        }
        for (i, before) in before.into_iter().enumerate() {
            self.wait_started(i, before).await?;
        }
        Ok(())
    }

    /// Starts node `i` on its data directory; appends to its log.
    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &self.nodes[i];
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.log_path())?;
        let process = self
            .java(node, "kafka.Kafka")
            .arg(node.dir.join("server.properties"))
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .context("starting Kafka")?;
        self.nodes[i].process = Some(process);
        Ok(())
    }

    async fn wait_started(&mut self, i: usize, before: usize) -> anyhow::Result<()> {
        let started = Instant::now();
        let node = &mut self.nodes[i];
        loop {
            if node.log().matches(STARTED).count() > before {
                return Ok(());
            }
            let process = node.process.as_mut().context("Kafka is not running")?;
            if let Some(status) = process.try_wait()? {
                node.process = None;
                bail!(
                    "Kafka node {} exited ({status}) while starting; its log ({}):\n{}",
                    node.id,
                    node.log_path().display(),
                    tail(&node.log(), 20)
                );
            }
            if started.elapsed() > Duration::from_secs(90) {
                bail!(
                    "Kafka node {} did not start within 90 s; see {}",
                    node.id,
                    node.log_path().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn admin_config(&self) -> rdkafka::ClientConfig {
        let mut config = rdkafka::ClientConfig::new();
        let own: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.process.is_some())
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        config.set("bootstrap.servers", own.join(","));
        config
    }

    /// Creates the topics (`order_contract::topics`) as compose's
    /// `kafka-init` does: the cluster's default replication factor.
    /// Clients bootstrap through the advertised port, so a proxy there must
    /// forward first.
    pub async fn create_topics(&self) -> anyhow::Result<()> {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        use rdkafka::client::DefaultClientContext;
        let admin: AdminClient<DefaultClientContext> = self.admin_config().create()?;
        let topics: Vec<NewTopic> = order_contract::topics::ALL
            .iter()
            .map(|t| {
                NewTopic::new(
                    t,
                    order_contract::topics::PARTITIONS,
                    TopicReplication::Fixed(-1),
                )
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for result in admin.create_topics(&topics, &options).await? {
            result.map_err(|(topic, code)| anyhow::anyhow!("creating {topic}: {code}"))?;
        }
        Ok(())
    }

    /// For each partition of `topic`: its leader's node id and replica
    /// count (-1 and 0 while it has none), read from the cluster's metadata.
    pub fn partitions(&self, topic: &str) -> anyhow::Result<Vec<(i32, i32, usize)>> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = self.admin_config().create()?;
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        Ok(metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions())
            .map(|p| (p.id(), p.leader(), p.replicas().len()))
            .collect())
    }

    /// The node that leads the KRaft controller quorum now: of the running
    /// nodes, the one whose log shows the latest election it won.
    pub fn controller_leader(&self) -> anyhow::Result<i32> {
        self.nodes
            .iter()
            .filter(|n| n.process.is_some())
            .filter_map(|n| {
                let log = n.log();
                let epoch = log
                    .lines()
                    .filter(|l| l.contains("Completed transition to Leader"))
                    .filter_map(|l| {
                        let rest = &l[l.find("epoch=")? + 6..];
                        rest.split(|c: char| !c.is_ascii_digit())
                            .next()?
                            .parse::<u64>()
                            .ok()
                    })
                    .max()?;
                Some((epoch, n.id))
            })
            .max()
            .map(|(_, id)| id)
            .context("no running Kafka node says it leads the controller quorum")
    }

    /// For each partition of `topic`: the offset `group` committed (-1 if
    /// none) and the partition's end, read without joining the group.
    pub fn lag(&self, group: &str, topic: &str) -> anyhow::Result<Vec<(i32, i64, i64)>> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = self.admin_config().set("group.id", group).create()?;
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

    /// Every record of `topic` from its start to its end now, as (key,
    /// payload), read without a group (bounded: 60 s).
    pub fn records(&self, topic: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        use rdkafka::Message as _;
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = self
            .admin_config()
            .set("group.id", "testkit-reader")
            .set("enable.auto.commit", "false")
            .create()?;
        let timeout = Duration::from_secs(10);
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        let mut assignment = rdkafka::TopicPartitionList::new();
        let mut remaining = 0;
        let mut ends = std::collections::HashMap::new();
        for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
            if high > low {
                assignment.add_partition_offset(topic, p.id(), rdkafka::Offset::Offset(low))?;
                remaining += high - low;
                ends.insert(p.id(), high);
            }
        }
        consumer.assign(&assignment)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut out = Vec::new();
        while remaining > 0 {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{remaining} records of {topic} not read within 60 s"
            );
            let Some(message) = consumer.poll(Duration::from_millis(500)) else {
                continue;
            };
            let message = message?;
            if message.offset() < ends[&message.partition()] {
                remaining -= 1;
                out.push((
                    String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                    message.payload().unwrap_or_default().to_vec(),
                ));
            }
        }
        Ok(out)
    }

    /// SIGSTOP on every node: they keep their connections open and answer nothing.
    pub async fn freeze(&self) -> anyhow::Result<()> {
        for node in &self.nodes {
            signal(node.pid()?, "STOP").await?;
        }
        Ok(())
    }

    /// SIGCONT after [`Kafka::freeze`].
    pub async fn thaw(&self) -> anyhow::Result<()> {
        for node in &self.nodes {
            signal(node.pid()?, "CONT").await?;
        }
        Ok(())
    }

    /// SIGKILL of every node (no shutdown, no flush), waiting for each to exit.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        for id in self.node_ids() {
            self.kill_node(id).await?;
        }
        Ok(())
    }

    /// SIGKILL of node `id`, then waits for it to exit.
    pub async fn kill_node(&mut self, id: i32) -> anyhow::Result<()> {
        let node = self.nodes.iter_mut().find(|n| n.id == id);
        let node = node.with_context(|| format!("no Kafka node {id}"))?;
        let mut process = node.process.take().context("Kafka is not running")?;
        process.kill().await?;
        Ok(())
    }

    /// Starts every stopped node again on the same ports and data.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        for id in self.node_ids() {
            if self.node(id)?.process.is_none() {
                self.restart_node(id).await?;
            }
        }
        Ok(())
    }

    /// Starts node `id` again on the same ports and data directory. The
    /// killed node's listening sockets may linger a moment, so a bind
    /// failure is retried for up to 30 s.
    pub async fn restart_node(&mut self, id: i32) -> anyhow::Result<()> {
        let i = self
            .nodes
            .iter()
            .position(|n| n.id == id)
            .with_context(|| format!("no Kafka node {id}"))?;
        anyhow::ensure!(
            self.nodes[i].process.is_none(),
            "Kafka node {id} is still running"
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.nodes[i].log();
            let binds_failed = log.matches("Address already in use").count();
            let before = log.matches(STARTED).count();
            self.spawn(i)?;
            match self.wait_started(i, before).await {
                Ok(()) => return Ok(()),
                Err(_)
                    if Instant::now() < deadline
                        && self.nodes[i]
                            .log()
                            .matches("Address already in use")
                            .count()
                            > binds_failed =>
                {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// What a node logs once it serves.
const STARTED: &str = "Kafka Server started";

impl Node {
    fn log_path(&self) -> PathBuf {
        self.dir.join("kafka.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn pid(&self) -> anyhow::Result<u32> {
        self.process
            .as_ref()
            .and_then(tokio::process::Child::id)
            .context("Kafka is not running")
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
