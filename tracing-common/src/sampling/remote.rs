//! The HTTP client of the Jaeger remote sampler.
//!
//! Jaeger serves `GET /sampling?service=NAME` as protobuf JSON, where the
//! legacy `strategyType` field is `"PROBABILISTIC"` or `"RATE_LIMITING"`
//! (older agents send `0` or `1`). The SDK's sampler (opentelemetry_sdk 0.32)
//! only parses `"PROBABILISTIC"` and `"RATELIMITING"`, so a rate-limiting
//! strategy from a real Jaeger fails to parse and is silently ignored. The
//! field is documented as legacy: consumers are to decide by which strategy
//! field is present, which the SDK does. This client therefore rewrites it to
//! a value the SDK accepts and changes nothing else.

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use serde_json::Value;

#[derive(Debug, Clone)]
pub(crate) struct JaegerSamplingClient {
    inner: reqwest::Client,
}

impl JaegerSamplingClient {
    pub fn new(inner: reqwest::Client) -> Self {
        Self { inner }
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
        let response = self.inner.send_bytes(request).await?;
        Ok(response.map(normalise))
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

    #[test]
    fn non_json_bodies_pass_through() {
        assert_eq!(
            normalise(Bytes::from_static(b"not json")),
            Bytes::from_static(b"not json")
        );
    }
}
