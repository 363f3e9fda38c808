//! `OTEL_TRACES_SAMPLER=jaeger_remote`: the sampler polls a Jaeger remote
//! sampling endpoint and applies the strategy it serves. The endpoint here
//! serves Jaeger's own strategies fixture the way Jaeger's file provider does
//! (`GET /sampling?service=NAME` -> that service's strategy, else the default).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use opentelemetry::trace::{TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::{Value, json};
use tracing_common::TelemetryConfig;

/// Jaeger's own strategies fixture (testdata/README.md says where it comes from).
const STRATEGIES: &str = "../testdata/jaeger/sampling-strategies.json";

/// Jaeger's answer for one service, translated from the strategies file.
fn strategy_for(strategies: &Value, service: &str) -> Value {
    let chosen = strategies["service_strategies"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["service"] == service))
        .unwrap_or(&strategies["default_strategy"]);
    match chosen["type"].as_str() {
        Some("ratelimiting") => json!({
            "strategyType": "RATE_LIMITING",
            "rateLimitingSampling": { "maxTracesPerSecond": chosen["param"] },
        }),
        _ => json!({
            "strategyType": "PROBABILISTIC",
            "probabilisticSampling": { "samplingRate": chosen["param"] },
        }),
    }
}

struct SamplingServer {
    endpoint: String,
    requests: Arc<AtomicUsize>,
}

