//! An HTTP client whose requests carry the current context and are recorded as
//! CLIENT spans (`reqwest-tracing`), with `error.type` and an exception event
//! added on failure so Jaeger shows why a call failed.

use std::time::Duration;

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Error, Result};
use reqwest_tracing::{
    ReqwestOtelSpanBackend, TracingMiddleware, default_on_request_end, reqwest_otel_span,
};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub use reqwest_middleware::ClientWithMiddleware as TracedClient;

/// A client with an overall per-request `timeout` (connect, send, and read the
/// whole body), injecting context with the global propagator.
pub fn http_client(timeout: Duration) -> reqwest::Result<ClientWithMiddleware> {
    let inner = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(2)))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()?;
    Ok(ClientBuilder::new(inner)
        .with(TracingMiddleware::<ClientSpans>::new())
        .build())
}

/// Span shape for outgoing requests: name `{method}` (the semantic-convention
/// name when no URL template is known), `url.full` without query or
/// credentials, and failure details.
#[derive(Debug, Clone, Copy)]
pub struct ClientSpans;

impl ReqwestOtelSpanBackend for ClientSpans {
    fn on_request_start(request: &Request, _extensions: &mut Extensions) -> Span {
        let url = redacted_url(request.url());
        let name = request.method().as_str();
        reqwest_otel_span!(name = name, request, url.full = %url)
    }

    fn on_request_end(span: &Span, outcome: &Result<Response>, _extensions: &mut Extensions) {
        default_on_request_end(span, outcome);
        match outcome {
            Ok(response)
                if response.status().is_client_error() || response.status().is_server_error() =>
            {
                span.set_attribute("error.type", response.status().as_u16().to_string());
            }
            Ok(_) => {}
            Err(error) => {
                let kind = error_kind(error);
                crate::spans::record_error(span, kind, &error.to_string());
            }
        }
    }
}

/// Low-cardinality class of a transport failure, for `error.type`.
pub fn error_kind(error: &Error) -> &'static str {
    match error {
        Error::Reqwest(e) if e.is_timeout() => "timeout",
        Error::Reqwest(e) if e.is_connect() => "connection_refused",
        Error::Reqwest(e) if e.is_decode() || e.is_body() => "response_body",
        Error::Reqwest(_) => "transport",
        Error::Middleware(_) => "middleware",
    }
}

fn redacted_url(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}
