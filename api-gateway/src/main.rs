use anyhow::Context;
use api_gateway::{AppState, config::Config};
use tracing_common::TrustPolicy;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = tracing_common::init("api-gateway", env!("CARGO_PKG_VERSION"))?;
    let config = Config::from_env()?;
    let state = AppState {
        http: tracing_common::client::http_client(config.http_timeout)?,
        user_service_url: config.user_service_url.clone(),
        order_service_url: config.order_service_url.clone(),
        inventory_service_url: config.inventory_service_url.clone(),
        policy: TrustPolicy {
            trace: config.incoming_trace,
            baggage: config.incoming_baggage,
        },
    };
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", config.port))
        .await
        .with_context(|| format!("binding port {}", config.port))?;
    tracing::info!(port = config.port, "api-gateway listening");
    api_gateway::run(listener, state, tracing_common::service::shutdown_signal()).await?;
    telemetry.shutdown();
    Ok(())
}
