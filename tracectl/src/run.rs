//! `tracectl run`: Kafka (embedded or given), an OTLP receiver (or the
//! given collector) and the four services, the seed's order and its trace.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tracectl::check::{ORDER_TRACE, problems};
use tracectl::receiver::Receiver;
use tracectl::stack::{self, LocalStack, Ports, StackOptions};
use tracectl::waterfall;

use crate::step;

type MockCluster =
    rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

/// Starts everything, shows the seed's order, stops everything.
pub async fn run(keep: bool, postgres: String, log_dir: PathBuf) -> anyhow::Result<()> {
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
            let cluster = tracectl::stack::mock_kafka()?;
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
        None => service_runtime::lifecycle::shutdown_signal().await,
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
    let stop = service_runtime::lifecycle::shutdown_signal();
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
