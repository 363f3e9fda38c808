//! Queries of the `inventory` database, one function each.

use tracing_common::sqlx::Db;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stock {
    pub product_id: String,
    pub name: String,
    pub available: i32,
}

/// Current stock of these products (span `SELECT stock`, `names::SELECT_STOCK`).
pub async fn stock_of(db: &Db, product_ids: &[String]) -> Result<Vec<Stock>, sqlx::Error> {
    sqlx::query_as::<_, Stock>(
        "SELECT product_id, name, available FROM stock WHERE product_id = ANY($1)",
    )
    .bind(product_ids)
    .fetch_all(db.statement("SELECT", "stock"))
    .await
}

/// What was decided for an order event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Reserved,
    Rejected(String),
}

/// The answer already given to `event_id`, if it was processed before.
pub async fn processed_outcome(db: &Db, event_id: Uuid) -> Result<Option<Outcome>, sqlx::Error> {
    let row: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT outcome, reason FROM processed_events WHERE event_id = $1")
            .bind(event_id)
            .fetch_optional(db.statement("SELECT", "processed_events"))
            .await?;
    Ok(row.map(|(outcome, reason)| match outcome.as_str() {
        "reserved" => Outcome::Reserved,
        _ => Outcome::Rejected(reason.unwrap_or_default()),
    }))
}

/// Reserves every line of an order in one transaction, or none of them, and
/// records the event as processed in the same transaction. Returns `None`
/// when another delivery of the same event got there first. Spans: `INSERT
/// processed_events`, then per line `UPDATE stock` (`names::UPDATE_STOCK`) and
/// `INSERT reservations`.
pub async fn reserve(
    db: &Db,
    event_id: Uuid,
    order_id: Uuid,
    lines: &[(String, i32)],
) -> Result<Option<Outcome>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let claimed = sqlx::query(
        "INSERT INTO processed_events (event_id, order_id, outcome) VALUES ($1, $2, 'rejected') \
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(event_id)
    .bind(order_id)
    .execute(tx.statement("INSERT", "processed_events"))
    .await?
    .rows_affected();
    if claimed == 0 {
        tx.rollback().await?;
        return Ok(None);
    }
    let mut shortage = None;
    for (product_id, quantity) in lines {
        // Conditional decrement: never below zero, whatever runs concurrently.
        let updated = sqlx::query(
            "UPDATE stock SET available = available - $2 WHERE product_id = $1 AND available >= $2",
        )
        .bind(product_id)
        .bind(quantity)
        .execute(tx.statement("UPDATE", "stock"))
        .await?
        .rows_affected();
        if updated == 0 {
            shortage = Some(format!("insufficient stock for {product_id}"));
            break;
        }
        sqlx::query(
            "INSERT INTO reservations (order_id, product_id, quantity) VALUES ($1, $2, $3)",
        )
        .bind(order_id)
        .bind(product_id)
        .bind(quantity)
        .execute(tx.statement("INSERT", "reservations"))
        .await?;
    }
    let outcome = match shortage {
        None => Outcome::Reserved,
        Some(reason) => {
            // Undo the lines reserved so far, keep the processed-event claim.
            tx.rollback().await?;
            let mut tx = db.begin().await?;
            sqlx::query(
                "INSERT INTO processed_events (event_id, order_id, outcome, reason) VALUES ($1, $2, 'rejected', $3) \
                 ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(event_id)
            .bind(order_id)
            .bind(&reason)
            .execute(tx.statement("INSERT", "processed_events"))
            .await?;
            tx.commit().await?;
            return Ok(Some(Outcome::Rejected(reason)));
        }
    };
    sqlx::query("UPDATE processed_events SET outcome = 'reserved' WHERE event_id = $1")
        .bind(event_id)
        .execute(tx.statement("UPDATE", "processed_events"))
        .await?;
    tx.commit().await?;
    Ok(Some(outcome))
}
