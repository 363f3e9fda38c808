//! Jaeger storing traces in Apache Cassandra (`deploy/jaeger/cassandra.yaml`
//! given after `deploy/jaeger/config.yaml`, as the compose profile and
//! `deploy/k8s-cassandra/` run it), with a node of the test's own: the order
//! flow read back whole through the v3 and v1 APIs, after a restart of
//! Jaeger, through a second Jaeger sharing the store, and a Cassandra frozen
//! under load costing neither requests nor spans.

use std::time::{Duration, Instant};

use testkit::cassandra::Cassandra;
use testkit::env::{Env, Scratch, Setup, export_stats, order_body, tracectl, try_tracectl};
use testkit::jaeger::{Jaeger, JaegerOptions, deploy_dir};
use testkit::otlp::OlderJaeger;

/// `tracectl verify` against `jaeger`: the seed's order placed and its
/// trace checked edge by edge; returns its trace id.
async fn verify(env: &Env, jaeger: &str) -> String {
    let out = tracectl(&[
        "verify",
        "--gateway",
        &env.gateway,
        "--jaeger",
        jaeger,
        "--timeout",
        "90",
    ])
    .await;
    println!("tracectl verify:\n{out}");
    assert!(out.contains("verified: "), "{out}");
    out.lines()
        .find_map(|l| l.split("waiting for trace ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no trace id in:\n{out}"))
        .to_owned()
}

