//! Queries of the `users` database, one function each.

use sqlx::Postgres;
use tracing_common::db::{QueryAnnotateExt, TracedPool};

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct User {
    pub id: String,
    pub name: String,
    pub tier: String,
}

pub async fn find_user(pool: &TracedPool<Postgres>, id: &str) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as::<_, User>("SELECT id, name, tier FROM users WHERE id = $1")
        .bind(id)
        .with_operation("SELECT", "users")
        .fetch_optional(pool)
        .await
}
