//! Trace context over Kafka: header injection/extraction for rdkafka, and
//! PRODUCER/CONSUMER spans following the messaging semantic conventions.
//!
//! No maintained crate does this for rdkafka, so it lives here. The producer
//! span's context goes into the record headers; the consumer span is a child of
//! that context (one trace across the hop, as the order flow needs) and also
//! links to it, which is how the conventions model a message that may be
//! processed long after it was sent, or more than once.

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{Link, Span as _, SpanKind, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_semantic_conventions::attribute as semconv;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

/// Collects header pairs produced by a propagator.
#[derive(Debug, Default)]
pub(crate) struct HeaderInjector(Vec<(String, String)>);

impl Injector for HeaderInjector {
    fn set(&mut self, key: &str, value: String) {
        self.0.retain(|(k, _)| k != key);
        self.0.push((key.to_owned(), value));
    }
}

impl HeaderInjector {
    /// Appends the collected pairs to `headers`.
    pub fn into_headers(self, mut headers: OwnedHeaders) -> OwnedHeaders {
        for (key, value) in &self.0 {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_str()),
            });
        }
        headers
    }
}

/// Reads propagation headers from a record. Values that are not UTF-8 are
/// treated as absent (propagators then ignore them).
#[derive(Debug)]
pub(crate) struct HeaderExtractor<'a, H>(pub &'a H);

impl<H: Headers> Extractor for HeaderExtractor<'_, H> {
    fn get(&self, key: &str) -> Option<&str> {
        // Kafka header keys are case-sensitive; propagators ask in lower case,
        // but accept other producers' capitalisation too. The last value wins,
        // as a later header overrides an earlier one in Kafka's model.
        self.0
            .iter()
            .filter(|h| h.key.eq_ignore_ascii_case(key))
            .last()
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|h| h.key).collect()
    }
}

/// `headers` plus the propagation headers of `cx` (global propagator).
pub fn inject(cx: &Context, headers: OwnedHeaders) -> OwnedHeaders {
    let mut injector = HeaderInjector::default();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(cx, &mut injector));
    injector.into_headers(headers)
}

/// The context carried by a record's headers (empty when there are none).
pub fn extract<H: Headers>(headers: Option<&H>) -> Context {
    match headers {
        Some(h) => {
            opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(h)))
        }
        None => Context::new(),
    }
}

/// A CONSUMER span `process {topic}` for `message`, started: child of the
/// context in its headers, plus a link to that same producer span. Returns
/// that context (with its baggage) holding the span; run the record's
/// handler with it current (`opentelemetry::context::FutureExt::with_context`)
/// so the handler's spans are its children, then end the span.
pub fn consumer_context<M: Message>(message: &M, consumer_group: &str) -> Context {
    let parent = extract(message.headers());
    let producer = parent.span().span_context().clone();
    let tracer = crate::spans::tracer();
    let mut builder = tracer
        .span_builder(format!("process {}", message.topic()))
        .with_kind(SpanKind::Consumer);
    if producer.is_valid() {
        builder = builder.with_links(vec![Link::new(
            producer,
            vec![KeyValue::new(semconv::MESSAGING_OPERATION_TYPE, "send")],
            0,
        )]);
    }
    let mut span = tracer.build_with_context(builder, &parent);
    if span.is_recording() {
        let key = message
            .key()
            .and_then(|k| std::str::from_utf8(k).ok())
            .unwrap_or("");
        span.set_attributes([
            KeyValue::new(semconv::MESSAGING_SYSTEM, "kafka"),
            KeyValue::new(semconv::MESSAGING_OPERATION_TYPE, "process"),
            KeyValue::new(semconv::MESSAGING_OPERATION_NAME, "process"),
            KeyValue::new(
                semconv::MESSAGING_DESTINATION_NAME,
                message.topic().to_owned(),
            ),
            KeyValue::new(
                semconv::MESSAGING_CONSUMER_GROUP_NAME,
                consumer_group.to_owned(),
            ),
            KeyValue::new(
                semconv::MESSAGING_DESTINATION_PARTITION_ID,
                message.partition().to_string(),
            ),
            KeyValue::new(semconv::MESSAGING_KAFKA_OFFSET, message.offset()),
            KeyValue::new(semconv::MESSAGING_KAFKA_MESSAGE_KEY, key.to_owned()),
            KeyValue::new(
                semconv::MESSAGING_MESSAGE_BODY_SIZE,
                message.payload().map_or(0, <[u8]>::len) as i64,
            ),
        ]);
    }
    parent.with_span(span)
}

/// How long a send waits before its PRODUCER span says why (a
/// `send_waiting` event, see [`send_traced`]).
pub const SLOW_SEND: std::time::Duration = std::time::Duration::from_secs(1);

