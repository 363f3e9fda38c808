//! A local OTLP trace receiver, over HTTP (`POST /v1/traces`, protobuf) and
//! gRPC (`TraceService/Export`) on the same port, keeping what it receives in
//! memory so the runner and the tests can show and check whole traces without
//! a collector or Jaeger.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;

use crate::model::{Kind, Span, Trace};

/// Everything received so far.
#[derive(Clone, Default)]
pub struct Store {
    spans: Arc<Mutex<Vec<Span>>>,
    /// Trace ids in the order their first span arrived, and as a set.
    trace_ids: Arc<Mutex<(Vec<String>, std::collections::HashSet<String>)>>,
    /// Bumped on every export, so waiters wake up.
    received: Arc<tokio::sync::Notify>,
    /// Count spans without keeping them (the benchmark: a collector's
    /// decoding cost, not a store growing by tens of thousands of spans).
    count_only: bool,
    counted: Arc<std::sync::atomic::AtomicUsize>,
}

impl Store {
    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Spans received so far (kept or, for a counting receiver, counted).
    pub fn len(&self) -> usize {
        self.counted.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn trace(&self, trace_id: &str) -> Trace {
        let spans = self
            .spans
            .lock()
            .map(|all| {
                all.iter()
                    .filter(|s| s.trace_id == trace_id)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        Trace::new(trace_id.to_owned(), spans)
    }

    /// Adds the spans of one export request (what the OTLP endpoints do with each).
    pub fn ingest(&self, request: ExportTraceServiceRequest) {
        if self.count_only {
            let n: usize = request
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum();
            self.counted
                .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            self.received.notify_waiters();
        } else {
            self.push(spans_of(request));
        }
    }

    fn push(&self, new: Vec<Span>) {
        self.counted
            .fetch_add(new.len(), std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut ids) = self.trace_ids.lock() {
            let (order, seen) = &mut *ids;
            for span in &new {
                if seen.insert(span.trace_id.clone()) {
                    order.push(span.trace_id.clone());
                }
            }
        }
        if let Ok(mut spans) = self.spans.lock() {
            spans.extend(new);
        }
        self.received.notify_waiters();
    }

    /// Waits until `done` holds for the trace, or `timeout` passes; returns
    /// the trace as it is then.
    pub async fn wait_for(
        &self,
        trace_id: &str,
        timeout: Duration,
        done: impl Fn(&Trace) -> bool,
    ) -> Trace {
        self.wait(timeout, || self.trace(trace_id), done).await
    }

    /// Waits until `done` holds for every span received so far, or `timeout`
    /// passes; returns the spans as they are then.
    pub async fn wait_spans(&self, timeout: Duration, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        self.wait(timeout, || self.spans(), |spans| done(spans))
            .await
    }

    async fn wait<T>(
        &self,
        timeout: Duration,
        read: impl Fn() -> T,
        done: impl Fn(&T) -> bool,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.received.notified();
            let now = read();
            if done(&now) || Instant::now() >= deadline {
                return now;
            }
            let _ =
                tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), notified)
                    .await;
        }
    }

    /// Waits until no new span of `trace_id` arrived for `quiet` (bounded by
    /// `timeout`): background hops (Kafka consumers) end after the response.
    pub async fn wait_quiet(&self, trace_id: &str, quiet: Duration, timeout: Duration) -> Trace {
        let deadline = Instant::now() + timeout;
        let mut last = (self.trace(trace_id).spans.len(), Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let count = self.trace(trace_id).spans.len();
            if count != last.0 {
                last = (count, Instant::now());
            }
            if (count > 0 && last.1.elapsed() >= quiet) || Instant::now() >= deadline {
                return self.trace(trace_id);
            }
        }
    }

    /// Trace ids in the order their first span arrived.
    pub fn trace_ids(&self) -> Vec<String> {
        self.trace_ids
            .lock()
            .map(|ids| ids.0.clone())
            .unwrap_or_default()
    }
}

/// A receiver listening on `addr` until the runtime stops.
pub struct Receiver {
    pub addr: SocketAddr,
    pub store: Store,
}

impl Receiver {
    pub async fn start(addr: &str) -> std::io::Result<Self> {
        Self::start_with(addr, Store::default()).await
    }

    /// A receiver that decodes and counts spans but keeps none.
    pub async fn start_counting(addr: &str) -> std::io::Result<Self> {
        let store = Store {
            count_only: true,
            ..Store::default()
        };
        Self::start_with(addr, store).await
    }

    async fn start_with(addr: &str, store: Store) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let grpc = TraceServiceServer::new(GrpcExport(store.clone()));
        let app = axum::Router::new()
            .route("/v1/traces", post(export))
            .route_service(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                grpc,
            )
            .with_state(store.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { addr, store })
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT`, with either protocol.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn export(State(store): State<Store>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/x-protobuf") {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "this receiver accepts OTLP protobuf (OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf)",
        )
            .into_response();
    }
    match ExportTraceServiceRequest::decode(body) {
        Ok(request) => {
            store.ingest(request);
            (
                [(header::CONTENT_TYPE, "application/x-protobuf")],
                ExportTraceServiceResponse::default().encode_to_vec(),
            )
                .into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("not an OTLP request: {e}")).into_response(),
    }
}

struct GrpcExport(Store);

#[tonic::async_trait]
impl TraceService for GrpcExport {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.ingest(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => hex(b),
        Some(any_value::Value::ArrayValue(a)) => format!(
            "[{}]",
            a.values
                .iter()
                .map(|v| text(Some(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

/// The request's spans in the common model; the service is the resource's
/// `service.name`.
pub fn spans_of(request: ExportTraceServiceRequest) -> Vec<Span> {
    let mut out = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        let service = resource
            .get("service.name")
            .cloned()
            .unwrap_or_else(|| "unknown_service".into());
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            let attributes = attributes(&span.attributes);
            // STATUS_CODE_ERROR = 2
            let error = span.status.as_ref().filter(|s| s.code == 2).map(|s| {
                attributes
                    .get("error.type")
                    .cloned()
                    .unwrap_or_else(|| s.message.clone())
            });
            out.push(Span {
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_id: (!span.parent_span_id.is_empty()
                    && span.parent_span_id.iter().any(|b| *b != 0))
                .then(|| hex(&span.parent_span_id)),
                service: service.clone(),
                name: span.name,
                kind: Kind::from_otlp(i64::from(span.kind)),
                start_ns: span.start_time_unix_nano,
                duration_ns: span
                    .end_time_unix_nano
                    .saturating_sub(span.start_time_unix_nano),
                error,
                links: span
                    .links
                    .iter()
                    .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                    .collect(),
                event_attributes: span
                    .events
                    .iter()
                    .flat_map(|e| {
                        e.attributes
                            .iter()
                            .map(|kv| (e.name.clone(), kv.key.clone(), text(kv.value.as_ref())))
                    })
                    .collect(),
                integers: span
                    .attributes
                    .iter()
                    .filter(|kv| {
                        matches!(
                            kv.value.as_ref().and_then(|v| v.value.as_ref()),
                            Some(any_value::Value::IntValue(_))
                        )
                    })
                    .map(|kv| kv.key.clone())
                    .collect(),
                events: span.events.into_iter().map(|e| e.name).collect(),
                attributes,
            });
        }
    }
    out
}
