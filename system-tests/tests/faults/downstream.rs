//! A slow or dead downstream service, answered within the budget.

use super::*;

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
