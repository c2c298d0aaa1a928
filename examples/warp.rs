//! The trigger endpoint beside warp 0.4 filters: the filters become a tower service with
//! `warp::service`, `TriggerLayer` goes in front of it, and hyper-util serves the result. The
//! warp routes are still served as before.
//!
//! ```text
//! cargo run --example warp
//! curl http://127.0.0.1:3000/hello/world
//! ```

#[path = "support/mod.rs"]
pub mod support;

use std::convert::Infallible;

use agent_trigger::TriggerLayer;
use http::{Request, Response};
use hyper::body::Incoming;
use tower::Layer;
use warp::Filter;

/// The host's warp routes.
fn routes()
-> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone + Send + Sync + 'static
{
    let health = warp::path("health").and(warp::path::end()).map(|| "ok");
    let hello = warp::path!("hello" / String).map(|name: String| format!("hello, {name}"));
    health.or(hello)
}

/// The whole app as one tower service.
pub fn app(
    service: support::Triggers,
) -> impl tower::Service<
    Request<Incoming>,
    Response = Response<
        impl http_body::Body<Data = bytes::Bytes, Error = agent_trigger::BoxError> + Send + 'static,
    >,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    TriggerLayer::new(service).layer(warp::service(routes()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let setup = support::Setup::from_env(agent_trigger::service::DEFAULT_PREFIX)?;
    let listener = tokio::net::TcpListener::bind(setup.listen).await?;
    setup.print_banner("warp", listener.local_addr()?);
    let app = app(setup.service.clone());
    tokio::spawn(support::log_executions(setup.executions));
    support::serve_tower(listener, app, support::shutdown_signal()).await;
    Ok(())
}
