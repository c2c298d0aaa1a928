//! The trigger endpoint on a bare hyper 1 server through hyper-util: `TriggerLayer` in front of
//! the host's own hyper service, `TowerToHyperService`, and the auto builder (HTTP/1 and
//! HTTP/2).
//!
//! ```text
//! cargo run --example hyper
//! curl --http2-prior-knowledge http://127.0.0.1:3000/health
//! ```

#[path = "support/mod.rs"]
pub mod support;

use std::convert::Infallible;

use agent_trigger::TriggerLayer;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tower::Layer;

/// The host's own service: what answers everything off the trigger route.
async fn host(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match request.uri().path() {
        "/health" => Response::new(Full::new(Bytes::from_static(b"ok"))),
        _ => {
            let mut response = Response::new(Full::new(Bytes::from_static(b"no such page")));
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    };
    Ok(response)
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
    TriggerLayer::new(service).layer(tower::service_fn(host))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let setup = support::Setup::from_env(agent_trigger::service::DEFAULT_PREFIX)?;
    let listener = tokio::net::TcpListener::bind(setup.listen).await?;
    setup.print_banner("hyper", listener.local_addr()?);
    let app = app(setup.service.clone());
    tokio::spawn(support::log_executions(setup.executions));
    support::serve_tower(listener, app, support::shutdown_signal()).await;
    Ok(())
}
