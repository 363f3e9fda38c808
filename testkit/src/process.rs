//! Process control of a running [`LocalStack`] for the fault tests: signals
//! to one service, waiting for it to exit, starting it again.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tracectl::stack::{LocalStack, spawn};

/// Sends `signal` (`TERM`, `STOP`, `KILL`, ...) to process `pid`.
pub async fn send_signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = tokio::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .await?;
    anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
    Ok(())
}

/// Sends `signal` (`TERM`, `KILL`, ...) to one service of `stack`.
pub async fn signal(stack: &LocalStack, service: &str, signal: &str) -> anyhow::Result<()> {
    let pid = stack
        .pids()
        .into_iter()
        .find(|(name, _)| *name == service)
        .map(|(_, pid)| pid)
        .with_context(|| format!("{service} is not running"))?;
    send_signal(pid, signal).await
}

/// Waits up to `timeout` for one service to exit; `None` if it did not.
pub async fn wait_exit(
    stack: &mut LocalStack,
    service: &str,
    timeout: Duration,
) -> anyhow::Result<Option<std::process::ExitStatus>> {
    let child = stack.service_mut(service)?;
    Ok(tokio::time::timeout(timeout, child.process.wait())
        .await
        .ok()
        .transpose()?)
}

/// Starts an exited (or killed) service again with the same environment,
/// appending to its log, and waits until it is ready.
pub async fn restart(
    stack: &mut LocalStack,
    service: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let child = stack.service_mut(service)?;
    if child.process.try_wait()?.is_none() {
        bail!("{service} is still running");
    }
    child.process = spawn(&child.binary, &child.env, &child.log, true)?;
    let url = format!("http://127.0.0.1:{}/readyz", child.port);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let started = Instant::now();
    loop {
        if let Ok(r) = client.get(&url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if started.elapsed() > timeout {
            bail!("{service} not ready {timeout:?} after its restart");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
