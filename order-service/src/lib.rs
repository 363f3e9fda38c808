//! order-service: validates an order, checks the user and the stock, writes
//! the order with its outbox event in one transaction, publishes it, and
//! settles the order when inventory-service answers.
//!
//! - [`config`]: settings from the environment.
//! - [`domain`]: parsing an order request into exact values (cents).
//! - [`db`]: the SQL, one function per query.
//! - [`kafka`]: publishing, the outbox relay and the `inventory-events` consumer.
//! - [`error`]: the error type and its HTTP mapping.

pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod kafka;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use opentelemetry::KeyValue;
use serde_json::{Value, json};
use sqlx::{PgPool, Postgres};
use tracing::Instrument;
use tracing_common::baggage;
use tracing_common::client::TracedClient;
use tracing_common::db::TracedPool;
use service_runtime::edge;
use service_runtime::kafka::Producer;
use tracing_common::{ServerTracingLayer, TrustPolicy};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

use service_runtime::lifecycle::{Background, Running, Started};

use crate::config::Config;
use crate::domain::{Cents, NewOrder};
use crate::error::AppError;

#[derive(Clone)]
pub struct AppState {
    pub db: TracedPool<Postgres>,
    /// Untraced, for readiness probes and the relay's polling.
    pub raw_db: PgPool,
    pub http: TracedClient,
    pub producer: Producer,
    pub user_service_url: String,
    pub inventory_service_url: String,
    pub kafka_brokers: String,
    /// Request timeout and header budget (`service_runtime::edge`).
    pub limits: service_runtime::edge::EdgeLimits,
}

/// Connects (creating the database if needed) and migrates.
pub async fn connect(database_url: &str) -> Result<(PgPool, TracedPool<Postgres>), sqlx::Error> {
    service_runtime::database::connect(database_url, 20, &sqlx::migrate!("./migrations")).await
}

/// Request bodies above this are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn app(state: AppState) -> Router {
    Router::new()
        .route(
            "/orders",
            post(create_order).layer(axum::middleware::from_fn(edge::require_json)),
        )
        .route("/orders/{id}", get(get_order))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(state.limits.layer())
        .layer(ServerTracingLayer::new(TrustPolicy::INTERNAL))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Serves on `listener` at once and, once the orders database answers
/// (retried with backoff, see [`Running::serve_when_connected`]), starts the
/// `inventory-events` consumer, the outbox relay and the order routes. Kafka
/// is not waited for: orders are accepted while the brokers are away and
/// their events wait in the outbox; the topics are created once a broker
/// answers. Bad settings (Kafka client options) fail here, at once.
pub async fn start(config: &Config, listener: tokio::net::TcpListener) -> anyhow::Result<Running> {
    let producer =
        service_runtime::kafka::producer(&config.kafka_brokers, config.kafka_send_timeout)?;
    let consumer = service_runtime::kafka::consumer(&config.kafka_brokers, kafka::CONSUMER_GROUP)?;
    let http = tracing_common::client::http_client(config.http_timeout)?;
    let database_url = config.database_url.clone();
    let config = config.clone();
    Ok(Running::serve_when_connected(
        listener,
        "the orders database",
        move || {
            let url = database_url.clone();
            async move { connect(&url).await }
        },
        move |(raw_db, db)| async move {
            let mut background = Background::default();
            background.spawn(service_runtime::kafka::ensure_topics_until_done(
                config.kafka_brokers.clone(),
                &[kafka::ORDER_EVENTS, kafka::INVENTORY_EVENTS],
                3,
                background.stopping(),
            ));
            background.spawn(kafka::consume(consumer, db.clone(), background.stopping()));
            background.spawn(kafka::relay(
                raw_db.clone(),
                producer.clone(),
                config.outbox_interval,
                config.outbox_min_age,
                background.stopping(),
            ));
            let state = AppState {
                db,
                raw_db,
                http,
                producer: producer.clone(),
                user_service_url: config.user_service_url.clone(),
                inventory_service_url: config.inventory_service_url.clone(),
                kafka_brokers: config.kafka_brokers.clone(),
                limits: config.limits,
            };
            Started {
                router: app(state),
                background,
                flush: Some(service_runtime::kafka::flush_at_stop(&producer)),
            }
        },
    )?)
}

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

fn created(order_id: Uuid, status: &str) -> (StatusCode, Json<Value>) {
    (
        StatusCode::CREATED,
        Json(json!({
            "success": true,
            "orderId": order_id,
            "status": status,
            "message": "Order created successfully",
        })),
    )
}

