//! JSON log lines that carry the current span's `trace_id` and `span_id`, so a
//! log line found in a log search leads to its trace in Jaeger and back.

use std::fmt;

use opentelemetry::trace::TraceContextExt;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Dispatch, Event, Subscriber, span};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Formats no span fields. The JSON lines name the enclosing spans but do not
/// repeat their fields (the trace holds them), so the fmt layer is spared
/// formatting every field of every span into a string it would never print.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SpanNamesOnly;

impl<'w> FormatFields<'w> for SpanNamesOnly {
    fn format_fields<R: RecordFields>(&self, _writer: Writer<'w>, _fields: R) -> fmt::Result {
        Ok(())
    }
}

/// One JSON object per event: `timestamp`, `level`, `target`, `message`, the
/// event's fields, the names of the enclosing spans, and the OpenTelemetry ids
/// of the current span when there is one.
///
/// The ids are those of the current OpenTelemetry context
/// (`Context::current()`): the span an adapter made current (SERVER,
/// CONSUMER), or the `tracing` span entered inside it, which the
/// OpenTelemetry layer makes current while it is entered. A request the
/// sampler dropped has ids too.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct JsonWithTraceIds;

impl JsonWithTraceIds {
    /// `layer` (the log layer this formatter formats for, with its filter)
    /// as [`crate::setup::init`] installs it: entering and leaving a
    /// span reach it only when `filter` has span or field directives
    /// (`[...]`), the only ones `EnvFilter` needs them for. The fmt layer
    /// itself does nothing on them unless it logs span events, which this
    /// stack's does not.
    pub fn log_layer<L>(layer: L, filter: &str) -> WithoutEnterExit<L> {
        let mut layer = WithoutEnterExit::new(layer);
        layer.pass_enter_exit = filter.contains('[');
        layer
    }
}

/// A layer to which entering and leaving a span are not passed on.
///
/// A span is entered and left on every poll of an instrumented future, and a
/// layer behind a per-layer filter (`Filtered`) looks the span up in the
/// registry each time to see whether its filter enabled it, even when the
/// layer then does nothing with it: the fmt layer (which does nothing on them
/// unless it logs span events) was a visible share of order-service's
/// instructions per order that way, with tracing on or off (callgrind;
/// docs/performance.md). The registry keeps track of the current span by
/// itself.
pub(crate) struct WithoutEnterExit<L> {
    inner: L,
    pass_enter_exit: bool,
}

impl<L> WithoutEnterExit<L> {
    pub fn new(inner: L) -> Self {
        Self {
            inner,
            pass_enter_exit: false,
        }
    }
}

impl<L> fmt::Debug for WithoutEnterExit<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithoutEnterExit")
            .field("pass_enter_exit", &self.pass_enter_exit)
            .finish_non_exhaustive()
    }
}

impl<S, L> tracing_subscriber::Layer<S> for WithoutEnterExit<L>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: tracing_subscriber::Layer<S>,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        self.inner.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber);
    }

    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        self.inner.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &tracing::Metadata<'_>, cx: Context<'_, S>) -> bool {
        self.inner.enabled(metadata, cx)
    }

    fn event_enabled(&self, event: &Event<'_>, cx: Context<'_, S>) -> bool {
        self.inner.event_enabled(event, cx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.inner.max_level_hint()
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, cx: Context<'_, S>) {
        self.inner.on_new_span(attrs, id, cx);
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, cx: Context<'_, S>) {
        self.inner.on_record(id, values, cx);
    }

    fn on_follows_from(&self, id: &span::Id, follows: &span::Id, cx: Context<'_, S>) {
        self.inner.on_follows_from(id, follows, cx);
    }

    fn on_event(&self, event: &Event<'_>, cx: Context<'_, S>) {
        self.inner.on_event(event, cx);
    }

    fn on_enter(&self, id: &span::Id, cx: Context<'_, S>) {
        if self.pass_enter_exit {
            self.inner.on_enter(id, cx);
        }
    }

    fn on_exit(&self, id: &span::Id, cx: Context<'_, S>) {
        if self.pass_enter_exit {
            self.inner.on_exit(id, cx);
        }
    }

    fn on_close(&self, id: span::Id, cx: Context<'_, S>) {
        self.inner.on_close(id, cx);
    }

    fn on_id_change(&self, old: &span::Id, new: &span::Id, cx: Context<'_, S>) {
        self.inner.on_id_change(old, new, cx);
    }

    // `Layered` finds out that a layer
    // has a per-layer filter by downcasting it, so the wrapper must answer
    // for the `Filtered` it wraps; without that, the filter's interest would
    // count as this layer wanting every callsite.
    #[allow(unsafe_code)]
    unsafe fn downcast_raw(&self, id: std::any::TypeId) -> Option<*const ()> {
        if id == std::any::TypeId::of::<Self>() {
            Some(self as *const Self as *const ())
        } else {
            // SAFETY: forwarded to the wrapped layer, which keeps the same
            // contract for its own type ids.
            unsafe { self.inner.downcast_raw(id) }
        }
    }
}

