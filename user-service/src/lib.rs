//! user-service: owns the `users` database and answers `GET /users/{id}`.
//!
//! - [`config`]: settings from the environment.
//! - [`db`]: the SQL, one function per query.
//! - [`error`]: the error type and its HTTP mapping.
//! - [`app`] builds the router; [`start`] serves it until shutdown.

pub mod config;
pub mod db;
pub mod error;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use opentelemetry::KeyValue;
use order_contract::UserId;
use order_contract::http::{UserFound, paths};
use service_runtime::faults::Faults;
use tracing_common::sqlx::Db;
use tracing_common::{ServerTracingLayer, TrustPolicy};

use service_runtime::lifecycle::{Background, Running, Started};

use crate::config::Config;
use crate::error::AppError;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub faults: Faults,
    /// Request timeout and header budget (`service_runtime::edge`).
    pub limits: service_runtime::edge::EdgeLimits,
}

/// Steps `FAULTS` can slow down or fail: the user lookup query.
pub const FAULT_STEPS: &[&str] = &["lookup-user"];

/// Connects (creating the database if needed) and migrates.
pub async fn connect(database_url: &str) -> Result<Db, sqlx::Error> {
    service_runtime::database::connect(database_url, 10, &sqlx::migrate!("./migrations")).await
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .route(paths::USER, get(get_user))
        .layer(state.limits.layer())
        .layer(ServerTracingLayer::new(TrustPolicy::INTERNAL))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Serves on `listener` at once and, once the users database answers
/// (retried with backoff, see [`Running::serve_when_connected`]), the routes.
pub async fn start(config: &Config, listener: tokio::net::TcpListener) -> anyhow::Result<Running> {
    if !config.faults.is_empty() {
        tracing::warn!(faults = %config.faults.describe(), "fault injection is ON (FAULTS)");
    }
    let database_url = config.database_url.clone();
    let faults = config.faults.clone();
    let limits = config.limits;
    Ok(Running::serve_when_connected(
        listener,
        "the users database",
        move || {
            let url = database_url.clone();
            async move { connect(&url).await }
        },
        move |db| async move {
            Started {
                router: app(AppState { db, faults, limits }),
                background: Background::default(),
                flush: None,
            }
        },
    )?)
}

/// `GET /users/{id}` (SERVER span `GET /users/{id}`, `names::GET_USER`).
async fn get_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<UserFound>, AppError> {
    let id = UserId::parse(id).map_err(|_| AppError::InvalidUserId)?;
    state.faults.inject("lookup-user").await?;
    let user = db::find_user(&state.db, &id)
        .await?
        .ok_or(AppError::UserNotFound)?;
    opentelemetry::trace::get_active_span(|server| {
        server.set_attribute(KeyValue::new("user.found", true));
        server.add_event(
            "user_retrieved",
            vec![KeyValue::new("user.id", user.id.clone())],
        );
    });
    Ok(Json(UserFound {
        success: true,
        user,
    }))
}

async fn readyz(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    let (status, body) = service_runtime::database::database_readiness(state.db.pool()).await;
    (status, Json(body))
}
