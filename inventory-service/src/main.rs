use anyhow::Context;
use inventory_service::{AppState, config::Config, kafka};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = tracing_common::init("inventory-service", env!("CARGO_PKG_VERSION"))?;
    let config = Config::from_env()?;
    let db = inventory_service::connect(&config.database_url)
        .await
        .context("connecting to the inventory database")?;
    tracing_common::kafka::ensure_topics(
        &config.kafka_brokers,
        &[kafka::ORDER_EVENTS, kafka::INVENTORY_EVENTS],
        3,
    )
    .await
    .context("creating Kafka topics")?;
    let producer =
        tracing_common::kafka::producer(&config.kafka_brokers, config.kafka_send_timeout)?;
    let consumer = tracing_common::kafka::consumer(&config.kafka_brokers, kafka::CONSUMER_GROUP)?;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let consumer_task = tokio::spawn(kafka::consume(
        consumer,
        producer.clone(),
        db.clone(),
        stopped,
    ));

    let listener = tokio::net::TcpListener::bind(("0.0.0.0", config.port))
        .await
        .with_context(|| format!("binding port {}", config.port))?;
    tracing::info!(port = config.port, "inventory-service listening");
    let state = AppState {
        db,
        kafka_brokers: config.kafka_brokers.clone(),
    };
    inventory_service::run(listener, state, tracing_common::service::shutdown_signal()).await?;

    // HTTP has drained; stop consuming, then flush answers and spans.
    let _ = stop.send(true);
    let _ = consumer_task.await;
    tracing_common::kafka::flush(&producer);
    telemetry.shutdown();
    Ok(())
}