impl<S, N> FormatEvent<S, N> for JsonWithTraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        line.insert(
            "level".into(),
            Value::String(meta.level().as_str().to_owned()),
        );
        line.insert("target".into(), Value::String(meta.target().to_owned()));
        event.record(&mut JsonVisitor(&mut line));

        if let Some(scope) = ctx.event_scope() {
            let spans: Vec<Value> = scope
                .from_root()
                .map(|s| Value::String(s.name().to_owned()))
                .collect();
            if !spans.is_empty() {
                line.insert("spans".into(), Value::Array(spans));
            }
        }
        opentelemetry::Context::map_current(|cx| {
            let span = cx.span();
            let sc = span.span_context();
            if sc.is_valid() {
                line.insert("trace_id".into(), Value::String(sc.trace_id().to_string()));
                line.insert("span_id".into(), Value::String(sc.span_id().to_string()));
            }
        });

        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The stack's OpenTelemetry layer and JSON log lines into a buffer.
    fn json_logs(
        provider: &opentelemetry_sdk::trace::SdkTracerProvider,
    ) -> (impl tracing::Subscriber + Send + Sync, Buffer) {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry()
            .with(crate::setup::otel_layer(provider.tracer("test")))
            .with(
                tracing_subscriber::fmt::layer()
                    .event_format(JsonWithTraceIds)
                    .with_writer(move || writer.clone()),
            );
        (subscriber, buffer)
    }

    /// Event callsites of their own, so that the test asks the subscriber
    /// directly: `tracing::enabled!` reads an interest cached across every
    /// subscriber alive in the process, which other tests' change.
    macro_rules! callsite {
        ($callsite:ident, $meta:ident, $target:literal, $level:expr) => {
            struct $callsite;
            impl tracing::callsite::Callsite for $callsite {
                fn set_interest(&self, _: tracing::subscriber::Interest) {}
                fn metadata(&self) -> &tracing::Metadata<'_> {
                    &$meta
                }
            }
            static $meta: tracing::Metadata<'static> = tracing::Metadata::new(
                "event",
                $target,
                $level,
                None,
                None,
                None,
                tracing::field::FieldSet::new(&[], tracing::callsite::Identifier(&$callsite)),
                tracing::metadata::Kind::EVENT,
            );
        };
    }
    callsite!(
        HyperDebug,
        HYPER_DEBUG,
        "hyper::proto",
        tracing::Level::DEBUG
    );
    callsite!(SqlxInfo, SQLX_INFO, "sqlx::query", tracing::Level::INFO);
    callsite!(OrderInfo, ORDER_INFO, "order_service", tracing::Level::INFO);
    callsite!(HyperWarn, HYPER_WARN, "hyper::proto", tracing::Level::WARN);

    #[test]
    fn what_no_layer_enables_stays_disabled() {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(crate::setup::otel_layer(provider.tracer("test")))
            .with(
                tracing_subscriber::fmt::layer()
                    .event_format(JsonWithTraceIds)
                    .with_writer(std::io::sink)
                    .with_filter(tracing_subscriber::EnvFilter::new("warn")),
            );
        // "never": not asked again, nothing dispatched; a layer without a
        // filter of its own would make these "sometimes".
        for meta in [&HYPER_DEBUG, &SQLX_INFO] {
            assert!(
                subscriber.register_callsite(meta).is_never(),
                "{} {}",
                meta.target(),
                meta.level()
            );
        }
        for meta in [&ORDER_INFO, &HYPER_WARN] {
            assert!(
                !subscriber.register_callsite(meta).is_never() && subscriber.enabled(meta),
                "{} {}",
                meta.target(),
                meta.level()
            );
        }
    }

    /// A registry that counts the span look-ups layers make through it.
    struct CountingLookups {
        registry: tracing_subscriber::Registry,
        lookups: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Subscriber for CountingLookups {
        fn register_callsite(
            &self,
            metadata: &'static tracing::Metadata<'static>,
        ) -> tracing::subscriber::Interest {
            self.registry.register_callsite(metadata)
        }
        fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
            self.registry.enabled(metadata)
        }
        fn new_span(&self, attrs: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            self.registry.new_span(attrs)
        }
        fn record(&self, span: &tracing::span::Id, values: &tracing::span::Record<'_>) {
            self.registry.record(span, values)
        }
        fn record_follows_from(&self, span: &tracing::span::Id, follows: &tracing::span::Id) {
            self.registry.record_follows_from(span, follows)
        }
        fn event(&self, event: &Event<'_>) {
            self.registry.event(event)
        }
        fn enter(&self, span: &tracing::span::Id) {
            self.registry.enter(span)
        }
        fn exit(&self, span: &tracing::span::Id) {
            self.registry.exit(span)
        }
        fn clone_span(&self, id: &tracing::span::Id) -> tracing::span::Id {
            self.registry.clone_span(id)
        }
        fn try_close(&self, id: tracing::span::Id) -> bool {
            self.registry.try_close(id)
        }
    }

    impl<'a> LookupSpan<'a> for CountingLookups {
        type Data = <tracing_subscriber::Registry as LookupSpan<'a>>::Data;

        fn span_data(&'a self, id: &tracing::span::Id) -> Option<Self::Data> {
            self.lookups
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.registry.span_data(id)
        }

        fn register_filter(&mut self) -> tracing_subscriber::filter::FilterId {
            self.registry.register_filter()
        }
    }

    fn counting() -> (CountingLookups, Arc<std::sync::atomic::AtomicUsize>) {
        let lookups = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let registry = CountingLookups {
            registry: tracing_subscriber::Registry::default(),
            lookups: lookups.clone(),
        };
        (registry, lookups)
    }

    /// Span look-ups while a span is entered and left 100 times.
    fn lookups_over_100_polls(lookups: &std::sync::atomic::AtomicUsize) -> usize {
        let span = tracing::info_span!("polled");
        let before = lookups.load(std::sync::atomic::Ordering::Relaxed);
        for _ in 0..100 {
            let _entered = span.enter();
        }
        lookups.load(std::sync::atomic::Ordering::Relaxed) - before
    }

    #[test]
    fn the_log_layer_looks_no_span_up_when_spans_are_entered_unless_its_filter_names_spans() {
        for (filter, expected) in [("info,sqlx=warn", 0), ("info,[checkout]=debug", 200)] {
            let (registry, lookups) = counting();
            let layer = JsonWithTraceIds::log_layer(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::sink)
                    .with_filter(tracing_subscriber::EnvFilter::new(filter)),
                filter,
            );
            let subscriber = registry.with(layer);
            let polls =
                tracing::subscriber::with_default(subscriber, || lookups_over_100_polls(&lookups));
            assert_eq!(polls, expected, "span look-ups with {filter}");
        }
    }

    #[test]
    fn a_filter_directive_for_a_span_still_applies_inside_it() {
        let filter = "info,[checkout]=debug";
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry().with(JsonWithTraceIds::log_layer(
            tracing_subscriber::fmt::layer()
                .event_format(JsonWithTraceIds)
                .with_writer(move || writer.clone())
                .with_filter(tracing_subscriber::EnvFilter::new(filter)),
            filter,
        ));
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!("outside");
            let span = tracing::info_span!("checkout");
            let _entered = span.enter();
            tracing::debug!("inside");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let messages: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["message"].to_string())
            .collect();
        assert_eq!(messages, ["\"inside\""]);
    }

    #[test]
    fn log_lines_inside_a_span_carry_its_trace_and_span_ids() {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let (subscriber, buffer) = json_logs(&provider);
        let (trace_id, span_id) = tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside");
            let span = tracing::info_span!("work");
            let _g = span.enter();
            tracing::info!(order_count = 2, "inside");
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            let sc = span.context().span().span_context().clone();
            (sc.trace_id().to_string(), sc.span_id().to_string())
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["message"], "outside");
        assert!(lines[0].get("trace_id").is_none());
        assert_eq!(lines[1]["message"], "inside");
        assert_eq!(lines[1]["order_count"], 2);
        assert_eq!(lines[1]["level"], "INFO");
        assert_eq!(lines[1]["trace_id"], trace_id.as_str());
        assert_eq!(lines[1]["span_id"], span_id.as_str());
        assert_eq!(lines[1]["spans"], serde_json::json!(["work"]));
    }

    #[test]
    fn log_lines_of_an_unsampled_request_carry_its_trace_id() {
        use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let (subscriber, buffer) = json_logs(&provider);
        let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        let entry_span_id = SpanId::from_hex("00f067aa0ba902b7").unwrap();
        tracing::subscriber::with_default(subscriber, || {
            // As a server adapter leaves it: an unsampled span current.
            let _entry = opentelemetry::Context::new()
                .with_remote_span_context(SpanContext::new(
                    trace_id,
                    entry_span_id,
                    TraceFlags::default(),
                    false,
                    TraceState::default(),
                ))
                .attach();
            let _w = tracing::info_span!("work").entered();
            tracing::info!("inside");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(line["trace_id"], trace_id.to_string().as_str());
        assert_eq!(line["span_id"], entry_span_id.to_string().as_str());
        assert_eq!(line["spans"], serde_json::json!(["work"]));
    }
}