async fn create_order(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::BodyTooLarge(MAX_BODY_BYTES)
        } else {
            AppError::InvalidOrder(rejection.body_text())
        }
    })?;
    let server_span = tracing::Span::current();
    let key = idempotency_key(&headers)?;
    if let Some(key) = &key
        && let Some(existing) = db::order_id_by_key(&state.db, key).await?
    {
        server_span.add_event(
            "idempotent_replay",
            vec![KeyValue::new("order.id", existing.to_string())],
        );
        let status = db::order(&state.db, existing)
            .await?
            .map_or("pending".to_owned(), |(o, _)| o.status);
        return Ok(created(existing, &status));
    }

    let validate = tracing::info_span!("validate-order");
    let order = validate
        .in_scope(|| NewOrder::parse(&body))
        .map_err(|reason| {
            tracing_common::spans::record_error(&validate, "invalid_order", &reason);
            AppError::InvalidOrder(reason)
        })?;
    validate.set_attribute("order.item_count", order.lines.len() as i64);
    validate.set_attribute("order.total_amount", order.total.to_string());
    drop(validate);

    // From here on every span, in this service and downstream, carries the
    // user and order ids (allow-listed baggage copied onto spans).
    let order_id = Uuid::now_v7();
    let order_id_text = order_id.to_string();
    server_span.set_attribute(baggage::USER_ID, order.user_id.clone());
    server_span.set_attribute(baggage::ORDER_ID, order_id_text.clone());
    let cx = baggage::with_entries(
        &server_span.context(),
        [
            (baggage::USER_ID, order.user_id.as_str()),
            (baggage::ORDER_ID, order_id_text.as_str()),
        ],
    );

    let span = tracing::info_span!("fetch-user-data");
    tracing_common::spans::set_parent(&span, cx.clone());
    fetch_user(&state, &order.user_id).instrument(span).await?;

    let span = tracing::info_span!("check-inventory");
    tracing_common::spans::set_parent(&span, cx.clone());
    check_inventory(&state, &order).instrument(span).await?;

    let event = db::OutboxEvent {
        id: Uuid::now_v7(),
        topic: kafka::ORDER_EVENTS,
        key: order_id_text.clone(),
        payload: json!({
            "eventId": Uuid::nil(),
            "type": "order-created",
            "orderId": order_id,
            "userId": order.user_id,
            "items": order.lines.iter().map(|l| json!({
                "productId": l.product_id,
                "quantity": l.quantity,
                "priceCents": l.unit_price.0,
            })).collect::<Vec<_>>(),
            "totalCents": order.total.0,
        }),
        trace_context: tracing_common::propagation::inject_to_map(&cx),
    };
    let mut event = event;
    event.payload["eventId"] = json!(event.id);

    let span = tracing::info_span!("create-order-db", db.system.name = "postgresql");
    tracing_common::spans::set_parent(&span, cx.clone());
    let inserted = db::insert_order(&state.db, order_id, &order, key.as_deref(), &event)
        .instrument(span)
        .await?;
    if let db::Inserted::Existing(existing) = inserted {
        // A concurrent retry with the same key won; answer with its order.
        server_span.add_event(
            "idempotent_replay",
            vec![KeyValue::new("order.id", existing.to_string())],
        );
        return Ok(created(existing, "pending"));
    }

    let span = tracing::info_span!("publish-order-event");
    tracing_common::spans::set_parent(&span, cx.clone());
    publish(&state, &event).instrument(span).await;

    server_span.add_event(
        "order_created_successfully",
        vec![KeyValue::new("order.id", order_id_text)],
    );
    Ok(created(order_id, "pending"))
}

async fn fetch_user(state: &AppState, user_id: &str) -> Result<(), AppError> {
    let span = tracing::Span::current();
    let url = format!("{}/users/{user_id}", state.user_service_url);
    match state.http.get(url).send().await {
        Ok(r) if r.status().is_success() => {
            span.add_event(
                "user_retrieved",
                vec![KeyValue::new("user.id", user_id.to_owned())],
            );
            Ok(())
        }
        Ok(r) if r.status() == StatusCode::NOT_FOUND => {
            tracing_common::spans::record_error(
                &span,
                "unknown_user",
                "user-service does not know this user",
            );
            Err(AppError::UnknownUser)
        }
        Ok(r) => {
            let reason = format!("user-service answered {}", r.status());
            tracing_common::spans::record_error(&span, "user_service_error", &reason);
            Err(AppError::DependencyUnavailable("user-service"))
        }
        Err(e) => {
            tracing_common::spans::record_error(
                &span,
                tracing_common::client::error_kind(&e),
                &e.to_string(),
            );
            Err(AppError::DependencyUnavailable("user-service"))
        }
    }
}

