//! Building the process-wide propagator from `OTEL_PROPAGATORS`, and carriers
//! for contexts that travel outside HTTP headers (outbox rows).

use std::collections::HashMap;

use opentelemetry::Context;
use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

use crate::config::PropagatorKind;

/// The composite propagator for the given formats, in the given order.
///
/// On extraction each format reads its own headers and later ones win, which is
/// the composite behaviour the OpenTelemetry specification describes; list the
/// format you trust most last.
///
/// B3 and Jaeger formats are deprecated upstream in favour of W3C trace
/// context, but services instrumented with Zipkin or jaeger-client still
/// speak them, so they stay available (off unless `OTEL_PROPAGATORS` asks).
#[allow(deprecated)]
pub fn propagator(kinds: &[PropagatorKind]) -> TextMapCompositePropagator {
    let propagators: Vec<Box<dyn TextMapPropagator + Send + Sync>> = kinds
        .iter()
        .map(|kind| -> Box<dyn TextMapPropagator + Send + Sync> {
            match kind {
                PropagatorKind::TraceContext => Box::new(TraceContextPropagator::new()),
                PropagatorKind::Baggage => Box::new(BaggagePropagator::new()),
                PropagatorKind::B3 => Box::new(opentelemetry_zipkin::Propagator::with_encoding(opentelemetry_zipkin::B3Encoding::SingleHeader)),
                PropagatorKind::B3Multi => {
                    Box::new(opentelemetry_zipkin::Propagator::with_encoding(
                        opentelemetry_zipkin::B3Encoding::MultipleHeader,
                    ))
                }
                PropagatorKind::Jaeger => Box::new(opentelemetry_jaeger_propagator::Propagator::new()),
            }
        })
        .collect();
    TextMapCompositePropagator::new(propagators)
}

/// Serialises `cx` with the global propagator into a plain map, for storage
/// beside data that is sent later (the order outbox).
pub fn inject_to_map(cx: &Context) -> HashMap<String, String> {
    let mut map = HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(cx, &mut map));
    map
}

/// The inverse of [`inject_to_map`].
pub fn extract_from_map(map: &HashMap<String, String>) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(map))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::baggage::BaggageExt;
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
    use opentelemetry::KeyValue;

    pub(crate) fn remote_parent() -> Context {
        let sc = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        Context::new()
            .with_remote_span_context(sc)
            .with_baggage(vec![KeyValue::new("user.id", "user123")])
    }

    #[test]
    fn every_propagator_round_trips_trace_and_span_ids() {
        let cx = remote_parent();
        let want = cx.span().span_context().clone();
        for kind in [
            PropagatorKind::TraceContext,
            PropagatorKind::B3,
            PropagatorKind::B3Multi,
            PropagatorKind::Jaeger,
        ] {
            let p = propagator(&[kind]);
            let mut carrier = HashMap::new();
            p.inject_context(&cx, &mut carrier);
            assert!(!carrier.is_empty(), "{kind:?} injected nothing");
            let got = p.extract(&carrier);
            let got = got.span().span_context().clone();
            assert_eq!(got.trace_id(), want.trace_id(), "{kind:?}");
            assert_eq!(got.span_id(), want.span_id(), "{kind:?}");
            assert!(got.is_sampled(), "{kind:?}");
            assert!(got.is_remote(), "{kind:?}");
        }
    }

    #[test]
    fn baggage_round_trips_only_when_the_baggage_propagator_is_on() {
        let with = propagator(&[PropagatorKind::TraceContext, PropagatorKind::Baggage]);
        let mut carrier = HashMap::new();
        with.inject_context(&remote_parent(), &mut carrier);
        assert_eq!(with.extract(&carrier).baggage().get("user.id").map(|v| v.as_str()), Some("user123"));

        let without = propagator(&[PropagatorKind::TraceContext]);
        let mut carrier = HashMap::new();
        without.inject_context(&remote_parent(), &mut carrier);
        assert!(!carrier.contains_key("baggage"));
    }

    #[test]
    fn header_names_are_the_ones_each_format_specifies() {
        let names = |kind| {
            let mut carrier = HashMap::new();
            propagator(&[kind]).inject_context(&remote_parent(), &mut carrier);
            let mut keys: Vec<String> = carrier.into_keys().collect();
            keys.sort();
            keys
        };
        assert_eq!(names(PropagatorKind::TraceContext), ["traceparent"]);
        assert_eq!(names(PropagatorKind::B3), ["b3"]);
        assert!(names(PropagatorKind::B3Multi).contains(&"x-b3-traceid".to_string()));
        assert_eq!(names(PropagatorKind::Jaeger), ["uber-trace-id"]);
    }
}
