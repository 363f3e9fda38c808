//! inventory-service on a Postgres database of its own and an in-process
//! Kafka-protocol cluster: stock checks over HTTP, and reservations driven by
//! `order-events` records, spans included.

use std::time::Duration;

use opentelemetry::trace::{SpanKind, Status, TraceContextExt, TraceId, Tracer};
use opentelemetry_sdk::trace::SpanData;
use rdkafka::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use serde_json::{Value, json};
use service_runtime::lifecycle::Running;
use sqlx::PgPool;
use tracing_common_testing::{
    assert_attribute_types, attr_i64, attr_str, fresh_database_url, is_child_of, only, records,
};

/// The span capture, copying the order's baggage onto spans as the services'
/// telemetry does.
fn capture() -> &'static tracing_common_testing::SpanCapture {
    tracing_common_testing::capture_with_span_baggage(order_contract::trace::baggage::ON_SPANS)
}

struct Inventory {
    _kafka: MockCluster<'static, DefaultProducerContext>,
    brokers: String,
    service: Running,
    db: PgPool,
    producer: service_runtime::kafka::Producer,
}

async fn spawn_inventory() -> Inventory {
    capture();
    let kafka = MockCluster::new(1).expect("mock Kafka cluster");
    // The mock broker has no CreateTopics; the services find them provisioned.
    for topic in order_contract::topics::ALL {
        kafka
            .create_topic(topic, order_contract::topics::PARTITIONS, 1)
            .expect("topic");
    }
    let brokers = kafka.bootstrap_servers();
    let url = fresh_database_url("inventory");
    let service = inventory_service::start(
        &inventory_service::config::Config::for_tests(url.clone(), brokers.clone()),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .expect("inventory-service starts")
    .started_within(Duration::from_secs(30))
    .await
    .expect("Postgres must be running");
    Inventory {
        producer: service_runtime::kafka::producer(&brokers, Some(Duration::from_secs(5))).unwrap(),
        _kafka: kafka,
        brokers,
        service,
        db: PgPool::connect(&url).await.unwrap(),
    }
}

impl Inventory {
    /// Publishes `event` on `order-events` under a fresh root span, as
    /// order-service does; returns the trace it belongs to.
    async fn publish(&self, event: &Value) -> TraceId {
        let tracer = opentelemetry::global::tracer("test-order-service");
        let root = tracer.start("test-root");
        let cx = opentelemetry::Context::current_with_span(root);
        let trace_id = cx.span().span_context().trace_id();
        service_runtime::kafka::send_traced(
            &self.producer,
            &cx,
            order_contract::topics::ORDER_EVENTS,
            event["orderId"].as_str().unwrap(),
            event.to_string().as_bytes(),
        )
        .await
        .expect("publish");
        cx.span().end();
        trace_id
    }

    async fn available(&self, product: &str) -> i32 {
        sqlx::query_scalar("SELECT available FROM stock WHERE product_id = $1")
            .bind(product)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    /// The answers on `inventory-events`, waiting (bounded) for `n`.
    fn answers(&self, n: usize) -> Vec<Value> {
        records(
            &self.brokers,
            order_contract::topics::INVENTORY_EVENTS,
            n,
            Duration::from_secs(20),
        )
        .iter()
        .map(|m| serde_json::from_slice(m.payload().unwrap()).unwrap())
        .collect()
    }
}

fn order_event(items: Value) -> Value {
    json!({
        "eventId": uuid::Uuid::now_v7(),
        "type": "order-created",
        "orderId": uuid::Uuid::now_v7(),
        "userId": "user123",
        "items": items,
        "totalCents": 6748,
    })
}

fn count(spans: &[SpanData], name: &str) -> usize {
    spans.iter().filter(|s| s.name == name).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_duplicate_order_event_reserves_once_and_is_answered_twice_the_same() {
    let inventory = spawn_inventory().await;
    let event = order_event(json!([
        { "productId": "prod1", "quantity": 2, "priceCents": 2599 },
        { "productId": "prod2", "quantity": 1, "priceCents": 1550 }
    ]));
    let first = inventory.publish(&event).await;
    let answers = inventory.answers(1);
    assert_eq!(answers.len(), 1);
    let second = inventory.publish(&event).await;
    let answers = inventory.answers(2);
    assert_eq!(answers.len(), 2, "a redelivered event is answered again");
    for answer in &answers {
        assert_eq!(answer["type"], "stock-reserved");
        assert_eq!(answer["eventId"], event["eventId"]);
        assert_eq!(answer["orderId"], event["orderId"]);
    }
    assert_eq!(inventory.available("prod1").await, 1_000_000 - 2);
    assert_eq!(inventory.available("prod2").await, 1_000_000 - 1);
    let reservations: i64 = sqlx::query_scalar("SELECT count(*) FROM reservations")
        .fetch_one(&inventory.db)
        .await
        .unwrap();
    assert_eq!(reservations, 2, "one row per product, once");

    // The first delivery: consumer span under the producer span, linked to it.
    let spans = capture().wait_for(first, Duration::from_secs(10), |s| {
        count(s, "send inventory-events") == 1
    });
    let send = only(&spans, "send order-events");
    let process = only(&spans, "process order-events");
    assert_eq!(process.span_kind, SpanKind::Consumer);
    assert!(is_child_of(process, send));
    assert!(
        process
            .links
            .iter()
            .any(|l| l.span_context.span_id() == send.span_context.span_id())
    );
    for (key, value) in [
        ("messaging.system", "kafka"),
        ("messaging.destination.name", "order-events"),
        ("messaging.operation.type", "process"),
        ("messaging.consumer.group.name", "inventory-service"),
    ] {
        assert_eq!(attr_str(process, key).as_deref(), Some(value), "{key}");
    }
    assert!(attr_i64(process, "messaging.kafka.offset").is_some());
    assert_attribute_types(&spans);
    let reserve = only(&spans, "reserve-stock");
    assert!(is_child_of(reserve, process));
    assert!(
        spans
            .iter()
            .filter(|s| s.span_kind == SpanKind::Client && is_child_of(s, reserve))
            .any(|s| attr_str(s, "db.system.name").as_deref() == Some("postgresql")),
        "reserve-stock runs db spans"
    );
    let answer = only(&spans, "send inventory-events");
    assert_eq!(answer.span_kind, SpanKind::Producer);
    assert!(is_child_of(answer, process));

    // The duplicate: answered, with the skip recorded on its reserve-stock span.
    let spans = capture().wait_for(second, Duration::from_secs(10), |s| {
        count(s, "send inventory-events") == 1
    });
    let reserve = only(&spans, "reserve-stock");
    assert!(
        reserve
            .events
            .iter()
            .any(|e| e.name == "duplicate_event_skipped")
    );
    inventory.service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_the_stock_cannot_serve_is_rejected_whole_and_reserves_nothing() {
    let inventory = spawn_inventory().await;
    let event = order_event(json!([
        { "productId": "prod1", "quantity": 1, "priceCents": 2599 },
        { "productId": "prod3", "quantity": 1, "priceCents": 1000 }
    ]));
    let trace = inventory.publish(&event).await;
    let answers = inventory.answers(1);
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0]["type"], "stock-rejected");
    assert!(
        answers[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("prod3"))
    );
    assert_eq!(
        inventory.available("prod1").await,
        1_000_000,
        "all or nothing"
    );
    assert_eq!(inventory.available("prod3").await, 0);
    let spans = capture().wait_for(trace, Duration::from_secs(10), |s| {
        count(s, "send inventory-events") == 1
    });
    let reserve = only(&spans, "reserve-stock");
    assert!(reserve.events.iter().any(|e| e.name == "stock_rejected"));
    inventory.service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_on_order_events_is_skipped_and_the_consumer_keeps_going() {
    let inventory = spawn_inventory().await;
    for garbage in [&b"not json"[..], b"{\"eventId\": 1}", b""] {
        let record =
            rdkafka::producer::FutureRecord::<str, [u8]>::to(order_contract::topics::ORDER_EVENTS)
                .key("garbage")
                .payload(garbage);
        inventory
            .producer
            .get()
            .send(record, Duration::from_secs(5))
            .await
            .expect("publish garbage");
    }
    let event = order_event(json!([{ "productId": "prod2", "quantity": 3, "priceCents": 1550 }]));
    inventory.publish(&event).await;
    let answers = inventory.answers(1);
    assert_eq!(answers.len(), 1, "only the valid event is answered");
    assert_eq!(answers[0]["orderId"], event["orderId"]);
    assert_eq!(inventory.available("prod2").await, 1_000_000 - 3);
    // The garbage went to the partition of its key, the valid event maybe to
    // another: the consumer may answer the event before it reaches the garbage.
    let skipped = || {
        capture()
            .spans()
            .into_iter()
            .filter(|s| s.name == "process order-events")
            .filter(|s| attr_str(s, "error.type").as_deref() == Some("invalid_message"))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while skipped() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let skipped = skipped();
    assert!(
        skipped >= 3,
        "each garbage record has an error span ({skipped})"
    );
    inventory.service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stock_check_answers_per_line_with_a_server_span_and_a_db_span() {
    let inventory = spawn_inventory().await;
    let http = reqwest::Client::new();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = http
        .post(format!("{}/check", inventory.service.url()))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&json!({ "items": [
            { "productId": "prod1", "quantity": 5 },
            { "productId": "prod3", "quantity": 1 }
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["available"], false);
    let prod3 = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["productId"] == "prod3")
        .unwrap();
    assert_eq!(prod3["sufficient"], false);

    let spans = capture().wait_for(
        TraceId::from_hex(trace).unwrap(),
        Duration::from_secs(5),
        |s| count(s, "SELECT stock") == 1,
    );
    let server = only(&spans, "POST /check");
    assert_eq!(server.span_kind, SpanKind::Server);
    assert_eq!(server.parent_span_id.to_string(), "00f067aa0ba902b7");
    assert_eq!(server.status, Status::Unset);
    let db = only(&spans, "SELECT stock");
    assert!(is_child_of(db, server));
    assert_eq!(
        attr_str(db, "db.query.text").as_deref(),
        Some("SELECT product_id, name, available FROM stock WHERE product_id = ANY($1)")
    );
    assert_eq!(attr_str(db, "db.collection.name").as_deref(), Some("stock"));

    for bad in [
        json!({}),
        json!({ "items": [] }),
        json!({ "items": "prod1" }),
    ] {
        let response = http
            .post(format!("{}/check", inventory.service.url()))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
    }
    inventory.service.stop().await.unwrap();
}
