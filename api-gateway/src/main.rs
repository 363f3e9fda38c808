use anyhow::Context;
use api_gateway::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = tracing_common::init("api-gateway", env!("CARGO_PKG_VERSION"))?;
    let config = Config::from_env()?;
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", config.port))
        .await
        .with_context(|| format!("binding port {}", config.port))?;
    let running = api_gateway::start(&config, listener)?;
    tracing::info!(port = config.port, "api-gateway listening");
    running.until_signal().await?;
    telemetry.shutdown();
    Ok(())
}
