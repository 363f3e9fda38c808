//! Sampling: the SDK sampler `OTEL_TRACES_SAMPLER` names (with the Jaeger
//! remote sampler built in code, which the SDK does not read from the
//! environment), and the filter that keeps `tracing` spans of unsampled
//! traces out of the bridge.

mod remote;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use opentelemetry_sdk::trace::{Sampler, ShouldSample};

use crate::InitError;
use crate::config::{SamplerConfig, TelemetryConfig};

/// The sampler `config` asks for. Public so a service that builds its own
/// provider gets the same `OTEL_TRACES_SAMPLER` semantics; the Jaeger remote
/// sampler polls its endpoint on the Tokio runtime, so call this inside one.
/// Its sampled root spans carry `sampler.type` and `sampler.param`, which
/// Jaeger's adaptive sampling counts (jaegertracing/jaeger#6700).
pub fn sampler(config: &TelemetryConfig) -> Result<Box<dyn ShouldSample>, InitError> {
    let parent_based = |s| Sampler::ParentBased(Box::new(s));
    Ok(Box::new(match &config.sampler {
        SamplerConfig::AlwaysOn => Sampler::AlwaysOn,
        SamplerConfig::AlwaysOff => Sampler::AlwaysOff,
        SamplerConfig::TraceIdRatio(r) => Sampler::TraceIdRatioBased(*r),
        SamplerConfig::ParentBasedAlwaysOn => parent_based(Sampler::AlwaysOn),
        SamplerConfig::ParentBasedAlwaysOff => parent_based(Sampler::AlwaysOff),
        SamplerConfig::ParentBasedTraceIdRatio(r) => parent_based(Sampler::TraceIdRatioBased(*r)),
        SamplerConfig::JaegerRemote(remote) => {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| InitError::Sampler(e.to_string()))?;
            let served = Arc::new(RwLock::new(remote::Served::Initial(
                remote.initial_sampling_rate,
            )));
            let sampler = Sampler::jaeger_remote(
                opentelemetry_sdk::runtime::Tokio,
                remote::JaegerSamplingClient::new(
                    client,
                    served.clone(),
                    remote.initial_sampling_rate,
                ),
                Sampler::TraceIdRatioBased(remote.initial_sampling_rate),
                config.service_name.clone(),
            )
            .with_endpoint(remote.endpoint.clone())
            .with_update_interval(remote.polling_interval)
            .build()
            .map_err(|e| InitError::Sampler(e.to_string()))?;
            let reported = remote::Reported {
                inner: sampler,
                served,
            };
            // Sampler::ParentBased would drop the root sampler's attributes;
            // the spec's ParentBasedSampler keeps them.
            return Ok(if remote.parent_based {
                Box::new(Sampler::parent_based(reported))
            } else {
                Box::new(reported)
            });
        }
    }))
}

/// Keeps a `tracing` span out of the bridge when the current context's span
/// is unsampled: the sampler would drop it anyway (a parent-based sampler
/// keeps an unsampled parent's decision), and the bridge would first build
/// its OpenTelemetry span, attributes and all. Spans below it stay out too,
/// since the context stays the unsampled one. A span with no trace around it
/// (a root) and every event go through.
#[derive(Debug, Clone, Copy, Default)]
pub struct BelowSampled;

impl<S> tracing_subscriber::layer::Filter<S> for BelowSampled {
    fn enabled(
        &self,
        meta: &tracing::Metadata<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        !meta.is_span()
            || opentelemetry::Context::map_current(|cx| {
                use opentelemetry::trace::TraceContextExt as _;
                let span = cx.span();
                let sc = span.span_context();
                !sc.is_valid() || sc.is_sampled()
            })
    }

    fn callsite_enabled(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if meta.is_span() {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::always()
        }
    }
}
