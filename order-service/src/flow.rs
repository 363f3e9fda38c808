//! The order flow of `POST /orders`, one function per step, each under the
//! span the trace tree names (`order_contract::trace::ORDER_TRACE`):
//! `validate-order`, `fetch-user-data`, `check-inventory`, `create-order-db`
//! and `publish-order-event`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::{Context, KeyValue};
use order_contract::trace::baggage;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::domain::NewOrder;
use crate::error::AppError;
use order_contract::clients::CallError;
use order_contract::events::{OrderCreatedLine, OrderCreatedType};
use order_contract::http::{OrderAccepted, StockCheckLine, StockCheckRequest};
use order_contract::trace::names;
use order_contract::{EventId, OrderCreated, OrderId, OrderStatus, ProductId, UserId, topics};

use crate::{AppState, db, outbox};

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, AppError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| AppError::InvalidIdempotencyKey)?;
    if key.is_empty() || key.len() > 128 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AppError::InvalidIdempotencyKey);
    }
    Ok(Some(key.to_owned()))
}

fn created(order_id: OrderId, status: OrderStatus) -> (StatusCode, Json<OrderAccepted>) {
    (
        StatusCode::CREATED,
        Json(OrderAccepted::new(order_id, status)),
    )
}

/// `POST /orders` (SERVER span `POST /orders`, `names::CREATE_ORDER`): each
/// step of the order flow is a function below, under its own span.
pub async fn create_order(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<OrderAccepted>), AppError> {
    let body = body.map_err(AppError::Body)?;
    // The SERVER span's context, which `ServerTracingLayer` makes current.
    let server = Context::current();
    let key = idempotency_key(&headers)?;
    if let Some(key) = &key
        && let Some((existing, status)) = earlier_order(&state, key).await?
    {
        idempotent_replay(&server, existing);
        return Ok(created(existing, status));
    }

    let order = validate_order(&body)?;
    let order_id = OrderId::new();
    // Each step below runs with `cx` current, so its span is a child of the
    // SERVER span and carries the order's baggage to every call it makes.
    let cx = with_order_baggage(&server, &order, order_id);

    fetch_user(&state, &order.user_id)
        .with_context(cx.clone())
        .await?;
    check_inventory(&state, &order)
        .with_context(cx.clone())
        .await?;
    let event = order_created_event(order_id, &order, &cx);
    if let db::Inserted::Existing(existing) =
        write_order(&state, order_id, &order, key.as_deref(), &event)
            .with_context(cx.clone())
            .await?
    {
        // A concurrent retry with the same key won; answer with its order.
        idempotent_replay(&server, existing);
        return Ok(created(existing, OrderStatus::Pending));
    }
    publish(&state, &event).with_context(cx).await;

    server.span().add_event(
        "order_created_successfully",
        vec![KeyValue::new("order.id", order_id.to_string())],
    );
    Ok(created(order_id, OrderStatus::Pending))
}

/// The order an earlier request with this idempotency key created, with its status.
async fn earlier_order(
    state: &AppState,
    key: &str,
) -> Result<Option<(OrderId, OrderStatus)>, AppError> {
    let Some(existing) = db::order_id_by_key(&state.db, key).await? else {
        return Ok(None);
    };
    let status = db::order(&state.db, existing)
        .await?
        .map_or(OrderStatus::Pending, |(o, _)| o.status);
    Ok(Some((existing, status)))
}

fn idempotent_replay(server: &Context, existing: OrderId) {
    server.span().add_event(
        "idempotent_replay",
        vec![KeyValue::new("order.id", existing.to_string())],
    );
}

/// The `validate-order` span: the body parsed into exact values, or a 400
/// saying what is wrong.
fn validate_order(body: &[u8]) -> Result<NewOrder, AppError> {
    let span = tracing::info_span!(names::VALIDATE_ORDER);
    let order = span.in_scope(|| NewOrder::parse(body)).map_err(|reason| {
        tracing_common::spans::record_error(&span, "invalid_order", &reason);
        AppError::InvalidOrder(reason)
    })?;
    span.set_attribute("order.item_count", order.lines.len() as i64);
    span.set_attribute("order.total_amount", order.total.to_string());
    Ok(order)
}

/// From here on every span, in this service and downstream, carries the
/// user and order ids (allow-listed baggage copied onto spans).
fn with_order_baggage(server: &Context, order: &NewOrder, order_id: OrderId) -> Context {
    let order_id = order_id.to_string();
    server.span().set_attributes([
        KeyValue::new(baggage::USER_ID, order.user_id.to_string()),
        KeyValue::new(baggage::ORDER_ID, order_id.clone()),
    ]);
    tracing_common::propagation::with_baggage(
        server,
        [
            (baggage::USER_ID, order.user_id.as_str()),
            (baggage::ORDER_ID, order_id.as_str()),
        ],
    )
}

/// The `order-events` record of a new order, with the request's context
/// (`cx`) to store beside it: a late publish by the relay joins this trace.
fn order_created_event(order_id: OrderId, order: &NewOrder, cx: &Context) -> db::OutboxEvent {
    let event = OrderCreated {
        event_id: EventId::new(),
        items: order
            .lines
            .iter()
            .map(|l| OrderCreatedLine {
                price_cents: l.unit_price.0,
                product_id: l.product_id.clone(),
                quantity: l.quantity,
            })
            .collect(),
        order_id,
        total_cents: order.total.0,
        kind: OrderCreatedType::OrderCreated,
        user_id: order.user_id.clone(),
    };
    db::OutboxEvent {
        id: event.event_id,
        topic: topics::ORDER_EVENTS,
        key: order_id.to_string(),
        payload: serde_json::to_value(&event).expect("an event of ids and integers serialises"),
        trace_context: tracing_common::propagation::inject_to_map(cx),
    }
}

