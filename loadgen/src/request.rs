//! What the load sends: requests through the gateway, the benchmark's route
//! mix, and the percentile both reports use.

use std::time::Duration;

/// The nearest-rank `p`th percentile of `sorted` (ascending); None if empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

/// What one request sends.
#[derive(Debug, Clone)]
pub enum Request {
    Get(String),
    Post(String, String),
}

impl Request {
    /// Sends it to `gateway` (POST bodies as JSON).
    pub async fn send(
        self,
        client: &reqwest::Client,
        gateway: &str,
    ) -> reqwest::Result<reqwest::Response> {
        match self {
            Request::Get(path) => client.get(format!("{gateway}{path}")).send().await,
            Request::Post(path, body) => {
                client
                    .post(format!("{gateway}{path}"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
            }
        }
    }
}

/// The route mix of the benchmark: valid orders of varying users and
/// products (the seed's shape), and user lookups.
pub fn order_request(i: usize) -> Request {
    Request::Post(
        "/api/orders".into(),
        order_contract::http::OrderRequest::sample(i).to_json(),
    )
}

pub fn user_request(i: usize) -> Request {
    let users = ["user123", "user456", "user789"];
    Request::Get(format!("/api/users/{}", users[i % users.len()]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_orders_are_exact_and_vary() {
        for i in 0..6 {
            let Request::Post(_, body) = order_request(i) else {
                panic!("an order is a POST");
            };
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let cents = |x: &serde_json::Value| (x.as_f64().unwrap() * 100.0).round() as i64;
            let sum: i64 = v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| cents(&l["price"]) * l["quantity"].as_i64().unwrap())
                .sum();
            assert_eq!(sum, cents(&v["totalAmount"]), "{body}");
        }
        assert_ne!(
            format!("{:?}", order_request(0)),
            format!("{:?}", order_request(1))
        );
    }
}
