//! Duplicate, out-of-order and garbage events on both topics.

use super::*;

/// Record headers: name and raw value.
type Headers<'a> = Vec<(&'a str, &'a [u8])>;

/// Produces `payload` with `headers` to `topic` on the test's broker.
async fn produce(env: &Env, topic: &str, key: &str, payload: &[u8], headers: &[(&str, &[u8])]) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &env.brokers)
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap();
    let mut h = OwnedHeaders::new();
    for (k, v) in headers {
        h = h.insert(Header {
            key: k,
            value: Some(*v),
        });
    }
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(payload).headers(h),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_out_of_order_and_garbage_events_change_nothing_and_consumers_keep_going() {
    let env = Setup::new().start("events").await;
    let first = orders(&env, 3, 3).await;
    let ids = accepted(&first);
    assert_eq!(
        env.settle(&ids, Duration::from_secs(60))
            .await
            .get("confirmed"),
        Some(&3)
    );
    let inventory = env.inventory_db().await;
    let count = |sql: &'static str| {
        let db = inventory.clone();
        async move {
            let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&db).await.unwrap();
            n
        }
    };
    let reservations_before = count("SELECT count(*) FROM reservations").await;

    // 1. The first order's event, delivered twice more.
    let orders_db = env.orders_db().await;
    let (payload,): (serde_json::Value,) =
        sqlx::query_as("SELECT payload FROM outbox WHERE message_key = $1")
            .bind(ids[0].to_string())
            .fetch_one(&orders_db)
            .await
            .unwrap();
    let bytes = serde_json::to_vec(&payload).unwrap();
    for _ in 0..2 {
        produce(&env, "order-events", &ids[0].to_string(), &bytes, &[]).await;
    }
    // 2. Out of order: a rejection arriving after the order was confirmed,
    //    and a decision about an order that does not exist.
    let late = serde_json::json!({"eventId": uuid::Uuid::new_v4(), "orderId": ids[1], "type": "stock-rejected", "reason": "late"});
    let unknown = serde_json::json!({"eventId": uuid::Uuid::new_v4(), "orderId": uuid::Uuid::new_v4(), "type": "stock-reserved"});
    for event in [&late, &unknown] {
        produce(
            &env,
            "inventory-events",
            "k",
            &serde_json::to_vec(event).unwrap(),
            &[],
        )
        .await;
    }
    // 3. Garbage on both topics, with garbage trace headers.
    let long = vec![b'x'; 10_000];
    let garbage: [(&[u8], Headers); 5] = [
        (b"not json at all", vec![("traceparent", b"garbage")]),
        (b"", vec![("traceparent", &[0xff, 0xfe, 0x00])]),
        (b"{}", vec![("baggage", long.as_slice())]),
        (br#"{"eventId": 7, "orderId": [], "items": "x"}"#, vec![]),
        (
            br#"{"eventId":"00000000-0000-0000-0000-000000000001","orderId":"00000000-0000-0000-0000-000000000002","type":"stock-stolen"}"#,
            vec![("traceparent", b"00-00000000000000000000000000000000-0000000000000000-01")],
        ),
    ];
    for topic in order_contract::topics::ALL {
        for (payload, headers) in &garbage {
            produce(&env, topic, "garbage", payload, headers).await;
        }
    }
    // 4. A real order afterwards still goes through both consumers.
    let after = orders(&env, 1, 1).await;
    let after_ids = accepted(&after);
    let settled = env.settle(&after_ids, Duration::from_secs(60)).await;

    let (status_1,): (String,) = sqlx::query_as("SELECT status FROM orders WHERE id = $1")
        .bind(ids[1])
        .fetch_one(&orders_db)
        .await
        .unwrap();
    let (orders_total,): (i64,) = sqlx::query_as("SELECT count(*) FROM orders")
        .fetch_one(&orders_db)
        .await
        .unwrap();
    let reservations_after = count("SELECT count(*) FROM reservations").await;
    let mismatch = env.reservation_mismatch().await;
    // Every garbage record gets a consumer span saying why it was skipped.
    let skipped_in = |spans: &[tracectl::model::Span], service: &str| {
        spans
            .iter()
            .filter(|s| {
                s.service == service
                    && s.kind == Kind::Consumer
                    && s.error.as_deref() == Some("invalid_message")
            })
            .count()
    };
    let spans = env
        .receiver
        .store
        .wait_spans(Duration::from_secs(15), |spans| {
            skipped_in(spans, "inventory-service") >= garbage.len()
                && skipped_in(spans, "order-service") >= garbage.len()
        })
        .await;
    let skipped = |service: &str| skipped_in(&spans, service);
    let duplicates = spans
        .iter()
        .filter(|s| {
            s.name == "reserve-stock" && s.events.iter().any(|e| e == "duplicate_event_skipped")
        })
        .count();
    report(
        "duplicate, out-of-order and garbage events",
        &[
            ("duplicate order events sent", "2".into()),
            ("answered as duplicates", duplicates.to_string()),
            (
                "reservation rows before/after",
                format!("{reservations_before}/{reservations_after}"),
            ),
            ("late rejection: order status", status_1.clone()),
            ("orders in database", orders_total.to_string()),
            ("garbage records per topic", garbage.len().to_string()),
            (
                "skipped with a span (inventory, order)",
                format!(
                    "{}, {}",
                    skipped("inventory-service"),
                    skipped("order-service")
                ),
            ),
            ("order placed afterwards", format!("{settled:?}")),
        ],
    );
    assert_eq!(duplicates, 2);
    assert_eq!(
        reservations_after,
        reservations_before + 2,
        "only the new order reserves"
    );
    assert!(mismatch.is_empty(), "{mismatch:?}");
    assert_eq!(
        status_1, "confirmed",
        "a late rejection does not undo a confirmation"
    );
    assert_eq!(
        orders_total, 4,
        "an event about an unknown order creates nothing"
    );
    assert_eq!(skipped("inventory-service"), garbage.len());
    assert_eq!(skipped("order-service"), garbage.len());
    assert_eq!(settled.get("confirmed"), Some(&1), "{settled:?}");
    inventory.close().await;
    orders_db.close().await;
    env.finish().await;
}
