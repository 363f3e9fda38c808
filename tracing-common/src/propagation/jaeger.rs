//! Jaeger's `uber-trace-id` header, for callers still instrumented with
//! jaeger-client (deprecated upstream, but alive in older services).
//!
//! The value is `{trace-id}:{span-id}:{parent-span-id}:{flags}`. Jaeger's
//! clients write the ids in hex without leading zeros (a 64-bit trace id as
//! up to 16 digits, a 128-bit one as up to 32), the parent id as `0` (it is
//! deprecated) and the flags as a number whose bit 1 is "sampled" and bit 2
//! "debug"; some HTTP stacks URL-encode the colons as `%3A`. A header that is
//! absent or does not parse leaves the context as it was, silently: a request
//! without it is the normal case, not something to log. `uberctx-*` baggage
//! headers are not read; the W3C `baggage` propagator carries baggage.

use opentelemetry::Context;
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};

const HEADER: &str = "uber-trace-id";
const SAMPLED: u8 = 0x01;
const DEBUG: u8 = 0x02;
/// Where the debug bit is kept in the span context's flags, so that a debug
/// trace passed through this service stays one (bit 2 of W3C's flags byte is
/// unused by Trace Context Level 1).
const DEBUG_FLAG: TraceFlags = TraceFlags::new(0x04);

/// The `uber-trace-id` propagator (see the module documentation).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct JaegerPropagator;

impl TextMapPropagator for JaegerPropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let sc = span.span_context();
        if sc.is_valid() {
            injector.set(HEADER, header_value(sc));
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        match extractor.get(HEADER).and_then(parse) {
            Some(sc) => cx.with_remote_span_context(sc),
            None => cx.clone(),
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        static NAMES: std::sync::LazyLock<[String; 1]> =
            std::sync::LazyLock::new(|| [HEADER.to_owned()]);
        FieldIter::new(NAMES.as_slice())
    }
}

/// `{trace-id}:{span-id}:0:{flags}` with full-width ids, as the Jaeger
/// clients of other languages read them.
fn header_value(sc: &SpanContext) -> String {
    let mut flags = 0;
    if sc.is_sampled() {
        flags |= SAMPLED;
        if sc.trace_flags() & DEBUG_FLAG == DEBUG_FLAG {
            flags |= DEBUG;
        }
    }
    format!("{}:{}:0:{flags:x}", sc.trace_id(), sc.span_id())
}

