use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tracectl::check::{ORDER_TRACE, problems};
use tracectl::jaeger::Jaeger;
use tracectl::stack;
use tracectl::waterfall;

mod run;

#[derive(Parser)]
#[command(
    about = "Run the order flow locally and show its traces; read and verify traces in Jaeger"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start Kafka (embedded unless KAFKA_BROKERS is set), an OTLP receiver
    /// (unless OTEL_EXPORTER_OTLP_ENDPOINT is set) and the four services on
    /// the local Postgres, send the seed's order and print its trace.
    Run {
        /// Stay up for curl until Ctrl-C, printing each new trace.
        #[arg(long)]
        keep: bool,
        /// Postgres server, without a database name.
        #[arg(
            long,
            env = "POSTGRES_URL",
            default_value = "postgres://postgres@127.0.0.1:5432"
        )]
        postgres: String,
        /// Where the services' logs go.
        #[arg(long, default_value = "target/stack-logs")]
        log_dir: PathBuf,
    },
    /// Fetch one trace from Jaeger and print it as a waterfall.
    Show {
        trace_id: String,
        #[arg(long, env = "JAEGER_URL", default_value = "http://127.0.0.1:16686")]
        jaeger: String,
    },
    /// List a service's slowest recent traces above a duration.
    Slowest {
        #[arg(long)]
        service: String,
        /// Only traces at least this long, in milliseconds.
        #[arg(long, default_value_t = 100)]
        min_ms: u64,
        /// How far back to look, in minutes.
        #[arg(long, default_value_t = 60)]
        minutes: u64,
        #[arg(long, default_value_t = 10)]
        limit: usize,
        #[arg(long, env = "JAEGER_URL", default_value = "http://127.0.0.1:16686")]
        jaeger: String,
    },
    /// List a service's recent traces in which one of its spans failed
    /// (status ERROR), newest first, with the failing span and why.
    Errors {
        #[arg(long)]
        service: String,
        /// How far back to look, in minutes.
        #[arg(long, default_value_t = 60)]
        minutes: u64,
        /// How many of the service's most recent traces to look through.
        #[arg(long, default_value_t = 1000)]
        depth: usize,
        #[arg(long, default_value_t = 10)]
        limit: usize,
        #[arg(long, env = "JAEGER_URL", default_value = "http://127.0.0.1:16686")]
        jaeger: String,
    },
    /// The traces behind a latency spike: the exemplars Prometheus stored
    /// with Jaeger's span-metrics histogram for a service (and operation),
    /// slowest first, each with whether Jaeger has its trace.
    Exemplars {
        #[arg(long)]
        service: String,
        /// Only this span name (the Monitor tab's operation).
        #[arg(long)]
        operation: Option<String>,
        /// Only spans at least this long (500ms, 1.5s; a bare number is ms).
        #[arg(long, default_value = "0ms")]
        above: String,
        /// How far back to look, in minutes.
        #[arg(long, default_value_t = 10)]
        minutes: u64,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long, env = "PROMETHEUS_URL", default_value = "http://127.0.0.1:9090")]
        prometheus: String,
        #[arg(long, env = "JAEGER_URL", default_value = "http://127.0.0.1:16686")]
        jaeger: String,
    },
    /// Where the time of a service's slowest recent requests goes: the
    /// critical-path time per operation summed over them, as a table and a
    /// bar per operation's share.
    CriticalPath {
        #[arg(long)]
        service: String,
        /// How far back to look, in minutes.
        #[arg(long, default_value_t = 10)]
        minutes: u64,
        /// How many of the slowest requests to sum over.
        #[arg(long, default_value_t = 20)]
        slowest: usize,
        /// How many of the service's most recent traces to choose them from.
        #[arg(long, default_value_t = 500)]
        depth: usize,
        /// How many operations to print.
        #[arg(long, default_value_t = 10)]
        top: usize,
        #[arg(long, env = "JAEGER_URL", default_value = "http://127.0.0.1:16686")]
        jaeger: String,
    },
    /// Check the telemetry path a service with this environment would use
    /// (the same OTEL_* variables): configuration, sampler, endpoint
    /// reachability, TLS, credentials and protocol, then send one test span
    /// named "doctor" and print its trace id. Exits 1 when something is wrong.
    Doctor,
    /// Post the seed's order to a running gateway, wait for its trace in
    /// Jaeger and check every service edge of the order flow.
    Verify {
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        gateway: String,
        #[arg(long, env = "JAEGER_URL", default_value = "http://127.0.0.1:16686")]
        jaeger: String,
        /// How long to wait for the whole trace, in seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run {
            keep,
            postgres,
            log_dir,
        } => run::run(keep, postgres, log_dir).await,
        Command::Show { trace_id, jaeger } => show(&trace_id, &jaeger).await,
        Command::Slowest {
            service,
            min_ms,
            minutes,
            limit,
            jaeger,
        } => slowest(&service, min_ms, minutes, limit, &jaeger).await,
        Command::Errors {
            service,
            minutes,
            depth,
            limit,
            jaeger,
        } => errors(&service, minutes, depth, limit, &jaeger).await,
        Command::Exemplars {
            service,
            operation,
            above,
            minutes,
            limit,
            prometheus,
            jaeger,
        } => {
            let above_ms = tracectl::exemplars::parse_duration_ms(&above)?;
            exemplars(
                &service,
                operation.as_deref(),
                above_ms,
                minutes,
                limit,
                &prometheus,
                &jaeger,
            )
            .await
        }
        Command::CriticalPath {
            service,
            minutes,
            slowest,
            depth,
            top,
            jaeger,
        } => critical_path(&service, minutes, slowest, depth, top, &jaeger).await,
        Command::Doctor => doctor().await,
        Command::Verify {
            gateway,
            jaeger,
            timeout,
        } => verify(&gateway, &jaeger, Duration::from_secs(timeout)).await,
    }
}

