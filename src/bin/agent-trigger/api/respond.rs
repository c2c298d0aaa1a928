//! The JSON answers every route gives.

use agent_trigger::StoreError;
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

/// A page of a list holds this many items unless `limit` says otherwise.
const DEFAULT_PAGE: usize = 20;
/// And at most this many.
const MAX_PAGE: usize = 100;

/// The size of a list's page: `limit`, or the default; `400` out of range.
pub fn page_limit(limit: Option<usize>) -> Result<usize, Box<Response>> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("limit must be from 1 to {MAX_PAGE}"),
        )))
    }
}

/// `200 {"<name>": items, "nextCursor"}`: a full page's cursor is the id of its last item (the
/// next page starts after it), a shorter page's `null`.
pub fn page<T: Serialize>(
    name: &str,
    items: &[T],
    limit: usize,
    last_id: Option<String>,
) -> Response {
    let next = if items.len() == limit { last_id } else { None };
    json_response(StatusCode::OK, &json!({ name: items, "nextCursor": next }))
}

/// `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    json_response(status, &json!({ "error": message.into() }))
}

/// `429 {"error"}` with `Retry-After`: the trigger's rate has no room for `wait`.
pub fn too_many_requests(wait: std::time::Duration) -> Response {
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "too many deliveries for this trigger, retry later",
    );
    // Whole seconds, rounded up, at least 1.
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from(seconds.max(1)),
    );
    response
}

/// How long a caller is asked to wait when the database is away.
const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 1;

/// The answer to a store's failure, the cause logged as `what` failing: `503 {"error"}` with
/// `Retry-After` when the database is away for now (restarting, unreachable, full, locked),
/// `500 {"error":"internal error"}` otherwise.
pub fn store_failure(what: &str, error: &StoreError) -> Response {
    if error.is_unavailable() {
        tracing::warn!(%error, "{what}: the database is unavailable");
        let mut response = self::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the database is unavailable, retry later",
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(UNAVAILABLE_RETRY_AFTER_SECS),
        );
        response
    } else {
        tracing::error!(%error, "{what}: the database failed");
        self::error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}
