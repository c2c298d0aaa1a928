//! The trigger endpoint in an axum 0.8 app, beside the app's own routes, mounted in the style
//! that `MOUNT` names:
//!
//! - `route` (default): `Router::route_service("/api/trigger/{source}/{trigger_id}", …)`;
//! - `nest`: `Router::nest_service("/api/trigger", …)` with the service's prefix set to `""`;
//! - `layer`: `TriggerLayer` in front of the whole `Router`.
//!
//! ```text
//! cargo run --example axum
//! MOUNT=layer LISTEN_ADDR=0.0.0.0:8080 API_KEY=atk_mykey cargo run --example axum
//! ```

#[path = "support/mod.rs"]
pub mod support;

use agent_trigger::memory::{ChannelSink, MemoryKeyStore};
use agent_trigger::{TriggerLayer, TriggerService};
use axum::Router;
use axum::routing::get;

/// How the example mounts the trigger endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mount {
    Route,
    Nest,
    Layer,
}

impl Mount {
    /// The prefix the service must answer under: `nest_service` strips its own.
    pub fn service_prefix(self) -> &'static str {
        match self {
            Mount::Nest => "",
            Mount::Route | Mount::Layer => agent_trigger::service::DEFAULT_PREFIX,
        }
    }
}

/// The app: its own routes, and the trigger endpoint mounted as `mount` says (build the
/// service with [`Mount::service_prefix`]).
pub fn app(service: TriggerService<ChannelSink, MemoryKeyStore>, mount: Mount) -> Router {
    let own_routes = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/api/hello", get(|| async { "hello from the host app" }));
    match mount {
        Mount::Route => own_routes.route_service("/api/trigger/{source}/{trigger_id}", service),
        Mount::Nest => own_routes.nest_service("/api/trigger", service),
        Mount::Layer => own_routes.layer(TriggerLayer::new(service)),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mount = match std::env::var("MOUNT").as_deref() {
        Ok("nest") => Mount::Nest,
        Ok("layer") => Mount::Layer,
        Ok("route") | Err(_) => Mount::Route,
        Ok(other) => return Err(format!("MOUNT={other:?}: use route, nest or layer").into()),
    };
    let setup = support::Setup::from_env(mount.service_prefix())?;
    let listener = tokio::net::TcpListener::bind(setup.listen).await?;
    setup.print_banner(&format!("axum ({mount:?})"), listener.local_addr()?);
    let app = app(setup.service.clone(), mount);
    tokio::spawn(support::log_executions(setup.executions));
    axum::serve(listener, app)
        .with_graceful_shutdown(support::shutdown_signal())
        .await?;
    Ok(())
}
