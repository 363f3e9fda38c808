//! Reading traces from Jaeger: the v1 JSON of `GET /api/traces/{id}` and the
//! OTLP JSON of `GET /api/v3/traces/{id}` and `GET /api/v3/traces?query…`,
//! both into the common model. Parsing is lenient: Jaeger fills fields
//! inconsistently across versions (short ids, missing times, typed tags),
//! and a viewer should show what is there rather than refuse it.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::model::{Kind, Span, Trace};

/// Lower-case hex of `len` characters, left-padded with zeros (Jaeger trims
/// leading zeros of 64-bit ids).
/// Counted in characters, so an id that is not ASCII (a broken or hostile
/// response) is shown as it came, never split inside a character.
fn id(value: &str, len: usize) -> String {
    let s = value.to_ascii_lowercase();
    let chars = s.chars().count();
    if chars >= len {
        s.chars().skip(chars - len).collect()
    } else {
        format!("{}{s}", "0".repeat(len - chars))
    }
}

fn number(value: &Value) -> u64 {
    match value {
        Value::Number(n) => n.as_u64().unwrap_or(0),
        // OTLP JSON encodes 64-bit integers as strings.
        Value::String(s) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Jaeger's two JSON shapes as serde types. Every field is optional and
/// lenient (`text`, `num`, `list`): a field of another type than expected
/// reads as empty rather than refusing the whole response.
mod wire {
    use std::collections::HashMap;

    use serde::Deserialize;
    use serde::de::{DeserializeOwned, Deserializer};
    use serde_json::Value;

    /// Any scalar as text (`null` as empty).
    pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(super::scalar(&Value::deserialize(d)?))
    }

    /// A number, or a number in a string (OTLP JSON's 64-bit integers); 0
    /// for anything else.
    pub fn num<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        Ok(super::number(&Value::deserialize(d)?))
    }

    /// The elements of an array that read as `T`; empty for `null` or a
    /// non-array.
    pub fn list<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Array(items) => items
                .into_iter()
                .filter_map(|v| serde_json::from_value(v).ok())
                .collect(),
            _ => Vec::new(),
        })
    }

    fn map<'de, D: Deserializer<'de>, T: DeserializeOwned>(
        d: D,
    ) -> Result<HashMap<String, T>, D::Error> {
        Ok(serde_json::from_value(Value::deserialize(d)?).unwrap_or_default())
    }

    /// `{"data": [trace, ...]}` of `GET /api/traces/{id}`.
    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub struct V1Trace {
        #[serde(rename = "traceID", deserialize_with = "text")]
        pub trace_id: String,
        #[serde(deserialize_with = "list")]
        pub spans: Vec<V1Span>,
        #[serde(deserialize_with = "map")]
        pub processes: HashMap<String, V1Process>,
        #[serde(deserialize_with = "list")]
        pub warnings: Vec<Value>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub struct V1Process {
        #[serde(rename = "serviceName", deserialize_with = "text")]
        pub service_name: String,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub struct V1Span {
        #[serde(rename = "traceID", deserialize_with = "text")]
        pub trace_id: String,
        #[serde(rename = "spanID", deserialize_with = "text")]
        pub span_id: String,
        #[serde(rename = "operationName", deserialize_with = "text")]
        pub operation_name: String,
        #[serde(deserialize_with = "list")]
        pub references: Vec<V1Reference>,
        #[serde(rename = "startTime", deserialize_with = "num")]
        pub start_time: u64,
        #[serde(deserialize_with = "num")]
        pub duration: u64,
        #[serde(deserialize_with = "list")]
        pub tags: Vec<V1Tag>,
        #[serde(deserialize_with = "list")]
        pub logs: Vec<V1Log>,
        #[serde(rename = "processID", deserialize_with = "text")]
        pub process_id: String,
        pub process: Option<V1Process>,
        #[serde(deserialize_with = "list")]
        pub warnings: Vec<Value>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub struct V1Reference {
        #[serde(rename = "refType", deserialize_with = "text")]
        pub ref_type: String,
        #[serde(rename = "traceID", deserialize_with = "text")]
        pub trace_id: String,
        #[serde(rename = "spanID", deserialize_with = "text")]
        pub span_id: String,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub struct V1Tag {
        #[serde(deserialize_with = "text")]
        pub key: String,
        #[serde(rename = "type", deserialize_with = "text")]
        pub kind: String,
        pub value: Value,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub struct V1Log {
        #[serde(deserialize_with = "list")]
        pub fields: Vec<V1Tag>,
    }

    /// OTLP JSON (`resourceSpans`), as Jaeger's v3 API returns it.
    #[derive(Deserialize, Default)]
    #[serde(default, rename_all = "camelCase")]
    pub struct ResourceSpans {
        pub resource: Resource,
        #[serde(deserialize_with = "list")]
        pub scope_spans: Vec<ScopeSpans>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub struct Resource {
        #[serde(deserialize_with = "list")]
        pub attributes: Vec<KeyValue>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub struct ScopeSpans {
        #[serde(deserialize_with = "list")]
        pub spans: Vec<OtlpSpan>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default, rename_all = "camelCase")]
    pub struct OtlpSpan {
        #[serde(deserialize_with = "text")]
        pub trace_id: String,
        #[serde(deserialize_with = "text")]
        pub span_id: String,
        #[serde(deserialize_with = "text")]
        pub parent_span_id: String,
        #[serde(deserialize_with = "text")]
        pub name: String,
        /// A number (`2`) or its enum name (`"SPAN_KIND_SERVER"`).
        pub kind: Value,
        #[serde(deserialize_with = "num")]
        pub start_time_unix_nano: u64,
        #[serde(deserialize_with = "num")]
        pub end_time_unix_nano: u64,
        #[serde(deserialize_with = "list")]
        pub attributes: Vec<KeyValue>,
        #[serde(deserialize_with = "list")]
        pub events: Vec<Event>,
        #[serde(deserialize_with = "list")]
        pub links: Vec<Link>,
        pub status: Status,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub struct KeyValue {
        #[serde(deserialize_with = "text")]
        pub key: String,
        /// `{"stringValue": ...}`, `{"intValue": "7"}`, `{"arrayValue": ...}`.
        pub value: Value,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub struct Event {
        #[serde(deserialize_with = "text")]
        pub name: String,
    }

    #[derive(Deserialize, Default)]
    #[serde(default, rename_all = "camelCase")]
    pub struct Link {
        #[serde(deserialize_with = "text")]
        pub trace_id: String,
        #[serde(deserialize_with = "text")]
        pub span_id: String,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub struct Status {
        /// A number (`2`) or its enum name (`"STATUS_CODE_ERROR"`).
        pub code: Value,
        #[serde(deserialize_with = "text")]
        pub message: String,
    }
}

/// Traces in a v1 response (`{"data": [trace, ...]}`) or a bare v1 trace.
pub fn parse_v1(body: &Value) -> anyhow::Result<Vec<Trace>> {
    let raw: Vec<wire::V1Trace> = match body.get("data") {
        Some(Value::Array(all)) => all
            .iter()
            .map(|t| serde_json::from_value(t.clone()).unwrap_or_default())
            .collect(),
        Some(Value::Null) | None if body.get("spans").is_some() => {
            vec![serde_json::from_value(body.clone()).unwrap_or_default()]
        }
        _ => bail!("not a Jaeger v1 traces response (no \"data\" array)"),
    };
    Ok(raw.into_iter().map(v1_trace).collect())
}

fn v1_trace(raw: wire::V1Trace) -> Trace {
    let trace_id = id(&raw.trace_id, 32);
    let mut span_warnings = Vec::new();
    let mut spans = Vec::new();
    for span in raw.spans {
        let span_trace = id(&span.trace_id, 32);
        let tags: BTreeMap<String, String> = span
            .tags
            .iter()
            .map(|t| (t.key.clone(), scalar(&t.value)))
            .collect();
        // The parent is what Jaeger's own model calls it: the first
        // CHILD_OF into the same trace, else the first FOLLOWS_FROM into
        // it. Jaeger's OTLP conversion keeps a single FOLLOWS_FROM when a
        // span's parent is also one of its links (a Kafka consumer span
        // and its producer), so that reference is both parent and link.
        let references: Vec<(String, String, bool)> = span
            .references
            .iter()
            .map(|r| {
                (
                    id(&r.trace_id, 32),
                    id(&r.span_id, 16),
                    r.ref_type == "CHILD_OF",
                )
            })
            .collect();
        let child_of = references
            .iter()
            .position(|(t, _, child_of)| *child_of && *t == span_trace);
        let parent_at =
            child_of.or_else(|| references.iter().position(|(t, _, _)| *t == span_trace));
        let parent_id = parent_at.map(|i| references[i].1.clone());
        let links = references
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != child_of)
            .map(|(_, (t, s, _))| (t.clone(), s.clone()))
            .collect();
        for warning in &span.warnings {
            span_warnings.push(format!("span {}: {}", span.span_id, scalar(warning)));
        }
        let service = raw
            .processes
            .get(&span.process_id)
            .or(span.process.as_ref())
            .map(|p| p.service_name.as_str())
            .filter(|name| !name.is_empty())
            .unwrap_or("unknown_service")
            .to_owned();
        let failed = tags.get("error").is_some_and(|v| v == "true")
            || tags.get("otel.status_code").is_some_and(|v| v == "ERROR");
        let error = failed.then(|| {
            tags.get("error.type")
                .or_else(|| tags.get("otel.status_description"))
                .cloned()
                .unwrap_or_else(|| "error".into())
        });
        spans.push(Span {
            trace_id: span_trace,
            span_id: id(&span.span_id, 16),
            parent_id,
            service,
            name: span.operation_name,
            kind: Kind::from_tag(tags.get("span.kind").map_or("", String::as_str)),
            start_ns: span.start_time.saturating_mul(1000),
            duration_ns: span.duration.saturating_mul(1000),
            error,
            links,
            event_attributes: Vec::new(),
            integers: span
                .tags
                .iter()
                .filter(|t| t.kind == "int64")
                .map(|t| t.key.clone())
                .collect(),
            events: span
                .logs
                .iter()
                .filter_map(|log| {
                    log.fields
                        .iter()
                        .find(|f| f.key == "event")
                        .map(|f| scalar(&f.value))
                })
                .collect(),
            attributes: tags,
        });
    }
    let mut trace = Trace::new(trace_id, spans);
    trace.notes.extend(raw.warnings.iter().map(scalar));
    trace.notes.extend(span_warnings);
    trace
}

/// OTLP JSON attribute value (`{"stringValue": ...}`, `{"intValue": "7"}`, ...).
fn otlp_value(value: &Value) -> String {
    let Some(object) = value.as_object() else {
        return scalar(value);
    };
    match object.iter().next() {
        Some((kind, inner)) if kind == "arrayValue" => format!(
            "[{}]",
            inner["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(otlp_value)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some((_, inner)) => scalar(inner),
        None => String::new(),
    }
}

fn otlp_attributes(list: &[wire::KeyValue]) -> BTreeMap<String, String> {
    list.iter()
        .map(|kv| (kv.key.clone(), otlp_value(&kv.value)))
        .collect()
}

/// Traces in a v3 response (`{"result": {"resourceSpans": [...]}}`), or a
/// bare OTLP JSON `{"resourceSpans": [...]}`.
pub fn parse_v3(body: &Value) -> anyhow::Result<Vec<Trace>> {
    if let Some(error) = body.get("error") {
        bail!("Jaeger answered with an error: {error}");
    }
    let data = body.get("result").unwrap_or(body);
    let Some(Value::Array(resource_spans)) = data.get("resourceSpans") else {
        bail!("not an OTLP JSON traces response (no \"resourceSpans\")");
    };
    let mut spans = Vec::new();
    for rs in resource_spans {
        let rs: wire::ResourceSpans = serde_json::from_value(rs.clone()).unwrap_or_default();
        let service = otlp_attributes(&rs.resource.attributes)
            .remove("service.name")
            .unwrap_or_else(|| "unknown_service".into());
        for span in rs.scope_spans.into_iter().flat_map(|ss| ss.spans) {
            let attributes = otlp_attributes(&span.attributes);
            let parent = id(&span.parent_span_id, 16);
            let start = span.start_time_unix_nano;
            let error = (number(&span.status.code) == 2 || span.status.code == "STATUS_CODE_ERROR")
                .then(|| {
                    attributes
                        .get("error.type")
                        .cloned()
                        .or_else(|| {
                            (!span.status.message.is_empty()).then(|| span.status.message.clone())
                        })
                        .unwrap_or_else(|| "error".into())
                });
            let kind = match &span.kind {
                Value::String(s) => {
                    Kind::from_tag(&s.trim_start_matches("SPAN_KIND_").to_ascii_lowercase())
                }
                other => Kind::from_otlp(number(other) as i64),
            };
            spans.push(Span {
                trace_id: id(&span.trace_id, 32),
                span_id: id(&span.span_id, 16),
                parent_id: (parent.chars().any(|c| c != '0')).then_some(parent),
                service: service.clone(),
                name: span.name,
                kind,
                start_ns: start,
                duration_ns: span.end_time_unix_nano.saturating_sub(start),
                error,
                links: span
                    .links
                    .iter()
                    .map(|l| (id(&l.trace_id, 32), id(&l.span_id, 16)))
                    .collect(),
                event_attributes: Vec::new(),
                integers: span
                    .attributes
                    .iter()
                    .filter(|kv| kv.value.get("intValue").is_some())
                    .map(|kv| kv.key.clone())
                    .collect(),
                events: span.events.into_iter().map(|e| e.name).collect(),
                attributes,
            });
        }
    }
    let mut traces = Trace::group(spans);
    // Jaeger's v3 API carries its warnings as a span attribute.
    for trace in &mut traces {
        let notes: Vec<String> = trace
            .spans
            .iter()
            .filter_map(|s| {
                let text = s.attributes.get(JAEGER_WARNINGS)?;
                Some(format!(
                    "span {}: {}",
                    s.span_id,
                    text.trim_matches(['[', ']'])
                ))
            })
            .collect();
        trace.notes.extend(notes);
    }
    Ok(traces)
}

/// The attribute under which Jaeger's v3 API returns its warnings about a span.
const JAEGER_WARNINGS: &str = "@jaeger@warnings";

/// Either shape, told apart by its top-level key.
pub fn parse(body: &Value) -> anyhow::Result<Vec<Trace>> {
    if let Some(error) = body.get("error") {
        bail!("Jaeger answered with an error: {error}");
    }
    if let Some(errors) = body.get("errors").filter(|e| !e.is_null()) {
        bail!("Jaeger answered with errors: {errors}");
    }
    if body.get("result").is_some() || body.get("resourceSpans").is_some() {
        parse_v3(body)
    } else {
        parse_v1(body)
    }
}

/// A client for one Jaeger query endpoint (`http://host:16686`).
pub struct Jaeger {
    base: String,
    http: reqwest::Client,
}

/// The last `lookback` up to now, as times since the epoch: the window of
/// every "in the last M minutes" query.
pub(crate) fn last(lookback: Duration) -> std::ops::Range<Duration> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.saturating_sub(lookback)..now
}

/// The HTTP client tracectl reads a backend's API with (Jaeger, Prometheus):
/// no answer within 10 s is an error, not a hang.
pub(crate) fn api_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
}

impl Jaeger {
    pub fn new(base: &str) -> anyhow::Result<Self> {
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http: api_client()?,
        })
    }

    async fn get(&self, path_and_query: &str) -> anyhow::Result<Option<Value>> {
        let url = format!("{}{path_and_query}", self.base);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            bail!("GET {url}: {}", response.status());
        }
        Ok(Some(
            response
                .json()
                .await
                .with_context(|| format!("GET {url}: not JSON"))?,
        ))
    }

    /// One trace by id, from the v3 API (falling back to v1 for older Jaegers).
    pub async fn trace(&self, trace_id: &str) -> anyhow::Result<Option<Trace>> {
        let wanted = trace_id.to_ascii_lowercase();
        for path in [
            format!("/api/v3/traces/{wanted}"),
            format!("/api/traces/{wanted}"),
        ] {
            if let Some(body) = self.get(&path).await? {
                return Ok(parse(&body)?.into_iter().find(|t| t.trace_id == wanted));
            }
        }
        Ok(None)
    }

    /// Traces of `service` in the last `lookback` lasting at least
    /// `min_duration`, slowest first.
    pub async fn slowest(
        &self,
        service: &str,
        min_duration: Duration,
        lookback: Duration,
        limit: usize,
    ) -> anyhow::Result<Vec<Trace>> {
        let depth = (limit * 5).clamp(20, 1000);
        let mut traces = self.find(service, lookback, min_duration, depth).await?;
        traces.retain(|t| t.duration_ns() >= min_duration.as_nanos() as u64);
        traces.sort_by_key(|t| std::cmp::Reverse(t.duration_ns()));
        traces.truncate(limit);
        Ok(traces)
    }

    /// The `limit` slowest requests `service` served in the last `lookback`
    /// (each trace with the index of the service's topmost span,
    /// [`crate::critical::request_of`]), slowest first, from the `depth` most
    /// recent traces Jaeger finds for it.
    pub async fn slowest_requests(
        &self,
        service: &str,
        lookback: Duration,
        depth: usize,
        limit: usize,
    ) -> anyhow::Result<Vec<(Trace, usize)>> {
        let traces = self
            .find(service, lookback, Duration::ZERO, depth.clamp(1, 10_000))
            .await?;
        let mut requests: Vec<(Trace, usize)> = traces
            .into_iter()
            .filter_map(|t| crate::critical::request_of(&t, service).map(|i| (t, i)))
            .collect();
        requests.sort_by_key(|(t, i)| std::cmp::Reverse(t.spans[*i].duration_ns));
        requests.truncate(limit);
        Ok(requests)
    }

    /// Traces of `service` in the last `lookback` in which one of its own
    /// spans failed (status ERROR), newest first, from the `depth` most
    /// recent traces Jaeger finds for the service.
    pub async fn errors(
        &self,
        service: &str,
        lookback: Duration,
        depth: usize,
        limit: usize,
    ) -> anyhow::Result<Vec<Trace>> {
        let mut traces = self
            .find(service, lookback, Duration::ZERO, depth.clamp(1, 10_000))
            .await?;
        traces.retain(|t| failed_span(t, service).is_some());
        traces.sort_by_key(|t| std::cmp::Reverse(t.start_ns()));
        traces.truncate(limit);
        Ok(traces)
    }

    /// The v3 search: traces with a span of `service` that started in the
    /// last `lookback`, at most `depth` of them.
    async fn find(
        &self,
        service: &str,
        lookback: Duration,
        min_duration: Duration,
        depth: usize,
    ) -> anyhow::Result<Vec<Trace>> {
        self.search(service, None, last(lookback), min_duration, depth)
            .await
    }

    /// The v3 search: traces with a span of `service` (named `operation`,
    /// when given) that started within `window` (since the epoch, whole
    /// seconds), lasting at least `min_duration`, at most `depth` of them.
    pub async fn search(
        &self,
        service: &str,
        operation: Option<&str>,
        window: std::ops::Range<Duration>,
        min_duration: Duration,
        depth: usize,
    ) -> anyhow::Result<Vec<Trace>> {
        // How many traces to look at: Jaeger up to 2.13 reads
        // `query.num_traces` (and answers 500 without it), later versions
        // `query.search_depth`; each ignores the other's name.
        let mut query = format!(
            "/api/v3/traces?query.service_name={}&query.start_time_min={}&query.start_time_max={}&query.num_traces={depth}&query.search_depth={depth}",
            encode(service),
            rfc3339(window.start),
            rfc3339(window.end),
        );
        if let Some(operation) = operation {
            query.push_str(&format!("&query.operation_name={}", encode(operation)));
        }
        if !min_duration.is_zero() {
            query.push_str(&format!(
                "&query.duration_min={}ms",
                min_duration.as_millis()
            ));
        }
        let Some(body) = self.get(&query).await? else {
            return Ok(Vec::new());
        };
        parse(&body)
    }
}

/// The first span of `service` in `trace` whose status is ERROR, by start.
pub fn failed_span<'t>(trace: &'t Trace, service: &str) -> Option<&'t crate::model::Span> {
    trace
        .spans
        .iter()
        .filter(|s| s.service == service && s.error.is_some())
        .min_by_key(|s| s.start_ns)
}

/// Percent-encodes everything but unreserved characters (RFC 3986), for a
/// query parameter.
pub fn encode(s: &str) -> String {
    const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

/// `2026-11-23T10:00:00Z`, URL-encoded, from a duration since the epoch.
fn rfc3339(since_epoch: Duration) -> String {
    let at = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH
        + chrono::TimeDelta::seconds(since_epoch.as_secs() as i64);
    encode(&at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_padded_trimmed_and_never_split_inside_a_character() {
        assert_eq!(id("ABC", 16), "0000000000000abc");
        assert_eq!(
            id("4bf92f3577b34da6a3ce929d0e0e4736", 16),
            "a3ce929d0e0e4736"
        );
        assert_eq!(id("", 16), "0".repeat(16));
        assert_eq!(id("é", 4), "000é");
        assert_eq!(id("ééééé", 4), "éééé");
        assert_eq!(id("00f067aa0ba902bä", 16), "00f067aa0ba902bä");
        assert_eq!(id("", 4), "0000");
        // A whole response with such ids parses instead of panicking.
        let body = serde_json::json!({"data": [{"traceID": "ü", "spans": [
            {"traceID": "ü", "spanID": "日本", "operationName": "x", "references": []}
        ], "processes": {}}]});
        let traces = parse_v1(&body).unwrap();
        assert_eq!(traces[0].spans[0].span_id, "00000000000000日本");
        // Fields of another type read as empty, and a truncated id is
        // padded, instead of refusing the response.
        let body = serde_json::json!({"data": [{"traceID": "abc", "spans": [
            {"traceID": 7, "spanID": "12", "operationName": null, "references": "none",
             "startTime": "10", "duration": true, "tags": [{"key": "span.kind", "value": "server"}, 5]}
        ], "processes": []}]});
        let span = &parse_v1(&body).unwrap()[0].spans[0];
        assert_eq!(
            (
                span.trace_id.as_str(),
                span.span_id.as_str(),
                span.name.as_str()
            ),
            ("00000000000000000000000000000007", "0000000000000012", "")
        );
        assert_eq!(
            (span.start_ns, span.duration_ns, span.kind),
            (10_000, 0, Kind::Server)
        );
        assert_eq!(span.service, "unknown_service");
    }

    #[test]
    fn rfc3339_is_correct_for_known_instants() {
        assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00%3A00%3A00Z");
        assert_eq!(
            rfc3339(Duration::from_secs(1_795_435_200)),
            "2026-11-23T12%3A00%3A00Z"
        );
        assert_eq!(
            rfc3339(Duration::from_secs(951_782_400)),
            "2000-02-29T00%3A00%3A00Z"
        );
    }

    #[test]
    fn short_ids_are_padded_and_long_ones_kept() {
        assert_eq!(id("2", 16), "0000000000000002");
        assert_eq!(
            id("83A9EFD15C1C98A977E0711CC93EE28B", 32),
            "83a9efd15c1c98a977e0711cc93ee28b"
        );
    }
}
