//! The trace an order must produce (README, "The order flow and its trace"), as data, and a
//! check of a received trace against it. Used by `tracectl verify` against a
//! running stack and by the end-to-end test.

use crate::model::{Kind, Trace};

/// One expected span: who emits it, its kind and name, and its parent's
/// service and name (`None` for the root).
#[derive(Debug, Clone, Copy)]
pub struct Expected {
    pub service: &'static str,
    pub kind: Kind,
    pub name: &'static str,
    pub parent: Option<(&'static str, &'static str)>,
}

const fn span(
    service: &'static str,
    kind: Kind,
    name: &'static str,
    parent: Option<(&'static str, &'static str)>,
) -> Expected {
    Expected {
        service,
        kind,
        name,
        parent,
    }
}

const GW: &str = "api-gateway";
const US: &str = "user-service";
const OS: &str = "order-service";
const IS: &str = "inventory-service";

/// `POST /api/orders` through every hop, in order.
pub const ORDER_TRACE: &[Expected] = &[
    span(GW, Kind::Server, "POST /api/orders", None),
    span(GW, Kind::Client, "POST", Some((GW, "POST /api/orders"))),
    span(OS, Kind::Server, "POST /orders", Some((GW, "POST"))),
    span(
        OS,
        Kind::Internal,
        "validate-order",
        Some((OS, "POST /orders")),
    ),
    span(
        OS,
        Kind::Internal,
        "fetch-user-data",
        Some((OS, "POST /orders")),
    ),
    span(OS, Kind::Client, "GET", Some((OS, "fetch-user-data"))),
    span(US, Kind::Server, "GET /users/{id}", Some((OS, "GET"))),
    span(
        US,
        Kind::Client,
        "SELECT users",
        Some((US, "GET /users/{id}")),
    ),
    span(
        OS,
        Kind::Internal,
        "check-inventory",
        Some((OS, "POST /orders")),
    ),
    span(OS, Kind::Client, "POST", Some((OS, "check-inventory"))),
    span(IS, Kind::Server, "POST /check", Some((OS, "POST"))),
    span(IS, Kind::Client, "SELECT stock", Some((IS, "POST /check"))),
    span(
        OS,
        Kind::Internal,
        "create-order-db",
        Some((OS, "POST /orders")),
    ),
    span(
        OS,
        Kind::Client,
        "INSERT orders",
        Some((OS, "create-order-db")),
    ),
    span(
        OS,
        Kind::Client,
        "INSERT order_items",
        Some((OS, "create-order-db")),
    ),
    span(
        OS,
        Kind::Client,
        "INSERT outbox",
        Some((OS, "create-order-db")),
    ),
    span(
        OS,
        Kind::Internal,
        "publish-order-event",
        Some((OS, "POST /orders")),
    ),
    span(
        OS,
        Kind::Producer,
        "send order-events",
        Some((OS, "publish-order-event")),
    ),
    span(
        IS,
        Kind::Consumer,
        "process order-events",
        Some((OS, "send order-events")),
    ),
    span(
        IS,
        Kind::Internal,
        "reserve-stock",
        Some((IS, "process order-events")),
    ),
    span(
        IS,
        Kind::Client,
        "UPDATE stock",
        Some((IS, "reserve-stock")),
    ),
    span(
        IS,
        Kind::Producer,
        "send inventory-events",
        Some((IS, "process order-events")),
    ),
    span(
        OS,
        Kind::Consumer,
        "process inventory-events",
        Some((IS, "send inventory-events")),
    ),
    span(
        OS,
        Kind::Client,
        "UPDATE orders",
        Some((OS, "process inventory-events")),
    ),
];

/// What is wrong with `trace` against `expected`; empty when it matches.
/// Checks each expected span's presence, kind, parent and service, that
/// consumer spans link to their producer, and that nothing is orphaned.
pub fn problems(trace: &Trace, expected: &[Expected]) -> Vec<String> {
    let mut problems = Vec::new();
    for e in expected {
        let candidates: Vec<_> = trace
            .spans
            .iter()
            .filter(|s| s.service == e.service && s.name == e.name && s.kind == e.kind)
            .collect();
        if candidates.is_empty() {
            problems.push(format!(
                "missing {} {} {:?}",
                e.service,
                e.kind.label(),
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
        if e.kind == Kind::Consumer {
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
        for key in tracing_common::spans::INTEGER_ATTRIBUTES {
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

    fn s(id: &str, parent: Option<&str>, service: &str, kind: Kind, name: &str) -> Span {
        Span {
            trace_id: "t".into(),
            span_id: id.into(),
            parent_id: parent.map(str::to_owned),
            service: service.into(),
            name: name.into(),
            kind,
            start_ns: 0,
            duration_ns: 1,
            error: None,
            links: vec![],
            events: vec![],
            event_attributes: Vec::new(),
            integers: Default::default(),
            attributes: Default::default(),
        }
    }

    const SMALL: &[Expected] = &[
        span(GW, Kind::Server, "POST /api/orders", None),
        span(GW, Kind::Client, "POST", Some((GW, "POST /api/orders"))),
        span(OS, Kind::Server, "POST /orders", Some((GW, "POST"))),
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
            span(OS, Kind::Producer, "send order-events", None),
            span(
                IS,
                Kind::Consumer,
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
