use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tracectl::check::{ORDER_TRACE, problems};
use tracectl::jaeger::Jaeger;
use tracectl::receiver::Receiver;
use tracectl::stack::{self, LocalStack, Ports, StackOptions};
use tracectl::waterfall;

type MockCluster =
    rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

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
        } => run(keep, postgres, log_dir).await,
        Command::Show { trace_id, jaeger } => show(&trace_id, &jaeger).await,
        Command::Slowest {
            service,
            min_ms,
            minutes,
            limit,
            jaeger,
        } => slowest(&service, min_ms, minutes, limit, &jaeger).await,
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

async fn doctor() -> anyhow::Result<()> {
    let config = tracing_common::TelemetryConfig::from_env("tracectl-doctor");
    println!("tracectl doctor: checking the telemetry path of this environment's OTEL_* settings");
    let report = tracectl::doctor::diagnose(config).await;
    print!("{}", report.render());
    if report.problems() > 0 {
        std::process::exit(1);
    }
    Ok(())
}

fn step(message: &str) {
    println!("==> {message}");
}

async fn run(keep: bool, postgres: String, log_dir: PathBuf) -> anyhow::Result<()> {
    let bin_dir = std::env::current_exe()?
        .parent()
        .context("the binary's directory")?
        .to_path_buf();
    let (_mock, kafka_brokers) = kafka()?;
    let (receiver, otlp_endpoint, otlp_protocol) = span_sink().await?;
    let options = StackOptions {
        bin_dir,
        postgres,
        databases: ["users".into(), "orders".into(), "inventory".into()],
        kafka_brokers,
        otlp_endpoint,
        otlp_protocol,
        ports: Ports::DEFAULT,
        log_dir: log_dir.clone(),
        extra_env: Vec::new(),
        service_env: Vec::new(),
    };
    step(&format!(
        "starting the four services (logs in {})",
        log_dir.display()
    ));
    let mut services = LocalStack::start(&options).await?;
    let ready = services
        .wait_ready(Duration::from_secs(90), |name, after| {
            println!("    {name} ready after {:.1} s", after.as_secs_f64());
        })
        .await;
    if let Err(e) = ready {
        services.stop(Duration::from_secs(5)).await;
        return Err(e);
    }
    let outcome = demo(&services, receiver.as_ref(), keep).await;
    step("stopping the services");
    let killed = services.stop(Duration::from_secs(10)).await;
    if !killed.is_empty() {
        println!("    had to kill: {}", killed.join(", "));
    }
    outcome
}

/// Kafka: a real broker if `KAFKA_BROKERS` names one, else librdkafka's mock
/// cluster in this process (kept alive by the first value).
fn kafka() -> anyhow::Result<(Option<MockCluster>, String)> {
    match std::env::var("KAFKA_BROKERS") {
        Ok(brokers) if !brokers.trim().is_empty() => {
            step(&format!("using the Kafka broker at {brokers}"));
            Ok((None, brokers))
        }
        _ => {
            let cluster = rdkafka::mocking::MockCluster::new(1)
                .context("starting the embedded Kafka cluster")?;
            for topic in ["order-events", "inventory-events"] {
                cluster.create_topic(topic, 3, 1)?;
            }
            let brokers = cluster.bootstrap_servers();
            step(&format!("embedded Kafka-protocol cluster on {brokers}"));
            Ok((Some(cluster), brokers))
        }
    }
}

/// Spans: to the collector `OTEL_EXPORTER_OTLP_ENDPOINT` names, or to a
/// receiver here that prints them. Returns the receiver, endpoint and protocol.
async fn span_sink() -> anyhow::Result<(Option<Receiver>, String, String)> {
    match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) if !endpoint.trim().is_empty() => {
            let protocol =
                std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").unwrap_or_else(|_| "grpc".into());
            step(&format!("spans go to {endpoint} ({protocol})"));
            Ok((None, endpoint, protocol))
        }
        _ => {
            let receiver = Receiver::start("127.0.0.1:4318")
                .await
                .or(Receiver::start("127.0.0.1:0").await)
                .context("starting the OTLP receiver")?;
            step(&format!("OTLP receiver on {}", receiver.endpoint()));
            let endpoint = receiver.endpoint();
            Ok((Some(receiver), endpoint, "http/protobuf".to_owned()))
        }
    }
}

/// The seed's order through the running stack and its trace; with `keep`,
/// then every new trace until Ctrl-C.
async fn demo(
    services: &LocalStack,
    receiver: Option<&Receiver>,
    keep: bool,
) -> anyhow::Result<()> {
    let gateway = services.gateway_url();
    seed_order(&gateway, receiver).await?;
    if !keep {
        return Ok(());
    }
    println!(
        "\nThe stack stays up: try\n  curl -i -X POST {gateway}/api/orders -H 'Content-Type: application/json' -d '{}'\nCtrl-C stops everything.",
        stack::SEED_ORDER
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    );
    match receiver {
        Some(receiver) => show_new_traces(receiver).await,
        None => tracing_common::service::shutdown_signal().await,
    }
    Ok(())
}

/// Posts the seed's order, waits for it to settle and prints its trace (or
/// its id, when the spans go elsewhere).
async fn seed_order(gateway: &str, receiver: Option<&Receiver>) -> anyhow::Result<()> {
    step(&format!("POST {gateway}/api/orders (the seed's order)"));
    let placed = stack::place_order(gateway, stack::SEED_ORDER).await?;
    println!("    {} {}", placed.status, placed.body);
    let trace_id = placed
        .trace_id
        .clone()
        .context("the gateway answered without a traceparent header")?;
    if let Some(order_id) = placed.body["orderId"].as_str() {
        let status = stack::settled_status(gateway, order_id, Duration::from_secs(30)).await;
        println!("    GET /api/orders/{order_id} -> {status}");
    }
    let Some(receiver) = receiver else {
        println!("    trace id {trace_id}: look it up in your tracing backend");
        return Ok(());
    };
    let trace = receiver
        .store
        .wait_quiet(
            &trace_id,
            Duration::from_millis(1500),
            Duration::from_secs(20),
        )
        .await;
    println!();
    print!("{}", waterfall::render(&trace));
    let missing = problems(&trace, ORDER_TRACE);
    if !missing.is_empty() && placed.status == 201 {
        println!("\n    not yet as expected:");
        for p in &missing {
            println!("    - {p}");
        }
    }
    Ok(())
}

/// Prints each trace that arrives after the ones already shown, until Ctrl-C.
async fn show_new_traces(receiver: &Receiver) {
    let mut shown: Vec<String> = receiver.store.trace_ids();
    let stop = tracing_common::service::shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        for id in receiver.store.trace_ids() {
            if shown.contains(&id) {
                continue;
            }
            shown.push(id.clone());
            let trace = receiver
                .store
                .wait_quiet(&id, Duration::from_secs(2), Duration::from_secs(20))
                .await;
            println!();
            print!("{}", waterfall::render(&trace));
        }
    }
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
