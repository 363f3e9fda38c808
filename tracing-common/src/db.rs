//! Postgres CLIENT spans with the database semantic conventions, via
//! `sqlx-otel`: wrap the pool once, annotate each query with its operation and
//! table, and every statement becomes a span named `{operation} {table}` with
//! `db.system.name=postgresql`, `db.namespace`, `server.address`,
//! `db.operation.name`, `db.collection.name` and the parameterised
//! `db.query.text` (bind values never appear).

pub use sqlx_otel::{Pool as TracedPool, QueryAnnotateExt, Transaction as TracedTransaction};

/// Wraps a pool so every statement through it is traced.
///
/// The query text is obfuscated (literals become `?`): statements bind their
/// values as parameters, and obfuscation makes sure that a literal written
/// into SQL by hand still never reaches a span.
pub fn traced_pool(pool: sqlx::PgPool) -> TracedPool<sqlx::Postgres> {
    sqlx_otel::PoolBuilder::from(pool)
        .with_query_text_mode(sqlx_otel::QueryTextMode::Obfuscated)
        .build()
}
