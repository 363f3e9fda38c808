//! W3C Trace Context Level 1 (<https://www.w3.org/TR/trace-context/>):
//! `traceparent` and `tracestate` parsed and written as the specification's
//! processing model says.
//!
//! The SDK's `TraceContextPropagator` is close but not exact at the edges:
//! it reads only the first of several `traceparent` or `tracestate` headers
//! (so two `traceparent`s continue a trace, and a `tracestate` split over
//! headers loses members), accepts version fields of other lengths, keeps
//! illegal `tracestate` members, and its key check refuses a valid
//! multi-tenant key with a 14-character system id. The rules here:
//!
//! - `traceparent`: one header (several make it invalid), optional
//!   whitespace around it; `version "-" trace-id "-" parent-id "-" flags` in
//!   lower-case hex of 2, 32, 16 and 2 digits; version `ff` is invalid; version
//!   `00` is exactly 55 characters; a higher version may be longer, with a `-`
//!   after the flags, and only its first four fields are read; an all-zero
//!   trace id or parent id is invalid. Invalid means: start a new trace, and
//!   ignore `tracestate`.
//! - `tracestate`: all headers joined in order; empty members and whitespace
//!   around members ignored; keys by the specification's current grammar
//!   (`@` allowed after the first character), values by Level 1's; more than 32
//!   members or any illegal member discards the whole `tracestate` (the
//!   parent is kept); duplicate keys keep the first. A list longer than 512
//!   characters is truncated the way the specification orders: members longer
//!   than 128 characters go first, then members from the right.
//! - Written: `traceparent` as version `00` with only the sampled flag, and the
//!   `tracestate` received (or the one the span carries).

use std::sync::Arc;

use opentelemetry::Context;
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// Most list members a `tracestate` may have.
pub(crate) const MAX_MEMBERS: usize = 32;
/// Length past which a `tracestate` is truncated before it is passed on.
pub(crate) const MAX_PROPAGATED_LEN: usize = 512;
/// Members longer than this are the first to go when truncating.
const LONG_MEMBER: usize = 128;

/// The propagator; see the module documentation for the rules.
#[derive(Debug)]
pub(crate) struct W3cTraceContext {
    fields: [String; 2],
}

impl W3cTraceContext {
    pub fn new() -> Self {
        Self {
            fields: [TRACEPARENT.to_owned(), TRACESTATE.to_owned()],
        }
    }
}

impl Default for W3cTraceContext {
    fn default() -> Self {
        Self::new()
    }
}

/// `00-{trace id}-{span id}-{flags}` for a valid `sc`: version 00, which
/// defines only the sampled flag. Written digit by digit, without the
/// formatting machinery: every injection and response header pays for it.
pub(crate) fn traceparent(sc: &SpanContext) -> String {
    fn push_hex(out: &mut String, bytes: &[u8]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for b in bytes {
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
        }
    }
    let mut out = String::with_capacity(55);
    out.push_str("00-");
    push_hex(&mut out, &sc.trace_id().to_bytes());
    out.push('-');
    push_hex(&mut out, &sc.span_id().to_bytes());
    out.push('-');
    push_hex(
        &mut out,
        &[(sc.trace_flags() & TraceFlags::SAMPLED).to_u8()],
    );
    out
}

/// The `tracestate` as received, for the members the SDK's `TraceState`
/// refuses although Level 1 allows them; tied to its trace.
#[derive(Debug, Clone)]
struct ReceivedTraceState {
    trace_id: TraceId,
    header: Arc<str>,
}

