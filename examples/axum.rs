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

#[cfg(test)]
mod tests {
    //! The app over a real loopback socket, in each mounting style.

    use agent_trigger_testkit::client;
    use http::StatusCode;

    use super::*;

    const LIMIT: usize = 1024;

    async fn start(mount: Mount) -> support::Setup {
        let (listener, setup) = support::Setup::on_loopback(mount.service_prefix(), LIMIT).await;
        let app = app(setup.service.clone(), mount);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        setup
    }

    async fn exercise(mount: Mount) {
        let mut server = start(mount).await;
        let client = client::http1();
        let url = format!(
            "http://{}/api/trigger/webhook/{}",
            server.listen, server.trigger_id
        );

        let (status, headers, body) = client::fetch(
            &client,
            client::post(
                url.clone(),
                Some(server.key.expose()),
                r#"{"type":"deploy"}"#,
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{mount:?}: {body}");
        assert_eq!(headers["content-type"], "application/json");
        let execution = server.executions.recv().await.unwrap();
        assert_eq!(body, format!(r#"{{"executionId":"{}"}}"#, execution.id));
        assert_eq!(execution.delivery.action.as_deref(), Some("deploy"));

        let (status, headers, _) =
            client::fetch(&client, client::post(url.clone(), None, "{}")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{mount:?}");
        assert_eq!(headers["www-authenticate"], "Bearer");

        let (status, _, body) = client::fetch(
            &client,
            client::get(format!("http://{}/health", server.listen)),
        )
        .await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"), "{mount:?}");
        let (status, _, body) = client::fetch(
            &client,
            client::get(format!("http://{}/api/hello", server.listen)),
        )
        .await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "hello from the host app"),
            "{mount:?}"
        );

        let oversize = format!(r#"{{"pad":"{}"}}"#, "x".repeat(4 * LIMIT));
        let (status, _, body) = client::fetch(
            &client,
            client::post(url.clone(), Some(server.key.expose()), oversize),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{mount:?}: {body}");

        let (status, headers, _) = client::fetch(&client, client::get(url)).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{mount:?}");
        assert_eq!(headers["allow"], "POST");
    }

    #[tokio::test]
    async fn route_service() {
        exercise(Mount::Route).await;
    }

    #[tokio::test]
    async fn nest_service() {
        exercise(Mount::Nest).await;
    }

    #[tokio::test]
    async fn trigger_layer_on_a_router() {
        exercise(Mount::Layer).await;
    }
}