/// Refuses the order when stock is known to be short; when inventory-service
/// cannot answer, the order goes ahead (reservation decides later) and the
/// span says why the check did not run.
async fn check_inventory(state: &AppState, order: &NewOrder) -> Result<(), AppError> {
    let span = tracing::Span::current();
    let body = json!({
        "items": order.lines.iter().map(|l| json!({ "productId": l.product_id, "quantity": l.quantity })).collect::<Vec<_>>()
    });
    let url = format!("{}/check", state.inventory_service_url);
    let outcome = async {
        let response = state
            .http
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(|e| (tracing_common::client::error_kind(&e), e.to_string()))?;
        if !response.status().is_success() {
            return Err((
                "inventory_error",
                format!("inventory-service answered {}", response.status()),
            ));
        }
        response
            .json::<Value>()
            .await
            .map_err(|e| ("response_body", e.to_string()))
    }
    .await;
    match outcome {
        Ok(answer) if answer["available"] == json!(true) => {
            span.set_attribute("inventory.available", true);
            Ok(())
        }
        Ok(answer) => {
            let short: Vec<String> = answer["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|i| i["sufficient"] != json!(true))
                .filter_map(|i| i["productId"].as_str().map(str::to_owned))
                .collect();
            let reason = format!("insufficient stock for {}", short.join(", "));
            span.set_attribute("inventory.available", false);
            tracing_common::spans::record_error(&span, "insufficient_stock", &reason);
            Err(AppError::InsufficientStock(short.join(", ")))
        }
        Err((kind, message)) => {
            span.add_event(
                "inventory_service_unreachable",
                vec![KeyValue::new("error.type", kind)],
            );
            tracing_common::spans::record_error(
                &span,
                kind,
                &format!("stock check skipped, order accepted: {message}"),
            );
            tracing::warn!(error = %message, "inventory check failed; accepting the order, reservation decides");
            Ok(())
        }
    }
}

/// Publishes right after commit; on failure the event stays in the outbox for
/// the relay, and the order is still created.
async fn publish(state: &AppState, event: &db::OutboxEvent) {
    let span = tracing::Span::current();
    let payload = serde_json::to_vec(&event.payload).expect("a JSON value serialises");
    match service_runtime::kafka::send_traced(
        &state.producer,
        &span.context(),
        event.topic,
        &event.key,
        &payload,
    )
    .await
    {
        Ok((partition, offset)) => {
            span.add_event(
                "message_published",
                vec![
                    KeyValue::new("messaging.destination.partition.id", partition.to_string()),
                    KeyValue::new("messaging.kafka.offset", offset),
                ],
            );
            if let Err(e) = db::mark_published(&state.db, event.id).await {
                // The relay would publish it again; consumers skip duplicates by event id.
                tracing::warn!(error = %e, "published but could not mark the outbox row");
            }
        }
        Err(e) => {
            tracing_common::spans::record_error(
                &span,
                tracing_common::kafka::error_type(&e),
                &format!("left in outbox for the relay: {e}"),
            );
            tracing::warn!(error = %e, event_id = %event.id, "publish failed; the outbox relay will retry");
        }
    }
}

async fn get_order(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let id = Uuid::parse_str(&id).map_err(|_| AppError::InvalidOrderId)?;
    let (order, items) = db::order(&state.db, id)
        .await?
        .ok_or(AppError::OrderNotFound)?;
    Ok(Json(json!({
        "success": true,
        "order": {
            "orderId": order.id,
            "userId": order.user_id,
            "status": order.status,
            "reason": order.status_reason,
            "totalAmount": money(Cents(order.total_cents)),
            "items": items.iter().map(|i| json!({
                "productId": i.product_id,
                "quantity": i.quantity,
                "price": money(Cents(i.unit_price_cents)),
            })).collect::<Vec<_>>(),
        }
    })))
}

/// Cents as an exact JSON number (`67.48`), never through a float computation.
fn money(cents: Cents) -> Value {
    serde_json::from_str(&cents.to_string()).unwrap_or(Value::Null)
}

async fn readyz(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    service_runtime::database::readiness(&state.raw_db, Some(&state.kafka_brokers)).await
}
