//! The Jaeger remote sampler's HTTP client, and what makes its decisions
//! visible to Jaeger's adaptive sampling.
//!
//! Jaeger serves `GET /sampling?service=NAME` as protobuf JSON, where the
//! legacy `strategyType` field is `"PROBABILISTIC"` or `"RATE_LIMITING"`
//! (older agents send `0` or `1`). The SDK's sampler (opentelemetry_sdk 0.33)
//! only parses `"PROBABILISTIC"` and `"RATELIMITING"`, so a rate-limiting
//! strategy from a real Jaeger fails to parse and is silently ignored. The
//! field is documented as legacy: consumers are to decide by which strategy
//! field is present, which the SDK does. This client therefore rewrites it to
//! a value the SDK accepts and changes nothing else.
//!
//! Jaeger's adaptive sampling counts, per operation, the sampled root spans
//! that say how they were sampled: `sampler.type` (`probabilistic`,
//! `ratelimiting`) and `sampler.param` (the probability or the rate), as
//! Jaeger's own clients wrote them. OpenTelemetry SDKs write neither
//! (jaegertracing/jaeger#6700), so Jaeger never adapts. The client keeps a copy
//! of the strategy the SDK applies ([`Served`], read from the same answers
//! with the SDK's own precedence), and [`Reported`] adds the two attributes to
//! each sampled root span, with the value that applied to its operation.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use opentelemetry::trace::{SpanKind, TraceContextExt, TraceId};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};
use serde::Deserialize;
use serde_json::Value;

/// The strategy the SDK's remote sampler applies now.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Served {
    /// No strategy yet (or an answer without one): the SDK samples with its
    /// default sampler, a trace-id ratio of the initial rate.
    Initial(f64),
    Probabilistic(f64),
    RateLimiting(f64),
    /// A probability per operation (span name), the default for the others.
    PerOperation {
        default: f64,
        operations: HashMap<String, f64>,
    },
}

