//! A consumer killed mid-batch and restarted.

use super::*;

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
