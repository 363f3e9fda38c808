//! Test helpers for `tracing-common` and the services (a dev-dependency only):
//! an in-memory span capture, attribute and parent assertions, per-test
//! databases and Kafka topic reads, and an OTLP receiver with TLS and
//! credentials ([`otlp_receiver`]).
//!
//! In-memory span capture for tests of this crate and of the services.
//!
//! The first call installs, for the whole test process, a tracer provider that
//! exports synchronously to memory, the W3C propagators, and the `tracing`
//! bridge (logs go to the test output only when `TEST_LOG` is set). Tests that
//! share a process tell their spans apart by trace id.

pub mod otlp_receiver;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry::{Key, Value};
use opentelemetry_sdk::trace::{
    InMemorySpanExporter, SdkTracerProvider, SimpleSpanProcessor, SpanData,
};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use tracing_common::config::PropagatorKind;
use tracing_common::propagation::BaggageSpanProcessor;

/// Finished spans of this test process.
#[derive(Debug)]
pub struct SpanCapture {
    exporter: InMemorySpanExporter,
    _provider: SdkTracerProvider,
}

static CAPTURE: OnceLock<SpanCapture> = OnceLock::new();

/// Installs the capture on first use and returns it.
pub fn capture() -> &'static SpanCapture {
    capture_with_span_baggage(&[])
}

/// [`capture`], copying the baggage entries `keys` onto every span as the
/// application's telemetry does (`TelemetryConfig::with_span_baggage`). The
/// first call in a test process decides the keys.
pub fn capture_with_span_baggage(keys: &'static [&'static str]) -> &'static SpanCapture {
    CAPTURE.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BaggageSpanProcessor::new(
                SimpleSpanProcessor::new(exporter.clone()),
                keys,
            ))
            .build();
        opentelemetry::global::set_tracer_provider(provider.clone());
        opentelemetry::global::set_text_map_propagator(tracing_common::propagation::propagator(&[
            PropagatorKind::TraceContext,
            PropagatorKind::Baggage,
        ]));
        let logs = std::env::var_os("TEST_LOG").is_some().then(|| {
            tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter(tracing_subscriber::EnvFilter::new("info"))
        });
        let _ = tracing_subscriber::registry()
            .with(tracing_common::otel_layer(provider.tracer("test")))
            .with(logs)
            .try_init();
        SpanCapture {
            exporter,
            _provider: provider,
        }
    })
}

impl SpanCapture {
    /// Every finished span so far.
    pub fn spans(&self) -> Vec<SpanData> {
        self.exporter.get_finished_spans().unwrap_or_default()
    }

    /// The finished spans of one trace.
    pub fn trace(&self, trace_id: TraceId) -> Vec<SpanData> {
        self.spans()
            .into_iter()
            .filter(|s| s.span_context.trace_id() == trace_id)
            .collect()
    }

    /// Waits (bounded) until `done` holds for the trace's spans, and returns them.
    /// Spans of background work (consumers, relays) finish after the response.
    pub fn wait_for(
        &self,
        trace_id: TraceId,
        timeout: Duration,
        done: impl Fn(&[SpanData]) -> bool,
    ) -> Vec<SpanData> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.trace(trace_id);
            if done(&spans) || Instant::now() >= deadline {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The one span named `name`; panics with the names present if there is not exactly one.
pub fn only<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    let found: Vec<&SpanData> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one span named {name:?}, found {}; spans: {:?}",
        found.len(),
        spans.iter().map(|s| s.name.as_ref()).collect::<Vec<_>>()
    );
    found[0]
}

/// The value of attribute `key` on `span`.
pub fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == Key::new(key.to_owned()))
        .map(|kv| &kv.value)
}

/// The attribute as a string (any value type), for terse assertions.
pub fn attr_str(span: &SpanData, key: &str) -> Option<String> {
    attr(span, key).map(|v| v.as_str().into_owned())
}

/// The attribute if it is an integer (`Value::I64`); `None` when it is
/// missing or has another type, so `assert_eq!(attr_i64(..), Some(200))`
/// fails on the text `"200"`.
pub fn attr_i64(span: &SpanData, key: &str) -> Option<i64> {
    match attr(span, key)? {
        Value::I64(v) => Some(*v),
        _ => None,
    }
}

