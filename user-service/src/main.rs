use anyhow::Context;
use user_service::{AppState, config::Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = tracing_common::init("user-service", env!("CARGO_PKG_VERSION"))?;
    let config = Config::from_env()?;
    let db = user_service::connect(&config.database_url)
        .await
        .context("connecting to the users database")?;
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", config.port))
        .await
        .with_context(|| format!("binding port {}", config.port))?;
    tracing::info!(port = config.port, "user-service listening");
    user_service::run(
        listener,
        AppState { db },
        tracing_common::service::shutdown_signal(),
    )
    .await?;
    telemetry.shutdown();
    Ok(())
}
