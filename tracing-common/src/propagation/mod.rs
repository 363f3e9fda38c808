//! Building the process-wide propagator from `OTEL_PROPAGATORS`, and carriers
//! for contexts that travel outside HTTP headers (outbox rows).

use std::collections::HashMap;

mod baggage;
mod jaeger;
mod trace_context;
mod w3c_baggage;

#[cfg(feature = "axum")]
pub(crate) use baggage::copy as copy_baggage;
pub use baggage::{BaggageSpanProcessor, MAX_SPAN_BAGGAGE_LEN, with_baggage};
use jaeger::JaegerPropagator;
use trace_context::W3cTraceContext;
#[cfg(feature = "axum")]
pub(crate) use trace_context::traceparent;
use w3c_baggage::W3cBaggage;

use opentelemetry::Context;
use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator};

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
                PropagatorKind::TraceContext => Box::new(W3cTraceContext::new()),
                PropagatorKind::Baggage => Box::new(W3cBaggage),
                #[cfg(feature = "zipkin")]
                PropagatorKind::B3 => Box::new(SingleHeaderB3(
                    opentelemetry_zipkin::Propagator::with_encoding(
                        opentelemetry_zipkin::B3Encoding::SingleHeader,
                    ),
                )),
                #[cfg(feature = "zipkin")]
                PropagatorKind::B3Multi => {
                    Box::new(opentelemetry_zipkin::Propagator::with_encoding(
                        opentelemetry_zipkin::B3Encoding::MultipleHeader,
                    ))
                }
                PropagatorKind::Jaeger => Box::new(JaegerPropagator),
                // Refused when the configuration is read (`needs_feature`);
                // a hand-built list gets a propagator that carries nothing.
                #[allow(unreachable_patterns)]
                _ => Box::new(TextMapCompositePropagator::new(Vec::new())),
            }
        })
        .collect();
    TextMapCompositePropagator::new(propagators)
}

#[cfg(feature = "zipkin")]
use b3::SingleHeaderB3;

/// B3 single-header (`b3`) only. opentelemetry-zipkin 0.32 also writes the
/// multi-header form in single-header mode (its `UnSpecified` bit test is
/// always true), which doubles the headers and defeats choosing `b3` over
/// `b3multi`; this drops everything but `b3` on injection.
#[cfg(feature = "zipkin")]
mod b3 {
    use opentelemetry::Context;
    use opentelemetry::propagation::text_map_propagator::FieldIter;
    use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};

    #[allow(deprecated)]
    #[derive(Debug)]
    pub(super) struct SingleHeaderB3(pub(super) opentelemetry_zipkin::Propagator);

    struct OnlyB3<'a>(&'a mut dyn Injector);

    impl Injector for OnlyB3<'_> {
        fn set(&mut self, key: &str, value: String) {
            if key == "b3" {
                self.0.set(key, value);
            }
        }
    }

    #[allow(deprecated)]
    impl TextMapPropagator for SingleHeaderB3 {
        fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
            self.0.inject_context(cx, &mut OnlyB3(injector));
        }

        fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
            self.0.extract_with_context(cx, extractor)
        }

        fn fields(&self) -> FieldIter<'_> {
            self.0.fields()
        }
    }
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
    use opentelemetry::KeyValue;
    use opentelemetry::baggage::BaggageExt;
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };

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
        assert_eq!(
            with.extract(&carrier)
                .baggage()
                .get("user.id")
                .map(|v| v.as_str()),
            Some("user123")
        );

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
        // No empty `tracestate` (W3C: vendors should not send one).
        assert_eq!(names(PropagatorKind::TraceContext), ["traceparent"]);
        assert_eq!(names(PropagatorKind::B3), ["b3"]);
        assert!(names(PropagatorKind::B3Multi).contains(&"x-b3-traceid".to_string()));
        assert_eq!(names(PropagatorKind::Jaeger), ["uber-trace-id"]);
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;
    use opentelemetry::baggage::BaggageExt;

    fn extract(kinds: &[PropagatorKind], pairs: &[(&str, String)]) -> Context {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        propagator(kinds).extract(&map)
    }

    #[test]
    fn b3_single_header_mode_writes_only_the_b3_header() {
        let mut carrier = HashMap::new();
        let cx = extract(
            &[PropagatorKind::TraceContext],
            &[(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            )],
        );
        propagator(&[PropagatorKind::B3]).inject_context(&cx, &mut carrier);
        assert_eq!(carrier.keys().collect::<Vec<_>>(), ["b3"]);
        assert_eq!(
            carrier["b3"],
            "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"
        );
    }

    #[test]
    fn oversized_baggage_is_truncated_to_the_w3c_limits_without_failing() {
        // 200 members: W3C allows at most 180 list members.
        let many = (0..200)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",");
        let cx = extract(&[PropagatorKind::Baggage], &[("baggage", many)]);
        assert!(cx.baggage().len() <= 180, "{}", cx.baggage().len());
        // A header past 8192 bytes is refused whole by the SDK (W3C lets a
        // platform drop what exceeds the limit); within the limit it is kept.
        let big = format!("user.id=u1,blob={}", "x".repeat(9000));
        let cx = extract(&[PropagatorKind::Baggage], &[("baggage", big)]);
        assert!(cx.baggage().get("blob").is_none());
        let fits = format!("user.id=u1,blob={}", "x".repeat(4000));
        let cx = extract(&[PropagatorKind::Baggage], &[("baggage", fits)]);
        assert_eq!(cx.baggage().get("user.id").map(|v| v.as_str()), Some("u1"));
        // Garbage is ignored.
        let cx = extract(
            &[PropagatorKind::Baggage],
            &[("baggage", ";;==,\u{7f}".into())],
        );
        assert!(cx.baggage().get("user.id").is_none());
    }
}
