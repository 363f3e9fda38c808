//! The little every service binary needs besides telemetry: typed settings
//! from the environment with errors that name the variable, a database that
//! exists, and a shutdown signal.

use std::str::FromStr;

use crate::config::ConfigError;

/// `name` parsed as `T`, or `default` when unset or empty.
pub fn env_or<T: FromStr>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(default),
        Ok(v) => v.trim().parse().map_err(|e: T::Err| ConfigError {
            variable: name,
            value: v,
            reason: e.to_string(),
        }),
        Err(std::env::VarError::NotPresent) => Ok(default),
        Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError {
            variable: name,
            value: "<not UTF-8>".into(),
            reason: "the value is not valid UTF-8".into(),
        }),
    }
}

/// A URL setting: absolute http(s), without a trailing slash.
pub fn env_url(name: &'static str, default: &str) -> Result<String, ConfigError> {
    let value: String = env_or(name, default.to_owned())?;
    match value.parse::<http::Uri>() {
        Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => {
            Ok(value.trim_end_matches('/').to_owned())
        }
        _ => Err(ConfigError {
            variable: name,
            value,
            reason: "expected an absolute http:// or https:// URL".into(),
        }),
    }
}

/// Milliseconds setting as a `Duration`.
pub fn env_millis(name: &'static str, default_ms: u64) -> Result<std::time::Duration, ConfigError> {
    env_or(name, default_ms).map(std::time::Duration::from_millis)
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

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
