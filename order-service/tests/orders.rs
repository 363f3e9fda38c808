//! order-service with the real user- and inventory-service beside it, each on
//! a Postgres database of its own, over an in-process Kafka-protocol cluster
//! (librdkafka's mock broker); spans land in the in-memory exporter.

use std::time::{Duration, Instant};

use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use opentelemetry_sdk::trace::SpanData;
use order_contract::trace::{ORDER_TRACE, services};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use serde_json::{Value, json};
use service_runtime::lifecycle::Running;
use sqlx::PgPool;
use tracing_common_testing::{
    assert_attribute_types, attr_i64, attr_str, fresh_database_url, is_child_of, only,
    record_count, records,
};

/// The span capture, copying the order's baggage onto spans as the services'
/// telemetry does.
fn capture() -> &'static tracing_common_testing::SpanCapture {
    tracing_common_testing::capture_with_span_baggage(order_contract::trace::baggage::ON_SPANS)
}

struct Stack {
    kafka: MockCluster<'static, DefaultProducerContext>,
    brokers: String,
    orders: Running,
    users: Running,
    inventory: Running,
    orders_db: PgPool,
    inventory_db: PgPool,
    http: reqwest::Client,
}

async fn listener() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// The three services on fresh databases and a fresh Kafka cluster;
/// `tune` adjusts order-service's settings.
async fn spawn_stack(tune: impl FnOnce(&mut order_service::config::Config)) -> Stack {
    capture();
    let kafka = MockCluster::new(1).expect("mock Kafka cluster");
    // The mock broker has no CreateTopics; the services find them provisioned.
    for topic in order_contract::topics::ALL {
        kafka
            .create_topic(topic, order_contract::topics::PARTITIONS, 1)
            .expect("topic");
    }
    let brokers = kafka.bootstrap_servers();

    let users = user_service::start(
        &user_service::config::Config::for_tests(fresh_database_url("users")),
        listener().await,
    )
    .await
    .expect("user-service starts")
    .started_within(Duration::from_secs(30))
    .await
    .expect("Postgres must be running");
    let inventory_url = fresh_database_url("inventory");
    let inventory = inventory_service::start(
        &inventory_service::config::Config::for_tests(inventory_url.clone(), brokers.clone()),
        listener().await,
    )
    .await
    .expect("inventory-service starts")
    .started_within(Duration::from_secs(30))
    .await
    .expect("Postgres must be running");
    let orders_url = fresh_database_url("orders");
    let mut config = order_service::config::Config::for_tests(
        orders_url.clone(),
        brokers.clone(),
        users.url(),
        inventory.url(),
    );
    tune(&mut config);
    let orders = order_service::start(&config, listener().await)
        .await
        .expect("order-service starts")
        .started_within(Duration::from_secs(30))
        .await
        .expect("Postgres must be running");
    Stack {
        kafka,
        brokers,
        orders,
        users,
        inventory,
        orders_db: PgPool::connect(&orders_url).await.unwrap(),
        inventory_db: PgPool::connect(&inventory_url).await.unwrap(),
        http: reqwest::Client::new(),
    }
}

/// The seed's request body.
fn seed_order() -> Value {
    json!({
        "userId": "user123",
        "items": [
            { "productId": "prod1", "quantity": 2, "price": 25.99 },
            { "productId": "prod2", "quantity": 1, "price": 15.50 }
        ],
        "totalAmount": 67.48
    })
}

/// A `traceparent` for a fresh trace, as the gateway's CLIENT span would send.
fn traceparent() -> (String, TraceId, SpanId) {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    (
        format!("00-{trace}-{span}-01"),
        TraceId::from_hex(&trace).unwrap(),
        SpanId::from_hex(span).unwrap(),
    )
}

