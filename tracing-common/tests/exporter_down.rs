//! An OTLP endpoint that refuses connections must not fail or stall requests,
//! and shutdown must still return within its bound, counting the lost spans.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use tracing_common::config::{ExporterConfig, OtlpConfig, OtlpProtocol};
use tracing_common::{ServerTracingLayer, TelemetryConfig, TrustPolicy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_succeed_while_the_otlp_endpoint_is_a_closed_port() {
    let closed = tracing_common_testing::closed_port();
    let mut config = TelemetryConfig::from_lookup("exporter-down-test", |_| Ok(None)).unwrap();
    config.exporters = vec![ExporterConfig::Otlp(
        OtlpConfig::new(format!("http://{closed}"), OtlpProtocol::Grpc)
            .with_timeout(Duration::from_millis(500)),
    )];
    config.log_filter = "off".into();
    let guard =
        tracing_common::init_with(&config, "test").expect("telemetry starts with a dead endpoint");

    let app = Router::new()
        .route("/users/{id}", get(|| async { "ok" }))
        .layer(ServerTracingLayer::new(TrustPolicy::INTERNAL));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let client = reqwest::Client::new();
    let requests = 300;
    let mut slowest = Duration::ZERO;
    for i in 0..requests {
        let started = Instant::now();
        let response = client
            .get(format!("http://{addr}/users/u{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers().contains_key("traceparent"));
        slowest = slowest.max(started.elapsed());
    }
    // A request never waits for the exporter (whose timeout is 500 ms).
    assert!(
        slowest < Duration::from_millis(400),
        "slowest request took {slowest:?}"
    );

    let started = Instant::now();
    let stats = guard.shutdown();
    let took = started.elapsed();
    assert!(
        took < tracing_common::SHUTDOWN_TIMEOUT + Duration::from_secs(2),
        "shutdown took {took:?}"
    );
    assert_eq!(stats.ended, requests);
    assert_eq!(stats.exported, 0);
    assert_eq!(stats.lost(), requests, "{stats:?}");
}
