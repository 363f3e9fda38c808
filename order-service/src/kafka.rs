//! Publishing order events (right after commit, and by the outbox relay) and
//! consuming `inventory-events` to settle orders.

use std::time::Duration;

use opentelemetry::trace::TraceContextExt as _;
use order_contract::StockDecision;
use order_contract::topics::INVENTORY_EVENTS;
use rdkafka::Message;
use service_runtime::kafka::Producer;
use sqlx::PgPool;
use tracing_common::sqlx::Db;

use crate::db;

pub const CONSUMER_GROUP: &str = "order-service";

/// Publishes what the outbox still holds, each under a PRODUCER span
/// `send order-events` whose parent is the context stored with the event;
/// returns how many were published.
/// Stops at the first failure (the broker is likely down) and leaves the rest.
pub async fn relay_once(
    raw: &PgPool,
    producer: &Producer,
    min_age: Duration,
) -> Result<usize, sqlx::Error> {
    let mut tx = raw.begin().await?;
    let min_age_ms = i64::try_from(min_age.as_millis()).unwrap_or(i64::MAX);
    let pending = db::lock_unpublished(&mut tx, min_age_ms, 100).await?;
    let mut published = 0;
    for event in &pending {
        // The original request's context: the late publish joins its trace.
        let parent = tracing_common::propagation::extract_from_map(&event.trace_context.0);
        let payload = serde_json::to_vec(&event.payload).expect("a JSON value serialises");
        match service_runtime::kafka::send_traced(
            producer,
            &parent,
            &event.topic,
            &event.message_key,
            &payload,
        )
        .await
        {
            Ok(_) => {
                db::mark_published_locked(&mut tx, event.id).await?;
                published += 1;
            }
            Err(e) => {
                tracing::warn!(error = %e, event_id = %event.id, "outbox relay cannot publish; will retry");
                break;
            }
        }
    }
    tx.commit().await?;
    if published > 0 {
        tracing::info!(published, "outbox relay published pending events");
    }
    Ok(published)
}

/// Runs [`relay_once`] every `interval` until `shutdown` flips.
pub async fn relay(
    raw: PgPool,
    producer: Producer,
    interval: Duration,
    min_age: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            () = tokio::time::sleep(interval) => {}
        }
        if let Err(e) = relay_once(&raw, &producer, min_age).await {
            tracing::warn!(error = %e, "outbox relay pass failed");
        }
    }
}

/// Consumes `inventory-events` until `shutdown` flips; offsets are stored only
/// after the order update committed.
pub async fn consume(
    consumer: service_runtime::kafka::Consumer,
    db: Db,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    service_runtime::kafka::consume(consumer, INVENTORY_EVENTS, CONSUMER_GROUP, shutdown, |m| {
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
