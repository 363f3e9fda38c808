//! The trace of `POST /api/orders`, written once: the span names of the order
//! flow, and the tree they form. `tracectl verify`, the end-to-end tests and
//! order-service's flow test all check against [`ORDER_TRACE`]; SPANS.md says
//! which function creates each span.
//!
//! Business spans are created with these constants (`info_span!(names::VALIDATE_ORDER)`).
//! The others are named by the instrumentation: SERVER spans `{method} {route}`
//! by `tracing_common::ServerTracingLayer` from the route a service registers,
//! CLIENT spans `{method}` by `tracing_common::reqwest`, database spans
//! `{operation} {table}` by `tracing_common::sqlx` from the statement's executor, messaging
//! spans `{operation} {topic}` by `tracing_common::rdkafka`.

/// The baggage order-service adds to an order's context: every span below
/// it, in every service, carries these as attributes
/// (`TelemetryConfig::with_span_baggage(baggage::ON_SPANS)`), so Jaeger finds
/// all spans of one user or one order by tag.
pub mod baggage {
    /// The user an operation acts for.
    pub const USER_ID: &str = "user.id";
    /// The order an operation concerns.
    pub const ORDER_ID: &str = "order.id";
    /// The keys copied from baggage onto spans.
    pub const ON_SPANS: &[&str] = &[USER_ID, ORDER_ID];
}

/// This application's attributes that are integers (beside the semantic
/// conventions' own, `tracing_common::spans::INTEGER_ATTRIBUTES`); its
/// identifiers and the decimal `order.total_amount` are strings.
pub const INTEGER_ATTRIBUTES: &[&str] = &["order.item_count", "fault.delay_ms"];

/// Who emits a span.
pub mod services {
    pub const API_GATEWAY: &str = "api-gateway";
    pub const USER_SERVICE: &str = "user-service";
    pub const ORDER_SERVICE: &str = "order-service";
    pub const INVENTORY_SERVICE: &str = "inventory-service";
}

/// Span names, in the order the flow meets them.
pub mod names {
    /// api-gateway's SERVER span: route `/api/orders`.
    pub const GATEWAY_CREATE_ORDER: &str = "POST /api/orders";
    /// Every HTTP CLIENT span calling with POST (gateway → order-service, order-service → inventory-service).
    pub const HTTP_POST: &str = "POST";
    /// Every HTTP CLIENT span calling with GET (order-service → user-service).
    pub const HTTP_GET: &str = "GET";
    /// order-service's SERVER span: route [`crate::http::paths::ORDERS`].
    pub const CREATE_ORDER: &str = "POST /orders";
    pub const VALIDATE_ORDER: &str = "validate-order";
    pub const FETCH_USER_DATA: &str = "fetch-user-data";
    /// user-service's SERVER span: route [`crate::http::paths::USER`].
    pub const GET_USER: &str = "GET /users/{id}";
    pub const SELECT_USERS: &str = "SELECT users";
    pub const CHECK_INVENTORY: &str = "check-inventory";
    /// inventory-service's SERVER span: route [`crate::http::paths::STOCK_CHECK`].
    pub const CHECK_STOCK: &str = "POST /check";
    pub const SELECT_STOCK: &str = "SELECT stock";
    pub const CREATE_ORDER_DB: &str = "create-order-db";
    pub const INSERT_ORDERS: &str = "INSERT orders";
    pub const INSERT_ORDER_ITEMS: &str = "INSERT order_items";
    pub const INSERT_OUTBOX: &str = "INSERT outbox";
    pub const PUBLISH_ORDER_EVENT: &str = "publish-order-event";
    pub const SEND_ORDER_EVENTS: &str = "send order-events";
    pub const PROCESS_ORDER_EVENTS: &str = "process order-events";
    pub const RESERVE_STOCK: &str = "reserve-stock";
    pub const UPDATE_STOCK: &str = "UPDATE stock";
    pub const SEND_INVENTORY_EVENTS: &str = "send inventory-events";
    pub const PROCESS_INVENTORY_EVENTS: &str = "process inventory-events";
    pub const UPDATE_ORDERS: &str = "UPDATE orders";
}

/// A span's kind, as OpenTelemetry defines them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

/// One expected span: who emits it, its kind and name, and its parent's
/// service and name (`None` for the root).
#[derive(Debug, Clone, Copy)]
pub struct Expected {
    pub service: &'static str,
    pub kind: SpanKind,
    pub name: &'static str,
    pub parent: Option<(&'static str, &'static str)>,
}

