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

/// Gives a query future the current `tracing` span's OpenTelemetry context.
///
/// sqlx-otel parents each statement's span on `Context::current()`. The
/// OpenTelemetry layer no longer makes every entered span current (attaching
/// a context on every poll of every span cost about a third of what tracing
/// adds to a request), so the futures that run statements get the context
/// here, and only they: `db::find_user(&pool, &id).in_span_context().await`.
pub trait InSpanContext: std::future::Future + Sized {
    fn in_span_context(self) -> opentelemetry::context::WithContext<Self> {
        use opentelemetry::context::FutureExt as _;
        self.with_context(crate::spans::current_context())
    }
}

impl<F: std::future::Future> InSpanContext for F {}
