//! One error type for every handler; 5xx detail stays in logs and spans.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the request body is not a valid stock check.
    #[error("{0}")]
    BadRequest(String),
    /// 404: no product has this id.
    #[error("product not found")]
    ProductNotFound,
    /// 500: a fault injected on purpose (`FAULTS`, off by default).
    #[error(transparent)]
    Injected(#[from] service_runtime::faults::Injected),
    /// 503 when the database cannot be reached, 500 for any other database
    /// failure; neither leaks detail.
    #[error("database unavailable: {0}")]
    Database(#[from] sqlx::Error),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code, message) = match &self {
            AppError::BadRequest(m) => (StatusCode::BAD_REQUEST, "invalid_request", m.clone()),
            AppError::ProductNotFound => {
                (StatusCode::NOT_FOUND, "product_not_found", self.to_string())
            }
            AppError::Injected(e) => e.error_response(),
            AppError::Database(e) => service_runtime::database::error_response(e, "inventory"),
        };
        order_contract::error::response(status, code, message)
    }
}
