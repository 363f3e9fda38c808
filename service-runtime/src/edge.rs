//! Limits at the edge of every service, each answered with the services'
//! JSON error (`{"success":false,"error":code,"message":…}`) and recorded on
//! the SERVER span:
//!
//! - a per-request timeout: a handler that has not answered within
//!   `SERVER_REQUEST_TIMEOUT_MS` is dropped (its database transaction rolls
//!   back) and the caller gets 408; the span is marked as an error (the
//!   server failed to finish), with `error.type = "timeout"`. Without it a hung
//!   handler would hold its connection, and the drain at shutdown, forever.
//! - request headers over `MAX_REQUEST_HEADER_BYTES` (names, values and
//!   separators) are answered 431 before any handler runs;
//! - [`require_json`], on the routes that read a JSON body: any other
//!   `Content-Type` is answered 415.
//!
//! 431 and 415 are the caller's errors: the SERVER span keeps status unset
//! and gets a `request_refused` event with the reason.
//!
//! Apply [`EdgeLimitsLayer`] inside the tracing layer (`Router::layer` before
//! `ServerTracingLayer`), so the span is open when a limit answers.

use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use futures::future::BoxFuture;
use http::{HeaderMap, Request, StatusCode};
use opentelemetry::KeyValue;
use tower::{Layer, Service};

use crate::settings::{env_millis, env_or};
use tracing_common::ConfigError;

/// The edge limits of one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EdgeLimits {
    /// Longest a request may take before it is answered 408.
    pub request_timeout: Duration,
    /// Most bytes of request headers (name + value + 4 per header).
    pub max_header_bytes: usize,
}

/// Default request timeout of the services the gateway calls: below the
/// gateway's upstream budget (`HTTP_CLIENT_TIMEOUT_MS`, 10 s), so a hung
/// service answers 408 before the gateway gives up on it.
pub const SERVICE_REQUEST_TIMEOUT: Duration = Duration::from_secs(9);

/// Default header budget: the 16 KiB common servers (Node.js, Envoy's
/// default is 60 KiB, nginx 8 KiB a line) accept; enough for a W3C
/// `traceparent`, a 512-character `tracestate` and 8 KiB of baggage.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

impl Default for EdgeLimits {
    fn default() -> Self {
        Self {
            request_timeout: SERVICE_REQUEST_TIMEOUT,
            max_header_bytes: MAX_HEADER_BYTES,
        }
    }
}

impl EdgeLimits {
    /// `SERVER_REQUEST_TIMEOUT_MS` (default `default_timeout`) and
    /// `MAX_REQUEST_HEADER_BYTES` (default 16384); zero is refused.
    pub fn from_env(default_timeout: Duration) -> Result<Self, ConfigError> {
        let default_ms = u64::try_from(default_timeout.as_millis()).unwrap_or(u64::MAX);
        let request_timeout = env_millis("SERVER_REQUEST_TIMEOUT_MS", default_ms)?;
        if request_timeout.is_zero() {
            return Err(ConfigError {
                variable: "SERVER_REQUEST_TIMEOUT_MS",
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        let max_header_bytes: usize = env_or("MAX_REQUEST_HEADER_BYTES", MAX_HEADER_BYTES)?;
        if max_header_bytes < 1024 {
            return Err(ConfigError {
                variable: "MAX_REQUEST_HEADER_BYTES",
                value: max_header_bytes.to_string(),
                reason: "must be at least 1024".into(),
            });
        }
        Ok(Self {
            request_timeout,
            max_header_bytes,
        })
    }

    /// Limits with `request_timeout` and the default header budget.
    pub fn with_timeout(request_timeout: Duration) -> Self {
        Self {
            request_timeout,
            ..Self::default()
        }
    }

    pub fn layer(self) -> EdgeLimitsLayer {
        EdgeLimitsLayer(self)
    }
}

/// The services' JSON error body (`order_contract::error`).
fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    order_contract::error::response(status, code, message)
}

/// Tower layer applying [`EdgeLimits`].
#[derive(Debug, Clone, Copy)]
pub struct EdgeLimitsLayer(EdgeLimits);

impl<S> Layer<S> for EdgeLimitsLayer {
    type Service = EdgeLimited<S>;
    fn layer(&self, inner: S) -> Self::Service {
        EdgeLimited {
            inner,
            limits: self.0,
        }
    }
}

/// The service produced by [`EdgeLimitsLayer`].
#[derive(Debug, Clone)]
pub struct EdgeLimited<S> {
    inner: S,
    limits: EdgeLimits,
}

fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

/// Says on the current (SERVER) span why a request was refused.
fn refused(code: &str, reason: &str) {
    opentelemetry::trace::get_active_span(|server| {
        server.add_event(
            "request_refused",
            vec![
                KeyValue::new("reason", reason.to_owned()),
                KeyValue::new("refusal.code", code.to_owned()),
            ],
        );
    });
}

impl<S, ReqBody> Service<Request<ReqBody>> for EdgeLimited<S>
where
    S: Service<Request<ReqBody>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let limits = self.limits;
        let size = header_bytes(request.headers());
        if size > limits.max_header_bytes {
            let message = format!(
                "the request headers are {size} bytes; at most {} are accepted",
                limits.max_header_bytes
            );
            refused("request_header_fields_too_large", &message);
            return Box::pin(async move {
                Ok(error_response(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "request_header_fields_too_large",
                    &message,
                ))
            });
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let future = inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout(limits.request_timeout, future).await {
                Ok(result) => result,
                Err(_) => {
                    let message = format!(
                        "the request took longer than {} ms and was abandoned",
                        limits.request_timeout.as_millis()
                    );
                    tracing_common::spans::record_current_error("timeout", &message);
                    Ok(error_response(
                        StatusCode::REQUEST_TIMEOUT,
                        "request_timeout",
                        &message,
                    ))
                }
            }
        })
    }
}

/// Whether `content-type` names JSON: `application/json` or
/// `application/<anything>+json`, parameters (`; charset=utf-8`) allowed.
pub fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json"))
}

/// Middleware for routes that read a JSON body (`axum::middleware::from_fn`):
/// any other or no `Content-Type` is answered 415 before the handler runs.
pub async fn require_json(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if is_json(request.headers()) {
        return next.run(request).await;
    }
    let got = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| "none".to_owned(), |v| format!("{v:?}"));
    let message = format!("the body must be JSON (Content-Type: application/json); got {got}");
    refused("unsupported_media_type", &message);
    error_response(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        &message,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_are_recognised_with_parameters_and_in_any_case() {
        let check = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(http::header::CONTENT_TYPE, v.parse().unwrap());
            is_json(&h)
        };
        assert!(check("application/json"));
        assert!(check("Application/JSON; charset=utf-8"));
        assert!(check("application/merge-patch+json"));
        for other in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "text/json",
            "application/jsonp",
            "multipart/form-data; boundary=x",
        ] {
            assert!(!check(other), "{other}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }
}
