//! Jaeger v2 as a process, running the repository's own
//! `deploy/jaeger/config.yaml` (the file compose mounts) with its addresses
//! and strategies path overridden through the environment variables that
//! file reads, so tests run Jaegers side by side on loopback ports of their
//! own. The binary comes from `JAEGER_BIN`, else from where `scripts/test.sh`
//! built it from the Go module proxy ([`crate::installed`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The repository's `deploy/` directory.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The Jaeger binary (`JAEGER_BIN`, else the one `scripts/test.sh` built),
/// with a clear failure when there is none.
pub fn binary() -> PathBuf {
    let bin =
        crate::installed::find("JAEGER_BIN", "jaeger-", "jaeger").unwrap_or_else(|e| panic!("{e}"));
    assert!(bin.exists(), "JAEGER_BIN={} does not exist", bin.display());
    bin
}

/// The ports one Jaeger listens on.
#[derive(Debug, Clone, Copy)]
pub struct JaegerPorts {
    pub otlp_grpc: u16,
    pub otlp_http: u16,
    pub query_http: u16,
    pub query_grpc: u16,
    pub sampling_http: u16,
    pub sampling_grpc: u16,
    pub health: u16,
    pub metrics: u16,
    /// The span metrics (RED) Prometheus scrapes.
    pub spanmetrics: u16,
}

impl JaegerPorts {
    fn free() -> JaegerPorts {
        let mut held = Vec::new();
        let mut next = || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
            let port = l.local_addr().unwrap().port();
            held.push(l);
            port
        };
        JaegerPorts {
            otlp_grpc: next(),
            otlp_http: next(),
            query_http: next(),
            query_grpc: next(),
            sampling_http: next(),
            sampling_grpc: next(),
            health: next(),
            metrics: next(),
            spanmetrics: next(),
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        let at = |port: u16| format!("127.0.0.1:{port}");
        vec![
            ("JAEGER_OTLP_GRPC_ENDPOINT", at(self.otlp_grpc)),
            ("JAEGER_OTLP_HTTP_ENDPOINT", at(self.otlp_http)),
            ("JAEGER_QUERY_HTTP_ENDPOINT", at(self.query_http)),
            ("JAEGER_QUERY_GRPC_ENDPOINT", at(self.query_grpc)),
            ("JAEGER_SAMPLING_HTTP_ENDPOINT", at(self.sampling_http)),
            ("JAEGER_SAMPLING_GRPC_ENDPOINT", at(self.sampling_grpc)),
            ("JAEGER_HEALTH_ENDPOINT", at(self.health)),
            ("JAEGER_METRICS_HOST", "127.0.0.1".into()),
            ("JAEGER_METRICS_PORT", self.metrics.to_string()),
            ("JAEGER_SPANMETRICS_ENDPOINT", at(self.spanmetrics)),
        ]
    }
}

