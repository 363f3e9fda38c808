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
use opentelemetry_http::HeaderInjector;
use reqwest::{Request, Response};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Error, Middleware, Next, Result};
use tracing::{Instrument, Span};
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
    Ok(ClientBuilder::new(inner).with(ClientTracing).build())
}

/// The middleware: a CLIENT span `{method}` (the semantic-convention name when
/// no URL template is known) around each request, the span's context injected
/// into the request headers, the outcome recorded on the span.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientTracing;

#[async_trait::async_trait]
impl Middleware for ClientTracing {
    async fn handle(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        let span = client_span(&request);
        let cx = crate::spans::context_of(&span);
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&cx, &mut HeaderInjector(request.headers_mut()));
        });
        let outcome = next.run(request, extensions).instrument(span.clone()).await;
        record_outcome(&span, &outcome);
        outcome
    }
}

fn client_span(request: &Request) -> Span {
    let url = request.url();
    let method = crate::spans::known_method(request.method());
    tracing::info_span!(
        "http.client.request",
        otel.name = method,
        otel.kind = "client",
        http.request.method = method,
        url.full = %RedactedUrl(url),
        url.scheme = url.scheme(),
        server.address = url.host_str().unwrap_or_default(),
        server.port = url.port_or_known_default().map(i64::from),
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

/// 4xx and 5xx are errors on a CLIENT span (the call did not do what the
/// caller wanted); a transport failure says what kind it was.
fn record_outcome(span: &Span, outcome: &Result<Response>) {
    match outcome {
        Ok(response) => {
            let status = response.status();
            span.record("http.response.status_code", i64::from(status.as_u16()));
            if status.is_client_error() || status.is_server_error() {
                span.record("otel.status_code", "ERROR");
                span.set_attribute(
                    opentelemetry_semantic_conventions::attribute::ERROR_TYPE,
                    status.as_str().to_owned(),
                );
            }
        }
        Err(error) => {
            if let Error::Reqwest(e) = error
                && let Some(status) = e.status()
            {
                span.record("http.response.status_code", i64::from(status.as_u16()));
            }
            crate::spans::record_error(span, error_kind(error), &error.to_string());
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

/// `url.full` without credentials, query or fragment: they may carry secrets
/// or personal data. Written only when a layer records the field (never for
/// a span below an unsampled one), straight from the parsed parts: no copy of
/// the URL, no string made to be formatted again.
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
