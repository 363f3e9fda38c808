//! End to end: the four service binaries as separate processes, an Apache
//! Kafka broker, the machine's Postgres and an OTLP receiver. The seed's
//! order must produce exactly the trace of the order flow (README, "The order
//! flow and its trace"; `tracectl::check::ORDER_TRACE`).

use testkit::env as common;

use std::time::Duration;

use common::{Setup, postgres_server};

use tracectl::model::{Kind, Trace};
use tracectl::stack;

fn only<'a>(trace: &'a Trace, service: &str, name: &str) -> &'a tracectl::model::Span {
    let found: Vec<_> = trace
        .spans
        .iter()
        .filter(|s| s.service == service && s.name == name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {service} {name:?} expected in\n{}",
        tracectl::waterfall::render(trace)
    );
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_order_is_one_trace_across_four_processes_postgres_and_kafka() {
    let env = Setup::new().start("e2e").await;
    let (receiver, gateway) = (&env.receiver, env.gateway.clone());
    let databases = env.databases.clone();

    // 1. The seed's order: created, confirmed, and the whole tree in one trace.
    let run = testkit::seed::seed_order(&gateway, &receiver.store, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        run.placed.status == 201 && run.status == "confirmed" && run.problems.is_empty(),
        "the seed's order differs from the order flow's trace: {}",
        run.report()
    );
    assert_eq!(run.placed.body["status"], "pending");
    let (trace, order_id) = (&run.trace, &run.order_id);
    // Exactly the order flow's spans, nothing else: ORDER_TRACE names each
    // span of the flow once; the seed's two items add a second stock update
    // and the reservations, and each consumer records the event it processed
    // (inventory-service also stores its answer there).
    let mut received: Vec<(String, &str, String)> = trace
        .spans
        .iter()
        .map(|s| (s.service.clone(), s.kind.label(), s.name.clone()))
        .collect();
    let per_seed = [
        ("inventory-service", "UPDATE stock"),
        ("inventory-service", "INSERT reservations"),
        ("inventory-service", "INSERT reservations"),
        ("inventory-service", "INSERT processed_events"),
        ("inventory-service", "UPDATE processed_events"),
        ("order-service", "INSERT processed_events"),
    ];
    let mut expected: Vec<(String, &str, String)> = tracectl::check::ORDER_TRACE
        .iter()
        .map(|e| {
            (
                e.service.to_owned(),
                Kind::from(e.kind).label(),
                e.name.to_owned(),
            )
        })
        .chain(
            per_seed
                .iter()
                .map(|(service, name)| ((*service).to_owned(), "CLIENT", (*name).to_owned())),
        )
        .collect();
    received.sort_unstable();
    expected.sort_unstable();
    assert_eq!(
        received,
        expected,
        "the seed's trace is not exactly the order flow's\n{}",
        tracectl::waterfall::render(trace)
    );
    let trace_id = trace.trace_id.clone();
    assert_eq!(
        trace.services(),
        [
            "api-gateway",
            "inventory-service",
            "order-service",
            "user-service"
        ]
    );
    let root = only(trace, "api-gateway", "POST /api/orders");
    assert_eq!(root.attr("http.response.status_code"), Some("201"));
    assert_eq!(root.attr("http.route"), Some("/api/orders"));
    let send = only(trace, "order-service", "send order-events");
    assert_eq!(send.attr("messaging.system"), Some("kafka"));
    assert_eq!(
        send.attr("messaging.kafka.message.key"),
        Some(order_id.as_str())
    );
    let reserve = only(trace, "inventory-service", "reserve-stock");
    assert_eq!(reserve.attr("order.id"), Some(order_id.as_str()));
    assert_eq!(
        reserve.attr("user.id"),
        Some("user123"),
        "baggage crossed Kafka"
    );
    assert!(trace.spans.iter().all(|s| s.error.is_none()));
    // No span from another trace claims this order.
    let strays = receiver
        .store
        .spans()
        .into_iter()
        .filter(|s| s.trace_id != trace_id && s.attr("order.id") == Some(order_id.as_str()))
        .count();
    assert_eq!(strays, 0, "every span of the order is in its one trace");

    // 2. prod3 is out of stock: 409 at once, the check says why, nothing written.
    let out_of_stock = r#"{"userId":"user123","items":[{"productId":"prod3","quantity":1,"price":10.00}],"totalAmount":10.00}"#;
    let refused = stack::place_order(&gateway, out_of_stock).await.unwrap();
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(refused.body["error"], "insufficient_stock");
    let refused_trace = receiver
        .store
        .wait_quiet(
            refused.trace_id.as_deref().unwrap(),
            Duration::from_millis(800),
            Duration::from_secs(10),
        )
        .await;
    let check = only(&refused_trace, "order-service", "check-inventory");
    assert_eq!(check.error.as_deref(), Some("insufficient_stock"));
    assert!(
        !refused_trace
            .spans
            .iter()
            .any(|s| s.name == "create-order-db" || s.name.starts_with("INSERT")),
        "nothing written for a refused order"
    );
    let orders_db = format!("{}/{}", postgres_server(), databases[1]);
    let pool = sqlx::PgPool::connect(&orders_db).await.unwrap();
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(orders, 1, "only the seed's order is in the orders database");
    pool.close().await;

    // 3. A user lookup: gateway -> user-service -> Postgres, with the event;
    //    sent with credentials and a cookie, which must reach no span or log.
    let response = reqwest::Client::new()
        .get(format!(
            "{gateway}/api/users/user123?session=s3cr3t-query-value"
        ))
        .header("authorization", "Bearer s3cr3t-token")
        .header("cookie", "session=s3cr3t-cookie")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let lookup_id = response.headers()["traceparent"]
        .to_str()
        .unwrap()
        .split('-')
        .nth(1)
        .unwrap()
        .to_owned();
    let lookup = receiver
        .store
        .wait_for(&lookup_id, Duration::from_secs(10), |t| t.spans.len() >= 4)
        .await;
    let edge = only(&lookup, "api-gateway", "GET /api/users/{id}");
    assert!(edge.parent_id.is_none());
    let client = only(&lookup, "api-gateway", "GET");
    assert_eq!(client.kind, Kind::Client);
    assert_eq!(client.parent_id.as_deref(), Some(edge.span_id.as_str()));
    let server = only(&lookup, "user-service", "GET /users/{id}");
    assert_eq!(server.parent_id.as_deref(), Some(client.span_id.as_str()));
    assert!(server.events.iter().any(|e| e == "user_retrieved"));
    let db = only(&lookup, "user-service", "SELECT users");
    assert_eq!(db.parent_id.as_deref(), Some(server.span_id.as_str()));
    assert_eq!(db.attr("db.system.name"), Some("postgresql"));

    // 4. Nothing exported or logged carries the credentials, cookie or query
    //    string sent above; `finish` then stops the services (SIGTERM, none
    //    may need a kill) and scans every span and log line for personal
    //    data, secrets and query values.
    let spans = receiver.store.spans();
    let mut everything = format!("{spans:?}");
    for (_, path) in env.services.logs() {
        everything.push_str(&std::fs::read_to_string(path).unwrap_or_default());
    }
    for secret in ["s3cr3t-token", "s3cr3t-cookie", "s3cr3t-query-value"] {
        assert!(
            !everything.contains(secret),
            "{secret} was exported or logged"
        );
    }
    println!("SCAN: {} spans and the four logs checked", spans.len());
    env.finish().await;
}
