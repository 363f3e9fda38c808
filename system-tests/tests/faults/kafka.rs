//! Apache Kafka unreachable, frozen and killed while orders arrive.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_accepted_while_kafka_is_unreachable_all_settle_once_it_returns() {
    const N: usize = 20;
    let mut setup = Setup::new();
    setup.kafka_via_proxy = true;
    let env = setup
        .env("order-service", "KAFKA_PUBLISH_WAIT_MS", "1000")
        .env("order-service", "OUTBOX_RELAY_INTERVAL_MS", "500")
        .env("order-service", "OUTBOX_RELAY_MIN_AGE_MS", "1500")
        .start("kafka-outage")
        .await;
    let before = orders(&env, 3, 3).await;
    let first = accepted(&before);
    assert_eq!(
        env.settle(&first, Duration::from_secs(60))
            .await
            .get("confirmed"),
        Some(&3)
    );

    let proxy = env.kafka_proxy.as_ref().unwrap();
    proxy.set(Fault::Refuse);
    let during = orders(&env, N, 4).await;
    let ids = accepted(&during);
    let max_latency = during.iter().flatten().map(|a| a.elapsed).max().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still: i64 = env
        .settle(&ids, Duration::ZERO)
        .await
        .get("pending")
        .copied()
        .unwrap_or(0);
    let outage = Instant::now();
    proxy.set(Fault::None);
    let settled = env.settle(&ids, Duration::from_secs(90)).await;
    let mismatch = env.reservation_mismatch().await;
    report(
        "Kafka unreachable for ~5 s (connections cut and refused), then back",
        &[
            ("sent during outage", N.to_string()),
            ("answered", during.iter().flatten().count().to_string()),
            ("accepted", ids.len().to_string()),
            ("slowest answer", format!("{max_latency:?}")),
            ("pending when the broker returned", still.to_string()),
            ("settled", format!("{settled:?}")),
            ("settled within", format!("{:?}", outage.elapsed())),
            (
                "lost",
                settled
                    .get("pending")
                    .or(settled.get("missing"))
                    .copied()
                    .unwrap_or(0)
                    .to_string(),
            ),
            (
                "reserved twice (stock vs reservations)",
                format!("{mismatch:?}"),
            ),
        ],
    );
    assert_eq!(ids.len(), N, "{:?}", statuses(&during));
    assert!(max_latency < Duration::from_secs(5), "{max_latency:?}");
    assert_eq!(
        still, N as i64,
        "nothing can settle while the broker is away"
    );
    assert_eq!(
        settled.get("confirmed").copied(),
        Some(N as i64),
        "{settled:?}"
    );
    assert!(mismatch.is_empty(), "{mismatch:?}");
    // The relay's late publish joins each order's original trace.
    let trace_id = during[0].as_ref().unwrap().trace_id.clone().unwrap();
    let trace = env
        .receiver
        .store
        .wait_for(&trace_id, Duration::from_secs(20), |t| {
            t.spans.iter().any(|s| s.name == "process inventory-events")
        })
        .await;
    assert!(
        trace
            .spans
            .iter()
            .any(|s| s.kind == Kind::Producer && s.error.is_none()),
        "{}",
        tracectl::waterfall::render(&trace)
    );
    env.finish().await;
}

/// What happens to the broker while orders arrive.
#[derive(Clone, Copy, Debug)]
enum Outage {
    /// SIGSTOP for 20 s, then SIGCONT: connections stay open, nothing answers.
    Frozen,
    /// SIGKILL, and 20 s later started again on its data directory.
    Killed,
}

async fn broker_outage(outage: Outage) {
    const N: usize = 20;
    let mut env = Setup::new().start(&format!("broker-{outage:?}")).await;
    let before = accepted(&orders(&env, 3, 3).await);
    assert_eq!(
        env.settle(&before, Duration::from_secs(60))
            .await
            .get("confirmed"),
        Some(&3),
        "the flow works before the outage"
    );
    match outage {
        Outage::Frozen => env.kafka.freeze().await.unwrap(),
        Outage::Killed => env.kafka.kill().await.unwrap(),
    }
    let down = Instant::now();
    // One order a second for the outage's 20 s, each sent on time however
    // long the earlier ones take.
    let env_ref = &env;
    let (during, readiness) = tokio::join!(
        futures::future::join_all((0..N).map(|i| async move {
            tokio::time::sleep_until((down + Duration::from_secs(i as u64)).into()).await;
            env_ref.order(&order_body(i)).await
        })),
        async {
            // Probes while the broker is away, as a kubelet's would come.
            tokio::time::sleep(Duration::from_secs(5)).await;
            readiness_timings(env_ref, 10).await
        }
    );
    tokio::time::sleep_until((down + Duration::from_secs(N as u64)).into()).await;
    let slowest = during
        .iter()
        .flatten()
        .map(|a| a.elapsed)
        .max()
        .unwrap_or_default();
    match outage {
        Outage::Frozen => env.kafka.thaw().await.unwrap(),
        Outage::Killed => env.kafka.restart().await.unwrap(),
    }
    let outage_lasted = down.elapsed();
    let ids = accepted(&during);
    assert_all_settle_once(
        &env,
        &format!("broker {outage:?} (Apache Kafka) while orders arrive, then back"),
        vec![
            ("outage", format!("{outage_lasted:.1?}")),
            ("sent during outage", N.to_string()),
            ("answers", format!("{:?}", statuses(&during))),
            ("accepted", ids.len().to_string()),
            ("slowest answer", format!("{slowest:.1?}")),
            ("/readyz during the outage", readiness.report.clone()),
        ],
        Duration::from_secs(60),
    )
    .await;
    // A probe never waits on the broker: it answers from what the
    // long-lived clients know, and stays ready (events wait in the outbox).
    assert!(
        readiness.all_ready,
        "ready while the broker is away: {}",
        readiness.report
    );
    assert!(
        readiness.slowest < Duration::from_millis(100),
        "/readyz answers within 100 ms: {}",
        readiness.report
    );
    // The outbox keeps the broker out of the request path.
    assert_eq!(ids.len(), N, "{:?}", statuses(&during));
    assert!(slowest < Duration::from_secs(10), "{slowest:?}");
    env.finish().await;
}

/// What [`readiness_timings`] saw.
struct Readiness {
    all_ready: bool,
    slowest: Duration,
    report: String,
}

/// `rounds` probes of order- and inventory-service's `/readyz`, 300 ms apart.
async fn readiness_timings(env: &Env, rounds: usize) -> Readiness {
    let mut times = Vec::new();
    let mut all_ready = true;
    let mut kafka = Vec::new();
    for _ in 0..rounds {
        for port in [env.ports.orders, env.ports.inventory] {
            let started = Instant::now();
            let answer = env
                .send(env.http.get(format!("http://127.0.0.1:{port}/readyz")))
                .await;
            times.push(started.elapsed());
            all_ready &= answer.as_ref().is_some_and(|a| a.status == 200);
            if let Some(state) = answer.as_ref().and_then(|a| a.body["kafka"].as_str()) {
                kafka.push(state.split(';').next().unwrap_or_default().to_owned());
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    times.sort();
    kafka.dedup();
    let slowest = times.last().copied().unwrap_or_default();
    Readiness {
        all_ready,
        slowest,
        report: format!(
            "{} probes, median {:.1?}, slowest {slowest:.1?}; kafka: {kafka:?}",
            times.len(),
            times[times.len() / 2],
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_broker_delays_orders_but_loses_none() {
    broker_outage(Outage::Frozen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_and_restarted_on_its_data_loses_no_order() {
    broker_outage(Outage::Killed).await;
}