/// An [`Expected`] span, for tables like [`ORDER_TRACE`].
pub const fn expected(
    service: &'static str,
    kind: SpanKind,
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

use SpanKind::{Client, Consumer, Internal, Producer, Server};
use names::*;
use services::{
    API_GATEWAY as GW, INVENTORY_SERVICE as IS, ORDER_SERVICE as OS, USER_SERVICE as US,
};

/// `POST /api/orders` through every hop, in order.
pub const ORDER_TRACE: &[Expected] = &[
    expected(GW, Server, GATEWAY_CREATE_ORDER, None),
    expected(GW, Client, HTTP_POST, Some((GW, GATEWAY_CREATE_ORDER))),
    expected(OS, Server, CREATE_ORDER, Some((GW, HTTP_POST))),
    expected(OS, Internal, VALIDATE_ORDER, Some((OS, CREATE_ORDER))),
    expected(OS, Internal, FETCH_USER_DATA, Some((OS, CREATE_ORDER))),
    expected(OS, Client, HTTP_GET, Some((OS, FETCH_USER_DATA))),
    expected(US, Server, GET_USER, Some((OS, HTTP_GET))),
    expected(US, Client, SELECT_USERS, Some((US, GET_USER))),
    expected(OS, Internal, CHECK_INVENTORY, Some((OS, CREATE_ORDER))),
    expected(OS, Client, HTTP_POST, Some((OS, CHECK_INVENTORY))),
    expected(IS, Server, CHECK_STOCK, Some((OS, HTTP_POST))),
    expected(IS, Client, SELECT_STOCK, Some((IS, CHECK_STOCK))),
    expected(OS, Internal, CREATE_ORDER_DB, Some((OS, CREATE_ORDER))),
    expected(OS, Client, INSERT_ORDERS, Some((OS, CREATE_ORDER_DB))),
    expected(OS, Client, INSERT_ORDER_ITEMS, Some((OS, CREATE_ORDER_DB))),
    expected(OS, Client, INSERT_OUTBOX, Some((OS, CREATE_ORDER_DB))),
    expected(OS, Internal, PUBLISH_ORDER_EVENT, Some((OS, CREATE_ORDER))),
    expected(
        OS,
        Producer,
        SEND_ORDER_EVENTS,
        Some((OS, PUBLISH_ORDER_EVENT)),
    ),
    expected(
        IS,
        Consumer,
        PROCESS_ORDER_EVENTS,
        Some((OS, SEND_ORDER_EVENTS)),
    ),
    expected(
        IS,
        Internal,
        RESERVE_STOCK,
        Some((IS, PROCESS_ORDER_EVENTS)),
    ),
    expected(IS, Client, UPDATE_STOCK, Some((IS, RESERVE_STOCK))),
    expected(
        IS,
        Producer,
        SEND_INVENTORY_EVENTS,
        Some((IS, PROCESS_ORDER_EVENTS)),
    ),
    expected(
        OS,
        Consumer,
        PROCESS_INVENTORY_EVENTS,
        Some((IS, SEND_INVENTORY_EVENTS)),
    ),
    expected(
        OS,
        Client,
        UPDATE_ORDERS,
        Some((OS, PROCESS_INVENTORY_EVENTS)),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_span_names_are_the_method_and_the_route_a_service_registers() {
        use crate::http::paths;
        assert_eq!(CREATE_ORDER, format!("POST {}", paths::ORDERS));
        assert_eq!(GET_USER, format!("GET {}", paths::USER));
        assert_eq!(CHECK_STOCK, format!("POST {}", paths::STOCK_CHECK));
        assert_eq!(
            SEND_ORDER_EVENTS,
            format!("send {}", crate::topics::ORDER_EVENTS)
        );
        assert_eq!(
            PROCESS_INVENTORY_EVENTS,
            format!("process {}", crate::topics::INVENTORY_EVENTS)
        );
    }

    #[test]
    fn the_tree_has_one_root_and_every_parent_is_an_earlier_span() {
        assert_eq!(ORDER_TRACE.iter().filter(|e| e.parent.is_none()).count(), 1);
        for (i, e) in ORDER_TRACE.iter().enumerate() {
            if let Some((service, name)) = e.parent {
                assert!(
                    ORDER_TRACE[..i]
                        .iter()
                        .any(|p| p.service == service && p.name == name),
                    "{} {}: parent {service} {name} comes earlier",
                    e.service,
                    e.name
                );
            }
        }
    }
}
