//! loadgen: load for the order flow, and what tracing costs under it.
//!
//! - [`load`]: a steady-rate, mixed-route load generator for demos.
//! - [`bench`](mod@bench): telemetry modes, the load the benchmark drives, its figures
//!   pooled over rounds.
//! - [`runner`]: each mode of each round on a freshly started stack
//!   (`tracectl`'s runner and receiver), then the report.
//! - [`instructions`]: instructions per request of one service under
//!   callgrind, per telemetry mode.
//! - [`report`]: the Markdown report (`BENCHMARKS.md`).
//! - [`request`]: the requests both send, and percentiles.
//! - [`procfs`]: memory and CPU time of a process, from /proc.
//! - [`stats`]: medians of per-round ratios with distribution-free intervals.

pub mod bench;
pub mod instructions;
pub mod load;
pub mod procfs;
pub mod report;
pub mod request;
pub mod runner;
pub mod stats;

/// One progress line of a long run.
pub fn step(message: &str) {
    println!("==> {message}");
}
