//! Trace context over Kafka: header injection/extraction for rdkafka, and
//! PRODUCER/CONSUMER spans following the messaging semantic conventions.
//!
//! No maintained crate does this for rdkafka, so it lives here. The producer
//! span's context goes into the record headers; the consumer span is a child of
//! that context (one trace across the hop, as the order flow needs) and also
//! links to it, which is how the conventions model a message that may be
//! processed long after it was sent, or more than once.

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use opentelemetry::{Context, KeyValue};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Collects header pairs produced by a propagator.
#[derive(Debug, Default)]
pub struct HeaderInjector(Vec<(String, String)>);

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
pub struct HeaderExtractor<'a, H>(pub &'a H);

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

/// A PRODUCER span `send {topic}`. Inject `span.context()` into the record's
/// headers, then call [`record_delivery`] when the broker acknowledges.
pub fn producer_span(topic: &str, key: &str) -> tracing::Span {
    tracing::info_span!(
        "messaging.send",
        otel.name = %format_args!("send {topic}"),
        otel.kind = "producer",
        messaging.system = "kafka",
        messaging.operation.type = "send",
        messaging.operation.name = "send",
        messaging.destination.name = topic,
        messaging.kafka.message.key = key,
        messaging.destination.partition.id = tracing::field::Empty,
        messaging.kafka.offset = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

/// Records where the broker stored the message.
pub fn record_delivery(span: &tracing::Span, partition: i32, offset: i64) {
    span.record("messaging.destination.partition.id", partition.to_string());
    span.record("messaging.kafka.offset", offset);
}

/// A CONSUMER span `process {topic}` for `message`: child of the context in
/// its headers, plus a link to that same producer span.
pub fn consumer_span<M: Message>(message: &M, consumer_group: &str) -> tracing::Span {
    let key = message
        .key()
        .and_then(|k| std::str::from_utf8(k).ok())
        .unwrap_or("");
    let parent = extract(message.headers());
    let producer = parent.span().span_context().clone();
    crate::spans::with_parent(parent, || {
        consumer_span_of(message, key, consumer_group, producer)
    })
}

fn consumer_span_of<M: Message>(
    message: &M,
    key: &str,
    consumer_group: &str,
    producer: opentelemetry::trace::SpanContext,
) -> tracing::Span {
    let span = tracing::info_span!(
        "messaging.process",
        otel.name = %format_args!("process {}", message.topic()),
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = message.topic(),
        messaging.consumer.group.name = consumer_group,
        messaging.destination.partition.id = %message.partition(),
        messaging.kafka.offset = message.offset(),
        messaging.kafka.message.key = key,
        messaging.message.body.size = message.payload().map_or(0, <[u8]>::len) as i64,
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    // The link before the parent: below an unsampled or absent parent,
    // setting it makes the sampling decision, which starts the span.
    if producer.is_valid() {
        span.add_link_with_attributes(
            producer,
            vec![KeyValue::new(
                opentelemetry_semantic_conventions::attribute::MESSAGING_OPERATION_TYPE,
                "send",
            )],
        );
    }
    span
}

/// Sends one record with `producer` under a PRODUCER span that is a child of
/// `parent`, with the span's context (and `parent`'s baggage) in the record
/// headers. Returns the partition and offset the broker stored it at; a
/// failure is recorded on the span. `timeout` bounds the wait (set it a little
/// above the producer's `message.timeout.ms`).
pub async fn send_traced(
    producer: &FutureProducer,
    parent: &Context,
    record: FutureRecord<'_, str, [u8]>,
    timeout: std::time::Duration,
) -> Result<(i32, i64), KafkaError> {
    let span = crate::spans::with_parent(parent.clone(), || {
        producer_span(record.topic, record.key.unwrap_or_default())
    });
    let mut record = record;
    let headers = inject(
        &crate::spans::context_of(&span),
        record.headers.take().unwrap_or_default(),
    );
    let record = record.headers(headers);
    let sent = tokio::time::timeout(
        timeout,
        producer
            .send(record, Timeout::Never)
            .instrument(span.clone()),
    )
    .await;
    let result = match sent {
        Ok(Ok(delivery)) => Ok((delivery.partition, delivery.offset)),
        Ok(Err((error, _))) => Err(error),
        Err(_) => Err(KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageTimedOut,
        )),
    };
    match &result {
        Ok((partition, offset)) => record_delivery(&span, *partition, *offset),
        Err(error) => crate::spans::record_error(&span, error_type(error), &error.to_string()),
    }
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