/// The span context a header value describes, if it is well formed.
fn parse(value: &str) -> Option<SpanContext> {
    let decoded;
    let value = if value.contains(':') {
        value.trim()
    } else {
        decoded = value.trim().replace("%3A", ":").replace("%3a", ":");
        decoded.as_str()
    };
    let mut parts = value.split(':');
    let (trace_id, span_id, _parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let trace_id = TraceId::from(hex(trace_id, 32)?);
    let span_id = SpanId::from(u64::try_from(hex(span_id, 16)?).ok()?);
    // Jaeger's clients write the flags in hex; the values they use (0-3, and
    // 8 for firehose) read the same in decimal.
    let flags = u8::try_from(hex(flags, 2)?).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let flags = match (flags & SAMPLED != 0, flags & DEBUG != 0) {
        (true, true) => TraceFlags::SAMPLED | DEBUG_FLAG,
        (true, false) => TraceFlags::SAMPLED,
        // Debug without sampled is not a state the clients produce.
        (false, _) => TraceFlags::default(),
    };
    Some(SpanContext::new(
        trace_id,
        span_id,
        flags,
        true,
        TraceState::default(),
    ))
}

/// 1 to `max_digits` hex digits, leading zeros optional.
fn hex(digits: &str, max_digits: usize) -> Option<u128> {
    if digits.is_empty() || digits.len() > max_digits {
        return None;
    }
    digits.bytes().try_fold(0u128, |acc, b| {
        let digit = (b as char).to_digit(16)?;
        Some(acc << 4 | u128::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn extract(value: &str) -> SpanContext {
        let carrier = HashMap::from([(HEADER.to_owned(), value.to_owned())]);
        JaegerPropagator
            .extract(&carrier)
            .span()
            .span_context()
            .clone()
    }

    fn inject(sc: SpanContext) -> HashMap<String, String> {
        let mut carrier = HashMap::new();
        JaegerPropagator.inject_context(&Context::new().with_remote_span_context(sc), &mut carrier);
        carrier
    }

    fn sc(trace: u128, span: u64, flags: TraceFlags) -> SpanContext {
        SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            flags,
            true,
            TraceState::default(),
        )
    }

    #[test]
    fn reads_the_values_jaeger_clients_write() {
        // jaeger-client-go's `SpanContext.String()`: `%x` ids without
        // leading zeros, a 128-bit id as high then zero-padded low.
        let cases: &[(&str, u128, u64, TraceFlags)] = &[
            ("4d16:17c29:0:1", 0x4d16, 0x17c29, TraceFlags::SAMPLED),
            (
                "4d0000000000000016:17c29:0:1",
                0x4d_0000_0000_0000_0016,
                0x17c29,
                TraceFlags::SAMPLED,
            ),
            (
                "000000000000004d0000000000000016:0000000000017c29:0:1",
                0x4d_0000_0000_0000_0016,
                0x17c29,
                TraceFlags::SAMPLED,
            ),
            (
                "ffffffffffffffffffffffffffffffff:ffffffffffffffff:0:0",
                u128::MAX,
                u64::MAX,
                TraceFlags::default(),
            ),
            (
                "4d16:17c29:17c28:3",
                0x4d16,
                0x17c29,
                TraceFlags::SAMPLED | DEBUG_FLAG,
            ),
            // Debug alone: not sampled. Firehose (8) alone: not sampled.
            ("4d16:17c29:0:2", 0x4d16, 0x17c29, TraceFlags::default()),
            ("4d16:17c29:0:9", 0x4d16, 0x17c29, TraceFlags::SAMPLED),
            ("4d16%3A17c29%3A0%3A1", 0x4d16, 0x17c29, TraceFlags::SAMPLED),
            (" 4d16:17c29:0:1 ", 0x4d16, 0x17c29, TraceFlags::SAMPLED),
        ];
        for (value, trace, span, flags) in cases {
            assert_eq!(extract(value), sc(*trace, *span, *flags), "{value}");
        }
    }

    #[test]
    fn a_malformed_value_leaves_the_context_empty() {
        for value in [
            "",
            "4d16:17c29:0",
            "4d16:17c29:0:1:5",
            "4d16::0:1",
            ":17c29:0:1",
            "0:17c29:0:1",
            "4d16:0:0:1",
            "xyz:17c29:0:1",
            "4d16:17c29:0:zz",
            "4d16:17c29:0:100",
            "1000000000000000000000000000000000:17c29:0:1",
            "4d16:10000000000000000:0:1",
            "+4d16:17c29:0:1",
            "4d16:17c29:0:é",
        ] {
            assert!(!extract(value).is_valid(), "{value:?}");
        }
    }

    #[test]
    fn writes_full_width_ids_a_zero_parent_and_the_flags() {
        let written = |flags| inject(sc(0x4d16, 0x17c29, flags))[HEADER].clone();
        assert_eq!(
            written(TraceFlags::SAMPLED),
            "00000000000000000000000000004d16:0000000000017c29:0:1"
        );
        assert_eq!(
            written(TraceFlags::default()),
            "00000000000000000000000000004d16:0000000000017c29:0:0"
        );
        assert_eq!(
            written(TraceFlags::SAMPLED | DEBUG_FLAG),
            "00000000000000000000000000004d16:0000000000017c29:0:3"
        );
    }

    #[test]
    fn an_invalid_context_writes_nothing_and_fields_name_the_header() {
        assert!(inject(SpanContext::empty_context()).is_empty());
        assert_eq!(JaegerPropagator.fields().collect::<Vec<_>>(), [HEADER]);
    }

    #[test]
    fn what_is_written_reads_back_the_same() {
        for flags in [
            TraceFlags::SAMPLED,
            TraceFlags::default(),
            TraceFlags::SAMPLED | DEBUG_FLAG,
        ] {
            let want = sc(
                0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
                0x00f0_67aa_0ba9_02b7,
                flags,
            );
            assert_eq!(extract(&inject(want.clone())[HEADER]), want);
        }
    }
}
