//! The test service W3C's Trace Context validation suite drives
//! (<https://github.com/w3c/trace-context>, `test/`): `POST /test` takes a
//! JSON array of `{"url", "arguments"}` and posts each `arguments` to its
//! `url`, continuing the incoming trace through tracing-common's server layer
//! and HTTP client, with the W3C Trace Context propagator alone.
//!
//! ```sh
//! cargo run -p tracing-common --example w3c_test_service -- 127.0.0.1:5000
//! # in a checkout of w3c/trace-context:
//! STRICT_LEVEL=2 python3 test/test.py http://127.0.0.1:5000/test
//! ```

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use serde_json::Value;
use tracing_common::{ServerTracingLayer, TelemetryConfig, TracedClient, TrustPolicy};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5000".into());
    let config = TelemetryConfig::from_lookup("w3c-test-service", |name| {
        Ok(match name {
            "OTEL_TRACES_EXPORTER" => Some("none".into()),
            "OTEL_PROPAGATORS" => Some("tracecontext".into()),
            "RUST_LOG" => Some("warn".into()),
            _ => None,
        })
    })?;
    let telemetry = tracing_common::init_with(&config, env!("CARGO_PKG_VERSION"))?;
    let client = tracing_common::http_client(std::time::Duration::from_secs(5))?;
    let app = axum::Router::new()
        .route("/test", post(test))
        .layer(ServerTracingLayer::new(TrustPolicy::INTERNAL))
        .with_state(client);
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("listening on http://{}/test", listener.local_addr()?);
    axum::serve(listener, app).await?;
    telemetry.shutdown();
    Ok(())
}

/// Each `{"url", "arguments"}` in turn: `arguments` posted to `url`.
async fn test(State(client): State<TracedClient>, Json(calls): Json<Vec<Value>>) -> &'static str {
    for call in calls {
        if let Some(url) = call["url"].as_str() {
            let _ = client.post(url).json(&call["arguments"]).send().await;
        }
    }
    "ok"
}