async fn show(trace_id: &str, jaeger: &str) -> anyhow::Result<()> {
    let trace = Jaeger::new(jaeger)?
        .trace(trace_id)
        .await?
        .with_context(|| format!("trace {trace_id} is not in Jaeger at {jaeger}"))?;
    print!("{}", waterfall::render(&trace));
    Ok(())
}

async fn slowest(
    service: &str,
    min_ms: u64,
    minutes: u64,
    limit: usize,
    jaeger: &str,
) -> anyhow::Result<()> {
    let traces = Jaeger::new(jaeger)?
        .slowest(
            service,
            Duration::from_millis(min_ms),
            Duration::from_secs(minutes * 60),
            limit,
        )
        .await?;
    if traces.is_empty() {
        println!("no trace of {service} over {min_ms} ms in the last {minutes} min");
    }
    for trace in traces {
        let root = trace.tree().first().map(|(_, s)| s.name.clone());
        println!(
            "{}  {:>9.1} ms  {:>3} spans  {}",
            trace.trace_id,
            trace.duration_ns() as f64 / 1e6,
            trace.spans.len(),
            root.unwrap_or_default()
        );
    }
    Ok(())
}

async fn errors(
    service: &str,
    minutes: u64,
    depth: usize,
    limit: usize,
    jaeger: &str,
) -> anyhow::Result<()> {
    let traces = Jaeger::new(jaeger)?
        .errors(service, Duration::from_secs(minutes * 60), depth, limit)
        .await?;
    if traces.is_empty() {
        println!("no trace with a failed span of {service} in the last {minutes} min");
    }
    for trace in traces {
        let Some(failed) = tracectl::jaeger::failed_span(&trace, service) else {
            continue;
        };
        println!(
            "{}  {:>9.1} ms  {:>3} spans  {}: {}",
            trace.trace_id,
            trace.duration_ns() as f64 / 1e6,
            trace.spans.len(),
            failed.name,
            failed.error.as_deref().unwrap_or_default()
        );
    }
    Ok(())
}

