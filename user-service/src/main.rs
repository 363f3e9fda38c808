use anyhow::Context;
use user_service::config::Config;

// Tracing allocates per span (attributes, span data, export buffers): in a
// profile of traced load glibc's malloc and free took about a tenth of the
// service's CPU. mimalloc's thread-local free lists make that cheaper.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = service_runtime::telemetry("user-service", env!("CARGO_PKG_VERSION"))?;
    let config = Config::from_env()?;
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", config.port))
        .await
        .with_context(|| format!("binding port {}", config.port))?;
    // PORT=0 takes a free port; this line says which (tests read it). It
    // comes before start-up's database work: tracing-subscriber can drop the
    // first event after a sqlx query when RUST_LOG has per-target directives.
    tracing::info!(
        port = listener.local_addr()?.port(),
        "user-service listening"
    );
    let running = user_service::start(&config, listener).await?;
    running.until_signal().await?;
    telemetry.shutdown();
    Ok(())
}
