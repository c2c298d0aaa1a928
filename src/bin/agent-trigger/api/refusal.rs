//! What the server's limits answer when they stop a request: `408` when it was not done within
//! its deadline (and the connection is closed), `503` with `Retry-After` when every place was
//! taken. The limits are tower's own layers (`Timeout`, `GlobalConcurrencyLimit`, `LoadShed`);
//! this words their answers.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use super::respond;

/// The answer to a request one of the limits stopped.
pub async fn refusal(error: tower::BoxError, request_timeout: Duration) -> Response {
    if error.is::<tower::timeout::error::Elapsed>() {
        too_slow(request_timeout)
    } else if error.is::<tower::load_shed::error::Overloaded>() {
        busy()
    } else {
        tracing::error!(%error, "request failed in the server's limits");
        respond::error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

fn busy() -> Response {
    let mut response = respond::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many requests in flight, retry later",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn too_slow(limit: Duration) -> Response {
    tracing::info!(
        timeout_secs = limit.as_secs(),
        "request not completed in time"
    );
    let mut response = respond::error(
        StatusCode::REQUEST_TIMEOUT,
        format!("the request was not completed within {} s", limit.as_secs()),
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
