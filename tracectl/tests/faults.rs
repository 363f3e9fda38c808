//! Faults against the real thing: the four service binaries, an Apache
//! Kafka broker of each test's own, the machine's Postgres and an OTLP receiver. Each test
//! injects one fault, prints what it sent and what came of it, and checks
//! that nothing was lost, nothing done twice, nothing hung and nothing leaked.

use testkit::env as common;

use std::time::{Duration, Instant};

use common::{Env, Setup, accepted, order_body, orders, statuses};
use testkit::process;
use testkit::proxy::{Fault, Proxy};
use tracectl::model::Kind;

fn report(fault: &str, figures: &[(&str, String)]) {
    let line: Vec<String> = figures.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("FAULT {fault}: {}", line.join(", "));
}

/// The `spans_lost` figure of the last JSON log line that has one (the
/// shutdown line, when spans were lost).
fn last_logged_lost(log: &str) -> Option<u64> {
    log.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v["spans_lost"].as_u64())
}

fn p(latencies: &mut [Duration], pct: f64) -> Duration {
    latencies.sort_unstable();
    loadgen::request::percentile(latencies, pct).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_otlp_endpoint_leaves_requests_fast_and_memory_bounded() {
    const N: usize = 600;
    // Each export request gives up after this long: a request that waited for
    // the exporter would take at least as long.
    const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
    // The same load against a healthy receiver, then against a collector that
    // accepts connections and never answers.
    let mut slowest = Vec::new();
    let mut order_service_growth_kb = Vec::new();
    for hanging in [false, true] {
        let hole = Proxy::black_hole().await.unwrap();
        let mut setup = Setup::new();
        if hanging {
            setup.otlp_endpoint = Some(hole.url());
        }
        for service in tracectl::stack::SERVICES {
            setup = setup.env(
                service,
                "OTEL_EXPORTER_OTLP_TIMEOUT",
                EXPORT_TIMEOUT.as_millis().to_string(),
            );
        }
        let env = setup
            // A small queue so the bound is reached within this run.
            .env("api-gateway", "OTEL_BSP_MAX_QUEUE_SIZE", "256")
            .env("order-service", "OTEL_BSP_MAX_QUEUE_SIZE", "256")
            .start(if hanging { "otlp-hang" } else { "otlp-ok" })
            .await;
        // Warm-up, then memory after it.
        let _ = orders(&env, 20, 4).await;
        let rss = |env: &Env| -> Vec<(&'static str, u64)> {
            env.services
                .pids()
                .into_iter()
                .map(|(n, pid)| {
                    let kb = loadgen::procfs::memory_kb(pid)
                        .unwrap_or_else(|| panic!("{n}: memory not readable"));
                    (n, kb.0)
                })
                .collect()
        };
        let before = rss(&env);
        let answers = orders(&env, N, 4).await;
        let mut lat: Vec<Duration> = answers.iter().flatten().map(|a| a.elapsed).collect();
        let after = rss(&env);
        let ids = accepted(&answers);
        let settled = env.settle(&ids, Duration::from_secs(60)).await;
        let growth: Vec<String> = before
            .iter()
            .zip(&after)
            .map(|((n, b), (_, a))| format!("{n} {}→{} kB", b, a))
            .collect();
        report(
            if hanging {
                "OTLP endpoint hanging"
            } else {
                "OTLP endpoint healthy (baseline)"
            },
            &[
                ("sent", N.to_string()),
                ("answered", answers.iter().flatten().count().to_string()),
                ("accepted", ids.len().to_string()),
                ("settled", format!("{settled:?}")),
                ("p50", format!("{:?}", p(&mut lat, 50.0))),
                ("p99", format!("{:?}", p(&mut lat, 99.0))),
                ("slowest", format!("{:?}", lat.iter().max())),
                ("RSS", growth.join("; ")),
                (
                    "connections to the hanging endpoint",
                    hole.accepted().to_string(),
                ),
            ],
        );
        assert_eq!(ids.len(), N, "{:?}", statuses(&answers));
        assert_eq!(
            settled.get("confirmed").copied(),
            Some(N as i64),
            "{settled:?}"
        );
        let (_, b) = before.iter().find(|(n, _)| *n == "order-service").unwrap();
        let (_, a) = after.iter().find(|(n, _)| *n == "order-service").unwrap();
        order_service_growth_kb.push(a.saturating_sub(*b));
        slowest.push(lat.iter().max().copied().unwrap_or_default());
        if hanging {
            assert!(hole.accepted() > 0, "the services never tried to export");
            // Let the services flush what they can, then stop: the shutdown
            // must not hang on the endpoint either (bounded by its timeout).
            let started = Instant::now();
            let log_dir = env.log_dir.clone();
            env.finish().await;
            let mut lost = 0;
            for service in tracectl::stack::SERVICES {
                let stats = common::export_stats(&log_dir, service)
                    .unwrap_or_else(|| panic!("{service} wrote no stats file at shutdown"));
                // The shutdown log line reports the same count.
                let log = std::fs::read_to_string(log_dir.join(format!("{service}.log")))
                    .unwrap_or_default();
                if stats.lost() > 0 {
                    assert_eq!(
                        last_logged_lost(&log),
                        Some(stats.lost()),
                        "{service}: the log's count differs from the stats file's\n{log}"
                    );
                }
                lost += stats.lost();
            }
            report(
                "OTLP endpoint hanging, at shutdown",
                &[
                    ("stop took", format!("{:?}", started.elapsed())),
                    ("spans lost (counted and logged)", lost.to_string()),
                ],
            );
            assert!(lost > 0, "lost spans must be counted at shutdown");
        } else {
            env.finish().await;
        }
    }
    // order-service ends about 14 spans per order: N orders overflow its
    // 256-span queue many times over. Against a healthy endpoint its memory
    // grows with the orders (about 6 MB here: export buffers, pools); against
    // a hanging one the bounded queue drops what does not fit, and it grew
    // less (measured: -1 MB). With the queue made large enough to keep every
    // span (OTEL_BSP_MAX_QUEUE_SIZE=1000000) it grew 2.3 MB more than the
    // healthy run, which this bound catches.
    let [healthy, hanging] = order_service_growth_kb[..] else {
        unreachable!()
    };
    assert!(
        hanging < healthy + 1024,
        "order-service grew {hanging} kB against a hanging endpoint, {healthy} kB against a healthy one: the span queue is not bounded"
    );
    // Requests never wait for the exporter: none takes as long as one export
    // attempt (the latencies themselves are reported above, not compared: a
    // timed comparison fails on a busy machine without telling anything).
    assert!(
        slowest[1] < EXPORT_TIMEOUT,
        "slowest answer healthy {:?}, hanging {:?}: a request waited for the exporter",
        slowest[0],
        slowest[1]
    );
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_answers_503_writes_nothing_and_recovers() {
    let pg = Proxy::start(common::postgres_addr()).await.unwrap();
    let setup = Setup::new();
    let run = common::run_id();
    let orders_db = format!("orders_test_{run}");
    let server = common::postgres_server();
    let via_proxy = server.replace(&common::postgres_addr().to_string(), &pg.addr().to_string());
    assert_ne!(via_proxy, server, "DATABASE_URL must name host:port");
    let mut env = setup
        .env(
            "order-service",
            "DATABASE_URL",
            format!("{via_proxy}/{orders_db}"),
        )
        .start("postgres-down")
        .await;
    env.databases[1] = orders_db;
    let ok = env.order(&order_body(0)).await.unwrap();
    assert_eq!(ok.status, 201);
    let rows_before = env.order_count().await;

    pg.set(Fault::Refuse);
    let mut down = Vec::new();
    for i in 0..5 {
        down.push(env.order(&order_body(i)).await.unwrap());
    }
    let readyz = env
        .send(
            env.http
                .get(format!("http://127.0.0.1:{}/readyz", env.ports.orders)),
        )
        .await
        .unwrap();
    let lookup = env
        .send(env.http.get(format!(
            "{}/api/orders/{}",
            env.gateway,
            ok.body["orderId"].as_str().unwrap()
        )))
        .await
        .unwrap();
    let rows_during = env.order_count().await;

    pg.set(Fault::None);
    let recovered = Instant::now();
    let mut ready_again = None;
    while recovered.elapsed() < Duration::from_secs(30) {
        let r = env
            .send(
                env.http
                    .get(format!("http://127.0.0.1:{}/readyz", env.ports.orders)),
            )
            .await;
        if r.is_some_and(|r| r.status == 200) {
            ready_again = Some(recovered.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = env.order(&order_body(7)).await.unwrap();
    let after_id = accepted(&[Some(after.clone())]);
    let settled = env.settle(&after_id, Duration::from_secs(60)).await;
    let half = env.half_written_orders().await;
    report(
        "Postgres unreachable for order-service (connections cut and refused)",
        &[
            ("orders sent while down", down.len().to_string()),
            (
                "answers",
                format!("{:?}", down.iter().map(|a| a.status).collect::<Vec<_>>()),
            ),
            (
                "slowest",
                format!("{:?}", down.iter().map(|a| a.elapsed).max().unwrap()),
            ),
            ("readyz while down", readyz.status.to_string()),
            ("order lookup while down", lookup.status.to_string()),
            (
                "rows written while down",
                (rows_during - rows_before).to_string(),
            ),
            ("ready again after", format!("{ready_again:?}")),
            (
                "order after recovery",
                format!("{} {settled:?}", after.status),
            ),
            ("half-written orders", half.to_string()),
        ],
    );
    for a in &down {
        assert_eq!(a.status, 503, "{:?}", a.body);
        assert_eq!(a.body["error"], "database_unavailable", "{:?}", a.body);
        assert!(a.elapsed < Duration::from_secs(10), "{:?}", a.elapsed);
    }
    assert_eq!(readyz.status, 503);
    assert_eq!(lookup.status, 503);
    assert_eq!(rows_during, rows_before);
    assert!(
        ready_again.is_some(),
        "order-service never became ready again"
    );
    assert_eq!(after.status, 201, "{:?}", after.body);
    assert_eq!(settled.get("confirmed"), Some(&1), "{settled:?}");
    assert_eq!(half, 0);
    // The failed request's trace says why.
    let trace = env
        .receiver
        .store
        .wait_for(
            down[0].trace_id.as_deref().unwrap(),
            Duration::from_secs(10),
            |t| t.spans.iter().any(|s| s.name == "create-order-db"),
        )
        .await;
    let says_why = trace.spans.iter().any(|s| {
        s.error.is_some()
            && s.event_attributes.iter().any(|(e, k, v)| {
                e == "exception" && k == "exception.type" && v == "database_unavailable"
            })
    });
    assert!(says_why, "{}", tracectl::waterfall::render(&trace));
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_or_dead_downstream_is_answered_within_the_budget_and_the_span_says_why() {
    // The proxies listen first (order-service is told their addresses) and
    // forward once the services behind them have their ports.
    let users = Proxy::start_on("127.0.0.1:0", None).await.unwrap();
    let inventory = Proxy::start_on("127.0.0.1:0", None).await.unwrap();
    let env = Setup::new()
        .env("order-service", "USER_SERVICE_URL", users.url())
        .env("order-service", "INVENTORY_SERVICE_URL", inventory.url())
        .env("order-service", "HTTP_CLIENT_TIMEOUT_MS", "500")
        .start("downstream")
        .await;
    users.forward_to(([127, 0, 0, 1], env.ports.users).into());
    inventory.forward_to(([127, 0, 0, 1], env.ports.inventory).into());
    let rows_before = env.order_count().await;

    // user-service hangs: order-service's budget is 500 ms.
    users.set(Fault::Hang);
    let slow = env.order(&order_body(0)).await.unwrap();
    users.set(Fault::Refuse);
    let dead = env.order(&order_body(1)).await.unwrap();
    users.set(Fault::None);
    let rows_after_user_faults = env.order_count().await;

    // inventory-service unreachable for the stock check: accepted, and the
    // reservation (over Kafka) decides.
    inventory.set(Fault::Refuse);
    let unchecked = env.order(&order_body(2)).await.unwrap();
    inventory.set(Fault::None);
    let ids = accepted(&[Some(unchecked.clone())]);
    let settled = env.settle(&ids, Duration::from_secs(60)).await;
    report(
        "downstream slow or down",
        &[
            (
                "user-service hanging",
                format!("{} in {:?}", slow.status, slow.elapsed),
            ),
            (
                "user-service refusing",
                format!("{} in {:?}", dead.status, dead.elapsed),
            ),
            (
                "orders written by those",
                (rows_after_user_faults - rows_before).to_string(),
            ),
            (
                "inventory-service refusing",
                format!(
                    "{} in {:?}, then {settled:?}",
                    unchecked.status, unchecked.elapsed
                ),
            ),
        ],
    );
    for a in [&slow, &dead] {
        assert_eq!(a.status, 503, "{:?}", a.body);
        assert_eq!(a.body["error"], "dependency_unavailable", "{:?}", a.body);
    }
    assert!(
        slow.elapsed < Duration::from_millis(2500),
        "{:?}",
        slow.elapsed
    );
    assert_eq!(rows_after_user_faults, rows_before);
    assert_eq!(unchecked.status, 201);
    assert_eq!(settled.get("confirmed"), Some(&1), "{settled:?}");

    let span_of = |trace_id: &Option<String>, name: &'static str| {
        let store = env.receiver.store.clone();
        let id = trace_id.clone().unwrap();
        async move {
            let t = store
                .wait_for(&id, Duration::from_secs(10), |t| {
                    t.spans.iter().any(|s| s.name == name)
                })
                .await;
            t.spans.into_iter().find(|s| s.name == name).unwrap()
        }
    };
    assert_eq!(
        span_of(&slow.trace_id, "fetch-user-data")
            .await
            .error
            .as_deref(),
        Some("timeout")
    );
    let refused = span_of(&dead.trace_id, "fetch-user-data").await.error;
    assert!(
        refused.as_deref().is_some_and(|e| e != "timeout"),
        "{refused:?}"
    );
    let check = span_of(&unchecked.trace_id, "check-inventory").await;
    assert!(check.error.is_some(), "{check:?}");
    assert!(
        check
            .events
            .iter()
            .any(|e| e == "inventory_service_unreachable"),
        "{check:?}"
    );
    // The warning logged inside that span carries its trace and span ids.
    let log = std::fs::read_to_string(env.log_dir.join("order-service.log")).unwrap();
    let warning: serde_json::Value = log
        .lines()
        .filter(|l| l.contains("inventory check failed"))
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|v: &serde_json::Value| v["trace_id"] == check.trace_id.as_str())
        .unwrap_or_else(|| panic!("no warning with trace {} in:\n{log}", check.trace_id));
    assert_eq!(warning["span_id"], check.span_id.as_str(), "{warning}");
    env.finish().await;
}

/// Every order in the orders database (answered or not: a service killed
/// after its commit leaves an order nobody heard about), then how they
/// settled, how many events inventory-service processed and whether any
/// stock was reserved twice. Asserts that all settled within `within`,
/// each was processed once, and stock matches the reservations.
async fn assert_all_settle_once(
    env: &Env,
    fault: &str,
    mut figures: Vec<(&str, String)>,
    within: Duration,
) {
    let orders = env.orders_db().await;
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM orders")
        .fetch_all(&orders)
        .await
        .unwrap();
    orders.close().await;
    let recovered = Instant::now();
    let settled = env.settle(&ids, within).await;
    let settled_in = recovered.elapsed();
    let inventory = env.inventory_db().await;
    let (processed,): (i64,) = sqlx::query_as("SELECT count(*) FROM processed_events")
        .fetch_one(&inventory)
        .await
        .unwrap();
    let (reservation_rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM reservations")
        .fetch_one(&inventory)
        .await
        .unwrap();
    inventory.close().await;
    let mismatch = env.reservation_mismatch().await;
    let confirmed = settled.get("confirmed").copied().unwrap_or(0);
    let lost =
        settled.get("pending").copied().unwrap_or(0) + settled.get("missing").copied().unwrap_or(0);
    figures.extend([
        ("orders stored", ids.len().to_string()),
        ("settled", format!("{settled:?}")),
        ("settled within", format!("{settled_in:.1?}")),
        ("lost", lost.to_string()),
        ("events processed", processed.to_string()),
        ("reservation rows", reservation_rows.to_string()),
        (
            "reserved twice (stock vs reservations)",
            format!("{mismatch:?}"),
        ),
    ]);
    if lost > 0 {
        for (group, topic) in [
            ("inventory-service", "order-events"),
            ("order-service", "inventory-events"),
        ] {
            figures.push((
                "committed/end",
                format!("{group} {topic} {:?}", env.kafka.lag(group, topic)),
            ));
        }
    }
    report(fault, &figures);
    assert_eq!(lost, 0, "every stored order settles: {settled:?}");
    assert_eq!(
        processed,
        ids.len() as i64,
        "each order's event is processed once"
    );
    assert_eq!(
        reservation_rows,
        2 * confirmed,
        "each confirmed order reserves its two products once"
    );
    assert!(mismatch.is_empty(), "{mismatch:?}");
}

/// Orders arrive while `service` works through them; it is SIGKILLed (no
/// shutdown, no offset commit) once a few have settled, then restarted.
async fn killed_mid_batch(service: &'static str) {
    const N: usize = 60;
    let mut env = Setup::new().start(&format!("kill-{service}")).await;
    let orders_db = env.orders_db().await;
    let settled = || async {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM orders WHERE status <> 'pending'")
            .fetch_one(&orders_db)
            .await
            .unwrap();
        n
    };
    let env_ref = &env;
    let (answers, at_kill) = tokio::join!(orders(env_ref, N, 4), async {
        let started = Instant::now();
        let mut n = 0;
        while started.elapsed() < Duration::from_secs(60) {
            n = settled().await;
            if n >= (N / 6) as i64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        process::signal(&env_ref.services, service, "KILL")
            .await
            .unwrap();
        n
    });
    orders_db.close().await;
    process::wait_exit(&mut env.services, service, Duration::from_secs(10))
        .await
        .unwrap();
    let ids = accepted(&answers);
    if service == "inventory-service" {
        // Orders placed while it is down are accepted without the stock
        // check; their events wait on the broker.
        assert_eq!(ids.len(), N, "{:?}", statuses(&answers));
    }
    assert!(
        at_kill < N as i64,
        "killed after {at_kill} of {N} settled: not mid-batch"
    );
    process::restart(&mut env.services, service, Duration::from_secs(60))
        .await
        .unwrap();
    assert_all_settle_once(
        &env,
        &format!("{service} SIGKILLed mid-batch, restarted (Apache Kafka)"),
        vec![
            ("orders sent", N.to_string()),
            ("answers", format!("{:?}", statuses(&answers))),
            ("accepted", ids.len().to_string()),
            ("settled when killed", at_kill.to_string()),
        ],
        Duration::from_secs(60),
    )
    .await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_service_killed_mid_batch_loses_nothing_and_reserves_nothing_twice() {
    killed_mid_batch("inventory-service").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_service_killed_mid_batch_loses_nothing_and_reserves_nothing_twice() {
    killed_mid_batch("order-service").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_finishes_in_flight_requests_and_flushes_their_spans() {
    const N: usize = 80;
    let mut env = Setup::new().start("sigterm").await;
    let _ = orders(&env, 8, 4).await;
    let env_ref = &env;
    // A wave of orders, 8 in flight at a time, with SIGTERM sent to
    // order-service once 16 of them have been answered: the wave is running,
    // and whether requests were inside order-service then is checked below
    // from their spans.
    let answered = std::sync::atomic::AtomicUsize::new(0);
    let answered = &answered;
    let wave = async {
        use futures::StreamExt;
        futures::stream::iter(0..N)
            .map(|i| async move {
                let a = env_ref.order(&order_body(i)).await;
                answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                a
            })
            .buffered(8)
            .collect::<Vec<_>>()
            .await
    };
    let (wave, (sent_term, term_at)) = tokio::join!(wave, async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while answered.load(std::sync::atomic::Ordering::Relaxed) < 16 && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let at = std::time::SystemTime::now();
        process::signal(&env_ref.services, "order-service", "TERM")
            .await
            .unwrap();
        (Instant::now(), at)
    });
    let term_ns = term_at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let exit = process::wait_exit(&mut env.services, "order-service", Duration::from_secs(20))
        .await
        .unwrap();
    let counts = statuses(&wave);
    let ids = accepted(&wave);
    // Every accepted order is in the database, whole, and its server span
    // reached the receiver before order-service exited.
    let db = env.orders_db().await;
    let (stored,): (i64,) = sqlx::query_as("SELECT count(*) FROM orders WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_one(&db)
        .await
        .unwrap();
    db.close().await;
    let half = env.half_written_orders().await;
    let mut without_span = 0;
    // Accepted orders whose order-service SERVER span began before the signal
    // and ended after it: requests in flight when TERM arrived.
    let mut in_flight_at_term = 0;
    for a in wave.iter().flatten().filter(|a| a.status == 201) {
        let t = env.receiver.store.trace(a.trace_id.as_deref().unwrap());
        match t
            .spans
            .iter()
            .find(|s| s.service == "order-service" && s.name == "POST /orders")
        {
            Some(s) => {
                in_flight_at_term +=
                    usize::from(s.start_ns < term_ns && s.start_ns + s.duration_ns > term_ns)
            }
            None => without_span += 1,
        }
    }
    let log = std::fs::read_to_string(env.log_dir.join("order-service.log")).unwrap();
    let shutdown = common::export_stats(&env.log_dir, "order-service")
        .expect("order-service wrote its stats file at shutdown");
    report(
        "SIGTERM to order-service under load (8 in flight)",
        &[
            ("sent", N.to_string()),
            ("answers", format!("{counts:?}")),
            ("accepted", ids.len().to_string()),
            ("accepted and stored", stored.to_string()),
            (
                "accepted without their server span",
                without_span.to_string(),
            ),
            (
                "accepted and in flight when TERM arrived",
                in_flight_at_term.to_string(),
            ),
            (
                "exit",
                format!("{exit:?} {:?} after TERM", sent_term.elapsed()),
            ),
            (
                "spans exported / lost at shutdown",
                format!("{} / {}", shutdown.exported, shutdown.lost()),
            ),
        ],
    );
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}");
    assert!(
        !counts.contains_key("none"),
        "the gateway answers every request: {counts:?}"
    );
    assert!(
        !ids.is_empty(),
        "no order finished before the stop: {counts:?}"
    );
    for status in counts.keys() {
        assert!(
            ["201", "502", "503"].contains(&status.as_str()),
            "after the stop the gateway answers 502/503, not {status}: {counts:?}"
        );
    }
    assert_eq!(stored, ids.len() as i64);
    assert_eq!(half, 0);
    assert_eq!(without_span, 0);
    assert!(
        in_flight_at_term > 0,
        "no accepted request was inside order-service when TERM arrived"
    );
    assert_eq!(shutdown.lost(), 0, "{shutdown:?}\n{log}");
    process::restart(&mut env.services, "order-service", Duration::from_secs(60))
        .await
        .unwrap();
    env.finish().await;
}

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
    for topic in ["order-events", "inventory-events"] {
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
