//! inventory-service: owns the `inventory` database; answers stock checks
//! over HTTP and reserves stock for `order-events`, answering on
//! `inventory-events`.
//!
//! - [`config`]: settings from the environment.
//! - [`db`]: the SQL, one function per query; reservation is atomic and
//!   idempotent by event id.
//! - [`kafka`]: the consumer loop and the event shapes.
//! - [`error`]: the error type and its HTTP mapping.

pub mod config;
pub mod db;
pub mod error;
pub mod kafka;

use std::collections::HashMap;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use order_contract::ProductId;
use order_contract::error::{JsonBody, MAX_BODY_BYTES};
use order_contract::http::{StockCheckAnswer, StockCheckItem, StockCheckRequest, paths};
use order_contract::topics;
use serde_json::{Value, json};
use service_runtime::edge;
use service_runtime::faults::Faults;
use tracing_common::sqlx::Db;
use tracing_common::{ServerTracingLayer, TrustPolicy};

use service_runtime::lifecycle::{Background, Running, Started};

use crate::config::Config;
use crate::error::AppError;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    /// Checked by `/readyz`.
    /// What the producer knows of the brokers, for `/readyz`.
    pub kafka: service_runtime::kafka::Watch,
    pub faults: Faults,
    /// Request timeout and header budget (`service_runtime::edge`).
    pub limits: service_runtime::edge::EdgeLimits,
}

/// Steps `FAULTS` can slow down or fail: the stock check behind `POST /check`.
pub const FAULT_STEPS: &[&str] = &["check-stock"];

/// Connects (creating the database if needed) and migrates.
pub async fn connect(database_url: &str) -> Result<Db, sqlx::Error> {
    service_runtime::database::connect(database_url, 10, &sqlx::migrate!("./migrations")).await
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .route(
            paths::STOCK_CHECK,
            post(check).layer(axum::middleware::from_fn(edge::require_json)),
        )
        .route(paths::INVENTORY, get(product))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(state.limits.layer())
        .layer(ServerTracingLayer::new(TrustPolicy::INTERNAL))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Serves on `listener` at once and, once the inventory database answers
/// (retried with backoff, see [`Running::serve_when_connected`]), starts the
/// `order-events` consumer and the routes. The topics are created once a
/// broker answers; bad settings fail here, at once.
pub async fn start(config: &Config, listener: tokio::net::TcpListener) -> anyhow::Result<Running> {
    let producer =
        service_runtime::kafka::producer(&config.kafka_brokers, Some(config.kafka_send_timeout))?;
    let consumer = service_runtime::kafka::consumer(
        &config.kafka_brokers,
        kafka::CONSUMER_GROUP,
        order_contract::topics::ORDER_EVENTS,
    )?;
    if !config.faults.is_empty() {
        tracing::warn!(faults = %config.faults.describe(), "fault injection is ON (FAULTS)");
    }
    let database_url = config.database_url.clone();
    let config = config.clone();
    Ok(Running::serve_when_connected(
        listener,
        "the inventory database",
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
            background.spawn(kafka::consume(
                consumer,
                producer.clone(),
                db.clone(),
                background.stopping(),
            ));
            let state = AppState {
                db,
                kafka: producer.watch().clone(),
                faults: config.faults.clone(),
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

/// `POST /check` (SERVER span `POST /check`, `names::CHECK_STOCK`): whether
/// every line can be served from current stock (nothing is reserved).
async fn check(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<StockCheckRequest>,
) -> Result<Json<StockCheckAnswer>, AppError> {
    if request.items.is_empty() || request.items.len() > 100 {
        return Err(AppError::BadRequest(
            "items must hold 1 to 100 lines".into(),
        ));
    }
    let mut wanted: HashMap<&ProductId, i64> = HashMap::new();
    for line in &request.items {
        *wanted.entry(&line.product_id).or_default() += line.quantity;
    }
    let ids: Vec<String> = wanted.keys().map(|k| k.to_string()).collect();
    state.faults.inject("check-stock").await?;
    let stock = db::stock_of(&state.db, &ids).await?;
    let items: Vec<StockCheckItem> = wanted
        .into_iter()
        .map(|(product_id, requested)| {
            let row = stock.iter().find(|s| s.product_id == product_id.as_str());
            let available = row.map_or(0, |s| i64::from(s.available));
            StockCheckItem {
                available,
                known: row.is_some(),
                product_id: product_id.clone(),
                requested,
                sufficient: row.is_some() && available >= requested,
            }
        })
        .collect();
    let available = items.iter().all(|i| i.sufficient);
    opentelemetry::trace::get_active_span(|server| {
        server.set_attribute(opentelemetry::KeyValue::new(
            "inventory.available",
            available,
        ));
    });
    Ok(Json(StockCheckAnswer { available, items }))
}

async fn product(
    State(state): State<AppState>,
    Path(product_id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let stock = db::stock_of(&state.db, std::slice::from_ref(&product_id)).await?;
    let item = stock.into_iter().next().ok_or(AppError::ProductNotFound)?;
    Ok(Json(json!({ "success": true, "product": item })))
}

async fn readyz(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    service_runtime::database::readiness(state.db.pool(), Some(&state.kafka)).await
}
