//! Telemetry shared by the order-flow services: one call sets up tracing,
//! and small helpers carry one request's trace across HTTP, Kafka and Postgres.
//!
//! Cargo features, both on by default: `kafka` ([`kafka`]) and `postgres`
//! ([`db`]). Test helpers live in the dev-only crate
//! `tracing-common-testing`; what services need besides telemetry (settings,
//! lifecycle, the Kafka consume loop) is in `service-runtime`.
//!
//! - [`config`]: the `OTEL_*` variables, parsed and checked ([`TelemetryConfig`]).
//! - [`telemetry`]: [`init`] installs provider, exporters, sampler, propagators
//!   and JSON logs; [`TelemetryGuard`] flushes at shutdown.
//! - [`otlp`]: the OTLP exporter (gRPC or HTTP, TLS, headers, gzip).
//! - [`server`]: SERVER spans for axum and the trust-boundary policy.
//! - [`client`]: a reqwest client that injects context and records CLIENT spans.
//! - [`kafka`] (feature `kafka`): rdkafka header propagation and PRODUCER/CONSUMER spans.
//! - [`db`] (feature `postgres`): Postgres CLIENT spans (sqlx-otel).
//! - [`baggage`]: allow-listed baggage keys copied onto every span.
//! - [`propagation`]: the composite propagator and map carriers (outbox rows).
//! - [`trace_context`]: W3C Trace Context Level 1, exactly.
//! - [`remote_sampling`]: makes Jaeger's sampling answers parseable by the SDK.
//! - [`spans`]: recording errors on spans; the attributes typed as integers.
//! - [`logging`]: JSON log lines with `trace_id`/`span_id`.

pub mod baggage;
pub mod client;
pub mod config;
#[cfg(feature = "postgres")]
pub mod db;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod logging;
pub mod otlp;
pub mod propagation;
pub mod remote_sampling;
pub mod server;
pub mod spans;
mod stats;
pub mod telemetry;
pub mod trace_context;

pub use config::{ConfigError, TelemetryConfig};
pub use server::{ServerTracingLayer, TrustPolicy};
pub use stats::ExportStats;
pub use telemetry::{InitError, TelemetryGuard, init, init_local, init_with};
