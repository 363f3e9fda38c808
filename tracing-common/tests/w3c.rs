//! W3C Trace Context Level 1 and W3C Baggage at the HTTP level: a request
//! with the given headers goes into a service built on `ServerTracingLayer`
//! whose handler makes one call with `http_client`; the test reads the
//! headers of that outgoing call. The cases follow the specification's
//! processing model and the W3C test suite's cases (w3c/trace-context
//! `test/test.py` at acab820, whose key grammar lets `@` appear anywhere
//! after the first character).

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use http::{HeaderMap, HeaderName, HeaderValue};
use tracing_common::axum::{ServerTracingLayer, TrustPolicy};
use tracing_common_testing::capture;

const TRACE: &str = "12345678901234567890123456789012";
const PARENT: &str = "1234567890123456";
const TP: &str = "00-12345678901234567890123456789012-1234567890123456-01";
const TP_UNSAMPLED: &str = "00-12345678901234567890123456789012-1234567890123456-00";

/// What the service's outgoing call carried.
#[derive(Debug)]
struct Outgoing {
    traceparent: Vec<String>,
    tracestate: Vec<String>,
    baggage: Vec<String>,
}

impl Outgoing {
    fn trace_id(&self) -> &str {
        assert_eq!(self.traceparent.len(), 1, "{self:?}");
        &self.traceparent[0][3..35]
    }
    fn parent_id(&self) -> &str {
        &self.traceparent[0][36..52]
    }
    fn flags(&self) -> &str {
        &self.traceparent[0][53..]
    }
    fn continued(&self) -> bool {
        self.trace_id() == TRACE
    }
    /// The outgoing `tracestate` members (the client writes one header).
    fn state(&self) -> Vec<String> {
        self.tracestate
            .iter()
            .flat_map(|h| h.split(','))
            .map(str::to_owned)
            .collect()
    }
}

struct Harness {
    service: String,
    client: reqwest::Client,
}

impl Harness {
    async fn start() -> Self {
        capture();
        let echo = Router::new().route(
            "/echo",
            get(|headers: HeaderMap| async move {
                let all = |name: &str| -> Vec<String> {
                    headers
                        .get_all(name)
                        .iter()
                        .map(|v| v.to_str().unwrap().to_owned())
                        .collect()
                };
                serde_json::json!({
                    "traceparent": all("traceparent"),
                    "tracestate": all("tracestate"),
                    "baggage": all("baggage"),
                })
                .to_string()
            }),
        );
        let echo_addr = serve(echo).await;
        let client = tracing_common::reqwest::http_client(Duration::from_secs(5)).unwrap();
        let app = Router::new()
            .route(
                "/call",
                get(
                    |State((client, url)): State<(
                        tracing_common::reqwest::TracedClient,
                        String,
                    )>| async move {
                        client.get(url).send().await.unwrap().text().await.unwrap()
                    },
                ),
            )
            .layer(ServerTracingLayer::new(TrustPolicy::INTERNAL))
            .with_state((client, format!("http://{echo_addr}/echo")));
        let addr = serve(app).await;
        Self {
            service: format!("http://{addr}/call"),
            client: reqwest::Client::new(),
        }
    }

