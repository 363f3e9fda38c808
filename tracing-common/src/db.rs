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

/// A service's database: connected (created first if missing), migrated,
/// and as two handles on one pool: `raw` for probes and pollers whose
/// statements must not become traces, `traced` for request work.
pub async fn connect(
    url: &str,
    max_connections: u32,
    migrations: &sqlx::migrate::Migrator,
) -> Result<(sqlx::PgPool, TracedPool<sqlx::Postgres>), sqlx::Error> {
    let pool = crate::service::connect_creating_database(url, max_connections).await?;
    migrations.run(&pool).await?;
    Ok((pool.clone(), traced_pool(pool)))
}

/// The HTTP answer for a failed statement (status, JSON `error` code,
/// message), logged and recorded on the current span; `database` names it in
/// the message ("the users database is unavailable"). No detail leaks.
pub fn error_response(
    error: &sqlx::Error,
    database: &str,
) -> (http::StatusCode, &'static str, String) {
    tracing::error!(%error, "database error");
    let failure = Failure::of(error);
    let (status, code) = failure.status();
    crate::spans::record_error(&tracing::Span::current(), code, &error.to_string());
    let message = match failure {
        Failure::Unavailable => format!("the {database} database is unavailable"),
        Failure::Internal => "internal error".to_owned(),
    };
    (status, code, message)
}

/// How a failed statement should be answered: the database could not be
/// reached (503, worth retrying), or something else went wrong (500).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Unavailable,
    Internal,
}

impl Failure {
    pub fn of(error: &sqlx::Error) -> Self {
        match error {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Self::Unavailable,
            // 57P01..57P03: admin shutdown, crash shutdown, cannot connect now;
            // 53300: too many connections.
            sqlx::Error::Database(e)
                if matches!(
                    e.code().as_deref(),
                    Some("57P01" | "57P02" | "57P03" | "53300")
                ) =>
            {
                Self::Unavailable
            }
            _ => Self::Internal,
        }
    }

    /// The HTTP status, the JSON `error` code and the span's `error.type`.
    pub fn status(self) -> (http::StatusCode, &'static str) {
        match self {
            Self::Unavailable => (
                http::StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
            ),
            Self::Internal => (http::StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_databases_are_503_and_other_failures_500() {
        assert_eq!(
            Failure::of(&sqlx::Error::PoolTimedOut),
            Failure::Unavailable
        );
        assert_eq!(
            Failure::of(&sqlx::Error::Io(
                std::io::ErrorKind::ConnectionRefused.into()
            )),
            Failure::Unavailable
        );
        assert_eq!(Failure::of(&sqlx::Error::RowNotFound), Failure::Internal);
        assert_eq!(Failure::Unavailable.status().0.as_u16(), 503);
        assert_eq!(
            Failure::Internal.status(),
            (http::StatusCode::INTERNAL_SERVER_ERROR, "internal_error")
        );
    }
}
