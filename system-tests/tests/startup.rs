//! Start-up against the real thing: the four service binaries started
//! before Postgres and before the Apache Kafka broker answer (both behind a
//! proxy that refuses connections), as happens on Kubernetes or in compose
//! without ordering. Each service stays alive, says what it waits for, retries
//! with backoff, and serves once its dependencies appear.

use testkit::env as common;

use std::time::{Duration, Instant};

use common::{Env, Setup, accepted, order_body};
use testkit::proxy::{Fault, Proxy};

const RETRY_LINE: &str = "cannot reach a dependency at start-up; retrying";

async fn get(env: &Env, port: u16, path: &str) -> Option<common::Answer> {
    env.send(env.http.get(format!("http://127.0.0.1:{port}{path}")))
        .await
}

fn log_of(env: &Env, service: &str) -> String {
    std::fs::read_to_string(env.log_dir.join(format!("{service}.log"))).unwrap_or_default()
}

/// The `attempt` numbers of the start-up retry lines in `log`.
fn attempts(log: &str) -> Vec<i64> {
    log.lines()
        .filter(|l| l.contains(RETRY_LINE))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["attempt"].as_i64().or(v["fields"]["attempt"].as_i64()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_started_before_postgres_and_the_broker_wait_then_serve() {
    let pg = Proxy::start(common::postgres_addr()).await.unwrap();
    pg.set(Fault::Refuse);
    let run = common::run_id();
    let server = common::postgres_server();
    let via_proxy = server.replace(&common::postgres_addr().to_string(), &pg.addr().to_string());
    assert_ne!(via_proxy, server, "DATABASE_URL must name host:port");
    let databases = ["users", "orders", "inventory"].map(|d| format!("{d}_test_{run}"));
    let mut setup = Setup::new();
    setup.kafka_via_proxy = true;
    setup.kafka_fault_at_start = Fault::Refuse;
    setup.wait_ready = false;
    for (service, db) in [
        ("user-service", &databases[0]),
        ("order-service", &databases[1]),
        ("inventory-service", &databases[2]),
    ] {
        setup = setup.env(service, "DATABASE_URL", format!("{via_proxy}/{db}"));
    }
    let mut env = setup.start("startup-before-deps").await;
    env.databases = databases;
    let with_db = [
        ("user-service", env.ports.users),
        ("order-service", env.ports.orders),
        ("inventory-service", env.ports.inventory),
    ];

    // Until Postgres answers: alive, not ready, retrying, and saying why.
    let waited = Instant::now();
    while waited.elapsed() < Duration::from_secs(30)
        && with_db
            .iter()
            .any(|(s, _)| attempts(&log_of(&env, s)).len() < 2)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut waiting = Vec::new();
    for (service, port) in with_db {
        let health = get(&env, port, "/healthz").await.expect("alive");
        let ready = get(&env, port, "/readyz").await.expect("answers");
        waiting.push((service, health.status, ready.status, ready.body.clone()));
    }
    let order_while_waiting = env.order(&order_body(0)).await.expect("an answer");
    for (service, health, ready, body) in &waiting {
        assert_eq!(*health, 200, "{service} /healthz while waiting");
        assert_eq!(*ready, 503, "{service} /readyz while waiting");
        let reason = body["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("database") && reason.contains("attempt"),
            "{service}: {body}"
        );
    }
    assert_eq!(
        order_while_waiting.status, 503,
        "{:?}",
        order_while_waiting.body
    );
    assert_eq!(
        order_while_waiting.body["error"], "starting",
        "the error envelope: {:?}",
        order_while_waiting.body
    );
    for (service, _) in with_db {
        let seen = attempts(&log_of(&env, service));
        assert!(
            seen.len() >= 2 && seen.windows(2).all(|w| w[1] == w[0] + 1),
            "{service} logs each attempt: {seen:?}"
        );
    }

    // Postgres appears: every service becomes ready, the broker still away.
    pg.set(Fault::None);
    let appeared = Instant::now();
    let mut ready_after = Vec::new();
    for (service, port) in with_db {
        loop {
            if get(&env, port, "/readyz")
                .await
                .is_some_and(|a| a.status == 200)
            {
                ready_after.push((service, appeared.elapsed()));
                break;
            }
            assert!(
                appeared.elapsed() < Duration::from_secs(60),
                "{service} not ready 60 s after Postgres appeared; log:\n{}",
                log_of(&env, service)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let orders_ready = get(&env, env.ports.orders, "/readyz").await.unwrap();
    let accepted_without_broker = env.order(&order_body(1)).await.expect("an answer");

    // The broker appears: the order's event leaves the outbox and settles.
    env.kafka_proxy.as_ref().unwrap().set(Fault::None);
    let ids = accepted(&[Some(accepted_without_broker.clone())]);
    let settled = env.settle(&ids, Duration::from_secs(90)).await;

    println!(
        "start-up before dependencies:\n  attempts while Postgres was refused: {:?}\n  \
         ready after Postgres appeared: {ready_after:?}\n  order-service /readyz with the \
         broker away: {} {}\n  order with the broker away: {}\n  settled once it appeared: \
         {settled:?}",
        with_db.map(|(s, _)| (s, attempts(&log_of(&env, s)).len())),
        orders_ready.status,
        orders_ready.body,
        accepted_without_broker.status,
    );
    assert_eq!(orders_ready.status, 200, "{}", orders_ready.body);
    assert!(
        orders_ready.body["kafka"]
            .as_str()
            .is_some_and(|k| k.starts_with("unreachable")),
        "{}",
        orders_ready.body
    );
    assert_eq!(
        accepted_without_broker.status, 201,
        "{:?}",
        accepted_without_broker.body
    );
    assert_eq!(settled.get("confirmed"), Some(&1), "{settled:?}");
    env.finish().await;
}

#[tokio::test]
async fn a_configuration_error_stops_the_service_at_once_naming_the_variable() {
    for (service, variable, value) in [
        ("order-service", "DATABASE_URL", "mysql://nowhere/orders"),
        ("inventory-service", "DATABASE_URL", "not a url"),
        ("user-service", "PORT", "eighty"),
        ("order-service", "USER_SERVICE_URL", "user-service:3001"),
    ] {
        let started = Instant::now();
        let run = tokio::process::Command::new(common::bin_dir().join(service))
            .env(variable, value)
            .env("OTEL_TRACES_EXPORTER", "none")
            .env("PORT", if variable == "PORT" { value } else { "0" })
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .unwrap_or_else(|_| panic!("{service} with a bad {variable} kept running"))
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!output.status.success(), "{service}: {text}");
        assert!(
            text.contains(variable),
            "{service} names {variable}: {text}"
        );
        assert!(
            !text.contains(value) || variable != "DATABASE_URL",
            "{service} must not print the URL (it may hold a password): {text}"
        );
        println!(
            "{service} with {variable}={value:?}: exit {:?} after {:?}",
            output.status.code(),
            started.elapsed()
        );
    }
}
