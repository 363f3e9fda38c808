//! Parsing an order request into values that cannot be wrong: money in cents,
//! bounded quantities, known-shape ids, and a total that matches its lines.

use order_contract::{Cents, ProductId, UserId};
use serde::Deserialize;
use serde_json::Value;

/// Largest quantity of one line; above this it is a typo or an attack.
pub const MAX_QUANTITY: i64 = 1000;
pub const MAX_LINES: usize = 100;
/// Largest unit price: one million in the currency's main unit.
pub const MAX_PRICE_CENTS: i64 = 100_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub product_id: ProductId,
    pub quantity: i32,
    pub unit_price: Cents,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub user_id: UserId,
    pub lines: Vec<OrderLine>,
    pub total: Cents,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawOrder {
    user_id: Option<Value>,
    items: Option<Vec<RawLine>>,
    total_amount: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawLine {
    product_id: Option<Value>,
    quantity: Option<Value>,
    price: Option<Value>,
}

fn id_field<T: std::str::FromStr<Err = order_contract::InvalidId>>(
    value: Option<Value>,
    name: &str,
) -> Result<T, String> {
    match value {
        Some(Value::String(s)) => s.parse().map_err(|e| format!("{name} {e}")),
        Some(_) => Err(format!("{name} must be a string")),
        None => Err(format!("{name} is required")),
    }
}

fn money_field(value: Option<Value>, name: &str) -> Result<Cents, String> {
    match value {
        Some(Value::Number(n)) => Cents::parse(&n).map_err(|e| format!("{name} {e}")),
        Some(_) => Err(format!("{name} must be a number")),
        None => Err(format!("{name} is required")),
    }
}

impl NewOrder {
    /// Parses a JSON body; the error says what is wrong in words a caller can act on.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let raw: RawOrder =
            serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
        let user_id = id_field(raw.user_id, "userId")?;
        let items = raw.items.ok_or("items is required")?;
        if items.is_empty() {
            return Err("items must not be empty".into());
        }
        if items.len() > MAX_LINES {
            return Err(format!("items must hold at most {MAX_LINES} lines"));
        }
        let mut lines = Vec::with_capacity(items.len());
        let mut sum = Cents(0);
        for (i, item) in items.into_iter().enumerate() {
            let product_id = id_field(item.product_id, &format!("items[{i}].productId"))?;
            let quantity = match item.quantity {
                Some(Value::Number(n)) => match n.as_i64() {
                    Some(q) if (1..=MAX_QUANTITY).contains(&q) => q as i32,
                    _ => {
                        return Err(format!(
                            "items[{i}].quantity must be a whole number from 1 to {MAX_QUANTITY}"
                        ));
                    }
                },
                Some(_) => return Err(format!("items[{i}].quantity must be a number")),
                None => return Err(format!("items[{i}].quantity is required")),
            };
            let unit_price = money_field(item.price, &format!("items[{i}].price"))?;
            if unit_price.0 > MAX_PRICE_CENTS {
                return Err(format!("items[{i}].price is too large"));
            }
            sum = Cents(sum.0 + unit_price.0 * i64::from(quantity));
            lines.push(OrderLine {
                product_id,
                quantity,
                unit_price,
            });
        }
        let total = money_field(raw.total_amount, "totalAmount")?;
        if total != sum {
            return Err(format!(
                "totalAmount {total} does not equal the sum of the lines {sum}"
            ));
        }
        Ok(Self {
            user_id,
            lines,
            total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = r#"{"userId":"user123","items":[{"productId":"prod1","quantity":2,"price":25.99},{"productId":"prod2","quantity":1,"price":15.50}],"totalAmount":67.48}"#;

    #[test]
    fn the_seed_order_parses_to_cents() {
        let order = NewOrder::parse(SEED.as_bytes()).unwrap();
        assert_eq!(order.total, Cents(6748));
        assert_eq!(order.lines[0].unit_price, Cents(2599));
        assert_eq!(order.lines[1].unit_price, Cents(1550));
    }

    #[test]
    fn every_kind_of_bad_order_is_refused_with_a_reason() {
        let cases = [
            ("{", "invalid JSON"),
            ("[]", "invalid JSON"),
            (r#"{"items":[],"totalAmount":0}"#, "userId is required"),
            (
                r#"{"userId":"u","items":[],"totalAmount":0}"#,
                "must not be empty",
            ),
            (r#"{"userId":"u","totalAmount":0}"#, "items is required"),
            (
                r#"{"userId":5,"items":[],"totalAmount":0}"#,
                "userId must be a string",
            ),
            (
                r#"{"userId":"u; DROP TABLE orders","items":[],"totalAmount":0}"#,
                "userId must be",
            ),
            (
                r#"{"userId":"u","items":[{"productId":"p","quantity":0,"price":1}],"totalAmount":0}"#,
                "quantity must be",
            ),
            (
                r#"{"userId":"u","items":[{"productId":"p","quantity":1000000,"price":1}],"totalAmount":0}"#,
                "quantity must be",
            ),
            (
                r#"{"userId":"u","items":[{"productId":"p","quantity":1.5,"price":1}],"totalAmount":1.5}"#,
                "quantity must be",
            ),
            (
                r#"{"userId":"u","items":[{"productId":"p","quantity":1,"price":-1}],"totalAmount":-1}"#,
                "price must not be negative",
            ),
            (
                r#"{"userId":"u","items":[{"productId":"p","quantity":1,"price":1.001}],"totalAmount":1}"#,
                "at most 2 decimals",
            ),
            (
                r#"{"userId":"u","items":[{"productId":"p","quantity":1,"price":"1"}],"totalAmount":1}"#,
                "price must be a number",
            ),
            (
                r#"{"userId":"u","items":[{"productId":"p","quantity":2,"price":1.10}],"totalAmount":2.21}"#,
                "does not equal",
            ),
            (
                r#"{"userId":"u","items":[{"productId":"p","quantity":1,"price":1}],"totalAmount":1,"admin":true}"#,
                "unknown field",
            ),
        ];
        for (body, want) in cases {
            let err = NewOrder::parse(body.as_bytes()).expect_err(body);
            assert!(err.contains(want), "{body}: {err}");
        }
    }
}
