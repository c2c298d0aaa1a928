//! `GET /metrics`: the deliveries' and executions' counters in Prometheus text format.

use std::time::{Duration, Instant};

use agent_trigger::queue::ExecutionStatus;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;

use super::state::Api;
use crate::store::Backend;

/// The gauge of queued executions, counted in the queue at most once a [`COUNT_EVERY`].
const QUEUED: &str = "agent_trigger_executions_queued";

/// How long a count of the queued executions serves scrapes: scrapers need no key, so they
/// must not be able to put a count on the database per request.
const COUNT_EVERY: Duration = Duration::from_secs(1);

/// When the queued executions were last counted. Scrapes wait on it in turn, so that however
/// many arrive at once, one counts.
static COUNTED_AT: tokio::sync::Mutex<Option<Instant>> = tokio::sync::Mutex::const_new(None);

/// The text of every metric. Labels are sources, outcomes, statuses and answer codes: never a
/// key, a secret, a tenant or a body.
pub async fn prometheus_text<S: Backend>(api: Api<S>, metrics: PrometheusHandle) -> Response {
    let mut counted_at = COUNTED_AT.lock().await;
    if counted_at.is_none_or(|at| at.elapsed() >= COUNT_EVERY) {
        match api.store.count(ExecutionStatus::Queued).await {
            Ok(queued) => metrics::gauge!(QUEUED).set(queued as f64),
            Err(error) => tracing::warn!(%error, "metrics: could not count the queued executions"),
        }
        *counted_at = Some(Instant::now());
    }
    drop(counted_at);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        metrics.render(),
    )
        .into_response()
}
