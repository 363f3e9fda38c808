//! Process-wide telemetry set-up: provider, exporters, sampler, propagators and
//! the `tracing` subscriber, and the guard that flushes them at shutdown.

pub mod config;
pub(crate) mod logging;
pub(crate) mod stats;

use opentelemetry_semantic_conventions::attribute as semconv;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanExporter,
};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{ConfigError, ExporterConfig, LogFormat, TelemetryConfig};
use crate::propagation::BaggageSpanProcessor;
use crate::setup::logging::{JsonWithTraceIds, SpanNamesOnly};
use crate::setup::stats::{CountingExporter, CountingProcessor, ExportStats, SharedCounters};

/// Telemetry could not start. Each variant names what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot build the {exporter} span exporter: {reason}")]
    Exporter {
        exporter: &'static str,
        reason: String,
    },
    #[error("cannot build the Jaeger remote sampler (OTEL_TRACES_SAMPLER_ARG): {0}")]
    Sampler(String),
    #[error("a global tracing subscriber is already installed: {0}")]
    Subscriber(String),
}

/// Keeps the tracer provider alive; [`TelemetryGuard::shutdown`] (or drop)
/// flushes queued spans within a bounded time. Hold it in `main` until the
/// server has drained, so the last requests' spans are exported too.
#[must_use = "dropping the guard shuts telemetry down"]
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    counters: SharedCounters,
    /// Where shutdown writes the counts (`TELEMETRY_STATS_FILE`); taken
    /// when written, so it is written once.
    stats_file: Option<std::path::PathBuf>,
}

/// Upper bound on the time shutdown spends flushing spans.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

impl TelemetryGuard {
    /// The tracer provider; `None` when `OTEL_SDK_DISABLED=true`.
    pub fn provider(&self) -> Option<&SdkTracerProvider> {
        self.provider.as_ref()
    }

    /// Span export counters so far.
    pub fn stats(&self) -> ExportStats {
        self.counters.snapshot()
    }

    /// Flushes and stops the exporters (at most [`SHUTDOWN_TIMEOUT`]), then logs
    /// how many spans were exported and lost and, when `TELEMETRY_STATS_FILE`
    /// names a file ([`TelemetryConfig::stats_file`]), writes the figures there
    /// as JSON ([`ExportStats::to_json`]; zeros when the SDK is disabled).
    pub fn shutdown(mut self) -> ExportStats {
        let stats = self.shutdown_inner();
        self.write_stats_file(stats);
        stats
    }

    fn write_stats_file(&mut self, stats: ExportStats) {
        let Some(path) = self.stats_file.take() else {
            return;
        };
        if let Err(error) = stats.write_file(&path) {
            tracing::warn!(
                %error,
                path = %path.display(),
                "cannot write the span export stats (TELEMETRY_STATS_FILE)"
            );
        }
    }

    fn shutdown_inner(&mut self) -> ExportStats {
        let Some(provider) = self.provider.take() else {
            return self.stats();
        };
        // The batch processor's worker thread does the export; blocking here is
        // what makes the flush happen before the process exits.
        let result = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT);
        let stats = self.stats();
        match result {
            Ok(()) if stats.lost() == 0 => tracing::info!(
                spans_exported = stats.exported,
                "telemetry shut down; all spans exported"
            ),
            Ok(()) => tracing::warn!(
                spans_ended = stats.ended,
                spans_exported = stats.exported,
                spans_lost = stats.lost(),
                spans_failed = stats.failed,
                "telemetry shut down; some spans were not exported"
            ),
            Err(error) => tracing::warn!(
                %error,
                spans_ended = stats.ended,
                spans_exported = stats.exported,
                spans_lost = stats.lost(),
                "telemetry shutdown did not finish cleanly"
            ),
        }
        stats
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let stats = self.shutdown_inner();
        self.write_stats_file(stats);
    }
}

/// Reads `OTEL_*`, `RUST_LOG` and `LOG_FORMAT`, installs the global tracer
/// provider, propagator and `tracing` subscriber. Call once, early in `main`,
/// inside the Tokio runtime (the gRPC exporter and the remote sampler need it).
pub fn init(service_name: &str, service_version: &str) -> Result<TelemetryGuard, InitError> {
    let config = TelemetryConfig::from_env(service_name)?;
    init_with(&config, service_version)
}

