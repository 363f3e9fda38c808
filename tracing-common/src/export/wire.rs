//! SDK spans written straight to the protobuf bytes of an OTLP
//! `ExportTraceServiceRequest`, the message opentelemetry-proto's
//! `group_spans_by_resource_and_scope` builds and prost encodes, byte for byte
//! (the tests check both, on fixed spans and on random ones), without
//! building that message first.
//!
//! Building it meant a `String` or `Vec` for every id, name, key and string
//! value of every span, and prost then walks the tree once to size each
//! nested message and again to write it, for every level it is nested in;
//! that is what opentelemetry-otlp's exporter does before its transport.
//! Here each span is written once, from the SDK's data, into one buffer: a
//! nested message's length is written after its contents, in place when it
//! fits one byte (most keys and values), else by moving the contents up by
//! the few bytes its length needs. It stays while it saves at least 1 µs of
//! CPU per exported span (BENCHMARKS.md has the measurement).

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_sdk::trace::SpanData;
use prost::Message as _;

/// OTLP's span flags: whether the parent is remote, in bits 8 and 9 beside
/// the W3C flags (`SpanFlags` in trace.proto).
const CONTEXT_HAS_IS_REMOTE: u32 = 0x100;
const CONTEXT_IS_REMOTE: u32 = 0x200;

/// The resource of every request, encoded once (it changes only when the SDK
/// sets it, at start-up).
#[derive(Debug, Default)]
pub(crate) struct EncodedResource {
    /// The `Resource` message's contents.
    resource: Vec<u8>,
    schema_url: String,
}

impl From<&ResourceAttributesWithSchema> for EncodedResource {
    fn from(resource: &ResourceAttributesWithSchema) -> Self {
        let message = opentelemetry_proto::tonic::resource::v1::Resource {
            attributes: resource.attributes.0.clone(),
            dropped_attributes_count: 0,
            entity_refs: vec![],
        };
        Self {
            resource: message.encode_to_vec(),
            schema_url: resource.schema_url.clone().unwrap_or_default(),
        }
    }
}

/// The export request for `batch`: one `ResourceSpans`, one `ScopeSpans`
/// per instrumentation scope in the order the scopes first appear.
/// `bytes_per_span` sizes the buffer (the previous request's figure saves
/// growing it as it fills).
pub(crate) fn request(
    batch: &[SpanData],
    resource: &EncodedResource,
    bytes_per_span: usize,
) -> Vec<u8> {
    // A batch holds spans of a handful of scopes: a list beats a map.
    // Consecutive spans mostly share one: the last one's is compared first.
    let mut scopes: Vec<&InstrumentationScope> = Vec::new();
    let mut last = 0;
    let scope_of: Vec<usize> = batch
        .iter()
        .map(|span| {
            let scope = &span.instrumentation_scope;
            if scopes.get(last).is_none_or(|s| *s != scope) {
                last = scopes.iter().position(|s| *s == scope).unwrap_or_else(|| {
                    scopes.push(scope);
                    scopes.len() - 1
                });
            }
            last
        })
        .collect();

    // A quarter more than the last request needed per span: growing the
    // buffer copies all of it.
    let mut w = Writer(Vec::with_capacity(
        resource.resource.len() + 256 + batch.len() * (bytes_per_span + bytes_per_span / 4),
    ));
    w.message(export_request::RESOURCE_SPANS, |w| {
        w.message(resource_spans::RESOURCE, |w| {
            w.0.extend_from_slice(&resource.resource)
        });
        for (at, scope) in scopes.iter().enumerate() {
            w.message(resource_spans::SCOPE_SPANS, |w| {
                w.message(scope_spans::SCOPE, |w| instrumentation_scope(w, scope));
                for (span, _) in batch.iter().zip(&scope_of).filter(|(_, s)| **s == at) {
                    w.message(scope_spans::SPANS, |w| self::span(w, span));
                }
                w.string(
                    scope_spans::SCHEMA_URL,
                    scope.schema_url().unwrap_or_default(),
                );
            });
        }
        w.string(resource_spans::SCHEMA_URL, &resource.schema_url);
    });
    w.0
}

