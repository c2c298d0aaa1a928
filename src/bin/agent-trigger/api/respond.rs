//! The JSON answers every route gives.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

/// A JSON answer that no cache keeps.
pub fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    let body = serde_json::to_vec(body).expect("response bodies serialise");
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

/// `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    json_response(status, &json!({ "error": message.into() }))
}

/// `500 {"error":"internal error"}`, the cause logged as `what` failing.
pub fn internal(what: &str, error: &dyn std::fmt::Display) -> Response {
    tracing::error!(%error, "{what}: the database failed");
    self::error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}
