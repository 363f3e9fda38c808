//! Counting what the export pipeline does with finished spans.
//!
//! The batch processor drops spans when its bounded queue is full (the
//! exporter is down or slow), logging only the first drop. Counting what went
//! in and what the exporter accepted makes those losses visible: in a warning
//! when export starts failing, repeated with the counts at most once a
//! [`STILL_FAILING_EVERY`] while it keeps failing, in the shutdown log line,
//! through [`crate::TelemetryGuard::stats`] for tests and benchmarks, and, when
//! `TELEMETRY_STATS_FILE` ([`crate::config::STATS_FILE_VARIABLE`]) names a
//! file, as JSON in that file at shutdown (see [`ExportStats::to_json`]), for
//! a benchmark or test reading the figures of a process that has exited.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// When export failures were last logged (ms since the Unix epoch).
    warned_at_ms: AtomicU64,
}

/// How often a still-failing exporter logs its counts again.
pub(crate) const STILL_FAILING_EVERY: Duration = Duration::from_secs(60);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A snapshot of the span export counters of one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
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

    /// The figures as one JSON object:
    /// `{"ended":…,"exported":…,"failed":…,"lost":…}` (`lost` as [`Self::lost`]).
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "ended": self.ended,
            "exported": self.exported,
            "failed": self.failed,
            "lost": self.lost(),
        })
        .to_string()
    }

    /// Parses what [`Self::to_json`] wrote; `None` if `text` is not such an
    /// object (`lost` is derived, not read).
    pub fn from_json(text: &str) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        Some(Self {
            ended: v.get("ended")?.as_u64()?,
            exported: v.get("exported")?.as_u64()?,
            failed: v.get("failed")?.as_u64()?,
        })
    }

    /// Reads a stats file written at shutdown (`TELEMETRY_STATS_FILE`).
    pub fn read_file(path: &std::path::Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        Self::from_json(&text).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} holds no export stats: {text:?}", path.display()),
            )
        })
    }

    /// Writes [`Self::to_json`] to `path`, through a temporary file beside it
    /// and a rename, so a reader sees the whole object or no file.
    pub(crate) fn write_file(&self, path: &std::path::Path) -> std::io::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        std::fs::write(&tmp, self.to_json())?;
        std::fs::rename(&tmp, path)
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
                let now = now_ms();
                if !c.failing.swap(true, Ordering::Relaxed) {
                    c.warned_at_ms.store(now, Ordering::Relaxed);
                    tracing::warn!(
                        exporter = self.name,
                        %error,
                        spans_lost_so_far = failed,
                        "span export failing; requests are unaffected, spans are being dropped"
                    );
                } else {
                    let last = c.warned_at_ms.load(Ordering::Relaxed);
                    let due = now.saturating_sub(last) >= STILL_FAILING_EVERY.as_millis() as u64;
                    if due
                        && c.warned_at_ms
                            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                            .is_ok()
                    {
                        let stats = self.counters.snapshot();
                        tracing::warn!(
                            exporter = self.name,
                            %error,
                            spans_ended = stats.ended,
                            spans_exported = stats.exported,
                            spans_failed = stats.failed,
                            spans_lost = stats.lost(),
                            "span export still failing"
                        );
                    }
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry_sdk::error::OTelSdkError;

    use super::*;

    #[derive(Debug)]
    struct Down;

    impl SpanExporter for Down {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            Err(OTelSdkError::InternalFailure("connection refused".into()))
        }
    }

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn stats_round_trip_through_json_and_lost_is_written_too() {
        let stats = ExportStats {
            ended: 300,
            exported: 120,
            failed: 80,
        };
        let json = stats.to_json();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["lost"], 180, "{json}");
        assert_eq!(ExportStats::from_json(&json), Some(stats));
        assert_eq!(ExportStats::from_json(r#"{"ended":1}"#), None);
        assert_eq!(ExportStats::from_json("telemetry shut down"), None);
    }

    #[test]
    fn a_failing_exporter_warns_once_then_with_counts_once_a_minute() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let counters = SharedCounters::default();
        let exporter = CountingExporter {
            inner: Down,
            counters: counters.clone(),
            name: "otlp",
        };
        let count = |text: &str| {
            String::from_utf8_lossy(&lines.0.lock().unwrap())
                .matches(text)
                .count()
        };
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..3 {
                counters.0.ended.fetch_add(2, Ordering::Relaxed);
                let _ = futures::executor::block_on(exporter.export(Vec::new()));
            }
            assert_eq!(count("span export failing"), 1);
            assert_eq!(count("still failing"), 0, "not before a minute has passed");
            // A minute later (as far as the exporter can tell):
            counters.0.warned_at_ms.store(
                now_ms() - STILL_FAILING_EVERY.as_millis() as u64,
                Ordering::Relaxed,
            );
            let _ = futures::executor::block_on(exporter.export(Vec::new()));
            let _ = futures::executor::block_on(exporter.export(Vec::new()));
        });
        assert_eq!(count("still failing"), 1);
        let text = String::from_utf8_lossy(&lines.0.lock().unwrap()).into_owned();
        assert!(
            text.contains("spans_ended=6") && text.contains("spans_lost=6"),
            "{text}"
        );
    }
}
