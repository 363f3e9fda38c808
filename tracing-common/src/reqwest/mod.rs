//! An HTTP client whose requests carry the current context and are recorded as
//! CLIENT spans, with `error.type` and an exception event added on failure so
//! Jaeger shows why a call failed.
//!
//! The middleware is our own rather than `reqwest-tracing`'s: that crate
//! records `server.port` and `http.response.status_code` as text (its span
//! macro formats them with `%`, and the `tracing` bridge turns `u16` into a
//! string), where the semantic conventions and Jaeger's tag queries expect
//! integers.

use std::time::Duration;

use http::Extensions;
use opentelemetry::trace::{
    Span as _, SpanKind, SpanRef, Status, TraceContextExt as _, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::HeaderInjector;
use opentelemetry_semantic_conventions::attribute as semconv;
use reqwest::{Request, Response};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Error, Middleware, Next, Result};

pub use reqwest_middleware::ClientWithMiddleware as TracedClient;

/// A client with an overall per-request `timeout` (connect, send, and read the
/// whole body), injecting context with the global propagator.
pub fn http_client(timeout: Duration) -> reqwest::Result<ClientWithMiddleware> {
    let inner = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(2)))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()?;
    Ok(ClientBuilder::new(inner).with(ClientTracing).build())
}

/// The middleware: a CLIENT span `{method}` (the semantic-convention name when
/// no URL template is known) around each request, a child of the current
/// context (`Context::current()`), its context injected into the request
/// headers, the outcome recorded on the span.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ClientTracing;

#[async_trait::async_trait]
impl Middleware for ClientTracing {
    async fn handle(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        let cx = client_context(&request);
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&cx, &mut HeaderInjector(request.headers_mut()));
        });
        let outcome = next.run(request, extensions).await;
        let span = cx.span();
        record_outcome(&span, &outcome);
        span.end();
        outcome
    }
}

/// The current context with the CLIENT span started in it; attributes are
/// written only when the span is recorded.
fn client_context(request: &Request) -> Context {
    let method = crate::spans::known_method(request.method());
    let tracer = crate::spans::tracer();
    let parent = Context::current();
    let mut span = tracer.build_with_context(
        tracer.span_builder(method).with_kind(SpanKind::Client),
        &parent,
    );
    if span.is_recording() {
        let url = request.url();
        let mut attributes = vec![
            KeyValue::new(semconv::HTTP_REQUEST_METHOD, method),
            KeyValue::new(semconv::URL_FULL, RedactedUrl(url).to_string()),
            KeyValue::new(semconv::URL_SCHEME, url.scheme().to_owned()),
            KeyValue::new(
                semconv::SERVER_ADDRESS,
                url.host_str().unwrap_or_default().to_owned(),
            ),
        ];
        if let Some(port) = url.port_or_known_default() {
            attributes.push(KeyValue::new(semconv::SERVER_PORT, i64::from(port)));
        }
        span.set_attributes(attributes);
    }
    parent.with_span(span)
}

/// 4xx and 5xx are errors on a CLIENT span (the call did not do what the
/// caller wanted); a transport failure says what kind it was.
fn record_outcome(span: &SpanRef<'_>, outcome: &Result<Response>) {
    let status = match outcome {
        Ok(response) => Some(response.status()),
        Err(Error::Reqwest(e)) => e.status(),
        Err(_) => None,
    };
    if let Some(status) = status {
        span.set_attribute(KeyValue::new(
            semconv::HTTP_RESPONSE_STATUS_CODE,
            i64::from(status.as_u16()),
        ));
    }
    match outcome {
        Ok(_) => {
            if let Some(status) = status
                && (status.is_client_error() || status.is_server_error())
            {
                span.set_status(Status::error(""));
                span.set_attribute(KeyValue::new(
                    semconv::ERROR_TYPE,
                    status.as_str().to_owned(),
                ));
            }
        }
        Err(error) => crate::spans::record_error_on(span, error_kind(error), &error.to_string()),
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

/// `url.full` without credentials, query or fragment: they may carry secrets
/// or personal data. Written straight from the parsed parts, only for a
/// recorded span.
struct RedactedUrl<'a>(&'a reqwest::Url);

impl std::fmt::Display for RedactedUrl<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = self.0;
        f.write_str(url.scheme())?;
        f.write_str(":")?;
        if let Some(host) = url.host_str() {
            f.write_str("//")?;
            f.write_str(host)?;
            if let Some(port) = url.port() {
                write!(f, ":{port}")?;
            }
        }
        f.write_str(url.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `url.full` was before: the URL cloned, stripped and serialised.
    fn stripped(url: &reqwest::Url) -> String {
        let mut url = url.clone();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_query(None);
        url.set_fragment(None);
        url.to_string()
    }

    #[test]
    fn url_full_has_no_credentials_query_or_fragment() {
        for text in [
            "http://127.0.0.1:3001/api/users/u1",
            "http://user:secret@inventory:80/check?token=1#top",
            "https://example.com/a%20b/c?x=1",
            "http://[::1]:8080/",
            "http://host",
            "https://user@host:443/p",
        ] {
            let url = reqwest::Url::parse(text).unwrap();
            let written = RedactedUrl(&url).to_string();
            assert_eq!(written, stripped(&url), "{text}");
            assert!(!written.contains("secret") && !written.contains("token"));
        }
    }
}
