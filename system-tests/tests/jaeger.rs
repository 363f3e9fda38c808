//! Against the real Jaeger v2 (2.12.0, built by scripts/test.sh and named by
//! JAEGER_BIN), running the repository's own `deploy/jaeger/config.yaml` and
//! strategies, as compose and k8s/ run them: the order flow read back through
//! Jaeger's query API by the `tracectl` binary, Jaeger's dependency graph,
//! its health endpoint, and remote sampling served by Jaeger itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry::trace::{SpanId, TraceContextExt, TraceId, Tracer, TracerProvider as _};
use opentelemetry_sdk::trace::{IdGenerator, Sampler, SdkTracerProvider, ShouldSample};
use serde_json::Value;
use testkit::env::{Scratch, Setup, tracectl};
use testkit::jaeger::{Jaeger, JaegerOptions, deploy_dir};
use testkit::otlp::OlderJaeger;

/// A waterfall without the notes Jaeger adds about spans (its clock-skew
/// adjuster's), which the spans as sent cannot have.
fn rows(waterfall: &str) -> String {
    waterfall
        .lines()
        .filter(|l| !l.starts_with("  backend note: "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The trace id `tracectl verify` announces ("waiting for trace <id> in Jaeger").
fn verified_trace_id(output: &str) -> String {
    output
        .lines()
        .find_map(|l| l.split("waiting for trace ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no trace id in:\n{output}"))
        .to_owned()
}

/// Runs `tracectl verify` then `tracectl show` against the query API at
/// `jaeger`; asserts the order flow verified and that Jaeger's waterfall has
/// the rows of the spans the services sent (kept by the tee in front of
/// Jaeger). Returns the trace id.
async fn verify_and_show(
    env: &testkit::env::Env,
    jaeger: &str,
    api: &str,
    whole_micros: bool,
) -> String {
    let (gateway, url) = (env.gateway.clone(), jaeger.to_owned());
    let verified = tracectl(&[
        "verify",
        "--gateway",
        &gateway,
        "--jaeger",
        &url,
        "--timeout",
        "60",
    ])
    .await;
    println!("tracectl verify ({api}):\n{verified}");
    assert!(verified.contains("verified: "), "{verified}");
    let trace_id = verified_trace_id(&verified);
    let (url, id) = (jaeger.to_owned(), trace_id.clone());
    let shown = tracectl(&["show", &id, "--jaeger", &url]).await;
    let mut sent = env
        .receiver
        .store
        .wait_quiet(&trace_id, Duration::from_secs(1), Duration::from_secs(20))
        .await;
    if whole_micros {
        // The v1 API gives times in whole microseconds.
        for span in &mut sent.spans {
            span.start_ns -= span.start_ns % 1000;
            span.duration_ns -= span.duration_ns % 1000;
        }
    }
    assert_eq!(
        rows(&shown),
        rows(&tracectl::waterfall::render(&sent)),
        "Jaeger's copy of the trace ({api}) differs from what the services sent"
    );
    trace_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_flow_is_one_trace_in_jaeger_and_tracectl_reads_it_back() {
    let env = Setup {
        jaeger: Some(JaegerOptions::default()),
        ..Setup::new()
    }
    .start("jaeger-e2e")
    .await;
    let jaeger = env.jaeger.as_ref().unwrap();
    let query = jaeger.query_url();

    // 1. Through the v3 API: verify posts the seed's order and checks every
    //    edge; show prints the same rows as the spans the services sent.
    let trace_id = verify_and_show(&env, &query, "v3 API", false).await;
    // 2. The v1 fallback: the same against a query API without /api/v3.
    let older = OlderJaeger::start(&query).await.unwrap();
    let v1_id = verify_and_show(&env, &older.url(), "v1 fallback", true).await;

    // 3. slowest: both orders' traces are listed for the gateway.
    let q = query.clone();
    let slowest = tracectl(&[
        "slowest",
        "--service",
        "api-gateway",
        "--min-ms",
        "0",
        "--jaeger",
        &q,
    ])
    .await;
    println!("tracectl slowest:\n{slowest}");
    for id in [&trace_id, &v1_id] {
        assert!(
            slowest.contains(id.as_str()),
            "{id} missing from:\n{slowest}"
        );
    }

    // 4. The dependency graph Jaeger derives from the stored traces.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let deps: Value = env
        .http
        .get(format!(
            "{query}/api/dependencies?endTs={now_ms}&lookback=3600000"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let edges: Vec<(String, String)> = deps["data"]
        .as_array()
        .unwrap_or_else(|| panic!("not a dependencies answer: {deps}"))
        .iter()
        .map(|d| {
            (
                d["parent"].as_str().unwrap_or("").to_owned(),
                d["child"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    println!("Jaeger dependencies: {edges:?}");
    for (parent, child) in [
        ("api-gateway", "order-service"),
        ("order-service", "user-service"),
        ("order-service", "inventory-service"),
    ] {
        assert!(
            edges.iter().any(|(p, c)| p == parent && c == child),
            "no {parent} -> {child} edge in {edges:?}"
        );
    }
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_endpoint_compose_and_k8s_probe_answers_once_jaeger_is_ready() {
    // The endpoint tested here is the one the deployment files name.
    let mut compose: serde_norway::Value = serde_norway::from_str(
        &std::fs::read_to_string(deploy_dir().join("../docker-compose.yml")).unwrap(),
    )
    .unwrap();
    // Jaeger's settings come from the x-jaeger anchor (`<<: *jaeger`).
    compose.apply_merge().unwrap();
    let check = format!("{:?}", compose["services"]["jaeger"]["healthcheck"]["test"]);
    assert!(check.contains("127.0.0.1:13133/status"), "{check}");
    let k8s = std::fs::read_to_string(deploy_dir().join("../k8s/jaeger/jaeger.yaml")).unwrap();
    let probes: Vec<serde_norway::Value> = serde_norway::Deserializer::from_str(&k8s)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let container = probes
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .map(|d| d["spec"]["template"]["spec"]["containers"][0].clone())
        .expect("a Jaeger Deployment");
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(container[probe]["httpGet"]["path"], "/status", "{probe}");
        assert_eq!(container[probe]["httpGet"]["port"], "health", "{probe}");
    }
    let health_port = container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "health")
        .map(|p| p["containerPort"].as_u64().unwrap());
    assert_eq!(health_port, Some(13133));
    assert!(
        std::fs::read_to_string(deploy_dir().join("jaeger/config.yaml"))
            .unwrap()
            .contains("JAEGER_HEALTH_ENDPOINT:-0.0.0.0:13133")
    );

    // Jaeger::start returns once /status answered 200 from this process.
    let dir = Scratch::new("jaeger-health");
    let jaeger = Jaeger::start(&dir, &JaegerOptions::default())
        .await
        .unwrap();
    let answer: Value = reqwest::get(jaeger.health_url())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    println!("GET /status: {answer}");
    assert_eq!(answer["healthy"], true, "{answer}");
    assert_eq!(answer["status"], "StatusOK", "{answer}");
}

/// Trace ids 1, 2, 3, ... spread over the 64 bits a ratio sampler reads (a
/// Weyl sequence), restarted for each count: a sampler's share of them is
/// exact and repeatable, so a count can be compared with `==`.
#[derive(Debug, Clone, Default)]
struct Ids(Arc<AtomicU64>);

impl IdGenerator for Ids {
    fn new_trace_id(&self) -> TraceId {
        let i = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        TraceId::from((u128::from(i) << 64) | u128::from(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
    }

    fn new_span_id(&self) -> SpanId {
        SpanId::from(self.0.load(Ordering::Relaxed).max(1))
    }
}

/// A tracer provider configured from the variables a service reads:
/// `OTEL_TRACES_SAMPLER=parentbased_jaeger_remote` pointed at `jaeger`. It
/// samples nothing until a strategy arrives.
fn provider(service: &str, jaeger: &Jaeger) -> (SdkTracerProvider, Ids) {
    let arg = format!(
        "endpoint={},pollingIntervalMs=200,initialSamplingRate=0",
        jaeger.sampling_url()
    );
    let config = tracing_common::TelemetryConfig::from_lookup(service, |name| {
        Ok(match name {
            "OTEL_TRACES_SAMPLER" => Some("parentbased_jaeger_remote".to_owned()),
            "OTEL_TRACES_SAMPLER_ARG" => Some(arg.clone()),
            "OTEL_TRACES_EXPORTER" => Some("none".to_owned()),
            _ => None,
        })
    })
    .expect("a valid parentbased_jaeger_remote configuration");
    with_sampler(tracing_common::sampling::sampler(&config).unwrap())
}

fn with_sampler(sampler: impl Into<Box<dyn ShouldSample>>) -> (SdkTracerProvider, Ids) {
    let ids = Ids::default();
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_id_generator(ids.clone())
        .build();
    (provider, ids)
}

/// Root spans sampled out of the first `n` trace ids of [`Ids`].
fn sampled_of((provider, ids): &(SdkTracerProvider, Ids), n: usize) -> usize {
    ids.0.store(0, Ordering::Relaxed);
    let tracer = provider.tracer("remote-sampling");
    (0..n)
        .filter(|_| tracer.in_span("op", |cx| cx.span().span_context().is_sampled()))
        .count()
}

/// What a local `traceidratio` sampler at `ratio` samples of the same 2000 ids.
fn ratio_of_2000(ratio: f64) -> usize {
    sampled_of(&with_sampler(Sampler::TraceIdRatioBased(ratio)), 2000)
}

/// Waits (bounded) until the remote sampler samples exactly what a local
/// ratio sampler at `ratio` does of the same 2000 trace ids (the strategy
/// has arrived, or its change has); the last count if it never does.
async fn share_settles(
    provider: &(SdkTracerProvider, Ids),
    ratio: f64,
    within: Duration,
) -> (usize, usize) {
    let expected = ratio_of_2000(ratio);
    let deadline = Instant::now() + within;
    loop {
        let sampled = sampled_of(provider, 2000);
        if sampled == expected || Instant::now() > deadline {
            return (sampled, expected);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_apply_the_strategies_jaeger_serves_and_a_changed_file_takes_effect() {
    let dir = Scratch::new("jaeger-sampling");
    // The repository's strategies, with one probabilistic service added
    // whose share the test can tell apart from 0 and 1.
    let mut strategies: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy_dir().join("jaeger/sampling-strategies.json")).unwrap(),
    )
    .unwrap();
    let with_share = |strategies: &mut Value, share: f64| {
        let list = strategies["service_strategies"].as_array_mut().unwrap();
        list.retain(|s| s["service"] != "share-service");
        list.push(serde_json::json!({"service": "share-service", "type": "probabilistic", "param": share}));
    };
    with_share(&mut strategies, 0.25);
    let file = dir.join("sampling-strategies.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&strategies).unwrap()).unwrap();
    let reload = Duration::from_secs(1);
    let jaeger = Jaeger::start(
        &dir,
        &JaegerOptions {
            strategies: file.clone(),
            reload_interval: Some(reload),
            ..JaegerOptions::default()
        },
    )
    .await
    .unwrap();

    // Probabilistic 0.25: exactly the trace ids a local ratio sampler at
    // 0.25 samples.
    let share = provider("share-service", &jaeger);
    let (sampled, expected) = share_settles(&share, 0.25, Duration::from_secs(10)).await;
    println!(
        "REMOTE SAMPLING probabilistic 0.25: {sampled} of 2000 sampled ({expected} at a local 0.25)"
    );
    assert_eq!(sampled, expected, "of 2000 at 0.25");
    assert_ne!(expected, ratio_of_2000(0.75));

    // order-service's rate-limiting strategy in the repository's file (10
    // traces/s), served by Jaeger as RATE_LIMITING: a burst of 5000 roots
    // samples at most the SDK's initial bucket plus a second's refill.
    let limited = provider("order-service", &jaeger);
    let deadline = Instant::now() + Duration::from_secs(10);
    while sampled_of(&limited, 1) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    let burst = sampled_of(&limited, 5000);
    let burst_took = started.elapsed();
    println!(
        "REMOTE SAMPLING rate-limiting 10/s: {burst} of 5000 sampled in a burst of {burst_took:?}"
    );
    assert!(burst >= 1, "the rate-limiting strategy sampled nothing");
    assert!(
        burst <= 100 + 10 * (burst_took.as_secs() as usize + 1),
        "{burst} of 5000 under 10 traces/s"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = sampled_of(&limited, 100);
    println!("REMOTE SAMPLING rate-limiting 10/s: {later} of 100 sampled 1.1 s later");
    assert!(
        (1..=25).contains(&later),
        "{later} of 100 after 1.1 s at 10 traces/s"
    );

    // The file changes: 0.25 becomes 0.75; Jaeger re-reads it every second
    // and the sampler polls every 200 ms.
    with_share(&mut strategies, 0.75);
    std::fs::write(&file, serde_json::to_vec_pretty(&strategies).unwrap()).unwrap();
    let changed = Instant::now();
    let (sampled, expected) = share_settles(&share, 0.75, Duration::from_secs(15)).await;
    println!(
        "REMOTE SAMPLING after the file changed to 0.75: {sampled} of 2000 sampled ({expected} at a local 0.75), {:.1?} after the write (reload interval {reload:?})",
        changed.elapsed()
    );
    assert_eq!(sampled, expected, "of 2000 at 0.75");
    drop(jaeger);
}
