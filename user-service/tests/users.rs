//! user-service against a real Postgres database of its own, spans included.

use axum::body::Body;
use http::{Request, StatusCode};
use opentelemetry::trace::SpanKind;
use tower::ServiceExt;
use tracing_common_testing::{attr_str, fresh_database_url, is_child_of, only, trace_id_of};

/// The span capture, copying the order's baggage onto spans as the services'
/// telemetry does.
fn capture() -> &'static tracing_common_testing::SpanCapture {
    tracing_common_testing::capture_with_span_baggage(order_contract::trace::baggage::ON_SPANS)
}
use user_service::AppState;

/// A fresh database per test, so tests never see each other's rows.
async fn spawn_app() -> axum::Router {
    let db = user_service::connect(&fresh_database_url("users"))
        .await
        .expect("Postgres must be running");
    user_service::app(AppState {
        db,
        faults: Default::default(),
        limits: Default::default(),
    })
}

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// `GET path` as a call from inside the trace `PARENT`.
async fn get(app: axum::Router, path: &str) -> axum::response::Response {
    app.oneshot(
        Request::get(path)
            .header("traceparent", PARENT)
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .unwrap()
}

async fn json(response: axum::response::Response) -> serde_json::Value {
    serde_json::from_slice(
        &axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_seeded_user_is_returned_with_a_server_span_a_db_span_and_the_user_retrieved_event() {
    let capture = capture();
    let app = spawn_app().await;
    let response = get(app, "/users/user123").await;
    assert_eq!(response.status(), StatusCode::OK);
    let trace_id = trace_id_of(response.headers()["traceparent"].to_str().unwrap()).unwrap();
    let body = json(response).await;
    assert_eq!(body["user"]["id"], "user123");
    assert!(
        body["user"].get("email").is_none(),
        "e-mail must not leave the service"
    );

    let spans = capture.trace(trace_id);
    let server = only(&spans, "GET /users/{id}");
    let db = only(&spans, "SELECT users");
    assert_eq!(server.span_kind, SpanKind::Server);
    assert_eq!(server.parent_span_id.to_string(), "00f067aa0ba902b7");
    assert_eq!(db.span_kind, SpanKind::Client);
    assert!(is_child_of(db, server));
    assert_eq!(
        attr_str(db, "db.system.name").as_deref(),
        Some("postgresql")
    );
    assert_eq!(
        attr_str(db, "db.query.text").as_deref(),
        Some("SELECT id, name, tier FROM users WHERE id = $1")
    );
    assert!(server.events.iter().any(|e| e.name == "user_retrieved"));
}

#[tokio::test]
async fn unknown_and_malformed_ids_get_clear_errors() {
    let app = spawn_app().await;
    for (uri, status, code) in [
        ("/users/nobody", StatusCode::NOT_FOUND, "user_not_found"),
        ("/users/a%20b", StatusCode::BAD_REQUEST, "invalid_user_id"),
        (
            "/users/x'%20OR%201=1--",
            StatusCode::BAD_REQUEST,
            "invalid_user_id",
        ),
    ] {
        let response = app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{uri}");
        let body = json(response).await;
        assert_eq!(body["error"], code, "{uri}");
    }
}

#[tokio::test]
async fn readiness_answers_from_the_database_without_leaving_a_trace() {
    let capture = capture();
    let app = spawn_app().await;
    let response = get(app.clone(), "/readyz").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers().get("traceparent").is_none(),
        "a probe answers without a trace context"
    );
    let body = json(response).await;
    assert_eq!(body["ready"], true);
    // A traced request after the probe: its spans arrive, so the capture
    // works, and they are the only ones in the caller's trace.
    let response = get(app, "/users/user123").await;
    assert_eq!(response.status(), StatusCode::OK);
    let trace_id = trace_id_of(PARENT).unwrap();
    capture.wait_for(trace_id, std::time::Duration::from_secs(5), |s| {
        s.len() >= 2
    });
    tracing_common_testing::settle();
    let spans = capture.trace(trace_id);
    let mut names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["GET /users/{id}", "SELECT users"],
        "probes are not traced"
    );
}
