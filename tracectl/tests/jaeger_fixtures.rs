//! Reading real Jaeger API responses (testdata/jaeger, taken from
//! the jaegertracing/jaeger repository) in both shapes, with their edge cases,
//! and fetching them over HTTP as `tracectl show` and `verify` do.

use std::path::PathBuf;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::Value;
use tracectl::jaeger::{self, Jaeger};
use tracectl::model::Kind;
use tracectl::waterfall;

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/jaeger")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {} must exist: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_v1_api_response_becomes_a_trace_with_its_duplicate_and_missing_parent_flagged() {
    let traces = jaeger::parse(&fixture("api-traces-response.json")).unwrap();
    assert_eq!(traces.len(), 1);
    let trace = &traces[0];
    assert_eq!(trace.trace_id, "83a9efd15c1c98a977e0711cc93ee28b");
    assert_eq!(trace.spans.len(), 2);
    let span = &trace.spans[0];
    assert_eq!(span.service, "telemetrygen");
    assert_eq!(span.kind, Kind::Server);
    assert_eq!(span.name, "okey-dokey-0");
    assert_eq!(span.duration_ns, 123_000);
    assert_eq!(span.parent_id.as_deref(), Some("909541b92cf05311"));
    assert!(
        trace
            .warnings
            .iter()
            .any(|w| w.contains("duplicate span id"))
    );
    assert!(
        trace
            .warnings
            .iter()
            .any(|w| w.contains("909541b92cf05311"))
    );
    // Both spans are shown even though they share an id.
    let text = waterfall::render(trace);
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("SERVER    okey-dokey-0"))
            .count(),
        2,
        "{text}"
    );
}

#[test]
fn the_otlp_request_behind_it_reads_the_same_through_the_v3_parser() {
    let v1 = jaeger::parse(&fixture("api-traces-response.json")).unwrap();
    let otlp = jaeger::parse(&fixture("otlp-traces-request.json")).unwrap();
    assert_eq!(otlp.len(), 1);
    let (a, b) = (&v1[0], &otlp[0]);
    assert_eq!(a.trace_id, b.trace_id);
    for (x, y) in a.spans.iter().zip(&b.spans) {
        assert_eq!(
            (
                &x.span_id,
                &x.parent_id,
                &x.name,
                x.kind,
                &x.service,
                x.start_ns,
                x.duration_ns
            ),
            (
                &y.span_id,
                &y.parent_id,
                &y.name,
                y.kind,
                &y.service,
                y.start_ns,
                y.duration_ns
            )
        );
    }
}

#[test]
fn the_ui_edge_cases_short_ids_cross_trace_references_errors_and_warnings() {
    let traces = jaeger::parse(&fixture("ui-trace-edge-cases.json")).unwrap();
    let trace = &traces[0];
    assert_eq!(trace.trace_id, "00000000000000000000000000000001");
    assert_eq!(trace.services(), ["service-x", "service-y"]);
    let by = |id: &str, name: &str| {
        trace
            .spans
            .iter()
            .find(|s| s.span_id == id && s.name == name)
            .unwrap_or_else(|| panic!("span {id} {name}"))
    };
    let tagged = by("0000000000000002", "some-operation");
    assert_eq!(tagged.error.as_deref(), Some("error"), "error=true tag");
    assert_eq!(tagged.attr("peer.ipv4"), Some("23456"));
    assert_eq!(tagged.attr("temperature"), Some("72.5"));
    // A CHILD_OF into another trace is a link; the same-trace CHILD_OF is the
    // parent; FOLLOWS_FROM is a link.
    let refs = by("0000000000000004", "reference-test");
    assert_eq!(refs.parent_id.as_deref(), Some("0000000000000002"));
    assert_eq!(refs.links.len(), 2);
    assert!(
        refs.links
            .iter()
            .any(|(t, s)| t.ends_with("ff") && s.ends_with("ff"))
    );
    assert_eq!(
        by("0000000000000005", "preserveParentID-test")
            .parent_id
            .as_deref(),
        Some("0000000000000004")
    );
    assert!(
        trace
            .warnings
            .iter()
            .any(|w| w.contains("duplicate span id 0000000000000002"))
    );
    assert!(trace.notes.iter().any(|w| w.contains("some span warning")));
    let text = waterfall::render(trace);
    assert_eq!(
        text.lines().filter(|l| l.contains("  service-")).count(),
        5,
        "{text}"
    );
}

#[test]
fn v3_get_and_find_responses_with_missing_times_still_render() {
    for name in ["api-v3-get-trace.json", "api-v3-find-traces.json"] {
        let traces = jaeger::parse(&fixture(name)).unwrap();
        assert_eq!(traces.len(), 1, "{name}");
        let span = &traces[0].spans[0];
        assert_eq!(traces[0].trace_id, "00000000000000000000000000000001");
        assert_eq!(span.span_id, "0000000000000002");
        assert_eq!(span.kind, Kind::Server);
        assert_eq!(span.error.as_deref(), Some("error"), "status code 2");
        assert_eq!(span.service, "unknown_service");
        assert_eq!(span.duration_ns, 0);
        assert!(waterfall::render(&traces[0]).contains("foobar"));
    }
}

#[test]
fn responses_that_are_not_traces_are_clear_errors() {
    assert!(jaeger::parse(&serde_json::json!({"errors": [{"code": 500}]})).is_err());
    let error = jaeger::parse(
        &serde_json::json!({"error": {"httpCode": 404, "message": "trace not found"}}),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("trace not found"), "{error}");
}

