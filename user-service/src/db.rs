//! Queries of the `users` database, one function each.

use order_contract::UserId;
use order_contract::http::User;
use sqlx::Postgres;
use tracing_common::db::{QueryAnnotateExt, TracedPool};

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    name: String,
    tier: String,
}

/// The user with this id (span `SELECT users`, `names::SELECT_USERS`).
pub async fn find_user(
    pool: &TracedPool<Postgres>,
    id: &UserId,
) -> Result<Option<User>, sqlx::Error> {
    let row = sqlx::query_as::<_, UserRow>("SELECT id, name, tier FROM users WHERE id = $1")
        .bind(id.as_str())
        .with_operation("SELECT", "users")
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|r| User {
        id: r.id,
        name: r.name,
        tier: r.tier,
    }))
}
