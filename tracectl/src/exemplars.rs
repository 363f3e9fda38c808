//! From a latency spike to the traces that made it: the exemplars (trace id,
//! span id, duration) that Jaeger's spanmetrics connector attaches to its
//! duration histogram, as Prometheus stored them
//! (`--enable-feature=exemplar-storage`), read through Prometheus's
//! `GET /api/v1/query_exemplars`.
//!
//! The connector keeps the first few spans of each series per flush
//! (`max_per_data_point`) and Prometheus's client files each under the bucket
//! its duration falls in, one per bucket: a slow bucket's exemplar is a slow
//! span, and its trace id is what `tracectl show` opens.

use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

/// The connector's duration histogram as the prometheus exporter names it
/// (namespace `traces.span.metrics`, unit ms).
pub const HISTOGRAM: &str = "traces_span_metrics_duration_milliseconds_bucket";

/// One exemplar: a span that fell into a bucket of the histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub trace_id: String,
    pub span_id: String,
    pub service: String,
    pub operation: String,
    /// The span's duration, in milliseconds.
    pub duration_ms: f64,
    /// When the connector flushed it (seconds since the epoch), not when
    /// the span ran: at most one flush interval after its end.
    pub at_s: f64,
}

/// `query_exemplars`' answer (Prometheus's `docs/querying/api.md`).
#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Vec<Series>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Series {
    series_labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    exemplars: Vec<Stored>,
}

#[derive(Deserialize)]
struct Stored {
    labels: std::collections::BTreeMap<String, String>,
    /// A decimal string.
    value: String,
    timestamp: f64,
}

/// The exemplars in an answer of `query_exemplars`, each trace once (its
/// longest span, when several of its spans are exemplars), longest first.
pub fn parse(body: &[u8]) -> anyhow::Result<Vec<Exemplar>> {
    let answer: Answer = serde_json::from_slice(body)
        .context("query_exemplars answered something else than its JSON")?;
    if answer.status != "success" {
        bail!(
            "query_exemplars: {}",
            answer.error.unwrap_or_else(|| answer.status.clone())
        );
    }
    let mut found: Vec<Exemplar> = Vec::new();
    for series in answer.data {
        let label = |name: &str| series.series_labels.get(name).cloned().unwrap_or_default();
        for stored in series.exemplars {
            let Some(trace_id) = stored.labels.get("trace_id") else {
                continue;
            };
            let Ok(duration_ms) = stored.value.parse::<f64>() else {
                continue;
            };
            let exemplar = Exemplar {
                trace_id: trace_id.to_ascii_lowercase(),
                span_id: stored.labels.get("span_id").cloned().unwrap_or_default(),
                service: label("service_name"),
                operation: label("span_name"),
                duration_ms,
                at_s: stored.timestamp,
            };
            match found.iter_mut().find(|e| e.trace_id == exemplar.trace_id) {
                Some(known) if known.duration_ms >= exemplar.duration_ms => {}
                Some(known) => *known = exemplar,
                None => found.push(exemplar),
            }
        }
    }
    found.sort_by(|a, b| b.duration_ms.total_cmp(&a.duration_ms));
    Ok(found)
}

/// A PromQL string literal holding `value`.
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The histogram's series of `service` (and `operation`, when given).
pub fn selector(service: &str, operation: Option<&str>) -> String {
    let mut matchers = vec![format!("service_name={}", quoted(service))];
    if let Some(operation) = operation {
        matchers.push(format!("span_name={}", quoted(operation)));
    }
    format!("{HISTOGRAM}{{{}}}", matchers.join(","))
}

/// `500ms`, `1.5s`, `2m` or a bare number of milliseconds, in milliseconds.
pub fn parse_duration_ms(text: &str) -> anyhow::Result<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a duration (e.g. 500ms, 1.5s, 2m)"))?;
    let factor = match unit.trim() {
        "" | "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "us" | "µs" => 1e-3,
        other => bail!("{text:?}: unknown unit {other:?} (ms, s, m)"),
    };
    Ok(number * factor)
}

/// A client for one Prometheus (`http://host:9090`).
pub struct Prometheus {
    base: String,
    http: reqwest::Client,
}

