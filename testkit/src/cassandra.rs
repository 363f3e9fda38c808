//! Apache Cassandra as a process of one test's own: one node on loopback
//! ports of its own, with a `cassandra.yaml` written here (Cassandra refuses
//! unknown keys, so it holds only what a single node needs), for Jaeger to
//! store traces in (`deploy/jaeger/cassandra.yaml`). The jars come from
//! `CASSANDRA_LIBS`, else from where `scripts/test.sh` installed them from
//! Maven Central ([`crate::installed`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::process::send_signal as signal;

/// A running node; killed when dropped.
pub struct Cassandra {
    process: Option<tokio::process::Child>,
    /// CQL (native transport), what Jaeger connects to.
    pub port: u16,
    storage_port: u16,
    dir: PathBuf,
    libs: PathBuf,
}

/// The directory of Cassandra's jars (`CASSANDRA_LIBS`, else the one
/// installation `scripts/test.sh` made), with a clear failure when there is none.
pub fn libs() -> PathBuf {
    crate::installed::find("CASSANDRA_LIBS", "cassandra-", "libs").unwrap_or_else(|e| panic!("{e}"))
}

/// The module flags Cassandra 5.0 needs on Java 17, from its own
/// `conf/jvm17-server.options` (apache/cassandra, cassandra-5.0 branch).
const JVM17: &[&str] = &[
    "-Djdk.attach.allowAttachSelf=true",
    "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports=java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports=java.sql/java.sql=ALL-UNNAMED",
    "--add-exports=java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
];

/// INFO from Cassandra itself to `logs/system.log`, nothing on the console.
const LOGBACK: &str = r#"<configuration scan="false">
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>${cassandra.logdir}/system.log</file>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <logger name="org.apache.cassandra" level="INFO"/>
  <root level="WARN"><appender-ref ref="FILE"/></root>
</configuration>
"#;

/// What the node logs once it serves CQL clients.
const READY: &str = "Startup complete";

use tracing_common_testing::free_port;

