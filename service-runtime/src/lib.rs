//! What every order-flow service runs on besides telemetry (which is
//! `tracing-common`'s): the parts a service of this shape needs whatever its
//! business is.
//!
//! Cargo features, both on by default: `kafka` ([`kafka`]) and `postgres`
//! ([`database`], [`settings::env_database_url`]). api-gateway uses neither.
//!
//! - [`settings`]: typed settings from the environment; errors name the variable.
//! - [`lifecycle`]: [`Running`] binds at once, waits for the database with
//!   backoff behind a `/healthz`/`/readyz` gate, serves, and stops HTTP,
//!   background work and the producer in order; [`lifecycle::shutdown_signal`].
//! - [`database`] (feature `postgres`): connect, create if missing, migrate;
//!   `/readyz`; a failed statement as a 503 or 500 that leaks nothing.
//! - [`kafka`] (feature `kafka`): the self-replacing idempotent producer, the
//!   consumer that rejoins its group, the consume loop that stores offsets
//!   after the work committed, topic creation.
//! - [`edge`]: request timeout (408), header budget (431), JSON-only bodies (415).
//! - [`faults`]: opt-in latency and error injection into named steps (demos).
//! - [`variables`]: every environment variable the services read (`variables.tsv`).

#[cfg(feature = "postgres")]
pub mod database;
pub mod edge;
pub mod faults;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod lifecycle;
pub mod settings;
pub mod variables;

pub use lifecycle::{Background, Flush, Running, Started};

/// The allocator of the services' binaries ([`service_main!`]). Tracing
/// allocates per span (attributes, span data, export buffers): in a profile
/// of traced load glibc's malloc and free took about a tenth of a service's
/// CPU; mimalloc's thread-local free lists make that cheaper.
pub use mimalloc::MiMalloc;

/// A service's whole `main.rs`: [`MiMalloc`] as the global allocator and a
/// Tokio `main` running [`main`] with the crate's `config::Config::from_env`
/// and `start`:
///
/// ```ignore
/// service_runtime::service_main!("order-service", order_service);
/// ```
#[macro_export]
macro_rules! service_main {
    ($name:literal, $service:ident) => {
        #[global_allocator]
        static GLOBAL: $crate::MiMalloc = $crate::MiMalloc;

        #[tokio::main]
        async fn main() -> anyhow::Result<()> {
            $crate::main(
                $name,
                env!("CARGO_PKG_VERSION"),
                $service::config::Config::from_env,
                |config| config.port,
                $service::start,
            )
            .await
        }
    };
}

/// A service's whole `main`: telemetry, its settings, the listener on `PORT`,
/// `start`, then serving until SIGTERM or Ctrl-C and a stop in order (HTTP,
/// background work, the producer, the spans' flush).
///
/// ```ignore
/// service_runtime::main("order-service", env!("CARGO_PKG_VERSION"), Config::from_env, |c| c.port, order_service::start).await
/// ```
pub async fn main<C, E, S, F>(
    name: &'static str,
    version: &'static str,
    settings: S,
    port: impl FnOnce(&C) -> u16,
    start: F,
) -> anyhow::Result<()>
where
    S: FnOnce() -> Result<C, E>,
    E: std::error::Error + Send + Sync + 'static,
    F: AsyncFnOnce(&C, tokio::net::TcpListener) -> anyhow::Result<Running>,
{
    use anyhow::Context as _;
    let telemetry = telemetry(name, version)?;
    let config = settings()?;
    let port = port(&config);
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
        .await
        .with_context(|| format!("binding port {port}"))?;
    // PORT=0 takes a free port; this line says which (tests read it). It
    // comes before start-up's database work: tracing-subscriber can drop the
    // first event after a sqlx query when RUST_LOG has per-target directives.
    tracing::info!(port = listener.local_addr()?.port(), "{name} listening");
    let running = start(&config, listener).await?;
    running.until_signal().await?;
    telemetry.shutdown();
    Ok(())
}

/// Telemetry for a service of the order flow: [`tracing_common::init`] with
/// what the application adds to the `OTEL_*` variables, the order's baggage
/// keys copied onto every span and the `local` deployment environment
/// (`OTEL_RESOURCE_ATTRIBUTES=deployment.environment.name=...` overrides it).
pub fn telemetry(
    service_name: &str,
    service_version: &str,
) -> Result<tracing_common::TelemetryGuard, tracing_common::InitError> {
    let config = tracing_common::TelemetryConfig::from_env(service_name)?
        .with_span_baggage(order_contract::trace::baggage::ON_SPANS)
        .with_environment("local");
    tracing_common::init_with(&config, service_version)
}
