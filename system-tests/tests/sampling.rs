//! Sampling across processes: the four service binaries, Apache Kafka and
//! the machine's Postgres, every span received by the project's OTLP
//! receiver. A trace is exported whole or not at all, and an unsampled
//! request still carries its trace id (sampled flag off) over every hop:
//! HTTP, the outbox row and the Kafka headers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use testkit::env::{Answer, Env, Setup, accepted, order_body};
use testkit::proxy::Recorder;
use tracectl::check::{ORDER_TRACE, problems};

const SERVICES: [&str; 4] = [
    "api-gateway",
    "user-service",
    "order-service",
    "inventory-service",
];

/// Every service with the same sampler.
fn sampled_by(sampler: &str, arg: &str) -> Setup {
    let mut setup = Setup::new();
    for service in SERVICES {
        setup = setup.env(service, "OTEL_TRACES_SAMPLER", sampler).env(
            service,
            "OTEL_TRACES_SAMPLER_ARG",
            arg,
        );
    }
    setup
}

async fn order(env: &Env, i: usize, traceparent: Option<&str>) -> Answer {
    let mut request = env
        .http
        .post(format!("{}/api/orders", env.gateway))
        .header("content-type", "application/json")
        .body(order_body(i));
    if let Some(tp) = traceparent {
        request = request.header("traceparent", tp);
    }
    let answer = env.send(request).await.expect("the gateway answers");
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    answer
}

fn sampled_flag(answer: &Answer) -> bool {
    let tp = answer
        .traceparent
        .as_deref()
        .expect("a traceparent answer header");
    tp.ends_with("-01")
}