    async fn send(&self, headers: &[(&str, &str)]) -> Outgoing {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let body = self
            .client
            .get(&self.service)
            .headers(map)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let list = |k: &str| -> Vec<String> {
            json[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        Outgoing {
            traceparent: list("traceparent"),
            tracestate: list("tracestate"),
            baggage: list("baggage"),
        }
    }
}

async fn serve(router: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

#[tokio::test]
async fn a_valid_traceparent_is_continued_with_a_new_parent_id_and_its_sampled_flag() {
    let h = Harness::start().await;
    for (name, flags) in [
        ("traceparent", "01"),
        ("TraceParent", "01"),
        ("TRACEPARENT", "01"),
    ] {
        let out = h.send(&[(name, TP)]).await;
        assert!(out.continued(), "{name}: {out:?}");
        assert_ne!(out.parent_id(), PARENT);
        assert_eq!(out.flags(), flags);
    }
    let out = h.send(&[("traceparent", TP_UNSAMPLED)]).await;
    assert!(out.continued(), "{out:?}");
    assert_eq!(out.flags(), "00");
    // Version 00 defines only the sampled flag; other bits are not passed on.
    let out = h
        .send(&[(
            "traceparent",
            "00-12345678901234567890123456789012-1234567890123456-09",
        )])
        .await;
    assert!(out.continued());
    assert_eq!(out.flags(), "01");
}

#[tokio::test]
async fn no_traceparent_or_one_under_another_name_starts_a_new_trace() {
    let h = Harness::start().await;
    let out = h.send(&[]).await;
    assert_eq!(out.trace_id().len(), 32);
    assert!(out.tracestate.is_empty());
    for name in ["trace-parent", "trace.parent"] {
        let out = h.send(&[(name, TP)]).await;
        assert!(!out.continued(), "{name}: {out:?}");
    }
}

#[tokio::test]
async fn an_invalid_traceparent_starts_a_new_trace_and_its_tracestate_is_dropped() {
    let h = Harness::start().await;
    let invalid = [
        // version 00 is exactly 55 characters
        "00-12345678901234567890123456789012-1234567890123456-01.",
        "00-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
        // version ff is invalid; a version is two lower-case hex digits
        "ff-12345678901234567890123456789012-1234567890123456-01",
        ".0-12345678901234567890123456789012-1234567890123456-01",
        "0.-12345678901234567890123456789012-1234567890123456-01",
        "000-12345678901234567890123456789012-1234567890123456-01",
        "0000-12345678901234567890123456789012-1234567890123456-01",
        "0-12345678901234567890123456789012-1234567890123456-01",
        // a future version must still have a '-' after the flags
        "cc-12345678901234567890123456789012-1234567890123456-01.what-the-future-will-be-like",
        // trace id
        "00-00000000000000000000000000000000-1234567890123456-01",
        "00-.2345678901234567890123456789012-1234567890123456-01",
        "00-1234567890123456789012345678901.-1234567890123456-01",
        "00-123456789012345678901234567890123-1234567890123456-01",
        "00-1234567890123456789012345678901-1234567890123456-01",
        "00-1234567890123456789012345678901A-1234567890123456-01",
        // parent id
        "00-12345678901234567890123456789012-0000000000000000-01",
        "00-12345678901234567890123456789012-.234567890123456-01",
        "00-12345678901234567890123456789012-123456789012345.-01",
        "00-12345678901234567890123456789012-12345678901234567-01",
        "00-12345678901234567890123456789012-123456789012345-01",
        // flags
        "00-12345678901234567890123456789012-1234567890123456-.0",
        "00-12345678901234567890123456789012-1234567890123456-0.",
        "00-12345678901234567890123456789012-1234567890123456-001",
        "00-12345678901234567890123456789012-1234567890123456-1",
    ];
    let mut continued = Vec::new();
    for tp in invalid {
        let out = h
            .send(&[("traceparent", tp), ("tracestate", "foo=1")])
            .await;
        if out.continued() || !out.tracestate.is_empty() {
            continued.push((tp, out));
        }
    }
    assert!(continued.is_empty(), "continued: {continued:#?}");
}

#[tokio::test]
async fn two_traceparent_headers_start_a_new_trace() {
    let h = Harness::start().await;
    let out = h
        .send(&[
            (
                "traceparent",
                "00-12345678901234567890123456789011-1234567890123456-01",
            ),
            ("traceparent", TP),
        ])
        .await;
    assert_ne!(out.trace_id(), "12345678901234567890123456789011");
    assert!(!out.continued());
}

#[tokio::test]
async fn a_future_version_is_read_for_its_first_four_fields_and_written_as_version_00() {
    let h = Harness::start().await;
    for tp in [
        "cc-12345678901234567890123456789012-1234567890123456-01",
        "cc-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
    ] {
        let out = h.send(&[("traceparent", tp)]).await;
        assert!(out.continued(), "{tp}: {out:?}");
        assert!(out.traceparent[0].starts_with("00-"));
        assert_eq!(out.traceparent[0].len(), 55);
    }
}

#[tokio::test]
async fn whitespace_around_traceparent_is_ignored() {
    let h = Harness::start().await;
    for tp in [
        " 00-12345678901234567890123456789012-1234567890123456-01",
        "\t00-12345678901234567890123456789012-1234567890123456-01",
        "00-12345678901234567890123456789012-1234567890123456-01 ",
        "00-12345678901234567890123456789012-1234567890123456-01\t",
        "\t 00-12345678901234567890123456789012-1234567890123456-01 \t",
    ] {
        let out = h.send(&[("traceparent", tp)]).await;
        assert!(out.continued(), "{tp:?}: {out:?}");
    }
}

#[tokio::test]
async fn tracestate_is_passed_on_in_order_from_every_header() {
    let h = Harness::start().await;
    let out = h
        .send(&[("traceparent", TP_UNSAMPLED), ("tracestate", "foo=1,bar=2")])
        .await;
    assert!(out.continued());
    assert_eq!(out.state(), ["foo=1", "bar=2"]);
    for name in ["TraceState", "TRACESTATE"] {
        let out = h
            .send(&[("traceparent", TP_UNSAMPLED), (name, "foo=1")])
            .await;
        assert_eq!(out.state(), ["foo=1"], "{name}");
    }
    for name in ["trace-state", "trace.state"] {
        let out = h
            .send(&[("traceparent", TP_UNSAMPLED), (name, "foo=1")])
            .await;
        assert!(out.tracestate.is_empty(), "{name}: {out:?}");
    }
    let out = h
        .send(&[
            ("traceparent", TP_UNSAMPLED),
            ("tracestate", "foo=1,bar=2"),
            ("tracestate", "rojo=1,congo=2"),
            ("tracestate", "baz=3"),
        ])
        .await;
    assert_eq!(
        out.state(),
        ["foo=1", "bar=2", "rojo=1", "congo=2", "baz=3"]
    );
    // A tracestate without a traceparent is dropped with it.
    let out = h.send(&[("tracestate", "foo=1,bar=2")]).await;
    assert!(out.tracestate.is_empty(), "{out:?}");
}

#[tokio::test]
async fn empty_tracestate_headers_and_whitespace_around_members_are_ignored() {
    let h = Harness::start().await;
    let out = h
        .send(&[("traceparent", TP_UNSAMPLED), ("tracestate", "")])
        .await;
    assert!(out.continued());
    assert!(out.tracestate.is_empty(), "{out:?}");
    for headers in [
        [("tracestate", "foo=1"), ("tracestate", "")],
        [("tracestate", ""), ("tracestate", "foo=1")],
    ] {
        let mut all = vec![("traceparent", TP_UNSAMPLED)];
        all.extend(headers);
        let out = h.send(&all).await;
        assert_eq!(out.state(), ["foo=1"]);
    }
    for state in [
        "foo=1 \t , \t bar=2, \t baz=3",
        "foo=1\t \t,\t \tbar=2,\t \tbaz=3",
        "foo=1,,bar=2, ,baz=3",
    ] {
        let out = h
            .send(&[("traceparent", TP_UNSAMPLED), ("tracestate", state)])
            .await;
        assert_eq!(out.state(), ["foo=1", "bar=2", "baz=3"], "{state:?}");
    }
    for state in [" foo=1", "\tfoo=1", "foo=1 ", "foo=1\t", "\t foo=1 \t"] {
        let out = h
            .send(&[("traceparent", TP_UNSAMPLED), ("tracestate", state)])
            .await;
        assert_eq!(out.state(), ["foo=1"], "{state:?}");
    }
}

#[tokio::test]
async fn thirty_two_members_are_kept_and_thirty_three_discard_the_tracestate() {
    let h = Harness::start().await;
    let member = |i: usize| format!("bar{i:02}={i:02}");
    let header =
        |range: std::ops::RangeInclusive<usize>| range.map(member).collect::<Vec<_>>().join(",");
    let (a, b, c) = (header(1..=10), header(11..=20), header(21..=30));
    let last32 = header(31..=32);
    let last33 = header(31..=33);
    let out = h
        .send(&[
            ("traceparent", TP_UNSAMPLED),
            ("tracestate", &a),
            ("tracestate", &b),
            ("tracestate", &c),
            ("tracestate", &last32),
        ])
        .await;
    let state = out.state();
    assert_eq!(state.len(), 32, "{state:?}");
    assert_eq!(state[0], "bar01=01");
    assert_eq!(state[31], "bar32=32");
    let out = h
        .send(&[
            ("traceparent", TP_UNSAMPLED),
            ("tracestate", &a),
            ("tracestate", &b),
            ("tracestate", &c),
            ("tracestate", &last33),
        ])
        .await;
    assert!(out.continued());
    assert!(out.tracestate.is_empty(), "{out:?}");
}

#[tokio::test]
async fn an_illegal_member_discards_the_tracestate_and_keeps_the_parent() {
    let h = Harness::start().await;
    let long_key = "z".repeat(257);
    let cases = [
        "foo =1".to_owned(),
        "FOO=1".into(),
        "foo.bar=1".into(),
        "@foo=1,bar=2".into(),
        format!("foo=1,{long_key}=1"),
        "foo=bar=baz".into(),
        "foo=,bar=3".into(),
        "foo=1,bar".into(),
    ];
    let mut kept = Vec::new();
    for state in &cases {
        let out = h
            .send(&[("traceparent", TP_UNSAMPLED), ("tracestate", state)])
            .await;
        assert!(out.continued(), "{state:?}");
        if !out.tracestate.is_empty() {
            kept.push((state, out.tracestate));
        }
    }
    assert!(kept.is_empty(), "kept: {kept:#?}");
}

#[tokio::test]
async fn every_legal_key_and_value_character_and_the_longest_keys_are_passed_on() {
    let h = Harness::start().await;
    let key = "abcdefghijklmnopqrstuvwxyz0123456789_-*/";
    let vendor_key = format!("{key}@a-z0-9_-*/");
    let value: String = (0x20u8..=0x7e)
        .filter(|c| *c != b',' && *c != b'=')
        .map(char::from)
        .collect();
    let longest_simple = "z".repeat(256);
    let longest_tenant = format!("{}@{}", "t".repeat(241), "v".repeat(14));
    // The suite's cases since w3c/trace-context#584: `@` is a key character
    // like any other after the first, within the 256-character limit.
    let long_tenant = format!("{}@v", "t".repeat(242));
    let long_system = format!("t@{}", "v".repeat(15));
    for key in [
        key,
        vendor_key.as_str(),
        &longest_simple,
        &longest_tenant,
        &long_tenant,
        &long_system,
        "foo@",
        "foo@@bar",
        "foo@bar@baz",
        "0foo",
    ] {
        let member = format!("{key}={value}");
        let out = h
            .send(&[
                ("traceparent", TP_UNSAMPLED),
                ("tracestate", "foo=1"),
                ("tracestate", &member),
            ])
            .await;
        assert_eq!(out.state(), ["foo=1".to_owned(), member], "{key}");
    }
}

#[tokio::test]
async fn a_tracestate_over_512_characters_loses_long_members_first_then_from_the_right() {
    let h = Harness::start().await;
    let long = format!("big={}", "x".repeat(200));
    // 20 members of 29 characters: 599 with separators, plus the long one.
    let members: Vec<String> = (0..20)
        .map(|i| format!("k{i:02}={}", "v".repeat(25)))
        .collect();
    let mut header = vec![members[0].clone(), long];
    header.extend(members[1..].iter().cloned());
    let header = header.join(",");
    let out = h
        .send(&[("traceparent", TP_UNSAMPLED), ("tracestate", &header)])
        .await;
    let state = out.state();
    assert!(
        out.tracestate[0].len() <= 512,
        "{}",
        out.tracestate[0].len()
    );
    assert!(!state.iter().any(|m| m.starts_with("big=")));
    assert_eq!(state, members[..state.len()], "kept a prefix");
    assert_eq!(state.len(), 17);
}

#[tokio::test]
async fn baggage_from_several_headers_is_combined_within_the_w3c_limits() {
    let h = Harness::start().await;
    let out = h
        .send(&[
            ("traceparent", TP),
            ("baggage", "user.id=user123"),
            ("baggage", "order.id=o-1"),
        ])
        .await;
    let baggage = out.baggage.join(",");
    assert!(baggage.contains("user.id=user123"), "{baggage}");
    assert!(baggage.contains("order.id=o-1"), "{baggage}");
    // 64 members are the least a platform must pass on.
    let many: Vec<String> = (0..64).map(|i| format!("k{i}=v{i}")).collect();
    let out = h
        .send(&[("traceparent", TP), ("baggage", &many.join(","))])
        .await;
    let passed = out.baggage.join(",");
    assert_eq!(passed.split(',').count(), 64, "{passed}");
}
