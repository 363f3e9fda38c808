use anyhow::Context;
use order_service::{AppState, config::Config, kafka};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = tracing_common::init("order-service", env!("CARGO_PKG_VERSION"))?;
    let config = Config::from_env()?;
    let (raw_db, db) = order_service::connect(&config.database_url)
        .await
        .context("connecting to the orders database")?;
    if let Err(e) = tracing_common::kafka::ensure_topics(
        &config.kafka_brokers,
        &[kafka::ORDER_EVENTS, kafka::INVENTORY_EVENTS],
        3,
    )
    .await
    {
        // Orders are still accepted while Kafka is down; the outbox holds their events.
        tracing::warn!(error = %e, "cannot create Kafka topics now; continuing");
    }
    let producer =
        tracing_common::kafka::producer(&config.kafka_brokers, config.kafka_send_timeout)?;
    let consumer = tracing_common::kafka::consumer(&config.kafka_brokers, kafka::CONSUMER_GROUP)?;
    let http = tracing_common::client::http_client(config.http_timeout)?;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let consumer_task = tokio::spawn(kafka::consume(consumer, db.clone(), stopped.clone()));
    let relay_task = tokio::spawn(kafka::relay(
        raw_db.clone(),
        producer.clone(),
        config.outbox_interval,
        stopped,
    ));

    let listener = tokio::net::TcpListener::bind(("0.0.0.0", config.port))
        .await
        .with_context(|| format!("binding port {}", config.port))?;
    tracing::info!(port = config.port, "order-service listening");
    let state = AppState {
        db,
        raw_db,
        http,
        producer: producer.clone(),
        user_service_url: config.user_service_url.clone(),
        inventory_service_url: config.inventory_service_url.clone(),
        kafka_brokers: config.kafka_brokers.clone(),
    };
    order_service::run(listener, state, tracing_common::service::shutdown_signal()).await?;

    // HTTP has drained; stop background work, then flush events and spans.
    let _ = stop.send(true);
    let _ = tokio::join!(consumer_task, relay_task);
    tracing_common::kafka::flush(&producer);
    telemetry.shutdown();
    Ok(())
}