fn instrumentation_scope(w: &mut Writer, scope: &InstrumentationScope) {
    w.string(scope::NAME, scope.name());
    w.string(scope::VERSION, scope.version().unwrap_or_default());
    for kv in scope.attributes() {
        key_value(w, scope::ATTRIBUTES, kv);
    }
}

fn span(w: &mut Writer, span: &SpanData) {
    let sc = &span.span_context;
    w.bytes(span::TRACE_ID, &sc.trace_id().to_bytes());
    w.bytes(span::SPAN_ID, &sc.span_id().to_bytes());
    w.string(span::TRACE_STATE, &sc.trace_state().header());
    if span.parent_span_id != SpanId::INVALID {
        w.bytes(span::PARENT_SPAN_ID, &span.parent_span_id.to_bytes());
    }
    w.string(span::NAME, &span.name);
    w.uint(span::KIND, kind(&span.span_kind));
    w.fixed64(span::START_TIME_UNIX_NANO, nanos(span.start_time));
    w.fixed64(span::END_TIME_UNIX_NANO, nanos(span.end_time));
    for kv in &span.attributes {
        key_value(w, span::ATTRIBUTES, kv);
    }
    w.uint(
        span::DROPPED_ATTRIBUTES_COUNT,
        span.dropped_attributes_count.into(),
    );
    for event in span.events.iter() {
        w.message(span::EVENTS, |w| {
            w.fixed64(event::TIME_UNIX_NANO, nanos(event.timestamp));
            w.string(event::NAME, &event.name);
            for kv in &event.attributes {
                key_value(w, event::ATTRIBUTES, kv);
            }
            w.uint(
                event::DROPPED_ATTRIBUTES_COUNT,
                event.dropped_attributes_count.into(),
            );
        });
    }
    w.uint(span::DROPPED_EVENTS_COUNT, span.events.dropped_count.into());
    for link in span.links.iter() {
        let sc = &link.span_context;
        w.message(span::LINKS, |w| {
            w.bytes(link::TRACE_ID, &sc.trace_id().to_bytes());
            w.bytes(link::SPAN_ID, &sc.span_id().to_bytes());
            w.string(link::TRACE_STATE, &sc.trace_state().header());
            for kv in &link.attributes {
                key_value(w, link::ATTRIBUTES, kv);
            }
            w.uint(
                link::DROPPED_ATTRIBUTES_COUNT,
                link.dropped_attributes_count.into(),
            );
            w.fixed32(link::FLAGS, flags(sc.is_remote(), sc.trace_flags().to_u8()));
        });
    }
    w.uint(span::DROPPED_LINKS_COUNT, span.links.dropped_count.into());
    // Always present, as opentelemetry-proto sets it.
    w.message(span::STATUS, |w| {
        if let Status::Error { description } = &span.status {
            w.string(status::MESSAGE, description);
        }
        w.uint(
            status::CODE,
            match span.status {
                Status::Unset => 0,
                Status::Ok => 1,
                Status::Error { .. } => 2,
            },
        );
    });
    w.fixed32(
        span::FLAGS,
        flags(span.parent_span_is_remote, sc.trace_flags().to_u8()),
    );
}

fn flags(parent_is_remote: bool, trace_flags: u8) -> u32 {
    let remote = if parent_is_remote {
        CONTEXT_IS_REMOTE
    } else {
        0
    };
    u32::from(trace_flags) | CONTEXT_HAS_IS_REMOTE | remote
}

