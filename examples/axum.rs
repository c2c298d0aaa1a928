//! The trigger endpoint in an axum 0.8 app, beside the app's own routes.
//!
//! ```text
//! cargo run --example axum
//! LISTEN_ADDR=0.0.0.0:8080 API_KEY=atk_mykey TRIGGER_ID=6f1c1c52-7a57-4f7e-9d43-8d2b8f1d0c11 cargo run --example axum
//! ```

#[path = "support/mod.rs"]
mod support;

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let setup = support::Setup::from_env()?;
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route_service("/api/trigger/{source}/{trigger_id}", setup.service.clone());

    let listener = tokio::net::TcpListener::bind(setup.listen).await?;
    setup.print_banner("axum", listener.local_addr()?);
    tokio::spawn(support::log_executions(setup.executions));
    axum::serve(listener, app)
        .with_graceful_shutdown(support::shutdown_signal())
        .await?;
    Ok(())
}