async fn exemplars(
    service: &str,
    operation: Option<&str>,
    above_ms: f64,
    minutes: u64,
    limit: usize,
    prometheus: &str,
    jaeger: &str,
) -> anyhow::Result<()> {
    let found = tracectl::exemplars::Prometheus::new(prometheus)?
        .exemplars(
            service,
            operation,
            above_ms,
            Duration::from_secs(minutes * 60),
        )
        .await?;
    let what = match operation {
        Some(operation) => format!("{service} {operation}"),
        None => service.to_owned(),
    };
    if found.is_empty() {
        println!("no exemplar of {what} at or above {above_ms} ms in the last {minutes} min");
        return Ok(());
    }
    println!(
        "{} traces behind {what}'s spans at or above {above_ms} ms in the last {minutes} min (showing {}):",
        found.len(),
        found.len().min(limit)
    );
    println!(
        "{:<32}  {:>10}  {:<8}  {:<30}  in Jaeger",
        "trace", "span", "flushed", "operation"
    );
    let jaeger_client = Jaeger::new(jaeger)?;
    for exemplar in found.iter().take(limit) {
        let stored = match jaeger_client.trace(&exemplar.trace_id).await {
            Ok(Some(trace)) => format!(
                "yes, {} spans, {:.1} ms",
                trace.spans.len(),
                trace.duration_ns() as f64 / 1e6
            ),
            Ok(None) => "no (not sampled, or evicted)".into(),
            Err(e) => format!("unknown: {e:#}"),
        };
        let flushed =
            chrono::DateTime::<chrono::Utc>::from_timestamp_millis((exemplar.at_s * 1e3) as i64)
                .map(|t| t.format("%H:%M:%S").to_string())
                .unwrap_or_default();
        println!(
            "{:<32}  {:>7.1} ms  {flushed:<8}  {:<30}  {stored}",
            exemplar.trace_id, exemplar.duration_ms, exemplar.operation
        );
    }
    Ok(())
}

async fn critical_path(
    service: &str,
    minutes: u64,
    slowest: usize,
    depth: usize,
    top: usize,
    jaeger: &str,
) -> anyhow::Result<()> {
    let requests = Jaeger::new(jaeger)?
        .slowest_requests(service, Duration::from_secs(minutes * 60), depth, slowest)
        .await?;
    if requests.is_empty() {
        println!("no trace of {service} in the last {minutes} min");
        return Ok(());
    }
    println!(
        "critical path of the {} slowest {service} requests in the last {minutes} min",
        requests.len()
    );
    print!(
        "{}",
        tracectl::critical::render(&tracectl::critical::summarize(&requests), top)
    );
    Ok(())
}

async fn doctor() -> anyhow::Result<()> {
    let config = tracing_common::TelemetryConfig::from_env("tracectl-doctor");
    println!("tracectl doctor: checking the telemetry path of this environment's OTEL_* settings");
    let mut report = tracectl::doctor::diagnose(config).await;
    let names: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .collect();
    report.unread_variables(names.iter().map(String::as_str));
    print!("{}", report.render());
    if report.problems() > 0 {
        std::process::exit(1);
    }
    Ok(())
}

pub(crate) fn step(message: &str) {
    println!("==> {message}");
}

async fn verify(gateway: &str, jaeger: &str, timeout: Duration) -> anyhow::Result<()> {
    let jaeger_client = Jaeger::new(jaeger)?;
    step(&format!("POST {gateway}/api/orders (the seed's order)"));
    let placed = stack::place_order(gateway, stack::SEED_ORDER).await?;
    println!("    {} {}", placed.status, placed.body);
    if placed.status != 201 {
        bail!(
            "the gateway refused the seed's order with {}",
            placed.status
        );
    }
    let trace_id = placed
        .trace_id
        .context("the gateway answered without a traceparent header")?;
    step(&format!(
        "waiting for trace {trace_id} in Jaeger ({jaeger}/trace/{trace_id})"
    ));
    let deadline = Instant::now() + timeout;
    let mut last = Vec::new();
    loop {
        if let Some(trace) = jaeger_client.trace(&trace_id).await? {
            last = problems(&trace, ORDER_TRACE);
            if last.is_empty() {
                print!("{}", waterfall::render(&trace));
                step(&format!(
                    "verified: {} spans, every edge of the order flow present",
                    trace.spans.len()
                ));
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    if last.is_empty() {
        bail!("trace {trace_id} did not reach Jaeger within {timeout:?}");
    }
    bail!(
        "trace {trace_id} is incomplete after {timeout:?}:\n  - {}",
        last.join("\n  - ")
    )
}
