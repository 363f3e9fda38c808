//! order-service: validates an order, checks the user and the stock, writes
//! the order with its outbox event in one transaction, publishes it, and
//! settles the order when inventory-service answers.
//!
//! - [`config`]: settings from the environment.
//! - [`domain`]: parsing an order request into exact values (cents).
//! - [`db`]: the SQL, one function per query.
//! - [`outbox`]: the outbox relay, the only sender of `order-events`.
//! - [`kafka`]: the `inventory-events` consumer.
//! - [`flow`]: `POST /orders`, one function per step of the order flow.
//! - [`error`]: the error type and its HTTP mapping.

pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod flow;
pub mod kafka;
pub mod outbox;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use service_runtime::edge;
use tracing_common::sqlx::Db;
use tracing_common::{ServerTracingLayer, TrustPolicy};

use service_runtime::lifecycle::{Background, Running, Started};

use crate::config::Config;
use crate::error::AppError;
use order_contract::clients::{InventoryServiceClient, UserServiceClient};
use order_contract::error::MAX_BODY_BYTES;
use order_contract::http::paths;
use order_contract::http::{OrderDetails, OrderView, OrderViewLine};
use order_contract::{Cents, OrderId, topics};

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub users: UserServiceClient,
    pub inventory: InventoryServiceClient,
    /// Hands committed events to this replica's outbox relay.
    pub outbox: outbox::Outbox,
    /// How long a request waits for its event's acknowledgement.
    pub publish_wait: std::time::Duration,
    /// What the producer knows of the brokers, for `/readyz` and spans.
    pub kafka: service_runtime::kafka::Watch,
    /// Request timeout and header budget (`service_runtime::edge`).
    pub limits: service_runtime::edge::EdgeLimits,
}

/// Connects (creating the database if needed) and migrates.
pub async fn connect(database_url: &str) -> Result<Db, sqlx::Error> {
    service_runtime::database::connect(database_url, 20, &sqlx::migrate!("./migrations")).await
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .route(
            paths::ORDERS,
            post(flow::create_order).layer(axum::middleware::from_fn(edge::require_json)),
        )
        .route(paths::ORDER, get(get_order))
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
    // No send timeout: the relay is the only sender, and a record is retried
    // until acknowledged rather than given up and sent again.
    let producer = service_runtime::kafka::producer(&config.kafka_brokers, None)?;
    let consumer = service_runtime::kafka::consumer(
        &config.kafka_brokers,
        kafka::CONSUMER_GROUP,
        order_contract::topics::INVENTORY_EVENTS,
    )?;
    let http = tracing_common::reqwest::http_client(config.http_timeout)?;
    let database_url = config.database_url.clone();
    let config = config.clone();
    Ok(Running::serve_when_connected(
        listener,
        "the orders database",
        move || {
            let url = database_url.clone();
            async move { connect(&url).await }
        },
        move |db| async move {
            let mut background = Background::default();
            background.spawn(service_runtime::kafka::ensure_topics_until_done(
                config.kafka_brokers.clone(),
                topics::ALL,
                topics::PARTITIONS,
                background.stopping(),
            ));
            background.spawn(kafka::consume(consumer, db.clone(), background.stopping()));
            let outbox = outbox::Outbox::default();
            background.spawn(outbox.clone().run(
                db.pool().clone(),
                producer.clone(),
                config.outbox_interval,
                config.outbox_min_age,
                background.stopping(),
            ));
            let state = AppState {
                db,
                users: UserServiceClient::new(http.clone(), config.user_service_url.clone()),
                inventory: InventoryServiceClient::new(http, config.inventory_service_url.clone()),
                outbox,
                publish_wait: config.publish_wait,
                kafka: producer.watch().clone(),
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

async fn get_order(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, AppError> {
    let id: OrderId = id.parse().map_err(|_| AppError::InvalidOrderId)?;
    let (order, items) = db::order(&state.db, id)
        .await?
        .ok_or(AppError::OrderNotFound)?;
    Ok(Json(OrderView {
        success: true,
        order: OrderDetails {
            order_id: order.id,
            user_id: order.user_id,
            status: order.status,
            reason: order.status_reason,
            total_amount: Cents(order.total_cents).amount(),
            items: items
                .into_iter()
                .map(|i| OrderViewLine {
                    product_id: i.product_id,
                    quantity: i.quantity,
                    price: Cents(i.unit_price_cents).amount(),
                })
                .collect(),
        },
    }))
}

async fn readyz(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    service_runtime::database::readiness(state.db.pool(), Some(&state.kafka)).await
}
