//! A service's database: created if missing, migrated, handed out as a
//! [`Db`] (statements traced when their request is sampled, `Db::pool` for
//! probes and pollers); the `/readyz` check; and the HTTP answer for a
//! failed statement.

use tracing_common::sqlx::Db;

/// A service's database: connected (created first if missing), migrated.
pub async fn connect(
    url: &str,
    max_connections: u32,
    migrations: &sqlx::migrate::Migrator,
) -> Result<Db, sqlx::Error> {
    let pool = connect_creating_database(url, max_connections).await?;
    migrations.run(&pool).await?;
    Ok(Db::new(pool))
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
    tracing_common::spans::record_current_error(code, &error.to_string());
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

/// Connects to `url`, creating its database first when it does not exist
/// and the role may create databases (a fresh local Postgres).
pub async fn connect_creating_database(
    url: &str,
    max_connections: u32,
) -> Result<sqlx::PgPool, sqlx::Error> {
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    let options: PgConnectOptions = url.parse()?;
    let pool_options = || {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(3))
    };
    match pool_options().connect_with(options.clone()).await {
        Ok(pool) => Ok(pool),
        // 3D000: invalid_catalog_name, the database does not exist.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {
            let name = options.get_database().unwrap_or("postgres").to_owned();
            let admin = pool_options()
                .max_connections(1)
                .connect_with(options.clone().database("postgres"))
                .await?;
            let quoted = format!("\"{}\"", name.replace('"', "\"\""));
            // The name is quoted as an identifier above; DDL takes no bind parameters.
            let ddl = sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}"));
            match sqlx::query(ddl).execute(&admin).await {
                // 42P04: duplicate_database, another replica won the race.
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
                other => {
                    other?;
                }
            }
            admin.close().await;
            pool_options().connect_with(options).await
        }
        Err(e) => Err(e),
    }
}

/// How long `/readyz` waits for the database: below any probe's timeout
/// (the k8s probes allow 2 s), so a probe always gets an answer.
pub const READINESS_DATABASE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(800);

/// The `/readyz` answer: 200 when the database answers within
/// [`READINESS_DATABASE_TIMEOUT`], 503 with the reason otherwise. Kafka's
/// state is reported in the body from what the service's long-lived Kafka
/// client already knows (`kafka::Watch`), so the answer never waits on a
/// broker; it does not make the service unready: orders are still accepted
/// and wait in the outbox, and consumers catch up once the brokers are back.
/// Pass the untraced pool: probes every few seconds must not become traces.
#[cfg(feature = "kafka")]
pub async fn readiness(
    db: &sqlx::PgPool,
    kafka: Option<&crate::kafka::Watch>,
) -> (http::StatusCode, axum::Json<serde_json::Value>) {
    let (status, mut body) = database_readiness(db).await;
    if let Some(watch) = kafka {
        body["kafka"] = serde_json::json!(watch.describe().1);
    }
    (status, axum::Json(body))
}

/// The `/readyz` answer of a service without Kafka: 200 when the database
/// answers within [`READINESS_DATABASE_TIMEOUT`], 503 with the reason otherwise.
pub async fn database_readiness(db: &sqlx::PgPool) -> (http::StatusCode, serde_json::Value) {
    use serde_json::json;
    let answer = tokio::time::timeout(
        READINESS_DATABASE_TIMEOUT,
        sqlx::query("SELECT 1").execute(db),
    )
    .await;
    let (status, ready, database) = match answer {
        Ok(Ok(_)) => (http::StatusCode::OK, true, "reachable".to_owned()),
        Ok(Err(e)) => (
            http::StatusCode::SERVICE_UNAVAILABLE,
            false,
            format!("unreachable: {e}"),
        ),
        Err(_) => (
            http::StatusCode::SERVICE_UNAVAILABLE,
            false,
            format!(
                "no answer within {} ms",
                READINESS_DATABASE_TIMEOUT.as_millis()
            ),
        ),
    };
    let mut body = json!({ "ready": ready, "database": database });
    if !ready {
        body["reason"] = json!(format!("database: {database}"));
    }
    (status, body)
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
