//! Typed clients for the services order-service calls, as HotROD's services
//! offer them: a caller names what it wants, the client knows the route, the
//! body and the answer. Each call is one CLIENT span (`GET` or `POST`, by
//! `tracing_common::reqwest`) with the current context injected, under the
//! caller's current span.

use reqwest::StatusCode;
use tracing_common::reqwest::TracedClient;

use crate::http::{StockCheckAnswer, StockCheckRequest, User, UserFound};
use crate::ids::UserId;

/// Why a call did not give the answer the contract promises.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No answer: connection refused, timeout, …; `kind` is the span's `error.type`.
    #[error("{message}")]
    Transport { kind: &'static str, message: String },
    /// An answer with a status the call does not expect.
    #[error("{service} answered {status}")]
    Status {
        service: &'static str,
        status: StatusCode,
    },
    /// An answer whose body is not what the contract says.
    #[error("{0}")]
    Body(String),
}

impl CallError {
    fn transport(error: reqwest_middleware::Error) -> Self {
        Self::Transport {
            kind: tracing_common::reqwest::error_kind(&error),
            message: error.to_string(),
        }
    }
}

/// user-service.
#[derive(Clone)]
pub struct UserServiceClient {
    http: TracedClient,
    base_url: String,
}

impl UserServiceClient {
    /// `base_url` without a trailing slash (`http://127.0.0.1:3001`).
    pub fn new(http: TracedClient, base_url: impl Into<String>) -> Self {
        Self {
            http,
            base_url: base_url.into(),
        }
    }

    /// `GET /users/{id}` (CLIENT span `GET`, `names::HTTP_GET`): the user, or
    /// `None` when user-service does not know them.
    pub async fn user(&self, id: &UserId) -> Result<Option<User>, CallError> {
        let response = self
            .http
            .get(format!(
                "{}{}",
                self.base_url,
                super::http::paths::with_id(super::http::paths::USER, id.as_ref())
            ))
            .send()
            .await
            .map_err(CallError::transport)?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => response
                .json::<UserFound>()
                .await
                .map(|found| Some(found.user))
                .map_err(|e| CallError::Body(e.to_string())),
            status => Err(CallError::Status {
                service: "user-service",
                status,
            }),
        }
    }
}

/// inventory-service.
#[derive(Clone)]
pub struct InventoryServiceClient {
    http: TracedClient,
    base_url: String,
}

impl InventoryServiceClient {
    /// `base_url` without a trailing slash (`http://127.0.0.1:3004`).
    pub fn new(http: TracedClient, base_url: impl Into<String>) -> Self {
        Self {
            http,
            base_url: base_url.into(),
        }
    }

    /// `POST /check` (CLIENT span `POST`, `names::HTTP_POST`): whether current
    /// stock can serve `request` (nothing is reserved).
    pub async fn check(&self, request: &StockCheckRequest) -> Result<StockCheckAnswer, CallError> {
        let response = self
            .http
            .post(format!(
                "{}{}",
                self.base_url,
                super::http::paths::STOCK_CHECK
            ))
            .json(request)
            .send()
            .await
            .map_err(CallError::transport)?;
        if !response.status().is_success() {
            return Err(CallError::Status {
                service: "inventory-service",
                status: response.status(),
            });
        }
        response
            .json()
            .await
            .map_err(|e| CallError::Body(e.to_string()))
    }
}