/// `traceparent` values of every record of `topics`, keyed by record key.
fn kafka_traceparents(
    brokers: &str,
    topics: &[&str],
    want: usize,
) -> BTreeMap<String, Vec<String>> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("sampling-test-{}", testkit::env::run_id()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a Kafka consumer");
    consumer.subscribe(topics).expect("subscribed");
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while found.values().map(Vec::len).sum::<usize>() < want && Instant::now() < deadline {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        let tp = message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "traceparent"))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        found.entry(key).or_default().push(tp);
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_fifty_percent_ratio_every_trace_is_exported_whole_or_not_at_all() {
    let env = sampled_by("parentbased_traceidratio", "0.5")
        .start("sampling-half")
        .await;
    let store = env.receiver.store.clone();
    let mut answers = Vec::new();
    for i in 0..24 {
        answers.push(order(&env, i, None).await);
    }
    let ids = accepted(&answers.iter().cloned().map(Some).collect::<Vec<_>>());
    let settled = env.settle(&ids, Duration::from_secs(60)).await;
    assert_eq!(settled.get("confirmed"), Some(&24), "{settled:?}");
    // Stopping flushes every service's queue: what is not here now never left.
    env.finish().await;

    let (sampled, unsampled): (Vec<&Answer>, Vec<&Answer>) =
        answers.iter().partition(|a| sampled_flag(a));
    println!(
        "sampled {} of {} orders at 0.5",
        sampled.len(),
        answers.len()
    );
    // 24 fair coins: all on one side has a chance of 2^-23.
    assert!(!sampled.is_empty() && !unsampled.is_empty());
    for answer in &sampled {
        let trace_id = answer.trace_id.as_deref().unwrap();
        let trace = store.trace(trace_id);
        let missing = problems(&trace, ORDER_TRACE);
        assert!(
            missing.is_empty(),
            "sampled trace {trace_id} is not whole: {missing:?}\n{}",
            tracectl::waterfall::render(&trace)
        );
    }
    for answer in &unsampled {
        let trace_id = answer.trace_id.as_deref().unwrap();
        let spans = store.trace(trace_id).spans.len();
        assert_eq!(
            spans, 0,
            "unsampled trace {trace_id} exported {spans} spans"
        );
    }
    // No orphan: every exported span belongs to a sampled order's trace.
    let sampled_ids: Vec<&str> = sampled
        .iter()
        .filter_map(|a| a.trace_id.as_deref())
        .collect();
    let orphans: Vec<String> = store
        .spans()
        .into_iter()
        .filter(|s| !sampled_ids.contains(&s.trace_id.as_str()))
        .map(|s| format!("{} {} ({})", s.service, s.name, s.trace_id))
        .collect();
    assert!(
        orphans.is_empty(),
        "spans outside the sampled traces: {orphans:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_sampled_flag_is_honoured_everywhere_both_ways() {
    // Roots are never sampled here, so only the caller's flag can make a trace.
    let users = Recorder::start().await.unwrap();
    let inventory = Recorder::start().await.unwrap();
    let env = sampled_by("parentbased_traceidratio", "0")
        .env("order-service", "USER_SERVICE_URL", users.url())
        .env("order-service", "INVENTORY_SERVICE_URL", inventory.url())
        .start("sampling-flag")
        .await;
    users.forward_to(([127, 0, 0, 1], env.ports.users).into());
    inventory.forward_to(([127, 0, 0, 1], env.ports.inventory).into());
    let store = env.receiver.store.clone();

    let off = "4bf92f3577b34da6a3ce929d0e0e4736";
    let on = "0af7651916cd43dd8448eb211c80319c";
    let unsampled = order(&env, 0, Some(&format!("00-{off}-00f067aa0ba902b7-00"))).await;
    let sampled = order(&env, 1, Some(&format!("00-{on}-b7ad6b7169203331-01"))).await;
    let rootless = order(&env, 2, None).await;
    assert_eq!(
        unsampled.trace_id.as_deref(),
        Some(off),
        "the caller's trace continues"
    );
    assert!(!sampled_flag(&unsampled));
    assert_eq!(sampled.trace_id.as_deref(), Some(on));
    assert!(sampled_flag(&sampled));
    assert!(!sampled_flag(&rootless));
    let order_id = |a: &Answer| a.body["orderId"].as_str().unwrap().to_owned();
    let ids = accepted(&[
        Some(unsampled.clone()),
        Some(sampled.clone()),
        Some(rootless.clone()),
    ]);
    let settled = env.settle(&ids, Duration::from_secs(60)).await;
    assert_eq!(settled.get("confirmed"), Some(&3), "{settled:?}");

    // The unsampled trace id, flag off, over every hop: order-service's calls
    // to user- and inventory-service, the outbox row, both topics' headers.
    let sent_users = users.sent();
    let sent_inventory = inventory.sent();
    for (hop, sent) in [
        ("user-service", &sent_users),
        ("inventory-service", &sent_inventory),
    ] {
        let line = sent
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("traceparent:") && l.contains(off))
            .unwrap_or_else(|| panic!("order-service called {hop} without trace {off}:\n{sent}"));
        assert!(line.trim_end().ends_with("-00"), "{hop}: {line}");
        let sampled_line = sent
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("traceparent:") && l.contains(on))
            .unwrap_or_else(|| panic!("order-service called {hop} without trace {on}"));
        assert!(
            sampled_line.trim_end().ends_with("-01"),
            "{hop}: {sampled_line}"
        );
        // The order's baggage goes along whether the trace is sampled or not.
        let header = |name: &str| {
            sent.lines()
                .filter(|l| l.to_ascii_lowercase().starts_with(name))
                .count()
        };
        let with_baggage = sent
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("baggage:") && l.contains("order.id="))
            .count();
        assert_eq!(
            (with_baggage, header("traceparent:")),
            (3, 3),
            "{hop}: one call per order, each with the order's baggage:\n{sent}"
        );
    }
    let outbox: Vec<(String, String)> =
        sqlx::query_as("SELECT message_key, trace_context::text FROM outbox")
            .fetch_all(&env.orders_db().await)
            .await
            .unwrap();
    let stored = outbox
        .iter()
        .find(|(key, _)| *key == order_id(&unsampled))
        .map(|(_, cx)| cx.clone())
        .expect("the unsampled order's outbox row");
    assert!(
        stored.contains(&format!("00-{off}-")) && stored.contains("-00\""),
        "{stored}"
    );
    let headers = kafka_traceparents(&env.brokers, order_contract::topics::ALL, 6);
    let of_unsampled = &headers[&order_id(&unsampled)];
    assert_eq!(
        of_unsampled.len(),
        2,
        "one record per topic: {of_unsampled:?}"
    );
    for tp in of_unsampled {
        assert!(tp.contains(off) && tp.ends_with("-00"), "{tp}");
    }
    for tp in &headers[&order_id(&sampled)] {
        assert!(tp.contains(on) && tp.ends_with("-01"), "{tp}");
    }
    env.finish().await;

    // Nothing exported for the unsampled or rootless orders; the sampled one whole.
    let trace = store.trace(on);
    // The caller's span (b7ad…) is the gateway span's parent and not ours to export.
    let missing: Vec<String> = problems(&trace, ORDER_TRACE)
        .into_iter()
        .filter(|p| !p.contains("has parent b7ad6b7169203331"))
        .collect();
    assert!(
        missing.is_empty(),
        "{missing:?}\n{}",
        tracectl::waterfall::render(&trace)
    );
    let others: Vec<String> = store
        .spans()
        .into_iter()
        .filter(|s| s.trace_id != on)
        .map(|s| format!("{} {} ({})", s.service, s.name, s.trace_id))
        .collect();
    assert!(
        others.is_empty(),
        "spans of unsampled requests were exported: {others:?}"
    );
}
