//! One error type for every handler; 5xx detail stays in logs and spans.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 404: no user has this id.
    #[error("user not found")]
    UserNotFound,
    /// 400: the id is empty, too long or has characters ids never have.
    #[error("invalid user id")]
    InvalidUserId,
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
            AppError::UserNotFound => (StatusCode::NOT_FOUND, "user_not_found", self.to_string()),
            AppError::InvalidUserId => {
                (StatusCode::BAD_REQUEST, "invalid_user_id", self.to_string())
            }
            AppError::Injected(e) => e.error_response(),
            AppError::Database(e) => service_runtime::database::error_response(e, "users"),
        };
        order_contract::error::response(status, code, message)
    }
}
