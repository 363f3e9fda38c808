//! One error type for every handler; 5xx detail stays in logs and spans.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the body is not a valid order (the message says why).
    #[error("{0}")]
    InvalidOrder(String),
    /// 413 for a body over the size limit, 400 for one that could not be
    /// read (`order_contract::error::refused_body`).
    #[error("{0}")]
    Body(axum::extract::rejection::BytesRejection),
    /// 400: the `Idempotency-Key` header is empty, too long or not printable ASCII.
    #[error("Idempotency-Key must be 1 to 128 printable ASCII characters")]
    InvalidIdempotencyKey,
    /// 400: the order id in the path is not a UUID.
    #[error("order id must be a UUID")]
    InvalidOrderId,
    /// 404: no order has this id.
    #[error("order not found")]
    OrderNotFound,
    /// 422: user-service does not know the user.
    #[error("unknown user")]
    UnknownUser,
    /// 409: current stock cannot serve the order; nothing was written.
    #[error("insufficient stock: {0}")]
    InsufficientStock(String),
    /// 503: a service this one depends on did not answer in time.
    #[error("{0} is unavailable")]
    DependencyUnavailable(&'static str),
    /// 503 when the database cannot be reached, 500 for any other database
    /// failure; neither leaks detail.
    #[error("database unavailable: {0}")]
    Database(#[from] sqlx::Error),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            AppError::InvalidOrder(_) => (StatusCode::BAD_REQUEST, "invalid_order"),
            AppError::InvalidIdempotencyKey => (StatusCode::BAD_REQUEST, "invalid_idempotency_key"),
            AppError::InvalidOrderId => (StatusCode::BAD_REQUEST, "invalid_order_id"),
            AppError::OrderNotFound => (StatusCode::NOT_FOUND, "order_not_found"),
            AppError::UnknownUser => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_user"),
            AppError::InsufficientStock(_) => (StatusCode::CONFLICT, "insufficient_stock"),
            AppError::DependencyUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "dependency_unavailable")
            }
            AppError::Body(rejection) => {
                return order_contract::error::refused_body(rejection, "invalid_order");
            }
            AppError::Database(e) => {
                let (status, code, message) =
                    service_runtime::database::error_response(e, "orders");
                return body(status, code, &message);
            }
        };
        body(status, code, &self.to_string())
    }
}

fn body(status: StatusCode, code: &str, message: &str) -> Response {
    order_contract::error::response(status, code, message)
}
