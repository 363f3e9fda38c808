//! In-memory span capture for tests of this crate and of the services.
//!
//! The first call installs, for the whole test process, a tracer provider that
//! exports synchronously to memory, the W3C propagators, and the `tracing`
//! bridge (logs go to the test output only when `TEST_LOG` is set). Tests that
//! share a process tell their spans apart by trace id.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry::{Key, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::baggage::BaggageSpanProcessor;
use crate::config::PropagatorKind;

/// Finished spans of this test process.
#[derive(Debug)]
pub struct SpanCapture {
    exporter: InMemorySpanExporter,
    _provider: SdkTracerProvider,
}

static CAPTURE: OnceLock<SpanCapture> = OnceLock::new();

/// Installs the capture on first use and returns it.
pub fn capture() -> &'static SpanCapture {
    CAPTURE.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BaggageSpanProcessor::default())
            .with_simple_exporter(exporter.clone())
            .build();
        opentelemetry::global::set_tracer_provider(provider.clone());
        opentelemetry::global::set_text_map_propagator(crate::propagation::propagator(&[
            PropagatorKind::TraceContext,
            PropagatorKind::Baggage,
        ]));
        let logs = std::env::var_os("TEST_LOG").is_some().then(|| {
            tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter(tracing_subscriber::EnvFilter::new("info"))
        });
        let _ = tracing_subscriber::registry()
            .with(
                crate::telemetry::otel_layer(provider.tracer("test"))
                    .with_filter(crate::telemetry::span_filter()),
            )
            .with(logs)
            .try_init();
        SpanCapture {
            exporter,
            _provider: provider,
        }
    })
}

impl SpanCapture {
    /// Every finished span so far.
    pub fn spans(&self) -> Vec<SpanData> {
        self.exporter.get_finished_spans().unwrap_or_default()
    }

    /// The finished spans of one trace.
    pub fn trace(&self, trace_id: TraceId) -> Vec<SpanData> {
        self.spans()
            .into_iter()
            .filter(|s| s.span_context.trace_id() == trace_id)
            .collect()
    }

    /// Waits (bounded) until `done` holds for the trace's spans, and returns them.
    /// Spans of background work (consumers, relays) finish after the response.
    pub fn wait_for(
        &self,
        trace_id: TraceId,
        timeout: Duration,
        done: impl Fn(&[SpanData]) -> bool,
    ) -> Vec<SpanData> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.trace(trace_id);
            if done(&spans) || Instant::now() >= deadline {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The one span named `name`; panics with the names present if there is not exactly one.
pub fn only<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    let found: Vec<&SpanData> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one span named {name:?}, found {}; spans: {:?}",
        found.len(),
        spans.iter().map(|s| s.name.as_ref()).collect::<Vec<_>>()
    );
    found[0]
}

/// The value of attribute `key` on `span`.
pub fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == Key::new(key.to_owned()))
        .map(|kv| &kv.value)
}

/// The attribute as a string (any value type), for terse assertions.
pub fn attr_str(span: &SpanData, key: &str) -> Option<String> {
    attr(span, key).map(|v| v.as_str().into_owned())
}

/// Whether `child`'s parent is `parent`.
pub fn is_child_of(child: &SpanData, parent: &SpanData) -> bool {
    child.parent_span_id == parent.span_context.span_id()
        && child.span_context.trace_id() == parent.span_context.trace_id()
}

/// Parses the trace id out of a `traceparent` header value.
pub fn trace_id_of(traceparent: &str) -> Option<TraceId> {
    let mut parts = traceparent.split('-');
    let _version = parts.next()?;
    TraceId::from_hex(parts.next()?).ok()
}

/// Parses the span id out of a `traceparent` header value.
pub fn span_id_of(traceparent: &str) -> Option<SpanId> {
    SpanId::from_hex(traceparent.split('-').nth(2)?).ok()
}

/// Waits (bounded) for a short time so spans ending on other threads land.
pub fn settle() {
    std::thread::sleep(Duration::from_millis(50));
}
