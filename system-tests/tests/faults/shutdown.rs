//! SIGTERM under load.

use super::*;

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
        process::signal(&env_ref.services, "order-service", "TERM")
            .await
            .unwrap();
        // Taken once `kill` returned: the signal has been delivered.
        (Instant::now(), std::time::SystemTime::now())
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
