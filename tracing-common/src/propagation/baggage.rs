//! Baggage entries copied onto every span.
//!
//! A service puts business keys (in this stack, order-service's `user.id` and
//! `order.id`) into the baggage once; every span started beneath that
//! context, in any service the context reaches over HTTP or Kafka, gets them
//! as attributes, so Jaeger can find all spans of one user or one order by
//! tag. Only the keys the application names
//! ([`TelemetryConfig::with_span_baggage`](crate::TelemetryConfig::with_span_baggage))
//! are copied: baggage arrives from callers and must not become an
//! attribute-injection channel.

use opentelemetry::baggage::{Baggage, BaggageExt, KeyValueMetadata};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use std::time::Duration;

/// Longer values are not copied: an id is short, anything longer is noise or abuse.
pub const MAX_SPAN_BAGGAGE_LEN: usize = 128;

/// Copies allow-listed baggage entries of the parent context onto each new
/// span, then hands the span to the processor it wraps.
///
/// It wraps the exporting processor instead of being registered beside it: with
/// more than one processor the SDK clones every finished span's data once per
/// processor, so a second processor that only acts at start would cost a full
/// copy of each span (its name, attributes and events) at end.
#[derive(Debug)]
pub struct BaggageSpanProcessor<P> {
    keys: &'static [&'static str],
    inner: P,
}

impl<P: SpanProcessor> BaggageSpanProcessor<P> {
    /// Copies `keys` onto spans handed to `inner`.
    pub fn new(inner: P, keys: &'static [&'static str]) -> Self {
        Self { keys, inner }
    }
}

impl<P: SpanProcessor> SpanProcessor for BaggageSpanProcessor<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        use opentelemetry::trace::Span as _;
        let baggage = cx.baggage();
        if !baggage.is_empty() {
            for key in self.keys {
                if let Some(value) = baggage.get(*key)
                    && value.as_str().len() <= MAX_SPAN_BAGGAGE_LEN
                {
                    span.set_attribute(KeyValue::new(*key, value.clone()));
                }
            }
        }
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
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

/// `cx` with `entries` added to (or replacing) its baggage.
pub fn with_baggage<'a>(
    cx: &Context,
    entries: impl IntoIterator<Item = (&'static str, &'a str)>,
) -> Context {
    let mut baggage = copy(cx.baggage());
    for (key, value) in entries {
        baggage.insert(key, value.to_owned());
    }
    cx.with_baggage(baggage)
}

/// `Baggage` is not `Clone`; this copies its entries with their metadata.
pub(crate) fn copy(baggage: &Baggage) -> Baggage {
    baggage
        .iter()
        .map(|(k, (v, m))| KeyValueMetadata::new(k.clone(), v.clone(), m.clone()))
        .collect()
}
