//! Counting what the export pipeline does with finished spans.
//!
//! The batch processor drops spans silently when its bounded queue is full (the
//! exporter is down or slow). Counting what went in and what the exporter
//! accepted makes those losses visible: in the shutdown log line, and through
//! [`crate::TelemetryGuard::stats`] for tests and benchmarks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};

#[derive(Debug, Default)]
pub(crate) struct Counters {
    ended: AtomicU64,
    exported: AtomicU64,
    failed: AtomicU64,
    failing: AtomicBool,
}

/// A snapshot of the span export counters of one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExportStats {
    /// Sampled spans handed to the export pipeline.
    pub ended: u64,
    /// Spans the exporter reported as delivered.
    pub exported: u64,
    /// Spans in batches the exporter failed to deliver (endpoint down, timeout).
    pub failed: u64,
}

impl ExportStats {
    /// Spans that never reached the backend: failed exports plus spans dropped
    /// from the full queue or still queued. Exact once the provider is shut down.
    pub fn lost(&self) -> u64 {
        self.ended.saturating_sub(self.exported)
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct SharedCounters(Arc<Counters>);

impl SharedCounters {
    pub(crate) fn snapshot(&self) -> ExportStats {
        ExportStats {
            ended: self.0.ended.load(Ordering::Relaxed),
            exported: self.0.exported.load(Ordering::Relaxed),
            failed: self.0.failed.load(Ordering::Relaxed),
        }
    }
}

/// Wraps a processor (the batch processor) to count spans entering it.
#[derive(Debug)]
pub(crate) struct CountingProcessor<P> {
    pub(crate) inner: P,
    pub(crate) counters: SharedCounters,
}

impl<P: SpanProcessor> SpanProcessor for CountingProcessor<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if span.span_context.is_sampled() {
            self.counters.0.ended.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Wraps an exporter to count delivered and failed spans, logging once when
/// export starts failing and once when it recovers (not once per batch).
#[derive(Debug)]
pub(crate) struct CountingExporter<E> {
    pub(crate) inner: E,
    pub(crate) counters: SharedCounters,
    pub(crate) name: &'static str,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let result = self.inner.export(batch).await;
        let c = &self.counters.0;
        match &result {
            Ok(()) => {
                c.exported.fetch_add(n, Ordering::Relaxed);
                if c.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(exporter = self.name, "span export recovered");
                }
            }
            Err(error) => {
                let failed = c.failed.fetch_add(n, Ordering::Relaxed) + n;
                if !c.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        exporter = self.name,
                        %error,
                        spans_lost_so_far = failed,
                        "span export failing; requests are unaffected, spans are being dropped"
                    );
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