impl TextMapPropagator for W3cTraceContext {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            return;
        }
        injector.set(TRACEPARENT, traceparent(sc));
        let state = sc.trace_state().header();
        if !state.is_empty() {
            injector.set(TRACESTATE, state);
        } else if let Some(received) = cx.get::<ReceivedTraceState>()
            && received.trace_id == sc.trace_id()
        {
            injector.set(TRACESTATE, received.header.to_string());
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let parents = extractor.get_all(TRACEPARENT).unwrap_or_default();
        let [parent] = parents.as_slice() else {
            return cx.clone();
        };
        let Some((trace_id, span_id, flags)) = parse_traceparent(parent) else {
            return cx.clone();
        };
        let members = extractor
            .get_all(TRACESTATE)
            .map(|values| parse_tracestate(&values))
            .unwrap_or(Some(Vec::new()))
            .map(truncate)
            .unwrap_or_default();
        let state = TraceState::from_key_value(members.iter().map(|(k, v)| (*k, *v))).ok();
        let refused = state.is_none() && !members.is_empty();
        let sc = SpanContext::new(trace_id, span_id, flags, true, state.unwrap_or_default());
        let cx = cx.with_remote_span_context(sc);
        if refused {
            let header = members
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            return cx.with_value(ReceivedTraceState {
                trace_id,
                header: header.into(),
            });
        }
        cx
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(&self.fields)
    }
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// `2 * N` lowercase hex digits as `N` bytes; `None` for anything else
/// (upper case included, which W3C trace context does not allow).
fn lower_hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    fn digit(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        }
    }
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0; N];
    for (byte, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// The trace id, parent id and flags of a valid `traceparent`.
fn parse_traceparent(value: &str) -> Option<(TraceId, SpanId, TraceFlags)> {
    let value = value.trim_matches(is_ows);
    if value.len() < 55 || !value.is_ascii() {
        return None;
    }
    let version = &value[..2];
    if lower_hex::<1>(version.as_bytes()).is_none() || version == "ff" {
        return None;
    }
    match (version, value.len()) {
        ("00", 55) => {}
        ("00", _) => return None,
        (_, 55) => {}
        _ if value.as_bytes()[55] == b'-' => {}
        _ => return None,
    }
    let b = value.as_bytes();
    if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let trace_id = TraceId::from_bytes(lower_hex(&b[3..35])?);
    let span_id = SpanId::from_bytes(lower_hex(&b[36..52])?);
    let [flags] = lower_hex(&b[53..55])?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    Some((
        trace_id,
        span_id,
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
    ))
}

/// The members of the `tracestate` headers in order, or `None` if the list is
/// invalid as a whole (an illegal member, too many members).
fn parse_tracestate<'a>(values: &[&'a str]) -> Option<Vec<(&'a str, &'a str)>> {
    let mut members: Vec<(&str, &str)> = Vec::new();
    for member in values.iter().flat_map(|v| v.split(',')) {
        let member = member.trim_matches(is_ows);
        if member.is_empty() {
            continue;
        }
        let (key, value) = member.split_once('=')?;
        if !valid_key(key) || !valid_value(value) {
            return None;
        }
        if !members.iter().any(|(k, _)| *k == key) {
            members.push((key, value));
        }
    }
    (members.len() <= MAX_MEMBERS).then_some(members)
}

/// The key grammar of the specification's current text (w3c/trace-context
/// `spec/20-http_request_header_format.md`, and its test suite since #584):
/// `key = ( lcalpha / DIGIT ) 0*255 ( keychar )` with
/// `keychar = lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@"`. The older
/// `tenant@system` form with its 241- and 14-character parts is a case of it,
/// no longer a rule of its own: `foo@` and a 242-character tenant are keys.
fn valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    (1..=256).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|&c| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || matches!(c, b'_' | b'-' | b'*' | b'/' | b'@')
        })
}

/// Level 1 value grammar: `0*255(chr) nblk-chr`, where `chr` is a space or a
/// `nblk-chr` (printable ASCII but `,` and `=`).
fn valid_value(value: &str) -> bool {
    let nblk = |c: u8| (0x21..=0x7e).contains(&c) && c != b',' && c != b'=';
    let b = value.as_bytes();
    (1..=256).contains(&b.len()) && b.iter().all(|&c| c == b' ' || nblk(c)) && nblk(b[b.len() - 1])
}

fn list_len(members: &[(&str, &str)]) -> usize {
    let separators = members.len().saturating_sub(1);
    members
        .iter()
        .map(|(k, v)| k.len() + 1 + v.len())
        .sum::<usize>()
        + separators
}