/// Panics, naming span and key, if an attribute of `spans` has the wrong type:
/// the keys of [`INTEGER_ATTRIBUTES`](tracing_common::spans::INTEGER_ATTRIBUTES) must be integers, those of
/// [`STRING_ATTRIBUTES`](tracing_common::spans::STRING_ATTRIBUTES) strings, and no other attribute may be a string that
/// reads as an integer (the `tracing` bridge turns unsigned fields into text).
pub fn assert_attribute_types(spans: &[SpanData]) {
    use tracing_common::spans::{INTEGER_ATTRIBUTES, STRING_ATTRIBUTES};
    let mut wrong = Vec::new();
    for span in spans {
        for kv in &span.attributes {
            let key = kv.key.as_str();
            let ok = if INTEGER_ATTRIBUTES.contains(&key) {
                matches!(kv.value, Value::I64(_))
            } else if STRING_ATTRIBUTES.contains(&key) {
                matches!(kv.value, Value::String(_))
            } else {
                !matches!(&kv.value, Value::String(s) if s.as_str().parse::<i64>().is_ok())
            };
            if !ok {
                wrong.push(format!("{}: {key} = {:?}", span.name, kv.value));
            }
        }
    }
    assert!(wrong.is_empty(), "attributes of the wrong type: {wrong:#?}");
}

/// Whether `child`'s parent is `parent`.
pub fn is_child_of(child: &SpanData, parent: &SpanData) -> bool {
    child.parent_span_id == parent.span_context.span_id()
        && child.span_context.trace_id() == parent.span_context.trace_id()
}

/// Parses the trace id out of a `traceparent` header value.
pub fn trace_id_of(traceparent: &str) -> Option<TraceId> {
    let mut parts = traceparent.split('-');
    let _version = parts.next()?;
    TraceId::from_hex(parts.next()?).ok()
}

/// Parses the span id out of a `traceparent` header value.
pub fn span_id_of(traceparent: &str) -> Option<SpanId> {
    SpanId::from_hex(traceparent.split('-').nth(2)?).ok()
}

/// Waits (bounded) for a short time so spans ending on other threads land.
pub fn settle() {
    std::thread::sleep(Duration::from_millis(50));
}

/// A `DATABASE_URL` for a database of its own (`{prefix}_test_{pid}_{nanos}`)
/// on the server of `DATABASE_URL` (default the local Postgres); the service
/// creates it on connect. `scripts/test.sh` drops old ones before each run.
pub fn fresh_database_url(prefix: &str) -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let base = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let server = base.rsplit_once('/').map_or(base.as_str(), |(s, _)| s);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{server}/{prefix}_test_{}_{nanos}", std::process::id())
}

/// Every record of `topic` so far, read from the beginning of each of its
/// partitions without joining a consumer group; waits (bounded by `timeout`)
/// until at least `at_least` have arrived.
pub fn records(
    brokers: &str,
    topic: &str,
    at_least: usize,
    timeout: Duration,
) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::consumer::{BaseConsumer, Consumer};

    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a reader consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .expect("topic metadata");
    let mut assignment = rdkafka::TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        assignment
            .add_partition_offset(topic, partition.id(), rdkafka::Offset::Beginning)
            .expect("a partition offset");
    }
    consumer.assign(&assignment).expect("assign partitions");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => out.push(message.detach()),
            Some(Err(_)) | None if out.len() >= at_least => break,
            Some(Err(_)) | None => {}
        }
    }
    out
}

/// How many records `topic` holds (sum of the partitions' high watermarks).
pub fn record_count(brokers: &str, topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};

    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("a metadata consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .expect("topic metadata");
    metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(5))
                .expect("watermarks");
            high - low
        })
        .sum()
}

/// A free loopback port, as the kernel hands one out. Free when this returns;
/// a process started on it afterwards may still lose it to another, so
/// callers that start servers retry on a bind clash.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A loopback address where nothing listens (a port the kernel just handed
/// out, closed again): connections to it are refused.
pub fn closed_port() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], free_port()))
}
