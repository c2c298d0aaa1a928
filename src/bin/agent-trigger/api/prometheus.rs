//! `GET /metrics`: the deliveries' and executions' counters in Prometheus text format.

use agent_trigger::queue::ExecutionStatus;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;

use super::state::Api;
use crate::store::Backend;

/// The gauge of queued executions, read from the queue at each scrape.
const QUEUED: &str = "agent_trigger_executions_queued";

/// The text of every metric. Labels are sources, outcomes, statuses and answer codes: never a
/// key, a secret, a tenant or a body.
pub async fn prometheus_text<S: Backend>(api: Api<S>, metrics: PrometheusHandle) -> Response {
    match api.store.count(ExecutionStatus::Queued).await {
        Ok(queued) => metrics::gauge!(QUEUED).set(queued as f64),
        Err(error) => tracing::warn!(%error, "metrics: could not count the queued executions"),
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        metrics.render(),
    )
        .into_response()
}