/// [`init`] with an explicit configuration.
pub fn init_with(
    config: &TelemetryConfig,
    service_version: &str,
) -> Result<TelemetryGuard, InitError> {
    let guard = init_local(config, service_version)?;
    opentelemetry::global::set_text_map_propagator(crate::propagation::propagator(
        &config.propagators,
    ));
    let provider = guard.provider.clone();
    if let Some(provider) = &provider {
        opentelemetry::global::set_tracer_provider(provider.clone());
    }

    let filter = EnvFilter::try_new(&config.log_filter).map_err(|e| {
        InitError::Config(ConfigError {
            variable: "RUST_LOG",
            value: config.log_filter.clone(),
            reason: e.to_string(),
        })
    })?;
    let fmt_layer = match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(SpanNamesOnly)
            .event_format(JsonWithTraceIds)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().pretty().boxed(),
    };
    let otel_layer = provider
        .as_ref()
        .map(|p| otel_layer(p.tracer(tracer_scope())));
    tracing_subscriber::registry()
        .with(otel_layer)
        .with(JsonWithTraceIds::log_layer(
            fmt_layer.with_filter(filter),
            &config.log_filter,
        ))
        .try_init()
        .map_err(|e| InitError::Subscriber(e.to_string()))?;

    Ok(guard)
}

/// The tracer provider, exporters and export counters `config` describes,
/// installing nothing process-wide (no global provider, propagator or
/// subscriber): for tests and tools that make spans through
/// [`TelemetryGuard::provider`]. Call inside the Tokio runtime, like [`init`].
pub fn init_local(
    config: &TelemetryConfig,
    service_version: &str,
) -> Result<TelemetryGuard, InitError> {
    let counters = SharedCounters::default();
    let provider = if config.sdk_disabled {
        None
    } else {
        Some(tracer_provider(config, service_version, &counters)?)
    };
    Ok(TelemetryGuard {
        provider,
        counters,
        stats_file: config.stats_file.clone(),
    })
}

/// The `tracing` -> OpenTelemetry bridge for the services' own INTERNAL
/// spans (`#[instrument]`, `info_span!`): the application's INFO-and-above spans
/// (library internals stay out), and none below an unsampled span
/// ([`BelowSampled`](crate::sampling::BelowSampled)).
///
/// A `tracing` span's parent is the current OpenTelemetry context
/// (`Context::current()`): the SERVER or CONSUMER span the adapters made
/// current, or the `tracing` span entered around it, which the bridge makes
/// current while it is entered (context activation). So an INTERNAL span in
/// a handler is the SERVER span's child, and a CLIENT or database span in an
/// INTERNAL span's scope is the INTERNAL span's child.
///
/// Busy/idle timings, thread and source-location attributes are off: they add
/// work to every span and nothing a trace reader needs here.
pub fn otel_layer<S>(tracer: opentelemetry_sdk::trace::SdkTracer) -> OtelLayer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::filter::FilterExt as _;
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_location(false)
        .with_level(false)
        .with_target(false)
        .with_filter(span_filter().and(crate::sampling::BelowSampled))
}

/// What [`otel_layer`] returns.
pub type OtelLayer<S> = tracing_subscriber::filter::Filtered<
    tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>,
    tracing_subscriber::filter::combinator::And<
        tracing_subscriber::filter::Targets,
        crate::sampling::BelowSampled,
        S,
    >,
    S,
>;

/// What reaches the OpenTelemetry layer: the application's INFO-and-above
/// spans and events. Library internals (connection pool chatter, HTTP/2
/// frames, the exporter's own gRPC calls) would be noise in every trace, and
/// the exporter's spans would feed back into the exporter.
pub(crate) fn span_filter() -> tracing_subscriber::filter::Targets {
    use tracing::level_filters::LevelFilter;
    tracing_subscriber::filter::Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("hyper", LevelFilter::OFF)
        .with_target("hyper_util", LevelFilter::OFF)
        .with_target("h2", LevelFilter::OFF)
        .with_target("tonic", LevelFilter::OFF)
        .with_target("tower", LevelFilter::OFF)
        .with_target("reqwest", LevelFilter::OFF)
        .with_target("sqlx", LevelFilter::WARN)
        .with_target("rdkafka", LevelFilter::WARN)
}

