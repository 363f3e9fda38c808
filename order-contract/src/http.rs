//! The JSON bodies between the services. Fields are declared in the order
//! the services have always written them (sorted keys, from `json!`), so the
//! bytes are unchanged; the tests pin them.

use serde::{Deserialize, Serialize};

use crate::ids::{OrderId, ProductId};
use crate::status::OrderStatus;

/// The routes the services call on each other, next to their bodies.
pub mod paths {
    /// user-service: `GET /users/{id}` → [`super::UserFound`].
    pub const USER: &str = "/users/{id}";
    /// inventory-service: `POST /check` with [`super::StockCheckRequest`] → [`super::StockCheckAnswer`].
    pub const STOCK_CHECK: &str = "/check";
    /// order-service: `POST /orders` → [`super::OrderAccepted`].
    pub const ORDERS: &str = "/orders";
    /// order-service: `GET /orders/{id}` → [`super::OrderView`].
    pub const ORDER: &str = "/orders/{id}";
}

/// `POST /check`: can current stock serve these lines? Nothing is reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockCheckRequest {
    pub items: Vec<StockCheckLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockCheckLine {
    pub product_id: ProductId,
    pub quantity: i64,
}

/// The answer to a [`StockCheckRequest`], one item per distinct product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockCheckAnswer {
    /// Every line can be served.
    pub available: bool,
    pub items: Vec<StockCheckItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockCheckItem {
    /// Units in stock now.
    pub available: i64,
    /// inventory-service has this product at all.
    pub known: bool,
    pub product_id: ProductId,
    /// Units asked for, summed over the request's lines.
    pub requested: i64,
    pub sufficient: bool,
}

impl StockCheckAnswer {
    /// The products the stock cannot serve.
    pub fn short(&self) -> impl Iterator<Item = &ProductId> {
        self.items
            .iter()
            .filter(|i| !i.sufficient)
            .map(|i| &i.product_id)
    }
}

/// `201` to `POST /orders` (and, through the gateway, `POST /api/orders`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderAccepted {
    pub message: String,
    pub order_id: OrderId,
    pub status: OrderStatus,
    pub success: bool,
}

impl OrderAccepted {
    pub fn new(order_id: OrderId, status: OrderStatus) -> Self {
        Self {
            message: "Order created successfully".to_owned(),
            order_id,
            status,
            success: true,
        }
    }
}

/// `GET /orders/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub order: OrderDetails,
    pub success: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderDetails {
    pub items: Vec<OrderViewLine>,
    pub order_id: OrderId,
    /// Why the order was rejected; `null` otherwise.
    pub reason: Option<String>,
    pub status: OrderStatus,
    /// An exact decimal (`67.48`), see [`crate::Cents::amount`].
    pub total_amount: serde_json::Number,
    pub user_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderViewLine {
    pub price: serde_json::Number,
    pub product_id: String,
    pub quantity: i32,
}

/// `GET /users/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserFound {
    pub success: bool,
    pub user: User,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
    pub tier: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn same_bytes<T: Serialize>(typed: &T, before: serde_json::Value) {
        assert_eq!(
            serde_json::to_string(typed).unwrap(),
            serde_json::to_string(&before).unwrap()
        );
    }

    #[test]
    fn the_stock_check_bodies_are_byte_for_byte_as_before() {
        let request = StockCheckRequest {
            items: vec![StockCheckLine {
                product_id: ProductId::parse("prod1").unwrap(),
                quantity: 2,
            }],
        };
        same_bytes(
            &request,
            json!({ "items": [{ "productId": "prod1", "quantity": 2 }] }),
        );
        let answer = StockCheckAnswer {
            available: false,
            items: vec![StockCheckItem {
                available: 0,
                known: true,
                product_id: ProductId::parse("prod3").unwrap(),
                requested: 1,
                sufficient: false,
            }],
        };
        same_bytes(
            &answer,
            json!({ "available": false, "items": [{ "productId": "prod3", "requested": 1, "available": 0, "known": true, "sufficient": false }] }),
        );
        assert_eq!(
            answer.short().map(ProductId::as_str).collect::<Vec<_>>(),
            ["prod3"]
        );
    }

    #[test]
    fn the_order_bodies_are_byte_for_byte_as_before() {
        let id: OrderId = "0190a3b2-0000-7000-8000-000000000002".parse().unwrap();
        same_bytes(
            &OrderAccepted::new(id, OrderStatus::Pending),
            json!({ "success": true, "orderId": id.0, "status": "pending", "message": "Order created successfully" }),
        );
        let view = OrderView {
            success: true,
            order: OrderDetails {
                order_id: id,
                user_id: "user123".into(),
                status: OrderStatus::Confirmed,
                reason: None,
                total_amount: crate::Cents(6748).amount(),
                items: vec![OrderViewLine {
                    product_id: "prod1".into(),
                    quantity: 2,
                    price: crate::Cents(2599).amount(),
                }],
            },
        };
        same_bytes(
            &view,
            json!({ "success": true, "order": {
                "orderId": id.0, "userId": "user123", "status": "confirmed", "reason": null,
                "totalAmount": 67.48,
                "items": [{ "productId": "prod1", "quantity": 2, "price": 25.99 }],
            }}),
        );
    }

    #[test]
    fn the_user_body_is_byte_for_byte_as_before() {
        let user = User {
            id: "user123".into(),
            name: "Ada".into(),
            tier: "gold".into(),
        };
        same_bytes(
            &UserFound {
                success: true,
                user: user.clone(),
            },
            json!({ "success": true, "user": { "id": "user123", "name": "Ada", "tier": "gold" } }),
        );
    }
}
