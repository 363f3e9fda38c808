use inventory_service::config::Config;

// Tracing allocates per span (attributes, span data, export buffers): in a
// profile of traced load glibc's malloc and free took about a tenth of the
// service's CPU. mimalloc's thread-local free lists make that cheaper.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_runtime::main(
        "inventory-service",
        env!("CARGO_PKG_VERSION"),
        Config::from_env,
        |config| config.port,
        inventory_service::start,
    )
    .await
}
