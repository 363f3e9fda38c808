//! SERVER spans for axum: context extraction, `{method} {route}` names,
//! HTTP semantic-convention attributes, status mapping, and the trust-boundary
//! policy for services that face callers outside the system.
//!
//! Hand-written rather than taken from `axum-tracing-opentelemetry` because the
//! gateway needs two things that crate does not offer: starting a new root
//! that *links* to the caller's trace, and dropping the caller's baggage.
//!
//! Apply it with `Router::layer` after the routes it should trace, so axum has
//! matched the route (and `MatchedPath` is known) when a span is named. Routes
//! added afterwards (health checks) stay untraced.

use std::str::FromStr;
use std::task::{Context as TaskContext, Poll};

use axum::extract::MatchedPath;
use futures::future::BoxFuture;
use http::{HeaderValue, Request, Response};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanKind, SpanRef, Status, TraceContextExt, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_semantic_conventions::attribute as semconv;
use tower::{Layer, Service};

/// What a server does with a trace context arriving from its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IncomingTrace {
    /// The caller's span becomes the parent (one trace end to end).
    #[default]
    Continue,
    /// Start a new trace and add a link to the caller's span, so a caller
    /// outside the system cannot pick the trace id or the sampling decision.
    NewRootWithLink,
}

impl FromStr for IncomingTrace {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "continue" => Ok(Self::Continue),
            "new-root" => Ok(Self::NewRootWithLink),
            _ => Err("expected `continue` or `new-root`".into()),
        }
    }
}

/// What a server does with baggage arriving from its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IncomingBaggage {
    /// Keep it: the caller is another service of this system.
    #[default]
    Keep,
    /// Discard it: the caller is outside the system.
    Drop,
}

impl FromStr for IncomingBaggage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "keep" => Ok(Self::Keep),
            "drop" => Ok(Self::Drop),
            _ => Err("expected `keep` or `drop`".into()),
        }
    }
}

/// How much of an incoming context a server trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TrustPolicy {
    pub trace: IncomingTrace,
    pub baggage: IncomingBaggage,
}

impl TrustPolicy {
    pub const fn new(trace: IncomingTrace, baggage: IncomingBaggage) -> Self {
        Self { trace, baggage }
    }

    /// For services called only by services of this system.
    pub const INTERNAL: Self = Self {
        trace: IncomingTrace::Continue,
        baggage: IncomingBaggage::Keep,
    };
    /// The gateway's default: continue the caller's trace (as the seeds do)
    /// but never accept its baggage.
    pub const EDGE: Self = Self {
        trace: IncomingTrace::Continue,
        baggage: IncomingBaggage::Drop,
    };
}

/// Tower layer opening a SERVER span around each request.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerTracingLayer {
    policy: TrustPolicy,
}

impl ServerTracingLayer {
    pub fn new(policy: TrustPolicy) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for ServerTracingLayer {
    type Service = ServerTracing<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ServerTracing {
            inner,
            policy: self.policy,
        }
    }
}

/// The service produced by [`ServerTracingLayer`]: the request's handler runs
/// with the SERVER span's context current (`Context::current()`), so the
/// `tracing` spans it opens are children of the SERVER span and the calls it
/// makes carry its trace.
#[derive(Debug, Clone)]
pub struct ServerTracing<S> {
    inner: S,
    policy: TrustPolicy,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ServerTracing<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let cx = server_context(&request, self.policy);
        // The service that was polled ready must be the one called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let future = {
            let _current = cx.clone().attach();
            inner.call(request)
        };
        Box::pin(async move {
            let mut result = future.with_context(cx.clone()).await;
            let span = cx.span();
            if let Ok(response) = &mut result {
                record_status(&span, response.status().as_u16());
                insert_traceparent(span.span_context(), response.headers_mut());
            }
            span.end();
            result
        })
    }
}

const MAX_HOST_LEN: usize = 255;

/// The caller's context as the policy trusts it, with the SERVER span
/// started in it. The sampler sees the name, the kind and the link; the
/// attributes are written only when the span is recorded.
fn server_context<B>(request: &Request<B>, policy: TrustPolicy) -> Context {
    let method = crate::spans::known_method(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let incoming = opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&HeaderExtractor(request.headers()))
    });
    let incoming = match policy.baggage {
        IncomingBaggage::Keep => incoming,
        IncomingBaggage::Drop => incoming.with_cleared_baggage(),
    };
    let name = match route {
        Some(route) => format!("{method} {route}"),
        None => method.to_owned(),
    };
    let tracer = crate::spans::tracer();
    let builder = tracer.span_builder(name).with_kind(SpanKind::Server);
    let (parent, builder) = match policy.trace {
        IncomingTrace::Continue => (incoming, builder),
        IncomingTrace::NewRootWithLink => {
            let caller = incoming.span().span_context().clone();
            let root =
                Context::new().with_baggage(crate::propagation::copy_baggage(incoming.baggage()));
            let links = caller.is_valid().then(|| {
                vec![Link::new(
                    caller,
                    vec![KeyValue::new("link.reason", "untrusted-caller")],
                    0,
                )]
            });
            (root, builder.with_links(links.unwrap_or_default()))
        }
    };
    let mut span = tracer.build_with_context(builder, &parent);
    if span.is_recording() {
        let mut attributes = vec![
            KeyValue::new(semconv::HTTP_REQUEST_METHOD, method),
            KeyValue::new(semconv::URL_PATH, request.uri().path().to_owned()),
            KeyValue::new(semconv::URL_SCHEME, "http"),
        ];
        if let Some(route) = route {
            attributes.push(KeyValue::new(semconv::HTTP_ROUTE, route.to_owned()));
        }
        if let Some(host) = request
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.split(':').next())
            .filter(|h| h.len() <= MAX_HOST_LEN)
        {
            attributes.push(KeyValue::new(semconv::SERVER_ADDRESS, host.to_owned()));
        }
        span.set_attributes(attributes);
    }
    parent.with_span(span)
}

/// 5xx is an error on a server span; 4xx is the caller's problem, not the
/// server's (the client span of the caller records it).
fn record_status(span: &SpanRef<'_>, status: u16) {
    span.set_attribute(KeyValue::new(
        semconv::HTTP_RESPONSE_STATUS_CODE,
        i64::from(status),
    ));
    if status >= 500 {
        span.set_status(Status::error(""));
        span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, status.to_string()));
    }
}

/// The `traceparent` of the server span, so a caller (or a user with `curl`)
/// can find the trace in Jaeger. Written straight from the span context:
/// a propagator, its map carrier and a header check cost far more than these
/// 55 bytes are worth (callgrind; docs/performance.md).
fn insert_traceparent(sc: &SpanContext, headers: &mut http::HeaderMap) {
    if sc.is_valid()
        && let Some(value) = traceparent_value(sc)
    {
        headers.insert("traceparent", value);
    }
}

/// `00-{trace id}-{span id}-{flags}`, W3C Trace Context version 00.
fn traceparent_value(sc: &SpanContext) -> Option<HeaderValue> {
    HeaderValue::try_from(crate::propagation::traceparent(sc)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};

    #[test]
    fn the_response_traceparent_is_w3c_version_00_with_the_sampled_flag() {
        let sc = |flags| {
            SpanContext::new(
                TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
                SpanId::from_hex("00f067aa0ba902b7").unwrap(),
                flags,
                false,
                TraceState::default(),
            )
        };
        assert_eq!(
            traceparent_value(&sc(TraceFlags::SAMPLED)).unwrap(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(
            traceparent_value(&sc(TraceFlags::default())).unwrap(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        );
    }
}
