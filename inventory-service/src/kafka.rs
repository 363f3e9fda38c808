//! The `order-events` consumer: reserve stock for each new order and answer
//! on `inventory-events`.

use rdkafka::Message;
use serde::{Deserialize, Serialize};
use sqlx::Postgres;
use tracing::Instrument;
use tracing_common::db::TracedPool;
use service_runtime::kafka::Producer;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

use crate::db::{self, Outcome};

pub const ORDER_EVENTS: &str = "order-events";
pub const INVENTORY_EVENTS: &str = "inventory-events";
pub const CONSUMER_GROUP: &str = "inventory-service";

/// An `order-events` record, as order-service writes it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCreated {
    pub event_id: Uuid,
    pub order_id: Uuid,
    pub items: Vec<OrderLine>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    pub product_id: String,
    pub quantity: i32,
}

/// An `inventory-events` record.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StockDecision<'a> {
    pub event_id: Uuid,
    pub order_id: Uuid,
    /// `stock-reserved` or `stock-rejected`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub reason: Option<&'a str>,
}

/// Consumes `order-events` until `shutdown` flips; each offset is stored
/// only after the record's transaction committed and its answer was
/// acknowledged.
pub async fn consume(
    consumer: service_runtime::kafka::Consumer,
    producer: Producer,
    db: TracedPool<Postgres>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    service_runtime::kafka::consume(consumer, ORDER_EVENTS, CONSUMER_GROUP, shutdown, |m| {
        let (producer, db) = (producer.clone(), db.clone());
        async move { handle(&m, &producer, &db).await }
    })
    .await;
}

#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

async fn handle<M: Message>(
    message: &M,
    producer: &Producer,
    db: &TracedPool<Postgres>,
) -> Result<(), HandleError> {
    let span = tracing::Span::current();
    let event: OrderCreated = match message.payload().map(serde_json::from_slice) {
        Some(Ok(event)) => event,
        Some(Err(e)) => {
            // A record that can never be processed is skipped, not retried forever.
            tracing_common::spans::record_error(
                &span,
                "invalid_message",
                &format!("undecodable order event: {e}"),
            );
            tracing::warn!(error = %e, offset = message.offset(), "skipping undecodable order event");
            return Ok(());
        }
        None => {
            tracing_common::spans::record_error(
                &span,
                "invalid_message",
                "order event without payload",
            );
            return Ok(());
        }
    };
    span.set_attribute("order.id", event.order_id.to_string());
    span.set_attribute("messaging.message.id", event.event_id.to_string());

    let reserve_span = tracing::info_span!("reserve-stock", order.id = %event.order_id, order.item_count = event.items.len() as i64);
    let lines: Vec<(String, i32)> = event
        .items
        .iter()
        .map(|l| (l.product_id.clone(), l.quantity))
        .collect();
    let outcome = async {
        if lines.is_empty() || lines.iter().any(|(_, q)| *q < 1) {
            return Ok::<_, sqlx::Error>(Some(Outcome::Rejected(
                "order has no valid lines".into(),
            )));
        }
        match db::reserve(db, event.event_id, event.order_id, &lines).await? {
            Some(outcome) => Ok(Some(outcome)),
            // Processed before: answer again with the recorded outcome, reserve nothing.
            None => {
                tracing::Span::current().add_event("duplicate_event_skipped", vec![]);
                db::processed_outcome(db, event.event_id).await
            }
        }
    }
    .instrument(reserve_span.clone())
    .await?;
    let Some(outcome) = outcome else {
        return Ok(());
    };
    let (kind, reason) = match &outcome {
        Outcome::Reserved => ("stock-reserved", None),
        Outcome::Rejected(r) => {
            reserve_span.add_event(
                "stock_rejected",
                vec![opentelemetry::KeyValue::new("reason", r.clone())],
            );
            ("stock-rejected", Some(r.as_str()))
        }
    };
    drop(reserve_span);
    let reply = StockDecision {
        event_id: event.event_id,
        order_id: event.order_id,
        kind,
        reason,
    };
    let payload = serde_json::to_vec(&reply).expect("serialising a struct of strings cannot fail");
    service_runtime::kafka::send_traced(
        producer,
        &span.context(),
        INVENTORY_EVENTS,
        &event.order_id.to_string(),
        &payload,
    )
    .await?;
    Ok(())
}