/// Shortens a list longer than [`MAX_PROPAGATED_LEN`]: members longer than
/// 128 characters are removed first (from the right), then members from the
/// right, until it fits.
fn truncate<'a>(mut members: Vec<(&'a str, &'a str)>) -> Vec<(&'a str, &'a str)> {
    while list_len(&members) > MAX_PROPAGATED_LEN {
        match members
            .iter()
            .rposition(|(k, v)| k.len() + 1 + v.len() > LONG_MEMBER)
        {
            Some(i) => {
                members.remove(i);
            }
            None => {
                members.pop();
            }
        }
    }
    members
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const TP: &str = "00-12345678901234567890123456789012-1234567890123456-01";

    #[test]
    fn written_traceparent_is_lower_hex_version_00_with_only_the_sampled_flag() {
        let sc = |flags| {
            SpanContext::new(
                TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
                SpanId::from_hex("b7ad6b7169203331").unwrap(),
                flags,
                true,
                TraceState::default(),
            )
        };
        assert_eq!(
            traceparent(&sc(TraceFlags::SAMPLED)),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
        assert_eq!(
            traceparent(&sc(TraceFlags::new(0xfe))),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
        );
        assert_eq!(
            traceparent(&sc(TraceFlags::new(0xff))),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
        let written = traceparent(&sc(TraceFlags::SAMPLED));
        assert_eq!(
            parse_traceparent(&written).map(|(trace, span, _)| (trace, span)),
            Some((
                sc(TraceFlags::SAMPLED).trace_id(),
                sc(TraceFlags::SAMPLED).span_id()
            ))
        );
    }

    #[test]
    fn traceparent_rules() {
        let ok = |v: &str| parse_traceparent(v).is_some();
        assert!(ok(TP));
        assert!(ok(
            " \t00-12345678901234567890123456789012-1234567890123456-01\t "
        ));
        assert!(ok(
            "cc-12345678901234567890123456789012-1234567890123456-01"
        ));
        assert!(ok(
            "cc-12345678901234567890123456789012-1234567890123456-01-future"
        ));
        for bad in [
            "cc-12345678901234567890123456789012-1234567890123456-01.future",
            "00-12345678901234567890123456789012-1234567890123456-01.",
            "00-12345678901234567890123456789012-1234567890123456-01-future",
            "ff-12345678901234567890123456789012-1234567890123456-01",
            "0-12345678901234567890123456789012-1234567890123456-01",
            "000-12345678901234567890123456789012-1234567890123456-01",
            ".0-12345678901234567890123456789012-1234567890123456-01",
            "00-00000000000000000000000000000000-1234567890123456-01",
            "00-12345678901234567890123456789012-0000000000000000-01",
            "00-1234567890123456789012345678901A-1234567890123456-01",
            "00-123456789012345678901234567890123-1234567890123456-01",
            "00-1234567890123456789012345678901-1234567890123456-01",
            "00-12345678901234567890123456789012-12345678901234567-01",
            "00-12345678901234567890123456789012-123456789012345-01",
            "00-12345678901234567890123456789012-1234567890123456-001",
            "00-12345678901234567890123456789012-1234567890123456-1",
            "00-12345678901234567890123456789012-1234567890123456-.0",
            "00-12345678901234567890123456789012-1234567890123456-0é",
        ] {
            assert!(!ok(bad), "{bad:?} accepted");
        }
        let (trace_id, span_id, flags) =
            parse_traceparent("00-0123456789abcdef0a1b2c3d4e5f6789-fedcba9876543210-01").unwrap();
        assert_eq!(
            trace_id,
            TraceId::from_hex("0123456789abcdef0a1b2c3d4e5f6789").unwrap()
        );
        assert_eq!(span_id, SpanId::from_hex("fedcba9876543210").unwrap());
        assert_eq!(flags, TraceFlags::SAMPLED);
        let (_, _, flags) =
            parse_traceparent("00-0123456789abcdef0a1b2c3d4e5f6789-fedcba9876543210-00").unwrap();
        assert_eq!(flags, TraceFlags::NOT_SAMPLED);
        // Only the sampled flag is kept (version 00 defines no other).
        let (_, _, flags) =
            parse_traceparent("00-12345678901234567890123456789012-1234567890123456-ff").unwrap();
        assert_eq!(flags, TraceFlags::SAMPLED);
    }

    #[test]
    fn tracestate_keys_follow_the_current_grammar() {
        for good in [
            "foo",
            "a0_-*/",
            &"z".repeat(256),
            "0tenant@system",
            "0foo",
            &format!("{}@{}", "t".repeat(241), "v".repeat(14)),
            "foo@",
            "foo@@bar",
            "foo@bar@baz",
            "t@0v",
            &format!("{}@v", "t".repeat(242)),
            &format!("t@{}", "v".repeat(15)),
        ] {
            assert!(valid_key(good), "{good:?} refused");
        }
        for bad in [
            "",
            "FOO",
            "foo ",
            "foo.bar",
            "_foo",
            &"z".repeat(257),
            &format!("{}@v", "t".repeat(255)),
            "@foo",
        ] {
            assert!(!valid_key(bad), "{bad:?} accepted");
        }
        assert!(valid_value("a b"));
        for bad in ["", "a ", "a,b", "a=b", "\u{7f}", &"x".repeat(257)] {
            assert!(!valid_value(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_long_tracestate_loses_its_long_members_first_then_members_from_the_right() {
        let long = "x".repeat(200);
        let mut members = vec![("a", "1"), ("big", long.as_str())];
        let keys: Vec<String> = (0..40).map(|i| format!("k{i:02}")).collect();
        let value = "v".repeat(10);
        members.extend(keys.iter().take(30).map(|k| (k.as_str(), value.as_str())));
        let kept = truncate(members);
        assert!(list_len(&kept) <= MAX_PROPAGATED_LEN);
        assert!(kept.iter().all(|(k, _)| *k != "big"));
        assert_eq!(kept[0], ("a", "1"));
        // Removed from the right: the kept ones are a prefix.
        let kept_keys: Vec<&str> = kept.iter().skip(1).map(|(k, _)| *k).collect();
        let prefix: Vec<&str> = keys
            .iter()
            .take(kept_keys.len())
            .map(String::as_str)
            .collect();
        assert_eq!(kept_keys, prefix);
    }

    #[test]
    fn a_key_the_sdk_refuses_is_still_passed_on() {
        let key = format!("{}@{}", "t".repeat(241), "v".repeat(14));
        let carrier: HashMap<String, String> = [
            ("traceparent".to_owned(), TP.to_owned()),
            ("tracestate".to_owned(), format!("foo=1,{key}=2")),
        ]
        .into();
        let p = W3cTraceContext::new();
        let cx = p.extract(&carrier);
        let mut out = HashMap::new();
        p.inject_context(&cx, &mut out);
        assert_eq!(out["tracestate"], format!("foo=1,{key}=2"));
    }
}