/// A Jaeger query API on loopback serving the fixtures: v3 for one id, v1
/// only for another (an older Jaeger), 404 otherwise.
async fn fake_jaeger() -> String {
    let v3 = fixture("api-v3-get-trace.json");
    let v1 = fixture("api-traces-response.json");
    let found = fixture("api-v3-find-traces.json");
    let app = axum::Router::new()
        .route(
            "/api/v3/traces",
            get(
                move |axum::extract::Query(q): axum::extract::Query<
                    std::collections::HashMap<String, String>,
                >| {
                    let found = found.clone();
                    async move {
                        // Jaeger requires these; a request without them is a client bug.
                        let complete = [
                            "query.service_name",
                            "query.start_time_min",
                            "query.start_time_max",
                        ]
                        .iter()
                        .all(|k| q.contains_key(*k));
                        if complete && q["query.service_name"] == "foobar-service" {
                            Ok(axum::Json(found))
                        } else if complete {
                            Err(StatusCode::NOT_FOUND)
                        } else {
                            Err(StatusCode::BAD_REQUEST)
                        }
                    }
                },
            ),
        )
        .route(
            "/api/v3/traces/{id}",
            get(move |Path(id): Path<String>| {
                let v3 = v3.clone();
                async move {
                    if id == "00000000000000000000000000000001" {
                        Ok(axum::Json(v3))
                    } else {
                        Err(StatusCode::NOT_FOUND)
                    }
                }
            }),
        )
        .route(
            "/api/traces/{id}",
            get(move |Path(id): Path<String>| {
                let v1 = v1.clone();
                async move {
                    if id == "83a9efd15c1c98a977e0711cc93ee28b" {
                        Ok(axum::Json(v1))
                    } else {
                        Err(StatusCode::NOT_FOUND)
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn traces_are_fetched_by_id_from_v3_falling_back_to_v1() {
    let jaeger = Jaeger::new(&fake_jaeger().await).unwrap();
    let v3 = jaeger
        .trace("00000000000000000000000000000001")
        .await
        .unwrap()
        .expect("served by v3");
    assert_eq!(v3.spans[0].name, "foobar");
    let v1 = jaeger
        .trace("83A9EFD15C1C98A977E0711CC93EE28B")
        .await
        .unwrap()
        .expect("served by v1");
    assert_eq!(v1.spans.len(), 2);
    assert!(
        jaeger
            .trace("ffffffffffffffffffffffffffffffff")
            .await
            .unwrap()
            .is_none()
    );
    let down = Jaeger::new("http://127.0.0.1:9").unwrap();
    assert!(
        down.trace("00000000000000000000000000000001")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn slowest_queries_the_v3_search_and_filters_by_duration() {
    let jaeger = Jaeger::new(&fake_jaeger().await).unwrap();
    let day = std::time::Duration::from_secs(86_400);
    let all = jaeger
        .slowest("foobar-service", std::time::Duration::ZERO, day, 10)
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].trace_id, "00000000000000000000000000000001");
    // The fixture's span has no times: it is never "at least 1 ms".
    let slow = jaeger
        .slowest(
            "foobar-service",
            std::time::Duration::from_millis(1),
            day,
            10,
        )
        .await
        .unwrap();
    assert!(slow.is_empty());
    let none = jaeger
        .slowest("other", std::time::Duration::ZERO, day, 10)
        .await
        .unwrap();
    assert!(
        none.is_empty(),
        "Jaeger's 404 for no traces is an empty list"
    );
}

#[test]
fn a_v1_follows_from_into_the_same_trace_is_the_parent_when_there_is_no_child_of() {
    // What Jaeger 2.13's v1 API returns for a Kafka consumer span whose OTLP
    // parent is also its link: one FOLLOWS_FROM, no CHILD_OF.
    let body = serde_json::json!({"data": [{
        "traceID": "5b8efff798038103d269b633813fc60c",
        "processes": {"p1": {"serviceName": "producer"}, "p2": {"serviceName": "consumer"}},
        "spans": [
            {"traceID": "5b8efff798038103d269b633813fc60c", "spanID": "eee19b7ec3c1b174",
             "operationName": "send", "references": [], "processID": "p1",
             "startTime": 1, "duration": 1, "tags": [{"key": "span.kind", "value": "producer"}]},
            {"traceID": "5b8efff798038103d269b633813fc60c", "spanID": "eee19b7ec3c1b175",
             "operationName": "process", "processID": "p2", "startTime": 3, "duration": 1,
             "references": [{"refType": "FOLLOWS_FROM", "traceID": "5b8efff798038103d269b633813fc60c", "spanID": "eee19b7ec3c1b174"}],
             "tags": [{"key": "span.kind", "value": "consumer"}],
             "warnings": ["clock skew adjustment disabled; not applying calculated delta of -2ms"]}
        ]
    }]});
    let trace = &jaeger::parse(&body).unwrap()[0];
    let consumer = trace.spans.iter().find(|s| s.name == "process").unwrap();
    assert_eq!(consumer.parent_id.as_deref(), Some("eee19b7ec3c1b174"));
    assert_eq!(
        consumer.links,
        [(
            "5b8efff798038103d269b633813fc60c".to_owned(),
            "eee19b7ec3c1b174".to_owned()
        )]
    );
    // Jaeger's note is shown, not a defect of the trace.
    assert!(trace.warnings.is_empty(), "{:?}", trace.warnings);
    assert_eq!(trace.notes.len(), 1);
    assert!(waterfall::render(trace).contains("backend note: span eee19b7ec3c1b175: clock skew"));
}
