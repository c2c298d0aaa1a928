//! The server's routes: the trigger endpoint, the executions API, the OpenAPI document, the
//! health check and the metrics.

use std::convert::Infallible;
use std::future::Future;

use agent_trigger::queue::{ExecutionQueue, ExecutionStatus};
use agent_trigger::{KeyStore, TriggerLayer, TriggerService};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper::body::Incoming;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use serde_json::json;
use tower::Service;

use crate::executions;
use crate::executor::Running;
use crate::limits::{self, Limits};

/// What the server runs on: one store that holds keys and triggers and keeps executions
/// (SQLite today; a shared database backend implements the same traits).
pub trait Backend: KeyStore + ExecutionQueue + Clone {}

impl<S: KeyStore + ExecutionQueue + Clone> Backend for S {}

/// What the routes share: the store, and the executions this server's workers are running.
#[derive(Clone)]
pub struct Api<S> {
    pub store: S,
    pub running: Running,
}

/// The whole application, behind the server's limits; `metrics` renders `/metrics`.
///
/// The trigger endpoint sits in front of the router ([`TriggerLayer`]), as in an embedding
/// host: a delivery skips the router's matching and path captures, which the other routes need.
pub fn app<S: Backend>(
    api: Api<S>,
    triggers: TriggerService<S, S>,
    limits: Limits,
    metrics: PrometheusHandle,
) -> impl Service<
    Request<Incoming>,
    Response = Response,
    Error = Infallible,
    Future = impl Future<Output = Result<Response, Infallible>> + Send + 'static,
> + Clone
+ Send
+ 'static {
    let routes = Router::new()
        .route("/api/executions", get(executions::list::<S>))
        .route("/api/executions/{execution_id}", get(executions::show::<S>))
        .route(
            "/api/executions/{execution_id}/cancel",
            post(executions::cancel::<S>),
        )
        .route(
            "/api/executions/{execution_id}/replay",
            post(executions::replay::<S>),
        )
        .route("/api/openapi.json", get(openapi))
        .route("/healthz", get(healthz::<S>))
        .route(
            "/metrics",
            get(move |State(api): State<Api<S>>| prometheus_text(api, metrics.clone())),
        )
        .fallback(|| async { json_response(StatusCode::NOT_FOUND, &json!({"error": "not found"})) })
        .with_state(api);
    // `HandleError` drives the stack below it with `poll_ready` before each `call`, as the
    // load shedding and the concurrency limit need.
    tower::ServiceBuilder::new()
        .layer(axum::error_handling::HandleErrorLayer::new(move |error| {
            limits::refusal(error, limits.request_timeout)
        }))
        .load_shed()
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            limits.max_in_flight,
        ))
        .timeout(limits.request_timeout)
        .layer(TriggerLayer::new(triggers))
        .service(routes)
}

/// How long the health check waits for the database.
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `GET /healthz`: `200 {"status":"ok"}` while the server runs and its database answers,
/// `503 {"status":"unavailable"}` otherwise. No key needed, and no detail given: the cause goes
/// to the log.
async fn healthz<S: Backend>(State(api): State<Api<S>>) -> Response {
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

/// The gauge of queued executions, read from the queue at each scrape.
const QUEUED: &str = "agent_trigger_executions_queued";

/// `GET /metrics`: the deliveries' and executions' counters in Prometheus text format. Labels
/// are sources, outcomes, statuses and answer codes: never a key, a secret, a tenant or a body.
async fn prometheus_text<S: Backend>(api: Api<S>, metrics: PrometheusHandle) -> Response {
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

/// `GET /api/openapi.json`: the endpoint's OpenAPI document.
async fn openapi() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        agent_trigger::openapi::DOCUMENT,
    )
        .into_response()
}

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
