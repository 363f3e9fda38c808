//! Faults against the real thing: the four service binaries, an Apache
//! Kafka broker of each test's own, the machine's Postgres and an OTLP receiver. Each test
//! injects one fault, prints what it sent and what came of it, and checks
//! that nothing was lost, nothing done twice, nothing hung and nothing leaked.
//!
//! One module per kind of fault; the helpers they share are here.

use testkit::env as common;

use std::time::{Duration, Instant};

use common::{Env, Setup, accepted, order_body, orders, statuses};
use testkit::process;
use testkit::proxy::{Fault, Proxy};
use tracectl::model::Kind;

mod crashes;
mod database;
mod downstream;
mod events;
mod exporter;
mod kafka;
mod shutdown;

fn report(fault: &str, figures: &[(&str, String)]) {
    let line: Vec<String> = figures.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("FAULT {fault}: {}", line.join(", "));
}

/// The `spans_lost` figure of the last JSON log line that has one (the
/// shutdown line, when spans were lost).
fn last_logged_lost(log: &str) -> Option<u64> {
    log.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v["spans_lost"].as_u64())
}

fn p(latencies: &mut [Duration], pct: f64) -> Duration {
    latencies.sort_unstable();
    loadgen::request::percentile(latencies, pct).unwrap_or_default()
}

/// Every order in the orders database (answered or not: a service killed
/// after its commit leaves an order nobody heard about), then how they
/// settled, how many events inventory-service processed and whether any
/// stock was reserved twice. Asserts that all settled within `within`,
/// each was processed once, and stock matches the reservations.
async fn assert_all_settle_once(
    env: &Env,
    fault: &str,
    mut figures: Vec<(&str, String)>,
    within: Duration,
) {
    let orders = env.orders_db().await;
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM orders")
        .fetch_all(&orders)
        .await
        .unwrap();
    orders.close().await;
    let recovered = Instant::now();
    let settled = env.settle(&ids, within).await;
    let settled_in = recovered.elapsed();
    let inventory = env.inventory_db().await;
    let (processed,): (i64,) = sqlx::query_as("SELECT count(*) FROM processed_events")
        .fetch_one(&inventory)
        .await
        .unwrap();
    let (reservation_rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM reservations")
        .fetch_one(&inventory)
        .await
        .unwrap();
    inventory.close().await;
    let mismatch = env.reservation_mismatch().await;
    let confirmed = settled.get("confirmed").copied().unwrap_or(0);
    let lost =
        settled.get("pending").copied().unwrap_or(0) + settled.get("missing").copied().unwrap_or(0);
    figures.extend([
        ("orders stored", ids.len().to_string()),
        ("settled", format!("{settled:?}")),
        ("settled within", format!("{settled_in:.1?}")),
        ("lost", lost.to_string()),
        ("events processed", processed.to_string()),
        ("reservation rows", reservation_rows.to_string()),
        (
            "reserved twice (stock vs reservations)",
            format!("{mismatch:?}"),
        ),
    ]);
    if lost > 0 {
        for (group, topic) in [
            ("inventory-service", "order-events"),
            ("order-service", "inventory-events"),
        ] {
            figures.push((
                "committed/end",
                format!("{group} {topic} {:?}", env.kafka.lag(group, topic)),
            ));
        }
    }
    report(fault, &figures);
    assert_eq!(lost, 0, "every stored order settles: {settled:?}");
    assert_eq!(
        processed,
        ids.len() as i64,
        "each order's event is processed once"
    );
    assert_eq!(
        reservation_rows,
        2 * confirmed,
        "each confirmed order reserves its two products once"
    );
    assert!(mismatch.is_empty(), "{mismatch:?}");
}
