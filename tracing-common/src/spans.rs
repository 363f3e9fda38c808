//! Recording failures on spans the way Jaeger and the semantic conventions
//! expect: status ERROR, an `error.type` attribute, and an `exception` event.

use opentelemetry::KeyValue;
use opentelemetry::trace::Status;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Marks `span` as failed. `error_type` is low-cardinality (a class of error,
/// such as `timeout` or `503`); `message` is for humans and must not carry
/// personal data or secrets.
pub fn record_error(span: &tracing::Span, error_type: &str, message: &str) {
    span.set_status(Status::error(message.to_owned()));
    span.set_attribute("error.type", error_type.to_owned());
    span.add_event(
        "exception",
        vec![
            KeyValue::new("exception.type", error_type.to_owned()),
            KeyValue::new("exception.message", message.to_owned()),
        ],
    );
}
