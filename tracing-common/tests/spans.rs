//! Span shape of every helper, asserted on what the in-memory exporter received.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, TraceId};
use opentelemetry_semantic_conventions::attribute as semconv;
use rdkafka::message::{OwnedHeaders, OwnedMessage, Timestamp};
use tower::ServiceExt;
use tracing::Instrument;
use tracing_common::axum::{IncomingBaggage, IncomingTrace, ServerTracingLayer, TrustPolicy};
use tracing_common_testing::{
    assert_attribute_types, attr_i64, attr_str, is_child_of, only, span_id_of, trace_id_of,
};

/// The baggage keys these tests have copied onto spans.
mod baggage {
    pub const USER_ID: &str = "user.id";
    pub const ORDER_ID: &str = "order.id";
}

fn capture() -> &'static tracing_common_testing::SpanCapture {
    tracing_common_testing::capture_with_span_baggage(&[baggage::USER_ID, baggage::ORDER_ID])
}
use tracing_opentelemetry::OpenTelemetrySpanExt;

// Each test uses a trace id of its own: tests of one binary share the
// in-memory exporter when run in one process (`cargo test`).

fn app(policy: TrustPolicy) -> Router {
    Router::new()
        .route("/users/{id}", get(|| async { "ok" }))
        .route("/boom", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .layer(ServerTracingLayer::new(policy))
        .route("/healthz", get(|| async { "alive" }))
}

async fn call(policy: TrustPolicy, uri: &str, headers: &[(&str, &str)]) -> http::Response<Body> {
    let mut request = Request::get(uri).header("host", "user-service:3001");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    app(policy)
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

fn response_trace(response: &http::Response<Body>) -> TraceId {
    let tp = response.headers()["traceparent"].to_str().unwrap();
    trace_id_of(tp).unwrap()
}

#[tokio::test]
async fn server_span_continues_the_callers_trace_with_route_name_and_http_attributes() {
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4701-00f067aa0ba902b7-01".to_owned();
    let capture = capture();
    let response = call(
        TrustPolicy::INTERNAL,
        "/users/user123?email=a@b.c",
        &[("traceparent", parent.as_str())],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let trace_id = response_trace(&response);
    assert_eq!(trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4701");

    let spans = capture.trace(trace_id);
    let server = only(&spans, "GET /users/{id}");
    assert_eq!(server.span_kind, SpanKind::Server);
    assert_eq!(server.parent_span_id.to_string(), "00f067aa0ba902b7");
    assert!(server.parent_span_is_remote);
    assert_eq!(
        attr_str(server, semconv::HTTP_REQUEST_METHOD).as_deref(),
        Some("GET")
    );
    assert_eq!(
        attr_str(server, semconv::HTTP_ROUTE).as_deref(),
        Some("/users/{id}")
    );
    assert_eq!(
        attr_str(server, semconv::URL_PATH).as_deref(),
        Some("/users/user123")
    );
    assert_eq!(
        attr_str(server, semconv::SERVER_ADDRESS).as_deref(),
        Some("user-service")
    );
    assert_eq!(
        attr_i64(server, semconv::HTTP_RESPONSE_STATUS_CODE),
        Some(200)
    );
    assert_eq!(server.status, Status::Unset);
    // Query values never reach a span.
    assert!(
        server
            .attributes
            .iter()
            .all(|kv| !kv.value.as_str().contains("a@b.c"))
    );
    let tp = response.headers()["traceparent"].to_str().unwrap();
    assert_eq!(span_id_of(tp), Some(server.span_context.span_id()));
}

#[tokio::test]
async fn server_errors_mark_the_span_and_client_errors_do_not() {
    let capture = capture();
    let boom = call(TrustPolicy::INTERNAL, "/boom", &[]).await;
    let spans = capture.trace(response_trace(&boom));
    let server = only(&spans, "GET /boom");
    assert!(
        matches!(server.status, Status::Error { .. }),
        "{:?}",
        server.status
    );
    assert_eq!(
        attr_str(server, semconv::ERROR_TYPE).as_deref(),
        Some("503")
    );

    let missing = call(TrustPolicy::INTERNAL, "/missing", &[]).await;
    let spans = capture.trace(response_trace(&missing));
    let server = only(&spans, "GET /missing");
    assert_eq!(server.status, Status::Unset);
    assert_eq!(
        attr_i64(server, semconv::HTTP_RESPONSE_STATUS_CODE),
        Some(404)
    );
}

#[tokio::test]
async fn health_routes_added_after_the_layer_are_not_traced() {
    let capture = capture();
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4703-00f067aa0ba902b7-01".to_owned();
    let response = call(
        TrustPolicy::INTERNAL,
        "/healthz",
        &[("traceparent", parent.as_str())],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("traceparent").is_none());
    // A traced route with the same caller afterwards: its span arrives, so
    // the capture works, and it is the only span of the caller's trace.
    let traced = call(
        TrustPolicy::INTERNAL,
        "/users/7",
        &[("traceparent", parent.as_str())],
    )
    .await;
    let trace_id = response_trace(&traced);
    capture.wait_for(trace_id, Duration::from_secs(5), |s| !s.is_empty());
    tracing_common_testing::settle();
    let names: Vec<String> = capture
        .trace(trace_id)
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    assert_eq!(names, ["GET /users/{id}"]);
}

#[tokio::test]
async fn malformed_traceparent_starts_a_new_root_instead_of_a_wrong_parent() {
    let capture = capture();
    let bad = [
        "00-4bf92f3577b34da6a3ce929d0e0e4704-00f067aa0ba902b7", // missing flags
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4704-0000000000000000-01", // zero span id
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", // upper case
        "ff-4bf92f3577b34da6a3ce929d0e0e4704-00f067aa0ba902b7-01", // forbidden version
        "00-4bf92f3577b34da6a3ce929d0e0e4704-00f067aa0ba902b7-01-extra", // v00 with extra field
        "00-xyz-00f067aa0ba902b7-01",
        "",
    ];
    for header in bad {
        let response = call(
            TrustPolicy::INTERNAL,
            "/users/u1",
            &[("traceparent", header)],
        )
        .await;
        let trace_id = response_trace(&response);
        assert_ne!(
            trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4704",
            "{header}"
        );
        let spans = capture.trace(trace_id);
        let server = only(&spans, "GET /users/{id}");
        assert_eq!(
            server.parent_span_id,
            opentelemetry::trace::SpanId::INVALID,
            "{header}"
        );
    }
    let huge = format!(
        "00-4bf92f3577b34da6a3ce929d0e0e4704-00f067aa0ba902b7-01{}",
        "0".repeat(10_000)
    );
    let response = call(
        TrustPolicy::INTERNAL,
        "/users/u1",
        &[("traceparent", &huge)],
    )
    .await;
    assert_ne!(
        response_trace(&response).to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4704"
    );
}

#[tokio::test]
async fn future_traceparent_versions_and_bad_tracestate_keep_the_parent() {
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4705-00f067aa0ba902b7-01".to_owned();
    let capture = capture();
    // W3C: a higher version is parsed as far as version 00 goes.
    let future = "cc-4bf92f3577b34da6a3ce929d0e0e4705-00f067aa0ba902b7-01-what-the-future-holds";
    let oversized_state = (0..40)
        .map(|i| format!("k{i}=v{i}"))
        .collect::<Vec<_>>()
        .join(",");
    // (traceparent, tracestate sent, tracestate the server span keeps)
    for (tp, ts, kept) in [
        (future, "a=1", "a=1"),
        // More than 32 list members is invalid: the whole tracestate goes.
        (parent.as_str(), oversized_state.as_str(), ""),
        (parent.as_str(), "not a list entry", ""),
    ] {
        let response = call(
            TrustPolicy::INTERNAL,
            "/users/u1",
            &[("traceparent", tp), ("tracestate", ts)],
        )
        .await;
        let trace_id = response_trace(&response);
        assert_eq!(
            trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4705",
            "{tp} / {ts}"
        );
        let spans = capture.trace(trace_id);
        let server = spans
            .iter()
            .rev()
            .find(|s| s.name == "GET /users/{id}")
            .unwrap();
        assert_eq!(server.parent_span_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(server.span_context.trace_state().header(), kept, "{ts}");
    }
}

#[tokio::test]
async fn allow_listed_baggage_becomes_span_attributes_and_other_keys_do_not() {
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4706-00f067aa0ba902b7-01".to_owned();
    let capture = capture();
    let long = "x".repeat(tracing_common::propagation::MAX_SPAN_BAGGAGE_LEN + 1);
    let header = format!("user.id=user123,order.id={long},session=secret");
    let response = call(
        TrustPolicy::INTERNAL,
        "/users/u1",
        &[("traceparent", parent.as_str()), ("baggage", &header)],
    )
    .await;
    let spans = capture.trace(response_trace(&response));
    let server = spans
        .iter()
        .rev()
        .find(|s| s.name == "GET /users/{id}")
        .unwrap();
    assert_eq!(
        attr_str(server, baggage::USER_ID).as_deref(),
        Some("user123")
    );
    assert_eq!(
        attr_str(server, baggage::ORDER_ID),
        None,
        "over-long value copied"
    );
    assert_eq!(attr_str(server, "session"), None);
}

#[tokio::test]
async fn edge_policy_drops_incoming_baggage_but_continues_the_trace() {
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4707-00f067aa0ba902b7-01".to_owned();
    let capture = capture();
    let response = call(
        TrustPolicy::EDGE,
        "/users/u1",
        &[
            ("traceparent", parent.as_str()),
            ("baggage", "user.id=forged"),
        ],
    )
    .await;
    let trace_id = response_trace(&response);
    assert_eq!(trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4707");
    let spans = capture.trace(trace_id);
    let server = spans
        .iter()
        .rev()
        .find(|s| s.name == "GET /users/{id}")
        .unwrap();
    assert_eq!(attr_str(server, baggage::USER_ID), None);
}

#[tokio::test]
async fn new_root_policy_starts_a_fresh_trace_linked_to_the_caller() {
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4708-00f067aa0ba902b7-01".to_owned();
    let capture = capture();
    let policy = TrustPolicy::new(IncomingTrace::NewRootWithLink, IncomingBaggage::Drop);
    let response = call(policy, "/users/u1", &[("traceparent", parent.as_str())]).await;
    let trace_id = response_trace(&response);
    assert_ne!(trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4708");
    let spans = capture.trace(trace_id);
    let server = only(&spans, "GET /users/{id}");
    assert_eq!(server.parent_span_id, opentelemetry::trace::SpanId::INVALID);
    let link = server.links.iter().next().expect("a link to the caller");
    assert_eq!(
        link.span_context.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4708"
    );
    assert_eq!(link.span_context.span_id().to_string(), "00f067aa0ba902b7");
}

#[tokio::test]
async fn client_span_is_a_child_of_the_current_span_and_its_context_reaches_the_server() {
    let capture = capture();
    let echo = Router::new().route(
        "/echo",
        get(|headers: http::HeaderMap| async move {
            let get = |k: &str| {
                headers
                    .get(k)
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default()
            };
            format!("{}|{}", get("traceparent"), get("baggage"))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, echo).await.unwrap() });

    let client = tracing_common::reqwest::http_client(Duration::from_secs(2)).unwrap();
    // Baggage is added to the context a new span starts from (a started span's
    // context cannot change), as order-service does below its SERVER span.
    let handler = tracing::info_span!("POST /orders");
    let cx = tracing_common::propagation::with_baggage(
        &handler.context(),
        [(baggage::USER_ID, "user123")],
    );
    let parent = tracing::info_span!("fetch-user-data");
    parent.set_parent(cx).expect("span not started yet");
    let trace_id = parent.context().span().span_context().trace_id();
    let body = async {
        client
            .get(format!("http://{addr}/echo?token=abc"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
    .instrument(parent.clone())
    .await;
    drop(parent);
    drop(handler);

    let (traceparent, baggage_header) = body.split_once('|').unwrap();
    let spans = capture.trace(trace_id);
    let internal = only(&spans, "fetch-user-data");
    let client_span = only(&spans, "GET");
    assert_eq!(client_span.span_kind, SpanKind::Client);
    assert!(is_child_of(client_span, internal));
    assert_eq!(
        span_id_of(traceparent),
        Some(client_span.span_context.span_id())
    );
    assert!(
        baggage_header.contains("user.id=user123"),
        "{baggage_header}"
    );
    assert_eq!(
        attr_str(client_span, semconv::SERVER_ADDRESS).as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        attr_i64(client_span, semconv::HTTP_RESPONSE_STATUS_CODE),
        Some(200)
    );
    assert_eq!(
        attr_i64(client_span, semconv::SERVER_PORT),
        Some(i64::from(addr.port()))
    );
    assert_attribute_types(&spans);
    let url = attr_str(client_span, semconv::URL_FULL).unwrap();
    assert!(url.ends_with("/echo") && !url.contains("token"), "{url}");
    assert_eq!(
        attr_str(client_span, baggage::USER_ID).as_deref(),
        Some("user123")
    );
}

#[tokio::test]
async fn client_span_says_why_a_call_failed() {
    let capture = capture();
    let closed = tracing_common_testing::closed_port();
    let client = tracing_common::reqwest::http_client(Duration::from_secs(2)).unwrap();
    let parent = tracing::info_span!("check-inventory");
    let trace_id = parent.context().span().span_context().trace_id();
    let result = client
        .post(format!("http://{closed}/check"))
        .send()
        .instrument(parent.clone())
        .await;
    drop(parent);
    assert!(result.is_err());
    let spans = capture.trace(trace_id);
    let client_span = only(&spans, "POST");
    assert!(matches!(client_span.status, Status::Error { .. }));
    assert_eq!(
        attr_str(client_span, semconv::ERROR_TYPE).as_deref(),
        Some("connection_refused")
    );
    assert!(client_span.events.iter().any(|e| e.name == "exception"));
}

#[tokio::test]
async fn kafka_consumer_span_is_child_of_and_linked_to_the_producer_span() {
    use opentelemetry::context::FutureExt as _;
    let capture = capture();
    // librdkafka's in-process mock broker stores the record at partition 2.
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic("order-events", 3, 1).unwrap();
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .create()
        .unwrap();
    let publish = tracing::info_span!("publish-order-event");
    let trace_id = publish.context().span().span_context().trace_id();
    let parent = tracing_common::propagation::with_baggage(
        &publish.context(),
        [(baggage::ORDER_ID, "order-1")],
    );
    let record = rdkafka::producer::FutureRecord::to("order-events")
        .key("order-1")
        .payload(&b"{}"[..])
        .partition(2);
    let (partition, offset) = tracing_common::rdkafka::send_traced(
        &producer,
        &parent,
        record,
        Some(Duration::from_secs(10)),
        None,
    )
    .await
    .unwrap();
    drop(publish);
    assert_eq!(partition, 2);
    // The record as a consumer reads it back, headers and all.
    let message = {
        use rdkafka::consumer::{BaseConsumer, Consumer as _};
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("group.id", "inventory-service")
            .create()
            .unwrap();
        let mut assignment = rdkafka::TopicPartitionList::new();
        assignment
            .add_partition_offset("order-events", 2, rdkafka::Offset::Offset(offset))
            .unwrap();
        consumer.assign(&assignment).unwrap();
        let received = (0..50)
            .find_map(|_| consumer.poll(Duration::from_millis(200)))
            .expect("the record within 10 s")
            .unwrap();
        received.detach()
    };

    let cx = tracing_common::rdkafka::consumer_context(&message, "inventory-service");
    async { tracing::info_span!("reserve-stock").in_scope(|| {}) }
        .with_context(cx.clone())
        .await;
    cx.span().end();

    let spans = capture.trace(trace_id);
    let send = only(&spans, "send order-events");
    let process = only(&spans, "process order-events");
    let reserve = only(&spans, "reserve-stock");
    assert_eq!(send.span_kind, SpanKind::Producer);
    assert_eq!(process.span_kind, SpanKind::Consumer);
    assert!(is_child_of(process, send));
    assert!(is_child_of(reserve, process));
    let link = process.links.iter().next().expect("link to producer");
    assert_eq!(link.span_context.span_id(), send.span_context.span_id());
    for (span, op) in [(send, "send"), (process, "process")] {
        assert_eq!(
            attr_str(span, semconv::MESSAGING_SYSTEM).as_deref(),
            Some("kafka")
        );
        assert_eq!(
            attr_str(span, semconv::MESSAGING_DESTINATION_NAME).as_deref(),
            Some("order-events")
        );
        assert_eq!(
            attr_str(span, semconv::MESSAGING_OPERATION_TYPE).as_deref(),
            Some(op)
        );
        assert_eq!(
            attr_str(span, semconv::MESSAGING_KAFKA_MESSAGE_KEY).as_deref(),
            Some("order-1")
        );
        assert_eq!(
            attr_str(span, semconv::MESSAGING_DESTINATION_PARTITION_ID).as_deref(),
            Some("2")
        );
        assert_eq!(
            attr_i64(span, semconv::MESSAGING_KAFKA_OFFSET),
            Some(offset)
        );
    }
    assert_eq!(
        attr_str(process, semconv::MESSAGING_CONSUMER_GROUP_NAME).as_deref(),
        Some("inventory-service")
    );
    // Baggage crossed the hop and was copied onto the consumer side's spans.
    assert_eq!(
        attr_str(reserve, baggage::ORDER_ID).as_deref(),
        Some("order-1")
    );
}

#[tokio::test]
async fn kafka_message_without_or_with_garbage_headers_gets_a_root_consumer_span() {
    let capture = capture();
    let garbage = OwnedHeaders::new()
        .insert(rdkafka::message::Header {
            key: "traceparent",
            value: Some(&[0xff_u8, 0xfe][..]),
        })
        .insert(rdkafka::message::Header {
            key: "baggage",
            value: None::<&[u8]>,
        });
    for headers in [None, Some(garbage)] {
        let message = OwnedMessage::new(
            None,
            None,
            "inventory-events".into(),
            Timestamp::NotAvailable,
            0,
            7,
            headers,
        );
        let cx = tracing_common::rdkafka::consumer_context(&message, "order-service");
        let trace_id = cx.span().span_context().trace_id();
        cx.span().end();
        let spans = capture.trace(trace_id);
        let process = only(&spans, "process inventory-events");
        assert_eq!(
            process.parent_span_id,
            opentelemetry::trace::SpanId::INVALID
        );
        assert!(process.links.is_empty());
    }
}
