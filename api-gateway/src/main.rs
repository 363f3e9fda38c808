use anyhow::Context;
use api_gateway::config::Config;

// Tracing allocates per span (attributes, span data, export buffers): in a
// profile of traced load glibc's malloc and free took about a tenth of the
// service's CPU. mimalloc's thread-local free lists make that cheaper.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = service_runtime::telemetry("api-gateway", env!("CARGO_PKG_VERSION"))?;
    let config = Config::from_env()?;
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", config.port))
        .await
        .with_context(|| format!("binding port {}", config.port))?;
    // PORT=0 takes a free port; this line says which (tests read it). It
    // comes before start-up's database work: tracing-subscriber can drop the
    // first event after a sqlx query when RUST_LOG has per-target directives.
    tracing::info!(
        port = listener.local_addr()?.port(),
        "api-gateway listening"
    );
    let running = api_gateway::start(&config, listener)?;
    running.until_signal().await?;
    telemetry.shutdown();
    Ok(())
}
