//! Postgres unreachable: 503, nothing half-written, recovery.

use super::*;

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
