//! The gateway in front of a real user-service (its own Postgres database),
//! and in front of upstreams that are down or too slow.

use std::time::{Duration, Instant};

use api_gateway::config::Config;
use opentelemetry::trace::{SpanKind, Status, TraceId};
use serde_json::Value;
use service_runtime::lifecycle::Running;
use tracing_common::axum::IncomingTrace;
use tracing_common_testing::{attr_str, fresh_database_url, is_child_of, only};

/// The span capture, copying the order's baggage onto spans as the services'
/// telemetry does.
fn capture() -> &'static tracing_common_testing::SpanCapture {
    tracing_common_testing::capture_with_span_baggage(order_contract::trace::baggage::ON_SPANS)
}

async fn listener() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// An address where nothing listens.
fn closed_port() -> String {
    format!("http://{}", tracing_common_testing::closed_port())
}

/// A server that accepts connections and never answers.
async fn silent_upstream() -> String {
    let l = listener().await;
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = l.accept().await {
            held.push(socket);
        }
    });
    url
}

async fn gateway(user_service_url: String, tune: impl FnOnce(&mut Config)) -> Running {
    capture();
    let mut config = Config::for_tests(user_service_url, closed_port(), closed_port());
    tune(&mut config);
    api_gateway::start(&config, listener().await).await.unwrap()
}

async fn user_service() -> Running {
    user_service::start(
        &user_service::config::Config::for_tests(fresh_database_url("users")),
        listener().await,
    )
    .await
    .expect("user-service starts")
    .started_within(Duration::from_secs(30))
    .await
    .expect("Postgres must be running")
}

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_lookup_is_one_trace_from_gateway_to_database() {
    let users = user_service().await;
    let gateway = gateway(users.url(), |_| {}).await;
    let response = reqwest::Client::new()
        .get(format!("{}/api/users/user123", gateway.url()))
        .header("traceparent", format!("00-{TRACE}-b7ad6b7169203331-01"))
        .header("baggage", "user.id=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["id"], "user123");
    assert!(body["user"].get("email").is_none());

    let spans = capture().wait_for(
        TraceId::from_hex(TRACE).unwrap(),
        Duration::from_secs(5),
        |s| s.iter().any(|s| s.name == "GET /api/users/{id}"),
    );
    let edge = only(&spans, "GET /api/users/{id}");
    assert_eq!(edge.span_kind, SpanKind::Server);
    assert_eq!(edge.parent_span_id.to_string(), "b7ad6b7169203331");
    assert_eq!(
        attr_str(edge, "http.route").as_deref(),
        Some("/api/users/{id}")
    );
    let client = only(&spans, "GET");
    assert_eq!(client.span_kind, SpanKind::Client);
    assert!(is_child_of(client, edge));
    assert_eq!(
        attr_str(client, "server.address").as_deref(),
        Some("127.0.0.1")
    );
    let server = only(&spans, "GET /users/{id}");
    assert!(is_child_of(server, client));
    assert!(server.events.iter().any(|e| e.name == "user_retrieved"));
    assert!(is_child_of(only(&spans, "SELECT users"), server));
    // Incoming baggage is dropped at the edge by default.
    assert!(
        spans
            .iter()
            .all(|s| attr_str(s, "user.id").as_deref() != Some("forged"))
    );
    gateway.stop().await.unwrap();
    users.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_is_down_is_a_502_with_a_clear_body_and_an_error_span() {
    let gateway = gateway(closed_port(), |_| {}).await;
    let trace = "1af7651916cd43dd8448eb211c80319c";
    let response = reqwest::Client::new()
        .get(format!("{}/api/users/user123", gateway.url()))
        .header("traceparent", format!("00-{trace}-b7ad6b7169203331-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "upstream_unavailable");
    assert_eq!(body["message"], "user-service is unavailable");
    let spans = capture().wait_for(
        TraceId::from_hex(trace).unwrap(),
        Duration::from_secs(5),
        |s| s.iter().any(|s| s.name == "GET /api/users/{id}"),
    );
    let client = only(&spans, "GET");
    assert!(matches!(client.status, Status::Error { .. }));
    assert!(attr_str(client, "error.type").is_some());
    let edge = only(&spans, "GET /api/users/{id}");
    assert!(
        matches!(edge.status, Status::Error { .. }),
        "502 is a server error"
    );
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_upstream_is_a_504_within_the_budget() {
    let gateway = gateway(silent_upstream().await, |c| {
        c.http_timeout = Duration::from_millis(500);
    })
    .await;
    let started = Instant::now();
    let response = reqwest::Client::new()
        .get(format!("{}/api/users/user123", gateway.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered within the 500 ms budget plus slack, took {:?}",
        started.elapsed()
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "upstream_unavailable");
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_order_is_refused_before_any_service_is_called() {
    // The order service URL is a silent upstream: forwarding would hang.
    let order_service = silent_upstream().await;
    let gateway = gateway(closed_port(), |c| c.order_service_url = order_service).await;
    let response = reqwest::Client::new()
        .post(format!("{}/api/orders", gateway.url()))
        .header("content-type", "application/json")
        .body(vec![b' '; 65 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_a_new_root_boundary_the_gateway_links_to_the_callers_trace() {
    let users = user_service().await;
    let gateway = gateway(users.url(), |c| {
        c.incoming_trace = IncomingTrace::NewRootWithLink
    })
    .await;
    let outside = "2af7651916cd43dd8448eb211c80319c";
    let response = reqwest::Client::new()
        .get(format!("{}/api/users/user123", gateway.url()))
        .header("traceparent", format!("00-{outside}-b7ad6b7169203331-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let returned = response.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    let trace_id = tracing_common_testing::trace_id_of(&returned).unwrap();
    assert_ne!(
        trace_id.to_string(),
        outside,
        "the caller cannot choose the trace id"
    );
    let spans = capture().wait_for(trace_id, Duration::from_secs(5), |s| {
        s.iter().any(|s| s.name == "SELECT users")
    });
    let edge = only(&spans, "GET /api/users/{id}");
    assert_eq!(edge.parent_span_id, opentelemetry::trace::SpanId::INVALID);
    assert!(
        edge.links
            .iter()
            .any(|l| l.span_context.trace_id().to_string() == outside)
    );
    gateway.stop().await.unwrap();
    users.stop().await.unwrap();
}
