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

/// The `/readyz` answer: 200 when the database answers and, if given, the
/// Kafka brokers do; 503 with the reason otherwise. Pass the untraced pool:
/// probes every few seconds must not become traces.
pub async fn readiness(
    db: &sqlx::PgPool,
    kafka_brokers: Option<&str>,
) -> (http::StatusCode, axum::Json<serde_json::Value>) {
    use serde_json::json;
    let unavailable = |reason: String| {
        (
            http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "ready": false, "reason": reason })),
        )
    };
    if let Err(e) = sqlx::query("SELECT 1").execute(db).await {
        return unavailable(format!("database: {e}"));
    }
    if let Some(brokers) = kafka_brokers
        && let Err(e) = crate::kafka::broker_reachable(brokers).await
    {
        return unavailable(format!("kafka: {e}"));
    }
    (http::StatusCode::OK, axum::Json(json!({ "ready": true })))
}

/// Background work of a service (consumers, relays) that stops together.
pub struct Background {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Default for Background {
    fn default() -> Self {
        Self {
            stop: tokio::sync::watch::channel(false).0,
            tasks: Vec::new(),
        }
    }
}

impl Background {
    /// A receiver that changes to `true` when the service stops; loops pass
    /// it to `select!` next to their work.
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stop.subscribe()
    }

    pub fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.push(tokio::spawn(task));
    }
}

/// A started service: where it listens, and how to stop it in order.
pub struct Running {
    pub addr: std::net::SocketAddr,
    http_stop: tokio::sync::oneshot::Sender<()>,
    http: tokio::task::JoinHandle<std::io::Result<()>>,
    background: Background,
    producer: Option<crate::kafka::Producer>,
}

impl Running {
    /// Serves `router` on `listener` until [`Running::stop`].
    pub fn serve(
        listener: tokio::net::TcpListener,
        router: axum::Router,
        background: Background,
        producer: Option<crate::kafka::Producer>,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let (http_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let http = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Self {
            addr,
            http_stop,
            http,
            background,
            producer,
        })
    }

    /// `http://addr`, for tests and local wiring.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops in the order that loses nothing: HTTP drains its in-flight
    /// requests, then consumers and relays finish their current record, then
    /// the producer flushes what they sent. Spans are the caller's to flush
    /// (the telemetry guard) after this returns.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.http_stop.send(());
        let served = match self.http.await {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(e)),
        };
        let _ = self.background.stop.send(true);
        for task in self.background.tasks {
            let _ = task.await;
        }
        if let Some(producer) = self.producer {
            let _ = tokio::task::spawn_blocking(move || crate::kafka::flush(&producer)).await;
        }
        served
    }

    /// Runs until SIGTERM or Ctrl-C, then [`Running::stop`]s.
    pub async fn until_signal(self) -> std::io::Result<()> {
        shutdown_signal().await;
        self.stop().await
    }
}