/// The instrumentation scope of spans made through `tracing`.
pub(crate) fn tracer_scope() -> &'static str {
    env!("CARGO_PKG_NAME")
}

/// The resource: `service.name`, `service.version`, `service.instance.id`,
/// `deployment.environment.name` (when the application names one), then
/// `OTEL_RESOURCE_ATTRIBUTES`, which wins.
pub(crate) fn resource(config: &TelemetryConfig, service_version: &str) -> Resource {
    let mut attributes = vec![
        KeyValue::new(semconv::SERVICE_VERSION, service_version.to_owned()),
        KeyValue::new(
            semconv::SERVICE_INSTANCE_ID,
            uuid::Uuid::new_v4().to_string(),
        ),
    ];
    if let Some(environment) = &config.environment {
        attributes.push(KeyValue::new(
            semconv::DEPLOYMENT_ENVIRONMENT_NAME,
            environment.clone(),
        ));
    }
    attributes.retain(|kv| !config.resource_attributes.contains_key(kv.key.as_str()));
    attributes.extend(
        config
            .resource_attributes
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
    );
    Resource::builder_empty()
        .with_attributes(attributes)
        .with_service_name(config.service_name.clone())
        .build()
}

fn tracer_provider(
    config: &TelemetryConfig,
    service_version: &str,
    counters: &SharedCounters,
) -> Result<SdkTracerProvider, InitError> {
    let mut builder = SdkTracerProvider::builder()
        .with_resource(resource(config, service_version))
        .with_sampler(crate::sampling::sampler(config)?);
    for (i, exporter) in config.exporters.iter().enumerate() {
        let processor = match exporter {
            ExporterConfig::Otlp(otlp) => {
                let built =
                    crate::export::OtlpExporter::new(otlp).map_err(|e| InitError::Exporter {
                        exporter: "otlp",
                        reason: e.to_string(),
                    })?;
                counted_batch(built, "otlp", counters)
            }
            // Deprecated upstream (Zipkin ingests OTLP now); kept for users whose
            // backend only speaks the Zipkin v2 API.
            #[allow(deprecated)]
            #[cfg(feature = "zipkin")]
            ExporterConfig::Zipkin { endpoint } => {
                let built = opentelemetry_zipkin::ZipkinExporter::builder()
                    .with_collector_endpoint(endpoint)
                    .build()
                    .map_err(|e| InitError::Exporter {
                        exporter: "zipkin",
                        reason: e.to_string(),
                    })?;
                counted_batch(built, "zipkin", counters)
            }
            #[cfg(feature = "console")]
            ExporterConfig::Console => counted_batch(
                opentelemetry_stdout::SpanExporter::default(),
                "console",
                counters,
            ),
            // Refused when the configuration is read (`needs_feature`).
            #[allow(unreachable_patterns)]
            other => {
                return Err(InitError::Exporter {
                    exporter: "zipkin or console",
                    reason: format!("this build of tracing-common cannot export with {other:?}"),
                });
            }
        };
        // Baggage is copied once per span, by the first pipeline; wrapping it
        // rather than registering it beside the pipeline spares a copy of every
        // finished span (see `BaggageSpanProcessor`).
        builder = if i == 0 {
            builder.with_span_processor(BaggageSpanProcessor::new(processor, config.span_baggage))
        } else {
            builder.with_span_processor(processor)
        };
    }
    Ok(builder.build())
}

/// A batch processor (bounded queue, sizes from `OTEL_BSP_*`) around a counted
/// exporter, counting the spans handed to it.
fn counted_batch<E: SpanExporter + 'static>(
    exporter: E,
    name: &'static str,
    counters: &SharedCounters,
) -> CountingProcessor<BatchSpanProcessor> {
    let exporter = CountingExporter {
        inner: exporter,
        counters: counters.clone(),
        name,
    };
    let batch = BatchSpanProcessor::builder(exporter)
        .with_batch_config(BatchConfigBuilder::default().build())
        .build();
    CountingProcessor {
        inner: batch,
        counters: counters.clone(),
    }
}
