//! Prometheus as a process, running the repository's own
//! `deploy/prometheus/prometheus.yml` (the file compose mounts and k8s/
//! copies) with its one scrape target, `jaeger:8889`, pointed at a test's
//! Jaeger. The binary comes from `PROMETHEUS_BIN`, else from where
//! `scripts/test.sh` built it from the Go module proxy ([`crate::installed`]).
//!
//! Prometheus starts before the Jaeger whose Monitor tab queries it (Jaeger
//! is given [`Prometheus::url`]); [`Prometheus::scrape`] then points the
//! target at that Jaeger and reloads the configuration (SIGHUP).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// The target in the repository's configuration: compose's and k8s's Jaeger.
const DEPLOYED_TARGET: &str = "jaeger:8889";

/// The Prometheus binary (`PROMETHEUS_BIN`, else the one `scripts/test.sh`
/// built), with a clear failure when there is none.
pub fn binary() -> PathBuf {
    let bin = crate::installed::find("PROMETHEUS_BIN", "prometheus-", "prometheus")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        bin.exists(),
        "PROMETHEUS_BIN={} does not exist",
        bin.display()
    );
    bin
}

/// The repository's configuration with its target replaced by `target`.
pub fn config_for(target: &str) -> anyhow::Result<String> {
    let path = crate::jaeger::deploy_dir().join("prometheus/prometheus.yml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let quoted = format!("\"{DEPLOYED_TARGET}\"");
    if text.matches(&quoted).count() != 1 {
        bail!("{} does not scrape exactly one {quoted}", path.display());
    }
    Ok(text.replace(&quoted, &format!("\"{target}\"")))
}

/// A running Prometheus; killed when dropped.
pub struct Prometheus {
    process: tokio::process::Child,
    pub port: u16,
    config: PathBuf,
    log: PathBuf,
    http: reqwest::Client,
}

impl Prometheus {
    /// Starts Prometheus with its data and log under `dir`, scraping nothing
    /// that answers yet, and waits (bounded) until `/-/ready` answers 200. A
    /// port taken between choosing and binding it makes Prometheus exit; it
    /// is then started again on another.
    pub async fn start(dir: &Path) -> anyhow::Result<Prometheus> {
        let binary = binary();
        std::fs::create_dir_all(dir)?;
        let config = dir.join("prometheus.yml");
        // A loopback port nothing listens on, until `scrape` says where.
        std::fs::write(&config, config_for("127.0.0.1:9")?)?;
        let mut last = None;
        for attempt in 0..5 {
            let port = tracing_common_testing::free_port();
            let log = dir.join(format!("prometheus-{attempt}.log"));
            let out = std::fs::File::create(&log)?;
            let process = tokio::process::Command::new(&binary)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join(format!("prometheus-data-{attempt}")).display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                // As compose and k8s/ run it.
                .arg("--enable-feature=exemplar-storage")
                .stdin(std::process::Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out)
                .kill_on_drop(true)
                .spawn()
                .context("starting Prometheus")?;
            let mut prometheus = Prometheus {
                process,
                port,
                config: config.clone(),
                log,
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()?,
            };
            match prometheus.wait_ready(Duration::from_secs(60)).await {
                Ok(()) => return Ok(prometheus),
                Err(e) if prometheus.log_text().contains("address already in use") => {
                    last = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap()).context("Prometheus found its port taken five times")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.process.try_wait()? {
                bail!(
                    "Prometheus exited ({status}) while starting; its log ({}):\n{}",
                    self.log.display(),
                    self.log_text()
                );
            }
            // The log line tells this Prometheus from another process that
            // might hold the port.
            if self
                .log_text()
                .contains("Server is ready to receive web requests")
                && let Ok(r) = self
                    .http
                    .get(format!("{}/-/ready", self.url()))
                    .send()
                    .await
                && r.status().is_success()
            {
                return Ok(());
            }
            if started.elapsed() > timeout {
                bail!(
                    "Prometheus was not ready within {timeout:?}; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://127.0.0.1:<port>`: the query API (`JAEGER_PROMETHEUS_URL`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Points the scrape target at `target` (`host:port`), reloads, and waits
    /// (bounded) until Prometheus has scraped it successfully once.
    pub async fn scrape(&self, target: &str) -> anyhow::Result<()> {
        std::fs::write(&self.config, config_for(target)?)?;
        let pid = self.process.id().context("Prometheus has exited")?;
        crate::process::send_signal(pid, "HUP").await?;
        let started = Instant::now();
        loop {
            let targets: Value = self
                .http
                .get(format!("{}/api/v1/targets", self.url()))
                .send()
                .await?
                .json()
                .await?;
            let up = targets["data"]["activeTargets"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| {
                    t["scrapeUrl"].as_str().is_some_and(|u| u.contains(target))
                        && t["health"] == "up"
                });
            if up {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!(
                    "Prometheus did not scrape {target} within 60 s: {targets}; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// An instant query's result vector (`/api/v1/query`).
    pub async fn query(&self, promql: &str) -> anyhow::Result<Vec<Value>> {
        let body: Value = self
            .http
            .get(format!(
                "{}/api/v1/query?query={}",
                self.url(),
                tracectl::jaeger::encode(promql)
            ))
            .send()
            .await?
            .json()
            .await?;
        if body["status"] != "success" {
            bail!("{promql}: {body}");
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Prometheus's log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }
}
