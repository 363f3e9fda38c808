//! Telemetry shared by the order-flow services: one call sets up tracing,
//! and small helpers carry one request's trace across HTTP, Kafka and Postgres.
//!
//! # Use it
//!
//! ```toml
//! [dependencies]
//! # Copied into your workspace; pick the adapters you use (both are defaults).
//! tracing-common = { path = "tracing-common", default-features = false, features = ["kafka"] }
//! ```
//!
//! ```no_run
//! # async fn serve(listener: tokio::net::TcpListener) -> Result<(), Box<dyn std::error::Error>> {
//! // Once, first thing in main: OTLP exporter, sampler, propagators and JSON
//! // logs, all from the standard OTEL_* variables (a bad value names it).
//! let telemetry = tracing_common::init("checkout-service", env!("CARGO_PKG_VERSION"))?;
//!
//! // Server: SERVER spans `{method} {route}`, context taken from the caller.
//! let app = axum::Router::new()
//!     .route("/checkout", axum::routing::post(|| async { "ok" }))
//!     .layer(tracing_common::ServerTracingLayer::new(tracing_common::TrustPolicy::INTERNAL));
//! // Client: CLIENT spans, context injected into every request.
//! let http = tracing_common::client::http_client(std::time::Duration::from_secs(5))?;
//! # let _ = http;
//! axum::serve(listener, app).await?;
//!
//! // Last: flush what is queued (within 5 s) and say what was lost.
//! telemetry.shutdown();
//! # Ok(())
//! # }
//! ```
//!
//! Kafka (feature `kafka`): [`kafka::send_traced`] sends a record with any
//! rdkafka `FutureProducer` under a PRODUCER span with the context in its
//! headers; on the consuming side [`kafka::consumer_span`] opens the CONSUMER
//! span, a child of the producer's and linked to it. Postgres (feature
//! `postgres`): [`db::Db`] wraps a sqlx pool so each statement of sampled
//! work is a CLIENT span. `examples/traced_checkout.rs` runs all of it in one program
//! (`cargo run -p tracing-common --example traced_checkout`).
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
//! - [`db`] (feature `postgres`): Postgres CLIENT spans.
//! - [`baggage`]: allow-listed baggage keys copied onto every span.
//! - [`propagation`]: the composite propagator and map carriers (outbox rows).
//! - [`trace_context`]: W3C Trace Context Level 1, exactly.
//! - [`remote_sampling`]: makes Jaeger's sampling answers parseable by the SDK.
//! - [`spans`]: recording errors; the attributes typed as integers.
//! - [`logging`]: JSON log lines with `trace_id`/`span_id`.

pub mod baggage;
#[cfg(feature = "reqwest")]
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
#[cfg(feature = "axum")]
pub mod server;
pub mod spans;
mod stats;
pub mod telemetry;
pub mod trace_context;
pub mod w3c_baggage;

pub use config::{ConfigError, TelemetryConfig};
#[cfg(feature = "axum")]
pub use server::{ServerTracingLayer, TrustPolicy};
pub use stats::ExportStats;
pub use telemetry::{InitError, TelemetryGuard, init, init_local, init_with};