/// Starts the Jaeger binary with `options` on `ports`, its output to `log`.
fn spawn(
    options: &JaegerOptions,
    ports: &JaegerPorts,
    log: &Path,
) -> anyhow::Result<tokio::process::Child> {
    let out = std::fs::File::create(log)?;
    let mut command = tokio::process::Command::new(binary());
    command
        .arg(format!("--config={}", options.config.display()))
        .args(
            options
                .extra_configs
                .iter()
                .map(|c| format!("--config={}", c.display())),
        )
        .envs(ports.env())
        .env("JAEGER_SAMPLING_STRATEGIES_FILE", &options.strategies)
        .envs(options.env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .kill_on_drop(true);
    if let Some(every) = options.reload_interval {
        command.env(
            "JAEGER_SAMPLING_RELOAD_INTERVAL",
            format!("{}ms", every.as_millis()),
        );
    }
    command.spawn().context("starting Jaeger")
}

/// How to start a [`Jaeger`].
#[derive(Debug, Clone)]
pub struct JaegerOptions {
    /// The config file (default: the repository's `deploy/jaeger/config.yaml`).
    pub config: PathBuf,
    /// Config files given after it, whose settings override it (such as
    /// `deploy/jaeger/cassandra.yaml`).
    pub extra_configs: Vec<PathBuf>,
    /// The sampling strategies file (default: `deploy/jaeger/sampling-strategies.json`).
    pub strategies: PathBuf,
    /// How often Jaeger re-reads the strategies (default: the config's 10 s).
    pub reload_interval: Option<Duration>,
    /// More of the variables the config file reads (tail sampling, the
    /// Prometheus its Monitor tab queries), after the ports.
    pub env: Vec<(String, String)>,
}

impl Default for JaegerOptions {
    fn default() -> Self {
        JaegerOptions {
            config: deploy_dir().join("jaeger/config.yaml"),
            extra_configs: Vec::new(),
            strategies: deploy_dir().join("jaeger/sampling-strategies.json"),
            reload_interval: None,
            env: Vec::new(),
        }
    }
}

/// A running Jaeger; killed when dropped.
pub struct Jaeger {
    _process: tokio::process::Child,
    pub ports: JaegerPorts,
    log: PathBuf,
    options: JaegerOptions,
    dir: PathBuf,
    starts: usize,
}

impl Jaeger {
    /// Starts Jaeger with `options`, logging to `<dir>/jaeger.log`, and waits
    /// (bounded) until its health endpoint answers 200. A port taken between
    /// choosing and binding it makes Jaeger exit with a bind error; it is
    /// then started again on new ports.
    pub async fn start(dir: &Path, options: &JaegerOptions) -> anyhow::Result<Jaeger> {
        std::fs::create_dir_all(dir)?;
        let mut last = None;
        for attempt in 0..5 {
            let ports = JaegerPorts::free();
            let log = dir.join(format!("jaeger-{attempt}.log"));
            let mut jaeger = Jaeger {
                _process: spawn(options, &ports, &log)?,
                ports,
                log,
                options: options.clone(),
                dir: dir.to_owned(),
                starts: 1,
            };
            match jaeger.wait_healthy(Duration::from_secs(60)).await {
                Ok(()) => return Ok(jaeger),
                Err(e) if jaeger.log_text().contains("address already in use") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap()).context("Jaeger found its ports taken five times")
    }

    /// SIGTERM, then waits (at most 30 s) for Jaeger to exit.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(pid) = self._process.id() {
            crate::process::send_signal(pid, "TERM").await?;
        }
        tokio::time::timeout(Duration::from_secs(30), self._process.wait())
            .await
            .context("Jaeger did not stop within 30 s of SIGTERM")??;
        Ok(())
    }

    /// Starts the stopped Jaeger again with the same options and ports (its
    /// log in a new file), and waits until it is healthy.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self._process.try_wait()?.is_some(),
            "Jaeger is still running"
        );
        self.starts += 1;
        self.log = self.dir.join(format!("jaeger-restart-{}.log", self.starts));
        self._process = spawn(&self.options, &self.ports, &self.log)?;
        self.wait_healthy(Duration::from_secs(60)).await
    }

    /// `http://127.0.0.1:<port>/metrics`: Jaeger's own metrics.
    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.ports.metrics)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls the health endpoint the compose health check and the k8s probes
    /// use until it answers 200 from this process (its log says it is ready).
    async fn wait_healthy(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let started = Instant::now();
        loop {
            if let Some(status) = self._process.try_wait()? {
                bail!(
                    "Jaeger exited ({status}) while starting; its log ({}):\n{}",
                    self.log.display(),
                    self.log_text()
                );
            }
            // The log line tells this Jaeger from another process that might
            // hold the port.
            if self.log_text().contains("Everything is ready")
                && let Ok(r) = client.get(self.health_url()).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if started.elapsed() > timeout {
                bail!(
                    "Jaeger was not healthy within {timeout:?}; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://127.0.0.1:<port>/status`: the health endpoint.
    pub fn health_url(&self) -> String {
        format!("http://127.0.0.1:{}/status", self.ports.health)
    }

    /// The query API and UI (`tracectl --jaeger`).
    pub fn query_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.query_http)
    }

    /// OTLP gRPC, for `OTEL_EXPORTER_OTLP_ENDPOINT` with protocol `grpc`.
    pub fn otlp_grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.otlp_grpc)
    }

    /// Remote sampling, for `OTEL_TRACES_SAMPLER_ARG=endpoint=...`.
    pub fn sampling_url(&self) -> String {
        format!("http://127.0.0.1:{}/sampling", self.ports.sampling_http)
    }

    /// Where Prometheus scrapes the span metrics (`host:port`).
    pub fn spanmetrics_target(&self) -> String {
        format!("127.0.0.1:{}", self.ports.spanmetrics)
    }

    /// Jaeger's own log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }
}
