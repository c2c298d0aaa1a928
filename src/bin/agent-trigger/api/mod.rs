//! The server's routes: the trigger endpoint, the executions, deliveries and triggers APIs,
//! the OpenAPI document, the health check, the metrics and the page, behind the server's limits.
//!
//! A route is a handler in the file of its resource, one `.route` line below, and its paths in
//! `openapi.json`. Handlers take the caller's key as [`extract::Authorized`] and their query as
//! [`extract::ApiQuery`].

mod deliveries;
mod executions;
mod extract;
mod health;
mod openapi;
mod prometheus;
mod refusal;
mod respond;
mod state;
mod triggers;

use std::convert::Infallible;
use std::future::Future;

use agent_trigger::{TriggerLayer, TriggerService};
use axum::Router;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use hyper::body::Incoming;
use metrics_exporter_prometheus::PrometheusHandle;
use tower::Service;

pub use self::state::Api;
use crate::config::Limits;
use crate::store::Backend;

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
        .route("/api/deliveries", get(deliveries::list::<S>))
        .route("/api/deliveries/{delivery_id}", get(deliveries::show::<S>))
        .route(
            "/api/deliveries/{delivery_id}/redeliver",
            post(deliveries::redeliver::<S>),
        )
        .route("/api/triggers", get(triggers::list::<S>))
        .route("/api/openapi.json", get(openapi::openapi))
        .merge(crate::page::routes())
        .route("/healthz", get(health::healthz::<S>))
        .route(
            "/metrics",
            get(move |State(api): State<Api<S>>| prometheus::prometheus_text(api, metrics.clone())),
        )
        .fallback(|| async { respond::error(StatusCode::NOT_FOUND, "not found") })
        .with_state(api);
    // `HandleError` drives the stack below it with `poll_ready` before each `call`, as the
    // load shedding and the concurrency limit need.
    tower::ServiceBuilder::new()
        .layer(axum::error_handling::HandleErrorLayer::new(move |error| {
            refusal::refusal(error, limits.request_timeout)
        }))
        .load_shed()
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            limits.max_in_flight,
        ))
        .timeout(limits.request_timeout)
        .layer(TriggerLayer::new(triggers))
        .service(routes)
}