/// The fields the SDK requires of an answer (`jaeger_remote::remote`): an
/// answer it cannot read leaves its strategy as it was, and so here.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    probabilistic_sampling: Option<Probabilistic>,
    rate_limiting_sampling: Option<RateLimiting>,
    operation_sampling: Option<PerOperation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probabilistic {
    sampling_rate: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RateLimiting {
    max_traces_per_second: i32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PerOperation {
    default_sampling_probability: f64,
    #[allow(dead_code)] // required by the SDK, so required here
    default_lower_bound_traces_per_second: f64,
    per_operation_strategies: Vec<Operation>,
    #[allow(dead_code)]
    default_upper_bound_traces_per_second: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Operation {
    operation: String,
    probabilistic_sampling: Probabilistic,
}

impl Served {
    /// What a (normalised) answer makes the SDK apply, in the SDK's order:
    /// per operation, then rate limiting, then probabilistic; `None` when the
    /// SDK cannot read it and keeps what it had.
    fn after(body: &[u8], initial: f64) -> Option<Served> {
        let answer: Answer = serde_json::from_slice(body).ok()?;
        Some(match answer {
            Answer {
                operation_sampling: Some(per_operation),
                ..
            } => Served::PerOperation {
                default: per_operation.default_sampling_probability,
                operations: per_operation
                    .per_operation_strategies
                    .into_iter()
                    .map(|o| (o.operation, o.probabilistic_sampling.sampling_rate))
                    .collect(),
            },
            Answer {
                rate_limiting_sampling: Some(r),
                ..
            } => Served::RateLimiting(f64::from(r.max_traces_per_second)),
            Answer {
                probabilistic_sampling: Some(p),
                ..
            } => Served::Probabilistic(p.sampling_rate),
            _ => Served::Initial(initial),
        })
    }

    /// `sampler.type` and `sampler.param` for a root span named `operation`.
    fn tags(&self, operation: &str) -> (&'static str, f64) {
        match self {
            Served::Initial(p) | Served::Probabilistic(p) => ("probabilistic", *p),
            Served::RateLimiting(rate) => ("ratelimiting", *rate),
            Served::PerOperation {
                default,
                operations,
            } => (
                "probabilistic",
                operations.get(operation).copied().unwrap_or(*default),
            ),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct JaegerSamplingClient {
    inner: reqwest::Client,
    /// Kept up to date with each answer.
    served: Arc<RwLock<Served>>,
    /// The SDK's default sampler's rate, which applies again after an
    /// answer without a strategy.
    initial: f64,
}

impl JaegerSamplingClient {
    pub fn new(inner: reqwest::Client, served: Arc<RwLock<Served>>, initial: f64) -> Self {
        Self {
            inner,
            served,
            initial,
        }
    }
}

/// The response body with `strategyType` made parseable; bodies that are not
/// a JSON object pass through unchanged (the SDK reports them).
pub(crate) fn normalise(body: Bytes) -> Bytes {
    let Ok(Value::Object(mut response)) = serde_json::from_slice::<Value>(&body) else {
        return body;
    };
    // Protobuf JSON may also carry explicit nulls for absent strategies.
    response.retain(|_, v| !v.is_null());
    let kind = if response.contains_key("rateLimitingSampling")
        && !response.contains_key("operationSampling")
    {
        "RATELIMITING"
    } else {
        "PROBABILISTIC"
    };
    response.insert("strategyType".into(), Value::from(kind));
    serde_json::to_vec(&response).map_or(body, Bytes::from)
}

#[async_trait::async_trait]
impl HttpClient for JaegerSamplingClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let response = self.inner.send_bytes(request).await?.map(normalise);
        if let Some(now) = Served::after(response.body(), self.initial)
            && let Ok(mut served) = self.served.write()
        {
            *served = now;
        }
        Ok(response)
    }
}

/// The remote sampler, adding `sampler.type` and `sampler.param` to the
/// root spans it samples.
#[derive(Debug, Clone)]
pub(crate) struct Reported<S> {
    pub inner: S,
    pub served: Arc<RwLock<Served>>,
}

impl<S: ShouldSample + Clone + 'static> ShouldSample for Reported<S> {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[opentelemetry::trace::Link],
    ) -> SamplingResult {
        let mut result =
            self.inner
                .should_sample(parent_context, trace_id, name, span_kind, attributes, links);
        let is_root = parent_context.is_none_or(|cx| !cx.span().span_context().is_valid());
        if is_root
            && result.decision == SamplingDecision::RecordAndSample
            && let Ok(served) = self.served.read()
        {
            let (kind, param) = served.tags(name);
            result.attributes.push(KeyValue::new("sampler.type", kind));
            result
                .attributes
                .push(KeyValue::new("sampler.param", param));
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalised(json: &str) -> Value {
        serde_json::from_slice(&normalise(Bytes::from(json.to_owned()))).unwrap()
    }

    #[test]
    fn jaegers_rate_limiting_answer_becomes_parseable() {
        let out = normalised(
            r#"{"strategyType":"RATE_LIMITING","rateLimitingSampling":{"maxTracesPerSecond":42}}"#,
        );
        assert_eq!(out["strategyType"], "RATELIMITING");
        assert_eq!(out["rateLimitingSampling"]["maxTracesPerSecond"], 42);
    }

    #[test]
    fn legacy_numeric_types_and_nulls_are_normalised() {
        let out = normalised(
            r#"{"strategyType":0,"probabilisticSampling":{"samplingRate":0.25},"rateLimitingSampling":null}"#,
        );
        assert_eq!(out["strategyType"], "PROBABILISTIC");
        assert!(out.get("rateLimitingSampling").is_none());
        let out =
            normalised(r#"{"strategyType":1,"rateLimitingSampling":{"maxTracesPerSecond":5}}"#);
        assert_eq!(out["strategyType"], "RATELIMITING");
    }

    #[test]
    fn per_operation_answers_keep_their_fields() {
        let out = normalised(
            r#"{"strategyType":"PROBABILISTIC","operationSampling":{"defaultSamplingProbability":0.1,"defaultLowerBoundTracesPerSecond":0,"perOperationStrategies":[],"defaultUpperBoundTracesPerSecond":0}}"#,
        );
        assert_eq!(out["strategyType"], "PROBABILISTIC");
        assert_eq!(out["operationSampling"]["defaultSamplingProbability"], 0.1);
    }

    fn served_after(json: &str, before: Served) -> Served {
        Served::after(&normalise(Bytes::from(json.to_owned())), 1.0).unwrap_or(before)
    }

    #[test]
    fn the_strategy_served_is_read_with_the_sdks_precedence_and_tags_each_operation() {
        let per_op = served_after(
            r#"{"strategyType":0,"operationSampling":{"defaultSamplingProbability":0.1,"defaultLowerBoundTracesPerSecond":0.0166,"perOperationStrategies":[{"operation":"GET /api/users/{id}","probabilisticSampling":{"samplingRate":0.05}}],"defaultUpperBoundTracesPerSecond":0},"probabilisticSampling":{"samplingRate":0.9}}"#,
            Served::Initial(1.0),
        );
        assert_eq!(per_op.tags("GET /api/users/{id}"), ("probabilistic", 0.05));
        assert_eq!(per_op.tags("POST /api/orders"), ("probabilistic", 0.1));
        let limited = served_after(
            r#"{"strategyType":"RATE_LIMITING","rateLimitingSampling":{"maxTracesPerSecond":42}}"#,
            per_op.clone(),
        );
        assert_eq!(limited.tags("x"), ("ratelimiting", 42.0));
        let fixed = served_after(
            r#"{"probabilisticSampling":{"samplingRate":0.25}}"#,
            limited,
        );
        assert_eq!(fixed.tags("x"), ("probabilistic", 0.25));
    }

    #[test]
    fn an_answer_the_sdk_cannot_read_changes_nothing() {
        let before = Served::Probabilistic(0.25);
        assert_eq!(served_after("not json", before.clone()), before);
        // operationSampling without its required fields: the SDK refuses it.
        assert_eq!(
            served_after(
                r#"{"operationSampling":{"defaultSamplingProbability":0.1}}"#,
                before.clone()
            ),
            before
        );
        assert_eq!(
            served_after("{}", Served::Initial(1.0)).tags("x"),
            ("probabilistic", 1.0)
        );
    }

    #[test]
    fn non_json_bodies_pass_through() {
        assert_eq!(
            normalise(Bytes::from_static(b"not json")),
            Bytes::from_static(b"not json")
        );
    }
}
