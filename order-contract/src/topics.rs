//! The Kafka topics of the order flow.

/// order-service → inventory-service: [`crate::OrderCreated`], keyed by order id.
pub const ORDER_EVENTS: &str = "order-events";
/// inventory-service → order-service: [`crate::StockDecision`], keyed by order id.
pub const INVENTORY_EVENTS: &str = "inventory-events";
/// Every topic, for whoever creates them at start-up.
pub const ALL: &[&str] = &[ORDER_EVENTS, INVENTORY_EVENTS];
/// Partitions each topic is created with when missing.
pub const PARTITIONS: i32 = 3;
