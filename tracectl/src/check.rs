//! A check of a received trace against the trace an order must produce
//! (`order_contract::trace::ORDER_TRACE`, one definition for the checker, the
//! tests and SPANS.md). Used by `tracectl verify` against a
//! running stack and by the end-to-end test.

use crate::model::{Kind, Trace};

pub use order_contract::trace::{Expected, ORDER_TRACE};

impl From<order_contract::trace::SpanKind> for Kind {
    fn from(kind: order_contract::trace::SpanKind) -> Self {
        use order_contract::trace::SpanKind as K;
        match kind {
            K::Internal => Self::Internal,
            K::Server => Self::Server,
            K::Client => Self::Client,
            K::Producer => Self::Producer,
            K::Consumer => Self::Consumer,
        }
    }
}

/// What is wrong with `trace` against `expected`; empty when it matches.
/// Checks each expected span's presence, kind, parent and service, that
/// consumer spans link to their producer, and that nothing is orphaned.
pub fn problems(trace: &Trace, expected: &[Expected]) -> Vec<String> {
    let mut problems = Vec::new();
    for e in expected {
        let candidates: Vec<_> = trace
            .spans
            .iter()
            .filter(|s| s.service == e.service && s.name == e.name && s.kind == Kind::from(e.kind))
            .collect();
        if candidates.is_empty() {
            problems.push(format!(
                "missing {} {} {:?}",
                e.service,
                Kind::from(e.kind).label(),
                e.name
            ));
            continue;
        }
        let placed = candidates
            .iter()
            .any(|s| match (e.parent, trace.parent_of(s)) {
                (None, None) => true,
                (Some((service, name)), Some(parent)) => {
                    parent.service == service && parent.name == name
                }
                _ => false,
            });
        if !placed {
            let actual: Vec<String> = candidates
                .iter()
                .map(|s| {
                    trace.parent_of(s).map_or("no parent".into(), |p| {
                        format!("{} {:?}", p.service, p.name)
                    })
                })
                .collect();
            problems.push(format!(
                "{} {:?}: expected parent {}, found {}",
                e.service,
                e.name,
                e.parent
                    .map_or("none".into(), |(s, n)| format!("{s} {n:?}")),
                actual.join(" / ")
            ));
        }
        if Kind::from(e.kind) == Kind::Consumer {
            for consumer in &candidates {
                let Some(producer) = trace.parent_of(consumer) else {
                    continue;
                };
                if !consumer
                    .links
                    .iter()
                    .any(|(t, s)| t == &producer.trace_id && s == &producer.span_id)
                {
                    problems.push(format!(
                        "{} {:?} does not link to its producer",
                        e.service, e.name
                    ));
                }
            }
        }
    }
    for span in &trace.spans {
        for key in tracing_common::spans::INTEGER_ATTRIBUTES
            .iter()
            .chain(order_contract::trace::INTEGER_ATTRIBUTES)
        {
            if let Some(value) = span.attr(key)
                && !span.integers.contains(*key)
            {
                problems.push(format!(
                    "{} {:?}: {key} is the text {value:?}; the semantic conventions make it an integer",
                    span.service, span.name
                ));
            }
        }
    }
    for warning in &trace.warnings {
        problems.push(warning.clone());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Span;
    use order_contract::trace::SpanKind as SK;
    use order_contract::trace::expected as span;

    const GW: &str = "api-gateway";
    const OS: &str = "order-service";
    const IS: &str = "inventory-service";

    fn s(id: &str, parent: Option<&str>, service: &str, kind: Kind, name: &str) -> Span {
        Span {
            service: service.into(),
            kind,
            ..Span::sketch(id, parent, name, 0, 1)
        }
    }

    const SMALL: &[Expected] = &[
        span(GW, SK::Server, "POST /api/orders", None),
        span(GW, SK::Client, "POST", Some((GW, "POST /api/orders"))),
        span(OS, SK::Server, "POST /orders", Some((GW, "POST"))),
    ];

    #[test]
    fn a_matching_trace_has_no_problems() {
        let trace = Trace::new(
            "t".into(),
            vec![
                s("a", None, GW, Kind::Server, "POST /api/orders"),
                s("b", Some("a"), GW, Kind::Client, "POST"),
                s("c", Some("b"), OS, Kind::Server, "POST /orders"),
            ],
        );
        assert_eq!(problems(&trace, SMALL), Vec::<String>::new());
    }

    #[test]
    fn a_broken_hop_a_wrong_kind_and_a_missing_span_are_each_reported() {
        let trace = Trace::new(
            "t".into(),
            vec![
                s("a", None, GW, Kind::Server, "POST /api/orders"),
                s("b", Some("a"), GW, Kind::Internal, "POST"),
                s("c", None, OS, Kind::Server, "POST /orders"),
            ],
        );
        let found = problems(&trace, SMALL);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("missing api-gateway CLIENT"));
        assert!(found[1].contains("expected parent api-gateway \"POST\", found no parent"));
    }

    #[test]
    fn a_status_code_exported_as_text_is_reported_and_one_exported_as_an_integer_is_not() {
        let mut text = s("a", None, GW, Kind::Server, "POST /api/orders");
        text.attributes
            .insert("http.response.status_code".into(), "201".into());
        let mut typed = text.clone();
        typed.span_id = "b".into();
        typed.parent_id = Some("a".into());
        typed.kind = Kind::Client;
        typed.name = "POST".into();
        typed.integers.insert("http.response.status_code".into());
        let trace = Trace::new("t".into(), vec![text, typed]);
        let found = problems(&trace, &SMALL[..2]);
        assert_eq!(
            found,
            [
                "api-gateway \"POST /api/orders\": http.response.status_code is the text \"201\"; \
                 the semantic conventions make it an integer"
            ]
        );
    }

    #[test]
    fn a_consumer_without_a_link_to_its_producer_is_reported() {
        let expected = [
            span(OS, SK::Producer, "send order-events", None),
            span(
                IS,
                SK::Consumer,
                "process order-events",
                Some((OS, "send order-events")),
            ),
        ];
        let mut consumer = s("b", Some("a"), IS, Kind::Consumer, "process order-events");
        let trace = Trace::new(
            "t".into(),
            vec![
                s("a", None, OS, Kind::Producer, "send order-events"),
                consumer.clone(),
            ],
        );
        assert_eq!(problems(&trace, &expected).len(), 1);
        consumer.links.push(("t".into(), "a".into()));
        let trace = Trace::new(
            "t".into(),
            vec![
                s("a", None, OS, Kind::Producer, "send order-events"),
                consumer,
            ],
        );
        assert!(problems(&trace, &expected).is_empty());
    }
}
