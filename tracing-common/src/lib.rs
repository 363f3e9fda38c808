#![doc = include_str!("../README.md")]

mod setup;

pub mod export;
pub mod propagation;
pub mod sampling;
pub mod spans;

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "kafka")]
pub mod rdkafka;
#[cfg(feature = "reqwest")]
pub mod reqwest;
#[cfg(feature = "postgres")]
pub mod sqlx;

pub use setup::config::{self, ConfigError, TelemetryConfig};
pub use setup::stats::ExportStats;
pub use setup::{
    InitError, SHUTDOWN_TIMEOUT, TelemetryGuard, init, init_local, init_with, otel_layer,
};
pub use spans::{record_current_error, record_error};

#[cfg(feature = "axum")]
pub use axum::{ServerTracingLayer, TrustPolicy};
#[cfg(feature = "kafka")]
pub use rdkafka::{consumer_context, send_traced};
#[cfg(feature = "reqwest")]
pub use reqwest::{TracedClient, http_client};
#[cfg(feature = "postgres")]
pub use sqlx::Db;