impl Cassandra {
    /// Writes a node's configuration under `dir` and starts it, waiting
    /// (bounded) until it serves CQL. A port taken between choosing and
    /// binding it makes the node exit; it is then started on new ports.
    pub async fn start(dir: &Path) -> anyhow::Result<Cassandra> {
        let libs = libs();
        let mut last = None;
        for attempt in 0..5 {
            let mut node = Cassandra {
                process: None,
                port: free_port(),
                storage_port: free_port(),
                dir: dir.join(format!("cassandra-{attempt}")),
                libs: libs.clone(),
            };
            node.configure()?;
            match node.launch().await {
                Ok(()) => return Ok(node),
                Err(e) if node.log().contains("Address already in use") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap()).context("Cassandra found its ports taken five times")
    }

    /// `["127.0.0.1:<port>"]`, for `JAEGER_CASSANDRA_SERVERS`.
    pub fn servers(&self) -> String {
        format!("[127.0.0.1:{}]", self.port)
    }

    fn configure(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(self.dir.join("logs"))?;
        let d = self.dir.display();
        std::fs::write(
            self.dir.join("cassandra.yaml"),
            format!(
                "# One node on loopback ports of this test's own.\n\
                 cluster_name: tracing-reference\n\
                 num_tokens: 1\n\
                 partitioner: org.apache.cassandra.dht.Murmur3Partitioner\n\
                 endpoint_snitch: SimpleSnitch\n\
                 seed_provider:\n\
                 \x20 - class_name: org.apache.cassandra.locator.SimpleSeedProvider\n\
                 \x20   parameters:\n\
                 \x20     - seeds: \"127.0.0.1:{storage}\"\n\
                 listen_address: 127.0.0.1\n\
                 rpc_address: 127.0.0.1\n\
                 storage_port: {storage}\n\
                 native_transport_port: {port}\n\
                 start_native_transport: true\n\
                 authenticator: AllowAllAuthenticator\n\
                 authorizer: AllowAllAuthorizer\n\
                 role_manager: CassandraRoleManager\n\
                 data_file_directories: [\"{d}/data\"]\n\
                 commitlog_directory: {d}/commitlog\n\
                 saved_caches_directory: {d}/saved_caches\n\
                 hints_directory: {d}/hints\n\
                 cdc_raw_directory: {d}/cdc_raw\n\
                 commitlog_sync: periodic\n\
                 commitlog_sync_period: 10000ms\n\
                 storage_compatibility_mode: NONE\n",
                storage = self.storage_port,
                port = self.port,
            ),
        )?;
        std::fs::write(self.dir.join("logback.xml"), LOGBACK)?;
        Ok(())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("logs/system.log")
    }

    /// The node's log so far (its console output too).
    pub fn log(&self) -> String {
        let console =
            std::fs::read_to_string(self.dir.join("logs/console.log")).unwrap_or_default();
        std::fs::read_to_string(self.log_path()).unwrap_or_default() + &console
    }

    /// Starts the node on its data directory and waits (bounded: 180 s)
    /// until it says it serves CQL.
    async fn launch(&mut self) -> anyhow::Result<()> {
        let before = self.log().matches(READY).count();
        let console = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("logs/console.log"))?;
        let mut process = tokio::process::Command::new("java")
            .args(["-Xms128m", "-Xmx256m", "-XX:+ExitOnOutOfMemoryError"])
            .args(JVM17)
            .arg(format!(
                "-Dcassandra.config=file://{}",
                self.dir.join("cassandra.yaml").display()
            ))
            .arg("-Dcassandra-foreground=true")
            .arg(format!("-Dcassandra.storagedir={}", self.dir.display()))
            .arg(format!(
                "-Dcassandra.logdir={}",
                self.dir.join("logs").display()
            ))
            .arg(format!(
                "-Dlogback.configurationFile={}",
                self.dir.join("logback.xml").display()
            ))
            .arg("-cp")
            .arg(format!("{}/*", self.libs.display()))
            .arg("org.apache.cassandra.service.CassandraDaemon")
            .stdin(std::process::Stdio::null())
            .stdout(console.try_clone()?)
            .stderr(console)
            .kill_on_drop(true)
            .spawn()
            .context("starting Cassandra (it needs Java 17 or later on PATH)")?;
        let started = Instant::now();
        loop {
            if self.log().matches(READY).count() > before {
                self.process = Some(process);
                return Ok(());
            }
            if let Some(status) = process.try_wait()? {
                bail!(
                    "Cassandra exited ({status}) while starting; its log ({}):\n{}",
                    self.dir.display(),
                    tail(&self.log(), 30)
                );
            }
            if started.elapsed() > Duration::from_secs(180) {
                bail!(
                    "Cassandra did not start within 180 s; see {}",
                    self.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn pid(&self) -> anyhow::Result<u32> {
        self.process
            .as_ref()
            .and_then(tokio::process::Child::id)
            .context("Cassandra is not running")
    }

    /// The node's resident memory (kB) and the size of its data,
    /// commit log and caches on disk (bytes actually used).
    pub async fn usage(&self) -> anyhow::Result<(u64, u64)> {
        let rss = tokio::process::Command::new("ps")
            .args(["-o", "rss=", "-p", &self.pid()?.to_string()])
            .output()
            .await?;
        let rss = String::from_utf8_lossy(&rss.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        let du = tokio::process::Command::new("du")
            .args(["-s", "-B1"])
            .args(["data", "commitlog", "saved_caches", "hints"].map(|d| self.dir.join(d)))
            .output()
            .await?;
        let disk = String::from_utf8_lossy(&du.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        Ok((rss, disk))
    }

    /// SIGSTOP: connections stay open and nothing answers.
    pub async fn freeze(&self) -> anyhow::Result<()> {
        signal(self.pid()?, "STOP").await
    }

    /// SIGCONT after [`Cassandra::freeze`].
    pub async fn thaw(&self) -> anyhow::Result<()> {
        signal(self.pid()?, "CONT").await
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
