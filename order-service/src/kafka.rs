//! Consuming `inventory-events` to settle orders (publishing is
//! [`crate::outbox`]'s).

use opentelemetry::trace::TraceContextExt as _;
use order_contract::StockDecision;
use rdkafka::Message;
use tracing_common::sqlx::Db;

use crate::db;

pub const CONSUMER_GROUP: &str = "order-service";

/// Consumes `inventory-events` until `shutdown` is cancelled; offsets are stored only
/// after the order update committed.
pub async fn consume(
    consumer: service_runtime::kafka::Consumer,
    db: Db,
    shutdown: service_runtime::lifecycle::CancellationToken,
) {
    service_runtime::kafka::consume(consumer, shutdown, |m| {
        let db = db.clone();
        async move { handle(&m, &db).await }
    })
    .await;
}

/// One `inventory-events` record, under its CONSUMER span `process
/// inventory-events` (`names::PROCESS_INVENTORY_EVENTS`, opened by
/// `service_runtime::kafka::consume`): settles the order (`db::settle`).
async fn handle<M: Message>(message: &M, db: &Db) -> Result<(), sqlx::Error> {
    // The CONSUMER span's context, which `consume` makes current.
    let cx = opentelemetry::Context::current();
    let span = cx.span();
    let decision: StockDecision = match message.payload().map(serde_json::from_slice) {
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            tracing_common::spans::record_current_error(
                "invalid_message",
                &format!("undecodable inventory event: {e}"),
            );
            tracing::warn!(error = %e, offset = message.offset(), "skipping undecodable inventory event");
            return Ok(());
        }
        None => {
            tracing_common::spans::record_current_error(
                "invalid_message",
                "inventory event without payload",
            );
            return Ok(());
        }
    };
    span.set_attribute(opentelemetry::KeyValue::new(
        "order.id",
        decision.order_id.to_string(),
    ));
    let status = decision.kind.order_status();
    let changed = db::settle(
        db,
        decision.event_id,
        decision.order_id,
        status,
        decision.reason.as_deref(),
    )
    .await?;
    span.add_event(
        if changed {
            "order_settled"
        } else {
            "order_already_settled"
        },
        vec![opentelemetry::KeyValue::new(
            "order.status",
            status.as_str(),
        )],
    );
    Ok(())
}
