//! The order flow on a three-node Apache Kafka cluster (`deploy/k8s-kafka-cluster`'s
//! settings: replication factor 3, `min.insync.replicas=2`, unclean leader
//! election off), under a steady order load while nodes and service
//! replicas are killed. Each test prints what was sent, accepted, settled,
//! lost and processed twice, the records per order on both topics, and the
//! longest gap between accepted orders.

use testkit::env as common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::{Answer, Env, Setup, order_body};
use order_contract::topics::{INVENTORY_EVENTS, ORDER_EVENTS};
use testkit::process;

/// Orders per second of the steady load.
const RATE: u64 = 5;

fn report(test: &str, figures: &[(&str, String)]) {
    println!("\n== {test}");
    for (k, v) in figures {
        println!("   {k:<44} {v}");
    }
}

/// One order of the load: when it was sent and answered, through which
/// gateway, and the answer (None when the gateway gave none).
struct Sent {
    at: Instant,
    answered: Instant,
    answer: Option<Answer>,
}

impl Sent {
    fn order_id(&self) -> Option<uuid::Uuid> {
        let a = self.answer.as_ref().filter(|a| a.status == 201)?;
        a.body["orderId"].as_str()?.parse().ok()
    }
}

/// Sends `RATE` orders a second for `duration`, each on time however long
/// the earlier ones take, to the gateway `gateway(i)` names; returns them in
/// the order sent.
async fn steady_load(
    http: &reqwest::Client,
    duration: Duration,
    gateway: impl Fn(Instant) -> String,
) -> Vec<Sent> {
    let start = Instant::now();
    let n = duration.as_millis() as u64 * RATE / 1000;
    let sends = (0..n).map(|i| {
        let at = start + Duration::from_millis(i * 1000 / RATE);
        let url = gateway(at);
        async move {
            tokio::time::sleep_until(at.into()).await;
            let answer = common::send(
                http.post(format!("{url}/api/orders"))
                    .header("content-type", "application/json")
                    .body(order_body(i as usize)),
            )
            .await;
            Sent {
                at,
                answered: Instant::now(),
                answer,
            }
        }
    });
    futures::future::join_all(sends).await
}

/// The longest time between two consecutive accepted orders' answers.
fn longest_gap(sent: &[Sent]) -> Duration {
    let mut times: Vec<Instant> = sent
        .iter()
        .filter(|s| s.order_id().is_some())
        .map(|s| s.answered)
        .collect();
    times.sort();
    times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}

/// Records per key (the order id) on `topic`.
fn records_per_order(env: &Env, topic: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for (key, _) in env.kafka.records(topic).expect("the topic reads") {
        *counts.entry(key).or_default() += 1;
    }
    counts
}

/// What every cluster test checks once the faults are over: every accepted
/// order settles; its event is on `order-events` once (or, for
/// `may_repeat`, at most twice) and processed once; its answer is on
/// `inventory-events` at least once. Prints the figures, returns the
/// settled statuses.
async fn assert_settled_once(
    env: &Env,
    test: &str,
    sent: &[Sent],
    may_repeat: &[uuid::Uuid],
    mut figures: Vec<(&str, String)>,
) -> BTreeMap<String, i64> {
    let ids: Vec<uuid::Uuid> = sent.iter().filter_map(Sent::order_id).collect();
    let started = Instant::now();
    let settled = env.settle(&ids, Duration::from_secs(120)).await;
    let settled_in = started.elapsed();
    let lost =
        settled.get("pending").copied().unwrap_or(0) + settled.get("missing").copied().unwrap_or(0);
    let order_events = records_per_order(env, ORDER_EVENTS);
    let inventory_events = records_per_order(env, INVENTORY_EVENTS);
    let count = |counts: &HashMap<String, usize>, id: &uuid::Uuid| {
        counts.get(&id.to_string()).copied().unwrap_or(0)
    };
    let sent_twice: Vec<&uuid::Uuid> = ids
        .iter()
        .filter(|id| count(&order_events, id) > 1)
        .collect();
    let unsent: Vec<&uuid::Uuid> = ids
        .iter()
        .filter(|id| count(&order_events, id) == 0)
        .collect();
    let answers_repeated = ids
        .iter()
        .filter(|id| count(&inventory_events, id) > 1)
        .count();
    let unanswered = ids
        .iter()
        .filter(|id| count(&inventory_events, id) == 0)
        .count();
    let reserved_twice = env.reservation_mismatch().await;
    let answers: BTreeMap<String, usize> = sent.iter().fold(BTreeMap::new(), |mut m, s| {
        let key = s
            .answer
            .as_ref()
            .map_or("none".to_owned(), |a| a.status.to_string());
        *m.entry(key).or_default() += 1;
        m
    });
    figures.splice(
        0..0,
        [
            ("sent", sent.len().to_string()),
            ("answers", format!("{answers:?}")),
            ("accepted", ids.len().to_string()),
            ("settled", format!("{settled:?} within {settled_in:.1?}")),
            ("lost", lost.to_string()),
            (
                "processed twice (stock taken twice)",
                format!("{}", reserved_twice.len()),
            ),
            (
                "order-events: orders with 2+ records",
                format!("{} (allowed: {})", sent_twice.len(), may_repeat.len()),
            ),
            (
                "inventory-events: orders answered 2+ times",
                answers_repeated.to_string(),
            ),
            (
                "longest gap between accepted orders",
                format!("{:.2?}", longest_gap(sent)),
            ),
            (
                "slowest accepted answer",
                format!(
                    "{:.2?}",
                    sent.iter()
                        .filter(|s| s.order_id().is_some())
                        .map(|s| s.answered - s.at)
                        .max()
                        .unwrap_or_default()
                ),
            ),
        ],
    );
    report(test, &figures);
    assert_eq!(lost, 0, "every accepted order settles: {settled:?}");
    assert!(
        reserved_twice.is_empty(),
        "no order reserved twice: {reserved_twice:?}"
    );
    assert!(unsent.is_empty(), "orders never published: {unsent:?}");
    assert_eq!(unanswered, 0, "every order answered on inventory-events");
    let unexpected: Vec<_> = sent_twice
        .iter()
        .filter(|id| !may_repeat.contains(id))
        .collect();
    assert!(
        unexpected.is_empty(),
        "events written twice: {unexpected:?}"
    );
    assert!(
        ids.iter().all(|id| count(&order_events, id) <= 2),
        "no event written three times"
    );
    settled
}

