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

/// Attributes the semantic conventions (and this project) type as integers.
///
/// Record them as `i64`: the `tracing` bridge exports `u16`, `u32`, `u64` and
/// `usize` fields as text, which Jaeger then stores as string tags.
pub const INTEGER_ATTRIBUTES: &[&str] = &[
    "http.response.status_code",
    "server.port",
    "client.port",
    "network.peer.port",
    "messaging.kafka.offset",
    "messaging.message.body.size",
    "messaging.batch.message_count",
    "db.response.returned_rows",
    "order.item_count",
    "fault.delay_ms",
];

/// Attributes typed as strings although their values may look like numbers:
/// a partition id and an error class such as `503` (the conventions say so),
/// identifiers and a decimal amount (text on purpose: no float rounding).
pub const STRING_ATTRIBUTES: &[&str] = &[
    "messaging.destination.partition.id",
    "error.type",
    "db.response.status_code",
    "user.id",
    "order.id",
    "messaging.message.id",
    "messaging.kafka.message.key",
    "order.total_amount",
];