/// The `fetch-user-data` span: user-service must know the user (422 otherwise).
async fn fetch_user(state: &AppState, user_id: &UserId) -> Result<(), AppError> {
    let span = tracing::info_span!(names::FETCH_USER_DATA);
    let answer = state.users.user(user_id).instrument(span.clone()).await;
    match answer {
        Ok(Some(_)) => {
            span.add_event(
                "user_retrieved",
                vec![KeyValue::new("user.id", user_id.to_string())],
            );
            Ok(())
        }
        Ok(None) => {
            tracing_common::spans::record_error(
                &span,
                "unknown_user",
                "user-service does not know this user",
            );
            Err(AppError::UnknownUser)
        }
        Err(e) => {
            let kind = match &e {
                CallError::Transport { kind, .. } => kind,
                CallError::Status { .. } => "user_service_error",
                CallError::Body(_) => "response_body",
            };
            tracing_common::spans::record_error(&span, kind, &e.to_string());
            Err(AppError::DependencyUnavailable("user-service"))
        }
    }
}

/// The `check-inventory` span. Refuses the order when stock is known to be
/// short; when inventory-service cannot answer, the order goes ahead
/// (reservation decides later) and the span says why the check did not run.
async fn check_inventory(state: &AppState, order: &NewOrder) -> Result<(), AppError> {
    let span = tracing::info_span!(names::CHECK_INVENTORY);
    let request = StockCheckRequest {
        items: order
            .lines
            .iter()
            .map(|l| StockCheckLine {
                product_id: l.product_id.clone(),
                quantity: i64::from(l.quantity),
            })
            .collect(),
    };
    match state
        .inventory
        .check(&request)
        .instrument(span.clone())
        .await
    {
        Ok(answer) if answer.available => {
            span.set_attribute("inventory.available", true);
            Ok(())
        }
        Ok(answer) => {
            let short: Vec<&str> = answer.short().map(ProductId::as_str).collect();
            let reason = format!("insufficient stock for {}", short.join(", "));
            span.set_attribute("inventory.available", false);
            tracing_common::spans::record_error(&span, "insufficient_stock", &reason);
            Err(AppError::InsufficientStock(short.join(", ")))
        }
        Err(e) => {
            let kind = match &e {
                CallError::Transport { kind, .. } => kind,
                CallError::Status { .. } => "inventory_error",
                CallError::Body(_) => "response_body",
            };
            let message = e.to_string();
            span.add_event(
                "inventory_service_unreachable",
                vec![KeyValue::new("error.type", kind)],
            );
            tracing_common::spans::record_error(
                &span,
                kind,
                &format!("stock check skipped, order accepted: {message}"),
            );
            span.in_scope(|| tracing::warn!(error = %message, "inventory check failed; accepting the order, reservation decides"));
            Ok(())
        }
    }
}

/// The `create-order-db` span: the order, its lines and its outbox event in
/// one transaction (`db::insert_order`).
async fn write_order(
    state: &AppState,
    order_id: OrderId,
    order: &NewOrder,
    idempotency_key: Option<&str>,
    event: &db::OutboxEvent,
) -> Result<db::Inserted, AppError> {
    let span = tracing::info_span!(names::CREATE_ORDER_DB);
    Ok(
        db::insert_order(&state.db, order_id, order, idempotency_key, event)
            .instrument(span)
            .await?,
    )
}

/// The `publish-order-event` span: hands the committed event to the outbox
/// relay, which sends it under a PRODUCER span `send order-events`
/// (`names::SEND_ORDER_EVENTS`) that is a child of this one, and waits up to
/// `publish_wait` for the broker's acknowledgement. The order is created
/// either way; an event not acknowledged in time is the relay's to finish,
/// and this span says why it waits.
async fn publish(state: &AppState, event: &db::OutboxEvent) {
    let span = tracing::info_span!(names::PUBLISH_ORDER_EVENT);
    let outcome = async {
        state
            .outbox
            .publish(event.id, Context::current(), state.publish_wait)
            .await
    }
    .instrument(span.clone())
    .await;
    let _entered = span.enter();
    match outcome {
        outbox::Published::Sent { partition, offset } => {
            span.add_event(
                "message_published",
                vec![
                    KeyValue::new("messaging.destination.partition.id", partition.to_string()),
                    KeyValue::new("messaging.kafka.offset", offset),
                ],
            );
        }
        outbox::Published::Failed(e) => {
            tracing_common::spans::record_error(
                &span,
                "broker_error",
                &format!("left in outbox for the relay: {e}"),
            );
            tracing::warn!(error = %e, event_id = %event.id, "publish failed; the outbox relay will retry");
        }
        outbox::Published::Waiting => {
            let brokers = state.kafka.describe().1;
            tracing_common::spans::record_error(
                &span,
                "timeout",
                &format!(
                    "not acknowledged within {} ms (Kafka {brokers}); the outbox relay keeps sending it",
                    state.publish_wait.as_millis()
                ),
            );
            tracing::warn!(event_id = %event.id, kafka = %brokers, "event not acknowledged in time; the outbox relay keeps sending it");
        }
    }
}