/// The spans of `trace_id` received so far, waiting (bounded) until one is
/// named `name`.
async fn wait_for_span(env: &Env, trace_id: &str, name: &str) -> Vec<tracectl::model::Span> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let spans = env.receiver.store.trace(trace_id).spans;
        if spans.iter().any(|s| s.name == name) || Instant::now() > deadline {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The whole order flow in one trace: the gateway's request, the send and
/// both consumers, each consumer a child of the send before it.
async fn assert_one_trace(env: &Env, answer: &Answer) {
    let trace_id = answer.trace_id.as_deref().expect("a traceparent answer");
    let spans = wait_for_span(env, trace_id, "process inventory-events").await;
    let named = |name: &str| spans.iter().filter(|s| s.name == name).collect::<Vec<_>>();
    let sends = named("send order-events");
    assert_eq!(
        sends.len(),
        1,
        "one send of the order's event in {trace_id}"
    );
    let process = named("process order-events");
    assert!(!process.is_empty(), "its consumer in {trace_id}");
    assert!(
        process
            .iter()
            .all(|p| p.parent_id.as_deref() == Some(sends[0].span_id.as_str())),
        "the consumer is a child of the send in {trace_id}"
    );
    assert!(
        !named("process inventory-events").is_empty(),
        "the settlement in {trace_id}"
    );
    assert!(
        !named("POST /api/orders").is_empty(),
        "the gateway in {trace_id}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_leader_then_the_controller_leader_killed_under_load_lose_no_order_and_write_each_event_once()
 {
    let mut env = Setup {
        kafka_nodes: 3,
        ..Setup::new()
    }
    .start("cluster-failover")
    .await;
    let partitions = env.kafka.partitions(ORDER_EVENTS).unwrap();
    assert!(
        partitions.iter().all(|&(_, _, replicas)| replicas == 3),
        "topics made with the cluster's replication factor: {partitions:?}"
    );
    let gateway = env.gateway.clone();
    let start = Instant::now();
    let at = |s: u64| start + Duration::from_secs(s);
    let kafka = &mut env.kafka;
    let (sent, (leader, controller)) = tokio::join!(
        steady_load(&env.http, Duration::from_secs(56), |_| gateway.clone()),
        async {
            tokio::time::sleep_until(at(8).into()).await;
            let (_, leader, _) = kafka.partitions(ORDER_EVENTS).unwrap()[0];
            kafka.kill_node(leader).await.unwrap();
            tokio::time::sleep_until(at(30).into()).await;
            kafka.restart_node(leader).await.unwrap();
            tokio::time::sleep_until(at(36).into()).await;
            let controller = kafka.controller_leader().unwrap();
            kafka.kill_node(controller).await.unwrap();
            tokio::time::sleep_until(at(48).into()).await;
            kafka.restart_node(controller).await.unwrap();
            (leader, controller)
        }
    );
    // With one node of three down and leadership moved, an order is as fast
    // as ever and its spans show nothing wrong.
    let one_down: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.at > at(8 + 15) && s.at < at(29))
        .collect();
    for s in &one_down {
        let answer = s.answer.as_ref().expect("an answer");
        assert_eq!(answer.status, 201, "{:?}", answer.body);
        assert!(
            answer.elapsed < Duration::from_secs(1),
            "{:?}",
            answer.elapsed
        );
        let trace_id = answer.trace_id.as_deref().unwrap();
        let spans = wait_for_span(&env, trace_id, "send order-events").await;
        let publish = spans.iter().find(|s| s.name == "publish-order-event");
        assert!(
            publish.is_some_and(|p| p.error.is_none()),
            "publish-order-event without error in {trace_id}: {publish:?}"
        );
        let send = spans.iter().find(|s| s.name == "send order-events");
        assert!(
            send.is_some_and(|s| s.error.is_none() && !s.events.iter().any(|e| e == "send_waiting")),
            "send order-events without error or wait in {trace_id}: {send:?}"
        );
    }
    let gap = longest_gap(&sent);
    assert_settled_once(
        &env,
        "order-events partition leader SIGKILLed, restarted; then the controller leader (3-node Apache Kafka)",
        &sent,
        &[],
        vec![
            ("partition leader killed (8 s, back at 30 s)", format!("node {leader}")),
            ("controller leader killed (36 s, back at 48 s)", format!("node {controller}")),
            ("orders checked with one node down", one_down.len().to_string()),
        ],
    )
    .await;
    assert_eq!(
        sent.iter().filter(|s| s.order_id().is_some()).count(),
        sent.len(),
        "every order accepted through both failovers"
    );
    assert!(gap < Duration::from_secs(3), "longest gap {gap:?}");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_nodes_of_three_down_orders_wait_in_the_outbox_say_why_and_each_is_written_once() {
    let mut env = Setup {
        kafka_nodes: 3,
        ..Setup::new()
    }
    .start("cluster-two-down")
    .await;
    let warm_up = steady_load(&env.http, Duration::from_secs(1), |_| env.gateway.clone()).await;
    let ids: Vec<uuid::Uuid> = warm_up.iter().filter_map(Sent::order_id).collect();
    assert_eq!(
        env.settle(&ids, Duration::from_secs(60))
            .await
            .get("confirmed"),
        Some(&(ids.len() as i64)),
        "the flow works before the outage"
    );
    let down = [2, 3];
    for id in down {
        env.kafka.kill_node(id).await.unwrap();
    }
    // librdkafka sees the connections close at once; give its statistics a second.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = steady_load(&env.http, Duration::from_secs(4), |_| env.gateway.clone()).await;
    for s in &during {
        let answer = s.answer.as_ref().expect("an answer");
        assert_eq!(
            answer.status, 201,
            "accepted into the outbox: {:?}",
            answer.body
        );
        assert!(
            answer.elapsed < Duration::from_secs(3),
            "the request waits a bounded time: {:?}",
            answer.elapsed
        );
    }
    let restarting = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    for id in down {
        env.kafka.restart_node(id).await.unwrap();
    }
    assert_settled_once(
        &env,
        "two nodes of three SIGKILLed (min.insync.replicas not met), then restarted",
        &during,
        &[],
        vec![("nodes down", format!("{down:?}"))],
    )
    .await;
    // Each order's spans say why its event waited: the request's publish
    // span says what the producer knew when it stopped waiting; a send made
    // during the outage kept on and says the same. (Rows the relay reached
    // only after the restart, its passes all waiting, were sent at once.)
    let mut sent_during_outage = 0;
    for s in &during {
        let answer = s.answer.as_ref().unwrap();
        let trace_id = answer.trace_id.as_deref().unwrap();
        let spans = wait_for_span(&env, trace_id, "send order-events").await;
        let publish = spans
            .iter()
            .find(|s| s.name == "publish-order-event")
            .expect("the publish span");
        assert_eq!(publish.error.as_deref(), Some("timeout"), "{publish:?}");
        assert!(
            publish
                .event_attributes
                .iter()
                .any(|(_, _, v)| v.contains("brokers up; last error:")),
            "{publish:?}"
        );
        let send = spans
            .iter()
            .find(|s| s.name == "send order-events")
            .expect("the send, ended once acknowledged");
        assert!(send.error.is_none(), "{send:?}");
        assert_one_trace(&env, answer).await;
        if send.start_ns > restarting {
            continue;
        }
        sent_during_outage += 1;
        let reason = send
            .event_attributes
            .iter()
            .find(|(event, key, _)| event == "send_waiting" && key == "reason")
            .map(|(_, _, v)| v.as_str());
        assert!(
            reason.is_some_and(|r| r.contains("brokers up; last error:")),
            "the send says why it waits: {reason:?}"
        );
    }
    assert!(
        sent_during_outage > 0,
        "some sends waited through the outage"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_of_order_and_inventory_service_share_one_cluster_and_survive_one_of_each_killed()
 {
    let mut env = Setup {
        kafka_nodes: 3,
        ..Setup::new()
    }
    .start("cluster-replicas")
    .await;
    let stats = |name: &str| {
        (
            tracing_common::config::STATS_FILE_VARIABLE,
            env.log_dir
                .join(format!("{name}.stats.json"))
                .display()
                .to_string(),
        )
    };
    let url = |port: u16| format!("http://127.0.0.1:{port}");
    let inventory2 = env
        .services
        .add_replica("inventory-service", &[stats("inventory-service-2")])
        .await
        .unwrap();
    let orders2 = env
        .services
        .add_replica(
            "order-service",
            &[
                stats("order-service-2"),
                ("INVENTORY_SERVICE_URL", url(inventory2)),
            ],
        )
        .await
        .unwrap();
    let gateway2 = url(env
        .services
        .add_replica(
            "api-gateway",
            &[
                stats("api-gateway-2"),
                ("ORDER_SERVICE_URL", url(orders2)),
                ("INVENTORY_SERVICE_URL", url(inventory2)),
            ],
        )
        .await
        .unwrap());
    for port in [inventory2, orders2] {
        wait_ready(&env.http, &url(port)).await;
    }
    // Both lanes work (each consumer group has settled its members) before
    // the load starts.
    let mut warm_up = Vec::new();
    for gateway in [&env.gateway, &gateway2] {
        warm_up.extend(steady_load(&env.http, Duration::from_secs(1), |_| gateway.clone()).await);
    }
    let ids: Vec<uuid::Uuid> = warm_up.iter().filter_map(Sent::order_id).collect();
    assert_eq!(
        env.settle(&ids, Duration::from_secs(90))
            .await
            .get("confirmed"),
        Some(&(warm_up.len() as i64)),
        "both lanes work before the load"
    );
    let orders_db = env.orders_db().await;
    let start = Instant::now();
    let kill_at = start + Duration::from_secs(15);
    let gateway1 = env.gateway.clone();
    let services = &env.services;
    // Both replicas take orders until one of each is killed; then the
    // survivors take them all (as a Service does once its endpoints change).
    let (sent, killed_at) = tokio::join!(
        steady_load(&env.http, Duration::from_secs(40), |at| {
            let lane = (at - start).as_millis() / 200 % 2;
            if at < kill_at && lane == 0 {
                gateway1.clone()
            } else {
                gateway2.clone()
            }
        }),
        async {
            tokio::time::sleep_until(kill_at.into()).await;
            // The database's clock, as text: the outbox's times are its.
            let (now,): (String,) = sqlx::query_as("SELECT now()::text")
                .fetch_one(&orders_db)
                .await
                .unwrap();
            process::signal(services, "order-service", "KILL")
                .await
                .unwrap();
            process::signal(services, "inventory-service", "KILL")
                .await
                .unwrap();
            now
        }
    );
    // Only a row the killed relay had in flight (acknowledged by Kafka, not
    // yet marked) may be sent again, by the survivor, after the kill.
    let in_flight: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT o.id FROM orders o JOIN outbox x ON x.message_key = o.id::text \
         WHERE x.created_at < $1::timestamptz AND x.published_at >= $1::timestamptz",
    )
    .bind(&killed_at)
    .fetch_all(&orders_db)
    .await
    .unwrap();
    assert_settled_once(
        &env,
        "2 order-service + 2 inventory-service on 3-node Apache Kafka; one of each SIGKILLed at 15 s",
        &sent,
        &in_flight,
        vec![
            ("rows the killed relay had in flight", in_flight.len().to_string()),
        ],
    )
    .await;
    let after_kill = Instant::now() - start;
    assert!(after_kill > Duration::from_secs(15));
    // Orders placed after the kill are each one whole trace, through the
    // survivors; so are orders settled well before it, through either.
    let (settled_before,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM orders WHERE updated_at < $1::timestamptz - interval '2 seconds' \
         AND status <> 'pending' AND id <> ALL($2)",
    )
    .bind(&killed_at)
    .bind(&ids)
    .fetch_one(&orders_db)
    .await
    .unwrap();
    assert!(
        settled_before > 10,
        "orders settled before the kill: {settled_before}"
    );
    for s in sent.iter().filter(|s| s.order_id().is_some()) {
        let early = s.answered + Duration::from_secs(3) < kill_at;
        if s.at > kill_at || early {
            assert_one_trace(&env, s.answer.as_ref().unwrap()).await;
        }
    }
    orders_db.close().await;
    env.finish().await;
}

async fn wait_ready(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "{base} not ready within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
