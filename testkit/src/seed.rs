//! The seed's order through a running stack, and its trace checked against
//! the order flow: what the end-to-end tests assert on.

use std::time::Duration;

use anyhow::Context;
use tracectl::check::{ORDER_TRACE, problems};
use tracectl::model::Trace;
use tracectl::receiver::Store;
use tracectl::stack::{Placed, SEED_ORDER, place_order, settled_status};

/// The seed's order through a running stack, as the tests see it.
#[derive(Debug)]
pub struct SeedRun {
    pub placed: Placed,
    pub order_id: String,
    /// `confirmed`, `rejected`, or `pending` if it did not settle in time.
    pub status: String,
    pub trace: Trace,
    /// What differs from [`ORDER_TRACE`]; empty when it matches.
    pub problems: Vec<String>,
}

impl SeedRun {
    /// Why this run is not the expected one, with the waterfall, for test failures.
    pub fn report(&self) -> String {
        format!(
            "status {} body {} settled {:?}\n  - {}\n{}",
            self.placed.status,
            self.placed.body,
            self.status,
            self.problems.join("\n  - "),
            tracectl::waterfall::render(&self.trace)
        )
    }
}

/// Posts the seed's order, waits (bounded) for it to settle and for its trace
/// in `store` to match the order flow.
pub async fn seed_order(
    gateway: &str,
    store: &Store,
    timeout: Duration,
) -> anyhow::Result<SeedRun> {
    let placed = place_order(gateway, SEED_ORDER).await?;
    let trace_id = placed
        .trace_id
        .clone()
        .context("the gateway answered without a traceparent header")?;
    let order_id = placed.body["orderId"].as_str().unwrap_or("").to_owned();
    let status = if order_id.is_empty() {
        String::new()
    } else {
        settled_status(gateway, &order_id, timeout).await
    };
    let trace = store
        .wait_for(&trace_id, timeout, |t| problems(t, ORDER_TRACE).is_empty())
        .await;
    let problems = problems(&trace, ORDER_TRACE);
    Ok(SeedRun {
        placed,
        order_id,
        status,
        trace,
        problems,
    })
}
