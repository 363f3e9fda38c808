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
    /// inventory-service: `GET /inventory/{id}`, a product's stock.
    pub const INVENTORY: &str = "/inventory/{id}";

    /// `path` with its `{id}` replaced by `id` (already percent-encoded
    /// where it comes from outside).
    pub fn with_id(path: &str, id: &str) -> String {
        path.replacen("{id}", id, 1)
    }
}

/// `POST /api/orders` (and `POST /orders` behind it): the order a client
/// sends, built with this type by every client here (the load generator, the
/// test kit, `tracectl`). order-service reads bodies field by field instead
/// (`order_service::domain`), to say exactly what is wrong with a bad one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderRequest {
    pub user_id: String,
    pub items: Vec<OrderRequestLine>,
    #[serde(serialize_with = "as_amount")]
    pub total_amount: crate::money::Cents,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderRequestLine {
    pub product_id: String,
    pub quantity: i64,
    #[serde(serialize_with = "as_amount")]
    pub price: crate::money::Cents,
}

fn as_amount<S: serde::Serializer>(cents: &crate::money::Cents, s: S) -> Result<S::Ok, S::Error> {
    cents.amount().serialize(s)
}

impl OrderRequest {
    /// An order of `user_id` for `(product, quantity, price in cents)` lines,
    /// its total the exact sum of the lines.
    pub fn new(user_id: &str, lines: &[(&str, i64, i64)]) -> Self {
        let items: Vec<OrderRequestLine> = lines
            .iter()
            .map(|&(product, quantity, price)| OrderRequestLine {
                product_id: product.to_owned(),
                quantity,
                price: crate::money::Cents(price),
            })
            .collect();
        let total = items.iter().map(|l| l.price.0 * l.quantity).sum();
        Self {
            user_id: user_id.to_owned(),
            items,
            total_amount: crate::money::Cents(total),
        }
    }

    /// The seed's order: `user123`, 2 × `prod1` at 25.99 and 1 × `prod2` at
    /// 15.50, 67.48 in all.
    pub fn seed() -> Self {
        Self::new("user123", &[("prod1", 2, 2599), ("prod2", 1, 1550)])
    }

    /// The `i`-th of a sequence of valid orders of the seeded users and
    /// products (the seed's shape, quantities and order varying), for load.
    pub fn sample(i: usize) -> Self {
        const USERS: [&str; 3] = ["user123", "user456", "user789"];
        let (a, b) = if i.is_multiple_of(2) {
            ("prod1", "prod2")
        } else {
            ("prod2", "prod1")
        };
        let quantity = 1 + (i % 3) as i64;
        Self::new(USERS[i % USERS.len()], &[(a, quantity, 2599), (b, 1, 1550)])
    }

    /// The JSON body.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an order serializes")
    }
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

    #[test]
    fn the_seed_order_is_the_seeds_json_and_samples_add_up() {
        let seed: serde_json::Value =
            serde_json::from_str(&OrderRequest::seed().to_json()).unwrap();
        assert_eq!(
            seed,
            json!({"userId": "user123",
                   "items": [{"productId": "prod1", "quantity": 2, "price": 25.99},
                             {"productId": "prod2", "quantity": 1, "price": 15.50}],
                   "totalAmount": 67.48})
        );
        assert_eq!(
            OrderRequest::sample(1).to_json(),
            r#"{"userId":"user456","items":[{"productId":"prod2","quantity":2,"price":25.99},{"productId":"prod1","quantity":1,"price":15.5}],"totalAmount":67.48}"#
        );
    }

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
