//! What the adapters share: the tracer they build spans with, recording a
//! failure the way Jaeger and the semantic conventions expect (status ERROR,
//! an `error.type` attribute and an `exception` event), and the attribute
//! types.

use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanRef, Status};
use opentelemetry_semantic_conventions::attribute as semconv;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Marks the `tracing` span `span` (a service's own INTERNAL span) as
/// failed. `error_type` is low-cardinality (a class of error, such as
/// `timeout` or `503`); `message` is for humans and must not carry personal
/// data or secrets.
pub fn record_error(span: &tracing::Span, error_type: &str, message: &str) {
    span.set_status(Status::error(message.to_owned()));
    span.set_attribute(semconv::ERROR_TYPE, error_type.to_owned());
    span.add_event("exception", exception(error_type, message));
}

/// Marks the active span (the innermost span of `Context::current()`: the
/// SERVER span in a handler, an INTERNAL span inside its scope) as failed,
/// as [`record_error`] does.
pub fn record_current_error(error_type: &str, message: &str) {
    opentelemetry::trace::get_active_span(|span| record_error_on(&span, error_type, message));
}

/// [`record_error`] for a span of the OpenTelemetry API.
pub(crate) fn record_error_on(span: &SpanRef<'_>, error_type: &str, message: &str) {
    span.set_status(Status::error(message.to_owned()));
    span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, error_type.to_owned()));
    span.add_event("exception", exception(error_type, message));
}

fn exception(error_type: &str, message: &str) -> Vec<KeyValue> {
    vec![
        KeyValue::new(semconv::EXCEPTION_TYPE, error_type.to_owned()),
        KeyValue::new(semconv::EXCEPTION_MESSAGE, message.to_owned()),
    ]
}

/// The tracer the adapters build their spans with: the global provider's,
/// so a provider installed by [`crate::init`] (or by a test) is the one used.
#[cfg(any(
    feature = "axum",
    feature = "reqwest",
    feature = "kafka",
    feature = "postgres"
))]
pub(crate) fn tracer() -> opentelemetry::global::BoxedTracer {
    opentelemetry::global::tracer(crate::setup::tracer_scope())
}

/// Attributes the semantic conventions (and this project) type as integers.
///
/// Record them as `i64`: on a `tracing` span the bridge exports `u16`, `u32`,
/// `u64` and `usize` fields as text, which Jaeger then stores as string tags.
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
];

/// Attributes typed as strings although their values may look like numbers:
/// a partition id, an error class such as `503` and a SQLSTATE (the
/// conventions say so), and message ids and keys.
pub const STRING_ATTRIBUTES: &[&str] = &[
    semconv::MESSAGING_DESTINATION_PARTITION_ID,
    semconv::ERROR_TYPE,
    semconv::DB_RESPONSE_STATUS_CODE,
    semconv::MESSAGING_MESSAGE_ID,
    semconv::MESSAGING_KAFKA_MESSAGE_KEY,
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
