//! tracectl: the order flow's traces made visible without Jaeger, and checked.
//!
//! - [`model`]: one span/trace model for every source, arranged as a tree.
//! - [`waterfall`]: a trace as a terminal waterfall, its critical path marked.
//! - [`critical`]: a request's critical path, and where the time of many
//!   requests goes.
//! - [`receiver`]: a local OTLP/HTTP receiver keeping spans in memory.
//! - [`jaeger`]: reading traces from Jaeger's v1 and v3 APIs.
//! - [`exemplars`]: the trace ids Prometheus keeps with Jaeger's span-metrics
//!   histogram, from a latency spike to its traces.
//! - [`doctor`]: why traces do not arrive: the `OTEL_*` settings and the
//!   OTLP endpoint checked, each problem explained.
//! - [`check`]: the trace an order must produce, and a check against it.
//! - [`stack`]: the four service binaries as child processes.
//!
//! Load generation and the tracing-cost benchmark are the `loadgen` crate;
//! the process-level test harness is `testkit` (dev-only).

pub mod check;
pub mod critical;
pub mod doctor;
pub mod exemplars;
pub mod jaeger;
pub mod model;
pub mod receiver;
pub mod stack;
pub mod waterfall;