/// Sends one record with `producer` under a PRODUCER span `send {topic}`
/// that is a child of `parent`, with the span's context (and `parent`'s
/// baggage) in the record headers. Returns the partition and offset the
/// broker stored it at; a failure is recorded on the span.
///
/// `timeout` bounds the wait (set it a little above the producer's
/// `message.timeout.ms`), or `None` to wait as long as the producer retries.
/// A send not acknowledged after [`SLOW_SEND`] gets a `send_waiting` event
/// on its span, with `why_slow()` as its `reason` when given (what the
/// application knows of its brokers).
pub async fn send_traced<C: rdkafka::client::ClientContext + 'static>(
    producer: &FutureProducer<C>,
    parent: &Context,
    record: FutureRecord<'_, str, [u8]>,
    timeout: Option<std::time::Duration>,
    why_slow: Option<&(dyn Fn() -> String + Sync)>,
) -> Result<(i32, i64), KafkaError> {
    let tracer = crate::spans::tracer();
    let mut span = tracer.build_with_context(
        tracer
            .span_builder(format!("send {}", record.topic))
            .with_kind(SpanKind::Producer),
        parent,
    );
    if span.is_recording() {
        span.set_attributes([
            KeyValue::new(semconv::MESSAGING_SYSTEM, "kafka"),
            KeyValue::new(semconv::MESSAGING_OPERATION_TYPE, "send"),
            KeyValue::new(semconv::MESSAGING_OPERATION_NAME, "send"),
            KeyValue::new(semconv::MESSAGING_DESTINATION_NAME, record.topic.to_owned()),
            KeyValue::new(
                semconv::MESSAGING_KAFKA_MESSAGE_KEY,
                record.key.unwrap_or_default().to_owned(),
            ),
        ]);
    }
    let cx = parent.with_span(span);
    let mut record = record;
    let headers = inject(&cx, record.headers.take().unwrap_or_default());
    let record = record.headers(headers);
    let delivery = producer.send(record, Timeout::Never);
    tokio::pin!(delivery);
    let delivery = async {
        match tokio::time::timeout(SLOW_SEND, &mut delivery).await {
            Ok(done) => done,
            Err(_) => {
                let reason =
                    why_slow.map_or_else(|| "not acknowledged yet".to_owned(), |why| why());
                cx.span()
                    .add_event("send_waiting", vec![KeyValue::new("reason", reason)]);
                delivery.await
            }
        }
    };
    let sent = match timeout {
        Some(limit) => tokio::time::timeout(limit, delivery).await,
        None => Ok(delivery.await),
    };
    let result = match sent {
        Ok(Ok(delivery)) => Ok((delivery.partition, delivery.offset)),
        Ok(Err((error, _))) => Err(error),
        Err(_) => Err(KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageTimedOut,
        )),
    };
    let span = cx.span();
    match &result {
        Ok((partition, offset)) => span.set_attributes([
            KeyValue::new(
                semconv::MESSAGING_DESTINATION_PARTITION_ID,
                partition.to_string(),
            ),
            KeyValue::new(semconv::MESSAGING_KAFKA_OFFSET, *offset),
        ]),
        Err(error) => crate::spans::record_error_on(&span, error_type(error), &error.to_string()),
    }
    span.end();
    result
}

/// Low-cardinality class of a Kafka failure, for `error.type`.
pub fn error_type(error: &KafkaError) -> &'static str {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageTimedOut) => "timeout",
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) => "unknown_topic",
        Some(_) => "broker_error",
        None => "client_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PropagatorKind;
    use crate::propagation::propagator;
    use opentelemetry::baggage::BaggageExt;
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    #[test]
    fn every_propagator_round_trips_through_kafka_headers() {
        let sc = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        let cx = Context::new()
            .with_remote_span_context(sc.clone())
            .with_baggage(vec![KeyValue::new("order.id", "o-1")]);
        for kinds in [
            vec![PropagatorKind::TraceContext, PropagatorKind::Baggage],
            vec![PropagatorKind::B3],
            vec![PropagatorKind::B3Multi],
            vec![PropagatorKind::Jaeger],
        ] {
            let p = propagator(&kinds);
            let mut injector = HeaderInjector::default();
            p.inject_context(&cx, &mut injector);
            let headers = injector.into_headers(OwnedHeaders::new());
            let got = p.extract(&HeaderExtractor(&headers));
            let got_sc = got.span().span_context().clone();
            assert_eq!(got_sc.trace_id(), sc.trace_id(), "{kinds:?}");
            assert_eq!(got_sc.span_id(), sc.span_id(), "{kinds:?}");
            assert!(got_sc.is_sampled(), "{kinds:?}");
            if kinds.contains(&PropagatorKind::Baggage) {
                assert_eq!(
                    got.baggage().get("order.id").map(|v| v.as_str()),
                    Some("o-1")
                );
            }
        }
    }

    #[test]
    fn the_last_duplicate_header_wins_and_non_utf8_values_are_absent() {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "traceparent",
                value: Some("first"),
            })
            .insert(Header {
                key: "Traceparent",
                value: Some("second"),
            })
            .insert(Header {
                key: "baggage",
                value: Some(&[0xff_u8][..]),
            });
        let extractor = HeaderExtractor(&headers);
        assert_eq!(extractor.get("traceparent"), Some("second"));
        assert_eq!(extractor.get("baggage"), None);
        assert_eq!(extractor.get("missing"), None);
    }
}
