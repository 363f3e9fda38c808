//! Queries of the `orders` database, one function each.

use std::collections::HashMap;

use sqlx::Postgres;
use tracing_common::sqlx::Db;
use uuid::Uuid;

use order_contract::{EventId, OrderId, OrderStatus};

use crate::domain::NewOrder;

/// An order as stored.
#[derive(Debug, Clone)]
pub struct OrderRow {
    pub id: OrderId,
    pub user_id: String,
    pub status: OrderStatus,
    pub status_reason: Option<String>,
    pub total_cents: i64,
}

#[derive(sqlx::FromRow)]
struct StoredOrder {
    id: Uuid,
    user_id: String,
    status: String,
    status_reason: Option<String>,
    total_cents: i64,
}

impl TryFrom<StoredOrder> for OrderRow {
    type Error = sqlx::Error;
    fn try_from(row: StoredOrder) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: OrderId(row.id),
            user_id: row.user_id,
            status: row
                .status
                .parse()
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            status_reason: row.status_reason,
            total_cents: row.total_cents,
        })
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ItemRow {
    pub product_id: String,
    pub quantity: i32,
    pub unit_price_cents: i64,
}

/// An event to publish, written in the order's transaction.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    pub id: EventId,
    pub topic: &'static str,
    pub key: String,
    pub payload: serde_json::Value,
    pub trace_context: HashMap<String, String>,
}

pub enum Inserted {
    Created,
    /// Another request with the same idempotency key created this order first.
    Existing(OrderId),
}

/// Writes the order, its items and its outbox event in one transaction.
/// Spans `INSERT orders`, `INSERT order_items`, `INSERT outbox`
/// (`names::INSERT_ORDERS`, `INSERT_ORDER_ITEMS`, `INSERT_OUTBOX`).
pub async fn insert_order(
    db: &Db,
    id: OrderId,
    order: &NewOrder,
    idempotency_key: Option<&str>,
    event: &OutboxEvent,
) -> Result<Inserted, sqlx::Error> {
    let mut tx = db.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO orders (id, user_id, status, total_cents, idempotency_key) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(id.0)
    .bind(order.user_id.as_str())
    .bind(OrderStatus::Pending.as_str())
    .bind(order.total.0)
    .bind(idempotency_key)
    .execute(tx.statement("INSERT", "orders"))
    .await?
    .rows_affected();
    if inserted == 0 {
        tx.rollback().await?;
        let key = idempotency_key.unwrap_or_default();
        return match order_id_by_key(db, key).await? {
            Some(existing) => Ok(Inserted::Existing(existing)),
            None => Err(sqlx::Error::RowNotFound),
        };
    }
    let lines: Vec<i32> = (0..order.lines.len() as i32).collect();
    let products: Vec<&str> = order.lines.iter().map(|l| l.product_id.as_str()).collect();
    let quantities: Vec<i32> = order.lines.iter().map(|l| l.quantity).collect();
    let prices: Vec<i64> = order.lines.iter().map(|l| l.unit_price.0).collect();
    sqlx::query(
        "INSERT INTO order_items (order_id, line, product_id, quantity, unit_price_cents) \
         SELECT $1, * FROM UNNEST($2::int[], $3::text[], $4::int[], $5::bigint[])",
    )
    .bind(id.0)
    .bind(&lines)
    .bind(&products)
    .bind(&quantities)
    .bind(&prices)
    .execute(tx.statement("INSERT", "order_items"))
    .await?;
    sqlx::query(
        "INSERT INTO outbox (id, topic, message_key, payload, trace_context) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(event.id.0)
    .bind(event.topic)
    .bind(&event.key)
    .bind(&event.payload)
    .bind(sqlx::types::Json(&event.trace_context))
    .execute(tx.statement("INSERT", "outbox"))
    .await?;
    tx.commit().await?;
    Ok(Inserted::Created)
}

pub async fn order_id_by_key(db: &Db, key: &str) -> Result<Option<OrderId>, sqlx::Error> {
    sqlx::query_scalar::<_, Uuid>("SELECT id FROM orders WHERE idempotency_key = $1")
        .bind(key)
        .fetch_optional(db.statement("SELECT", "orders"))
        .await
        .map(|id| id.map(OrderId))
}

pub async fn order(db: &Db, id: OrderId) -> Result<Option<(OrderRow, Vec<ItemRow>)>, sqlx::Error> {
    let Some(order) = sqlx::query_as::<_, StoredOrder>(
        "SELECT id, user_id, status, status_reason, total_cents FROM orders WHERE id = $1",
    )
    .bind(id.0)
    .fetch_optional(db.statement("SELECT", "orders"))
    .await?
    else {
        return Ok(None);
    };
    let order = OrderRow::try_from(order)?;
    let items = sqlx::query_as::<_, ItemRow>(
        "SELECT product_id, quantity, unit_price_cents FROM order_items WHERE order_id = $1 ORDER BY line",
    )
    .bind(id.0)
    .fetch_all(db.statement("SELECT", "order_items"))
    .await?;
    Ok(Some((order, items)))
}

/// Applies an inventory decision once per event id; only a pending order
/// changes. Spans `INSERT processed_events` and `UPDATE orders` (`names::UPDATE_ORDERS`).
pub async fn settle(
    db: &Db,
    event_id: EventId,
    order_id: OrderId,
    status: OrderStatus,
    reason: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let claimed =
        sqlx::query("INSERT INTO processed_events (event_id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(event_id.0)
            .execute(tx.statement("INSERT", "processed_events"))
            .await?
            .rows_affected();
    if claimed == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    let updated = sqlx::query(
        "UPDATE orders SET status = $2, status_reason = $3, updated_at = now() WHERE id = $1 AND status = $4",
    )
    .bind(order_id.0)
    .bind(status.as_str())
    .bind(reason)
    .bind(OrderStatus::Pending.as_str())
    .execute(tx.statement("UPDATE", "orders"))
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(updated == 1)
}

/// An unpublished outbox row, as the relay reads it.
#[derive(Debug, sqlx::FromRow)]
pub struct PendingEvent {
    pub id: Uuid,
    pub topic: String,
    pub message_key: String,
    pub payload: serde_json::Value,
    pub trace_context: sqlx::types::Json<HashMap<String, String>>,
}

/// Locks up to `limit` events nobody published: those in `ids` whatever
/// their age, others older than `min_age_ms`; other replicas skip the
/// locked rows. Runs on the untraced pool: polling is
/// not part of any request's trace, the publish span joins the original one.
pub async fn lock_unpublished(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    ids: &[Uuid],
    min_age_ms: i64,
    limit: i64,
) -> Result<Vec<PendingEvent>, sqlx::Error> {
    sqlx::query_as::<_, PendingEvent>(
        "SELECT id, topic, message_key, payload, trace_context FROM outbox \
         WHERE published_at IS NULL \
           AND (id = ANY($3) OR created_at < now() - make_interval(secs => $1::double precision / 1000)) \
         ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(min_age_ms)
    .bind(limit)
    .bind(ids)
    .fetch_all(&mut **tx)
    .await
}

pub async fn mark_published_locked(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE outbox SET published_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await
        .map(|_| ())
}
