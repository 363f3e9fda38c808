//! The Kafka records of the order flow, as JSON.
//!
//! Field order is part of the wire format: [`OrderCreated`] was always
//! written from a JSON object with its keys sorted (and is stored in the
//! outbox as `jsonb`, which the relay publishes with sorted keys too), so its
//! fields are declared in that order; [`StockDecision`] keeps the order it
//! has always had.

use serde::{Deserialize, Serialize};

use crate::ids::{EventId, OrderId, ProductId, UserId};

/// On `order-events`: an order was written and waits for its stock reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCreated {
    pub event_id: EventId,
    pub items: Vec<OrderCreatedLine>,
    pub order_id: OrderId,
    pub total_cents: i64,
    #[serde(rename = "type")]
    pub kind: OrderCreatedType,
    pub user_id: UserId,
}

/// The `type` of an [`OrderCreated`] record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderCreatedType {
    #[serde(rename = "order-created")]
    OrderCreated,
}

/// One line of an [`OrderCreated`] record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCreatedLine {
    pub price_cents: i64,
    pub product_id: ProductId,
    pub quantity: i32,
}

/// On `inventory-events`: inventory-service's answer to an [`OrderCreated`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockDecision {
    /// The [`OrderCreated`] event this answers (order-service skips duplicates by it).
    pub event_id: EventId,
    pub order_id: OrderId,
    #[serde(rename = "type")]
    pub kind: StockDecisionKind,
    /// Why the stock was refused; `null` when reserved.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StockDecisionKind {
    /// Every line was reserved; the order is confirmed.
    #[serde(rename = "stock-reserved")]
    Reserved,
    /// Nothing was reserved; the order is rejected with the reason.
    #[serde(rename = "stock-rejected")]
    Rejected,
}

impl StockDecisionKind {
    /// The order status this decision settles an order to.
    pub fn order_status(self) -> crate::OrderStatus {
        match self {
            Self::Reserved => crate::OrderStatus::Confirmed,
            Self::Rejected => crate::OrderStatus::Rejected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uuid(s: &str) -> uuid::Uuid {
        uuid::Uuid::parse_str(s).unwrap()
    }

    #[test]
    fn an_order_created_record_is_byte_for_byte_what_order_service_always_wrote() {
        let event = OrderCreated {
            event_id: EventId(uuid("0190a3b2-0000-7000-8000-000000000001")),
            items: vec![OrderCreatedLine {
                price_cents: 2599,
                product_id: ProductId::parse("prod1").unwrap(),
                quantity: 2,
            }],
            order_id: OrderId(uuid("0190a3b2-0000-7000-8000-000000000002")),
            total_cents: 5198,
            kind: OrderCreatedType::OrderCreated,
            user_id: UserId::parse("user123").unwrap(),
        };
        // As the service built it before: a json! object, keys sorted.
        let before = serde_json::json!({
            "eventId": "0190a3b2-0000-7000-8000-000000000001",
            "type": "order-created",
            "orderId": "0190a3b2-0000-7000-8000-000000000002",
            "userId": "user123",
            "items": [{ "productId": "prod1", "quantity": 2, "priceCents": 2599 }],
            "totalCents": 5198,
        });
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            serde_json::to_string(&before).unwrap()
        );
        assert_eq!(
            serde_json::from_value::<OrderCreated>(before).unwrap(),
            event
        );
    }

    #[test]
    fn a_stock_decision_is_byte_for_byte_what_inventory_service_always_wrote() {
        let decision = StockDecision {
            event_id: EventId(uuid("0190a3b2-0000-7000-8000-000000000001")),
            order_id: OrderId(uuid("0190a3b2-0000-7000-8000-000000000002")),
            kind: StockDecisionKind::Rejected,
            reason: Some("insufficient stock for prod3".into()),
        };
        assert_eq!(
            serde_json::to_string(&decision).unwrap(),
            r#"{"eventId":"0190a3b2-0000-7000-8000-000000000001","orderId":"0190a3b2-0000-7000-8000-000000000002","type":"stock-rejected","reason":"insufficient stock for prod3"}"#
        );
        let reserved = StockDecision {
            kind: StockDecisionKind::Reserved,
            reason: None,
            ..decision
        };
        assert!(
            serde_json::to_string(&reserved)
                .unwrap()
                .ends_with(r#""type":"stock-reserved","reason":null}"#)
        );
        assert_eq!(reserved.kind.order_status(), crate::OrderStatus::Confirmed);
    }

    #[test]
    fn an_unknown_decision_type_is_refused() {
        let text = r#"{"eventId":"0190a3b2-0000-7000-8000-000000000001","orderId":"0190a3b2-0000-7000-8000-000000000002","type":"stock-lost","reason":null}"#;
        assert!(serde_json::from_str::<StockDecision>(text).is_err());
    }
}
