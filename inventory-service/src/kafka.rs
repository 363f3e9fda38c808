//! The `order-events` consumer: reserve stock for each new order and answer
//! on `inventory-events`.

use opentelemetry::KeyValue;
use opentelemetry::trace::TraceContextExt as _;
use order_contract::topics::INVENTORY_EVENTS;
use order_contract::trace::names;
use order_contract::{OrderCreated, StockDecision, StockDecisionKind};
use rdkafka::Message;
use service_runtime::kafka::Producer;
use tracing::Instrument;
use tracing_common::sqlx::Db;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::db::{self, Outcome};

pub const CONSUMER_GROUP: &str = "inventory-service";

/// Consumes `order-events` until `shutdown` is cancelled; each offset is stored
/// only after the record's transaction committed and its answer was
/// acknowledged.
pub async fn consume(
    consumer: service_runtime::kafka::Consumer,
    producer: Producer,
    db: Db,
    shutdown: service_runtime::lifecycle::CancellationToken,
) {
    service_runtime::kafka::consume(consumer, shutdown, |m| {
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

/// One `order-events` record, under its CONSUMER span `process order-events`
/// (`names::PROCESS_ORDER_EVENTS`, opened by `service_runtime::kafka::consume`):
/// the `reserve-stock` span, then the answer under a PRODUCER span
/// `send inventory-events` (`names::SEND_INVENTORY_EVENTS`).
async fn handle<M: Message>(message: &M, producer: &Producer, db: &Db) -> Result<(), HandleError> {
    // The CONSUMER span's context, which `consume` makes current.
    let cx = opentelemetry::Context::current();
    let Some(event) = decode(message) else {
        return Ok(());
    };
    cx.span().set_attributes([
        KeyValue::new("order.id", event.order_id.to_string()),
        KeyValue::new("messaging.message.id", event.event_id.to_string()),
    ]);
    let Some(decision) = reserve_stock(db, &event).await? else {
        return Ok(());
    };
    let payload = serde_json::to_vec(&decision).expect("a decision of ids and strings serialises");
    service_runtime::kafka::send_traced(
        producer,
        &cx,
        INVENTORY_EVENTS,
        &event.order_id.to_string(),
        &payload,
    )
    .await?;
    Ok(())
}

/// The record's event; a record that can never be processed is recorded on
/// the current (CONSUMER) span and skipped (`None`), not retried forever.
fn decode<M: Message>(message: &M) -> Option<OrderCreated> {
    match message.payload().map(serde_json::from_slice) {
        Some(Ok(event)) => Some(event),
        Some(Err(e)) => {
            tracing_common::spans::record_current_error(
                "invalid_message",
                &format!("undecodable order event: {e}"),
            );
            tracing::warn!(error = %e, offset = message.offset(), "skipping undecodable order event");
            None
        }
        None => {
            tracing_common::spans::record_current_error(
                "invalid_message",
                "order event without payload",
            );
            None
        }
    }
}

/// The `reserve-stock` span: every line reserved or none, once per event id.
/// A duplicate delivery reserves nothing and gets the recorded decision again;
/// `None` when there is none to give.
async fn reserve_stock(
    db: &Db,
    event: &OrderCreated,
) -> Result<Option<StockDecision>, sqlx::Error> {
    let span = tracing::info_span!(names::RESERVE_STOCK, order.id = %event.order_id, order.item_count = event.items.len() as i64);
    let lines: Vec<(String, i32)> = event
        .items
        .iter()
        .map(|l| (l.product_id.to_string(), l.quantity))
        .collect();
    let outcome = async {
        if lines.is_empty() || lines.iter().any(|(_, q)| *q < 1) {
            return Ok(Some(Outcome::Rejected("order has no valid lines".into())));
        }
        match db::reserve(db, event.event_id.0, event.order_id.0, &lines).await? {
            Some(outcome) => Ok(Some(outcome)),
            None => {
                tracing::Span::current().add_event("duplicate_event_skipped", vec![]);
                db::processed_outcome(db, event.event_id.0).await
            }
        }
    }
    .instrument(span.clone())
    .await?;
    Ok(outcome.map(|outcome| {
        let (kind, reason) = match outcome {
            Outcome::Reserved => (StockDecisionKind::Reserved, None),
            Outcome::Rejected(r) => {
                span.add_event(
                    "stock_rejected",
                    vec![opentelemetry::KeyValue::new("reason", r.clone())],
                );
                (StockDecisionKind::Rejected, Some(r))
            }
        };
        StockDecision {
            event_id: event.event_id,
            order_id: event.order_id,
            kind,
            reason,
        }
    }))
}