/// `tracectl show`'s rows (without Jaeger's clock-skew notes).
async fn show(trace_id: &str, jaeger: &str) -> String {
    tracectl(&["show", trace_id, "--jaeger", jaeger])
        .await
        .lines()
        .filter(|l| !l.starts_with("  backend note: "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The receiver's copy of what the services sent, rendered as `show` does
/// (whole microseconds for the v1 API).
async fn sent(env: &Env, trace_id: &str, whole_micros: bool) -> String {
    let mut trace = env
        .receiver
        .store
        .wait_quiet(trace_id, Duration::from_secs(1), Duration::from_secs(20))
        .await;
    if whole_micros {
        for span in &mut trace.spans {
            span.start_ns -= span.start_ns % 1000;
            span.duration_ns -= span.duration_ns % 1000;
        }
    }
    tracectl::waterfall::render(&trace)
        .lines()
        .filter(|l| !l.starts_with("  backend note: "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The repository's Jaeger config with the Cassandra override, on `node`.
fn on_cassandra(node: &Cassandra) -> JaegerOptions {
    JaegerOptions {
        extra_configs: vec![deploy_dir().join("jaeger/cassandra.yaml")],
        env: vec![("JAEGER_CASSANDRA_SERVERS".into(), node.servers())],
        ..JaegerOptions::default()
    }
}

/// A counter of Jaeger's own metrics (summed over its series), 0 if absent.
async fn jaeger_metric(http: &reqwest::Client, jaeger: &Jaeger, name: &str) -> f64 {
    let text = match http.get(jaeger.metrics_url()).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => return 0.0,
    };
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits (at most `within`) until every span Jaeger accepted is written to
/// the store or counted as failed: its storage queue and retries are done.
async fn accounted_for(http: &reqwest::Client, jaeger: &Jaeger, within: Duration) {
    let started = Instant::now();
    loop {
        let mut left = jaeger_metric(http, jaeger, "otelcol_receiver_accepted_spans_total").await;
        for done in [
            "otelcol_exporter_sent_spans_total",
            "otelcol_exporter_send_failed_spans_total",
            "otelcol_exporter_enqueue_failed_spans_total",
        ] {
            left -= jaeger_metric(http, jaeger, done).await;
        }
        if left == 0.0 {
            return;
        }
        assert!(
            started.elapsed() < within,
            "{left} spans Jaeger accepted are neither written nor counted as failed after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_trace_is_read_back_whole_from_cassandra_through_both_apis_and_after_jaeger_restarts()
 {
    let dir = Scratch::new("cassandra-store");
    let started = Instant::now();
    let node = Cassandra::start(&dir).await.expect("Cassandra starts");
    let cassandra_ready = started.elapsed();
    let mut env = Setup {
        jaeger: Some(on_cassandra(&node)),
        ..Setup::new()
    }
    .start("cassandra-store")
    .await;
    let query = env.jaeger.as_ref().unwrap().query_url();

    let trace_id = verify(&env, &query).await;
    let through_v3 = show(&trace_id, &query).await;
    assert_eq!(
        through_v3,
        // Jaeger's Cassandra schema keeps times in whole microseconds.
        sent(&env, &trace_id, true).await,
        "Cassandra's copy (v3 API) differs from what the services sent"
    );
    let older = OlderJaeger::start(&query).await.unwrap();
    assert_eq!(
        show(&trace_id, &older.url()).await,
        sent(&env, &trace_id, true).await,
        "Cassandra's copy (v1 API) differs from what the services sent"
    );

    let jaeger = env.jaeger.as_mut().unwrap();
    let stopping = Instant::now();
    jaeger.stop().await.unwrap();
    jaeger.restart().await.unwrap();
    let restart = stopping.elapsed();
    let after = show(&trace_id, &query).await;
    assert_eq!(
        after, through_v3,
        "the trace changed across a restart of Jaeger"
    );
    let (rss_kb, disk) = node.usage().await.unwrap();
    println!(
        "\n== Jaeger on Cassandra: Cassandra ready in {cassandra_ready:.1?}; Jaeger stopped and healthy again in {restart:.1?}; \
         the trace ({} rows) unchanged; Cassandra resident {} MiB, on disk {:.1} MiB",
        after.lines().count(),
        rss_kb / 1024,
        disk as f64 / 1048576.0
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_jaegers_share_one_cassandra_and_each_reads_the_whole_trace_the_other_half_wrote() {
    let dir = Scratch::new("cassandra-two-jaegers");
    let node = Cassandra::start(&dir).await.expect("Cassandra starts");
    let options = on_cassandra(&node);
    let second = Jaeger::start(&dir.join("jaeger-b"), &options)
        .await
        .expect("the second Jaeger starts");
    // The gateway and user-service export to the first Jaeger (through the
    // test's tee); order- and inventory-service to the second.
    let env = Setup {
        jaeger: Some(options),
        ..Setup::new()
    }
    .env(
        "order-service",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        second.otlp_grpc_endpoint(),
    )
    .env(
        "inventory-service",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        second.otlp_grpc_endpoint(),
    )
    .start("cassandra-two-jaegers")
    .await;
    let first = env.jaeger.as_ref().unwrap().query_url();
    let trace_id = verify(&env, &first).await;
    let through_first = show(&trace_id, &first).await;
    let services: Vec<&str> = [
        "api-gateway",
        "user-service",
        "order-service",
        "inventory-service",
    ]
    .into_iter()
    .filter(|s| through_first.contains(s))
    .collect();
    assert_eq!(services.len(), 4, "all four services in:\n{through_first}");
    let through_second = show(&trace_id, &second.query_url()).await;
    assert_eq!(
        through_second, through_first,
        "the two Jaegers read different traces from one store"
    );
    println!(
        "\n== two Jaegers on one Cassandra: trace {trace_id} ({} rows) whole and identical through either",
        through_first.lines().count()
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cassandra_frozen_for_20_s_under_load_costs_no_request_and_no_span() {
    const SECONDS: u64 = 40;
    const FROZEN_AT: u64 = 10;
    const FROZEN_FOR: u64 = 20;
    let dir = Scratch::new("cassandra-outage");
    let node = Cassandra::start(&dir).await.expect("Cassandra starts");
    let env = Setup {
        jaeger: Some(on_cassandra(&node)),
        ..Setup::new()
    }
    .start("cassandra-outage")
    .await;
    let jaeger = env.jaeger.as_ref().unwrap();
    let failed_before = jaeger_metric(
        &env.http,
        jaeger,
        "otelcol_exporter_send_failed_spans_total",
    )
    .await;
    let start = Instant::now();
    let env_ref = &env;
    // Two orders a second, each on time however long the earlier ones take.
    let load = futures::future::join_all((0..SECONDS * 2).map(|i| async move {
        tokio::time::sleep_until((start + Duration::from_millis(i * 500)).into()).await;
        env_ref.order(&order_body(i as usize)).await
    }));
    let health = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let outage = async {
        tokio::time::sleep_until((start + Duration::from_secs(FROZEN_AT)).into()).await;
        node.freeze().await.unwrap();
        // Jaeger's health endpoint (what compose and k8s probe) keeps answering.
        let mut unhealthy = 0;
        while start.elapsed() < Duration::from_secs(FROZEN_AT + FROZEN_FOR) {
            let ok = health
                .get(jaeger.health_url())
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            unhealthy += usize::from(!ok);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        node.thaw().await.unwrap();
        unhealthy
    };
    let (answers, unhealthy) = tokio::join!(load, outage);
    let slowest = answers
        .iter()
        .flatten()
        .map(|a| a.elapsed)
        .max()
        .unwrap_or_default();
    let accepted = answers.iter().flatten().filter(|a| a.status == 201).count();
    // After the outage Jaeger's storage queue works off what waited in it
    // (deploy/jaeger/cassandra.yaml: queue and retry_on_failure), bounded.
    let load_ended = Instant::now();
    let metric = |name: &'static str| jaeger_metric(&env.http, jaeger, name);
    accounted_for(&env.http, jaeger, Duration::from_secs(180)).await;
    let drained = load_ended.elapsed();
    // Then a new order's trace is stored whole and read back.
    let query = jaeger.query_url();
    let (recovered, out, err) = try_tracectl(&[
        "verify",
        "--gateway",
        &env.gateway,
        "--jaeger",
        &query,
        "--timeout",
        "60",
    ])
    .await;
    // Every span Jaeger accepted was written or counted as failed.
    accounted_for(&env.http, jaeger, Duration::from_secs(30)).await;
    let received = metric("otelcol_receiver_accepted_spans_total").await;
    let refused = metric("otelcol_receiver_refused_spans_total").await;
    let written = metric("otelcol_exporter_sent_spans_total").await;
    let failed_total = metric("otelcol_exporter_send_failed_spans_total").await;
    let failed = failed_total - failed_before;
    let not_queued = metric("otelcol_exporter_enqueue_failed_spans_total").await;
    let logs = env.finish().await;
    let log_dir: &std::path::Path = &logs;
    let lost: Vec<(String, u64, u64)> = tracectl::stack::SERVICES
        .iter()
        .map(|s| {
            let stats = export_stats(log_dir, s).expect("each service wrote its export stats");
            ((*s).to_owned(), stats.ended, stats.lost())
        })
        .collect();
    let services_lost: u64 = lost.iter().map(|(_, _, l)| l).sum();
    println!(
        "\n== Cassandra frozen {FROZEN_FOR} s under 2 orders/s: orders {} sent, {accepted} accepted, slowest {slowest:.1?}; \
         Jaeger unhealthy probes {unhealthy}, every span written or counted {drained:.1?} after the load ended, a new trace stored whole: {recovered}; \
         Jaeger spans received {received}, refused {refused}, written {written}, failed after retries {failed}, not queued {not_queued}; \
         services (ended, lost): {lost:?}",
        answers.len()
    );
    assert_eq!(accepted, answers.len(), "every order accepted");
    assert!(
        slowest < Duration::from_secs(3),
        "requests never wait on the trace store: {slowest:?}"
    );
    assert_eq!(unhealthy, 0, "Jaeger stays up");
    assert!(
        recovered,
        "after the outage a new order's trace is stored whole: {}",
        err.lines()
            .chain(out.lines())
            .find(|l| l.starts_with("Error"))
            .unwrap_or(&err)
    );
    assert!(received > 0.0, "Jaeger's metrics say it received nothing");
    assert_eq!(
        received,
        written + failed_total + not_queued,
        "every span Jaeger accepted (the new order's too) is written, or counted as failed"
    );
    // Jaeger's storage queue rode out the outage: it accepted every span the
    // services sent, and wrote each once Cassandra was back.
    assert_eq!(
        (refused, failed, not_queued, services_lost),
        (0.0, 0.0, 0.0, 0),
        "(refused by Jaeger, failed after retries, not queued, lost by the services)"
    );
}