impl Stack {
    async fn post(&self, body: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}/orders", self.orders.url()))
            .header("content-type", "application/json")
            .body(body.to_owned());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("status {status}: body is not JSON: {text:?}"));
        (status, body)
    }

    async fn order_status(&self, id: &str) -> String {
        let response = self
            .http
            .get(format!("{}/orders/{id}", self.orders.url()))
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        body["order"]["status"].as_str().unwrap_or("").to_owned()
    }

    /// Polls (bounded) until the order leaves `pending`.
    async fn settled_status(&self, id: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let status = self.order_status(id).await;
            if status != "pending" || Instant::now() >= deadline {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn count(&self, db: &PgPool, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(db).await.unwrap()
    }

    async fn stop(self) {
        self.orders.stop().await.unwrap();
        self.inventory.stop().await.unwrap();
        self.users.stop().await.unwrap();
        drop(self.kafka);
    }
}

fn kind_of(kind: order_contract::trace::SpanKind) -> SpanKind {
    use order_contract::trace::SpanKind as K;
    match kind {
        K::Internal => SpanKind::Internal,
        K::Server => SpanKind::Server,
        K::Client => SpanKind::Client,
        K::Producer => SpanKind::Producer,
        K::Consumer => SpanKind::Consumer,
    }
}

fn spans_named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn has_span(name: &'static str) -> impl Fn(&[SpanData]) -> bool {
    move |spans| spans.iter().any(|s| s.name == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_seed_order_is_created_published_reserved_and_confirmed_in_one_trace() {
    let stack = spawn_stack(|_| {}).await;
    let (parent, trace_id, parent_span) = traceparent();

    let (status, body) = stack
        .post(&seed_order().to_string(), &[("traceparent", &parent)])
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["status"], "pending");
    assert_eq!(body["message"], "Order created successfully");
    let order_id = body["orderId"].as_str().unwrap().to_owned();

    assert_eq!(
        stack
            .settled_status(&order_id, Duration::from_secs(20))
            .await,
        "confirmed"
    );

    // Database state on both sides.
    let (total, user): (i64, String) =
        sqlx::query_as("SELECT total_cents, user_id FROM orders WHERE id = $1::uuid")
            .bind(&order_id)
            .fetch_one(&stack.orders_db)
            .await
            .unwrap();
    assert_eq!((total, user.as_str()), (6748, "user123"));
    assert_eq!(
        stack
            .count(&stack.orders_db, "SELECT count(*) FROM order_items")
            .await,
        2
    );
    assert_eq!(
        stack
            .count(
                &stack.orders_db,
                "SELECT count(*) FROM outbox WHERE published_at IS NULL"
            )
            .await,
        0,
        "published right after commit"
    );
    let prod1: i32 = sqlx::query_scalar("SELECT available FROM stock WHERE product_id = 'prod1'")
        .fetch_one(&stack.inventory_db)
        .await
        .unwrap();
    assert_eq!(prod1, 1_000_000 - 2);

    // The record carries the trace context in its headers.
    let published = records(
        &stack.brokers,
        order_contract::topics::ORDER_EVENTS,
        1,
        Duration::from_secs(5),
    );
    assert_eq!(published.len(), 1);
    let headers_cx = tracing_common::rdkafka::extract(rdkafka::Message::headers(&published[0]));
    use opentelemetry::trace::TraceContextExt;
    assert_eq!(headers_cx.span().span_context().trace_id(), trace_id);

    // The trace of the order flow (README), as far as these three services go.
    let spans = capture().wait_for(
        trace_id,
        Duration::from_secs(10),
        has_span("process inventory-events"),
    );
    let server = only(&spans, "POST /orders");
    assert_eq!(server.span_kind, SpanKind::Server);
    assert_eq!(server.parent_span_id, parent_span);
    assert_eq!(attr_str(server, "http.route").as_deref(), Some("/orders"));
    assert_eq!(attr_i64(server, "http.response.status_code"), Some(201));
    assert_attribute_types(&spans);
    assert!(
        server
            .events
            .iter()
            .any(|e| e.name == "order_created_successfully")
    );

    // The order flow's tree (order_contract::trace::ORDER_TRACE, the one
    // tracectl verify checks), as far as these three services go: every span
    // is there, with its kind, under its parent.
    for e in ORDER_TRACE.iter().filter(|e| {
        e.service != services::API_GATEWAY
            && e.parent.is_some_and(|(s, _)| s != services::API_GATEWAY)
    }) {
        let (_, parent) = e.parent.unwrap();
        let named = spans_named(&spans, e.name);
        assert!(!named.is_empty(), "{} is in the trace", e.name);
        for span in named {
            assert_eq!(span.span_kind, kind_of(e.kind), "{}", e.name);
            assert!(
                spans_named(&spans, parent)
                    .iter()
                    .any(|p| is_child_of(span, p)),
                "{} is a child of {parent}",
                e.name
            );
        }
    }

    for step in [
        "validate-order",
        "fetch-user-data",
        "check-inventory",
        "create-order-db",
        "publish-order-event",
    ] {
        let span = only(&spans, step);
        assert_eq!(span.span_kind, SpanKind::Internal, "{step}");
        assert!(
            is_child_of(span, server),
            "{step} is a child of the server span"
        );
        assert_eq!(span.status, Status::Unset, "{step}");
    }

    let fetch = only(&spans, "fetch-user-data");
    let get = only(&spans, "GET");
    assert_eq!(get.span_kind, SpanKind::Client);
    assert!(is_child_of(get, fetch));
    let user_server = only(&spans, "GET /users/{id}");
    assert!(is_child_of(user_server, get));
    assert!(is_child_of(only(&spans, "SELECT users"), user_server));
    assert!(fetch.events.iter().any(|e| e.name == "user_retrieved"));

    let check = only(&spans, "check-inventory");
    let post = only(&spans, "POST");
    assert_eq!(post.span_kind, SpanKind::Client);
    assert!(is_child_of(post, check));
    let check_server = only(&spans, "POST /check");
    assert!(is_child_of(check_server, post));
    let select_stock = only(&spans, "SELECT stock");
    assert!(is_child_of(select_stock, check_server));
    // Baggage set by order-service reaches inventory-service's spans.
    assert_eq!(
        attr_str(select_stock, "user.id").as_deref(),
        Some("user123")
    );
    assert_eq!(
        attr_str(select_stock, "order.id").as_deref(),
        Some(order_id.as_str())
    );

    let create = only(&spans, "create-order-db");
    assert_eq!(create.span_kind, SpanKind::Internal);
    assert_eq!(
        attr_str(create, "db.system.name"),
        None,
        "database attributes belong on the CLIENT spans, not the INTERNAL step"
    );
    for insert in ["INSERT orders", "INSERT order_items", "INSERT outbox"] {
        let span = only(&spans, insert);
        assert_eq!(span.span_kind, SpanKind::Client, "{insert}");
        assert!(is_child_of(span, create), "{insert} inside create-order-db");
        assert_eq!(
            attr_str(span, "db.system.name").as_deref(),
            Some("postgresql")
        );
        let text = attr_str(span, "db.query.text").unwrap_or_default();
        assert!(
            !text.contains("user123") && !text.contains("2599"),
            "{insert}: no values in db.query.text: {text}"
        );
    }

    let publish = only(&spans, "publish-order-event");
    assert!(publish.events.iter().any(|e| e.name == "message_published"));
    let send = only(&spans, "send order-events");
    assert_eq!(send.span_kind, SpanKind::Producer);
    assert!(is_child_of(send, publish));
    assert_eq!(attr_str(send, "messaging.system").as_deref(), Some("kafka"));
    assert_eq!(
        attr_str(send, "messaging.destination.name").as_deref(),
        Some("order-events")
    );
    assert_eq!(
        attr_str(send, "messaging.kafka.message.key").as_deref(),
        Some(order_id.as_str())
    );
    assert_eq!(
        headers_cx.span().span_context().span_id(),
        send.span_context.span_id(),
        "the record's parent is the producer span"
    );

    let process = only(&spans, "process order-events");
    assert_eq!(process.span_kind, SpanKind::Consumer);
    assert!(is_child_of(process, send));
    assert!(
        process
            .links
            .iter()
            .any(|l| l.span_context.span_id() == send.span_context.span_id()),
        "the consumer span links to its producer"
    );
    assert_eq!(
        attr_str(process, "messaging.consumer.group.name").as_deref(),
        Some("inventory-service")
    );
    let reserve = only(&spans, "reserve-stock");
    assert!(is_child_of(reserve, process));
    assert_eq!(attr_str(reserve, "user.id").as_deref(), Some("user123"));
    let answer = only(&spans, "send inventory-events");
    assert_eq!(answer.span_kind, SpanKind::Producer);
    assert!(is_child_of(answer, process));
    let settle = only(&spans, "process inventory-events");
    assert_eq!(settle.span_kind, SpanKind::Consumer);
    assert!(is_child_of(settle, answer));
    assert_eq!(
        attr_str(settle, "order.id").as_deref(),
        Some(order_id.as_str())
    );
    assert!(
        spans_named(&spans, "UPDATE orders")
            .iter()
            .any(|u| is_child_of(u, settle)),
        "the settle update is a db span under the consumer"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_orders_get_clear_errors_and_write_and_publish_nothing() {
    let stack = spawn_stack(|_| {}).await;
    let seed = seed_order();
    let with = |path: &str, value: Value| {
        let mut body = seed.clone();
        let (head, tail) = path
            .split_once('.')
            .map_or((path, None), |(h, t)| (h, Some(t)));
        match tail {
            None => body[head] = value,
            Some(field) => body["items"][0][field] = value,
        }
        body.to_string()
    };
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("malformed JSON", "{\"userId\": ".into(), 400, "invalid_order"),
        ("not an object", "[1,2,3]".into(), 400, "invalid_order"),
        ("missing userId", json!({"items": seed["items"], "totalAmount": 67.48}).to_string(), 400, "invalid_order"),
        ("empty items", with("items", json!([])), 400, "invalid_order"),
        ("quantity zero", with("items.quantity", json!(0)), 400, "invalid_order"),
        ("absurd quantity", with("items.quantity", json!(1_000_000_000)), 400, "invalid_order"),
        ("negative price", with("items.price", json!(-25.99)), 400, "invalid_order"),
        ("three decimals", with("items.price", json!(25.999)), 400, "invalid_order"),
        ("price as string", with("items.price", json!("25.99")), 400, "invalid_order"),
        ("wrong total", with("totalAmount", json!(67.47)), 400, "invalid_order"),
        ("unknown user", with("userId", json!("nobody")), 422, "unknown_user"),
        (
            "out of stock",
            json!({"userId": "user123", "items": [{"productId": "prod3", "quantity": 1, "price": 10.00}], "totalAmount": 10.00}).to_string(),
            409,
            "insufficient_stock",
        ),
        ("oversized body", format!("{{\"userId\": \"{}\"}}", "x".repeat(70 * 1024)), 413, ""),
    ];
    for (what, body, want, code) in &cases {
        let (parent, trace_id, _) = traceparent();
        let response = stack
            .http
            .post(format!("{}/orders", stack.orders.url()))
            .header("content-type", "application/json")
            .header("traceparent", &parent)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), *want, "{what}");
        let text = response.text().await.unwrap();
        if !code.is_empty() {
            let body: Value = serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{what}: body is not JSON: {text:?}"));
            assert_eq!(body["success"], false, "{what}");
            assert_eq!(body["error"], *code, "{what}: {body}");
            assert!(
                body["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{what}: a message says why"
            );
        }
        if *want == 409 {
            let spans =
                capture().wait_for(trace_id, Duration::from_secs(5), has_span("POST /orders"));
            let check = only(&spans, "check-inventory");
            assert!(matches!(check.status, Status::Error { .. }), "{what}");
            assert_eq!(
                attr_str(check, "error.type").as_deref(),
                Some("insufficient_stock")
            );
            assert!(spans_named(&spans, "create-order-db").is_empty());
        }
        if *want == 400 && *what != "malformed JSON" {
            let spans =
                capture().wait_for(trace_id, Duration::from_secs(5), has_span("POST /orders"));
            let validate = only(&spans, "validate-order");
            assert!(matches!(validate.status, Status::Error { .. }), "{what}");
            assert!(spans_named(&spans, "fetch-user-data").is_empty(), "{what}");
        }
    }

    assert_eq!(
        stack
            .count(&stack.orders_db, "SELECT count(*) FROM orders")
            .await,
        0
    );
    assert_eq!(
        stack
            .count(&stack.orders_db, "SELECT count(*) FROM outbox")
            .await,
        0
    );
    assert_eq!(
        record_count(&stack.brokers, order_contract::topics::ORDER_EVENTS),
        0,
        "nothing published"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_with_the_same_idempotency_key_returns_the_same_order() {
    let stack = spawn_stack(|_| {}).await;
    let body = seed_order().to_string();
    let (first_status, first) = stack.post(&body, &[("idempotency-key", "retry-42")]).await;
    let (second_status, second) = stack.post(&body, &[("idempotency-key", "retry-42")]).await;
    assert_eq!((first_status, second_status), (201, 201));
    assert_eq!(first["orderId"], second["orderId"]);
    let (_, other) = stack.post(&body, &[("idempotency-key", "retry-43")]).await;
    assert_ne!(first["orderId"], other["orderId"]);

    assert_eq!(
        stack
            .count(&stack.orders_db, "SELECT count(*) FROM orders")
            .await,
        2
    );
    assert_eq!(
        stack
            .count(&stack.orders_db, "SELECT count(*) FROM outbox")
            .await,
        2
    );
    let (bad, _) = stack.post(&body, &[("idempotency-key", "")]).await;
    assert_eq!(bad, 400);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_accepted_while_kafka_is_down_is_published_later_in_its_original_trace() {
    let stack = spawn_stack(|config| {
        config.publish_wait = Duration::from_millis(1500);
        config.outbox_min_age = Duration::ZERO;
        config.outbox_interval = Duration::from_millis(300);
    })
    .await;
    stack.kafka.broker_down(1).unwrap();
    let (parent, trace_id, _) = traceparent();

    let started = Instant::now();
    let (status, body) = stack
        .post(&seed_order().to_string(), &[("traceparent", &parent)])
        .await;
    assert_eq!(
        status, 201,
        "the order is accepted while Kafka is down: {body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the request's wait for the acknowledgement is bounded"
    );
    let order_id = body["orderId"].as_str().unwrap().to_owned();
    assert_eq!(
        stack
            .count(
                &stack.orders_db,
                "SELECT count(*) FROM outbox WHERE published_at IS NULL"
            )
            .await,
        1,
        "the event waits in the outbox"
    );
    let spans = capture().wait_for(trace_id, Duration::from_secs(5), has_span("POST /orders"));
    let publish = only(&spans, "publish-order-event");
    assert!(matches!(publish.status, Status::Error { .. }));
    assert_eq!(attr_str(publish, "error.type").as_deref(), Some("timeout"));
    let publish_span = publish.span_context.span_id();

    // Keep the broker down for a few relay passes: nothing is lost meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stack.order_status(&order_id).await, "pending");
    stack.kafka.broker_up(1).unwrap();

    assert_eq!(
        stack
            .settled_status(&order_id, Duration::from_secs(30))
            .await,
        "confirmed"
    );
    assert_eq!(
        stack
            .count(
                &stack.orders_db,
                "SELECT count(*) FROM outbox WHERE published_at IS NULL"
            )
            .await,
        0
    );
    let prod1: i32 = sqlx::query_scalar("SELECT available FROM stock WHERE product_id = 'prod1'")
        .fetch_one(&stack.inventory_db)
        .await
        .unwrap();
    assert_eq!(prod1, 1_000_000 - 2, "reserved exactly once");

    // One send, never given up and made again: it waited through the
    // outage under the request's publish span, and says why it waited.
    let spans = capture().wait_for(
        trace_id,
        Duration::from_secs(10),
        has_span("process inventory-events"),
    );
    let sends = spans_named(&spans, "send order-events");
    assert_eq!(sends.len(), 1, "exactly one send of the event");
    assert_eq!(sends[0].status, Status::Unset);
    assert_eq!(
        sends[0].parent_span_id, publish_span,
        "the relay's send is a child of the request's publish span"
    );
    let waiting = sends[0]
        .events
        .iter()
        .find(|e| e.name == "send_waiting")
        .expect("the send says why it waits");
    assert!(
        waiting
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == "reason" && kv.value.as_str().contains("brokers up")),
        "{waiting:?}"
    );
    let process = spans_named(&spans, "process order-events");
    assert!(!process.is_empty());
    stack.stop().await;
}
