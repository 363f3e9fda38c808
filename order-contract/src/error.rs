//! The JSON error envelope every service answers refusals and failures with:
//! `{"error":"<code>","message":"<words a caller can act on>","success":false}`.
//! With the `axum` feature: [`response`] builds the answer, and [`JsonBody`]
//! reads a JSON request body so that a refused body answers in the envelope too.

use serde::{Deserialize, Serialize};

/// The envelope. Fields in the order they have always been written (sorted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable, low-cardinality code (`invalid_order`, `unknown_user`, …).
    pub error: String,
    pub message: String,
    /// Always `false`.
    pub success: bool,
}

impl ErrorBody {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            error: code.to_owned(),
            message: message.into(),
            success: false,
        }
    }
}

/// The largest request body a service reads (413 above it).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[cfg(feature = "axum")]
pub use with_axum::{JsonBody, JsonRequest, refused_body, response};

#[cfg(feature = "axum")]
mod with_axum {
    use axum::extract::{FromRequest, Request};
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};

    use super::{ErrorBody, MAX_BODY_BYTES};

    /// `status` with the envelope as its JSON body.
    pub fn response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
        (status, axum::Json(ErrorBody::new(code, message))).into_response()
    }

    /// The answer to a request body that could not be read: 413
    /// `payload_too_large` for one over [`MAX_BODY_BYTES`], else 400 with
    /// `invalid_code` and axum's reason. The one wording for every service.
    pub fn refused_body(
        rejection: &axum::extract::rejection::BytesRejection,
        invalid_code: &str,
    ) -> Response {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body is over {MAX_BODY_BYTES} bytes"),
            )
        } else {
            response(StatusCode::BAD_REQUEST, invalid_code, rejection.body_text())
        }
    }

    /// A request body type read by [`JsonBody`], with how its refusal is worded.
    pub trait JsonRequest: serde::de::DeserializeOwned {
        /// The `error` code of a 400 for a body that does not parse.
        const INVALID_CODE: &'static str;
        /// What the message calls the body: `"{INVALID_WHAT}: {serde's reason}"`.
        const INVALID_WHAT: &'static str;
    }

    impl JsonRequest for crate::http::StockCheckRequest {
        const INVALID_CODE: &'static str = "invalid_request";
        const INVALID_WHAT: &'static str = "invalid stock check";
    }

    /// A JSON request body as `T`. A body over [`MAX_BODY_BYTES`] (with
    /// `DefaultBodyLimit::max(MAX_BODY_BYTES)` on the route) answers 413
    /// `payload_too_large`; one that does not parse answers 400 with
    /// `T::INVALID_CODE`. The Content-Type is checked by the edge layer
    /// (`service_runtime::edge::require_json`), not here.
    pub struct JsonBody<T>(pub T);

    impl<S: Send + Sync, T: JsonRequest> FromRequest<S> for JsonBody<T> {
        type Rejection = Response;

        async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
            let bytes = axum::body::Bytes::from_request(request, state)
                .await
                .map_err(|rejection| refused_body(&rejection, T::INVALID_CODE))?;
            serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
                response(
                    StatusCode::BAD_REQUEST,
                    T::INVALID_CODE,
                    format!("{}: {e}", T::INVALID_WHAT),
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_is_byte_for_byte_as_before() {
        assert_eq!(
            serde_json::to_string(&ErrorBody::new("unknown_user", "unknown user")).unwrap(),
            serde_json::json!({ "success": false, "error": "unknown_user", "message": "unknown user" }).to_string()
        );
    }
}