async fn serve_strategies() -> SamplingServer {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(STRATEGIES);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {} must exist: {e}", path.display()));
    let strategies: Arc<Value> = Arc::new(serde_json::from_str(&text).unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/sampling",
            get(
                |State((strategies, requests)): State<(Arc<Value>, Arc<AtomicUsize>)>,
                 Query(q): Query<HashMap<String, String>>| async move {
                    requests.fetch_add(1, Ordering::SeqCst);
                    Json(strategy_for(
                        &strategies,
                        q.get("service").map_or("", |s| s),
                    ))
                },
            ),
        )
        .with_state((strategies, requests.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/sampling", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    SamplingServer { endpoint, requests }
}

/// A provider for `service` whose sampler comes from the environment
/// variables a user would set; it samples nothing until the strategy arrives.
fn provider(service: &str, endpoint: &str) -> SdkTracerProvider {
    let arg = format!("endpoint={endpoint},pollingIntervalMs=100,initialSamplingRate=0");
    let config = TelemetryConfig::from_lookup(service, |name| {
        Ok(match name {
            "OTEL_TRACES_SAMPLER" => Some("jaeger_remote".to_owned()),
            "OTEL_TRACES_SAMPLER_ARG" => Some(arg.clone()),
            "OTEL_TRACES_EXPORTER" => Some("none".to_owned()),
            _ => None,
        })
    })
    .expect("a valid jaeger_remote configuration");
    SdkTracerProvider::builder()
        .with_sampler(tracing_common::sampling::sampler(&config).unwrap())
        .build()
}

/// Root spans sampled out of `n`.
fn sampled_of(provider: &SdkTracerProvider, n: usize) -> usize {
    let tracer = provider.tracer("remote-sampling-test");
    (0..n)
        .filter(|_| tracer.in_span("op", |cx| cx.span().span_context().is_sampled()))
        .count()
}

/// Waits (bounded) until the sampler has applied a strategy, seen as a change
/// from the initial rate of 0.
async fn wait_for_strategy(provider: &SdkTracerProvider, server: &SamplingServer) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if server.requests.load(Ordering::SeqCst) > 0 && sampled_of(provider, 50) > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "no strategy applied within 10 s ({} requests to the endpoint)",
        server.requests.load(Ordering::SeqCst)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remote_sampler_applies_the_probabilistic_strategy_served_for_its_service() {
    let server = serve_strategies().await;
    let foo = provider("foo", &server.endpoint);
    wait_for_strategy(&foo, &server).await;

    let sampled = sampled_of(&foo, 4000);
    // The fixture gives `foo` probability 0.8: 3200 expected, 4 sigma ~ 100.
    assert!(
        (3050..=3350).contains(&sampled),
        "foo sampled {sampled} of 4000, expected about 3200"
    );

    let other = provider("not-listed", &server.endpoint);
    wait_for_strategy(&other, &server).await;
    let sampled = sampled_of(&other, 4000);
    // Services not in the file get the default strategy, probability 0.5.
    assert!(
        (1850..=2150).contains(&sampled),
        "default strategy sampled {sampled} of 4000, expected about 2000"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_endpoint_cannot_be_reached_the_initial_rate_decides() {
    let endpoint = format!("http://{}/sampling", tracing_common_testing::closed_port());
    let provider = provider("foo", &endpoint);
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(sampled_of(&provider, 1000), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remote_sampler_applies_the_rate_limiting_strategy_served_for_its_service() {
    let server = serve_strategies().await;
    let bar = provider("bar", &server.endpoint);
    wait_for_strategy(&bar, &server).await;
    // The fixture gives `bar` 5 traces per second. The SDK's leaky bucket
    // starts full (100 credits) and refills at that rate, so a burst of 5000
    // root spans within a second samples at most the bucket plus a refill.
    let sampled = sampled_of(&bar, 5000);
    assert!(
        sampled <= 110,
        "rate limiting sampled {sampled} of 5000, expected at most ~105"
    );
    // And it keeps sampling after the burst as credits refill.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = sampled_of(&bar, 100);
    assert!(
        (1..=10).contains(&later),
        "after 1.1 s, {later} of 100 sampled; expected about 5"
    );
}

/// Jaeger's adaptive sampling counts sampled root spans by the `sampler.type`
/// (a string) and `sampler.param` (a number) they carry; the value is the one
/// that applied to the span's operation. Children and unsampled spans carry
/// neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_root_spans_say_how_they_were_sampled_for_jaegers_adaptive_sampling() {
    use opentelemetry::Value as OtelValue;
    use opentelemetry_sdk::trace::InMemorySpanExporter;

    // What Jaeger's adaptive provider serves: per-operation probabilities.
    let answer = json!({
        "strategyType": 0,
        "operationSampling": {
            "defaultSamplingProbability": 0.5,
            "defaultLowerBoundTracesPerSecond": 0.016666666666666666,
            "perOperationStrategies": [
                {"operation": "always", "probabilisticSampling": {"samplingRate": 1.0}},
                {"operation": "never", "probabilisticSampling": {"samplingRate": 0.0}},
            ],
            "defaultUpperBoundTracesPerSecond": 0,
        }
    });
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let app = Router::new().route(
        "/sampling",
        get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            async move { Json(answer) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/sampling", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let config = TelemetryConfig::from_lookup("svc", |name| {
        Ok(match name {
            "OTEL_TRACES_SAMPLER" => Some("parentbased_jaeger_remote".to_owned()),
            "OTEL_TRACES_SAMPLER_ARG" => Some(format!(
                "endpoint={endpoint},pollingIntervalMs=100,initialSamplingRate=1"
            )),
            "OTEL_TRACES_EXPORTER" => Some("none".to_owned()),
            _ => None,
        })
    })
    .unwrap();
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_sampler(tracing_common::sampling::sampler(&config).unwrap())
        .with_simple_exporter(exporter.clone())
        .build();
    let tracer = provider.tracer("adaptive-test");
    // Before the first answer: the initial rate, reported as such.
    tracer.in_span("before", |_| {});
    let deadline = Instant::now() + Duration::from_secs(10);
    while requests.load(Ordering::SeqCst) == 0
        || tracer.in_span("never", |cx| cx.span().span_context().is_sampled())
    {
        assert!(Instant::now() < deadline, "the strategy was never applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    exporter.reset();
    tracer.in_span("always", |_| tracer.in_span("child", |_| {}));
    for _ in 0..20 {
        tracer.in_span("never", |_| {});
    }
    let mut other_sampled = 0;
    for _ in 0..200 {
        other_sampled +=
            usize::from(tracer.in_span("other", |cx| cx.span().span_context().is_sampled()));
    }
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let tag = |name: &str, key: &str| -> Vec<Option<OtelValue>> {
        spans
            .iter()
            .filter(|s| s.name == name)
            .map(|s| {
                s.attributes
                    .iter()
                    .find(|kv| kv.key.as_str() == key)
                    .map(|kv| kv.value.clone())
            })
            .collect()
    };
    assert_eq!(
        tag("always", "sampler.type"),
        vec![Some(OtelValue::from("probabilistic"))]
    );
    assert_eq!(
        tag("always", "sampler.param"),
        vec![Some(OtelValue::F64(1.0))]
    );
    assert_eq!(
        tag("child", "sampler.type"),
        vec![None],
        "only roots say it"
    );
    assert!(
        tag("never", "sampler.type").is_empty(),
        "probability 0 samples nothing"
    );
    let others = tag("other", "sampler.param");
    assert_eq!(others.len(), other_sampled);
    assert!(
        (60..=140).contains(&other_sampled),
        "{other_sampled} of 200 at the default 0.5"
    );
    assert!(
        others.iter().all(|v| v == &Some(OtelValue::F64(0.5))),
        "{others:?}"
    );
}