/// `Span.SpanKind` in trace.proto.
fn kind(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A `KeyValue` as field `field`. A scalar value's lengths are known before
/// writing, so they are written first (no length to fix up afterwards);
/// arrays go through [`Writer::message`].
fn key_value(w: &mut Writer, field: u32, kv: &KeyValue) {
    let key = kv.key.as_str();
    let value_len = match &kv.value {
        Value::String(s) => 1 + varint_len(s.as_str().len() as u64) + s.as_str().len(),
        Value::Bool(_) => 2,
        Value::I64(i) => 1 + varint_len(*i as u64),
        Value::F64(_) => 9,
        _ => {
            return w.message(field, |w| {
                w.string(key_value::KEY, key);
                w.message(key_value::VALUE, |w| any_value(w, &kv.value));
            });
        }
    };
    let key_len = if key.is_empty() {
        0
    } else {
        1 + varint_len(key.len() as u64) + key.len()
    };
    w.key(field, LENGTH_DELIMITED);
    w.varint((key_len + 1 + varint_len(value_len as u64) + value_len) as u64);
    w.string(key_value::KEY, key);
    w.key(key_value::VALUE, LENGTH_DELIMITED);
    w.varint(value_len as u64);
    any_value(w, &kv.value);
}

fn varint_len(v: u64) -> usize {
    // Seven bits per byte; zero takes one.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// An `AnyValue`'s contents. Its value is a `oneof`, so even an empty string,
/// `false` or `0` is written.
fn any_value(w: &mut Writer, value: &Value) {
    match value {
        Value::String(s) => w.oneof_bytes(any_value::STRING_VALUE, s.as_str().as_bytes()),
        Value::Bool(b) => {
            w.key(any_value::BOOL_VALUE, VARINT);
            w.varint(u64::from(*b));
        }
        Value::I64(i) => {
            w.key(any_value::INT_VALUE, VARINT);
            // int64: two's complement, ten bytes when negative.
            w.varint(*i as u64);
        }
        Value::F64(f) => {
            w.key(any_value::DOUBLE_VALUE, FIXED64);
            w.0.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::Array(Array::Bool(values)) => w.message(any_value::ARRAY_VALUE, |w| {
            array_values(w, values, |v| Value::Bool(*v))
        }),
        Value::Array(Array::I64(values)) => w.message(any_value::ARRAY_VALUE, |w| {
            array_values(w, values, |v| Value::I64(*v))
        }),
        Value::Array(Array::F64(values)) => w.message(any_value::ARRAY_VALUE, |w| {
            array_values(w, values, |v| Value::F64(*v))
        }),
        Value::Array(Array::String(values)) => w.message(any_value::ARRAY_VALUE, |w| {
            for s in values {
                w.message(array_value::VALUES, |w| string_value(w, s));
            }
        }),
        // A kind of value newer than this code (both enums are
        // non-exhaustive): its text, rather than the panic
        // opentelemetry-proto's conversion has for it.
        other => w.oneof_bytes(any_value::STRING_VALUE, other.to_string().as_bytes()),
    }
}

fn string_value(w: &mut Writer, s: &StringValue) {
    w.oneof_bytes(any_value::STRING_VALUE, s.as_str().as_bytes());
}

fn array_values<T>(w: &mut Writer, values: &[T], value: impl Fn(&T) -> Value) {
    for v in values {
        w.message(array_value::VALUES, |w| any_value(w, &value(v)));
    }
}

/// The field numbers of the OTLP messages written here, by message, as
/// opentelemetry-proto's `.proto` files (trace, common, collector) number them.
mod export_request {
    pub(super) const RESOURCE_SPANS: u32 = 1;
}
mod resource_spans {
    pub(super) const RESOURCE: u32 = 1;
    pub(super) const SCOPE_SPANS: u32 = 2;
    pub(super) const SCHEMA_URL: u32 = 3;
}
mod scope_spans {
    pub(super) const SCOPE: u32 = 1;
    pub(super) const SPANS: u32 = 2;
    pub(super) const SCHEMA_URL: u32 = 3;
}
mod scope {
    pub(super) const NAME: u32 = 1;
    pub(super) const VERSION: u32 = 2;
    pub(super) const ATTRIBUTES: u32 = 3;
}
mod span {
    pub(super) const TRACE_ID: u32 = 1;
    pub(super) const SPAN_ID: u32 = 2;
    pub(super) const TRACE_STATE: u32 = 3;
    pub(super) const PARENT_SPAN_ID: u32 = 4;
    pub(super) const NAME: u32 = 5;
    pub(super) const KIND: u32 = 6;
    pub(super) const START_TIME_UNIX_NANO: u32 = 7;
    pub(super) const END_TIME_UNIX_NANO: u32 = 8;
    pub(super) const ATTRIBUTES: u32 = 9;
    pub(super) const DROPPED_ATTRIBUTES_COUNT: u32 = 10;
    pub(super) const EVENTS: u32 = 11;
    pub(super) const DROPPED_EVENTS_COUNT: u32 = 12;
    pub(super) const LINKS: u32 = 13;
    pub(super) const DROPPED_LINKS_COUNT: u32 = 14;
    pub(super) const STATUS: u32 = 15;
    pub(super) const FLAGS: u32 = 16;
}
mod event {
    pub(super) const TIME_UNIX_NANO: u32 = 1;
    pub(super) const NAME: u32 = 2;
    pub(super) const ATTRIBUTES: u32 = 3;
    pub(super) const DROPPED_ATTRIBUTES_COUNT: u32 = 4;
}
mod link {
    pub(super) const TRACE_ID: u32 = 1;
    pub(super) const SPAN_ID: u32 = 2;
    pub(super) const TRACE_STATE: u32 = 3;
    pub(super) const ATTRIBUTES: u32 = 4;
    pub(super) const DROPPED_ATTRIBUTES_COUNT: u32 = 5;
    pub(super) const FLAGS: u32 = 6;
}
mod status {
    pub(super) const MESSAGE: u32 = 2;
    pub(super) const CODE: u32 = 3;
}
mod key_value {
    pub(super) const KEY: u32 = 1;
    pub(super) const VALUE: u32 = 2;
}
mod any_value {
    pub(super) const STRING_VALUE: u32 = 1;
    pub(super) const BOOL_VALUE: u32 = 2;
    pub(super) const INT_VALUE: u32 = 3;
    pub(super) const DOUBLE_VALUE: u32 = 4;
    pub(super) const ARRAY_VALUE: u32 = 5;
}
mod array_value {
    pub(super) const VALUES: u32 = 1;
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LENGTH_DELIMITED: u8 = 2;
const FIXED32: u8 = 5;

/// Protobuf's wire format into a growing buffer. Scalar fields with their
/// default value are left out, as proto3 (and prost) do.
struct Writer(Vec<u8>);

impl Writer {
    #[inline]
    fn varint(&mut self, mut v: u64) {
        if v < 0x80 {
            // Most keys and lengths.
            self.0.push(v as u8);
            return;
        }
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    #[inline]
    fn key(&mut self, field: u32, wire_type: u8) {
        self.varint(u64::from(field << 3 | u32::from(wire_type)));
    }

    fn uint(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, VARINT);
            self.varint(v);
        }
    }

    fn fixed32(&mut self, field: u32, v: u32) {
        if v != 0 {
            self.key(field, FIXED32);
            self.0.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn fixed64(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, FIXED64);
            self.0.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        if !b.is_empty() {
            self.oneof_bytes(field, b);
        }
    }

    fn string(&mut self, field: u32, s: &str) {
        self.bytes(field, s.as_bytes());
    }

    /// A length-delimited field written even when empty.
    #[inline]
    fn oneof_bytes(&mut self, field: u32, b: &[u8]) {
        self.0.reserve(b.len() + 12);
        self.key(field, LENGTH_DELIMITED);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    /// A nested message: `contents` writes it, then its length goes in
    /// front. One byte is kept for the length; a longer length moves the
    /// contents up by the bytes it needs.
    fn message(&mut self, field: u32, contents: impl FnOnce(&mut Self)) {
        self.key(field, LENGTH_DELIMITED);
        let at = self.0.len();
        self.0.push(0);
        contents(self);
        let len = self.0.len() - at - 1;
        if len < 0x80 {
            self.0[at] = len as u8;
            return;
        }
        // Make room for the length's other bytes, then write it in place:
        // seven bits per byte, low first, the last byte without the
        // continuation bit.
        let n = varint_len(len as u64);
        let end = self.0.len();
        self.0.resize(end + n - 1, 0);
        self.0.copy_within(at + 1..end, at + n);
        let mut v = len as u64;
        for byte in &mut self.0[at..at + n] {
            *byte = v as u8 | 0x80;
            v >>= 7;
        }
        self.0[at + n - 1] &= 0x7f;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{Event, Link, SpanContext, TraceFlags, TraceId, TraceState};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue as ProtoKeyValue, any_value};
    use opentelemetry_proto::transform::common::tonic::Attributes;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use std::borrow::Cow;
    use std::time::Duration;

    fn resource() -> ResourceAttributesWithSchema {
        ResourceAttributesWithSchema {
            attributes: Attributes(vec![ProtoKeyValue {
                key: "service.name".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue("order-service".into())),
                }),
                key_strindex: 0,
            }]),
            schema_url: Some("https://opentelemetry.io/schemas/1.26.0".into()),
        }
    }

    fn data(name: &'static str, scope: &'static str, remote_parent: bool) -> SpanData {
        let sc = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::from_key_value([("vendor", "v")]).unwrap(),
        );
        let mut events = SpanEvents::default();
        events.events.push(Event::new(
            "exception",
            UNIX_EPOCH + Duration::from_millis(5),
            vec![KeyValue::new("exception.type", "timeout")],
            1,
        ));
        events.dropped_count = 2;
        let mut links = SpanLinks::default();
        let remote = SpanContext::new(
            sc.trace_id(),
            SpanId::from_hex("b7ad6b7169203331").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        links.links.push(Link::new(
            remote,
            vec![KeyValue::new("messaging.operation.type", "send")],
            0,
        ));
        SpanData {
            span_context: sc.clone(),
            parent_span_id: if remote_parent {
                SpanId::from_hex("b7ad6b7169203331").unwrap()
            } else {
                SpanId::INVALID
            },
            parent_span_is_remote: remote_parent,
            span_kind: SpanKind::Server,
            name: Cow::Borrowed(name),
            start_time: UNIX_EPOCH + Duration::from_millis(1),
            end_time: UNIX_EPOCH + Duration::from_millis(9),
            attributes: vec![
                KeyValue::new("http.route", "/orders"),
                KeyValue::new("http.response.status_code", 500_i64),
                KeyValue::new("negative", -3_i64),
                KeyValue::new("zero", 0_i64),
                KeyValue::new("empty", ""),
                KeyValue::new("inventory.available", true),
                KeyValue::new("cached", false),
                KeyValue::new("ratio", 0.5),
                KeyValue::new("nothing", 0.0),
                KeyValue::new(
                    "tags",
                    Value::Array(
                        vec!["a", "b"]
                            .into_iter()
                            .map(StringValue::from)
                            .collect::<Vec<_>>()
                            .into(),
                    ),
                ),
                KeyValue::new("flags", Value::Array(vec![true, false].into())),
                KeyValue::new("counts", Value::Array(vec![1_i64, -1].into())),
                KeyValue::new("ratios", Value::Array(vec![0.25, 0.0].into())),
            ],
            dropped_attributes_count: 3,
            events,
            links,
            status: Status::error("boom"),
            instrumentation_scope: InstrumentationScope::builder(scope)
                .with_version("1.0")
                .with_attributes([KeyValue::new("scope.kind", "test")])
                .build(),
        }
    }

    fn theirs(batch: Vec<SpanData>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(batch, &resource()),
        }
    }

    fn sorted(mut request: ExportTraceServiceRequest) -> ExportTraceServiceRequest {
        // opentelemetry-proto groups through a hash map: compare scopes in
        // one order.
        for rs in &mut request.resource_spans {
            rs.scope_spans
                .sort_by_key(|s| s.scope.as_ref().map(|s| s.name.clone()));
        }
        request
    }

    #[test]
    fn the_bytes_are_what_prost_writes_for_opentelemetry_proto_s_message() {
        let mut plain = data("GET /users/{id}", "tracing-common", false);
        plain.status = Status::Unset;
        plain.events = SpanEvents::default();
        plain.links = SpanLinks::default();
        plain.dropped_attributes_count = 0;
        plain.span_context = SpanContext::new(
            plain.span_context.trace_id(),
            plain.span_context.span_id(),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        let mut ok = data("SELECT users", "tracing-common", true);
        ok.status = Status::Ok;
        for batch in [
            vec![data("POST /orders", "tracing-common", true)],
            vec![plain, ok],
        ] {
            let ours = request(&batch, &EncodedResource::from(&resource()), 0);
            assert_eq!(ours, theirs(batch).encode_to_vec());
        }
    }

    #[test]
    fn a_batch_of_several_scopes_decodes_to_opentelemetry_proto_s_message() {
        let batch = vec![
            data("POST /orders", "tracing-common", true),
            data("SELECT users", "sqlx", false),
            data("GET /users/{id}", "tracing-common", false),
            data("orders publish", "rdkafka", false),
        ];
        let ours = request(&batch, &EncodedResource::from(&resource()), 0);
        let ours = ExportTraceServiceRequest::decode(&ours[..]).unwrap();
        assert_eq!(ours.resource_spans[0].scope_spans.len(), 3);
        assert_eq!(sorted(ours), sorted(theirs(batch)));
    }

    /// Lengths that need one, two and three bytes, at every level: an
    /// attribute value, its key-value, the span, the scope's spans.
    #[test]
    fn messages_of_every_length_class_decode() {
        for len in [
            0, 1, 100, 110, 126, 127, 128, 129, 200, 16_383, 16_384, 20_000, 2_100_000,
        ] {
            let mut span = data("long", "tracing-common", false);
            span.attributes.push(KeyValue::new("long", "x".repeat(len)));
            let batch = vec![span.clone(), span];
            let ours = request(&batch, &EncodedResource::from(&resource()), 0);
            assert_eq!(ours, theirs(batch).encode_to_vec(), "value of {len} bytes");
        }
    }

    #[test]
    fn varint_lengths() {
        for (v, len) in [
            (0, 1),
            (1, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (u64::from(u32::MAX), 5),
            (u64::MAX, 10),
        ] {
            assert_eq!(varint_len(v), len, "{v}");
            let mut w = Writer(Vec::new());
            w.varint(v);
            assert_eq!(w.0.len(), len, "{v}");
        }
    }

    #[test]
    fn an_empty_batch_is_a_request_with_only_the_resource() {
        let ours = request(&[], &EncodedResource::from(&resource()), 0);
        let ours = ExportTraceServiceRequest::decode(&ours[..]).unwrap();
        assert_eq!(ours.resource_spans.len(), 1);
        assert!(ours.resource_spans[0].scope_spans.is_empty());
        assert_eq!(
            ours.resource_spans[0].resource.as_ref().unwrap().attributes,
            resource().attributes.0
        );
    }

    /// Random spans with every kind of value, event, link, status and id:
    /// the bytes are what prost writes for opentelemetry-proto's message.
    mod random_spans {
        use super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;

        fn value() -> impl Strategy<Value = Value> {
            prop_oneof![
                ".{0,40}".prop_map(|s: String| Value::String(s.into())),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::I64),
                any::<f64>().prop_map(Value::F64),
                vec(any::<bool>(), 0..4).prop_map(|v| Value::Array(v.into())),
                vec(any::<i64>(), 0..4).prop_map(|v| Value::Array(v.into())),
                vec(any::<f64>(), 0..4).prop_map(|v| Value::Array(v.into())),
                vec(".{0,12}", 0..4).prop_map(|v: Vec<String>| Value::Array(
                    v.into_iter()
                        .map(StringValue::from)
                        .collect::<Vec<_>>()
                        .into()
                )),
            ]
        }

        fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
            vec(("[a-z._]{0,24}", value()), 0..6)
                .prop_map(|kvs| kvs.into_iter().map(|(k, v)| KeyValue::new(k, v)).collect())
        }

        fn context() -> impl Strategy<Value = SpanContext> {
            (1..=u128::MAX, 1..=u64::MAX, any::<bool>(), any::<bool>()).prop_map(
                |(trace, span, sampled, remote)| {
                    SpanContext::new(
                        TraceId::from(trace),
                        SpanId::from(span),
                        if sampled {
                            TraceFlags::SAMPLED
                        } else {
                            TraceFlags::default()
                        },
                        remote,
                        TraceState::default(),
                    )
                },
            )
        }

        fn time() -> impl Strategy<Value = SystemTime> {
            (0..u64::MAX / 2).prop_map(|n| UNIX_EPOCH + Duration::from_nanos(n))
        }

        fn span_data() -> impl Strategy<Value = SpanData> {
            let events = vec((".{0,16}", time(), attributes(), 0..3u32), 0..3);
            let links = vec((context(), attributes(), 0..3u32), 0..3);
            (
                (
                    context(),
                    any::<Option<u64>>(),
                    any::<bool>(),
                    0..5usize,
                    ".{0,30}",
                ),
                (time(), time(), attributes(), 0..4u32),
                (events, 0..3u32, links, 0..3u32),
                prop_oneof![
                    Just(Status::Unset),
                    Just(Status::Ok),
                    ".{0,20}".prop_map(|d: String| Status::error(d)),
                ],
            )
                .prop_map(
                    |(
                        (sc, parent, parent_remote, kind, name),
                        (start, end, attributes, dropped),
                        (events, dropped_events, links, dropped_links),
                        status,
                    )| {
                        let mut span_events = SpanEvents::default();
                        span_events.events = events
                            .into_iter()
                            .map(|(name, at, kvs, dropped)| Event::new(name, at, kvs, dropped))
                            .collect();
                        span_events.dropped_count = dropped_events;
                        let mut span_links = SpanLinks::default();
                        span_links.links = links
                            .into_iter()
                            .map(|(sc, kvs, dropped)| Link::new(sc, kvs, dropped))
                            .collect();
                        span_links.dropped_count = dropped_links;
                        SpanData {
                            span_context: sc,
                            parent_span_id: parent.map_or(SpanId::INVALID, SpanId::from),
                            parent_span_is_remote: parent_remote,
                            span_kind: [
                                SpanKind::Internal,
                                SpanKind::Server,
                                SpanKind::Client,
                                SpanKind::Producer,
                                SpanKind::Consumer,
                            ][kind]
                                .clone(),
                            name: Cow::Owned(name),
                            start_time: start,
                            end_time: end,
                            attributes,
                            dropped_attributes_count: dropped,
                            events: span_events,
                            links: span_links,
                            status,
                            instrumentation_scope: InstrumentationScope::builder("tracing-common")
                                .build(),
                        }
                    },
                )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]
            #[test]
            fn any_batch_is_written_as_prost_writes_it(batch in vec(span_data(), 1..6)) {
                let ours = request(&batch, &EncodedResource::from(&resource()), 0);
                prop_assert_eq!(ours, theirs(batch).encode_to_vec());
            }
        }
    }
}
