//! Recording failures on spans the way Jaeger and the semantic conventions
//! expect: status ERROR, an `error.type` attribute, and an `exception` event.

use opentelemetry::KeyValue;
use opentelemetry::trace::Status;
use opentelemetry_semantic_conventions::attribute as semconv;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Marks `span` as failed. `error_type` is low-cardinality (a class of error,
/// such as `timeout` or `503`); `message` is for humans and must not carry
/// personal data or secrets.
pub fn record_error(span: &tracing::Span, error_type: &str, message: &str) {
    span.set_status(Status::error(message.to_owned()));
    span.set_attribute(semconv::ERROR_TYPE, error_type.to_owned());
    span.add_event(
        "exception",
        vec![
            KeyValue::new(semconv::EXCEPTION_TYPE, error_type.to_owned()),
            KeyValue::new(semconv::EXCEPTION_MESSAGE, message.to_owned()),
        ],
    );
}

pub use crate::unsampled::{context_of, current_context};

/// The tracer the adapters build their spans with: the global provider's,
/// so a provider installed by [`crate::init`] (or by a test) is the one used.
#[cfg(feature = "postgres")]
pub(crate) fn tracer() -> opentelemetry::global::BoxedTracer {
    opentelemetry::global::tracer(crate::telemetry::tracer_scope())
}

/// Opens the span `make` returns with the parent context `cx`, and makes the
/// sampling decision there, as [`set_parent`] does; but where the configured
/// sampler's answer is known without asking it (an unsampled parent under a
/// parent-based sampler, see [`crate::unsampled::KnownDrops`]) the span gets
/// its unsampled context at once and the OpenTelemetry layer never sees it.
/// Use it where a trace enters: `with_parent(cx, || tracing::info_span!(...))`.
pub fn with_parent(
    cx: opentelemetry::Context,
    make: impl FnOnce() -> tracing::Span,
) -> tracing::Span {
    use opentelemetry::trace::TraceContextExt as _;
    if cx.span().span_context().is_sampled() {
        let span = make();
        set_parent(&span, cx);
        return span;
    }
    let (span, marked) = crate::unsampled::open_entry(&cx, make);
    if !marked {
        set_parent(&span, cx);
    }
    span
}

/// Gives `span`, not yet started, the parent context `cx`, and makes the
/// sampling decision for it there (see [`crate::unsampled`]): a span the
/// sampler drops, and everything below it, stays out of the OpenTelemetry
/// layer. Use it where a trace enters (an extracted context) and wherever a
/// span's parent is given explicitly; pass contexts from [`context_of`].
///
/// Where a parent cannot be set by design it is quiet: a span filtered out,
/// or no OpenTelemetry layer (tracing switched off), has no trace to join. A
/// span opened below an unsampled one stays unsampled, and propagates `cx`
/// if it is unsampled too (the trace with baggage added, say). A span
/// already started is a mistake in the caller and is logged.
pub fn set_parent(span: &tracing::Span, cx: opentelemetry::Context) {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::SetParentError;
    // Below a sampled parent the parent-based samplers keep the span, so it
    // is not decided (started) here; a sampler that is not parent-based
    // still decides when the bridge starts it, as it would without this.
    let parent_sampled = cx.span().span_context().is_sampled();
    let unsampled_parent = (!parent_sampled).then(|| cx.clone());
    match span.set_parent(cx) {
        Ok(()) if let Some(cx) = unsampled_parent => crate::unsampled::decide(span, cx),
        Ok(()) => {}
        Err(SetParentError::SpanDisabled | SetParentError::LayerNotFound) => {}
        Err(e @ SetParentError::AlreadyStarted) => tracing::warn!(
            error = %e,
            span = span.metadata().map_or("", |m| m.name()),
            "parent context not set"
        ),
    }
}

/// Attributes the semantic conventions (and this project) type as integers.
///
/// Record them as `i64`: the `tracing` bridge exports `u16`, `u32`, `u64` and
/// `usize` fields as text, which Jaeger then stores as string tags.
pub const INTEGER_ATTRIBUTES: &[&str] = &[
    semconv::HTTP_RESPONSE_STATUS_CODE,
    semconv::SERVER_PORT,
    semconv::CLIENT_PORT,
    semconv::NETWORK_PEER_PORT,
    semconv::MESSAGING_KAFKA_OFFSET,
    semconv::MESSAGING_MESSAGE_BODY_SIZE,
    semconv::MESSAGING_BATCH_MESSAGE_COUNT,
    semconv::DB_RESPONSE_RETURNED_ROWS,
    "db.response.affected_rows",
    "order.item_count",
    "fault.delay_ms",
];

/// Attributes typed as strings although their values may look like numbers:
/// a partition id and an error class such as `503` (the conventions say so),
/// identifiers and a decimal amount (text on purpose: no float rounding).
pub const STRING_ATTRIBUTES: &[&str] = &[
    semconv::MESSAGING_DESTINATION_PARTITION_ID,
    semconv::ERROR_TYPE,
    semconv::DB_RESPONSE_STATUS_CODE,
    "user.id",
    "order.id",
    semconv::MESSAGING_MESSAGE_ID,
    semconv::MESSAGING_KAFKA_MESSAGE_KEY,
    "order.total_amount",
];

/// Semantic conventions: unknown methods are reported as `_OTHER`, which also
/// keeps span names low-cardinality under garbage input.
#[cfg(any(feature = "axum", feature = "reqwest"))]
pub(crate) fn known_method(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::TRACE => "TRACE",
        http::Method::CONNECT => "CONNECT",
        _ => "_OTHER",
    }
}
