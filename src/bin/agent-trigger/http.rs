//! The server's routes: the trigger endpoint, the execution status endpoint, the OpenAPI
//! document and the health check.

use std::time::SystemTime;

use agent_trigger::queue::{ExecutionQueue, ExecutionRecord};
use agent_trigger::{ExecutionId, KeyDigest, KeyStore, TriggerService, bearer_token};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::limits::{self, Gate, Limits};

/// What the server runs on: one store that holds keys and triggers and keeps executions
/// (SQLite today; a shared database backend implements the same traits).
pub trait Backend: KeyStore + ExecutionQueue + Clone {}

impl<S: KeyStore + ExecutionQueue + Clone> Backend for S {}

/// The whole application, behind the server's limits; `metrics` renders `/metrics`.
pub fn app<S: Backend>(
    store: S,
    triggers: TriggerService<S, S>,
    limits: Limits,
    metrics: PrometheusHandle,
) -> Router {
    Router::new()
        .route_service("/api/trigger/{source}/{trigger_id}", triggers)
        .route("/api/executions/{execution_id}", get(execution_status::<S>))
        .route("/api/openapi.json", get(openapi))
        .route("/healthz", get(healthz::<S>))
        .route("/metrics", get(move || prometheus_text(metrics.clone())))
        .fallback(|| async { json_response(StatusCode::NOT_FOUND, &json!({"error": "not found"})) })
        .with_state(store)
        .layer(axum::middleware::from_fn_with_state(
            Gate::new(limits),
            limits::enforce,
        ))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusBody {
    execution_id: String,
    status: &'static str,
    source: &'static str,
    trigger_id: String,
    action: Option<String>,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    exit_code: Option<i32>,
    attempt: u32,
}

impl From<ExecutionRecord> for StatusBody {
    fn from(record: ExecutionRecord) -> Self {
        StatusBody {
            execution_id: record.id.to_string(),
            status: record.status.as_str(),
            source: record.source.as_str(),
            trigger_id: record.trigger_id.to_string(),
            action: record.action,
            created_at: rfc3339(record.created_at),
            started_at: record.started_at.map(rfc3339),
            finished_at: record.finished_at.map(rfc3339),
            exit_code: record.exit_code,
            attempt: record.attempt,
        }
    }
}

/// `GET /api/executions/{executionId}`: a key sees only its own tenant's executions, and a key
/// scoped to some triggers only those triggers' executions; any other looks exactly like an
/// unknown one.
async fn execution_status<S: Backend>(
    State(store): State<S>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(token) = bearer_token(&headers) else {
        return unauthorized(
            "Bearer",
            "missing credentials: send Authorization: Bearer <api key>",
        );
    };
    let key = match store.api_key(KeyDigest::of_token(token)).await {
        Ok(Some(key)) if key.is_usable(SystemTime::now()) => key,
        Ok(_) => return unauthorized(r#"Bearer error="invalid_token""#, "invalid API key"),
        Err(error) => return internal(&error),
    };
    let not_found = || {
        json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": "execution not found"}),
        )
    };
    let Ok(id) = Uuid::try_parse(&id) else {
        return not_found();
    };
    match store.execution(&ExecutionId::from(id)).await {
        Ok(Some(record))
            if record.tenant == key.tenant() && key.scope().includes(record.trigger_id) =>
        {
            json_response(StatusCode::OK, &StatusBody::from(record))
        }
        Ok(_) => not_found(),
        Err(error) => internal(&error),
    }
}

/// How long the health check waits for the database.
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `GET /healthz`: `200 {"status":"ok"}` while the server runs and its database answers,
/// `503 {"status":"unavailable"}` otherwise. No key needed, and no detail given: the cause goes
/// to the log.
async fn healthz<S: Backend>(State(store): State<S>) -> Response {
    match tokio::time::timeout(HEALTH_TIMEOUT, store.ping()).await {
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

/// `GET /metrics`: the deliveries' and executions' counters in Prometheus text format. Labels
/// are sources, outcomes, statuses and answer codes: never a key, a secret, a tenant or a body.
async fn prometheus_text(metrics: PrometheusHandle) -> Response {
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

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

fn unauthorized(challenge: &'static str, message: &str) -> Response {
    let mut response = json_response(StatusCode::UNAUTHORIZED, &json!({ "error": message }));
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

fn internal(error: &dyn std::fmt::Display) -> Response {
    tracing::error!(%error, "execution status lookup failed");
    json_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        &json!({"error": "internal error"}),
    )
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
