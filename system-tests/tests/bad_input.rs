//! Bad input against the running gateway and services (the binaries, with a
//! broker, Postgres and an OTLP receiver): every request gets a clear 4xx,
//! nothing is written, nothing crashes, and malformed or conflicting trace
//! headers never give a span a wrong parent.

use testkit::env as common;

use std::time::Duration;

use common::{Answer, Env, Setup};
use tracectl::model::Kind;

const SEED: &str = r#"{"userId":"user123","items":[{"productId":"prod1","quantity":2,"price":25.99},{"productId":"prod2","quantity":1,"price":15.50}],"totalAmount":67.48}"#;

fn order(user: &str, product: &str, quantity: &str, price: &str, total: &str) -> String {
    format!(
        r#"{{"userId":{user},"items":[{{"productId":{product},"quantity":{quantity},"price":{price}}}],"totalAmount":{total}}}"#
    )
}

async fn post(env: &Env, body: impl Into<reqwest::Body>) -> Answer {
    env.send(
        env.http
            .post(format!("{}/api/orders", env.gateway))
            .header("content-type", "application/json")
            .body(body),
    )
    .await
    .expect("the gateway answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_clear_4xx_and_change_nothing() {
    let env = Setup::new().start("bad-input").await;
    let truncated = &SEED[..SEED.len() / 2];
    let control = "\"user\\u0000123\"";
    let bodies: Vec<(&str, String)> = vec![
        ("malformed JSON", "{\"userId\": ".into()),
        ("truncated JSON", truncated.into()),
        ("not JSON", "userId=user123&total=1".into()),
        ("JSON array", "[]".into()),
        (
            "quantity as string",
            order("\"user123\"", "\"prod1\"", "\"2\"", "25.99", "51.98"),
        ),
        (
            "userId as number",
            order("123", "\"prod1\"", "1", "25.99", "25.99"),
        ),
        (
            "items as object",
            r#"{"userId":"user123","items":{},"totalAmount":1}"#.into(),
        ),
        (
            "unicode user id",
            order("\"ユーザー\"", "\"prod1\"", "1", "25.99", "25.99"),
        ),
        (
            "control character in id",
            order(control, "\"prod1\"", "1", "25.99", "25.99"),
        ),
        (
            "newline in product id",
            order(
                "\"user123\"",
                "\"prod1\\r\\nX-Injected: 1\"",
                "1",
                "25.99",
                "25.99",
            ),
        ),
        (
            "SQL in user id",
            order("\"user123' OR '1'='1\"", "\"prod1\"", "1", "25.99", "25.99"),
        ),
        (
            "SQL in product id",
            order(
                "\"user123\"",
                "\"prod1'; DROP TABLE stock;--\"",
                "1",
                "25.99",
                "25.99",
            ),
        ),
        (
            "quantity 1e9",
            order(
                "\"user123\"",
                "\"prod1\"",
                "1000000000",
                "25.99",
                "25990000000.00",
            ),
        ),
        (
            "quantity 2^63",
            order("\"user123\"", "\"prod1\"", "9223372036854775808", "1", "1"),
        ),
        (
            "quantity -1",
            order("\"user123\"", "\"prod1\"", "-1", "25.99", "-25.99"),
        ),
        (
            "quantity 1.5",
            order("\"user123\"", "\"prod1\"", "1.5", "25.99", "38.99"),
        ),
        (
            "price 1e308",
            order("\"user123\"", "\"prod1\"", "1", "1e308", "1e308"),
        ),
        (
            "price 0.001",
            order("\"user123\"", "\"prod1\"", "1", "0.001", "0.00"),
        ),
        (
            "price -25.99",
            order("\"user123\"", "\"prod1\"", "1", "-25.99", "-25.99"),
        ),
        (
            "total off by a cent",
            order("\"user123\"", "\"prod1\"", "1", "25.99", "25.98"),
        ),
        (
            "unknown product",
            order("\"user123\"", "\"nope\"", "1", "25.99", "25.99"),
        ),
        (
            "unknown user",
            order("\"nobody\"", "\"prod1\"", "1", "25.99", "25.99"),
        ),
        (
            "100 KiB body",
            format!(r#"{{"userId":"{}"}}"#, "u".repeat(100 * 1024)),
        ),
    ];
    let before = env.order_count().await;
    let mut table = Vec::new();
    for (what, body) in &bodies {
        let a = post(&env, body.clone()).await;
        table.push(format!("{what}: {} {}", a.status, a.body["error"]));
        assert!(
            (400..500).contains(&a.status),
            "{what}: {} {:?}",
            a.status,
            a.body
        );
        assert_eq!(a.body["success"], false, "{what}: {:?}", a.body);
        assert!(a.body["error"].is_string(), "{what}: {:?}", a.body);
    }
    let paths = [
        "/api/users/%00",
        "/api/users/%E3%83%A6%E3%83%BC%E3%82%B6%E3%83%BC",
        "/api/users/user123'%20OR%20'1'='1",
        "/api/users/%0d%0aX-Injected:%20x=1",
        "/api/orders/not-a-uuid",
        "/api/orders/00000000-0000-0000-0000-000000000000",
        "/api/inventory/prod1';--",
    ];
    let long_path = format!("/api/users/{}", "a".repeat(5000));
    for path in paths.iter().copied().chain([long_path.as_str()]) {
        let a = env
            .send(env.http.get(format!("{}{path}", env.gateway)))
            .await
            .expect("the gateway answers");
        table.push(format!("GET {}: {}", &path[..path.len().min(40)], a.status));
        assert!(
            (400..500).contains(&a.status),
            "{path}: {} {:?}",
            a.status,
            a.body
        );
    }
    // A JSON body under another content type, or none: 415 before any work.
    let mut refused = Vec::new();
    for (what, content_type) in [
        ("text/plain", Some("text/plain")),
        ("form", Some("application/x-www-form-urlencoded")),
        ("no content type", None),
    ] {
        let mut request = env
            .http
            .post(format!("{}/api/orders", env.gateway))
            .body(SEED);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let a = env.send(request).await.expect("the gateway answers");
        table.push(format!("{what}: {} {}", a.status, a.body["error"]));
        assert_eq!(a.status, 415, "{what}: {:?}", a.body);
        assert_eq!(a.body["error"], "unsupported_media_type", "{what}");
        refused.push(a);
    }
    let direct = env
        .send(
            env.http
                .post(format!("http://127.0.0.1:{}/orders", env.ports.orders))
                .header("content-type", "text/plain")
                .body(SEED),
        )
        .await
        .unwrap();
    assert_eq!(
        direct.status, 415,
        "order-service itself: {:?}",
        direct.body
    );
    // Request headers over the budget (16 KiB by default): 431 with a JSON error.
    let header_100k = env
        .send(
            env.http
                .get(format!("{}/api/users/user123", env.gateway))
                .header("x-junk", "j".repeat(100 * 1024)),
        )
        .await
        .expect("the gateway answers");
    table.push(format!("100 KiB header: {}", header_100k.status));
    assert_eq!(header_100k.status, 431, "{:?}", header_100k.body);
    assert_eq!(header_100k.body["error"], "request_header_fields_too_large");
    refused.push(header_100k);
    for a in &refused {
        let span = server_span(&env, a).await;
        assert_eq!(
            span.attr("http.response.status_code"),
            Some(a.status.to_string().as_str())
        );
        assert!(span.integers.contains("http.response.status_code"));
        assert!(
            span.events.iter().any(|e| e == "request_refused"),
            "{} span says why: {:?}",
            a.status,
            span.events
        );
        assert!(span.error.is_none(), "a 4xx is the caller's error");
    }
    // Past hyper's own header limits: refused by the HTTP layer, never a 5xx.
    let huge = env
        .send(
            env.http
                .get(format!("{}/api/users/user123", env.gateway))
                .header("x-junk", "j".repeat(500 * 1024)),
        )
        .await;
    let many = {
        let mut r = env.http.get(format!("{}/api/users/user123", env.gateway));
        for i in 0..200 {
            r = r.header(format!("x-h{i}"), "v");
        }
        env.send(r).await
    };
    table.push(format!(
        "500 KiB header: {:?}; 200 headers: {:?}",
        huge.as_ref().map(|a| a.status),
        many.as_ref().map(|a| a.status)
    ));
    for a in [&huge, &many].into_iter().flatten() {
        assert!(a.status < 500, "{}", a.status);
    }
    let after = env.order_count().await;
    let healthy = env
        .send(env.http.get(format!("{}/api/users/user123", env.gateway)))
        .await
        .unwrap();
    println!(
        "BAD INPUT: {} requests, orders written {}, gateway healthy afterwards: {}\n  {}",
        table.len(),
        after - before,
        healthy.status,
        table.join("\n  ")
    );
    assert_eq!(after, before, "bad input wrote orders");
    assert_eq!(healthy.status, 200);
    env.finish().await;
}

/// The gateway's SERVER span of the request answered by `a`.
async fn server_span(env: &Env, a: &Answer) -> tracectl::model::Span {
    let id = a.trace_id.clone().expect("a traceparent response header");
    let t = env
        .receiver
        .store
        .wait_for(&id, Duration::from_secs(10), |t| {
            t.spans
                .iter()
                .any(|s| s.service == "api-gateway" && s.kind == Kind::Server)
        })
        .await;
    t.spans
        .into_iter()
        .find(|s| s.service == "api-gateway" && s.kind == Kind::Server)
        .unwrap_or_else(|| panic!("no gateway SERVER span in trace {id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_conflicting_trace_headers_never_give_a_wrong_parent() {
    let env = Setup::new().start("trace-headers").await;
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";
    let valid = format!("00-{TRACE}-{SPAN}-01");
    let get = |headers: Vec<(&'static str, String)>| {
        let mut r = env.http.get(format!("{}/api/users/user123", env.gateway));
        for (k, v) in headers {
            r = r.header(k, v);
        }
        r
    };
    // Malformed traceparents: each starts a new trace, with no parent.
    let malformed = [
        "garbage".to_owned(),
        format!("00-{}-{SPAN}-01", "0".repeat(32)),
        format!("00-{TRACE}-{}-01", "0".repeat(16)),
        format!("ff-{TRACE}-{SPAN}-01"),
        format!("00-{}-{SPAN}-01", TRACE.to_uppercase()),
        format!("00-{TRACE}-{SPAN}-01-extra"),
        format!("00-{TRACE}-{SPAN}"),
        format!("00-{TRACE}x-{SPAN}-01"),
        format!("00-{}-{SPAN}-01", "a".repeat(4000)),
    ];
    let mut lines = Vec::new();
    for tp in &malformed {
        let a = env
            .send(get(vec![("traceparent", tp.clone())]))
            .await
            .unwrap();
        assert_eq!(a.status, 200, "{tp}");
        let s = server_span(&env, &a).await;
        lines.push(format!(
            "traceparent {:?}: parent {:?}",
            &tp[..tp.len().min(60)],
            s.parent_id
        ));
        assert_eq!(s.parent_id, None, "{tp} gave the span a parent");
        assert_ne!(s.trace_id, TRACE, "{tp} continued the trace");
    }
    // Valid traceparent with an oversized tracestate (W3C: at most 32
    // members, 512 characters): the parent is kept.
    let long_state = (0..40)
        .map(|i| format!("k{i}=v{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let a = env
        .send(get(vec![
            ("traceparent", valid.clone()),
            ("tracestate", long_state),
        ]))
        .await
        .unwrap();
    let s = server_span(&env, &a).await;
    assert_eq!(
        (s.trace_id.as_str(), s.parent_id.as_deref()),
        (TRACE, Some(SPAN))
    );
    lines.push("valid traceparent + 40-member tracestate: parent kept".into());
    // Conflicting formats: W3C trace context is what the gateway reads
    // (OTEL_PROPAGATORS=tracecontext,baggage); jaeger and b3 headers lose.
    let a = env
        .send(get(vec![
            ("traceparent", valid.clone()),
            (
                "uber-trace-id",
                "1111111111111111:2222222222222222:0:1".into(),
            ),
            (
                "b3",
                "33333333333333333333333333333333-4444444444444444-1".into(),
            ),
            ("x-b3-traceid", "55555555555555555555555555555555".into()),
        ]))
        .await
        .unwrap();
    let s = server_span(&env, &a).await;
    assert_eq!(
        (s.trace_id.as_str(), s.parent_id.as_deref()),
        (TRACE, Some(SPAN))
    );
    lines.push("traceparent + uber-trace-id + b3: the traceparent wins".into());
    // Only non-W3C headers: not read by default, so a new root.
    let a = env
        .send(get(vec![
            ("uber-trace-id", "zz:yy:0:1".into()),
            ("b3", "not-b3".into()),
        ]))
        .await
        .unwrap();
    assert_eq!(server_span(&env, &a).await.parent_id, None);
    // Two different traceparent headers: W3C trace context says the value is
    // invalid, so the gateway continues neither and starts a new trace.
    let other = format!("00-{}-{}-01", "b".repeat(32), "c".repeat(16));
    let a = env
        .send(
            env.http
                .get(format!("{}/api/users/user123", env.gateway))
                .header("traceparent", valid.clone())
                .header("traceparent", other.clone()),
        )
        .await
        .unwrap();
    let s = server_span(&env, &a).await;
    assert_eq!(s.parent_id, None);
    assert!(![TRACE, "b".repeat(32).as_str()].contains(&s.trace_id.as_str()));
    lines.push(format!("two traceparent headers: parent {:?}", s.parent_id));
    // Baggage from outside is dropped at the gateway (trust boundary),
    // whatever its size or shape. These requests share a trace of their own.
    let baggage_trace = "d".repeat(32);
    let baggage_parent = format!("00-{baggage_trace}-{SPAN}-01");
    let baggages = [
        "user.id=evil-user,order.id=evil-order".to_owned(),
        format!("user.id=evil-user,blob={}", "x".repeat(9000)),
        (0..200)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(","),
        ";;==,,%%=%".to_owned(),
    ];
    let requests = baggages.len();
    for baggage in baggages {
        let a = env
            .send(get(vec![
                ("traceparent", baggage_parent.clone()),
                ("baggage", baggage),
            ]))
            .await
            .unwrap();
        assert_eq!(a.status, 200);
    }
    // Every span of those requests has arrived: both services' SERVER spans
    // and user-service's database span, once per request.
    let per_request = ["GET /api/users/{id}", "GET /users/{id}", "SELECT users"];
    let trace = env
        .receiver
        .store
        .wait_for(&baggage_trace, Duration::from_secs(15), |t| {
            per_request
                .iter()
                .all(|name| t.spans.iter().filter(|s| s.name == *name).count() >= requests)
        })
        .await;
    for name in per_request {
        assert_eq!(
            trace.spans.iter().filter(|s| s.name == name).count(),
            requests,
            "{name}"
        );
    }
    let tainted: Vec<String> = env
        .receiver
        .store
        .spans()
        .into_iter()
        .filter(|s| s.attributes.values().any(|v| v.starts_with("evil-")))
        .map(|s| format!("{} {}", s.service, s.name))
        .collect();
    assert!(
        tainted.is_empty(),
        "incoming baggage reached spans: {tainted:?}"
    );
    lines.push("incoming baggage (plain, 9 KB, 200 members, garbage): dropped".into());
    println!("TRACE HEADERS:\n  {}", lines.join("\n  "));
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injection_slows_or_fails_the_named_step_and_is_off_by_default() {
    // Off by default: the other tests' stacks set no FAULTS; here, a stack
    // with a delay on the user lookup and every stock check failing.
    let env = Setup::new()
        .env("user-service", "FAULTS", "lookup-user:delay=300ms")
        .env("inventory-service", "FAULTS", "check-stock:error=1")
        .start("fault-injection")
        .await;
    let a = env
        .send(env.http.get(format!("{}/api/users/user123", env.gateway)))
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    assert!(a.elapsed >= Duration::from_millis(300), "{:?}", a.elapsed);
    let id = a.trace_id.clone().unwrap();
    let t = env
        .receiver
        .store
        .wait_for(&id, Duration::from_secs(10), |t| {
            // The delay span and its parent, which ends (and is exported) later.
            t.spans
                .iter()
                .any(|s| s.name == "injected-delay lookup-user")
                && t.spans
                    .iter()
                    .any(|s| s.service == "user-service" && s.kind == Kind::Server)
        })
        .await;
    let delay = t
        .spans
        .iter()
        .find(|s| s.name == "injected-delay lookup-user")
        .unwrap_or_else(|| panic!("{}", tracectl::waterfall::render(&t)));
    assert_eq!(delay.attr("fault.injected"), Some("true"));
    assert!(delay.duration_ns >= 300_000_000);
    let server = t
        .spans
        .iter()
        .find(|s| s.service == "user-service" && s.kind == Kind::Server)
        .unwrap();
    assert_eq!(delay.parent_id.as_deref(), Some(server.span_id.as_str()));

    // A failing stock check: the order is still accepted (the seed's rule)
    // and the trace shows the injected error where it happened.
    let order = env.order(SEED).await.unwrap();
    assert_eq!(order.status, 201, "{:?}", order.body);
    let id = order.trace_id.clone().unwrap();
    let t = env
        .receiver
        .store
        .wait_for(&id, Duration::from_secs(10), |t| {
            t.spans.iter().any(|s| s.name == "POST /check")
        })
        .await;
    let check = t.spans.iter().find(|s| s.name == "POST /check").unwrap();
    assert!(check.error.is_some(), "{}", tracectl::waterfall::render(&t));
    assert!(
        check
            .event_attributes
            .iter()
            .any(|(e, k, v)| e == "exception" && k == "exception.type" && v == "injected_fault"),
        "{check:?}"
    );
    assert_eq!(check.attr("fault.injected"), Some("true"));
    println!(
        "FAULT INJECTION: user lookup took {:?} with a 300 ms injected delay; a stock check failed with {:?}",
        a.elapsed, check.error
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_slower_than_the_server_timeout_is_answered_408_and_its_span_says_why() {
    let env = Setup::new()
        .env("user-service", "FAULTS", "lookup-user:delay=5000ms")
        .env("user-service", "SERVER_REQUEST_TIMEOUT_MS", "1000")
        .start("server-timeout")
        .await;
    let direct = env
        .send(env.http.get(format!(
            "http://127.0.0.1:{}/users/user123",
            env.ports.users
        )))
        .await
        .expect("user-service answers");
    assert_eq!(direct.status, 408, "{:?}", direct.body);
    assert_eq!(direct.body["error"], "request_timeout");
    assert!(
        direct.elapsed < Duration::from_secs(4),
        "{:?}",
        direct.elapsed
    );
    let a = env
        .send(env.http.get(format!("{}/api/users/user123", env.gateway)))
        .await
        .expect("the gateway answers");
    let id = a.trace_id.clone().expect("a traceparent");
    let t = env
        .receiver
        .store
        .wait_for(&id, Duration::from_secs(10), |t| {
            t.spans
                .iter()
                .any(|s| s.service == "user-service" && s.kind == Kind::Server)
        })
        .await;
    let server = t
        .spans
        .iter()
        .find(|s| s.service == "user-service" && s.kind == Kind::Server)
        .unwrap_or_else(|| panic!("{}", tracectl::waterfall::render(&t)));
    println!(
        "SERVER TIMEOUT: user-service with a 5 s delay and SERVER_REQUEST_TIMEOUT_MS=1000: \
         gateway answered {} {} after {:?}; user-service span {} ms, error {:?}",
        a.status,
        a.body,
        a.elapsed,
        server.duration_ns / 1_000_000,
        server.error
    );
    // user-service answered 408; for the gateway's caller that is a 504.
    assert_eq!(a.status, 504, "{:?}", a.body);
    assert_eq!(a.body["error"], "upstream_unavailable");
    assert!(a.elapsed < Duration::from_secs(4), "{:?}", a.elapsed);
    assert_eq!(server.attr("http.response.status_code"), Some("408"));
    assert_eq!(server.error.as_deref(), Some("timeout"));
    assert!(server.events.iter().any(|e| e == "exception"));
    env.finish().await;
}
