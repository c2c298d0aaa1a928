//! `GET /healthz`: liveness and database reachability, for load balancers and orchestrators.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::respond::json_response;
use super::state::Api;
use crate::store::Backend;

/// How long the health check waits for the database.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// `200 {"status":"ok"}` while the server runs and its database answers,
/// `503 {"status":"unavailable"}` otherwise. No key needed, and no detail given: the cause goes
/// to the log.
pub async fn healthz<S: Backend>(State(api): State<Api<S>>) -> Response {
    match tokio::time::timeout(HEALTH_TIMEOUT, api.store.ping()).await {
        Ok(Ok(())) => json_response(StatusCode::OK, &json!({"status": "ok"})),
        outcome => {
            match outcome {
                Ok(Err(error)) => tracing::warn!(%error, "health check: the database failed"),
                _ => tracing::warn!("health check: the database did not answer in time"),
            }
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "unavailable"}),
            )
        }
    }
}