impl Prometheus {
    pub fn new(base: &str) -> anyhow::Result<Self> {
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http: crate::jaeger::api_client()?,
        })
    }

    /// The exemplars of `service` (and `operation`) from the last
    /// `lookback` whose span took at least `above_ms`, each trace once,
    /// longest first.
    pub async fn exemplars(
        &self,
        service: &str,
        operation: Option<&str>,
        above_ms: f64,
        lookback: Duration,
    ) -> anyhow::Result<Vec<Exemplar>> {
        let std::ops::Range { start, end } = crate::jaeger::last(lookback);
        let url = format!(
            "{}/api/v1/query_exemplars?query={}&start={:.3}&end={:.3}",
            self.base,
            crate::jaeger::encode(&selector(service, operation)),
            start.as_secs_f64(),
            end.as_secs_f64()
        );
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .with_context(|| format!("GET {url}"))?;
        if status == reqwest::StatusCode::NOT_FOUND {
            bail!("GET {url}: 404, is this a Prometheus at {}?", self.base);
        }
        let mut found = parse(&body).with_context(|| format!("GET {url}: {status}"))?;
        found.retain(|e| e.duration_ms >= above_ms);
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of Prometheus 3.16's answer (docs/querying/api.md), two
    /// buckets of one series and a second series with the same trace.
    const ANSWER: &str = r#"{"status":"success","data":[
      {"seriesLabels":{"__name__":"traces_span_metrics_duration_milliseconds_bucket","service_name":"user-service","span_name":"GET /users/{id}","le":"1400"},
       "exemplars":[{"labels":{"span_id":"00f067aa0ba902b7","trace_id":"4BF92F3577B34DA6A3CE929D0E0E4736"},"value":"1203.5","timestamp":1796646000.123}]},
      {"seriesLabels":{"__name__":"traces_span_metrics_duration_milliseconds_bucket","service_name":"user-service","span_name":"GET /users/{id}","le":"10"},
       "exemplars":[{"labels":{"span_id":"1111111111111111","trace_id":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},"value":"3.25","timestamp":1796646005}]},
      {"seriesLabels":{"__name__":"traces_span_metrics_duration_milliseconds_bucket","service_name":"user-service","span_name":"SELECT users","le":"4"},
       "exemplars":[{"labels":{"span_id":"2222222222222222","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"},"value":"2.0","timestamp":1796646000.123},
                    {"labels":{"span_id":"3333333333333333"},"value":"1.0","timestamp":1796646000.123}]}
    ]}"#;

    #[test]
    fn each_trace_is_listed_once_with_its_longest_span_longest_first() {
        let found = parse(ANSWER.as_bytes()).unwrap();
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(found[0].operation, "GET /users/{id}");
        assert_eq!(found[0].service, "user-service");
        assert_eq!(found[0].duration_ms, 1203.5);
        assert_eq!(found[0].at_s, 1796646000.123);
        assert_eq!(found[1].duration_ms, 3.25);
    }

    #[test]
    fn an_error_answer_says_why() {
        let error = parse(br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#)
            .unwrap_err();
        assert!(format!("{error:#}").contains("parse error"), "{error:#}");
        assert!(parse(b"<html>").is_err());
    }

    #[test]
    fn label_values_are_quoted_for_promql() {
        assert_eq!(
            selector("user-service", Some(r#"GET "a\b""#)),
            r#"traces_span_metrics_duration_milliseconds_bucket{service_name="user-service",span_name="GET \"a\\b\""}"#
        );
        assert_eq!(
            selector("api-gateway", None),
            r#"traces_span_metrics_duration_milliseconds_bucket{service_name="api-gateway"}"#
        );
    }

    #[test]
    fn durations_read_with_their_units() {
        assert_eq!(parse_duration_ms("500ms").unwrap(), 500.0);
        assert_eq!(parse_duration_ms("1.5s").unwrap(), 1500.0);
        assert_eq!(parse_duration_ms("2m").unwrap(), 120_000.0);
        assert_eq!(parse_duration_ms("250").unwrap(), 250.0);
        assert!(parse_duration_ms("fast").is_err());
        assert!(parse_duration_ms("5h").is_err());
    }
}
