//! Queries of the `users` database, one function each.

use order_contract::UserId;
use order_contract::http::User;
use tracing_common::sqlx::Db;

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    name: String,
    tier: String,
}

/// The user with this id (span `SELECT users`, `names::SELECT_USERS`).
pub async fn find_user(db: &Db, id: &UserId) -> Result<Option<User>, sqlx::Error> {
    let row = sqlx::query_as::<_, UserRow>("SELECT id, name, tier FROM users WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(db.statement("SELECT", "users"))
        .await?;
    Ok(row.map(|r| User {
        id: r.id,
        name: r.name,
        tier: r.tier,
    }))
}
